"""A CPU emulation of the CUDA kernels, so foveal.gpu runs end to end on a machine without a GPU.

``EmulatedCupy`` stands in for the ``cupy`` module inside ``foveal.gpu``: arrays are NumPy arrays, and
``RawModule(code=...)`` compiles the very source text gpu.py hands to NVRTC with the host C++ compiler, behind a
small header that provides CUDA's built-ins: each block's threads run as OS threads, ``__syncthreads`` and the
warp shuffles are barriers (an exited thread drops out, as on the GPU), ``__shared__`` is a static shared by the
block (blocks run one at a time). Wrong indexing, a missing barrier before a shared read, a shuffle that not
every lane reaches (a hang, caught by a timeout), or bad launch arguments all show up here. What it cannot show:
races that need true warp concurrency, GPU float rounding (expf, FMA contraction) and performance. test_twins.py
runs its small cases through it; the same cases also run on a real GPU.
"""
from __future__ import annotations

import atexit
import ctypes
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from foveal.errors import InputError

SHIM = r"""
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <math.h>
#include <memory>
#include <thread>
#include <vector>

struct dim3 { unsigned x = 1, y = 1, z = 1; };
inline thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

namespace emu {
struct Warp {
  std::barrier<> bar{32};
  unsigned char slot[32][8];
};
struct Block {
  std::unique_ptr<std::barrier<>> bar;
  std::vector<std::unique_ptr<Warp>> warps;
};
inline thread_local Block* block;
inline thread_local int tid;
inline Warp& warp() { return *block->warps[tid >> 5]; }
template <class T> T exchange(T v, int src) {
  Warp& w = warp();
  std::memcpy(w.slot[tid & 31], &v, sizeof v);
  w.bar.arrive_and_wait();
  T r;
  std::memcpy(&r, w.slot[src & 31], sizeof r);
  w.bar.arrive_and_wait();
  return r;
}
inline unsigned short half_bits(float f) {
  _Float16 h = static_cast<_Float16>(f);
  unsigned short bits;
  std::memcpy(&bits, &h, sizeof bits);
  return bits;
}
inline void run(dim3 grid, dim3 threads, const std::function<void()>& kernel) {
  const int n = threads.x * threads.y * threads.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        Block b;
        b.bar = std::make_unique<std::barrier<>>(n);
        for (int w = 0; w < (n + 31) / 32; ++w) b.warps.push_back(std::make_unique<Warp>());
        std::vector<std::thread> pool;
        for (int t = 0; t < n; ++t)
          pool.emplace_back([&, t] {
            block = &b;
            tid = t;
            threadIdx = {unsigned(t % threads.x), unsigned(t / threads.x % threads.y),
                         unsigned(t / (threads.x * threads.y))};
            blockIdx = {bx, by, bz};
            blockDim = threads;
            gridDim = grid;
            kernel();
            b.warps[t >> 5]->bar.arrive_and_drop();  // an exited thread no longer holds barriers up
            b.bar->arrive_and_drop();
          });
        for (auto& th : pool) th.join();
      }
}
}  // namespace emu

inline void __syncthreads() { emu::block->bar->arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emu::warp().bar.arrive_and_wait(); }
template <class T> T __shfl_sync(unsigned, T v, int src) { return emu::exchange(v, src); }
template <class T> T __shfl_up_sync(unsigned, T v, int d) {
  const int lane = emu::tid & 31;
  return emu::exchange(v, lane >= d ? lane - d : lane);
}
template <class T> T __shfl_xor_sync(unsigned, T v, int d) { return emu::exchange(v, (emu::tid & 31) ^ d); }
template <class T> T min(T a, T b) { return b < a ? b : a; }
template <class T> T max(T a, T b) { return a < b ? b : a; }
inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, sizeof f); return f; }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
// The only inline PTX in the kernels is common.cuh's float -> half conversion.
#define asm(...) (h = emu::half_bits(f))
"""

_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_SCALARS = {"int": ctypes.c_int32, "long long": ctypes.c_int64, "float": ctypes.c_float, "double": ctypes.c_double}


def compiler() -> str | None:
    return shutil.which("g++")


def _signatures(code: str) -> dict[str, list[str]]:
    """Kernel name -> parameter types, read from the preprocessed source (macros such as argument lists expanded)."""
    expanded = subprocess.run([compiler(), "-E", "-P", "-x", "c++", "-"], input=code, capture_output=True,
                              text=True, check=True).stdout
    kernels = {}
    for name, params in _KERNEL.findall(expanded):
        types = []
        for p in params.split(","):
            p = " ".join(p.replace("*", " * ").split())
            types.append(p.rsplit(" ", 1)[0] if "*" not in p else p[:p.rindex("*") + 1])
        kernels[name] = types
    return kernels


