"""Pixel edits for what-if tests: move, scale or swap elements, filling the holes they leave.

An edit cuts an element's box out of the image, fills the hole (the box grown by :data:`GHOST_MARGIN` pixels, so
no outline of the element stays behind, but never into another element's box) from its surroundings
(:func:`fill_holes`) and pastes the box's content at its new place.  Edits never push an element outside the image: such an edit is an
:class:`~foveal.errors.InputError` that says which offsets are allowed.  Element boxes are updated with the edit,
so the edited creative can be scored with the same names.

Edits run in the order given; each sees the image and boxes the previous one left.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from ..boxes import round_half_up
from ..fileio import NUMBER
from ..errors import InputError, is_list_like
from .elements import Element, _short, canonical_name, check_elements, element_list, quoted, unknown_element

#: Half-width of the window averaged for each border pixel the fill reads, so one noisy pixel does not streak.
BORDER_RADIUS = 2
#: Largest scale factor: beyond it no element fits any image (and w * factor would overflow).
MAX_SCALE = 1000.0
#: Moves this far or farther are refused: no image is a billion pixels wide.
MAX_MOVE = 10**9
#: Hole pixels a fill pass estimates at once (about 200 bytes of temporaries each: 50 MB).
FILL_CHUNK = 1 << 18
#: Pixels this close to a hole are not read by the fill: a tight box leaves the element's outline just outside.
HOLE_MARGIN = 3
#: The hole an element leaves reaches this many pixels beyond its box (except into other elements' boxes): its
#: anti-aliased outline and half-pixel rounding sit just outside a tight box and would stay behind as a ghost.
GHOST_MARGIN = 2


def _canonical_names(edit: object, edit_name: str, *fields: str) -> None:
    """Check that ``fields`` of the frozen ``edit`` name elements, and store them as elements store their names
    (:func:`canonical_name`): what-if records the edits, and a swap of "café" with "cafe" + U+0301 swapped one element
    with itself."""
    names = [getattr(edit, f) for f in fields]
    if not all(isinstance(n, str) for n in names):
        raise InputError(f"{edit_name}: an element is named by its name (text), got "
                         f"{', '.join(map(repr, names)):.80}")
    for field, name in zip(fields, names):
        object.__setattr__(edit, field, canonical_name(name))


@dataclass(frozen=True)
class Move:
    """Translate element ``name`` by ``(dx, dy)`` pixels (``dy < 0`` is up)."""

    name: str
    dx: int
    dy: int

    def __post_init__(self) -> None:
        _canonical_names(self, "move", "name")
        if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (self.dx, self.dy)):
            raise InputError(f"move {_short(self.name)}: dx and dy are whole pixels, got {_short(self.dx)}, "
                             f"{_short(self.dy)}")
        # as Python ints: np.uint8(250) added to a box's 20 wrapped round to 14, a move of -6 without a word
        object.__setattr__(self, "dx", int(self.dx))
        object.__setattr__(self, "dy", int(self.dy))
        # no image is that large (and an int of 4,300+ digits has no str for the messages after)
        if max(abs(self.dx), abs(self.dy)) >= MAX_MOVE:
            raise InputError(f"move {_short(self.name)}: dx and dy must be under {MAX_MOVE:,} pixels, got "
                             f"{_short(self.dx)}, {_short(self.dy)}")


@dataclass(frozen=True)
class Scale:
    """Resize element ``name`` by ``factor`` about its centre (Lanczos)."""

    name: str
    factor: float

    def __post_init__(self) -> None:
        _canonical_names(self, "scale", "name")
        f = self.factor
        if isinstance(f, bool) or not isinstance(f, (int, float, np.integer, np.floating)) or not 0 < f <= MAX_SCALE:
            raise InputError(f"scale {_short(self.name)}: the factor must be a number in (0, {MAX_SCALE:g}], got "
                             f"{_short(f)}")
        object.__setattr__(self, "factor", float(f))


@dataclass(frozen=True)
class Swap:
    """Exchange two elements: each is pasted centred on the other's centre; ``second`` is pasted last (on top)."""

    first: str
    second: str

    def __post_init__(self) -> None:
        _canonical_names(self, "swap", "first", "second")
        if self.first == self.second:
            raise InputError(f"swap: an element cannot swap with itself ({quoted(self.first)})")


