"""foveal.cpu / foveal._native: argument checking, error types and messages, threads, recycled buffers."""
from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from foveal import _native, cpu
from foveal.errors import InputError

IMAGE = np.zeros((8, 8, 3), np.uint8)
PROB = np.full((8, 8), 1 / 64, np.float32)


def test_module_reports_version_and_threads():
    assert isinstance(_native.__version__, str) and _native.__version__
    assert _native.num_threads >= 1


def pre(image=IMAGE, resized_hw=(4, 4), padded_hw=(4, 4), mean=(0, 0, 0), std=(1, 1, 1)):
    return cpu.preprocess(image, resized_hw, padded_hw, mean, std)


def post(log_density=np.zeros((4, 4), np.float32), out_hw=(8, 8), valid_hw=(4.0, 4.0), blur_sigma=0.0):
    return cpu.postprocess(log_density, out_hw, valid_hw, blur_sigma)


def f32(rows):
    return np.array(rows, np.float32)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: pre(IMAGE.astype(np.float32)), "image must be a uint8"),
        (lambda: post(np.zeros((4, 4), np.int32)), "log_density must be a floating"),
        (lambda: cpu.summed_area_table(np.ones((4, 4), np.int64)), "prob must be a floating"),
        (lambda: cpu.summed_area_table(np.ones((4, 4), bool)), "prob must be a floating"),
        (lambda: cpu.box_sums(cpu.summed_area_table(PROB), f32([[0, 0, 1, 1]])), "boxes must be an integer"),
        (lambda: cpu.overlay(IMAGE.astype(np.int16), PROB), "image must be a uint8"),
    ],
)
def test_wrong_dtype_raises_type_error(call, match):
    with pytest.raises(TypeError, match=match):
        call()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        # wrong dimensions
        (lambda: pre(np.zeros((8, 8), np.uint8)), r"image must have shape \(H, W, 3\), got \(8, 8\)"),
        (lambda: pre(np.zeros((8, 8, 4), np.uint8)), r"got \(8, 8, 4\)"),
        (lambda: post(np.zeros((1, 4, 4), np.float32)), r"log_density must have shape \(h, w\)"),
        (lambda: cpu.summed_area_table(np.zeros(5, np.float32)), r"prob must have shape \(H, W\), got \(5,\)"),
        (lambda: cpu.box_sums(cpu.summed_area_table(PROB), np.zeros((3, 5), int)), r"boxes must have shape \(N, 4\)"),
        (lambda: cpu.overlay(IMAGE, np.zeros((8, 9), np.float32)), r"prob must have the image's \(H, W\) = \(8, 8"),
        # zero and impossible sizes
        (lambda: pre(np.zeros((0, 8, 3), np.uint8)), "image must not be empty"),
        (lambda: pre(resized_hw=(0, 4)), "resized_hw must be at least"),
        (lambda: pre(padded_hw=(3, 4)), "padded_hw must be >= resized_hw"),
        (lambda: post(out_hw=(0, 8)), "out_hw must be at least"),
        (lambda: post(valid_hw=(0.0, 4.0)), "valid_hw must be positive"),
        (lambda: post(out_hw=(10**10, 10**10)), "cannot allocate"),
        (lambda: post(out_hw=(10**6, 10**6)), "cannot allocate"),
        (lambda: post(out_hw=(2**25, 2)), "out_hw sides must be at most 16777216 pixels"),  # 700 MB of row tables
        (lambda: cpu.summed_area_table(np.zeros((0, 3), np.float32)), "prob must not be empty"),
        # bad values
        (lambda: pre(std=(1, 0, 1)), r"std must be finite and non-zero, got std\[1\]"),
        (lambda: pre(mean=(0, 0)), "mean must have 3 values"),
        (lambda: pre(resized_hw=(4, 4, 4)), "resized_hw must be a pair"),
        (lambda: post(out_hw=(8.5, 8)), "out_hw must be a pair .* of integers"),
        (lambda: post(f32([[0.0, np.nan]]), valid_hw=(1.0, 2.0)), r"log_density must be finite, found nan at \(0, 1\)"),
        (lambda: post(f32([[np.inf]]), valid_hw=(1.0, 1.0)), "log_density must be finite"),
        (lambda: post(blur_sigma=-1), "blur_sigma must be"),
        (lambda: cpu.quantize(f32([[0.5, np.nan]])), "prob must be finite and >= 0"),
        (lambda: cpu.quantize(f32([[0.5, -0.1]])), "prob must be finite and >= 0"),
        (lambda: cpu.quantize(PROB, bits=12), "bits must be 8 or 16, got 12"),
        (lambda: cpu.colorize(f32([[np.inf]])), "values must be finite"),
        (lambda: cpu.colorize(PROB, cmap="jet"), "cmap must be 'turbo' or 'inferno', got 'jet'"),
        (lambda: cpu.overlay(IMAGE, PROB, alpha=1.5), r"alpha must be a number in \[0, 1\], got 1.5"),
        (lambda: cpu.overlay(IMAGE, PROB, alpha=None), r"alpha must be a number in \[0, 1\], got None"),
    ],
)
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()


