"""GPU kernels: CuPy twins of :mod:`foveal.cpu`, plus batched variants.

Same names, signatures and defaults as ``foveal.cpu``; inputs may be NumPy or CuPy arrays, results are CuPy arrays
on the current device, and every launch goes to CuPy's current stream (``with stream:`` selects it), so an engine
keeps its whole pipeline on one stream. Results agree with the CPU twins to float rounding (see
tests/test_twins.py for the tolerances); colorize and overlay are bit-identical.

The kernels live in ``foveal/cuda/*.cu`` (``csrc/cuda`` in a source checkout) and are compiled by NVRTC through
``cupy.RawModule`` on first use, once per device. Importing this module needs no GPU; calling a kernel without CuPy
raises :class:`~foveal.errors.BackendUnavailableError`.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .cpu import _alpha, _check_image, _pair, _triple, checked_blur_sigma
from .errors import BackendUnavailableError, DtypeError, InputError

try:
    import cupy as cp
except ImportError:  # the CPU path must not need CuPy
    cp = None

__all__ = ["preprocess", "postprocess", "summed_area_table", "box_sums", "colorize", "overlay",
           "preprocess_batch", "postprocess_batch", "summed_area_table_batch", "box_sums_batch", "cuda_dir",
           "is_device_array", "synchronize", "unavailable"]

_HERE = Path(__file__).resolve().parent
_COMMON = '#include "cuda/common.cuh"'
SAT_TILE_H = 32  # rows per SAT tile (FOVEAL_SAT_TILE_H in sat.cu); TILE_W is fixed at 128 there
_SAT_TILE_W = 128
_THREADS = 256
#: CUDA's largest grid y and z: launches that put maps or tile rows there are split or refused beyond it.
MAX_GRID_YZ = 65535
#: The longest side the postprocess takes, as on the CPU (csrc/native/postprocess.cpp kMaxSide).
MAX_SIDE = 1 << 24


def cuda_dir() -> Path:
    """Folder holding the ``.cu`` sources: installed beside this module, else ``csrc/cuda`` of a source checkout."""
    for folder in (_HERE / "cuda", _HERE.parents[1] / "csrc" / "cuda"):
        if (folder / "common.cuh").is_file():
            return folder
    raise BackendUnavailableError(f"CUDA kernel sources not found in {_HERE / 'cuda'} or "
                                  f"{_HERE.parents[1] / 'csrc' / 'cuda'}: reinstall foveal")


def kernel_source(file: str) -> str:
    """Text of ``file`` (e.g. ``"sat.cu"``) with its ``cuda/common.cuh`` include inlined.

    Inlining (rather than ``-I``) keeps CuPy's kernel cache, which hashes the source text, correct when the header
    changes.
    """
    folder = cuda_dir()
    text = (folder / file).read_text(encoding="utf-8")
    if _COMMON in text:
        text = text.replace(_COMMON, (folder / "common.cuh").read_text(encoding="utf-8"))
    return text


def _cupy() -> Any:
    if cp is None:
        raise BackendUnavailableError("foveal.gpu needs CuPy: pip install 'foveal[gpu]' (cupy-cuda13x)")
    return cp


def is_device_array(a: Any) -> bool:
    """Whether ``a`` is a CuPy array (False without CuPy)."""
    return cp is not None and isinstance(a, cp.ndarray)


def synchronize() -> None:
    """Wait until everything queued on CuPy's current stream has run."""
    _cupy().cuda.get_current_stream().synchronize()


def unavailable() -> str | None:
    """Why the GPU path cannot run here (no CuPy, no CUDA device or driver), or None if it can. Creates nothing."""
    if cp is None:
        return "CuPy is not installed: pip install 'foveal[gpu]' (cupy-cuda13x)"
    try:
        count = cp.cuda.runtime.getDeviceCount()
    except Exception as exc:  # noqa: BLE001 - CUDARuntimeError without a driver, other errors on broken setups
        return f"no usable CUDA device ({type(exc).__name__}: {exc})"
    return None if count > 0 else "no CUDA device found"


