"""Training and export helpers for foveal's learned network (defined in ``foveal.network.deepgaze``).

A fresh network with ImageNet backbone weights, BatchNorm folding for export, weights I/O, and the registry hooks
``engine.export`` calls. ``SaliencyNet``, ``Readout``, ``load`` and the other definitions are imported from the
package, so training, export and the torch backend share one definition.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from engine.backbone import pretrained
from foveal.network.backbone import EfficientNetLite, MBConv
from foveal.network.deepgaze import (BLUR_STRIDE, Readout, SaliencyNet, load, output_stride,  # noqa: F401
                                     upsample_corners)


def create(variant: str = "lite0", taps: tuple[int, ...] = (4, 10, 15), hidden: tuple[int, ...] = (16, 16),
          imagenet: bool = True) -> SaliencyNet:
    """A fresh network, with ImageNet backbone weights when ``imagenet``."""
    return SaliencyNet(variant, taps, hidden, pretrained(variant) if imagenet else None)


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      groups=conv.groups, bias=True)
    fused.weight.data = conv.weight.data * scale.view(-1, 1, 1, 1)
    bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data = (bias - bn.running_mean) * scale + bn.bias
    return fused


def fold_backbone(bb: EfficientNetLite) -> EfficientNetLite:
    """Fold every BatchNorm of an eval-mode backbone into the convolution before it (in place)."""
    bb._conv_stem, bb._bn0 = _fold_bn(bb._conv_stem, bb._bn0), nn.Identity()
    for blk in bb._blocks:
        assert isinstance(blk, MBConv)
        if blk.expand:
            blk._expand_conv, blk._bn0 = _fold_bn(blk._expand_conv, blk._bn0), nn.Identity()
        blk._depthwise_conv, blk._bn1 = _fold_bn(blk._depthwise_conv, blk._bn1), nn.Identity()
        blk._project_conv, blk._bn2 = _fold_bn(blk._project_conv, blk._bn2), nn.Identity()
    return bb


def fused(model: SaliencyNet) -> SaliencyNet:
    """An inference copy with every BatchNorm and the feature normalisation folded into convolutions.

    Same outputs (to float rounding) as ``model.eval()``, fewer nodes for ONNX Runtime.
    """
    m = copy.deepcopy(model).eval()
    fold_backbone(m.backbone)
    ro = m.readout
    offset = 0
    with torch.no_grad():
        for k, conv in enumerate(ro.project):
            c = conv.in_channels
            mean, std = ro.mean[offset:offset + c], ro.std[offset:offset + c]
            offset += c
            w = conv.weight / std.view(1, -1, 1, 1)
            shift = -(w[:, :, 0, 0] * mean).sum(1)
            new = nn.Conv2d(c, conv.out_channels, 1, bias=True)
            new.weight.copy_(w)
            new.bias.copy_(shift + (conv.bias if conv.bias is not None else 0.0))
            ro.project[k] = new
        ro.mean.zero_()
        ro.std.fill_(1.0)
    return m


def save(model: SaliencyNet, path: str | Path) -> None:
    """Write weights (float32) + config to a safetensors file."""
    from safetensors.torch import save_file
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if "num_batches" not in k}
    save_file(state, str(path), metadata={"foveal": json.dumps(model.config())})


# engine/export.py registry hooks: re-export the shipped model from its shipped weights and card.
SHIPPED = "foveal-lite0"


def build() -> SaliencyNet:
    """The shipped network, BatchNorm folded, ready to export."""
    return fused(load(SHIPPED))


def card_fields() -> dict:
    """The shipped card's own fields (export regenerates file name, sha256 and export provenance)."""
    import foveal
    card = json.loads((Path(foveal.__file__).parent / "models" / f"{SHIPPED}.json").read_text(encoding="utf-8"))
    for key in ("onnx", "sha256"):
        card.pop(key, None)
    card["provenance"] = {k: v for k, v in card["provenance"].items() if k in ("source", "training")}
    return card
