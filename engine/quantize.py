"""Reduced-precision graphs of a shipped model: int8 for ONNX Runtime's CPU provider, fp16 for TensorRT.

    python -m engine.quantize foveal-lite0 --data ../shared/data

writes, beside the model's fp32 graph in ``python/foveal/models/``:

* ``<name>.int8.onnx``: :func:`foveal.network.quantize.int8_graph` (ONNX Runtime static quantisation in QDQ
  format, the stem, the first blocks and the readout kept in float), activation ranges calibrated on OSIE and
  Scene *train* images through the runtime's own preprocessing.  ONNX Runtime's CPU provider runs the rest with
  integer convolutions (docs/MODEL.md, "Reduced-precision graphs", gives its speed and agreement).
* ``<name>.fp16.onnx``: the same graph with fp16 weights and arithmetic, float32 input and output.  TensorRT 11
  and TensorRT for RTX are strongly typed (a network runs in the types its graph declares), so this graph is
  how they run FP16; TensorRT 10 may use it or its FP16 builder flag alike.

Each is recorded in the model card under its precision (file, sha256, how it was made) with its metrics on the
val and test splits (docs/MODEL_CONTRACT.md) and its agreement with the fp32 graph in attention shares
(engine/share_agreement.py, the tolerance it is held to).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnx

from engine.cards import write_bytes_atomic, write_card
from engine.features import preprocess
from engine.share_agreement import MEDIAN_TOLERANCE_PP, TOLERANCE_PP, example_agreement, val_agreement
from foveal import Engine
from foveal.datasets import load_osie, load_scene
from foveal.evaluate import evaluate
from foveal.models import ModelCard, file_sha256, load_card
from foveal.network.quantize import FORMAT, int8_graph
from engine import run_main

# The source tree's model folder (not the installed package's): what --ship and engine.export write to.
MODELS_DIR = Path(__file__).resolve().parents[1] / "python" / "foveal" / "models"

# Calibration images: every k-th train image of each dataset (the split's order is already a seeded shuffle).
CALIBRATION = {"osie": 20, "scene": 10}

def calibration_inputs(data: Path, working_size: int, pad_multiple: int) -> list[np.ndarray]:
    """1×3×H×W float32 network inputs for the calibration images, preprocessed as at run time."""
    inputs = []
    for name, loader in (("osie", load_osie), ("scene", load_scene)):
        train = loader(data / name).split("train")
        step = len(train) // CALIBRATION[name]
        for i in range(0, step * CALIBRATION[name], step):
            inputs.append(preprocess(train.image(i), working_size, pad_multiple)[0][None])
    return inputs


def to_int8(card: ModelCard, data: Path) -> tuple[bytes, dict]:
    """The int8 QDQ graph of ``card`` and how it was made."""
    spec = card.input
    graph = int8_graph(card.onnx_path, spec.name, calibration_inputs(data, spec.working_size, spec.pad_multiple))
    return graph, {
        "format": FORMAT,
        "calibration": f"{CALIBRATION['osie']} OSIE + {CALIBRATION['scene']} NUS Scene train images "
                       "(evenly spaced in each train split), at the working size",
    }


def to_fp16(card: ModelCard) -> tuple[bytes, dict]:
    """The fp16 graph of ``card`` (float32 input and output kept) and how it was made."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    graph = convert_float_to_float16(onnx.load(str(card.onnx_path)), keep_io_types=True)
    return graph.SerializeToString(), {
        "format": "ONNX fp16 weights and activations, float32 input and output (onnxruntime.transformers.float16, "
                  "keep_io_types)",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.quantize", description=__doc__.split("\n")[0])
    p.add_argument("model", help="a shipped model's name, e.g. foveal-lite0")
    p.add_argument("--data", type=Path, required=True, help="folder holding osie/ and scene/")
    p.add_argument("--precision", choices=("int8", "fp16"), action="append",
                   help="make only this graph (repeatable; default: both)")
    args = p.parse_args(argv)

    card_path = MODELS_DIR / f"{args.model}.json"
    card = load_card(card_path)
    raw = json.loads(card_path.read_text(encoding="utf-8"))
    datasets = {"osie": load_osie(args.data / "osie"), "scene": load_scene(args.data / "scene")}
    makers = {"int8": lambda: to_int8(card, args.data), "fp16": lambda: to_fp16(card)}
    for precision in args.precision or list(makers):
        t0 = time.time()
        graph, how = makers[precision]()
        target = card_path.parent / f"{card.name}.{precision}.onnx"
        old = raw.get(precision, {})
        write_bytes_atomic(target, graph)
        raw[precision] = entry = {"onnx": target.name, "sha256": file_sha256(target), **how,
                                  "command": f"python -m engine.quantize {args.model} --data {args.data}"}
        write_card(raw, card_path)
        print(f"{target} ({target.stat().st_size / 1e6:.1f} MB) in {time.time() - t0:.0f} s")
        engine = Engine(str(card_path), device="cpu", precision=precision)
        if old.get("sha256") == entry["sha256"] and "metrics" in old:
            # The same graph as before: its scores stand, and the test split is not scored again.
            entry.update({k: old[k] for k in ("metrics_val", "metrics")})
        else:
            for split, key in (("val", "metrics_val"), ("test", "metrics")):
                entry[key] = {}
                for name, ds in datasets.items():
                    result = evaluate(engine, ds, split=split, progress=False)
                    entry[key][f"{name}-{split}"] = values = {k: round(float(v), 4)
                                                              for k, v in result.aggregate.items()}
                    print(f"  {precision} {name}-{split}: " + ", ".join(f"{k} {v}" for k, v in values.items()))
        engines = {precision: engine}
        entry["share_agreement"] = {
            "unit": "|share - fp32 share|, percentage points (engine/share_agreement.py)",
            "tolerance_pp": {"max": TOLERANCE_PP[precision], "median": MEDIAN_TOLERANCE_PP[precision]},
            "example_creatives": example_agreement(args.model, engines)[precision].summary(),
            "val_grid_cells": val_agreement(args.model, engines, args.data)[precision].summary(),
        }
        print(f"  {precision} share agreement: {entry['share_agreement']}")
        write_card(raw, card_path)
    return 0


if __name__ == "__main__":
    run_main(main)
