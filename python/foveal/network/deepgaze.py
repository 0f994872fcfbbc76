"""foveal's learned saliency network: EfficientNet-Lite features with a DeepGaze-II-style readout.

The definition the torch backend runs (imported lazily: only with torch installed); ``engine.deepgaze`` adds
ImageNet initialisation, BatchNorm folding and saving for training and export.

    image ─► EfficientNet-Lite ─► taps at strides 8 / 16 / 32 ─► 1×1 convs (16 → 16 → 1) at stride 8
          ─► Gaussian blur (learned sigma) ─► + log centre prior (learned, aspect-aware) ─► log-softmax
          ─► domain calibration (temperature, mixture with the fitted centre bias; identity unless set)

The output grid is that of the finest tap (stride 8 for the default taps 4 / 10 / 15).  The first 1×1 layer is
linear, so it is applied to each tap *before* bilinear upsampling to that grid (identical result, ~30× cheaper
than upsampling 472 channels).

Alignment: the backbone's symmetric padding centres a stride-s feature k on input pixel s·k, not on the middle
of the cell it stands for (pixels s·k … s·k + s − 1, where the trainer counts fixations).  So taps are upsampled
corner to corner (fine cell k reads coarse position k·s_fine/s_coarse), and the blur kernel is centred
(s − 1) / (2s) cells off so that output cell k reads the logits at its own middle.  Both misalignments were
worth 0.08 nats of val NLL with a frozen backbone (docs/TRAINING.md).

Domain calibration: a density fitted by likelihood on photos is overconfident on other images (ads, designs,
another dataset's photos).  ``temperature`` < 1 flattens it (density ** T, renormalised) and ``centre_mix``
mixes in :data:`foveal.metrics.CENTRE_BIAS`; both are constants of the graph, chosen on cross-dataset
validation (``engine/domain_calibration.py``), and stored in the weights' config, not trained.

Output: N×1×(H/stride)×(W/stride) log-density (sums to 1 over the padded grid).  Kümmerer et al.,
"Understanding low- and high-level contributions to fixation prediction", ICCV 2017 (DeepGaze II) describe the
readout, blur and prior; the rest is ours.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ModelError
from ..metrics import CENTRE_BIAS
from .backbone import EfficientNetLite, block_strides

# At stride 8: the kernel is normalised, so sigma can grow to ~3 cells (~1 degree at 384 px ×3); finer grids
# scale both the radius and the initial sigma, so the kernel covers the same image area.
BLUR_RADIUS, BLUR_STRIDE = 8, 8


class Readout(nn.Module):
    """Per-tap 1×1 projections summed on the first tap's grid, two more 1×1 layers, blur, centre prior,
    log-softmax.  ``stride``: input pixels per cell of that grid."""

    def __init__(self, channels: list[int], hidden: tuple[int, ...] = (16, 16), stride: int = 8) -> None:
        super().__init__()
        self.channels = list(channels)
        self.hidden = tuple(hidden)
        self.radius = BLUR_RADIUS * BLUR_STRIDE // stride
        # From the feature's centre (pixel s·k) to its cell's middle (s·k + (s-1)/2), in cells.
        self.centre_offset = (stride - 1) / (2 * stride)
        # Fixed per-channel feature normalisation (set from training features); folded into `project` at export.
        self.register_buffer("mean", torch.zeros(sum(channels)))
        self.register_buffer("std", torch.ones(sum(channels)))
        self.project = nn.ModuleList(nn.Conv2d(c, hidden[0], 1, bias=(k == 0)) for k, c in enumerate(channels))
        layers: list[nn.Module] = []
        for a, b in zip(hidden, hidden[1:] + (1,)):
            layers += [nn.Softplus(), nn.Conv2d(a, b, 1)]
        self.head = nn.Sequential(*layers)
        self.log_blur = nn.Parameter(torch.tensor(math.log(1.5 * BLUR_STRIDE / stride)))
        # Extra blur (cells) chosen on val after training: NLL wants the sharp density of fixations, CC compares
        # with a density smoothed by one degree; Gaussians compose, so it widens the learned kernel.
        self.register_buffer("extra_blur", torch.tensor(0.0))
        # Centre prior: -(u²/sx² + v²/sy²) / 2, u, v in units of the longer side from the grid centre.
        self.log_prior_sigma = nn.Parameter(torch.tensor([math.log(0.3), math.log(0.3)]))
        # Plain floats, not buffers: they select graph structure at export and are saved in the config.
        self.temperature = 1.0
        self.centre_mix = 0.0

    def blur_kernel(self) -> torch.Tensor:
        """The separable kernel, centred ``centre_offset`` cells right of (below) the cell it writes."""
        # dtype and device follow the parameters, so .half() and .to("cuda") work.
        r = torch.arange(-self.radius, self.radius + 1, dtype=self.log_blur.dtype, device=self.log_blur.device)
        sigma = torch.sqrt(torch.exp(self.log_blur) ** 2 + self.extra_blur ** 2)
        k = torch.exp(-0.5 * ((r - self.centre_offset) / sigma) ** 2)
        return k / k.sum()

    def prior(self, like: torch.Tensor) -> torch.Tensor:
        """Log centre prior on the grid of ``like`` (N×1×h×w); built from tensor ops so ONNX shapes stay dynamic."""
        ys, xs, h, w = _cell_centres(like)
        long = torch.maximum(h, w)
        sy, sx = torch.exp(self.log_prior_sigma[1]), torch.exp(self.log_prior_sigma[0])
        v, u = (ys - h / 2) / (long * sy), (xs - w / 2) / (long * sx)
        return -0.5 * (v[:, None] ** 2 + u[None, :] ** 2)

    def centre_bias(self, like: torch.Tensor) -> torch.Tensor:
        """Log of :data:`foveal.metrics.CENTRE_BIAS` on the grid of ``like`` (h×w, unnormalised)."""
        ys, xs, h, w = _cell_centres(like)
        (mx, my), (sx, sy) = CENTRE_BIAS["mean"], CENTRE_BIAS["sigma"]
        v, u = (ys / h - my) / sy, (xs / w - mx) / sx
        return -0.5 * (v[:, None] ** 2 + u[None, :] ** 2)

    def calibrate(self, log_density: torch.Tensor) -> torch.Tensor:
        """Apply the domain calibration to an N×1×h×w log-density; the identity at its defaults."""
        x = log_density
        if self.temperature != 1.0:
            x = torch.log_softmax(self.temperature * x.flatten(1), dim=1).view_as(x)
        if self.centre_mix > 0.0:
            # Normalised as a 1×(h·w) row: TensorRT's softmax needs two dimensions or more.
            centre = torch.log_softmax(self.centre_bias(x).reshape(1, -1), dim=1).view(1, 1, *x.shape[-2:])
            x = torch.log((1.0 - self.centre_mix) * torch.exp(x) + self.centre_mix * torch.exp(centre))
        return x

    def logits(self, taps: list[torch.Tensor]) -> torch.Tensor:
        """Unnormalised log-density on the first tap's grid, before blur and prior."""
        base = taps[0]
        size = base.shape[-2:]
        offset, acc = 0, None
        for feat, conv in zip(taps, self.project):
            c = feat.shape[1]
            m = self.mean[offset:offset + c].view(1, c, 1, 1)
            s = self.std[offset:offset + c].view(1, c, 1, 1)
            offset += c
            y = conv((feat - m) / s)
            if feat is not base:
                y = upsample_corners(y, size)
            acc = y if acc is None else acc + y
        return self.head(acc)

    def forward(self, taps: list[torch.Tensor]) -> torch.Tensor:
        x = self.logits(taps)
        k = self.blur_kernel()
        x = F.pad(x, (self.radius,) * 4, mode="replicate")
        x = F.conv2d(x, k.view(1, 1, 1, -1))
        x = F.conv2d(x, k.view(1, 1, -1, 1))
        x = x + self.prior(x)
        return self.calibrate(torch.log_softmax(x.flatten(1), dim=1).view_as(x))


