"""Score trained weights on val whole images, val banner strips and val letterboxed photos, own dataset and the
other one.

    python -m engine.layout_study --data ../shared/data --trained-on osie \\
        --weights plain=runs/a/osie-lite0.safetensors --weights strips=runs/b/osie-lite0.safetensors

Each weights file (a ``python -m engine.train --val-only`` run) gets the shipped model's domain calibration (read from its weights) and is
exported to a temporary folder, then scored through the runtime (fp32) on the val split of every dataset: whole
images (``foveal eval``'s metrics), banner strips (``engine.layouts.banner_strips``) and the photos on three ad
canvases (``engine.layouts.letterboxed_views``), the last two by IG and NSS. Paired differences against the
first weights are over the same images, strips or canvases. No test split is read.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from engine import deepgaze
from engine.intervals import paired_interval
from engine.layouts import banner_strips, letterboxed_views
from engine.train import export
from foveal import Engine
from foveal import metrics as M
from foveal.datasets import load_dataset
from foveal.evaluate import evaluate
from engine import run_main

LAYOUTS = {"strips": banner_strips, "letterbox": letterboxed_views}


def layout_scores(engine: Engine, data: Path, name: str, layout: str) -> np.ndarray:
    """(IG, NSS) per view of ``layout`` (:data:`LAYOUTS`) of the val images of dataset ``name``."""
    rows = []
    for pixels, xs, ys in LAYOUTS[layout](load_dataset(data / name).split("val")):
        prob = engine.predict(pixels).prob.astype(np.float64)
        rows.append((M.information_gain(prob, M.centre_bias_log_density(pixels.shape[:2]), xs, ys),
                     M.nss(prob, xs, ys)))
    return np.array(rows)


def paired(d: np.ndarray) -> str:
    mean, lo, hi = paired_interval(d)
    return f"{mean:+.3f} ({lo:+.3f} to {hi:+.3f})"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m engine.layout_study", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding osie/ and scene/")
    p.add_argument("--trained-on", required=True,
                   help="the dataset(s) the weights were trained on, comma-separated (for the labels)")
    p.add_argument("--weights", action="append", required=True, metavar="LABEL=SAFETENSORS")
    args = p.parse_args(argv)
    runs = dict(w.split("=", 1) for w in args.weights)
    trained_on = args.trained_on.split(",")
    shipped = deepgaze.load("foveal-lite0").readout
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, weights in runs.items():
            net = deepgaze.load(Path(weights))
            net.readout.temperature, net.readout.centre_mix = shipped.temperature, shipped.centre_mix
            out = Path(tmp) / label
            out.mkdir()
            training = {"data": {name: weights for name in trained_on}, "working_size": 384}
            onnx_path, _ = export(net.eval(), out, f"{'-'.join(trained_on)}-{label}", "0.0.0-study", training)
            engine = Engine(str(onnx_path), precision="fp32")
            results[label] = {}
            for name in ("osie", "scene"):
                whole = evaluate(engine, load_dataset(args.data / name), split="val", progress=False)
                results[label][name] = (whole, {k: layout_scores(engine, args.data, name, k) for k in LAYOUTS})
    first = next(iter(runs))
    for name in ("osie", "scene"):
        where = "own" if name in trained_on else "cross"
        for label, by in results.items():
            whole, views = by[name]
            a = whole.aggregate
            line = (f"{name} val ({where}) {label}: whole IG {a['IG']:.3f} NSS {a['NSS']:.3f} CC {a['CC']:.3f} "
                    f"KLD {a['KLD']:.3f}" + "".join(f"; {len(v)} {k} IG {v[:, 0].mean():.3f} NSS {v[:, 1].mean():.3f}"
                                                   for k, v in views.items()))
            if label != first:
                base_whole, base_views = results[first][name]
                line += (f"; vs {first}: whole IG {paired(whole.per_image['IG'] - base_whole.per_image['IG'])}"
                         + "".join(f", {k} IG {paired(v[:, 0] - base_views[k][:, 0])}" for k, v in views.items()))
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    run_main(main)
