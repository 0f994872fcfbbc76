"""Itti–Koch–Niebur bottom-up saliency as a fixed-filter torch network.

Itti, Koch & Niebur (1998), "A model of saliency-based visual attention for rapid scene analysis",
IEEE TPAMI 20(11):1254-1259.  Section numbers below refer to that paper.

Pipeline (image x in [0, 1], NCHW RGB, H and W multiples of 32):

1. Channels (sec. 2.1): intensity I = (r+g+b)/3; r, g, b divided by I where I > max(I)/10 (zero elsewhere,
   hue is not perceivable there); broadly tuned R, G, B, Y clipped at zero.
2. Dyadic Gaussian pyramids, levels 0..8, 5-tap [1,4,6,4,1]/16 separable low-pass then subsampling by 2.
   Edges are replicated before each blur, so a level's size is ceil(previous / 2) and sizes never reach 0.
   The pyramids of R-G and B-Y equal the differences of the R, G, B, Y pyramids because blurring and
   subsampling are linear, so only the two opponent pyramids are built.
3. Orientation O(σ, θ), θ ∈ {0°, 45°, 90°, 135°}: Gabor filters on each intensity level (the paper's
   oriented Gabor pyramids).  Like SaliencyToolbox we filter with both phases, 0° and 90°, and take the
   modulus of the pair, the phase-invariant orientation energy: a bar then gives one smooth peak instead of
   a centre and two side lobes, which N(.) would count as extra maxima.
4. Centre–surround (sec. 2.1): c ∈ {2, 3, 4}, s = c + δ, δ ∈ {3, 4}; the surround is bilinearly
   interpolated to the centre's size and |centre - surround| taken: 6 intensity, 12 colour (RG, BY
   double-opponent) and 24 orientation feature maps.  The paper prints RG(c,s) = |(R(c)-G(c)) ⊖ (G(s)-R(s))|,
   the surround's opposite sign written into the term; subtracting it literally would sum centre and surround
   and reward uniform colour, so the map is |RG(c) ⊖ RG(s)|, the double-opponent contrast the text describes.
5. N(.) (sec. 2.2) on every feature map, across-scale addition at level 4 (stride 16), conspicuity maps
   Ī, C̄, Ō, and S = (N(Ī) + N(C̄) + N(Ō)) / 3.
6. Read-out (not part of the 1998 model): a log-density for fixation prediction,
   ``contrast * log(blur(S) + epsilon) + log centre prior``; see :class:`Readout`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

CENTRE_LEVELS = (2, 3, 4)
SURROUND_DELTAS = (3, 4)
MAP_LEVEL = 4  # the saliency map's scale (σ = 4 in the paper): stride 2**4 = 16
STRIDE = 2**MAP_LEVEL
PAD_MULTIPLE = 32
GABOR_ANGLES_DEG = (0.0, 45.0, 90.0, 135.0)
# SaliencyToolbox's defaults (Walther & Koch 2006, defaultGaborParams) at every pyramid level: period 7 px,
# 9×9 kernel, envelope σ 2.33 px, elongation 1 (round envelope).
GABOR_SIZE = 9
GABOR_PERIOD = 7.0
GABOR_SIGMA = 7.0 / 3.0
# Colour is undefined where the image is dark: below this fraction of the image's maximum intensity.
HUE_INTENSITY_FRACTION = 0.1
# N(.): local maxima below this fraction of the map's range are ignored (SaliencyToolbox uses 1/10).
LOCAL_MAX_FRACTION = 0.1
# N(.) treats a map whose maximum is below this as empty (all zero) instead of stretching it to [0, M]:
# float round-off in a uniform image would otherwise become full-range structure, and each later N(.) stage
# would amplify it again.  For feature maps 1e-3 of full intensity is a quarter of one grey level; sums of
# normalised maps below 1e-3 are negligible next to maps that reach M = 1.
NORM_FLOOR = 1e-3
# Tolerance of the local-maximum test, so near-ties (replicated padding) decide the same way in torch and in
# onnxruntime, whose float rounding differs by about 1e-7.
TIE_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Readout:
    """Turns S into a log-density: ``contrast * log(blur(S) + epsilon) + log centre prior``.

    ``blur_sigma`` is in output cells (stride 16), 0 for none.  The centre prior is a Gaussian in normalised
    coordinates (u, v in [-1/2, 1/2] across the padded input's width and height, so it follows the aspect
    ratio) with standard deviation ``prior_sigma``; it is a fixation-prediction convention, not Itti 1998.
    """

    contrast: float
    epsilon: float
    blur_sigma: float
    prior_sigma: float


# Chosen by ``python -m engine.tune_itti_koch --images 200`` (3.5 CPU-minutes); its report
# (engine.itti_koch.TUNING) is shipped in the card's provenance.  The epsilon grid stops at 1e-3 on purpose: a
# smaller epsilon lets the log magnify float32 round-off in S (about 1e-7) past the 1e-4 agreement foveal asks of
# every backend.
TUNED = Readout(contrast=1.5, epsilon=0.001, blur_sigma=0.0, prior_sigma=0.25)



def _binomial_kernel() -> torch.Tensor:
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0])
    return taps / taps.sum()


def _gabor_bank() -> torch.Tensor:
    """(8, 1, size, size): zero-mean cosine Gabors for the four angles, then the matching sine Gabors.

    Each pair shares one scale, the cosine kernel's L1 norm, so its modulus is phase-invariant.
    """
    half = GABOR_SIZE // 2
    coords = torch.arange(-half, half + 1, dtype=torch.float64)
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    envelope = torch.exp(-(x**2 + y**2) / (2 * GABOR_SIGMA**2))
    cosines, sines = [], []
    for angle in GABOR_ANGLES_DEG:
        theta = math.radians(angle)
        # Image y points down; the grating varies across the preferred orientation θ (0° = horizontal).
        phase = 2 * math.pi * (-x * math.sin(theta) + y * math.cos(theta)) / GABOR_PERIOD
        cosine = envelope * torch.cos(phase)
        cosine = cosine - envelope * cosine.sum() / envelope.sum()  # no response to uniform light
        scale = cosine.abs().sum()
        cosines.append(cosine / scale)
        sines.append(envelope * torch.sin(phase) / scale)  # odd, so already zero-mean
    return torch.stack(cosines + sines).unsqueeze(1).float()


def _gaussian_taps(sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    taps = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (taps / taps.sum()).float()


def _separable(x: torch.Tensor, taps: torch.Tensor, stride: int) -> torch.Tensor:
    """Depthwise separable filter of every channel with edge replication, then subsampling by ``stride``."""
    channels = x.shape[1]
    radius = taps.numel() // 2
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    row = taps.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    col = taps.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    x = F.conv2d(x, row, stride=(1, stride), groups=channels)
    return F.conv2d(x, col, stride=(stride, 1), groups=channels)


def _resize_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Bilinear interpolation of ``x`` to the spatial size of ``like`` (dynamic: ONNX Resize on Shape)."""
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