class SaliencyNet(nn.Module):
    """Backbone (EfficientNet-Lite, taps ``taps``) + :class:`Readout`; float32 NCHW in, log-density out."""

    def __init__(self, variant: str = "lite0", taps: tuple[int, ...] = (4, 10, 15),
                 hidden: tuple[int, ...] = (16, 16), backbone: EfficientNetLite | None = None) -> None:
        super().__init__()
        self.variant = variant
        self.taps = tuple(taps)
        if list(self.taps) != sorted(set(self.taps)):
            raise ValueError(f"taps must be increasing block indices (the first sets the output grid), got {taps}")
        self.backbone = backbone if backbone is not None else EfficientNetLite(variant)
        # Blocks after the last tap are never run; drop them so weights and exports stay small.
        self.backbone._blocks = self.backbone._blocks[:max(taps) + 1]
        self.stride = output_stride(variant, self.taps)
        self.readout = Readout([self.backbone.channels[t] for t in taps], hidden, self.stride)

    def config(self) -> dict:
        return {"variant": self.variant, "taps": list(self.taps), "hidden": list(self.readout.hidden),
                "temperature": self.readout.temperature, "centre_mix": self.readout.centre_mix}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.backbone(x, self.taps))


def _cell_centres(like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row and column cell centres (0.5, 1.5, ...) of the grid of ``like`` (N×C×h×w) and h, w as tensors, built
    from tensor ops so ONNX shapes stay dynamic."""
    ys = torch.cumsum(torch.ones_like(like[0, 0, :, 0]), 0) - 0.5
    xs = torch.cumsum(torch.ones_like(like[0, 0, 0, :]), 0) - 0.5
    return ys, xs, ys[-1] + 0.5, xs[-1] + 0.5


def upsample_corners(y: torch.Tensor, size: torch.Size | tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling by an integer factor f with cell k of the result at cell k / f of ``y``.

    The layout of features whose cell k is centred on pixel stride·k (see the module docstring); clamped past the
    last cell.  One replicated cell at the far edges lets ``align_corners=True`` give exactly k / f.
    """
    y = F.pad(y, (0, 1, 0, 1), mode="replicate")
    y = F.interpolate(y, size=(size[0] + 1, size[1] + 1), mode="bilinear", align_corners=True)
    return y[..., :size[0], :size[1]]


def output_stride(variant: str, taps: tuple[int, ...]) -> int:
    """Input pixels per output cell of a network with these taps: the finest tap's stride."""
    return block_strides(variant)[min(taps)]


def checked_calibration(temperature: float, centre_mix: float) -> tuple[float, float]:
    """The domain calibration as floats; ModelError unless the temperature is finite and > 0 and the centre mix in
    [0, 1): anything else makes every map NaN, uniform or the centre bias alone."""
    t, eps = float(temperature), float(centre_mix)
    if not (math.isfinite(t) and t > 0 and 0 <= eps < 1):
        raise ModelError(f"domain calibration temperature {temperature!r}, centre_mix {centre_mix!r}: the temperature "
                         "must be a finite number > 0 and the centre mix from 0 up to (not including) 1")
    return t, eps


def load(name_or_path: str | Path) -> SaliencyNet:
    """Build the network and load its weights: a shipped model name (``foveal-lite0``) or a .safetensors path.

    Returns the module in eval mode on the CPU (move it with ``.to(device)``).
    """
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from ..models import MODELS_DIR

    path = Path(name_or_path)
    if path.suffix != ".safetensors":
        path = MODELS_DIR / f"{name_or_path}.safetensors"
    if not path.is_file():
        raise ModelError(f"no weights at {path}; pass a shipped model name or a .safetensors path")
    try:
        with safe_open(str(path), "pt") as f:
            cfg = json.loads((f.metadata() or {})["foveal"])
        model = SaliencyNet(cfg["variant"], tuple(cfg["taps"]), tuple(cfg["hidden"]))
        # Weights saved before the domain calibration existed have none: the identity.
        model.readout.temperature, model.readout.centre_mix = checked_calibration(cfg.get("temperature", 1.0),
                                                                                  cfg.get("centre_mix", 0.0))
        missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    except (SafetensorError, OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        # a damaged file, a safetensors file of another network, tensors of the wrong shape
        raise ModelError(f"{path}: not a foveal network's weights, or damaged ({type(exc).__name__}: "
                         f"{str(exc)[:160]}); use the .safetensors file foveal wrote beside the model") from None
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]  # not saved: unused at inference
    if missing or unexpected:
        raise ModelError(f"{path} does not fit {cfg}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval()


def save(model: SaliencyNet, path: str | Path) -> None:
    """Write weights (float32) + config to a safetensors file."""
    from safetensors.torch import save_file
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if "num_batches" not in k}
    save_file(state, str(path), metadata={"foveal": json.dumps(model.config())})
