"""CPU kernel timings against OpenCV / NumPy measured in the same run (pytest-benchmark).

``python -m pytest benchmarks/test_bench_kernels.py``; the summary table lists medians and speed-ups.
"""
from __future__ import annotations

import numpy as np
import pytest

from foveal import cpu

cv2 = pytest.importorskip("cv2")


def saliency_like(size: int, seed: int = 0) -> np.ndarray:
    p = np.random.default_rng(seed).random((size, size), dtype=np.float32) ** 4
    return p / p.sum(dtype=np.float64).astype(np.float32)


def numpy_sat(prob: np.ndarray) -> np.ndarray:
    return np.cumsum(np.cumsum(prob, axis=0, dtype=np.float64), axis=1)


def opencv_sat(prob: np.ndarray) -> np.ndarray:
    return cv2.integral(prob, sdepth=cv2.CV_64F)


@pytest.mark.parametrize("size", [1080, 4096])
@pytest.mark.parametrize("impl", ["cv2.integral", "numpy cumsum x2", "foveal"])
def test_summed_area_table(record, size, impl):
    prob = saliency_like(size)
    fn = {"cv2.integral": opencv_sat, "numpy cumsum x2": numpy_sat, "foveal": cpu.summed_area_table}[impl]
    sat = record(f"SAT {size}x{size} (float32 -> float64)", impl, fn, prob, baseline=impl == "cv2.integral")
    assert sat[-1, -1] == pytest.approx(1.0, abs=1e-6)


def random_boxes(n: int, size: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = rng.integers(0, size - 1, (n, 2))
    return np.concatenate([xy, xy + rng.integers(1, size // 4, (n, 2))], axis=1).astype(np.int64)


def numpy_box_sums(sat: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    h, w = sat.shape[0] - 1, sat.shape[1] - 1
    x0, y0 = np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h)
    x1, y1 = np.clip(boxes[:, 2], 0, w), np.clip(boxes[:, 3], 0, h)
    return sat[y1, x1] - sat[y0, x1] - sat[y1, x0] + sat[y0, x0]


@pytest.mark.parametrize("impl", ["numpy fancy indexing", "foveal"])
def test_box_sums_100k(record, impl):
    sat = cpu.summed_area_table(saliency_like(1080))
    boxes = random_boxes(100_000, 1080)
    fn = {"numpy fancy indexing": numpy_box_sums, "foveal": cpu.box_sums}[impl]
    sums = record("100k box sums on a 1080x1080 SAT", impl, fn, sat, boxes, baseline=impl.startswith("numpy"))
    assert sums.shape == (100_000,)


def post_network_numpy(grid: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """The same pipeline from library calls: cv2 resize of the grid, softmax in NumPy, cv2 SAT, NumPy boxes."""
    up = cv2.resize(grid, (1080, 1080), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    e = np.exp(up - up.max())
    prob = (e / e.sum()).astype(np.float32)
    return numpy_box_sums(opencv_sat(prob), boxes)


def post_network_foveal(grid: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    prob = cpu.postprocess(grid, (1080, 1080), (135.0, 135.0))
    return cpu.box_sums(cpu.summed_area_table(prob), boxes)


@pytest.mark.parametrize("impl", ["cv2 + numpy", "foveal"])
def test_post_network_1080(record, impl):
    """Grid (135x135, stride 8) -> 1080x1080 probability map -> SAT -> 100 box sums."""
    grid = np.random.default_rng(2).normal(0, 2, (135, 135)).astype(np.float32)
    boxes = random_boxes(100, 1080)
    fn = {"cv2 + numpy": post_network_numpy, "foveal": post_network_foveal}[impl]
    sums = record("post-network 1080x1080 + 100 boxes", impl, fn, grid, boxes, baseline=impl == "cv2 + numpy")
    assert sums.shape == (100,)


def opencv_preprocess(image: np.ndarray) -> np.ndarray:
    """cv2 area resize, then (x - 0) / 255 to float32 NCHW."""
    small = cv2.resize(image, (384, 384), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray((small.astype(np.float32) / 255.0).transpose(2, 0, 1)[None])


def foveal_preprocess(image: np.ndarray) -> np.ndarray:
    return cpu.preprocess(image, (384, 384), (384, 384), (0, 0, 0), (255, 255, 255))


@pytest.mark.parametrize("impl", ["cv2 INTER_AREA + numpy", "foveal"])
def test_preprocess_1080(record, impl):
    image = np.random.default_rng(3).integers(0, 256, (1080, 1080, 3), dtype=np.uint8)
    fn = {"cv2 INTER_AREA + numpy": opencv_preprocess, "foveal": foveal_preprocess}[impl]
    x = record("preprocess 1080x1080 -> 384x384", impl, fn, image, baseline=impl.startswith("cv2"))
    assert x.shape == (1, 3, 384, 384)


@pytest.mark.parametrize("blur_sigma", [0.0, 4.0])
def test_postprocess_1080(record, blur_sigma):
    """The postprocess stage alone (no baseline: the pipeline group above compares it)."""
    grid = np.random.default_rng(3).normal(0, 2, (135, 135)).astype(np.float32)
    record("postprocess 135x135 -> 1080x1080", f"blur_sigma={blur_sigma}", cpu.postprocess, grid, (1080, 1080),
           (135.0, 135.0), blur_sigma)
