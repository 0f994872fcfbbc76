"""Export a registered network to ONNX with its model card.

    python -m engine.export itti-koch --out python/foveal/models/

writes ``<out>/<name>.onnx`` and ``<out>/<name>.json``.  The graph keeps batch, height and width dynamic (height
and width as multiples of the card's ``pad_multiple``); before anything is written, onnxruntime's output is
checked against torch's at several shapes, so a graph that silently specialised on the example size is caught.
"""
from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from engine.cards import make_card, write_bytes_atomic, write_card
from foveal.network.onnx_export import OPSET, to_onnx, verify
from engine import run_main

@dataclass(frozen=True)
class Exportable:
    """A network that can be exported: how to build it (eval mode, weights loaded) and its card fields."""

    build: Callable[[], torch.nn.Module]
    card_fields: Callable[[], dict[str, Any]]


# name → module providing ``build()`` and ``card_fields()``; imported only when that model is exported.
REGISTRY: dict[str, str] = {"itti-koch": "engine.itti_koch", "foveal-lite0": "engine.deepgaze"}


def exportable(name: str) -> Exportable:
    """The registered network ``name``; KeyError listing the registered names otherwise."""
    if name not in REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(sorted(REGISTRY))}")
    module = importlib.import_module(REGISTRY[name])
    return Exportable(build=module.build, card_fields=module.card_fields)


def export(name: str, out: Path) -> tuple[Path, Path]:
    """Export model ``name`` into directory ``out``; returns the ONNX and card paths."""
    model = exportable(name)
    network = model.build()
    fields = model.card_fields()
    model_bytes = to_onnx(network, fields).SerializeToString()
    worst = verify(network, model_bytes, fields)
    onnx_path = out / f"{name}.onnx"
    card_path = out / f"{name}.json"
    write_bytes_atomic(onnx_path, model_bytes)
    exporter = f"torch {torch.__version__} dynamo exporter, opset {OPSET}; max |ort - torch| {worst:.1e}"
    write_card(make_card(fields, onnx_path, exporter), card_path)
    return onnx_path, card_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.export", description="Export a network to ONNX + card.")
    parser.add_argument("model", choices=sorted(REGISTRY), help="registered network")
    parser.add_argument("--out", type=Path, default=Path("python/foveal/models"), help="output directory")
    args = parser.parse_args(argv)
    onnx_path, card_path = export(args.model, args.out)
    print(f"{onnx_path} ({onnx_path.stat().st_size} bytes), {card_path}")
    return 0


if __name__ == "__main__":
    run_main(main)