@pytest.mark.parametrize(
    ("box", "match"),
    [
        ([3, 3, 3, 5], r"boxes\[1\] = \(3, 3, 3, 5\) is empty"),
        ([4, 6, 7, 2], r"boxes\[1\] = \(4, 6, 7, 2\) is empty"),
        ([8, 0, 12, 4], r"boxes\[1\] = \(8, 0, 12, 4\) lies entirely outside the 8x8"),
        ([-5, 2, 0, 4], "lies entirely outside"),
        ([2, -9, 4, -1], "lies entirely outside"),
    ],
)
def test_box_sums_rejects_empty_and_outside_boxes_by_index(box, match):
    sat = cpu.summed_area_table(PROB)
    with pytest.raises(InputError, match=match):
        cpu.box_sums(sat, [[0, 0, 8, 8], box, [1, 1, 9, 9]])


def test_box_sums_reports_the_first_bad_box_of_a_large_batch():
    sat = cpu.summed_area_table(np.ones((64, 64), np.float32))
    boxes = np.tile(np.array([[0, 0, 10, 10]], np.int64), (200_000, 1))
    boxes[150_000] = [5, 5, 5, 9]
    boxes[190_000] = [70, 0, 80, 9]
    with pytest.raises(InputError, match=r"boxes\[150000\]"):
        cpu.box_sums(sat, boxes)
    boxes[150_000] = [-3, -3, 70, 2]  # clipped to (0, 0, 64, 2)
    boxes[190_000] = [63, 63, 64, 64]
    sums = cpu.box_sums(sat, boxes)
    assert sums[150_000] == 128.0 and sums[190_000] == 1.0 and (np.delete(sums, [150_000, 190_000]) == 100.0).all()


def test_no_boxes_gives_empty_result():
    out = cpu.box_sums(cpu.summed_area_table(PROB), np.zeros((0, 4), np.int64))
    assert out.shape == (0,) and out.dtype == np.float64


def test_views_and_other_dtypes_are_converted():
    """Non-contiguous views and other float/int dtypes are accepted and give the contiguous result."""
    rng = np.random.default_rng(0)
    prob = rng.random((40, 60))
    view = prob[::2, ::3]
    np.testing.assert_array_equal(cpu.summed_area_table(view), cpu.summed_area_table(np.ascontiguousarray(view)))
    half = view.astype(np.float16)
    np.testing.assert_array_equal(cpu.summed_area_table(half), cpu.summed_area_table(half.astype(np.float32)))
    boxes32 = np.array([[0, 0, 5, 5]], np.int32)
    sat = cpu.summed_area_table(prob)
    assert cpu.box_sums(sat, boxes32)[0] == pytest.approx(prob[:5, :5].sum(), abs=1e-12)
    image = np.asfortranarray(rng.integers(0, 256, (9, 7, 3), dtype=np.uint8))
    np.testing.assert_array_equal(
        cpu.preprocess(image, (9, 7), (9, 7), (0, 0, 0), (1, 1, 1)), image.transpose(2, 0, 1)[None].astype(np.float32)
    )


def test_kernels_run_concurrently_from_threads():
    """Kernels release the GIL; several Python threads calling them at once all get correct results."""
    rng = np.random.default_rng(5)
    maps = [rng.random((900 + i, 700)).astype(np.float32) for i in range(4)]
    expected = [m.astype(np.float64).sum() for m in maps]

    def work(i):
        sat = cpu.summed_area_table(maps[i])
        grid = rng.standard_normal((30, 40)).astype(np.float32) if i % 2 else np.zeros((30, 40), np.float32)
        prob = cpu.postprocess(grid, (300, 400), (30.0, 40.0), blur_sigma=2.0)
        return sat[-1, -1], prob.sum(dtype=np.float64)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    for (total, prob_sum), ref in zip(results, expected):
        assert total == pytest.approx(ref, rel=1e-12)
        assert abs(prob_sum - 1.0) < 1e-6


