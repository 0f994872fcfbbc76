"""GPU kernel and backend timings, each against a baseline measured in the same run (pytest-benchmark).

Every timed call ends with a device synchronisation, so a median is the wall time of the work itself. Groups:
- post-network stages for one 1080×1080 image (upsample + softmax + SAT + 100 boxes): GPU vs the CPU twins, and
  a batch of 16 (``extra_info["images"]``: the report divides by it);
- SAT at 1080² and 4096²: foveal vs ``cupy.cumsum`` twice, with bytes moved ÷ time and the share of the device's
  HBM roofline (its memory clock × bus width, as gpu_device_path.py reads it) in ``extra_info`` (GPU time from
  CUDA events);
- softmax: foveal's fused upsample + softmax vs the elementwise CuPy softmax of an already upsampled map;
- box sums: 10 000 boxes over 16 maps in one launch vs CuPy fancy indexing;
- preprocess: a 4000×3000 photo to the working size vs the CPU twin;
- torch backend: batch-1 latency and batch-64 throughput at the default model's working size, fp16 + CUDA graph
  vs fp32 eager.
Run: ``python -m pytest benchmarks/test_bench_gpu.py`` (benchmarks/gpu_check.sh runs it and writes a report).
"""
from __future__ import annotations

import numpy as np
import pytest

from foveal import cpu, gpu

if (_why := gpu.unavailable()) is not None:
    pytest.skip(f"GPU benchmarks need CuPy and a CUDA device: {_why}", allow_module_level=True)

import cupy  # noqa: E402
from cupyx.profiler import benchmark as gpu_timer  # noqa: E402

from gpu_device_path import hbm_bytes_per_s  # noqa: E402 - benchmarks/ is on the path (pytest's rootdir mode)

# The device's own peak: an H200's is 4.8 TB/s, and the H100's 3.35 made its shares read 1.43x too high.
HBM_BYTES_PER_S, HBM_SOURCE = hbm_bytes_per_s()


def timed(record, benchmark, group: str, impl: str, fn, *args, baseline: bool = False):
    """``record`` plus ``extra_info["baseline"]``, so the report can compute ratios from the JSON alone."""
    benchmark.extra_info["baseline"] = baseline
    return record(group, impl, fn, *args, baseline=baseline)


def synced(fn):
    """``fn`` followed by a device synchronisation, so the timer sees the GPU work."""

    def run(*args):
        out = fn(*args)
        cupy.cuda.Device().synchronize()
        return out

    return run


def saliency_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    p = np.random.default_rng(seed).random((h, w), dtype=np.float32) ** 4
    return p / p.sum(dtype=np.float64).astype(np.float32)


