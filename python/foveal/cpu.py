"""CPU kernels: thin wrappers over the C++ module ``foveal._native``.

Each wrapper converts its arrays to the dtype and C order the kernel takes (``np.ascontiguousarray``), checks
dtypes and dimensions, and calls the kernel with the GIL released.  A wrong dtype raises ``TypeError``; a wrong
shape, non-finite value or bad size raises :class:`foveal.errors.InputError` naming the argument.  Kernels use every
CPU this process may run on; set ``FOVEAL_NUM_THREADS`` before import to use fewer.  ``foveal.gpu`` has the same
functions with the same signatures.
"""
from __future__ import annotations

import math
import os
import numbers
import operator
from collections.abc import Callable, Sequence
from importlib.machinery import EXTENSION_SUFFIXES
from typing import Any, TypeVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

try:
    from foveal import _native
except ImportError:
    _HERE = os.path.dirname(__file__)
    if any(os.path.exists(os.path.join(_HERE, "_native" + suffix)) for suffix in EXTENSION_SUFFIXES):
        raise  # built, but it cannot load: the error names why
    # A source tree never built (or built for another Python): Python's own words blame "a circular import". Found
    # first on the path, the tree hides a foveal that `pip install .` built, so installing alone changes nothing.
    raise ImportError(f"foveal's C++ module foveal._native is not built for this Python in {_HERE}, which is first "
                      "on the path: take its folder off PYTHONPATH (or leave it as the current folder) to use the "
                      "foveal `pip install .` installs, or put a built copy first (`pip install --target DIR .`, DIR "
                      "on PYTHONPATH)") from None
from foveal.errors import DtypeError, InputError, real_number

__all__ = ["preprocess", "postprocess", "postprocess_sat", "summed_area_table", "box_sums", "quantize", "colorize", "overlay"]

_R = TypeVar("_R")

# Widest blur postprocess accepts, in output pixels: the kernel (radius 3 sigma) is built whole, so an unbounded
# sigma ran out of memory (1e12) or overflowed its radius into no blur at all (1e19). 1000 px is far wider than any
# map needs (a Gaussian this wide flattens even a 10,000-pixel map).
MAX_BLUR_SIGMA = 1000.0


