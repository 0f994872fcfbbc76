"""Banner shapes: the map with the network's padding split around the image (as the runtime places it) against
the padding all after the image (bottom/right, as foveal placed it before).

    python -m engine.banner_padding --data ../shared/data [--model foveal-lite0]

The banner strips of the OSIE and NUS Scene val images (``engine.layouts.banner_strips``: 16:3, top, middle and
bottom of each image, at least 5 fixations) each run through the runtime's own kernels twice: once at the plan's
offset and window, once at offset zero. Prints information gain and NSS per dataset and the paired difference
(docs/MODEL.md, "Banner shapes").
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from engine.intervals import paired_interval
from engine.layouts import banner_strips
from foveal import Engine, cpu
from foveal import metrics as M
from foveal.datasets import load_dataset
from foveal.geometry import plan
from engine import run_main


def predict(engine: Engine, image: np.ndarray, centred: bool) -> np.ndarray:
    """The engine's map of ``image`` with the plan's padding placement, or with all padding after the image."""
    spec, p = engine.model.input, plan(*image.shape[:2], engine.model)
    offset, origin = (p.offset_hw, p.origin_hw) if centred else ((0, 0), (0.0, 0.0))
    grid = engine._backend.run(cpu.preprocess(image, p.resized_hw, p.padded_hw, spec.mean, spec.std, offset))
    return cpu.postprocess(grid[0, 0], p.image_hw, p.valid_hw, engine.blur_sigma, origin).astype(np.float64)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m engine.banner_padding", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="folder holding osie/ and scene/")
    p.add_argument("--model", default="foveal-lite0")
    args = p.parse_args()
    engine = Engine(args.model, precision="fp32")
    ig: dict[str, list[float]] = {"after": [], "split": []}
    for name in ("osie", "scene"):
        rows: dict[str, list[tuple[float, float]]] = {"after": [], "split": []}
        for strip, xs, ys in banner_strips(load_dataset(args.data / name).split("val")):
            centre = M.centre_bias_log_density(strip.shape[:2])
            np.testing.assert_allclose(predict(engine, strip, True), engine.predict(strip).prob, rtol=1e-4,
                                       atol=1e-9)  # the runtime's own map
            for key in rows:
                prob = predict(engine, strip, key == "split")
                rows[key].append((M.information_gain(prob, centre, xs, ys), M.nss(prob, xs, ys)))
        for key, values in rows.items():
            v = np.array(values)
            print(f"{name} val, {len(v)} strips, padding {key}: IG {v[:, 0].mean():.3f}  NSS {v[:, 1].mean():.3f}")
            ig[key] += list(v[:, 0])
    diff = np.array(ig["split"]) - np.array(ig["after"])
    mean, lo, hi = paired_interval(diff)
    print(f"split - after, paired over {len(diff)} strips: IG {mean:+.3f} ({lo:+.3f} to {hi:+.3f})")


if __name__ == "__main__":
    run_main(main)
