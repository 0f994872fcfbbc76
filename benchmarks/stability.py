"""How far element shares move when a creative is saved again, not redesigned: the noise floor of an A/B call.

    PYTHONPATH=python python benchmarks/stability.py [--synthetic 40] [--out stability.json]

``foveal compare`` calls a change of 0.5 pp material. A change can also come from how the creative was saved: the
same design as PNG and as JPEG, at two JPEG qualities, with one grey level of noise, or moved by one pixel is a
slightly different input, and the network's map moves with it. This measures, per element, the absolute change of
its share between a creative and each such re-rendering of it, on the fp32 graph (the one ``compare`` and
``whatif`` decide on) and the int8 graph (``score``'s), and how many element calls the 0.5 pp rule would make on a
difference that is only the rendering. Creatives: the example creatives (``examples/*.png``,
``examples/references/*.png``) and ``--synthetic N`` generated ones (``benchmarks/creatives.py``, true boxes; needs
../shared/data photos and fonts). Not run in CI.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from decision_agreement import Creative, example_creatives, synthetic_creatives  # noqa: E402

from foveal import Engine  # noqa: E402
from foveal.scoring.scores import MATERIAL_CHANGE  # noqa: E402


def _jpeg(pixels: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def renderings(seed: int) -> dict[str, Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]]:
    """Each: pixels -> (reference, re-rendering); the pair an A/B test would hold as A and B."""
    rng = np.random.default_rng(seed)

    def noise(p: np.ndarray) -> np.ndarray:
        return np.clip(p.astype(np.int16) + rng.integers(-1, 2, p.shape), 0, 255).astype(np.uint8)

    def shifted(p: np.ndarray) -> np.ndarray:  # one pixel right, the left column repeated
        return np.ascontiguousarray(np.concatenate([p[:, :1], p[:, :-1]], axis=1))

    return {
        "PNG vs JPEG q95": lambda p: (p, _jpeg(p, 95)),
        "PNG vs JPEG q90": lambda p: (p, _jpeg(p, 90)),
        "JPEG q90 vs q95": lambda p: (_jpeg(p, 90), _jpeg(p, 95)),
        "PNG vs +-1 grey level noise": lambda p: (p, noise(p)),
        "PNG vs moved 1 px": lambda p: (p, shifted(p)),
    }


def measure(engine: Engine, creatives: list[Creative], seed: int) -> dict[str, list[float]]:
    """Per rendering, every element's absolute share change in percentage points (boxes moved with a shift)."""
    out: dict[str, list[float]] = {}
    for name, render in renderings(seed).items():
        deltas: list[float] = []
        for c in creatives:
            a, b = render(c.image)
            boxes = [list(e.box) for e in c.elements]
            boxes_b = [[x + 1, y, w, h] if "moved" in name else [x, y, w, h] for x, y, w, h in boxes]
            share_a = engine.predict(a).box_stats(boxes)["share"]
            share_b = engine.predict(b).box_stats(boxes_b)["share"]
            deltas += list(np.abs(share_b - share_a) * 100)
        out[name] = deltas
    return out


def summary(deltas: list[float]) -> dict[str, float]:
    d = np.asarray(deltas)
    return {"elements": int(d.size), "median_pp": float(np.median(d)), "p90_pp": float(np.percentile(d, 90)),
            "max_pp": float(d.max()), "material_fraction": float(np.mean(d >= MATERIAL_CHANGE * 100))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=0, help="generated creatives besides the examples")
    parser.add_argument("--seed", type=int, default=0, help="seeds the grey-level noise")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args()
    creatives = example_creatives() + (synthetic_creatives(args.synthetic) if args.synthetic > 0 else [])
    report: dict[str, dict[str, dict[str, float]]] = {}
    for precision in ("fp32", "int8"):
        engine = Engine(precision=precision)
        report[precision] = {name: summary(d) for name, d in measure(engine, creatives, args.seed).items()}
    print(f"{len(creatives)} creatives; |share change| per element, percentage points; 'material': >= "
          f"{MATERIAL_CHANGE * 100:g} pp")
    print(f"{'graph':<6} {'rendering':<30} {'median':>7} {'p90':>7} {'max':>7} {'material':>9}")
    for precision, rows in report.items():
        for name, s in rows.items():
            print(f"{precision:<6} {name:<30} {s['median_pp']:>7.2f} {s['p90_pp']:>7.2f} {s['max_pp']:>7.2f} "
                  f"{s['material_fraction']:>8.0%}")
    if args.out:
        args.out.write_text(json.dumps({"creatives": len(creatives), "graphs": report}, indent=1) + "\n")


if __name__ == "__main__":
    main()
