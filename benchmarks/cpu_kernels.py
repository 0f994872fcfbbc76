"""foveal's CPU kernels (preprocess, post-network) against the best OpenCV + NumPy composition, interleaved.

    python benchmarks/cpu_kernels.py                       # default thread count
    FOVEAL_NUM_THREADS=1 python benchmarks/cpu_kernels.py  # one thread (OpenCV is held to one thread too)
    python benchmarks/cpu_kernels.py --load 1              # beside one competing CPU-bound process

Baselines are what a strong engineer would write with the usual tools: for the network's input, cv2.resize
(INTER_AREA) of the uint8 image (its output rounded to whole levels, where foveal keeps float32), then a float32
(x - mean) / std into planes; after the network, cv2.resize (INTER_LINEAR, float32) of the engine's real 48x48
log-density grid, a float32 max-subtracted cv2.exp in place with a float64 total
(cv2.sumElems), cv2.integral to float64, and NumPy fancy indexing for the boxes.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleaved import at_least, compare, competing_load, table  # noqa: E402

from foveal import _native, cpu  # noqa: E402

GRID = 48  # the engine's output grid for a square image at the 384-px working size, stride 8


def cv2_softmax(grid: np.ndarray, size: int) -> np.ndarray:
    up = cv2.resize(grid, (size, size), interpolation=cv2.INTER_LINEAR)
    cv2.subtract(up, float(up.max()), dst=up)
    cv2.exp(up, dst=up)  # float32; on this VM's NumPy, np.exp(float32) at 1080² is 10× slower (12 ms)
    # OpenCV sums float32 in float64, 4.6x faster than NumPy's sum(dtype=float64) at 1080²
    up *= np.float32(1.0 / cv2.sumElems(up)[0])
    return up


MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def cv2_preprocess(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    small = cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA)
    planes = np.empty((1, 3, size_wh[1], size_wh[0]), np.float32)
    for c in range(3):  # per plane: strided reads of one channel, contiguous writes
        np.subtract(small[..., c], MEAN[c], out=planes[0, c], dtype=np.float32)
        planes[0, c] *= np.float32(1.0 / STD[c])
    return planes


def numpy_box_sums(sat: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = boxes.T
    return sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]


def boxes_for(size: int, n: int = 100) -> np.ndarray:
    rng = np.random.default_rng(1)
    xy = rng.integers(0, size // 2, (n, 2))
    return np.concatenate([xy, xy + rng.integers(1, size // 2, (n, 2))], axis=1).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--load", type=at_least(0), default=0, help="competing CPU-bound processes")
    parser.add_argument("--rounds", type=at_least(1), default=30)
    args = parser.parse_args()
    if os.environ.get("FOVEAL_NUM_THREADS") == "1":
        cv2.setNumThreads(1)
    print(f"foveal threads {_native.num_threads}, OpenCV threads {cv2.getNumThreads()}, "
          f"competing processes {args.load}, cpus {os.cpu_count()}")
    grid = np.random.default_rng(2).normal(0, 2, (GRID, GRID)).astype(np.float32)
    load = competing_load(args.load) if args.load else contextlib.nullcontext()
    with load:
        # 1920x1080 pixels (blurred noise: the kernels' time does not depend on content) to the network's input.
        photo = cv2.GaussianBlur(np.random.default_rng(3).integers(0, 256, (1080, 1920, 3), np.uint8), (0, 0), 2)
        print(table("\npreprocess 1920x1080 uint8 RGB -> 384x216 float32 NCHW", compare({
            "cv2 INTER_AREA + numpy": lambda: cv2_preprocess(photo, (384, 216)),
            "foveal": lambda: cpu.preprocess(photo, (216, 384), (216, 384), MEAN, STD),
        }, baseline="cv2 INTER_AREA + numpy", rounds=args.rounds)))
        # An ad's table (1.4 MiB here) sits between malloc's mmap threshold and the sizes usually benchmarked.
        half_page = cv2.resize(cv2_softmax(grid, 600), (300, 600))
        print(table("\nSAT 300x600 (a half-page ad) float32 -> float64", compare({
            "cv2.integral": lambda: cv2.integral(half_page, sdepth=cv2.CV_64F),
            "foveal": lambda: cpu.summed_area_table(half_page),
        }, baseline="cv2.integral", rounds=args.rounds)))
        for size in (1080, 4096):
            prob = cv2_softmax(grid, size)
            boxes = boxes_for(size)
            keep: list[np.ndarray] = []

            def fresh(fn):  # results stay alive for five calls, so no freed buffer can be recycled
                def run():
                    keep.append(fn())
                    del keep[:-5]
                return run

            print(table(f"\nSAT {size}x{size} float32 -> float64", compare({
                "cv2.integral": lambda: cv2.integral(prob, sdepth=cv2.CV_64F),
                "foveal (recycled buffer)": lambda: cpu.summed_area_table(prob),
                "foveal (fresh buffer)": fresh(lambda: cpu.summed_area_table(prob)),
                "cv2.integral (fresh buffer)": fresh(lambda: cv2.integral(prob, sdepth=cv2.CV_64F)),
            }, baseline="cv2.integral", rounds=args.rounds)))
            print(table(f"\npost-network {GRID}x{GRID} -> {size}x{size} + SAT + 100 boxes", compare({
                "cv2 + numpy (float32)": lambda: numpy_box_sums(
                    cv2.integral(cv2_softmax(grid, size), sdepth=cv2.CV_64F), boxes),
                "foveal postprocess_sat": lambda: cpu.box_sums(
                    cpu.postprocess_sat(grid, (size, size), (GRID, GRID))[1], boxes),
                "foveal postprocess + sat": lambda: cpu.box_sums(
                    cpu.summed_area_table(cpu.postprocess(grid, (size, size), (GRID, GRID))), boxes),
            }, baseline="cv2 + numpy (float32)", rounds=args.rounds)))


if __name__ == "__main__":
    main()
