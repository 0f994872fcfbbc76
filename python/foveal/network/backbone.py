"""EfficientNet-Lite0/1 feature extractor, defined against the published state-dict keys.

EfficientNet-Lite (Tan & Le 2019, the TF-Lite variant) drops squeeze-excitation, uses ReLU6, and keeps the stem
(32 channels) and head fixed across scales.  We use symmetric ``k // 2`` padding instead of TF "SAME" padding so
the network runs on any input whose sides are multiples of 32 and exports to ONNX with dynamic height/width; the
pretrained weights tolerate the half-pixel shift per stride-2 layer.  With this padding a block of stride s
centres its output k on input pixel s·k (``foveal.network.deepgaze`` aligns its readout to that).

Inputs are normalised TF-Lite style: ``(rgb - 127) / 128``. The ImageNet weights training starts from are loaded by
``engine.backbone.pretrained`` (a training dependency); the package only needs the architecture.
"""
from __future__ import annotations

import torch
from torch import nn

# (repeats, kernel, stride, expand ratio, out channels) per stage, EfficientNet-B0 layout; Lite1 repeats more.
_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]
_REPEATS = {"lite0": [1, 2, 2, 3, 3, 4, 1], "lite1": [1, 3, 3, 4, 4, 5, 1]}
MEAN, STD = 127.0, 128.0


def block_strides(variant: str = "lite0") -> list[int]:
    """Input pixels per output cell of each block (its index in ``EfficientNetLite._blocks``)."""
    if variant not in _REPEATS:
        raise ValueError(f"variant must be one of {sorted(_REPEATS)}, got {variant!r}")
    out, total = [], 2  # the stem halves the input
    for (_, _, s, _, _), reps in zip(_STAGES, _REPEATS[variant]):
        total *= s
        out += [total] * reps
    return out


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (parameter names match the reference weights)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = torch.clamp(self._bn0(self._expand_conv(y)), 0.0, 6.0)
        y = torch.clamp(self._bn1(self._depthwise_conv(y)), 0.0, 6.0)
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """Stem + MBConv blocks of EfficientNet-Lite; ``forward`` returns the outputs of the requested blocks."""

    def __init__(self, variant: str = "lite0") -> None:
        super().__init__()
        self.strides = block_strides(variant)  # also refuses an unknown variant
        self.variant = variant
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks, cin, self.channels = [], 32, []
        for (_, k, s, e, cout), reps in zip(_STAGES, _REPEATS[variant]):
            for r in range(reps):
                blocks.append(MBConv(cin, cout, k, s if r == 0 else 1, e))
                self.channels.append(cout)
                cin = cout
        self._blocks = nn.ModuleList(blocks)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self._bn0(self._conv_stem(x)), 0.0, 6.0)

    def run(self, x: torch.Tensor, start: int, stop: int, taps: tuple[int, ...]) -> dict[int, torch.Tensor]:
        """Apply blocks ``start..stop-1`` to ``x`` (the output of block ``start-1``); keep outputs of ``taps``."""
        out = {}
        for i in range(start, stop):
            x = self._blocks[i](x)
            if i in taps:
                out[i] = x
        return out

    def forward(self, x: torch.Tensor, taps: tuple[int, ...]) -> list[torch.Tensor]:
        got = self.run(self.stem(x), 0, max(taps) + 1, taps)
        return [got[t] for t in taps]
