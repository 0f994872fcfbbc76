"""Calibrate a model's scoring thresholds on OSIE train and write them into its card's ``"scoring"``.

    python -m engine.calibrate_scoring python/foveal/models/foveal-lite0.json --data ../shared/data [--images 120]

``low_focus_top10`` is the 10th percentile of ``top10_share`` (the attention on the most-attended tenth of the
pixels) over the first ``--images`` OSIE **train** images (foveal.datasets' fixed split, in index order) under the
card's fp32 graph, so the ``low_focus`` recommendation flags about the most scattered tenth of natural photos
whatever the model's sharpness.  The median and the graph's sha256 are recorded beside it.  Run it again when the
model's graph changes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from foveal.datasets import load_osie
from foveal.engine import Engine
from foveal.scoring.scores import top_share

from engine.cards import write_bytes_atomic
from engine import run_main
from foveal.cli import int_arg

PERCENTILE = 10.0


def calibrate(card_path: Path, data: Path, images: int, batch_size: int = 8) -> dict:
    """The card's ``"scoring"`` entry, measured on the graph the card describes (not a shipped model that has
    the same file name)."""
    onnx = json.loads(card_path.read_text(encoding="utf-8")).get("onnx", card_path.with_suffix(".onnx").name)
    engine = Engine(str(card_path.parent / onnx), precision="fp32")
    train = load_osie(data / "osie").split("train")
    n = min(images, len(train))
    shares = []
    for start in range(0, n, batch_size):
        maps = engine.predict_batch([train.path(i) for i in range(start, min(n, start + batch_size))])
        shares += [top_share(m.prob) for m in maps]
    values = np.asarray(shares)
    return {
        "low_focus_top10": round(float(np.percentile(values, PERCENTILE)), 3),
        "calibration": {
            "quantity": "top10_share",
            "percentile": PERCENTILE,
            "median": round(float(np.median(values)), 3),
            "images": f"first {n} OSIE train images (foveal.datasets split, index order)",
            "graph_sha256": engine.graph_sha256,
            "precision": engine.precision,
            "command": f"python -m engine.calibrate_scoring {card_path.as_posix()} --images {images}",
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("card", type=Path, help="the model card (JSON) beside a shipped model")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--images", type=int_arg(1), default=120)
    args = parser.parse_args(argv)
    card = json.loads(args.card.read_text(encoding="utf-8"))
    scoring = calibrate(args.card, args.data, args.images)
    # Placed after "postprocess" (the read-out it depends on), not at the end where graph variants are listed.
    card.pop("scoring", None)
    items = list(card.items())
    at = next((i + 1 for i, (k, _) in enumerate(items) if k == "postprocess"), len(items))
    card = dict(items[:at] + [("scoring", scoring)] + items[at:])
    write_bytes_atomic(args.card, (json.dumps(card, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))
    print(json.dumps(card["scoring"], indent=2), file=sys.stderr)
    return 0


if __name__ == "__main__":
    run_main(main)
