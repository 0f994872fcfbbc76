"""Training and export helpers for foveal's learned network (defined in ``foveal.network.deepgaze``).

A fresh network with ImageNet backbone weights and the registry hooks ``engine.export`` calls. ``SaliencyNet``,
``Readout``, ``load``, ``save`` and the other definitions are imported from the package (BatchNorm folding from
``foveal.network.onnx_export``), so training, export, fine-tuning and the torch backend share one definition.
"""
from __future__ import annotations

import json
from pathlib import Path

from engine.backbone import pretrained
from foveal.network.deepgaze import (BLUR_STRIDE, Readout, SaliencyNet, load, output_stride, save,  # noqa: F401
                                     upsample_corners)
from foveal.network.onnx_export import fold_backbone, fused  # noqa: F401


def create(variant: str = "lite0", taps: tuple[int, ...] = (4, 10, 15), hidden: tuple[int, ...] = (16, 16),
          imagenet: bool = True) -> SaliencyNet:
    """A fresh network, with ImageNet backbone weights when ``imagenet``."""
    return SaliencyNet(variant, taps, hidden, pretrained(variant) if imagenet else None)


# engine/export.py registry hooks: re-export the shipped model from its shipped weights and card.
SHIPPED = "foveal-lite0"


def build() -> SaliencyNet:
    """The shipped network, BatchNorm folded, ready to export."""
    return fused(load(SHIPPED))


def card_fields() -> dict:
    """The shipped card's own fields (export regenerates file name, sha256 and export provenance). What belongs to
    the shipped graph's bytes is left out: its int8/fp16 variants, metrics and scoring calibration are measured
    again on the new graph (engine.quantize, foveal eval, engine.calibrate_scoring)."""
    import foveal
    card = json.loads((Path(foveal.__file__).parent / "models" / f"{SHIPPED}.json").read_text(encoding="utf-8"))
    for key in ("onnx", "sha256", "int8", "fp16", "scoring"):
        card.pop(key, None)
    card["metrics"] = {}
    card["provenance"] = {k: v for k, v in card["provenance"].items() if k in ("source", "training")}
    return card
