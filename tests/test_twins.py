"""foveal.cpu and foveal.gpu are twins: one test body per kernel runs on both, and the results must agree.

Each body takes a kernel module (``cpu`` or ``gpu``) and returns an array; ``twins()`` runs it on both and compares
with the tolerance stated beside the test. Bodies also assert what must hold on either twin (sums to 1). Shapes
cover 1x1, odd sizes, extreme aspect ratios and large maps.

The GPU twin runs two ways: on a CUDA device through CuPy (marked ``gpu``, skipped cleanly without one), and on
the CPU emulation of the CUDA kernels (test_gpu_emulator.py), which runs the same launchers and kernel sources
everywhere but only for cases small enough to emulate. The CPU twin alone is checked against NumPy float64
references in test_cpu_reference.py.
"""
from __future__ import annotations

import pickle
from types import SimpleNamespace
from typing import Any, Callable

import numpy as np
import pytest
from test_gpu_emulator import emulated_gpu

from foveal import cpu, gpu

EMULATION_LIMIT = 150_000  # output pixels; the emulation runs one OS thread per CUDA thread


@pytest.fixture(params=[pytest.param("cuda", marks=pytest.mark.gpu), "emulated"])
def twin(request, monkeypatch) -> SimpleNamespace:
    """The GPU twin under test: ``k`` the kernel module, ``xp`` its array module."""
    if request.param == "emulated":
        k, xp = emulated_gpu(monkeypatch)
        return SimpleNamespace(k=k, xp=xp, emulated=True)
    if (why := gpu.unavailable()) is not None:
        pytest.skip(f"GPU twin needs CuPy and a CUDA device: {why}")
    import cupy

    return SimpleNamespace(k=gpu, xp=cupy, emulated=False)


def fits(twin: SimpleNamespace, *pixels: int) -> None:
    """Skip on the emulation when a case is too large to emulate in reasonable time."""
    if twin.emulated and max(pixels) > EMULATION_LIMIT:
        pytest.skip(f"{max(pixels)} pixels is too large for the CPU emulation (runs on a GPU)")


IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)