Edit = Union[Move, Scale, Swap]


@dataclass(frozen=True, eq=False)
class EditedCreative:
    """An edited image and its elements, in the order of the original element list.  Equal only to itself, as a
    :class:`~foveal.SaliencyMap` is: its pixels are an array, which neither compares to one truth value nor hashes."""

    image: np.ndarray
    elements: tuple[Element, ...]
    #: The elements after each edit, in the edits' order (the last is ``elements``): an edit that pasted an element
    #: over another destroyed pixels that a later edit moving it away does not bring back.
    steps: tuple[tuple[Element, ...], ...] = ()


_INT = r"[+-]?\d{1,9}"  # no image is a billion pixels wide; longer numbers are typos (and int() refuses 4,300+ digits)


def parse_move(text: str) -> Move:
    """Parse ``NAME:DX,DY`` (whole pixels, e.g. ``cta:0,-60``)."""
    name, sep, offset = _edit_text(text, "move", "NAME:DX,DY").rpartition(":")
    match = re.fullmatch(rf"\s*({_INT})\s*,\s*({_INT})\s*", offset, re.ASCII)
    if not sep or not name.strip() or match is None:
        raise InputError(f"move: expected NAME:DX,DY in whole pixels (e.g. cta:0,-60), got {text!r}")
    return Move(name.strip(), int(match[1]), int(match[2]))


def parse_scale(text: str) -> Scale:
    """Parse ``NAME:FACTOR`` (e.g. ``logo:0.8``); the factor must be a positive finite number."""
    name, sep, factor = _edit_text(text, "scale", "NAME:FACTOR").rpartition(":")
    if not sep or not name.strip() or NUMBER.fullmatch(factor.strip()) is None:
        raise InputError(f"scale: expected NAME:FACTOR with a positive number (e.g. logo:0.8), got {text!r}")
    value = float(factor)
    if not 0 < value <= MAX_SCALE:
        raise InputError(f"scale: the factor must be a positive number up to {MAX_SCALE:g}, got "
                         f"{factor.strip()[:20]!r} in {text[:60]!r}")
    return Scale(name.strip(), value)


def parse_swap(text: str) -> Swap:
    """Parse ``NAME,NAME`` (e.g. ``cta,headline``); the two names must differ."""
    parts = [canonical_name(p) for p in _edit_text(text, "swap", "NAME,NAME").split(",")]
    if len(parts) != 2 or not all(parts):
        raise InputError(f"swap: expected two element names NAME,NAME (e.g. cta,headline), got {text!r}; a name "
                         "with a comma in it cannot be swapped from text (use Swap(first, second))")
    if parts[0] == parts[1]:
        raise InputError(f"swap: the two elements must differ, got {text!r}")
    return Swap(parts[0], parts[1])


def _edit_text(text: object, edit: str, form: str) -> str:
    if not isinstance(text, str):  # bytes or None failed inside, as AttributeError or TypeError
        raise InputError(f"{edit}: expected text {form}, got {type(text).__name__}")
    return text


