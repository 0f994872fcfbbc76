"""Banner shapes: the map with the padding at the bottom (as the runtime pads) against the padding split in two.

    python benchmarks/banner_padding.py --data ../shared/data [--model foveal-lite0]

Strips with a 16:3 banner's aspect are cut from the top, middle and bottom of each val image of OSIE and NUS
Scene (kept when they hold at least 5 fixations). Each strip is predicted as it is, and again with half of the
padding the runtime would add edge-replicated above it (so the network sees the padding split above and below),
the map then cropped back to the strip. Prints information gain and NSS per dataset and the paired difference
(docs/MODEL.md, "Known limitation: banner shapes").
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from foveal import Engine
from foveal import metrics as M
from foveal.datasets import load_dataset
from foveal.geometry import plan

ASPECT = 150 / 800  # a 16:3 strip
MIN_FIXATIONS = 5


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding osie/ and scene/")
    p.add_argument("--model", default="foveal-lite0")
    args = p.parse_args()
    engine = Engine(args.model, precision="fp32")
    ig: dict[str, list[float]] = {"bottom": [], "split": []}
    for name in ("osie", "scene"):
        val = load_dataset(args.data / name).split("val")
        rows: dict[str, list[tuple[float, float]]] = {"bottom": [], "split": []}
        for i in range(len(val)):
            image, fix = val.image(i), val.fixations(i)
            height, width = image.shape[:2]
            h = max(8, round(width * ASPECT))
            for top in (0, (height - h) // 2, height - h):
                inside = (fix.y >= top) & (fix.y < top + h)
                if inside.sum() < MIN_FIXATIONS:
                    continue
                strip = np.ascontiguousarray(image[top:top + h])
                xs, ys = fix.x[inside], fix.y[inside] - top
                centre = M.centre_bias_log_density((h, width))
                p = plan(h, width, engine.model)  # the runtime's own resize and padding
                half = round((p.padded_hw[0] - p.resized_hw[0]) * width / p.resized_hw[1] / 2)
                split = engine.predict(cv2.copyMakeBorder(strip, half, half, 0, 0, cv2.BORDER_REPLICATE)).prob
                split = split[half:half + h].astype(np.float64)
                for key, prob in (("bottom", engine.predict(strip).prob.astype(np.float64)),
                                  ("split", split / split.sum())):
                    rows[key].append((M.information_gain(prob, centre, xs, ys), M.nss(prob, xs, ys)))
        for key, values in rows.items():
            v = np.array(values)
            print(f"{name} val, {len(v)} strips, padding {key}: IG {v[:, 0].mean():.3f}  NSS {v[:, 1].mean():.3f}")
            ig[key] += list(v[:, 0])
    diff = np.array(ig["split"]) - np.array(ig["bottom"])
    boots = diff[np.random.default_rng(0).integers(0, len(diff), (2000, len(diff)))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    print(f"split - bottom, paired over {len(diff)} strips: IG {diff.mean():+.3f} ({lo:+.3f} to {hi:+.3f})")


if __name__ == "__main__":
    main()