_MODULES: dict[tuple[int, str, tuple[tuple[str, int], ...]], Any] = {}


def _kernel(file: str, name: str, defines: tuple[tuple[str, int], ...] = ()) -> Any:
    """Kernel ``name`` from ``file``, compiled once per (device, file, defines)."""
    xp = _cupy()
    key = (xp.cuda.runtime.getDevice(), file, defines)
    module = _MODULES.get(key)
    if module is None:
        preamble = "".join(f"#define {k} {v}\n" for k, v in defines)
        module = _MODULES[key] = xp.RawModule(code=preamble + kernel_source(file), options=("-std=c++17",))
    return module.get_function(name)


def _blocks(n: int, per: int = _THREADS, cap: int = 1 << 16) -> int:
    return max(1, min(cap, -(-n // per)))


def _to_device(a: Any) -> Any:
    """``a`` on the current device; NumPy input goes through a reused pinned staging buffer."""
    xp = _cupy()
    if isinstance(a, xp.ndarray):
        return a
    return _staging().upload(np.ascontiguousarray(a))


class _Staging:
    """A grow-only pinned host buffer per device for asynchronous uploads.

    Before the buffer is overwritten the host waits for the previous upload from it, so a copy in flight never reads
    the next image; a lock keeps threads sharing the device from interleaving.
    """

    def __init__(self) -> None:
        self._buffer: Any = None
        self._nbytes = 0
        self._done: Any = None
        self._lock = threading.Lock()

    def upload(self, host: np.ndarray) -> Any:
        xp = _cupy()
        with self._lock:
            if self._done is not None:
                self._done.synchronize()
            if host.nbytes > self._nbytes:
                self._nbytes = max(host.nbytes, 2 * self._nbytes)
                self._buffer = xp.cuda.alloc_pinned_memory(self._nbytes)
            pinned = np.frombuffer(self._buffer, dtype=host.dtype, count=host.size).reshape(host.shape)
            np.copyto(pinned, host)
            device = xp.empty(host.shape, dtype=host.dtype)
            device.set(pinned)  # asynchronous on the current stream: the source is pinned
            self._done = xp.cuda.Event(disable_timing=True)
            self._done.record()
        return device


_STAGING: dict[int, _Staging] = {}


def _staging() -> _Staging:
    device = _cupy().cuda.runtime.getDevice()
    return _STAGING.setdefault(device, _Staging())


def _as_array(a: Any) -> Any:
    """CuPy arrays as they are, anything else through NumPy."""
    return a if isinstance(a, _cupy().ndarray) else np.asarray(a)


def _float_map(a: Any, name: str, ndim: int, layout: str, dtypes: tuple = (np.float32,)) -> Any:
    """``a`` as a C-contiguous CuPy array of one of ``dtypes`` (else the first); DtypeError unless floating."""
    xp = _cupy()
    a = _as_array(a)
    if a.dtype.kind != "f":
        raise DtypeError(f"{name} must be a floating array ({np.dtype(dtypes[0]).name}), got dtype {a.dtype}")
    if a.ndim != ndim:
        raise InputError(f"{name} must have shape {layout}, got {a.shape}")
    if a.size == 0:
        raise InputError(f"{name} must not be empty, got shape {a.shape}")
    dtype = a.dtype if a.dtype in dtypes else dtypes[0]
    return xp.ascontiguousarray(_to_device(a), dtype=dtype)


def preprocess(image: Any, resized_hw: tuple[int, int], padded_hw: tuple[int, int], mean: Sequence[float],
               std: Sequence[float], offset_hw: tuple[int, int] = (0, 0), *, dtype: Any = np.float32) -> Any:
    """Twin of :func:`foveal.cpu.preprocess`: uint8[H, W, 3] → float32 (or float16) [1, 3, Hp, Wp] on the GPU.

    .. seealso:: :func:`foveal.cpu.preprocess`
    """
    return preprocess_batch([image], [resized_hw], padded_hw, mean, std, [offset_hw], dtype=dtype)


def preprocess_batch(images: Sequence[Any], resized_hws: Sequence[tuple[int, int]], padded_hw: tuple[int, int],
                     mean: Sequence[float], std: Sequence[float],
                     offset_hws: Sequence[tuple[int, int]] | None = None, *, dtype: Any = np.float32) -> Any:
    """Preprocess images of any sizes into one [N, 3, Hp, Wp] batch with one kernel launch; image i sits at
    ``offset_hws[i]`` (default: the top-left corner).

    ``dtype`` float32 or float16 (rounded to nearest). Host images are uploaded through a pinned buffer.
    """
    xp = _cupy()
    offset_hws = [(0, 0)] * len(images) if offset_hws is None else offset_hws
    if len(images) == 0 or not len(images) == len(resized_hws) == len(offset_hws):
        raise InputError(f"images, resized_hws and offset_hws must be non-empty and of equal length, got "
                         f"{len(images)}, {len(resized_hws)} and {len(offset_hws)}")
    if len(images) > MAX_GRID_YZ:  # one grid row of blocks per image
        raise InputError(f"a batch holds at most {MAX_GRID_YZ:,} images, got {len(images):,}; split it")
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise DtypeError(f"dtype must be float32 or float16, got {dtype}")
    ph, pw = _pair(padded_hw, "padded_hw", int)
    if -(-ph // 8) > MAX_GRID_YZ:  # eight rows a block, the blocks in grid y
        raise InputError(f"padded_hw is {ph:,} rows, taller than the GPU preprocess takes ({MAX_GRID_YZ * 8:,}); "
                         "use the CPU")
    mean, std = _triple(mean, "mean"), _triple(std, "std")
    for c in range(3):
        if not math.isfinite(mean[c]):
            raise InputError(f"mean must be finite, got mean[{c}] = {mean[c]}")
        if not math.isfinite(std[c]) or std[c] == 0.0:
            raise InputError(f"std must be finite and non-zero, got std[{c}] = {std[c]}")
    desc = np.empty((len(images), 7), dtype=np.int64)
    device_images = []
    for i, (image, resized, offset_hw) in enumerate(zip(images, resized_hws, offset_hws)):
        image = _as_array(image)
        _check_image(image, f"images[{i}]" if len(images) > 1 else "image")
        rh, rw = _pair(resized, "resized_hw", int)
        if rh < 1 or rw < 1:
            raise InputError(f"resized_hw must be at least (1, 1), got ({rh}, {rw})")
        if ph < rh or pw < rw:
            raise InputError(f"padded_hw must be >= resized_hw, got padded ({ph}, {pw}) for resized ({rh}, {rw})")
        top, left = _pair(offset_hw, "offset_hw", int)
        if top < 0 or left < 0 or top + rh > ph or left + rw > pw:
            raise InputError(f"offset_hw must place the resized image inside the padding, got offset ({top}, {left}) "
                             f"for resized ({rh}, {rw}) in padded ({ph}, {pw})")
        img = xp.ascontiguousarray(_to_device(image))
        device_images.append(img)  # keeps the upload alive until the launch below is queued
        desc[i] = (img.data.ptr, img.shape[0], img.shape[1], rh, rw, top, left)
    # As the CPU: x * (1/std) + (-mean/std), both rounded to float from double.
    scale = [np.float32(1.0 / s) for s in std]
    offset = [np.float32(-m / s) for m, s in zip(mean, std)]
    out = xp.empty((len(images), 3, ph, pw), dtype=dtype)
    name = "preprocess_u8_f32" if dtype == np.float32 else "preprocess_u8_f16"
    _kernel("preprocess.cu", name)(
        (-(-pw // 32), -(-ph // 8), len(images)), (32, 8, 1),
        (xp.asarray(desc), np.int32(ph), np.int32(pw), *scale, *offset, out))
    return out


def postprocess(log_density: Any, out_hw: tuple[int, int], valid_hw: tuple[float, float],
                blur_sigma: float = 0.0, origin_hw: tuple[float, float] = (0.0, 0.0)) -> Any:
    """Twin of :func:`foveal.cpu.postprocess`: float32[h, w] log-density → float32[H, W] summing to 1.

    .. seealso:: :func:`foveal.cpu.postprocess`
    """
    log_density = _as_array(log_density)
    if log_density.ndim != 2:
        raise InputError(f"log_density must have shape (h, w), got {log_density.shape}")
    return postprocess_batch(log_density[None], [out_hw], [valid_hw], blur_sigma, [origin_hw])[0]


def gaussian_taps(sigma: float) -> np.ndarray:
    """The CPU's blur kernel: exp(-x²/2σ²) over radius ceil(3σ), normalised in float64, as float32."""
    radius = math.ceil(3.0 * sigma)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) * (x / sigma))
    return (k / k.sum()).astype(np.float32)


def postprocess_batch(log_density: Any, out_hws: Sequence[tuple[int, int]], valid_hws: Sequence[tuple[float, float]],
                      blur_sigma: float = 0.0, origin_hws: Sequence[tuple[float, float]] | None = None) -> list[Any]:
    """Postprocess N maps of one grid size (``log_density`` [N, h, w] or the network's [N, 1, h, w]) into
    probability maps of their own sizes, four or five launches for the whole batch; map i is the window of
    ``valid_hws[i]`` cells from ``origin_hws[i]`` (default: the grid's top-left corner).

    Raises InputError when the grid holds NaN or inf (this costs one device synchronisation per batch).
    """
    xp = _cupy()
    log_density = _as_array(log_density)
    if log_density.ndim == 4 and log_density.shape[1] == 1:
        log_density = log_density[:, 0]
    grid = _float_map(log_density, "log_density", 3, "(N, h, w)")
    n, gh, gw = grid.shape
    if n > MAX_GRID_YZ:  # one grid row of blocks per map
        raise InputError(f"a batch holds at most {MAX_GRID_YZ:,} maps, got {n:,}; split it")
    origin_hws = [(0.0, 0.0)] * n if origin_hws is None else origin_hws
    if len(out_hws) != n or len(valid_hws) != n or len(origin_hws) != n:
        raise InputError(f"need one out_hw, valid_hw and origin_hw per map: {n} maps, {len(out_hws)} out_hws, "
                         f"{len(valid_hws)} valid_hws, {len(origin_hws)} origin_hws")
    blur_sigma = checked_blur_sigma(blur_sigma)
    desc = np.empty((n, 3), dtype=np.int64)
    window = np.empty((n, 4), dtype=np.float64)
    offset = 0
    for i, (out_hw, valid_hw, origin_hw) in enumerate(zip(out_hws, valid_hws, origin_hws)):
        h, w = _pair(out_hw, "out_hw", int)
        vh, vw = _pair(valid_hw, "valid_hw", float)
        top, left = _pair(origin_hw, "origin_hw", float)
        if h < 1 or w < 1:
            raise InputError(f"out_hw must be at least (1, 1), got ({h}, {w})")
        if h > MAX_SIDE or w > MAX_SIDE:  # the kernel reads sides as int: 2^31 wrapped negative and wrote nothing
            raise InputError(f"out_hw sides must be at most {MAX_SIDE} pixels, got ({h}, {w})")
        if not (math.isfinite(vh) and math.isfinite(vw) and vh > 0 and vw > 0):
            raise InputError(f"valid_hw must be positive and finite, got ({vh}, {vw})")
        if not (math.isfinite(top) and math.isfinite(left)):
            raise InputError(f"origin_hw must be finite, got ({top}, {left})")
        desc[i], window[i] = (h, w, offset), (top, left, vh, vw)
        offset += h * w
    if not bool(xp.isfinite(grid).all()):
        where = tuple(int(v) for v in xp.argwhere(~xp.isfinite(grid))[0].get())
        raise InputError(f"log_density must be finite, found {float(grid[where])} at {where}")
    gmax = grid.max(axis=(1, 2))
    largest = int((desc[:, 0] * desc[:, 1]).max())
    blocks = _blocks(largest, _THREADS * 8, 512)  # per map; partials are combined by every block
    launch = ((blocks, n), (_THREADS,))
    maps = (grid, np.int32(gh), np.int32(gw), xp.asarray(desc), xp.asarray(window), gmax)
    out = xp.empty(offset, dtype=np.float32)
    pmax = xp.empty(n * blocks, dtype=np.float32)
    psum = xp.empty(n * blocks, dtype=np.float64)
    if blur_sigma > 0.0:
        taps = xp.asarray(gaussian_taps(blur_sigma))
        radius = np.int32((taps.size - 1) // 2)
        dense, scratch = xp.empty_like(out), xp.empty_like(out)
        _kernel("postprocess.cu", "upsample_log_density")(*launch, (*maps, dense))
        _kernel("postprocess.cu", "blur_cols")(*launch, (dense, maps[3], taps, radius, scratch))
        _kernel("postprocess.cu", "blur_rows")(*launch, (scratch, maps[3], taps, radius, dense))
        source, variant = (dense,), "dense"
    else:
        source, variant = (), "sampled"
    _kernel("postprocess.cu", f"softmax_max_{variant}")(*launch, (*maps, *source, pmax))
    _kernel("postprocess.cu", f"softmax_sum_{variant}")(*launch, (*maps, *source, pmax, psum))
    _kernel("postprocess.cu", f"softmax_normalize_{variant}")(*launch, (*maps, *source, pmax, psum, out))
    return [out[o:o + h * w].reshape(h, w) for h, w, o in desc.tolist()]


def summed_area_table(prob: Any) -> Any:
    """Twin of :func:`foveal.cpu.summed_area_table`: float32|float64[H, W] → float64[H+1, W+1].

    .. seealso:: :func:`foveal.cpu.summed_area_table`
    """
    prob = _as_array(prob)
    if prob.ndim != 2:
        raise InputError(f"prob must have shape (H, W), got {prob.shape}")
    return summed_area_table_batch(prob[None])[0]


def sat_bytes(n: int, h: int, w: int, itemsize: int = 4) -> int:
    """Bytes the SAT kernels move for ``n`` maps of h×w: the map read twice, the table written once, plus the
    per-tile carries (written, scanned in place and read back). Used to report achieved bandwidth."""
    ntx, nty = -(-w // _SAT_TILE_W), -(-h // SAT_TILE_H)
    rows, strips = h * ntx * 8, nty * w * 8
    return n * (2 * h * w * itemsize + (h + 1) * (w + 1) * 8 + 4 * rows + 6 * strips)


def summed_area_table_batch(probs: Any) -> Any:
    """Summed-area tables of N equal-sized maps [N, H, W] → float64[N, H+1, W+1] in five launches (per 65,535
    maps: CUDA's limit on a grid's y and z, which hold the tile rows and the maps)."""
    xp = _cupy()
    p = _float_map(probs, "prob", 3, "(N, H, W)", (np.float32, np.float64))
    n, h, w = p.shape
    if -(-h // SAT_TILE_H) > MAX_GRID_YZ:
        raise InputError(f"a map {h:,} pixels tall is taller than the GPU summed-area table takes "
                         f"({MAX_GRID_YZ * SAT_TILE_H:,}); query it on the CPU (SaliencyMap)")
    out = xp.empty((n, h + 1, w + 1), dtype=np.float64)
    for start in range(0, n, MAX_GRID_YZ):
        _sat_into(p[start:start + MAX_GRID_YZ], out[start:start + MAX_GRID_YZ])
    return out


def _sat_into(p: Any, out: Any) -> None:
    """The five launches of :func:`summed_area_table_batch` for at most MAX_GRID_YZ maps, into ``out``."""
    xp = _cupy()
    n, h, w = p.shape
    suffix = "f32" if p.dtype == np.float32 else "f64"
    ntx, nty = -(-w // _SAT_TILE_W), -(-h // SAT_TILE_H)
    rowsum = xp.empty((n, h, ntx), dtype=np.float64)
    colsum = xp.empty((n, nty, w), dtype=np.float64)
    defines = (("FOVEAL_SAT_TILE_H", SAT_TILE_H),)
    h32, w32 = np.int32(h), np.int32(w)
    tiles = (ntx, nty, n)
    _kernel("sat.cu", f"sat_tile_totals_{suffix}", defines)(tiles, (_SAT_TILE_W,), (p, h32, w32, rowsum, colsum))
    _kernel("sat.cu", "sat_row_carries", defines)((-(-n * h // 8),), (32, 8), (rowsum, np.int32(n * h), np.int32(ntx)))
    _kernel("sat.cu", "sat_strip_carries", defines)((-(-w // 32), n), (32, 32), (colsum, w32, np.int32(nty)))
    prefix_threads = min(1024, -(-w // 32) * 32)
    _kernel("sat.cu", "sat_strip_prefix", defines)((nty, n), (prefix_threads,), (colsum, w32, np.int32(nty)))
    _kernel("sat.cu", f"sat_tiles_{suffix}", defines)(tiles, (_SAT_TILE_W,), (p, h32, w32, rowsum, colsum, out))


def box_sums(sat: Any, boxes: Any) -> Any:
    """Twin of :func:`foveal.cpu.box_sums`: float64[H+1, W+1] table, integer[N, 4] boxes → float64[N].

    .. seealso:: :func:`foveal.cpu.box_sums`
    """
    return box_sums_batch([sat], boxes, np.zeros(len(boxes), dtype=np.int64))


def _check_boxes(boxes: np.ndarray, index: np.ndarray, sizes: np.ndarray) -> None:
    """InputError naming the first box that is empty or wholly outside its map (the CPU's rule and wording)."""
    h, w = sizes[index, 0], sizes[index, 1]
    x0, y0, x1, y1 = boxes.T
    empty = (x1 <= x0) | (y1 <= y0)
    bad = empty | (x1 <= 0) | (y1 <= 0) | (x0 >= w) | (y0 >= h)
    if bad.any():
        i = int(np.argmax(bad))
        box = f"boxes[{i}] = ({', '.join(str(int(v)) for v in boxes[i])})"
        if empty[i]:
            raise InputError(f"{box} is empty: need x1 > x0 and y1 > y0 (x0, y0, x1, y1 half-open)")
        raise InputError(f"{box} lies entirely outside the {int(w[i])}x{int(h[i])} (WxH) image")


def box_sums_batch(sats: Sequence[Any] | Any, boxes: Any, map_index: Any) -> Any:
    """Box sums over many tables in one launch: box k is summed on ``sats[map_index[k]]``.

    ``sats``: a sequence of float64[H+1, W+1] tables (sizes may differ) or one stacked [M, H+1, W+1] array;
    ``boxes`` integer[K, 4] half-open (x0, y0, x1, y1); ``map_index`` integer[K]. Boxes are validated on the host
    (CuPy boxes are copied there first) so a bad one raises InputError naming its index. Returns float64[K].
    """
    xp = _cupy()
    tables = [_float_map(s, "sat", 2, "(H+1, W+1)", (np.float64,)) for s in sats]
    for t in tables:
        if t.shape[0] < 2 or t.shape[1] < 2:
            raise InputError(f"sat must be at least 2x2 (an (H+1)x(W+1) table), got {t.shape[0]}x{t.shape[1]}")
    b = boxes.get() if isinstance(boxes, xp.ndarray) else np.asarray(boxes)
    if b.dtype.kind not in "iu":
        raise DtypeError(f"boxes must be an integer array (int64), got dtype {b.dtype}")
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"boxes must have shape (N, 4) as (x0, y0, x1, y1), got {b.shape}")
    index = map_index.get() if isinstance(map_index, xp.ndarray) else np.asarray(map_index)
    if index.dtype.kind not in "iu" or index.shape != (len(b),):
        raise InputError(f"map_index must be integer of shape ({len(b)},), got {index.dtype} {index.shape}")
    if len(b) and (index.min() < 0 or index.max() >= len(tables)):
        raise InputError(f"map_index values must be in [0, {len(tables)}), got {index.min()}..{index.max()}")
    sizes = np.array([(t.shape[0] - 1, t.shape[1] - 1) for t in tables], dtype=np.int64)
    b = np.ascontiguousarray(b, dtype=np.int64)
    _check_boxes(b, index, sizes)
    out = xp.empty(len(b), dtype=np.float64)
    if len(b):
        desc = np.array([(t.data.ptr, h, w) for t, (h, w) in zip(tables, sizes)], dtype=np.int64)
        _kernel("box_sums.cu", "box_sums")(
            (_blocks(len(b)),), (_THREADS,),
            (xp.asarray(desc), xp.asarray(b), xp.asarray(index, dtype=np.int64), np.int64(len(b)), out))
    return out


_LUTS: dict[tuple[int, str], Any] = {}


def _lut(cmap: str) -> Any:
    """The CPU's 256-entry RGB table for ``cmap`` on the current device, read back through cpu.colorize: a ramp
    0..255 (max 255) indexes entry i at value i."""
    from . import cpu

    xp = _cupy()
    key = (xp.cuda.runtime.getDevice(), cmap)
    if key not in _LUTS:
        _LUTS[key] = xp.asarray(cpu.colorize(np.arange(256, dtype=np.float32)[None], cmap)[0])
    return _LUTS[key]


def _checked_max(a: Any, name: str, non_negative: bool) -> np.float32:
    """max(0, max(a)) as the CPU's checked_max, InputError on NaN/inf (and negatives when ``non_negative``)."""
    lo, hi = float(a.min()), float(a.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or (non_negative and lo < 0):
        raise InputError(f"{name} must be finite" + (" and >= 0" if non_negative else "") + "; found NaN, inf"
                         + (" or a negative value" if non_negative else ""))
    return np.float32(max(hi, 0.0))


def colorize(values: Any, cmap: str = "turbo") -> Any:
    """Twin of :func:`foveal.cpu.colorize`: float32[H, W] → uint8[H, W, 3], bit-identical.

    .. seealso:: :func:`foveal.cpu.colorize`
    """
    xp = _cupy()
    values = _as_array(values)
    if values.dtype.kind not in "fiu":
        raise DtypeError(f"values must be a real array (float32), got dtype {values.dtype}")
    v = _float_map(values.astype(np.float32, copy=False), "values", 2, "(H, W)")
    lut = _lut(str(cmap))
    m = _checked_max(v, "values", False)
    k = np.float32(255.0) / m if m > 0 else np.float32(0.0)
    out = xp.empty((*v.shape, 3), dtype=np.uint8)
    _kernel("colormap.cu", "colorize")((_blocks(v.size),), (_THREADS,), (v, np.int64(v.size), k, lut, out))
    return out


def overlay(image: Any, prob: Any, alpha: float = 0.6, cmap: str = "turbo") -> Any:
    """Twin of :func:`foveal.cpu.overlay`: colormapped ``prob`` blended over ``image`` uint8[H, W, 3], bit-identical.

    .. seealso:: :func:`foveal.cpu.overlay`
    """
    xp = _cupy()
    image = _as_array(image)
    _check_image(image, "image")
    p = _float_map(prob, "prob", 2, "(H, W)")
    if p.shape != image.shape[:2]:
        raise InputError(f"prob must have the image's shape {image.shape[:2]}, got {p.shape}")
    alpha = _alpha(alpha)
    lut = _lut(str(cmap))
    m = _checked_max(p, "prob", True)
    k = np.float32(1.0) / m if m > 0 else np.float32(0.0)
    k_index = np.float32(255.0) / m if m > 0 else np.float32(0.0)
    img = xp.ascontiguousarray(_to_device(image))
    out = xp.empty_like(img)
    _kernel("colormap.cu", "overlay")((_blocks(p.size),), (_THREADS,),
                                      (img, p, np.int64(p.size), k, k_index, np.float32(alpha), lut, out))
    return out
