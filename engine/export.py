"""Export a registered network to ONNX with its model card.

    python -m engine.export itti-koch --out python/foveal/models/

writes ``<out>/<name>.onnx`` and ``<out>/<name>.json``.  The graph keeps batch, height and width dynamic (height
and width as multiples of the card's ``pad_multiple``); before anything is written, onnxruntime's output is
checked against torch's at several shapes, so a graph that silently specialised on the example size is caught.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch

from engine.cards import make_card, write_bytes_atomic, write_card

OPSET = 18
TOLERANCE = 1e-4


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


def to_onnx(network: torch.nn.Module, card: dict[str, Any]) -> onnx.ModelProto:
    """Trace ``network`` with torch.export (dynamo) into an ONNX graph with dynamic N, H, W."""
    multiple = card["input"]["pad_multiple"]
    batch = torch.export.Dim("batch", min=1)
    rows = torch.export.Dim("h", min=1)
    cols = torch.export.Dim("w", min=1)
    example = torch.rand(1, 3, 9 * multiple, 12 * multiple)
    program = torch.onnx.export(
        network,
        (example,),
        input_names=[card["input"]["name"]],
        output_names=[card["output"]["name"]],
        dynamic_shapes=({0: batch, 2: multiple * rows, 3: multiple * cols},),
        opset_version=OPSET,
        dynamo=True,
        optimize=True,
        external_data=False,
        verbose=False,
    )
    return _clean(program.model_proto, card)


def _clean(model: onnx.ModelProto, card: dict[str, Any]) -> onnx.ModelProto:
    """Drop exporter debris (per-node stack traces naming local paths, intermediate shapes) and name dims."""
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    del model.graph.value_info[:]
    # The output is the input divided by the stride: "32*h" rows in → "2*h" cells out for stride 16.
    cells_per_multiple = card["input"]["pad_multiple"] // card["output"]["stride"]
    dims = model.graph.output[0].type.tensor_type.shape.dim
    for dim, param in zip(dims, ("batch", None, f"{cells_per_multiple}*h", f"{cells_per_multiple}*w")):
        if param is not None:
            dim.dim_param = param
    model.doc_string = card["description"]
    onnx.checker.check_model(model, full_check=True)
    return model


def verify(network: torch.nn.Module, model_bytes: bytes, card: dict[str, Any]) -> float:
    """Largest |onnxruntime - torch| over shapes that exercise the dynamic axes; raises past ``TOLERANCE``."""
    multiple = card["input"]["pad_multiple"]
    stride = card["output"]["stride"]
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, rows, cols in ((1, 9, 12), (2, 3, 12), (1, 12, 3), (1, 1, 1)):
        image = rng.random((batch, 3, rows * multiple, cols * multiple), dtype=np.float32)
        (got,) = session.run(None, {card["input"]["name"]: image})
        with torch.no_grad():
            want = network(torch.from_numpy(image)).numpy()
        expected_shape = (batch, 1, rows * multiple // stride, cols * multiple // stride)
        if got.shape != expected_shape or want.shape != expected_shape:
            raise RuntimeError(f"output shape {got.shape} (torch {want.shape}) for input {image.shape}, "
                               f"expected {expected_shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > TOLERANCE:
        raise RuntimeError(f"onnxruntime and torch differ by {worst:.3g} > {TOLERANCE}")
    return worst


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
    sys.exit(main())