def checked_blur_sigma(value: object) -> float:
    """``value`` as a float in [0, MAX_BLUR_SIGMA], else InputError (shared by both twins and the Engine)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"blur_sigma must be a number of pixels, got {value!r}")
    try:
        sigma = float(value)
    except OverflowError:  # an int past float's range
        sigma = math.inf
    if not (math.isfinite(sigma) and 0.0 <= sigma <= MAX_BLUR_SIGMA):
        raise InputError(f"blur_sigma must be finite, >= 0 and <= {MAX_BLUR_SIGMA:g} pixels, got {value!r:.40}")
    return sigma


#: Most threads ``FOVEAL_NUM_THREADS`` may ask for (the native pool caps itself there too).
MAX_THREADS = 1024


def thread_count() -> int:
    """Threads the kernels use: ``FOVEAL_NUM_THREADS``, else the CPUs this process may run on (affinity and cgroup
    quota included).  A ``FOVEAL_NUM_THREADS`` that is not a whole number from 1 to :data:`MAX_THREADS` is an
    InputError here (the native pool, which cannot raise at import, ignores it)."""
    raw = os.environ.get("FOVEAL_NUM_THREADS")
    if raw is not None and not (raw.strip().isascii() and raw.strip().isdigit()
                                and 1 <= int(raw) <= MAX_THREADS):
        raise InputError(f"FOVEAL_NUM_THREADS must be a whole number from 1 to {MAX_THREADS}, got {raw!r}; unset it "
                         "to use every CPU this process may run on")
    return int(_native.num_threads)


def usable_cpus() -> int:
    """CPUs this process may run on now: its affinity mask, capped by its cgroup's CPU quota (a container given
    2 CPUs on a 64-core host: 2), whatever ``FOVEAL_NUM_THREADS`` asks for."""
    return int(_native.usable_cpus())


def _call(kernel: Callable[..., _R], *args: object) -> _R:
    """Run a native kernel, re-raising its ValueError (bad user input) as InputError."""
    try:
        return kernel(*args)
    except ValueError as e:
        raise InputError(str(e)) from e
    except TypeError as e:  # pybind11's many-line "incompatible function arguments": an argument C++ cannot hold
        raise InputError(f"{getattr(kernel, '__name__', 'kernel')}: an argument is of a type or size the kernel "
                         "cannot take (sizes and offsets are whole numbers below 2**63, names are text)") from e


def _array(x: ArrayLike, name: str, kinds: str, dtype: type, ndim: int, layout: str) -> NDArray:
    """``x`` as a C-contiguous ``dtype`` array; DtypeError unless its dtype kind is in ``kinds``."""
    a = np.asarray(x)
    if a.dtype.kind not in kinds:
        expected = "floating" if kinds == "f" else "real"
        raise DtypeError(f"{name} must be a {expected} array ({np.dtype(dtype).name}), got dtype {a.dtype}")
    if a.ndim != ndim:
        raise InputError(f"{name} must have shape {layout}, got {a.shape}")
    if a.size == 0:
        raise InputError(f"{name} must not be empty, got shape {a.shape}")
    return np.ascontiguousarray(a, dtype=dtype)


def _check_image(a: Any, name: str) -> None:
    """Dtype and shape checks shared with the GPU twin (works on NumPy and CuPy arrays)."""
    if a.dtype != np.uint8:
        raise DtypeError(f"{name} must be a uint8 RGB array (H, W, 3), got dtype {a.dtype}")
    if a.ndim != 3 or a.shape[2] != 3:
        raise InputError(f"{name} must have shape (H, W, 3), got {a.shape}")
    if a.size == 0:
        raise InputError(f"{name} must not be empty, got shape {a.shape}")


def _image(image: ArrayLike, name: str = "image") -> NDArray[np.uint8]:
    a = np.asarray(image)
    _check_image(a, name)
    return np.ascontiguousarray(a)


def _pair(value: Sequence[float], name: str, kind: Callable[[object], object]) -> tuple:
    """``value`` as a (height, width) pair converted by ``kind`` (``operator.index`` for sizes, ``float``)."""
    try:
        a, b = value
        return kind(a), kind(b)
    except (TypeError, ValueError) as e:
        what = "integers" if kind is operator.index else "numbers"
        raise InputError(f"{name} must be a pair (height, width) of {what}, got {value!r}") from e


def _triple(value: Sequence[float], name: str) -> tuple[float, float, float]:
    try:
        v = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        v = np.empty(0)
    if v.shape != (3,):
        raise InputError(f"{name} must have 3 values (R, G, B), got {value!r:.60}")
    return float(v[0]), float(v[1]), float(v[2])


def _alpha(value: object) -> float:
    """``value`` as a blend weight in [0, 1], else InputError (shared with the GPU twin)."""
    alpha = real_number(value)
    if alpha is None or not 0.0 <= alpha <= 1.0:
        raise InputError(f"alpha must be a number in [0, 1], got {value!r}")
    return alpha


def preprocess(
    image: ArrayLike,
    resized_hw: tuple[int, int],
    padded_hw: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    offset_hw: tuple[int, int] = (0, 0),
) -> NDArray[np.float32]:
    """Turn an RGB image into the network input.

    ``image`` uint8[H, W, 3] is resized to ``resized_hw`` (area average along an axis that shrinks, half-pixel
    bilinear along one that grows), normalised ``(x - mean[c]) / std[c]``, placed with its top-left corner at
    ``offset_hw`` in a ``padded_hw`` input and edge-replicated into the padding on every side.  Returns
    float32[1, 3, Hp, Wp].
    """
    return _call(
        _native.preprocess,
        _image(image),
        _pair(resized_hw, "resized_hw", operator.index),
        _pair(padded_hw, "padded_hw", operator.index),
        _triple(mean, "mean"),
        _triple(std, "std"),
        _pair(offset_hw, "offset_hw", operator.index),
    )


def postprocess(
    log_density: ArrayLike,
    out_hw: tuple[int, int],
    valid_hw: tuple[float, float],
    blur_sigma: float = 0.0,
    origin_hw: tuple[float, float] = (0.0, 0.0),
) -> NDArray[np.float32]:
    """Turn the network's log-density grid into a probability map.

    ``log_density`` float32[h, w] (any additive constant) is sampled bilinearly at output pixel (Y, X) from grid
    point ``(origin_h + (Y + 0.5) * valid_h / H - 0.5, ...)`` clamped to the grid (the image's window:
    ``valid_hw`` cells from ``origin_hw``), blurred by a Gaussian of ``blur_sigma``
    output pixels (radius ceil(3 sigma), reflected edges; at most ``MAX_BLUR_SIGMA``) when ``blur_sigma > 0``,
    then softmaxed over all pixels.  Returns float32[H, W] summing to 1 (float64 sum within 1e-6).  NaN or inf
    input raises InputError.
    """
    grid = _array(log_density, "log_density", "f", np.float32, 2, "(h, w)")
    out = _pair(out_hw, "out_hw", operator.index)
    return _call(_native.postprocess, grid, out, _pair(valid_hw, "valid_hw", float), checked_blur_sigma(blur_sigma),
                 _pair(origin_hw, "origin_hw", float))


def postprocess_sat(
    log_density: ArrayLike,
    out_hw: tuple[int, int],
    valid_hw: tuple[float, float],
    blur_sigma: float = 0.0,
    origin_hw: tuple[float, float] = (0.0, 0.0),
) -> tuple[NDArray[np.float32], NDArray[np.float64]]:
    """:func:`postprocess` and :func:`summed_area_table` of its result, bit for bit, in fewer passes over the map:
    each block of map rows is written (normalised) just before the table is built from it, while it is still in
    cache.  Returns ``(prob, sat)``."""
    grid = _array(log_density, "log_density", "f", np.float32, 2, "(h, w)")
    out = _pair(out_hw, "out_hw", operator.index)
    return _call(_native.postprocess_sat, grid, out, _pair(valid_hw, "valid_hw", float),
                 checked_blur_sigma(blur_sigma), _pair(origin_hw, "origin_hw", float))


def summed_area_table(prob: ArrayLike) -> NDArray[np.float64]:
    """Summed-area table of ``prob`` float32|float64[H, W]: float64[H+1, W+1], zero top row and left column.

    ``sat[y, x]`` is the sum of ``prob[:y, :x]``.  Values are not checked: NaN propagates.
    """
    a = np.asarray(prob)
    dtype = a.dtype if a.dtype in (np.float32, np.float64) else np.float32
    return _call(_native.summed_area_table, _array(a, "prob", "f", dtype, 2, "(H, W)"))


def box_sums(sat: ArrayLike, boxes: ArrayLike) -> NDArray[np.float64]:
    """Sums of ``prob`` over boxes, from its summed-area table.

    ``sat`` float64[H+1, W+1]; ``boxes`` integer[N, 4] rows ``(x0, y0, x1, y1)``, half-open, in pixels.  Boxes
    are clipped to the image; one that is empty (``x1 <= x0`` or ``y1 <= y0``) or wholly outside raises
    InputError naming its index.  Returns float64[N].
    """
    table = _array(sat, "sat", "f", np.float64, 2, "(H+1, W+1)")
    b = np.asarray(boxes)
    if b.dtype.kind not in "iu":
        raise DtypeError(f"boxes must be an integer array (int64), got dtype {b.dtype}")
    if b.ndim != 2 or b.shape[1] != 4:
        raise InputError(f"boxes must have shape (N, 4) as (x0, y0, x1, y1), got {b.shape}")
    if b.dtype.kind == "u" and b.size and int(b.max()) > np.iinfo(np.int64).max:  # would wrap to a negative int64
        raise InputError(f"boxes: a coordinate of {int(b.max())} is outside any image")
    return _call(_native.box_sums, table, np.ascontiguousarray(b, dtype=np.int64))


def quantize(prob: ArrayLike, bits: int = 8) -> tuple[NDArray[np.uint8] | NDArray[np.uint16], float]:
    """Quantize ``prob`` float32[H, W] (finite, >= 0) to ``bits`` = 8 or 16.

    Returns ``(q, scale)`` with q uint8|uint16[H, W], ``prob ~= q * scale`` within ``scale / 2`` and
    ``scale = max(prob) / (2**bits - 1)`` (0.0 for an all-zero map), except that a positive value below
    ``scale / 2`` is stored as 1: a pixel is 0 only where ``prob`` is, so a reader that normalises the image and
    takes logs (KLD, information gain) sees the density's tail, not holes.
    """
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral) or bits not in (8, 16):
        raise InputError(f"bits must be 8 or 16, got {bits!r}")
    return _call(_native.quantize, _array(prob, "prob", "f", np.float32, 2, "(H, W)"), int(bits))


def colorize(values: ArrayLike, cmap: str = "turbo") -> NDArray[np.uint8]:
    """Map ``values`` float32[H, W] (finite), scaled by their max, through ``cmap`` ("turbo" or "inferno").

    Returns uint8[H, W, 3] RGB; values <= 0 take the colormap's first colour.
    """
    return _call(_native.colorize, _array(values, "values", "fiu", np.float32, 2, "(H, W)"), str(cmap))


def overlay(image: ArrayLike, prob: ArrayLike, alpha: float = 0.6, cmap: str = "turbo") -> NDArray[np.uint8]:
    """Blend the colormapped ``prob`` float32[H, W] over ``image`` uint8[H, W, 3].

    Each pixel's blend weight is ``alpha * prob / max(prob)``, so unattended regions show the image unchanged.
    Returns uint8[H, W, 3].
    """
    return _call(
        _native.overlay, _image(image), _array(prob, "prob", "f", np.float32, 2, "(H, W)"), _alpha(alpha), str(cmap)
    )