def test_large_outputs_are_recycled_without_stale_values():
    """Big tables reuse freed memory; every value is rewritten, so a reused buffer never leaks old data."""
    big = np.ones((2100, 2100), np.float32)
    gc.collect()  # earlier tests' garbage, freed between the two calls, could hand the pool a better-fitting buffer
    first = cpu.summed_area_table(big)
    address = first.__array_interface__["data"][0]
    del first
    gc.collect()
    second = cpu.summed_area_table(np.full((2100, 2100), 2.0, np.float32))
    assert second.__array_interface__["data"][0] == address
    assert second[0].max() == 0.0 and second[:, 0].max() == 0.0 and second[-1, -1] == 2.0 * 2100 * 2100
    second[1000, 1000] = -1.0  # the array owns writable memory
    assert second.flags.writeable and second.flags.c_contiguous


@pytest.mark.skipif(sys.platform != "linux", reason="counts Linux page faults (getrusage ru_minflt)")
def test_ad_sized_tables_do_not_fault_in_fresh_pages_each_call():
    """A 300x600 table (1.4 MiB) is over glibc's 128 KiB mmap threshold: unpooled, every call paid ~350 zeroed
    4 KiB pages (five times the table's own cost at 500x500). Recycled, a call touches no new page."""
    import resource

    prob = np.ones((600, 300), np.float32)
    keep = [cpu.summed_area_table(prob)]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        keep.append(cpu.summed_area_table(prob))
        del keep[:-1]
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
    assert faults < 20, f"{faults:.0f} page faults per call for a {keep[0].nbytes >> 10} KiB table"


def test_a_pool_full_of_an_earlier_workloads_buffers_still_recycles_a_new_size():
    """The newest freed buffer is kept and the oldest kept ones make room: four freed 1080p tables must not lock
    out the 2100² tables that follow (the buffer they free is the one the next call gets)."""
    small = [cpu.summed_area_table(np.ones((1080, 1080), np.float32)) for _ in range(4)]
    del small
    gc.collect()
    big = np.ones((2100, 2100), np.float32)
    first = cpu.summed_area_table(big)
    address, nbytes = first.__array_interface__["data"][0], first.nbytes
    del first
    gc.collect()
    other = np.empty(nbytes, np.uint8)  # had the table gone back to the OS, this would be its memory
    assert cpu.summed_area_table(big).__array_interface__["data"][0] == address
    del other


def test_results_do_not_depend_on_the_thread_count():
    """Kernels split work at fixed boundaries, so 1 and 3 threads give bit-identical results."""
    script = (
        "import hashlib, numpy as np; from foveal import cpu; rng = np.random.default_rng(7);"
        "p = rng.random((1500, 700), dtype=np.float32); g = rng.normal(0, 3, (60, 40)).astype(np.float32);"
        "out = [cpu.summed_area_table(p), cpu.summed_area_table(p.astype(np.float64)),"
        " cpu.postprocess(g, (900, 600), (55.5, 40.0), 2.5), cpu.postprocess(g, (1001, 613), (55.5, 40.0)),"
        " *cpu.postprocess_sat(g, (480, 1270), (59.0, 33.5), 0.0, (0.7, 3.0)), cpu.quantize(p, 16)[0]];"
        "print(hashlib.sha256(b''.join(a.tobytes() for a in out)).hexdigest())"
    )
    digests = {
        n: subprocess.run(
            [sys.executable, "-c", script], env={**os.environ, "FOVEAL_NUM_THREADS": str(n)},
            capture_output=True, text=True, check=True,
        ).stdout
        for n in (1, 3)
    }
    assert digests[1] == digests[3]


def test_workers_persist_across_calls():
    """Kernels reuse one pool of workers: fifty parallel calls start no new OS threads after the first."""
    script = (
        "import os, threading, time, numpy as np; from foveal import cpu\n"
        "p = np.ones((2100, 700), np.float32); cpu.summed_area_table(p)\n"
        "base = set(os.listdir('/proc/self/task')); seen = set(base); stop = threading.Event()\n"
        "def watch():\n"
        "    while not stop.is_set(): seen.update(os.listdir('/proc/self/task')); time.sleep(0.0005)\n"
        "w = threading.Thread(target=watch); w.start()\n"
        "for _ in range(50): cpu.summed_area_table(p)\n"
        "stop.set(); w.join(); print(len(seen - base))"
    )
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "FOVEAL_NUM_THREADS": "3"},
                         capture_output=True, text=True, check=True, timeout=120)
    assert int(out.stdout) == 1  # the watcher itself