def normalize(maps: torch.Tensor) -> torch.Tensor:
    """The map normalisation operator N(.) of sec. 2.2, applied to each channel of (N, C, H, W) on its own.

    Scale to [0, M] with M = 1, find the mean m̄ of the local maxima other than the global one (3×3
    neighbourhood, at least ``LOCAL_MAX_FRACTION`` of M), multiply by (M - m̄)².  A map with a single peak
    keeps it; a map with many comparable peaks is suppressed.  Maps peaking below ``NORM_FLOOR`` become 0.
    """
    peak = maps.amax(dim=(2, 3), keepdim=True)
    scaled = torch.where(peak >= NORM_FLOOR, maps / peak.clamp(min=NORM_FLOOR), torch.zeros_like(maps))
    neighbourhood_max = F.max_pool2d(scaled, kernel_size=3, stride=1, padding=1)
    is_other_max = (
        (scaled >= neighbourhood_max - TIE_TOLERANCE)
        & (scaled >= LOCAL_MAX_FRACTION)
        & (scaled < 1.0 - TIE_TOLERANCE)
    ).to(maps.dtype)
    count = is_other_max.sum(dim=(2, 3), keepdim=True)
    mean_other = (scaled * is_other_max).sum(dim=(2, 3), keepdim=True) / count.clamp(min=1.0)
    return scaled * (1.0 - mean_other) ** 2


