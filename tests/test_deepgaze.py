"""The learned network (engine/deepgaze.py): backbone weights, folding, weights I/O, and the shipped ONNX model."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from engine import deepgaze  # noqa: E402
from engine.backbone import pretrained  # noqa: E402
from foveal.network.backbone import EfficientNetLite  # noqa: E402
from foveal.network import training  # noqa: E402
from foveal.datasets import Fixations  # noqa: E402
from foveal.geometry import layout  # noqa: E402
import foveal  # noqa: E402
from foveal import cpu  # noqa: E402
from foveal.errors import ModelError  # noqa: E402
from foveal.models import MODELS_DIR, load_card  # noqa: E402

NAME = "foveal-lite0"
REPO = Path(__file__).resolve().parents[1]
FOVEAL_PATH = os.path.dirname(os.path.dirname(foveal.__file__))  # the foveal under test: installed, or python/
SHIPPED = (MODELS_DIR / f"{NAME}.onnx").is_file() and (MODELS_DIR / f"{NAME}.safetensors").is_file()
shipped = pytest.mark.skipif(not SHIPPED, reason=f"{NAME} not shipped yet in {MODELS_DIR}")
# (batch, H, W): the working size 384×288, 1:4 and 4:1 aspect ratios, and a batch of two.
SHAPES = [(1, 288, 384), (1, 384, 96), (1, 96, 384), (2, 160, 224)]


@pytest.fixture(scope="module")
def small_net() -> deepgaze.SaliencyNet:
    torch.manual_seed(0)
    net = deepgaze.create(imagenet=False).eval()
    with torch.no_grad():  # non-trivial normalisation and BN statistics so folding has something to fold
        net.readout.mean.uniform_(-0.5, 0.5)
        net.readout.std.uniform_(0.5, 2.0)
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net


def test_backbone_matches_reference_weights_and_strides() -> None:
    net = pretrained("lite0")
    assert len(net._blocks) == 16
    assert [net.strides[t] for t in (4, 10, 15)] == [8, 16, 32]
    assert [net.channels[t] for t in (4, 10, 15)] == [40, 112, 320]
    assert len(EfficientNetLite("lite1")._blocks) == 21
    with pytest.raises(ValueError, match="variant"):
        EfficientNetLite("lite9")


@pytest.mark.parametrize("n, h, w", SHAPES)
def test_output_is_a_log_density_at_stride_8(small_net: deepgaze.SaliencyNet, n: int, h: int, w: int) -> None:
    with torch.no_grad():
        out = small_net(torch.randn(n, 3, h, w))
    assert out.shape == (n, 1, h // 8, w // 8)
    np.testing.assert_allclose(out.exp().sum((1, 2, 3)).numpy(), 1.0, rtol=1e-5)


def test_a_stride_4_tap_sets_a_finer_output_grid() -> None:
    torch.manual_seed(0)
    net = deepgaze.create(taps=(2, 4, 10, 15), imagenet=False).eval()
    coarse = deepgaze.create(imagenet=False).eval()
    assert net.stride == deepgaze.output_stride("lite0", (2, 4, 10, 15)) == 4 and coarse.stride == 8
    with torch.no_grad():
        out = net(torch.randn(2, 3, 96, 128))
    assert out.shape == (2, 1, 24, 32)
    np.testing.assert_allclose(out.exp().sum((1, 2, 3)).numpy(), 1.0, rtol=1e-5)
    # The blur starts as wide, and reaches as far, in image pixels as on the stride-8 grid.
    fine_ro, coarse_ro = net.readout, coarse.readout
    assert fine_ro.radius * net.stride == coarse_ro.radius * coarse.stride
    assert (torch.exp(fine_ro.log_blur).item() * net.stride
            == pytest.approx(torch.exp(coarse_ro.log_blur).item() * coarse.stride))
    with pytest.raises(ValueError, match="increasing"):
        deepgaze.create(taps=(4, 2, 10), imagenet=False)


def _receptive_centre(net: EfficientNetLite, tap: int, n: int) -> tuple[int, float, float]:
    """The middle cell k of a tap and the centroid (row, col) of its input gradient, every kernel uniform."""
    x = torch.full((1, 3, n, n), 1e-3, requires_grad=True)  # small: every ReLU6 stays linear
    feat = net(x, (tap,))[0]
    k = feat.shape[-1] // 2
    feat[0, :, k, k].sum().backward()
    g = x.grad[0].sum(0).double()
    pos = torch.arange(n, dtype=torch.float64)
    return k, float((g.sum(1) * pos).sum() / g.sum()), float((g.sum(0) * pos).sum() / g.sum())


def test_features_are_centred_on_pixel_stride_times_k() -> None:
    # The premise of the readout's alignment: with symmetric padding and symmetric (here uniform) kernels, a
    # stride-s feature k sees input pixels centred on s·k, not on its cell's middle s·k + (s - 1) / 2.
    net = EfficientNetLite("lite0").eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.fill_(1.0 / m.weight[0].numel())
            elif isinstance(m, torch.nn.BatchNorm2d):
                m.weight.fill_(1.0), m.bias.zero_(), m.running_mean.zero_(), m.running_var.fill_(1.0 - m.eps)
    for tap, stride in ((4, 8), (10, 16)):
        k, cy, cx = _receptive_centre(net, tap, 256)
        assert net.strides[tap] == stride
        # (not to 1e-3: the image border trims the far tail of the receptive field a little)
        assert cy == pytest.approx(stride * k, abs=0.05) and cx == pytest.approx(stride * k, abs=0.05)


def test_readout_reads_taps_and_cells_where_their_features_are_centred() -> None:
    # A stride-32 tap on the stride-8 grid: fine cell k reads coarse position k / 4, clamped past the last cell.
    coarse = torch.arange(3.0).view(1, 1, 1, 3).expand(1, 1, 2, 3)
    fine = deepgaze.upsample_corners(coarse, (8, 12))
    np.testing.assert_allclose(fine[0, 0, 0].numpy(), [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2, 2, 2, 2])
    np.testing.assert_allclose(fine[0, 0, :, 5].numpy(), 1.25)
    # Output cell k (pixels 8k ... 8k + 7) reads the logits at its middle, 7/16 of a cell past feature k.
    for stride in (8, 4):
        ro = deepgaze.Readout([8], stride=stride)
        k = ro.blur_kernel().detach().double()
        r = torch.arange(-ro.radius, ro.radius + 1, dtype=torch.float64)
        assert float((k * r).sum()) == pytest.approx((stride - 1) / (2 * stride), abs=1e-6)


def test_centre_prior_is_aspect_aware(small_net: deepgaze.SaliencyNet) -> None:
    ro = small_net.readout
    wide = ro.prior(torch.zeros(1, 1, 10, 40)).detach()
    tall = ro.prior(torch.zeros(1, 1, 40, 10)).detach()
    assert wide.shape == (10, 40) and torch.argmax(wide).item() in (4 * 40 + 19, 4 * 40 + 20, 5 * 40 + 19, 5 * 40 + 20)
    # Distances are measured in units of the longer side, so the prior of a 1:4 grid matches the square one.
    square = ro.prior(torch.zeros(1, 1, 40, 40)).detach()
    torch.testing.assert_close(wide, square[15:25, :])
    assert tall.shape == (40, 10)


def test_folding_keeps_outputs(small_net: deepgaze.SaliencyNet) -> None:
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        torch.testing.assert_close(deepgaze.fused(small_net)(x), small_net(x), atol=1e-4, rtol=0)


def test_weights_round_trip(small_net: deepgaze.SaliencyNet, tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    fine = deepgaze.create(taps=(2, 4, 10, 15), imagenet=False).eval()
    x = torch.randn(1, 3, 64, 96)
    for net in (small_net, fine):
        deepgaze.save(net, path)
        loaded = deepgaze.load(path)
        assert loaded.config() == net.config() and loaded.stride == net.stride
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), net(x), atol=0, rtol=0)
    with pytest.raises(ModelError, match="no weights"):
        deepgaze.load(tmp_path / "absent.safetensors")


def test_domain_calibration_flattens_and_mixes_in_the_centre_bias(tmp_path: Path) -> None:
    from engine.domain_calibration import calibrated
    from foveal.metrics import centre_bias_log_density
    from foveal.network.onnx_export import to_onnx

    torch.manual_seed(1)
    net = deepgaze.create(imagenet=False).eval()
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        plain = net(x)
        net.readout.temperature, net.readout.centre_mix = 0.8, 0.1
        got = net(x)
    assert torch.allclose(torch.logsumexp(got.flatten(1), 1), torch.zeros(2), atol=1e-5)
    # The graph computes on its grid what engine.domain_calibration scores at full resolution.
    centre = centre_bias_log_density(tuple(got.shape[-2:]))
    for k in range(2):
        want = calibrated(np.exp(plain[k, 0].double().numpy()), centre, 0.8, 0.1)
        np.testing.assert_allclose(np.exp(got[k, 0].double().numpy()), want, rtol=1e-4, atol=1e-9)
    # Stored in the weights, and baked into the exported graph.
    deepgaze.save(net, tmp_path / "w.safetensors")
    loaded = deepgaze.load(tmp_path / "w.safetensors")
    assert (loaded.readout.temperature, loaded.readout.centre_mix) == (0.8, 0.1)
    # A calibration no map survives is refused by the recipe before it writes, and by load() if a file holds one.
    before = (tmp_path / "w.safetensors").read_bytes()
    run = subprocess.run([sys.executable, "-m", "engine.domain_calibration", "apply", str(tmp_path / "w.safetensors"),
                          "--temperature", "nan", "--centre-mix", "5"], capture_output=True, text=True, timeout=120,
                         cwd=REPO, env={**os.environ, "PYTHONPATH": f"{FOVEAL_PATH}{os.pathsep}{REPO}"})
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith("error: domain calibration temperature nan, centre_mix 5.0: the temperature must")
    assert (tmp_path / "w.safetensors").read_bytes() == before
    net.readout.temperature = 0.0
    deepgaze.save(net, tmp_path / "zero.safetensors")
    with pytest.raises(ModelError, match="temperature must be a finite number > 0"):
        deepgaze.load(tmp_path / "zero.safetensors")
    card = {"input": {"name": "image", "pad_multiple": 32}, "output": {"name": "log_density", "stride": 8},
            "description": "calibrated"}
    sess = ort.InferenceSession(to_onnx(deepgaze.fused(loaded), card).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    (onnx_out,) = sess.run(None, {"image": x.numpy()})
    np.testing.assert_allclose(onnx_out, got.numpy(), atol=1e-4, rtol=0)


class _OneFixation:
    """The two methods of a Dataset that ``items_of`` reads: one image of ``shape`` fixated once at (x, y)."""

    def __init__(self, shape: tuple[int, int], x: float, y: float) -> None:
        self.shape_hw, self.fix = shape, Fixations.from_arrays([x], [y])

    def __len__(self) -> int:
        return 1

    def shape(self, i: int) -> tuple[int, int]:
        return self.shape_hw

    def fixations(self, i: int) -> Fixations:
        return self.fix


@pytest.mark.parametrize("shape", [(90, 728), (728, 90), (600, 800), (250, 300)])
def test_training_scores_a_fixation_where_the_runtime_map_puts_its_cell(shape: tuple[int, int]) -> None:
    # Training and the runtime must place the image on the padded grid alike: a grid that is high on exactly the
    # cell training bins a fixation into must give the runtime map's mass around that fixation.
    h, w = shape
    image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
    x, p = training.preprocess(image)
    runtime = layout(h, w, 384, 32, 8)
    assert p.offset_hw == runtime.offset_hw and p.resized_hw == runtime.resized_hw
    np.testing.assert_array_equal(x, cpu.preprocess(image, runtime.resized_hw, runtime.padded_hw, [127.0] * 3,
                                                    [128.0] * 3, runtime.offset_hw)[0])
    gh, gw = runtime.padded_hw[0] // 8, runtime.padded_hw[1] // 8
    for fx, fy in ((0.5, 0.5), (w - 1.0, h - 1.0), (w * 0.3, h * 0.7)):
        cache = {"resized": [p.resized_hw], "offset": [p.offset_hw],
                 "feats": [[{0: torch.zeros(1, gh, gw)}]]}
        (item,), = training.items_of(_OneFixation(shape, fx, fy), cache, (False,), 8)
        rows, cols = item.cells
        cell = int(item.fixation_cells[0])
        grid = np.full((gh, gw), -30.0, np.float32)
        grid[rows.start + cell // (cols.stop - cols.start), cols.start + cell % (cols.stop - cols.start)] = 0.0
        prob = cpu.postprocess(grid, (h, w), runtime.valid_hw, 0.0, runtime.origin_hw)
        py, px = np.unravel_index(np.argmax(prob), prob.shape)
        # The map's peak lies within half a cell (in image pixels) of the fixation.
        assert abs(py - fy) <= 4 * h / runtime.resized_hw[0] + 1 and abs(px - fx) <= 4 * w / runtime.resized_hw[1] + 1


@shipped
def test_shipped_card() -> None:
    card = load_card(NAME)
    raw = card.raw
    assert card.stride == deepgaze.load(NAME).stride and card.input.working_size == 384
    assert card.input.pad_multiple == 32
    assert card.input.mean == (127.0, 127.0, 127.0) and card.input.std == (128.0, 128.0, 128.0)
    assert card.onnx_path.stat().st_size <= 25 * 2**20
    assert (MODELS_DIR / f"{NAME}.safetensors").stat().st_size <= 16 * 2**20
    assert "Apache-2.0" in raw["licence"] and "MIT" in raw["licence"]
    training = raw["provenance"]["training"]
    assert {"split", "hyperparameters", "time_minutes", "val", "seed"} <= set(training)
    for split in ("osie-test", "scene-test"):
        assert {"CC", "NSS", "AUC-Judd"} <= set(raw["metrics"][split])


def test_a_fresh_export_carries_nothing_measured_on_the_shipped_graph() -> None:
    """engine.export copied the shipped card's int8/fp16 entries, metrics and scoring calibration onto a new graph:
    the default Engine then looked for an int8 file the export never wrote, and scoring named another graph."""
    fields = deepgaze.card_fields()
    assert not {"int8", "fp16", "scoring", "onnx", "sha256"} & set(fields) and fields["metrics"] == {}
    assert fields["input"] == load_card(NAME).raw["input"] and fields["name"] == NAME


@shipped
def test_shipped_onnx_matches_torch() -> None:
    import onnx
    model = onnx.load(str(MODELS_DIR / f"{NAME}.onnx"))
    assert model.opset_import[0].version >= 17
    net = deepgaze.load(NAME)
    sess = ort.InferenceSession(str(MODELS_DIR / f"{NAME}.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(2)
    for n, h, w in SHAPES:
        x = ((rng.integers(0, 256, (n, 3, h, w)) - 127.0) / 128.0).astype(np.float32)
        (got,) = sess.run(None, {"image": x})
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
        assert got.shape == (n, 1, h // net.stride, w // net.stride)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