def fill_holes(image: np.ndarray, mask: np.ndarray, margin: int = HOLE_MARGIN) -> np.ndarray:
    """Return a copy of ``image`` (H×W×C uint8) whose ``mask`` pixels (H×W bool) are filled from their surroundings.

    Each hole pixel blends two linear interpolations: along its row between the nearest pixels left and right that
    are read, and along its column between the nearest ones above and below.  The row and column estimates are
    weighted by the inverse distance to the nearer of their two ends, so the fill meets every side continuously.
    Pixels within ``margin`` of the hole are not read (element boxes are often drawn tight, and their outline would
    streak across the fill) but are kept; the pixels read are first averaged over a ``(2*BORDER_RADIUS+1)``-square
    window of read pixels.  So every filled value is a convex combination of pixels within
    ``margin + BORDER_RADIUS + 1`` of the hole and stays inside their range (the margin shrinks when it would
    leave nothing to read).  A side at the image edge simply drops
    out; pixels whose row and column are both wholly unread are filled by a further pass from the pixels just
    filled.
    """
    if image.ndim != 3 or image.dtype != np.uint8:
        raise InputError(f"fill_holes: image must be uint8 (H, W, C), got {image.dtype} {image.shape}")
    if mask.shape != image.shape[:2]:
        raise InputError(f"fill_holes: mask shape {mask.shape} must equal the image's (H, W) {image.shape[:2]}")
    out = image.copy()
    if not mask.any():
        return out
    ys, xs = np.nonzero(mask)
    # Only a margin around the hole's bounding box is ever read: the nearest read pixel along a row or column is
    # at most margin + 1 pixels outside the box, and its average reaches BORDER_RADIUS further.
    pad = margin + BORDER_RADIUS + 1
    y0, y1 = max(ys.min() - pad, 0), min(ys.max() + pad + 1, image.shape[0])
    x0, x1 = max(xs.min() - pad, 0), min(xs.max() + pad + 1, image.shape[1])
    crop = out[y0:y1, x0:x1].astype(np.float32)
    hole = mask[y0:y1, x0:x1]
    # A hole whose margin would swallow the whole image (tiny images) reads as close to it as it must.
    for m in range(margin, -1, -1):
        unread = _box_sum(hole[..., None].astype(np.float64), m)[..., 0] > 0
        if not unread.all():
            break
    else:
        raise InputError("fill_holes: the hole covers the whole image; nothing is left to fill it from")
    # Each pass makes progress: a read pixel exists, and if no unread pixel shared a row or column with one, every
    # column through an unread row would be wholly unread, the read pixel's column included.
    while unread.any():
        unread &= ~_fill_pass(crop, ~unread)
    filled = np.clip(np.rint(crop), 0, 255).astype(np.uint8)
    out[y0:y1, x0:x1][hole] = filled[hole]
    return out