def test_forked_child_gets_its_own_workers():
    """A child forked after the pool started (multiprocessing, Ray, gunicorn) runs parallel kernels, not hangs."""
    script = (
        "import os, numpy as np; from foveal import cpu;"
        "p = np.ones((2100, 700), np.float32); cpu.summed_area_table(p);"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0 if cpu.summed_area_table(p)[-1, -1] == p.size else 3)\n"
        "print(os.waitpid(pid, 0)[1])"
    )
    out = subprocess.run([sys.executable, "-c", script], env={**os.environ, "FOVEAL_NUM_THREADS": "3"},
                         capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "0"


@pytest.mark.parametrize("out_hw, grid_hw, sigma", [((1080, 1920), (38, 64), 0.0), ((333, 517), (12, 20), 2.5),
                                                     ((1, 1), (1, 1), 0.0), ((7, 900), (3, 40), 0.0),
                                                     ((2100, 40), (70, 2), 0.0)])
def test_fused_postprocess_sat_equals_the_two_steps(out_hw, grid_hw, sigma):
    """postprocess_sat is postprocess followed by summed_area_table, bit for bit, only with fewer passes."""
    grid = np.random.default_rng(11).normal(0, 3, grid_hw).astype(np.float32)
    valid = (grid_hw[0] - 0.3, grid_hw[1] - 0.5)
    prob, sat = cpu.postprocess_sat(grid, out_hw, valid, sigma)
    expected = cpu.postprocess(grid, out_hw, valid, sigma)
    np.testing.assert_array_equal(prob, expected)
    np.testing.assert_array_equal(sat, cpu.summed_area_table(expected))


def test_fused_postprocess_sat_checks_like_postprocess():
    with pytest.raises(InputError, match="finite"):
        cpu.postprocess_sat(np.array([[0.0, np.nan]], np.float32), (4, 4), (1.0, 2.0))
    with pytest.raises(InputError, match="out_hw"):
        cpu.postprocess_sat(np.zeros((2, 2), np.float32), (0, 4), (2.0, 2.0))


@pytest.mark.parametrize("value", ["0", "-3", "abc", "1025", "10000", " "])
def test_bad_thread_count_is_an_input_error(monkeypatch, value):
    """Thousands of threads hung every command; 0 or text were silently ignored."""
    from foveal import Engine, InputError, cpu

    monkeypatch.setenv("FOVEAL_NUM_THREADS", value)
    with pytest.raises(InputError, match="FOVEAL_NUM_THREADS must be a whole number from 1 to 1024"):
        cpu.thread_count()
    with pytest.raises(InputError, match="FOVEAL_NUM_THREADS"):
        Engine("itti-koch")


def test_unsigned_boxes_beyond_int64_are_refused():
    """uint64 2**64 - 5 wrapped to -5 and was clipped into the image: a sum of the wrong box."""
    sat = cpu.summed_area_table(np.ones((8, 8), np.float32))
    with pytest.raises(InputError, match="outside any image"):
        cpu.box_sums(sat, np.array([[2**64 - 5, 0, 5, 5]], np.uint64))


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="reads MemAvailable from Linux's /proc/meminfo")
def test_an_output_beyond_available_memory_is_refused_not_killed():
    """Linux overcommits: an output larger than the memory there is used to be handed out, and the process was killed
    when it was written. In a child process, so a regression kills the child, not the test run."""
    script = """
import numpy as np
from foveal import cpu
from foveal.errors import InputError
kib = next(int(line.split()[1]) for line in open("/proc/meminfo") if line.startswith("MemAvailable:"))
side = int((1.2 * kib * 1024 / 4) ** 0.5)  # a float32 map 1.2x the memory available
try:
    cpu.postprocess(np.zeros((4, 4), np.float32), (side, side), (4.0, 4.0))
except InputError as e:
    print(e)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "cannot allocate an output of shape" in out.stdout, (out.returncode, out.stderr)


def test_a_tree_without_the_built_module_says_to_build_it(tmp_path):
    """A source tree on PYTHONPATH that was never built (or built for another Python) said "cannot import name
    '_native' from partially initialized module 'foveal' (most likely due to a circular import)"."""
    import foveal

    shutil.copytree(os.path.dirname(foveal.__file__), tmp_path / "foveal",
                    ignore=shutil.ignore_patterns("_native*.so", "*.onnx", "*.safetensors", "__pycache__"))
    proc = subprocess.run([sys.executable, "-c", "import foveal"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: foveal's C++ module foveal._native is not built for this Python in "), last
    assert "circular import" not in last, last
    # An installed foveal (this test's own) is hidden by the tree, so the way out is the path, not installing again
    assert last.endswith("which is first on the path: take its folder off PYTHONPATH (or leave it as the current "
                         "folder) to use the foveal `pip install .` installs, or put a built copy first (`pip "
                         "install --target DIR .`, DIR on PYTHONPATH)"), last
