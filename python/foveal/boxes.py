"""Boxes: the one rule by which every box (a box query, an element file, an edit) becomes whole pixels.

A box is ``[x, y, w, h]`` (``box_format="xywh"``, the default) or ``[x0, y0, x1, y1]`` (``"xyxy"``), in pixels
(``units="px"``, the default) or as fractions of the image width (x, w) and height (y, h) (``units="relative"``).
Neither the order nor the units are ever guessed from the values; a box whose values suggest the other reading is
refused with a message that says how to declare it.

Rule, the same everywhere (Python API, CLI, element files):

1. values must be real, finite numbers (no strings, bools, complex, datetimes, masked entries);
   fractional pixel boxes whose edges all lie within [0, 1] are refused: they are relative boxes missing their
   units (whole numbers such as ``[0, 0, 1, 1]`` are a 1x1 pixel box);
2. relative values are multiplied by the image width or height (a float32 or float16 fraction first read as its
   shortest decimal, :func:`decimal_floats`);
3. each edge is rounded to the nearest pixel, halves up: ``x0 = floor(x + 0.5)``, ``x1 = floor(x + w + 0.5)``,
   where a value within floating-point noise of a half is the half (:func:`round_half_up`);
4. the rounded box must be non-empty and lie inside the image: ``0 <= x0 < x1 <= W`` and ``0 <= y0 < y1 <= H``.
   A box that runs off the image is refused, never clipped (a clipped box silently measures another region).
"""
from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

from .errors import InputError

BOX_FORMATS: tuple[str, ...] = ("xywh", "xyxy")
UNITS: tuple[str, ...] = ("px", "relative")


#: How close (relative to the value, at least 1) a value must be to a half to count as one: a few hundred times the
#: error of the products and sums that make an edge, far below any edge a person means.
HALF_SLACK = 1e-12


def round_half_up(values: Any) -> np.ndarray:
    """The rounding every pixel coordinate takes: to the nearest whole number, halves up (``floor(v + 0.5)``);
    unlike ``np.rint`` and ``round``, which send halves to the even neighbour (10.5 → 10, 11.5 → 12). A half that
    floating point computed a hair low is still a half: 0.29 of 50 px is 14.499999999999998, which rounds to 15
    like the 14.5 it stands for (:data:`HALF_SLACK`; the page's ``roundHalfUp`` is the same rule)."""
    v = np.asarray(values, np.float64)
    return np.floor(v + 0.5 + HALF_SLACK * np.maximum(1.0, np.abs(v)))


#: Float types narrower than float64, whose values are read as the decimals they print as.
_NARROW_FLOATS = (np.float32, np.float16)


def decimal_floats(values: Any) -> np.ndarray:
    """``values`` as a float64 array, each float32 or float16 as its shortest decimal: the value a person typed or a
    float32 column stored (0.7 is 0.699999988079071 widened, and 0.7 of 305 px then rounded to 213 where the 213.5
    that 0.7 stands for rounds to 214)."""
    arr = np.asarray(values)
    if arr.dtype in _NARROW_FLOATS:
        return arr.astype(str).astype(np.float64)  # NumPy prints each value in the fewest digits that read back
    return arr.astype(np.float64)


def decimal_float(value: Any) -> float:
    """One number as :func:`decimal_floats` reads it."""
    return float(str(value)) if isinstance(value, _NARROW_FLOATS) else float(value)


def _default_label(i: int) -> str:
    return f"boxes[{i}]"