class _Kernel:
    def __init__(self, lib: ctypes.CDLL, name: str, types: list[str]) -> None:
        self._launch = getattr(lib, f"launch_{name}")
        self._types, self.name = types, name

    def __call__(self, grid: tuple, block: tuple, args: tuple) -> None:
        assert len(args) == len(self._types), f"{self.name}: {len(args)} arguments for {self._types}"
        values = []
        for arg, t in zip(args, self._types):
            if "*" in t:
                assert isinstance(arg, EmulatedArray), f"{self.name}: {t} argument is {type(arg).__name__}"
                values.append(ctypes.c_void_p(arg.ctypes.data))
            else:
                assert isinstance(arg, np.generic), f"{self.name}: {t} argument must be a NumPy scalar, got {arg!r}"
                assert np.dtype(_SCALARS[t]).itemsize == arg.dtype.itemsize, f"{self.name}: {t} given {arg.dtype}"
                values.append(_SCALARS[t](arg.item()))
        pointers = (ctypes.c_void_p * len(values))(*(ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values))
        dims = [*(tuple(grid) + (1, 1))[:3], *(tuple(block) + (1, 1))[:3]]
        # CUDA's limits (grid y and z as foveal.gpu knows them, which a test may lower to reach them cheaply)
        limit = sys.modules["foveal.gpu"].MAX_GRID_YZ
        assert dims[0] < 2**31 and dims[1] <= limit and dims[2] <= limit, f"{self.name}: grid {dims[:3]} over the limit"
        assert dims[3] * dims[4] * dims[5] <= 1024, f"{self.name}: block {dims[3:]} has over 1024 threads"
        done = threading.Event()
        worker = threading.Thread(target=lambda: (self._launch(pointers, *dims), done.set()), daemon=True)
        worker.start()
        assert done.wait(120), f"{self.name} hung: a barrier or shuffle that not every thread reaches"


class _Module:
    _cache: dict[str, ctypes.CDLL] = {}

    def __init__(self, code: str, options: tuple = ()) -> None:
        self._kernels = _signatures(code)
        key = hashlib.sha256(code.encode()).hexdigest()
        if key not in self._cache:
            wrappers = []
            for name, types in self._kernels.items():
                unpacked = ", ".join(f"({t})(*(void**)a[{i}])" if "*" in t else f"*({t}*)a[{i}]"
                                     for i, t in enumerate(types))
                wrappers.append(f'extern "C" void launch_{name}(void** a, unsigned gx, unsigned gy, unsigned gz, '
                                f"unsigned bx, unsigned by, unsigned bz) {{ emu::run({{gx, gy, gz}}, {{bx, by, bz}}, "
                                f"[&] {{ {name}({unpacked}); }}); }}")
            folder = Path(tempfile.mkdtemp(prefix="foveal-emu-"))
            atexit.register(shutil.rmtree, folder, ignore_errors=True)
            (folder / "k.cpp").write_text(SHIM + code + "\n" + "\n".join(wrappers) + "\n")
            run = subprocess.run([compiler(), "-std=c++20", "-O1", "-ffp-contract=off", "-pthread", "-shared", "-fPIC",
                                  "-w", str(folder / "k.cpp"), "-o", str(folder / "k.so")],
                                 capture_output=True, text=True)
            assert run.returncode == 0, run.stderr[-4000:]
            self._cache[key] = ctypes.CDLL(str(folder / "k.so"))
        self._lib = self._cache[key]

    def get_function(self, name: str) -> _Kernel:
        return _Kernel(self._lib, name, self._kernels[name])


class EmulatedArray(np.ndarray):
    """A NumPy array posing as a CuPy one: ``.data.ptr``, ``.get()``, ``.set()``."""

    @property
    def data(self) -> Any:  # type: ignore[override]
        return SimpleNamespace(ptr=self.ctypes.data)

    def get(self) -> np.ndarray:
        return np.array(self)

    def set(self, arr: np.ndarray) -> None:
        self[...] = arr


def _dev(a: np.ndarray) -> EmulatedArray:
    return a.view(EmulatedArray)


class _Event:
    def record(self, stream: Any = None) -> None:
        pass

    def synchronize(self) -> None:
        pass