def _fill_pass(crop: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill, in place, the unknown pixels of ``crop`` that have a known pixel in their row or column.

    Returns the mask of pixels filled by this pass.
    """
    border = _known_average(crop, known, BORDER_RADIUS)
    ends = [(axis, *_nearest_known(known, axis)) for axis in (1, 0)]
    ys, xs = np.nonzero(~known)
    filled = np.zeros_like(known)
    # A chunk of the hole at a time: every estimate reads only border and the ends, fixed for the pass, so the
    # result is the same, and the dozen temporaries per hole pixel (about 200 bytes) stay bounded.
    for start in range(0, ys.size, FILL_CHUNK):
        y, x = ys[start:start + FILL_CHUNK], xs[start:start + FILL_CHUNK]
        total = np.zeros((y.size, crop.shape[2]), np.float64)
        weight = np.zeros(y.size, np.float64)
        for axis, before, after in ends:
            pos = x if axis == 1 else y
            lo, hi = before[y, x], after[y, x]
            has_lo, has_hi = lo >= 0, hi < known.shape[axis]
            d_lo, d_hi = pos - lo, hi - pos
            # Linear interpolation between the two ends where both exist, else the one end that does.
            a_lo = np.where(has_lo, np.where(has_hi, d_hi, 1), 0)
            a_hi = np.where(has_hi, np.where(has_lo, d_lo, 1), 0)
            at = (lambda idx: border[y, idx]) if axis == 1 else (lambda idx: border[idx, x])
            v_lo, v_hi = at(np.where(has_lo, lo, 0)), at(np.where(has_hi, hi, 0))
            est = (a_lo[:, None] * v_lo + a_hi[:, None] * v_hi) / np.maximum(a_lo + a_hi, 1)[:, None]
            n = known.shape[axis]  # farther than any real end: a missing end never is the nearer one
            nearest = np.minimum(np.where(has_lo, d_lo, n), np.where(has_hi, d_hi, n))
            w = np.where(has_lo | has_hi, 1.0 / nearest, 0.0)
            total += w[:, None] * est
            weight += w
        ok = weight > 0
        crop[y[ok], x[ok]] = (total[ok] / weight[ok, None]).astype(np.float32)
        filled[y[ok], x[ok]] = True
    return filled


def _nearest_known(known: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest known pixel at or before / at or after each pixel along ``axis`` (-1 / size if none),
    as int32 (no crop is 2**31 pixels wide)."""
    n = known.shape[axis]
    idx = np.arange(n, dtype=np.int32).reshape((1, n) if axis == 1 else (n, 1))
    before = np.maximum.accumulate(np.where(known, idx, np.int32(-1)), axis=axis)
    after = np.flip(np.minimum.accumulate(np.flip(np.where(known, idx, np.int32(n)), axis=axis), axis=axis),
                    axis=axis)
    return before, after


def _known_average(crop: np.ndarray, known: np.ndarray, radius: int) -> np.ndarray:
    """Mean of the known pixels in the ``(2r+1)``-square window around each pixel (0 where the window has none)."""
    weights = known.astype(np.float64)
    num = _box_sum(crop * weights[..., None], radius)
    den = _box_sum(weights[..., None], radius)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def _box_sum(a: np.ndarray, r: int) -> np.ndarray:
    """Sum over the ``(2r+1)``-square window around each pixel of an H×W×C array, clipped at the edges, in float64.

    Along one axis, then the other, each a running sum differenced by slices: three arrays of ``a``'s size at most
    (a summed-area table indexed by four index grids held eight, and a large what-if's fill ran out of memory)."""
    out = a.astype(np.float64)
    for axis in (0, 1):
        out = _window_sum(out, r, axis)
    return out


def _window_sum(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Sum over ``[i - r, i + r]`` (clipped) along ``axis`` of the float64 ``a``, which it overwrites."""
    n = a.shape[axis]
    run = np.cumsum(a, axis=axis, out=a)

    def part(start: int | None, stop: int | None) -> tuple[slice, ...]:
        return tuple(slice(start, stop) if k == axis else slice(None) for k in range(a.ndim))

    out = np.empty_like(run)
    reach = min(r, n - 1)
    out[part(None, n - reach)] = run[part(reach, None)]  # i + r inside: the running sum there
    out[part(n - reach, None)] = run[part(n - 1, None)]  # past the end: all of it
    if n > r + 1:
        out[part(r + 1, None)] -= run[part(None, n - r - 1)]  # minus what lies before i - r
    return out


def apply_edits(image: np.ndarray, elements: Sequence[Element], edits: Sequence[Edit], *,
                progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None) -> EditedCreative:
    """Apply ``edits`` in order to ``image`` (H×W×3 uint8) and its ``elements``; the inputs are not modified.
    ``progress(edits, total)`` wraps the iteration over them (a progress bar; or a check that raises to stop: each
    edit reads and writes the whole image).

    Raises :class:`InputError` for an unknown element name, an element already off the image or an edit that would
    leave it.
    """
    image = checked_image(image)
    elements = checked_elements(elements, image)
    current = {e.name: e for e in elements}
    edits = edit_list(edits)
    steps = []
    for edit in edits if progress is None else progress(edits, len(edits)):
        if isinstance(edit, Move):
            e = _lookup(current, edit.name, "move")
            x, y, w, h = e.box
            moved = (x + edit.dx, y + edit.dy, w, h)
            _check_inside(moved, image.shape, f"moving {quoted(edit.name)} by ({edit.dx}, {edit.dy})",
                          _move_hint(e.box, image.shape))
            image = _relocate(image, [(e.box, image[y:y + h, x:x + w], moved)], _others(current, e.name),
                              f"moving {quoted(edit.name)}")
            current[e.name] = Element(e.name, e.kind, moved)
        elif isinstance(edit, Scale):
            e = _lookup(current, edit.name, "scale")
            x, y, w, h = e.box
            nw, nh = (max(1, int(v)) for v in round_half_up([w * edit.factor, h * edit.factor]))
            scaled = (x + (w - nw) // 2, y + (h - nh) // 2, nw, nh)
            _check_inside(scaled, image.shape, f"scaling {quoted(edit.name)} by {edit.factor:g}",
                          "use a smaller factor")
            patch = _resize(image[y:y + h, x:x + w], nw, nh)
            image = _relocate(image, [(e.box, patch, scaled)], _others(current, e.name),
                              f"scaling {quoted(edit.name)}")
            current[e.name] = Element(e.name, e.kind, scaled)
        elif isinstance(edit, Swap):
            a = _lookup(current, edit.first, "swap")
            b = _lookup(current, edit.second, "swap")
            a_new, b_new = _centred_on(a.box, b.box), _centred_on(b.box, a.box)
            first, second = quoted(edit.first), quoted(edit.second)
            what = f"swapping {first} and {second}"
            _check_inside(a_new, image.shape, what, f"{first} does not fit centred on {second}")
            _check_inside(b_new, image.shape, what, f"{second} does not fit centred on {first}")
            image = _relocate(image, [(a.box, _cut(image, a.box), a_new), (b.box, _cut(image, b.box), b_new)],
                              _others(current, a.name, b.name), what)
            current[a.name] = Element(a.name, a.kind, a_new)
            current[b.name] = Element(b.name, b.kind, b_new)
        else:
            raise InputError(f"edits: expected Move, Scale or Swap objects (parse_move, parse_scale and parse_swap "
                             f"read them from text; foveal.scoring.whatif.edit_from_dict from a dict), got "
                             f"{edit!r:.60}")
        steps.append(tuple(current[e.name] for e in elements))
    return EditedCreative(image=image, elements=tuple(current[e.name] for e in elements), steps=tuple(steps))


def edit_list(edits: Iterable[Edit]) -> tuple[Edit, ...]:
    """``edits`` as a tuple (an iterator is read once, and what-if records the edits it applied), else InputError."""
    if not is_list_like(edits):
        raise InputError(f"edits: expected a list of Move, Scale or Swap objects, got {type(edits).__name__}")
    return tuple(edits)


def checked_image(image: object) -> np.ndarray:
    """``image`` if it is a creative's pixels, (H, W, 3) uint8, else InputError (an edit needs the pixels)."""
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise InputError(f"image: expected the creative's pixels, an (H, W, 3) uint8 array (foveal.load_image reads "
                         f"one from a file), got {got}")
    return image


def checked_elements(elements: Sequence[Element], image: np.ndarray) -> tuple[Element, ...]:
    """``elements`` as a tuple, else ElementSpecError: a box off the image would be cut short by the slicing and
    pasted into its full box (or, scaled, squashed) without a word."""
    elements = tuple(element_list(elements))
    # An edited creative's elements may be edited again, and an edit may leave two of them on one box.
    check_elements(elements, image.shape[:2], "elements", identical_boxes=True)
    return elements


def move_variants(image: np.ndarray, elements: Sequence[Element], name: str,
                  offsets: Iterable[tuple[int, int]]) -> Iterator[EditedCreative]:
    """``apply_edits(image, elements, [Move(name, dx, dy)])`` for each ``(dx, dy)`` in ``offsets``, lazily.

    The hole is filled once and shared, so a search over many positions costs one fill plus a paste each.
    Every offset is checked before the first variant is produced.
    """
    image = checked_image(image)
    elements = checked_elements(elements, image)
    by_name = {e.name: e for e in elements}
    e = _lookup(by_name, name, "search")
    x, y, w, h = e.box
    offsets = list(offsets)
    for dx, dy in offsets:
        _check_inside((x + dx, y + dy, w, h), image.shape, f"moving {quoted(name)} by ({dx}, {dy})",
                      _move_hint(e.box, image.shape))
    filled = fill_holes(image, _checked_hole(image.shape[:2], [e.box], [o.box for o in elements if o.name != name],
                                             f"moving {quoted(name)}"))
    patch = image[y:y + h, x:x + w]
    for dx, dy in offsets:
        out = filled.copy()
        out[y + dy:y + dy + h, x + dx:x + dx + w] = patch
        moved = Element(e.name, e.kind, (x + dx, y + dy, w, h))
        yield EditedCreative(image=out, elements=tuple(moved if o.name == name else o for o in elements))


def _hole_mask(shape: tuple[int, int], boxes: Sequence[Sequence[int]], keep: Sequence[Sequence[int]]
               ) -> np.ndarray:
    """The boxes grown by :data:`GHOST_MARGIN` (clipped to the image), minus the ``keep`` boxes' pixels, plus the
    boxes themselves."""
    mask = np.zeros(shape, bool)
    for x, y, w, h in boxes:
        mask[max(0, y - GHOST_MARGIN):y + h + GHOST_MARGIN, max(0, x - GHOST_MARGIN):x + w + GHOST_MARGIN] = True
    for x, y, w, h in keep:
        mask[y:y + h, x:x + w] = False
    for x, y, w, h in boxes:
        mask[y:y + h, x:x + w] = True
    return mask


def _checked_hole(shape: tuple[int, int], boxes: Sequence[Sequence[int]], keep: Sequence[Sequence[int]],
                  what: str) -> np.ndarray:
    """:func:`_hole_mask`, refused for ``what`` (an edit) when it leaves no pixel to fill the hole from."""
    mask = _hole_mask(shape, boxes, keep)
    if mask.all():
        if len(boxes) == 1:
            raise InputError(f"{what}: the element covers the whole image, so nothing is left to fill the space it "
                             "leaves; give it a box smaller than the image")
        raise InputError(f"{what}: the elements cover the whole image between them, so nothing is left to fill the "
                         "space they leave; give them boxes that leave some of the image free")
    return mask


def _relocate(image: np.ndarray, moves: list[tuple[tuple[int, int, int, int], np.ndarray, tuple[int, ...]]],
              keep: Sequence[Sequence[int]], what: str) -> np.ndarray:
    """Cut every source box (with its ghost margin, sparing the ``keep`` boxes), fill the holes together, then
    paste each patch at its target box, in order. A patch going back where it came from, the same size, is no
    change (no hole is cut and filled around it)."""
    moves = [m for m in moves if tuple(m[0]) != tuple(m[2])]  # a patch is always its target's size
    if not moves:
        return image.copy()
    out = fill_holes(image, _checked_hole(image.shape[:2], [box for box, _, _ in moves], keep, what))
    for _, patch, (x, y, w, h) in moves:
        out[y:y + h, x:x + w] = patch
    return out


def _others(current: dict[str, Element], *names: str) -> list[tuple[int, int, int, int]]:
    return [e.box for e in current.values() if e.name not in names]


def _cut(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = box
    return image[y:y + h, x:x + w].copy()


def _resize(patch: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(patch).resize((w, h), Image.Resampling.LANCZOS))


def _centred_on(box: tuple[int, int, int, int], target: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """``box``'s size placed with its centre on ``target``'s centre (rounded down to whole pixels)."""
    _, _, w, h = box
    tx, ty, tw, th = target
    return tx + (tw - w) // 2, ty + (th - h) // 2, w, h


def _lookup(current: dict[str, Element], name: str, option: str) -> Element:
    found = current.get(canonical_name(name)) if isinstance(name, str) else None
    if found is None:
        raise unknown_element(option, name, current)
    return found


def _move_hint(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> str:
    x, y, w, h = box
    return f"dx must be in [{-x}, {shape[1] - w - x}] and dy in [{-y}, {shape[0] - h - y}]"


def _check_inside(box: tuple[int, ...], shape: tuple[int, ...], what: str, hint: str) -> None:
    x, y, w, h = box
    if x < 0 or y < 0 or x + w > shape[1] or y + h > shape[0]:
        raise InputError(f"{what} would put the element at box {_short(list(box), 80)}, outside the "
                         f"{shape[1]}x{shape[0]} image; {hint}")