def as_box_array(boxes: Any, name: str = "boxes", *, decimals: bool = False) -> np.ndarray:
    """Coerce a box query to a float64 (N, 4) array, or raise :class:`InputError` saying what was wrong.

    Accepts one box (4 numbers) or N boxes (a sequence of 4-number boxes, an (N, 4) array); ``N = 0`` is an empty
    (0, 4) array.  Refuses strings, bytes, mappings, sets, ragged lists, bool/complex/datetime/object arrays,
    masked arrays with masked entries and integers beyond the float range. ``decimals``: a float32 or float16 array
    is read by :func:`decimal_floats` (where a fraction is multiplied up to pixels; a pixel value rounds the same
    either way, and widening is 10 times faster).
    """
    if isinstance(boxes, (str, bytes, bytearray, memoryview, dict, set, frozenset)) or boxes is None:
        raise InputError(f"{name}: expected [x, y, w, h] numbers or an (N, 4) array of them, got "
                         f"{type(boxes).__name__}")
    if isinstance(boxes, np.ma.MaskedArray):
        if np.ma.getmaskarray(boxes).any():
            raise InputError(f"{name}: the masked array has masked entries; fill or drop those boxes first")
        boxes = np.ma.getdata(boxes)
    if isinstance(boxes, (list, tuple)) and _holds_bool(boxes):
        # NumPy turns [True, 0, 5, 5] into integers: a bool among numbers is caught here or never
        raise InputError(f"{name}: box coordinates must be real numbers, got a bool (True/False)")
    try:
        arr = np.asarray(boxes)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged nesting, unconvertible objects
        raise InputError(f"{name}: expected [x, y, w, h] numbers or an (N, 4) array of them ({exc})") from None
    if arr.dtype.kind == "O":
        arr = _from_objects(arr, name)
    elif arr.dtype.kind not in "iuf":
        raise InputError(f"{name}: box coordinates must be real numbers, got dtype {arr.dtype}")
    if arr.ndim == 1 and arr.shape[0] == 4:
        arr = arr[None, :]
    elif arr.ndim == 1 and arr.shape[0] == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"{name}: expected [x, y, w, h] or an (N, 4) array, got shape {arr.shape}")
    out = decimal_floats(arr) if decimals else arr.astype(np.float64)
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"{name}[{i}] = {arr[i].tolist()}: coordinates must be finite numbers")
    return out


def _holds_bool(boxes: list | tuple) -> bool:
    """Whether a box or a list of boxes holds a bool (the value types are gathered at C speed: 9 ms for 100k boxes,
    against 22 ms for the conversion itself)."""
    types = set(map(type, boxes))
    if types & _BOOLS:
        return True
    try:
        return not _BOOLS.isdisjoint(map(type, itertools.chain.from_iterable(boxes))) if types - _NUMBERS else False
    except TypeError:  # numbers beside lists: ragged, which the conversion refuses
        return False


_NUMBERS = frozenset((int, float))
_BOOLS = frozenset((bool, np.bool_))


def _from_objects(arr: np.ndarray, name: str) -> np.ndarray:
    """Object arrays come from Python ints beyond int64 or mixed types: convert each value, refusing non-numbers."""
    flat = []
    for v in arr.ravel():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise InputError(f"{name}: box coordinates must be real numbers, got {type(v).__name__} {v!r:.40}")
        try:
            flat.append(decimal_float(v))
        except OverflowError:
            raise InputError(f"{name}: coordinate {str(v)[:20]}… is beyond any image; boxes must lie inside "
                             "the image") from None
    return np.asarray(flat, dtype=np.float64).reshape(arr.shape)