class EmulatedCupy:
    """The slice of the ``cupy`` module that foveal.gpu uses."""

    ndarray = EmulatedArray
    float32, float64 = np.float32, np.float64
    RawModule = _Module
    cuda = SimpleNamespace(runtime=SimpleNamespace(getDevice=lambda: 0, getDeviceCount=lambda: 1),
                           alloc_pinned_memory=bytearray, Event=lambda disable_timing=False: _Event(),
                           get_current_stream=lambda: _Event())

    @staticmethod
    def empty(shape: Any, dtype: Any = np.float64) -> EmulatedArray:
        return _dev(np.empty(shape, dtype=dtype))

    @staticmethod
    def empty_like(a: np.ndarray) -> EmulatedArray:
        return _dev(np.empty_like(a))

    @staticmethod
    def asarray(a: Any, dtype: Any = None) -> EmulatedArray:
        if isinstance(a, EmulatedArray) and (dtype is None or a.dtype == dtype):
            return a
        return _dev(np.array(a, dtype=dtype))

    @staticmethod
    def ascontiguousarray(a: Any, dtype: Any = None) -> EmulatedArray:
        return _dev(np.ascontiguousarray(a, dtype=dtype))

    @staticmethod
    def asnumpy(a: Any) -> np.ndarray:
        return np.array(a)

    concatenate = staticmethod(lambda arrays: _dev(np.concatenate([np.asarray(a) for a in arrays])))
    stack = staticmethod(lambda arrays, axis=0: _dev(np.stack([np.asarray(a) for a in arrays], axis=axis)))
    isfinite = staticmethod(lambda a: _dev(np.isfinite(np.asarray(a))))
    argwhere = staticmethod(lambda a: _dev(np.argwhere(np.asarray(a))))


def emulated_gpu(monkeypatch: pytest.MonkeyPatch) -> tuple[Any, EmulatedCupy]:
    """foveal.gpu running on the emulation (for this test), and the stand-in cupy module."""
    from foveal import gpu

    if compiler() is None:
        pytest.skip("the CUDA emulation needs g++")
    xp = EmulatedCupy()
    monkeypatch.setattr(gpu, "cp", xp)
    for cache in ("_MODULES", "_STAGING", "_LUTS"):
        monkeypatch.setattr(gpu, cache, {})
    return gpu, xp


def test_emulated_warp_primitives(monkeypatch) -> None:
    """The shuffles and barriers behave as CUDA's: block_sum over 256 threads, a warp scan, a 1024-thread block."""
    gpu, xp = emulated_gpu(monkeypatch)
    code = gpu.kernel_source("sat.cu")
    module = xp.RawModule(code=code)
    rowsum = xp.asarray(np.arange(3 * 70, dtype=np.float64).reshape(3, 70))
    module.get_function("sat_row_carries")((1,), (32, 8), (rowsum, np.int32(3), np.int32(70)))
    expected = np.concatenate([[0], np.cumsum(np.arange(70.0))[:-1]])
    np.testing.assert_array_equal(rowsum[0], expected)
    colsum = xp.asarray(np.ones((2, 1, 2000)))
    module.get_function("sat_strip_prefix")((1, 2), (1024,), (colsum, np.int32(2000), np.int32(1)))
    np.testing.assert_array_equal(colsum[1, 0], np.arange(1.0, 2001.0))


def test_emulation_rejects_wrong_argument_types(monkeypatch) -> None:
    gpu, xp = emulated_gpu(monkeypatch)
    kernel = xp.RawModule(code=gpu.kernel_source("sat.cu")).get_function("sat_row_carries")
    with pytest.raises(AssertionError, match="int given int64"):
        kernel((1,), (32, 1), (xp.empty((1, 1)), np.int64(1), np.int32(1)))


def test_batch_scoring_is_one_box_launch_and_one_sat_per_size(monkeypatch) -> None:
    """Many maps × many boxes: one SAT launch sequence per map size, one box-sum launch, no map copied to the
    host; a second query reuses the SATs."""
    gpu, xp = emulated_gpu(monkeypatch)
    from foveal import DeviceSaliencyMap, box_stats_batch

    launches: list[str] = []
    kernel = gpu._kernel
    monkeypatch.setattr(gpu, "_kernel", lambda file, name, *a: launches.append(name) or kernel(file, name, *a))
    rng = np.random.default_rng(0)
    maps = [DeviceSaliencyMap(xp.asarray(rng.random(s, dtype=np.float32))) for s in [(20, 30)] * 2 + [(7, 3)]]
    boxes = [np.array([[0, 0, 2, 2], [1, 1, 1, 1], [0, 0, m.shape[1], m.shape[0]]]) for m in maps]
    stats = box_stats_batch(maps, boxes)
    assert launches.count("box_sums") == 1 and launches.count("sat_tiles_f32") == 2
    assert all(m._host is None and m._host_sat is None for m in maps)
    np.testing.assert_allclose([s["share"][2] for s in stats], 1.0, rtol=1e-12)
    launches.clear()
    box_stats_batch(maps, boxes)
    assert launches == ["box_sums"]