class IttiKoch(nn.Module):
    """Itti–Koch–Niebur saliency: float32 (N, 3, H, W) RGB in [0, 1] → (N, 1, H/16, W/16) log-density."""

    def __init__(self, readout: Readout = TUNED) -> None:
        super().__init__()
        self.readout = readout
        self.register_buffer("binomial", _binomial_kernel(), persistent=False)
        self.register_buffer("gabor", _gabor_bank(), persistent=False)
        blur = _gaussian_taps(readout.blur_sigma) if readout.blur_sigma > 0 else torch.ones(1)
        self.register_buffer("readout_blur", blur, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.log_density(self.saliency(image))

    def saliency(self, image: torch.Tensor) -> torch.Tensor:
        """The saliency map S of sec. 2.3 at level 4, (N, 1, H/16, W/16), values in [0, 1]."""
        features = self._feature_levels(image)
        at_map_level = []
        for centre in CENTRE_LEVELS:
            for delta in SURROUND_DELTAS:
                surround = _resize_to(features[centre + delta], features[centre])
                maps = normalize((features[centre] - surround).abs())
                for _ in range(MAP_LEVEL - centre):  # across-scale addition happens at the map level
                    maps = _separable(maps, self.binomial, stride=2)
                at_map_level.append(maps)
        sums = torch.stack(at_map_level).sum(dim=0)
        intensity = sums[:, 0:1]
        colour = sums[:, 1:2] + sums[:, 2:3]
        orientation = normalize(sums[:, 3:7]).sum(dim=1, keepdim=True)
        conspicuity = torch.cat([intensity, colour, orientation], dim=1)
        return normalize(conspicuity).mean(dim=1, keepdim=True)

    def log_density(self, salience: torch.Tensor) -> torch.Tensor:
        """The read-out: ``contrast * log(blur(S) + epsilon) + log centre prior``."""
        readout = self.readout
        if readout.blur_sigma > 0:
            salience = _separable(salience, self.readout_blur, stride=1)
        height, width = salience.shape[-2:]
        v = (torch.arange(height, dtype=salience.dtype) + 0.5) / height - 0.5
        u = (torch.arange(width, dtype=salience.dtype) + 0.5) / width - 0.5
        log_prior = -(v.view(-1, 1) ** 2 + u.view(1, -1) ** 2) / (2 * readout.prior_sigma**2)
        return readout.contrast * torch.log(salience + readout.epsilon) + log_prior

    def _feature_levels(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Per level σ = 0..8: (N, 7, ·, ·) stacks [I, R-G, B-Y, O0, O45, O90, O135]; orientation from σ=2 on."""
        red, green, blue = image[:, 0:1], image[:, 1:2], image[:, 2:3]
        intensity = (red + green + blue) / 3.0
        # Hue is normalised by intensity to decouple it from brightness, only where there is enough light.
        lit = intensity > HUE_INTENSITY_FRACTION * intensity.amax(dim=(2, 3), keepdim=True)
        gain = torch.where(lit, 1.0 / intensity.clamp(min=1e-6), torch.zeros_like(intensity))
        r, g, b = red * gain, green * gain, blue * gain
        tuned_r = (r - (g + b) / 2).clamp(min=0)
        tuned_g = (g - (r + b) / 2).clamp(min=0)
        tuned_b = (b - (r + g) / 2).clamp(min=0)
        tuned_y = ((r + g) / 2 - (r - g).abs() / 2 - b).clamp(min=0)
        level = torch.cat([intensity, tuned_r - tuned_g, tuned_b - tuned_y], dim=1)
        levels = []
        for sigma in range(CENTRE_LEVELS[-1] + SURROUND_DELTAS[-1] + 1):
            if sigma > 0:
                level = _separable(level, self.binomial, stride=2)
            if sigma < CENTRE_LEVELS[0]:
                levels.append(level)
                continue
            padded = F.pad(level[:, 0:1], (GABOR_SIZE // 2,) * 4, mode="replicate")
            responses = F.conv2d(padded, self.gabor)
            angles = len(GABOR_ANGLES_DEG)
            orientation = torch.sqrt(responses[:, :angles] ** 2 + responses[:, angles:] ** 2)
            levels.append(torch.cat([level, orientation], dim=1))
        return levels


def build(readout: Readout = TUNED) -> IttiKoch:
    """The exportable network, in eval mode."""
    return IttiKoch(readout).eval()


def readout_fields(readout: Readout = TUNED) -> dict[str, float]:
    """The read-out parameters as plain numbers, for the model card."""
    return asdict(readout)