def resolve_boxes(boxes: Any, image_hw: tuple[int, int] | Any, *, box_format: str = "xywh", units: str = "px",
                  label: Callable[[int], str] = _default_label, name: str = "boxes") -> np.ndarray:
    """Boxes → int64 (N, 4) half-open pixel ``x0, y0, x1, y1`` inside an ``image_hw = (H, W)`` image.

    Applies the module's rule and raises :class:`InputError` naming the first bad box by ``label(i)``.
    """
    if box_format not in BOX_FORMATS:
        raise InputError(f"box_format must be one of {', '.join(BOX_FORMATS)}, got {box_format!r}")
    if units not in UNITS:
        raise InputError(f"units must be 'px' or 'relative', got {units!r}")
    raw = as_box_array(boxes, name, decimals=units == "relative")
    height, width = int(image_hw[0]), int(image_hw[1])
    if raw.shape[0] == 0:
        return np.zeros((0, 4), np.int64)
    a, b, c, d = raw.T
    if box_format == "xywh":
        if ((c <= 0) | (d <= 0)).any():
            i = int(np.flatnonzero((c <= 0) | (d <= 0))[0])
            raise InputError(f"{label(i)}: {_shown(raw[i], box_format, units)} has zero or negative width or "
                             "height; w and h must be > 0")
        x0, y0, x1, y1 = a, b, a + c, b + d
    else:
        if ((c <= a) | (d <= b)).any():
            i = int(np.flatnonzero((c <= a) | (d <= b))[0])
            raise InputError(f"{label(i)}: {_shown(raw[i], box_format, units)} needs x1 > x0 and y1 > y0")
        x0, y0, x1, y1 = a, b, c, d
    if units == "px":
        # Fractional edges all within [0, 1] are how a relative box looks; as pixels the box is at most one
        # pixel.  Whole numbers ([0, 0, 1, 1]) stay a 1x1 pixel box: resolved boxes must read back unchanged.
        small = ((x0 >= 0) & (y0 >= 0) & (x1 <= 1.0) & (y1 <= 1.0)
                 & (raw != np.floor(raw)).any(axis=1))
        if small.any():
            i = int(np.flatnonzero(small)[0])
            raise InputError(f"{label(i)}: {_shown(raw[i], box_format, units)} is in pixels (the default), but "
                             "its edges all lie between 0 and 1: if these are fractions of the image, declare "
                             "units \"relative\"")
        sx, sy = 1.0, 1.0
    else:
        sx, sy = float(width), float(height)
    edges = np.stack([x0 * sx, y0 * sy, x1 * sx, y1 * sy], axis=1)
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = round_half_up(edges)
    limit = np.array([width, height, width, height], np.float64)
    outside = ~np.isfinite(rounded).all(axis=1) | (rounded[:, :2] < 0).any(axis=1) | (rounded[:, 2:] > limit[2:]).any(axis=1)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(f"{label(i)}: {_shown(raw[i], box_format, units)} covers pixels "
                         f"{_span(rounded[i])}, outside the {width}x{height} image; boxes must lie inside the "
                         f"image{_outside_hint(raw[i], box_format, units, width, height)}")
    empty = (rounded[:, 2] <= rounded[:, 0]) | (rounded[:, 3] <= rounded[:, 1])
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise InputError(f"{label(i)}: {_shown(raw[i], box_format, units)} rounds to an empty pixel box; make "
                         "it at least one pixel wide and high")
    return rounded.astype(np.int64)


def _shown(values: np.ndarray, box_format: str, units: str) -> str:
    nums = ", ".join(f"{v:g}" for v in values.tolist())
    order = "x, y, w, h" if box_format == "xywh" else "x0, y0, x1, y1"
    return f"box [{nums}] ([{order}], {units})"


def _span(rounded: np.ndarray) -> str:
    # Whole pixels as integers; beyond 1e15 the digits mean nothing and would make the message a page long.
    x0, y0, x1, y1 = (f"{v:.0f}" if abs(v) < 1e15 else f"{v:.3g}" for v in rounded.tolist())
    return f"x {x0}..{x1}, y {y0}..{y1}"


def _outside_hint(values: np.ndarray, box_format: str, units: str, width: int, height: int) -> str:
    """Say which other reading of the values would fit, when one would: the likely mistake."""
    a, b, c, d = values.tolist()
    if units == "relative" and max(abs(a), abs(b), abs(c), abs(d)) > 1.0:
        return ("; relative values are fractions 0..1 of the image: these look like pixels, so drop units "
                "\"relative\"")
    if box_format == "xywh" and c > a and d > b and c <= width and d <= height and a >= 0 and b >= 0:
        return ("; if the box is [x0, y0, x1, y1] (corners), declare box_format \"xyxy\" (foveal's default is "
                "[x, y, w, h])")
    return ""