def boxes(n: int, h: int, w: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x0, y0 = rng.integers(0, w - 1, n), rng.integers(0, h - 1, n)
    return np.stack([x0, y0, x0 + rng.integers(1, w // 4, n), y0 + rng.integers(1, h // 4, n)], 1).astype(np.int64)


GRID = (24, 24)  # the default model's output grid for a square image (384 / 16)
VALID = (24.0, 24.0)


def post_network_cpu(ld: np.ndarray, b: np.ndarray) -> np.ndarray:
    return cpu.box_sums(cpu.summed_area_table(cpu.postprocess(ld, (1080, 1080), VALID)), b)


def post_network_gpu(ld, b):
    return gpu.box_sums(gpu.summed_area_table(gpu.postprocess(ld, (1080, 1080), VALID)), b)


@pytest.mark.parametrize("impl", ["cpu twins", "gpu", "gpu, batch of 16"])
def test_post_network_1080(record, benchmark, impl):
    ld = np.random.default_rng(0).standard_normal(GRID).astype(np.float32)
    b = boxes(100, 1080, 1080)
    group = "post-network 1080² (upsample+softmax+SAT+100 boxes)"
    if impl == "cpu twins":
        sums = timed(record, benchmark, group, impl, post_network_cpu, ld, b, baseline=True)
    elif impl == "gpu":
        sums = cupy.asnumpy(timed(record, benchmark, group, impl, synced(post_network_gpu), cupy.asarray(ld),
                                  cupy.asarray(b)))
    else:
        lds = cupy.asarray(np.stack([ld] * 16))
        all_boxes, index = cupy.asarray(np.concatenate([b] * 16)), cupy.asarray(np.repeat(np.arange(16), 100))

        def batch16(lds, all_boxes, index):
            maps = gpu.postprocess_batch(lds, [(1080, 1080)] * 16, [VALID] * 16)
            sats = gpu.summed_area_table_batch(cupy.stack(maps))
            return gpu.box_sums_batch(sats, all_boxes, index)

        benchmark.extra_info["images"] = 16  # the report divides by it: time per image
        sums = cupy.asnumpy(timed(record, benchmark, group, impl, synced(batch16), lds, all_boxes, index))[:100]
    np.testing.assert_allclose(sums, post_network_cpu(ld, b), atol=1e-6)


def cupy_sat(p):
    out = cupy.zeros((p.shape[0] + 1, p.shape[1] + 1), dtype=cupy.float64)
    out[1:, 1:] = cupy.cumsum(cupy.cumsum(p, axis=0, dtype=cupy.float64), axis=1)
    return out


@pytest.mark.parametrize("size", [1080, 4096])
@pytest.mark.parametrize("impl", ["cupy.cumsum x2", "foveal"])
def test_summed_area_table(record, benchmark, size, impl):
    p = cupy.asarray(saliency_like(size, size))
    fn = cupy_sat if impl == "cupy.cumsum x2" else gpu.summed_area_table
    sat = timed(record, benchmark, f"SAT {size}² float32 -> float64", impl, synced(fn), p,
                baseline=impl == "cupy.cumsum x2")
    seconds = float(np.median(gpu_timer(fn, (p,), n_repeat=20, n_warmup=3).gpu_times))
    minimal = size * size * 4 + (size + 1) ** 2 * 8  # read the map once, write the table once
    moved = gpu.sat_bytes(1, size, size) if impl == "foveal" else None
    benchmark.extra_info.update(gpu_ms=seconds * 1e3, minimal_GBps=minimal / seconds / 1e9,
                                roofline_share=minimal / seconds / HBM_BYTES_PER_S, roofline_source=HBM_SOURCE)
    if moved:
        benchmark.extra_info.update(moved_GBps=moved / seconds / 1e9,
                                    moved_roofline_share=moved / seconds / HBM_BYTES_PER_S)
    assert float(sat[-1, -1]) == pytest.approx(1.0, abs=1e-6)


def cupy_softmax(x):
    """float32 in and out, float64 sum: what foveal's kernels compute, written the obvious way."""
    e = cupy.exp(x - x.max())
    e /= e.sum(dtype=cupy.float64).astype(cupy.float32)
    return e


@pytest.mark.parametrize("impl", ["cupy elementwise softmax (no upsample)", "foveal upsample+softmax"])
def test_softmax_1080(record, benchmark, impl):
    ld = np.random.default_rng(2).standard_normal(GRID).astype(np.float32)
    group = "softmax 1080²"
    if impl.startswith("cupy"):
        dense = cupy.asarray(cpu.postprocess(ld, (1080, 1080), VALID))  # any 1080² map: the work does not depend on it
        out = timed(record, benchmark, group, impl, synced(cupy_softmax), cupy.log(dense), baseline=True)
    else:
        out = timed(record, benchmark, group, impl, synced(gpu.postprocess), cupy.asarray(ld), (1080, 1080), VALID)
    assert float(out.sum(dtype=cupy.float64)) == pytest.approx(1.0, abs=1e-6)


def cupy_box_sums(sats, b, index):
    x0, y0, x1, y1 = b.T
    return sats[index, y1, x1] - sats[index, y0, x1] - sats[index, y1, x0] + sats[index, y0, x0]


@pytest.mark.parametrize("impl", ["cupy fancy indexing", "foveal"])
def test_box_sums_10000_over_16_maps(record, benchmark, impl):
    sats = gpu.summed_area_table_batch(cupy.asarray(np.stack([saliency_like(1080, 1080, s) for s in range(16)])))
    index = np.random.default_rng(3).integers(0, 16, 10_000)
    b = boxes(10_000, 1080, 1080)
    b[:, 2:] = np.minimum(b[:, 2:], 1080)  # the baseline does not clip
    db, di = cupy.asarray(b), cupy.asarray(index)
    group = "box sums: 10 000 boxes over 16 maps 1080²"
    if impl == "foveal":
        got = timed(record, benchmark, group, impl, synced(gpu.box_sums_batch), sats, db, di)
    else:
        got = timed(record, benchmark, group, impl, synced(cupy_box_sums), sats, db, di, baseline=True)
    expected = [cpu.box_sums(cupy.asnumpy(sats[m]), b[k:k + 1])[0] for k, m in enumerate(index[:50])]
    np.testing.assert_allclose(cupy.asnumpy(got[:50]), expected, atol=1e-12)


@pytest.mark.parametrize("impl", ["cpu twin", "gpu (pinned upload + fused kernel)"])
def test_preprocess_photo(record, benchmark, impl):
    img = np.random.default_rng(4).integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    args = (img, (288, 384), (288, 384), (0.0, 0.0, 0.0), (255.0, 255.0, 255.0))
    group = "preprocess 4000×3000 -> 384×288"
    if impl == "cpu twin":
        timed(record, benchmark, group, impl, cpu.preprocess, *args, baseline=True)
    else:
        out = timed(record, benchmark, group, impl, synced(gpu.preprocess), *args)
        np.testing.assert_allclose(cupy.asnumpy(out), cpu.preprocess(*args), atol=2e-5)


@pytest.fixture(scope="module")
def torch_backends():
    from foveal.backends import torch_cuda
    from foveal.models import DEFAULT_MODEL, load_card

    if (why := torch_cuda.TorchBackend.unavailable()) is not None:
        pytest.skip(f"torch backend unavailable: {why}")
    card = load_card(DEFAULT_MODEL)
    return card, {"fp32 eager": torch_cuda.TorchBackend(card, fp16=False, cuda_graph=False),
                  "fp16 + CUDA graph": torch_cuda.TorchBackend(card)}


@pytest.mark.parametrize("n", [1, 64])
@pytest.mark.parametrize("impl", ["fp32 eager", "fp16 + CUDA graph"])
def test_torch_backend(record, benchmark, torch_backends, n, impl):
    card, by_impl = torch_backends
    size = -(-card.input.working_size // card.input.pad_multiple) * card.input.pad_multiple
    x = cupy.asarray(np.random.default_rng(5).random((n, 3, size, size), dtype=np.float32))
    group = f"torch backend {card.name} batch {n} at {size}²"
    benchmark.extra_info["images"] = n
    out = timed(record, benchmark, group, impl, synced(by_impl[impl].run), x, baseline=impl == "fp32 eager")
    assert out.shape[0] == n