def test_box_sums_cover_more_boxes_than_the_grid_has_threads(monkeypatch) -> None:
    """The launcher caps the grid at 65,536 blocks; the kernel took one box a thread, so from the 16,777,217th box
    on it returned uninitialised memory. The same path with the cap scaled down to two blocks of 256 threads."""
    gpu, xp = emulated_gpu(monkeypatch)
    from foveal import cpu

    blocks = gpu._blocks
    monkeypatch.setattr(gpu, "_blocks", lambda n, per=256, cap=2: blocks(n, per, cap))
    prob = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    prob /= prob.sum()
    boxes = np.tile(np.array([[0, 0, 30, 20], [3, 4, 10, 9]], np.int64), (350, 1))  # 700 > 2 x 256
    got = xp.asnumpy(gpu.box_sums(cpu.summed_area_table(prob), boxes))
    np.testing.assert_allclose(got, cpu.box_sums(cpu.summed_area_table(prob), boxes), rtol=1e-12)


def test_launches_keep_to_cudas_grid_limits(monkeypatch) -> None:
    """Maps went in grid z and tile rows in grid y, both at most 65,535: 70,000 same-size maps or a 3,000,000-row
    map failed with a driver error, and a side of 2^31 wrapped negative in the postprocess and returned
    uninitialised memory. The same paths with the limit scaled down to 2."""
    gpu, xp = emulated_gpu(monkeypatch)
    from foveal import cpu

    monkeypatch.setattr(gpu, "MAX_GRID_YZ", 2)
    probs = np.random.default_rng(0).random((5, 9, 7)).astype(np.float32)
    sats = xp.asnumpy(gpu.summed_area_table_batch(probs))  # five maps in chunks of two
    np.testing.assert_allclose(sats, [cpu.summed_area_table(p) for p in probs], rtol=1e-12)
    with pytest.raises(InputError, match="taller than the GPU summed-area table takes .64.; query it on the CPU"):
        gpu.summed_area_table_batch(np.ones((1, 65, 3), np.float32))
    with pytest.raises(InputError, match="a batch holds at most 2 maps"):
        gpu.postprocess_batch(np.zeros((3, 4, 4), np.float32), [(8, 8)] * 3, [(4, 4)] * 3)
    with pytest.raises(InputError, match="out_hw sides must be at most 16777216 pixels"):
        gpu.postprocess_batch(np.zeros((1, 4, 4), np.float32), [(1, 2**31)], [(4, 4)])
    with pytest.raises(InputError, match="padded_hw is 17 rows, taller than the GPU preprocess takes .16."):
        gpu.preprocess_batch([np.zeros((17, 1, 3), np.uint8)], [(17, 1)], (17, 8), (0, 0, 0), (1, 1, 1))


def test_batch_scoring_mixes_device_and_host_maps(monkeypatch) -> None:
    """Host maps in the list (an engine that fell back to the CPU) are answered in place, device maps batched."""
    gpu, xp = emulated_gpu(monkeypatch)
    from foveal import DeviceSaliencyMap, SaliencyMap, box_stats_batch

    rng = np.random.default_rng(1)
    probs = [rng.random(s, dtype=np.float32) for s in [(20, 30), (7, 3), (20, 30)]]
    maps = [DeviceSaliencyMap(xp.asarray(probs[0])), SaliencyMap(probs[1]), DeviceSaliencyMap(xp.asarray(probs[2]))]
    boxes = [[[0, 0, 2, 2], [1, 1, 1, 1]], [[0, 0, 3, 7]], [[5, 5, 10, 10]]]
    stats = box_stats_batch(maps, boxes)
    for got, prob, b in zip(stats, probs, boxes):
        expected = SaliencyMap(prob).box_stats(b)
        for key in expected:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-9)


def test_lazy_state_is_built_once_under_threads(monkeypatch) -> None:
    """Eight threads query one fresh map at once: one SAT build, one host copy, identical answers."""
    from concurrent.futures import ThreadPoolExecutor

    gpu, xp = emulated_gpu(monkeypatch)
    from foveal import DeviceSaliencyMap

    builds: list[str] = []
    batch = gpu.summed_area_table_batch
    monkeypatch.setattr(gpu, "summed_area_table_batch", lambda p: builds.append("sat") or batch(p))
    smap = DeviceSaliencyMap(xp.asarray(np.random.default_rng(1).random((30, 40), dtype=np.float32)))
    boxes = np.array([[0, 0, 10, 10], [5, 5, 30, 20]])
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: (smap.box_stats(boxes)["share"], smap.prob), range(8)))
    assert builds == ["sat"]
    for share, prob in results:
        np.testing.assert_array_equal(share, results[0][0])
        assert prob is results[0][1]


@pytest.mark.parametrize("maps, boxes", [([None], [[[0, 0, 1, 1]]]), (None, None), ("map", [[0, 0, 1, 1]])])
def test_box_stats_batch_refuses_what_is_not_a_list_of_maps(maps, boxes) -> None:
    """A None among the maps passed the check (None was also its "nothing found"), and died in an AttributeError."""
    from foveal import box_stats_batch

    with pytest.raises(InputError, match="box_stats_batch: "):
        box_stats_batch(maps, boxes)