def twins(body: Callable[[Any], Any], twin: SimpleNamespace, rtol: float, atol: float) -> tuple[Any, Any]:
    """Run ``body`` on the CPU twin and the GPU twin, assert they agree, return both results (NumPy)."""
    on_cpu, on_gpu = np.asarray(body(cpu)), twin.xp.asnumpy(body(twin.k))
    assert on_cpu.shape == on_gpu.shape and on_cpu.dtype == on_gpu.dtype
    np.testing.assert_allclose(on_gpu, on_cpu, rtol=rtol, atol=atol)
    return on_cpu, on_gpu


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# Preprocess: float32 accumulation in a different order; values are O(1) after normalisation.
@pytest.mark.parametrize("hw, resized, padded, offset", [
    ((1, 1), (1, 1), (32, 32), (0, 0)),          # 1x1, all padding
    ((1, 1), (1, 1), (32, 32), (15, 31)),        # 1x1 at the far corner
    ((1, 1), (5, 3), (32, 32), (13, 14)),        # enlarge a single pixel
    ((37, 53), (37, 53), (64, 64), (13, 5)),     # identity size, odd, padding on all sides
    ((37, 53), (19, 27), (32, 32), (0, 0)),      # area shrink, non-integer ratio
    ((29, 31), (77, 83), (96, 96), (9, 6)),      # bilinear enlarge
    ((3000, 4000), (288, 384), (288, 384), (0, 0)),  # large photo to the working size
    ((2048, 512), (384, 96), (384, 96), (0, 0)),     # 4:1
    ((5, 997), (1, 384), (32, 384), (15, 0)),        # extreme aspect: short side clamped to 1, centred
    ((90, 728), (47, 384), (64, 384), (8, 0)),       # a 728x90 banner as the plan places it
])
def test_preprocess(twin, hw, resized, padded, offset) -> None:
    fits(twin, hw[0] * hw[1] // 16, padded[0] * padded[1])
    img = image(*hw)
    twins(lambda k: k.preprocess(img, resized, padded, IMAGENET_MEAN, IMAGENET_STD, offset), twin, rtol=1e-5,
          atol=2e-5)


def test_preprocess_fp16_rounds_the_float32_result(twin) -> None:
    img = image(301, 417, seed=1)
    expected = cpu.preprocess(img, (276, 384), (288, 384), IMAGENET_MEAN, IMAGENET_STD)
    half = twin.k.preprocess(img, (276, 384), (288, 384), IMAGENET_MEAN, IMAGENET_STD, dtype=np.float16)
    assert half.dtype == np.float16
    np.testing.assert_allclose(twin.xp.asnumpy(half).astype(np.float32), expected, rtol=1e-3, atol=2e-3)


def test_preprocess_batch_matches_one_by_one(twin) -> None:
    images = [image(50, 70, 1), image(700, 300, 2), image(1, 1, 3), twin.xp.asarray(image(33, 33, 4))]
    resized = [(46, 64), (64, 28), (1, 1), (64, 64)]
    offsets = [(9, 0), (0, 18), (63, 2), (0, 0)]  # each image placed where its own plan puts it
    batch = twin.xp.asnumpy(twin.k.preprocess_batch(images, resized, (64, 64), IMAGENET_MEAN, IMAGENET_STD,
                                                    offsets))
    for i, (img, r, o) in enumerate(zip(images, resized, offsets)):
        expected = cpu.preprocess(twin.xp.asnumpy(img), r, (64, 64), IMAGENET_MEAN, IMAGENET_STD, o)
        np.testing.assert_allclose(batch[i:i + 1], expected, rtol=1e-5, atol=2e-5)
    with pytest.raises(ValueError, match="offset_hw must place the resized image inside the padding"):
        twin.k.preprocess_batch(images[:1], resized[:1], (64, 64), IMAGENET_MEAN, IMAGENET_STD, [(19, 0)])


def log_density(gh: int, gw: int, seed: int = 0, scale: float = 4.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal((gh, gw)) * scale).astype(np.float32)


# Postprocess: both sum exp in float64; exp and interpolation differ by a few ulp of values up to ~20.
@pytest.mark.parametrize("grid, out_hw, valid_hw, sigma, origin_hw", [
    ((1, 1), (1, 1), (1.0, 1.0), 0.0, (0.0, 0.0)),
    ((1, 1), (7, 5), (0.3, 0.9), 2.0, (0.35, 0.05)),
    ((3, 5), (1, 1), (2.5, 4.0), 0.0, (0.25, 0.5)),
    ((24, 24), (383, 517), (17.9, 24.0), 0.0, (3.05, 0.0)),
    ((24, 24), (383, 517), (17.9, 24.0), 3.5, (3.05, 0.0)),
    ((24, 6), (4000, 1000), (24.0, 6.0), 0.0, (0.0, 0.0)),
    ((24, 32), (1080, 1920), (22.5, 32.0), 8.0, (0.75, 0.0)),
    ((8, 48), (90, 728), (5.875, 48.0), 0.0, (1.0, 0.0)),   # a 728x90 banner as the plan places it
])
def test_postprocess(twin, grid, out_hw, valid_hw, sigma, origin_hw) -> None:
    fits(twin, out_hw[0] * out_hw[1])
    ld = log_density(*grid)

    def body(k):
        prob = k.postprocess(ld, out_hw, valid_hw, sigma, origin_hw)
        assert abs(float(prob.astype(np.float64).sum()) - 1.0) < 1e-6
        return prob

    twins(body, twin, rtol=1e-4 if sigma else 2e-5, atol=1e-12)


def test_postprocess_batch_matches_one_by_one(twin) -> None:
    grids = np.stack([log_density(12, 16, s) for s in range(4)])[:, None]  # the network's N x 1 x h x w
    out_hws = [(90, 120), (1, 1), (301, 77), (12, 16)]
    valid_hws = [(11.25, 15.0), (1.0, 1.0), (12.0, 3.1), (12.0, 16.0)]
    origin_hws = [(0.375, 0.5), (5.5, 7.5), (0.0, 6.45), (0.0, 0.0)]
    for sigma in (0.0, 1.5):
        maps = twin.k.postprocess_batch(twin.xp.asarray(grids), out_hws, valid_hws, sigma, origin_hws)
        for i, prob in enumerate(maps):
            expected = cpu.postprocess(grids[i, 0], out_hws[i], valid_hws[i], sigma, origin_hws[i])
            np.testing.assert_allclose(twin.xp.asnumpy(prob), expected, rtol=1e-4, atol=1e-12)


def test_postprocess_rejects_non_finite_grid(twin) -> None:
    ld = log_density(8, 8)
    ld[3, 5] = np.nan
    for k in (cpu, twin.k):
        with pytest.raises(ValueError, match="finite"):
            k.postprocess(ld, (32, 32), (8.0, 8.0))


def random_prob(h: int, w: int, seed: int = 0, dtype: Any = np.float32) -> np.ndarray:
    p = np.random.default_rng(seed).random((h, w)) ** 4
    return (p / p.sum()).astype(dtype)


# SAT: both accumulate in float64, in different orders.
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (31, 129), (33, 127), (97, 1000), (1080, 1920)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_summed_area_table(twin, shape, dtype) -> None:
    fits(twin, shape[0] * shape[1])
    prob = random_prob(*shape, dtype=dtype)
    sat, _ = twins(lambda k: k.summed_area_table(prob), twin, rtol=1e-12, atol=1e-15)
    assert (sat[0] == 0).all() and (sat[:, 0] == 0).all()


def test_summed_area_table_4096_box_sums_within_1e_9_of_mass(twin) -> None:
    fits(twin, 4096 * 4096)
    prob = random_prob(4096, 4096, seed=7)
    rng = np.random.default_rng(8)
    x0, y0 = rng.integers(0, 4096, (2, 5000))
    boxes = np.stack([x0, y0, x0 + rng.integers(1, 4096, 5000), y0 + rng.integers(1, 4096, 5000)], axis=1)
    sat_cpu = cpu.summed_area_table(prob)
    sat_gpu = twin.k.summed_area_table(twin.xp.asarray(prob))
    total = float(sat_cpu[-1, -1])
    np.testing.assert_allclose(twin.xp.asnumpy(twin.k.box_sums(sat_gpu, boxes)), cpu.box_sums(sat_cpu, boxes),
                               rtol=0, atol=1e-9 * total)


def test_summed_area_table_batch_matches_one_by_one(twin) -> None:
    probs = np.stack([random_prob(45, 300, s) for s in range(3)])
    tables = twin.xp.asnumpy(twin.k.summed_area_table_batch(twin.xp.asarray(probs)))
    for i in range(3):
        np.testing.assert_allclose(tables[i], cpu.summed_area_table(probs[i]), rtol=1e-12, atol=1e-15)


def boxes_for(h: int, w: int, n: int, seed: int) -> np.ndarray:
    """Random boxes, many reaching past the image (clipped), none empty or wholly outside."""
    rng = np.random.default_rng(seed)
    x0, y0 = rng.integers(-w // 2, w, n), rng.integers(-h // 2, h, n)
    x1 = np.maximum(x0 + rng.integers(1, w + 2, n), 1)
    y1 = np.maximum(y0 + rng.integers(1, h + 2, n), 1)
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


@pytest.mark.parametrize("shape, n", [((1, 1), 3), ((17, 5), 100), ((1080, 1920), 10_000)])
def test_box_sums(twin, shape, n) -> None:
    sat = cpu.summed_area_table(random_prob(*shape))
    boxes = boxes_for(*shape, n, seed=n)
    twins(lambda k: k.box_sums(sat, boxes), twin, rtol=0, atol=1e-15)


def test_box_sums_batch_over_maps_of_different_sizes(twin) -> None:
    shapes = [(10, 10), (1, 1), (480, 640), (77, 13)]
    sats = [cpu.summed_area_table(random_prob(*s, seed=i)) for i, s in enumerate(shapes)]
    index = np.random.default_rng(0).integers(0, len(shapes), 5000)
    boxes = np.concatenate([boxes_for(*shapes[m], 1, seed=k) for k, m in enumerate(index)])
    got = twin.k.box_sums_batch([twin.xp.asarray(s) for s in sats], twin.xp.asarray(boxes), index)
    expected = np.array([cpu.box_sums(sats[m], boxes[k:k + 1])[0] for k, m in enumerate(index)])
    np.testing.assert_allclose(twin.xp.asnumpy(got), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("box, match", [((5, 5, 5, 9), r"boxes\[1\].*empty"),
                                        ((20, 0, 30, 4), r"boxes\[1\].*outside")])
def test_box_sums_name_the_bad_box_like_the_cpu(twin, box, match) -> None:
    sat = cpu.summed_area_table(random_prob(10, 10))
    boxes = np.array([(0, 0, 2, 2), box], dtype=np.int64)
    for k in (cpu, twin.k):
        with pytest.raises(ValueError, match=match):
            k.box_sums(sat, boxes)


# Colormaps: the GPU uses the CPU's table and the CPU's float arithmetic, so results are identical.
@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (1080, 1920)])
@pytest.mark.parametrize("cmap", ["turbo", "inferno"])
def test_colorize(twin, shape, cmap) -> None:
    fits(twin, shape[0] * shape[1] // 4)
    values = random_prob(*shape, seed=3) * np.float32(1e3)
    twins(lambda k: k.colorize(values, cmap), twin, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(1, 1), (17, 33), (1080, 1920)])
@pytest.mark.parametrize("alpha", [0.0, 0.6, 1.0])
def test_overlay(twin, shape, alpha) -> None:
    fits(twin, shape[0] * shape[1] // 4)
    img, prob = image(*shape, seed=5), random_prob(*shape, seed=6)
    twins(lambda k: k.overlay(img, prob, alpha, "turbo"), twin, rtol=0, atol=0)


@pytest.mark.gpu
def test_pipeline_stays_on_one_stream() -> None:
    """A non-default stream orders every stage: the result equals the default-stream run."""
    if (why := gpu.unavailable()) is not None:
        pytest.skip(f"needs CuPy and a CUDA device: {why}")
    import cupy

    img = image(480, 640, seed=9)
    stream = cupy.cuda.Stream(non_blocking=True)
    with stream:
        x = gpu.preprocess(img, (288, 384), (288, 384), IMAGENET_MEAN, IMAGENET_STD)
        prob = gpu.postprocess(x[0, 0, ::16, ::16], (480, 640), (18.0, 24.0), 1.0)
        sat = gpu.summed_area_table(prob)
        sums = gpu.box_sums(sat, np.array([[0, 0, 640, 480], [0, 0, 320, 240]]))
    stream.synchronize()
    sums = cupy.asnumpy(sums)
    np.testing.assert_allclose(sums[0], 1.0, atol=1e-6)
    expected = cpu.box_sums(cpu.summed_area_table(cupy.asnumpy(prob)), np.array([[0, 0, 320, 240]]))
    np.testing.assert_allclose(sums[1], expected[0], atol=1e-12)


# The device-resident map: the same API and answers as the host SaliencyMap; SATs as above, float64 sums.
@pytest.mark.parametrize("shape", [(1, 1), (45, 300)])
def test_device_map_answers_like_the_host_map(twin, shape) -> None:
    from foveal import DeviceSaliencyMap, SaliencyMap
    from foveal.scoring.elements import Element
    from foveal.scoring.scores import score_creative

    prob = random_prob(*shape, seed=11)
    host, device = SaliencyMap(prob), DeviceSaliencyMap(twin.xp.asarray(prob))
    h, w = shape
    boxes = np.array([[0, 0, w, h], [w // 3, h // 4, max(1, w // 2), max(1, h // 2)], [w - 1, h - 1, 1, 1]])
    assert device.shape == host.shape and device._host is None
    for key, value in host.box_stats(boxes).items():
        np.testing.assert_allclose(device.box_stats(boxes)[key], value, rtol=1e-12, atol=1e-15, err_msg=key)
    assert device._host is None, "a box query must not copy the map to the host"
    assert device.share([0, 0, w, h]) == pytest.approx(1.0, abs=1e-6)
    assert device.total == pytest.approx(host.total, rel=1e-12)
    np.testing.assert_allclose(device.sat, host.sat, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(device.prob, prob)
    assert device.prob is device.prob and not device.prob.flags.writeable  # copied once
    pickled = pickle.loads(pickle.dumps(device))  # Ray / multiprocessing: a host map
    assert type(pickled) is SaliencyMap and pickled.share([0, 0, w, h]) == pytest.approx(1.0, abs=1e-6)
    elements = [Element("cta", "cta", tuple(int(v) for v in boxes[1])), Element("logo", "logo", (0, 0, 1, 1))]
    on_host, on_device = score_creative(host, elements), score_creative(device, elements)
    for a, b in zip(on_host.elements, on_device.elements):
        assert a.share == pytest.approx(b.share, rel=1e-9, abs=1e-15)
        assert a.lift == pytest.approx(b.lift, rel=1e-9, abs=1e-12)


def test_device_map_refuses_what_the_host_map_refuses(twin) -> None:
    from foveal import DeviceSaliencyMap, InputError

    negative = np.full((4, 5), 0.05, np.float32)
    negative[0, 0] = -0.01
    with pytest.raises(InputError, match="not a distribution"):
        DeviceSaliencyMap(twin.xp.asarray(negative)).box_stats([0, 0, 2, 2])
    with pytest.raises(InputError, match="device"):
        DeviceSaliencyMap(negative)
    with pytest.raises(InputError, match="outside"):
        DeviceSaliencyMap(twin.xp.asarray(random_prob(4, 5))).box_stats([9, 0, 2, 2])


def test_box_stats_batch_matches_map_by_map(twin) -> None:
    from foveal import DeviceSaliencyMap, SaliencyMap, box_stats_batch

    shapes = [(40, 60), (17, 9), (40, 60)]
    probs = [random_prob(*s, seed=i) for i, s in enumerate(shapes)]
    maps = [DeviceSaliencyMap(twin.xp.asarray(p)) for p in probs]
    boxes = [np.array([[0, 0, w, h], [1, 2, 3, 4]]) if i != 1 else np.zeros((0, 4), np.int64)
             for i, (h, w) in enumerate(shapes)]
    got = box_stats_batch(maps, boxes)
    for p, b, stats in zip(probs, boxes, got):
        for key, value in SaliencyMap(p).box_stats(b).items():
            np.testing.assert_allclose(stats[key], value, rtol=1e-12, atol=1e-15)
