"""What-if tests: measure an edit's effect on attention by re-running the model on the edited pixels.

Two modes:

- :func:`run_edits` applies edits (:mod:`.edits`) and compares the edited creative with the original exactly as
  ``foveal compare`` compares B with A (:func:`.compare.compare_scores`).
- :func:`search_position` tries many positions for one element (:func:`candidate_offsets`), re-runs the model on
  every edited image in batches, and ranks the positions by the element's measured share.

Candidate rule: a position is valid when the element stays inside the image, :data:`EDGE_MARGIN` of the image's
width (x) and height (y) clear of every edge; overlaps every other element by at most ``max_overlap`` of the
smaller of the two boxes (default :data:`MAX_OVERLAP`); and, when the image is given, covers no more unboxed
content (busy pixels that no element box describes: text, a photo...) than the element's own surroundings hold
plus :data:`MAX_UNBOXED_CONTENT` of its area.  The original position is the baseline and is
never a candidate.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from ..boxes import round_half_up
from ..errors import InputError, checked_count
from ..saliency_map import SaliencyMap
from .compare import Comparison, _pp, compare_scores
from .edits import (GHOST_MARGIN, Edit, EditedCreative, Move, Scale, Swap, apply_edits, checked_elements,
                    checked_image, edit_list, move_variants)
from .elements import (Element, _short, canonical_name, check_elements, checked_hw, element_list, quoted,
                       unknown_element)
from .recommend import Thresholds, WhatIfResult, recommend
from .scores import CreativeScores, score_creative

#: Default largest overlap with another element, as a fraction of the smaller box's area.
MAX_OVERLAP = 0.10
#: Candidates keep this fraction of the image's width (x) and height (y), at least 1 px, clear of each edge: an
#: element flush against the edge reads as cut off (and print or bleed crops cut it).
EDGE_MARGIN = 0.03
#: Largest fraction of a candidate box that may cover unboxed content, beyond the content fraction around the
#: element's own position (so a full-bleed photo still has positions).
MAX_UNBOXED_CONTENT = 0.15
#: A pixel is content when its grey level differs from its right or lower neighbour's by more than this (0..255).
CONTENT_GRADIENT = 24
#: Width (pixels) of the ring around the element's current box whose content fraction sets the allowance.
SURROUND = 8
DEFAULT_GRID = (5, 5)
#: Most columns or rows a grid may ask for.
MAX_GRID = 100
#: Most positions one search may try: each is a model run (about 2 minutes on one CPU core at 2,500).
MAX_POSITIONS = 2500
#: Most pixels of edited creatives one model call of a position search holds. Each pixel costs about 15 bytes
#: until its scores are taken (the creative, its float32 map and float64 table): 16 creatives of 100 MP asked for
#: 24 GB and were killed for memory.
SEARCH_BATCH_PIXELS = 32_000_000

DEFINITIONS: dict[str, str] = {
    "edit": "the element's box is cut out, the hole filled by row/column interpolation of the surrounding pixels, "
            "and the content pasted at its new place (scale: Lanczos about the centre; swap: each centred on the "
            "other's centre); the edited image is re-run through the model",
    "candidates": "grid: positions evenly spaced over the whole valid range of the element's top-left corner; "
                  "step: the current position plus whole multiples of the step, inside the image",
    "valid_position": f"inside the image and {EDGE_MARGIN:g} of its width/height clear of each edge; overlapping "
                      "each other element by at most max_overlap of the smaller box's area; covering at most "
                      "content_allowance of unboxed content (pixels whose grey level steps by more than "
                      f"{CONTENT_GRADIENT} to a neighbour, outside every element box; the allowance is the "
                      f"content fraction around the element's own position plus {MAX_UNBOXED_CONTENT:g}); the "
                      "current position is the baseline, not a candidate",
    "ranking": "by the element's share on the edited image's map, highest first (ties: the smaller move first)",
}


class Predictor(Protocol):
    """What what-if needs from :class:`foveal.Engine`."""

    def predict_batch(self, images: Iterable[Any], batch_size: int = 16) -> list[SaliencyMap]: ...


@dataclass(frozen=True)
class EditOutcome:
    """A creative before and after edits: the edited pixels, both maps, both scores and their comparison."""

    edits: tuple[Edit, ...]
    edited: EditedCreative
    map_before: SaliencyMap
    map_after: SaliencyMap
    before: CreativeScores
    after: CreativeScores
    comparison: Comparison


@dataclass(frozen=True)
class Candidate:
    """One position tried by a search: the move, the element's new box and the edited creative's scores."""

    dx: int
    dy: int
    box: tuple[int, int, int, int]
    scores: CreativeScores

    def share_of(self, name: str) -> float:
        return self.scores.element(name).share


@dataclass(frozen=True)
class SearchResult:
    """A position search: the baseline, every candidate ranked best first, and the best edit in full."""

    element: str
    baseline: CreativeScores
    candidates: tuple[Candidate, ...]
    best: EditOutcome

    def whatif_results(self, top: int) -> list[WhatIfResult]:
        """The ``top`` best candidates in the form :func:`foveal.scoring.recommend.recommend` takes."""
        before = self.baseline.element(self.element).share
        return [WhatIfResult(edit=describe_move(self.element, c.dx, c.dy, c.box), element=self.element,
                             share_before=before, share_after=c.share_of(self.element))
                for c in self.candidates[:top]]


def describe_edit(edit: Edit) -> str:
    """A short human-readable form of an edit."""
    if isinstance(edit, Move):
        return f"move {quoted(edit.name)} by ({edit.dx:+d}, {edit.dy:+d}) px"
    if isinstance(edit, Scale):
        return f"scale {quoted(edit.name)} by {edit.factor:g}"
    if isinstance(edit, Swap):
        return f"swap {quoted(edit.first)} and {quoted(edit.second)}"
    raise TypeError(f"describe_edit: unknown edit {edit!r}")


def describe_move(name: str, dx: int, dy: int, box: Sequence[int]) -> str:
    return f"move {quoted(name)} by ({dx:+d}, {dy:+d}) px to x={box[0]}, y={box[1]}"


def edit_to_dict(edit: Edit) -> dict[str, Any]:
    if isinstance(edit, Move):
        return {"op": "move", "element": edit.name, "dx": edit.dx, "dy": edit.dy}
    if isinstance(edit, Scale):
        return {"op": "scale", "element": edit.name, "factor": edit.factor}
    if isinstance(edit, Swap):
        return {"op": "swap", "elements": [edit.first, edit.second]}
    raise TypeError(f"edit_to_dict: unknown edit {edit!r}")


_EDIT_KEYS = {"move": {"op", "element", "dx", "dy"}, "scale": {"op", "element", "factor"}, "swap": {"op", "elements"}}


def edit_from_dict(obj: Any, where: str = "edit") -> Edit:
    """The inverse of :func:`edit_to_dict`: ``{"op": "move", "element": NAME, "dx": DX, "dy": DY}``,
    ``{"op": "scale", "element": NAME, "factor": F}`` or ``{"op": "swap", "elements": [NAME, NAME]}``."""
    if not isinstance(obj, dict) or obj.get("op") not in ("move", "scale", "swap"):
        raise InputError(f"{where}: expected an object with \"op\": \"move\", \"scale\" or \"swap\", got "
                         f"{_short(obj)}")
    op = obj["op"]
    unknown = set(obj) - _EDIT_KEYS[op]
    if unknown:  # a misspelt key ("factr") would otherwise be an edit that silently does something else
        raise InputError(f"{where}: unknown keys {_short(sorted(unknown))} for {op}; it takes "
                         f"{sorted(_EDIT_KEYS[op])}")
    if op == "swap":
        names = obj.get("elements")
        if not isinstance(names, list) or len(names) != 2 or not all(isinstance(n, str) and n.strip() for n in names):
            raise InputError(f"{where}: swap needs \"elements\": [NAME, NAME], got {_short(names)}")
        if canonical_name(names[0]) == canonical_name(names[1]):
            raise InputError(f"{where}: swap needs two different elements, got {_short(names)}")
        return Swap(names[0], names[1])
    name = obj.get("element")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{where}: {op} needs \"element\": NAME, got {_short(name)}")
    if op == "move":
        dx, dy = obj.get("dx"), obj.get("dy")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (dx, dy)):
            raise InputError(f"{where}: move needs whole-pixel \"dx\" and \"dy\", got dx={_short(dx)}, "
                             f"dy={_short(dy)}")
        return Move(name, dx, dy)
    factor = obj.get("factor")
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < float("inf"):
        raise InputError(f"{where}: scale needs a positive finite \"factor\", got {_short(factor)}")
    return Scale(name, factor)  # which refuses a factor past MAX_SCALE (a 400-digit one too, unconverted)


def whatif_edits(engine: Predictor, image: np.ndarray, elements: Sequence[Element], edits: Sequence[Edit],
                 batch_size: int = 16, progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
                 ) -> tuple[dict[str, Any], EditOutcome, int]:
    """The body of ``whatif.json`` for edits, the outcome, and how many images were predicted; ``progress`` as
    for :func:`~foveal.scoring.edits.apply_edits`."""
    outcome = run_edits(engine, image, elements, edits, batch_size=batch_size, progress=progress)
    return {"mode": "edits", **outcome_document(outcome)}, outcome, 2


def whatif_search(engine: Predictor, image: np.ndarray, elements: Sequence[Element], name: str, *,
                  grid: tuple[int, int] | None = None, step: int | None = None, top: int = 3,
                  max_overlap: float = MAX_OVERLAP, batch_size: int = 16, thresholds: Thresholds = Thresholds(),
                  progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
                  ) -> tuple[dict[str, Any], EditOutcome, int]:
    """The body of ``whatif.json`` for a position search, its best outcome, and how many images were predicted.
    ``thresholds`` are the model card's (``Thresholds.of_card``), for the recommendations."""
    if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 1:
        raise InputError(f"top must be a whole number >= 1, got {top!r}")
    image = checked_image(image)
    elements = checked_elements(elements, image)
    positions = candidate_offsets(image.shape[:2], elements, name, grid=grid, step=step, max_overlap=max_overlap,
                                  image=image)
    result = search_position(engine, image, elements, name, positions.offsets, batch_size=batch_size,
                             progress=progress)
    recs = recommend(result.baseline, result.whatif_results(top), thresholds=thresholds)
    body = {"mode": "search",
            "search": search_document(result, top=top, positions=positions, grid=grid, step=step,
                                      max_overlap=max_overlap),
            "best_edit": outcome_document(result.best, max_overlap=max_overlap),
            "recommendations": [r.to_dict() for r in recs if r.id.startswith("whatif:")]}
    return body, result.best, len(positions.offsets) + 1


def whatif_document(body: dict[str, Any], outcome: EditOutcome, inputs: dict[str, Any], *, seconds: float,
                    images_predicted: int, batch_size: int) -> dict[str, Any]:
    """``whatif.json``: what ran, the inputs, the body from :func:`whatif_edits` / :func:`whatif_search`, timing
    and definitions; ``foveal whatif`` writes it and ``POST /v1/whatif`` returns it."""
    from .compare import DEFINITIONS as COMPARE_DEFINITIONS
    from .compare import graph_notes
    from .report import run_header
    from .scores import DEFINITIONS as SCORE_DEFINITIONS

    coarse = graph_notes(outcome.map_before.provenance)  # the search ranks and recommends at the same threshold
    return {
        **run_header(outcome.map_before.provenance),
        "input": inputs,
        **body,
        **({"notes": [*body.get("notes", []), *coarse]} if coarse else {}),
        "timing": {"seconds": seconds, "images_predicted": images_predicted, "batch_size": batch_size},
        "definitions": {**DEFINITIONS, **COMPARE_DEFINITIONS, **SCORE_DEFINITIONS},
    }


def _checked_run(engine: Predictor, batch_size: int) -> int:
    """``batch_size`` checked, and ``engine`` something that predicts, before any edit is made."""
    if not callable(getattr(engine, "predict_batch", None)):
        raise InputError(f"engine: expected a foveal.Engine (or anything with predict_batch), got "
                         f"{type(engine).__name__}")
    return checked_count(batch_size, "batch_size")


def run_edits(engine: Predictor, image: np.ndarray, elements: Sequence[Element], edits: Sequence[Edit],
              batch_size: int = 16, progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None,
              ) -> EditOutcome:
    """Apply ``edits`` and score the original and the edited creative from one batched model call; ``progress``
    as for :func:`~foveal.scoring.edits.apply_edits`."""
    batch_size, edits = _checked_run(engine, batch_size), edit_list(edits)
    if not edits:
        raise InputError("no edit given: give at least one move NAME:DX,DY, scale NAME:FACTOR or swap NAME,NAME")
    edited = apply_edits(image, elements, edits, progress=progress)
    map_before, map_after = engine.predict_batch([image, edited.image], batch_size=batch_size)
    before = score_creative(map_before, elements)
    after = score_creative(map_after, edited.elements)
    return EditOutcome(edits=edits, edited=edited, map_before=map_before, map_after=map_after,
                       before=before, after=after, comparison=compare_scores(before, after))


def parse_grid(text: str) -> tuple[int, int]:
    """``"5x5"`` → (columns, rows); each at least 1."""
    parts = [p.strip() for p in text.lower().split("x")]
    if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 4 for p in parts) or \
            not all(1 <= int(p) <= MAX_GRID for p in parts):
        raise InputError(f"grid: expected COLSxROWS with whole numbers 1..{MAX_GRID} (e.g. 5x5), got {text[:40]!r}")
    return int(parts[0]), int(parts[1])


@dataclass(frozen=True)
class Positions:
    """Valid moves ``(dx, dy)`` for one element, and how many positions were rejected and why."""

    offsets: list[tuple[int, int]]
    rejected_overlap: int
    rejected_content: int
    content_allowance: float | None


def candidate_offsets(image_hw: Sequence[int], elements: Sequence[Element], name: str, *,
                      grid: tuple[int, int] | None = None, step: int | None = None,
                      max_overlap: float = MAX_OVERLAP, image: np.ndarray | None = None) -> Positions:
    """Valid moves for element ``name`` (see the module docstring's candidate rule).

    ``grid=(cols, rows)`` spreads positions evenly over the valid range of the top-left corner (inside the edge
    margins); ``step`` walks from the current position in whole steps.  Exactly one of them may be given (default:
    a 5x5 grid).  ``image`` (H×W×3 uint8) enables the unboxed-content check.
    """
    if grid is not None and step is not None:
        raise InputError("give either grid or step, not both")
    if step is not None and not (_whole(step) and step >= 1):
        raise InputError(f"step must be a positive whole number of pixels, got {step!r}")
    if grid is not None and not (isinstance(grid, (tuple, list, np.ndarray)) and len(grid) == 2
                                 and all(_whole(n) and 1 <= n <= MAX_GRID for n in grid)):
        hint = "; parse_grid reads text such as '5x5'" if isinstance(grid, str) else ""
        raise InputError(f"grid: columns and rows must be 1..{MAX_GRID}, a (columns, rows) pair of whole numbers; "
                         f"got {grid!r}{hint}")
    if isinstance(max_overlap, bool) or not isinstance(max_overlap, numbers.Real) or not 0.0 <= max_overlap <= 1.0:
        raise InputError(f"max_overlap must be a fraction in [0, 1], got {max_overlap!r}")
    if image is not None:
        image = checked_image(image)
    image_hw = checked_hw(image_hw)
    elements = element_list(elements)
    check_elements(elements, image_hw, "elements", identical_boxes=True)  # a box off the image has no valid moves
    by_name = {e.name: e for e in elements}
    if isinstance(name, str):
        name = canonical_name(name)  # as an edit's names are read: " cta " and "cafe" + U+0301 name elements too
    if not isinstance(name, str) or name not in by_name:
        raise unknown_element("search", name, by_name)
    x, y, w, h = by_name[name].box
    xs, ys = _lattice(image_hw, by_name[name].box, grid, step)
    if len(xs) * len(ys) > MAX_POSITIONS:
        raise InputError(f"search {quoted(name)}: {len(xs) * len(ys)} positions to try, each a model run; at most "
                         f"{MAX_POSITIONS}: use a larger step or a smaller grid")
    others = [e for e in elements if e.name != name]
    content = allowance = None
    if image is not None:
        content, allowance = _content_table(image, by_name[name].box, [o.box for o in others])
    offsets, overlapping, busy = [], 0, 0
    for ny in ys.tolist():
        for nx in xs.tolist():
            if nx == x and ny == y:
                continue
            # The slack keeps "at most 0.35 of the smaller box" true of exactly 35% (0.35 * 180 is 62.99999999999999).
            if any(_overlap((nx, ny, w, h), o.box) > max_overlap * min(w * h, o.area) * (1 + 1e-9) for o in others):
                overlapping += 1
                continue
            if content is not None and _box_mean(content, nx, ny, w, h) > allowance:
                busy += 1
                continue
            offsets.append((nx - x, ny - y))
    if not offsets and not overlapping and not busy:  # the lattice held only the current position
        if np.prod([len(a) for a in _lattice(image_hw, (x, y, w, h), None, 1)]) == 1:  # no step could do better
            raise InputError(f"search {quoted(name)}: the {w}x{h} box nearly fills the image inside its edge margins, so "
                             "there is no other position to try; search a smaller element")
        raise InputError(f"search {quoted(name)}: no position to try but the current one: "
                         f"{'the step' if step is not None else 'the grid'} finds no other place for the "
                         f"{w}x{h} box inside the image's edge margins; use a smaller step or a finer grid")
    if not offsets:
        raise InputError(f"search {quoted(name)}: no valid position: {overlapping} position(s) overlap another element by "
                         f"more than {max_overlap:g} of the smaller box and {busy} cover unboxed content (text or "
                         "images no element describes); raise max_overlap, use a finer grid or step, or box "
                         "that content as an element")
    return Positions(offsets, overlapping, busy, allowance)


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def position_count(image_hw: Sequence[int], box: Sequence[int], *, grid: tuple[int, int] | None = None,
                   step: int | None = None) -> int:
    """How many positions a search of the element at ``box`` lays out (the current one included), before the
    overlap and content rules: what :data:`MAX_POSITIONS` bounds, counted without editing any image."""
    xs, ys = _lattice(image_hw, box, grid, step)
    return len(xs) * len(ys)


def _lattice(image_hw: Sequence[int], box: Sequence[int], grid: tuple[int, int] | None, step: int | None
             ) -> tuple[np.ndarray, np.ndarray]:
    """The top-left x and y coordinates a search lays out for the element at ``box`` (default: a 5x5 grid)."""
    x, y, w, h = box
    cols, rows = DEFAULT_GRID if grid is None else (int(grid[0]), int(grid[1]))
    return (_positions(x, w, int(image_hw[1]), step, cols), _positions(y, h, int(image_hw[0]), step, rows))


def _positions(current: int, size: int, extent: int, step: int | None, count: int) -> np.ndarray:
    """Top-left coordinates along one axis, kept :data:`EDGE_MARGIN` clear of both edges."""
    margin = max(1, int(round_half_up(EDGE_MARGIN * extent)))
    lo, hi = margin, extent - size - margin
    if hi < lo:  # the element nearly fills the axis: centred is the only position clear of both edges
        lo = hi = (extent - size) // 2
    if step is not None:
        step = min(step, extent)  # a larger step reaches nothing more, and numpy cannot take a huge one
        along = np.concatenate([np.arange(current, -1, -step)[::-1], np.arange(current + step, extent, step)])
        return along[(along >= lo) & (along <= hi)]
    return np.unique(round_half_up(np.linspace(lo, hi, count)).astype(np.int64))


def _content_table(image: np.ndarray, box: Sequence[int], other_boxes: Sequence[Sequence[int]]
                   ) -> tuple[np.ndarray, float]:
    """Summed-area table of the unboxed-content mask, and the content fraction a candidate may cover."""
    grey = np.asarray(image, np.float32)[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    busy = np.zeros(grey.shape, bool)
    busy[:, :-1] |= np.abs(np.diff(grey, axis=1)) > CONTENT_GRADIENT
    busy[:-1, :] |= np.abs(np.diff(grey, axis=0)) > CONTENT_GRADIENT
    x, y, w, h = box
    pad = GHOST_MARGIN + 1
    busy[max(0, y - pad):y + h + pad, max(0, x - pad):x + w + pad] = False  # the element's own pixels move with it
    for ox, oy, ow, oh in other_boxes:  # boxed content is the overlap rule's business
        busy[oy:oy + oh, ox:ox + ow] = False
    sat = np.zeros((busy.shape[0] + 1, busy.shape[1] + 1), np.float64)
    sat[1:, 1:] = busy.cumsum(0).cumsum(1)
    ring = SURROUND + pad
    x0, y0 = max(0, x - ring), max(0, y - ring)
    x1, y1 = min(busy.shape[1], x + w + ring), min(busy.shape[0], y + h + ring)
    outer = _box_mean(sat, x0, y0, x1 - x0, y1 - y0) * (x1 - x0) * (y1 - y0)
    ix0, iy0 = max(0, x - pad), max(0, y - pad)
    ix1, iy1 = min(busy.shape[1], x + w + pad), min(busy.shape[0], y + h + pad)
    ring_area = (x1 - x0) * (y1 - y0) - (ix1 - ix0) * (iy1 - iy0)
    surround = outer / ring_area if ring_area > 0 else 0.0
    return sat, max(MAX_UNBOXED_CONTENT, surround + MAX_UNBOXED_CONTENT)


def _box_mean(sat: np.ndarray, x: int, y: int, w: int, h: int) -> float:
    total = sat[y + h, x + w] - sat[y, x + w] - sat[y + h, x] + sat[y, x]
    return float(total) / (w * h)


def search_position(engine: Predictor, image: np.ndarray, elements: Sequence[Element], name: str,
                    offsets: Sequence[tuple[int, int]], *, batch_size: int = 16,
                    progress: Callable[[Iterable[Any], int], Iterable[Any]] | None = None) -> SearchResult:
    """Score the creative with ``name`` moved by each offset, ``batch_size`` edited images per model call, fewer
    where they would hold more than :data:`SEARCH_BATCH_PIXELS` pixels (one at least).

    The first batch also carries the unedited image (the baseline).  ``progress(chunks, total)`` wraps the
    iteration over batches (e.g. a progress bar).
    """
    batch_size = _checked_run(engine, batch_size)
    image = checked_image(image)
    batch_size = max(1, min(batch_size, SEARCH_BATCH_PIXELS // (image.shape[0] * image.shape[1])))
    if not offsets:
        raise InputError(f"search_position: no positions to try for {quoted(name)}")
    for offset in offsets:
        if not (isinstance(offset, (tuple, list)) and len(offset) == 2 and all(map(_whole, offset))):
            raise InputError(f"search_position: offsets are (dx, dy) pairs of whole pixels, got {offset!r:.60}")
    offsets = [(int(dx), int(dy)) for dx, dy in offsets]
    elements = checked_elements(elements, image)  # before the baseline, which would take None or a list of junk
    stream: Iterator[tuple[tuple[int, int] | None, EditedCreative]] = _with_baseline(
        image, elements, zip(offsets, move_variants(image, elements, name, offsets)))
    n_batches = -(-(len(offsets) + 1) // batch_size)
    batches: Iterable[Any] = _chunks(stream, batch_size)
    if progress is not None:
        batches = progress(batches, n_batches)
    baseline: CreativeScores | None = None
    map_before: SaliencyMap | None = None
    candidates: list[Candidate] = []
    best: tuple[Candidate, EditedCreative, SaliencyMap] | None = None
    for batch in batches:
        maps = engine.predict_batch([creative.image for _, creative in batch], batch_size=batch_size)
        for (offset, creative), smap in zip(batch, maps):
            scores = score_creative(smap, creative.elements)
            if offset is None:
                baseline, map_before = scores, smap
                continue
            moved = next(e for e in creative.elements if e.name == name)
            cand = Candidate(dx=offset[0], dy=offset[1], box=moved.box, scores=scores)
            candidates.append(cand)
            if best is None or _rank_key(cand, name) < _rank_key(best[0], name):
                best = (cand, creative, smap)  # keep only the best map: a search may try hundreds of positions
    assert baseline is not None and map_before is not None and best is not None  # offsets is not empty
    cand, creative, smap = best
    outcome = EditOutcome(edits=(Move(name, cand.dx, cand.dy),), edited=creative, map_before=map_before,
                          map_after=smap, before=baseline, after=cand.scores,
                          comparison=compare_scores(baseline, cand.scores))
    return SearchResult(element=name, baseline=baseline,
                        candidates=tuple(sorted(candidates, key=lambda c: _rank_key(c, name))), best=outcome)


def _rank_key(c: Candidate, name: str) -> tuple[float, int]:
    return -c.share_of(name), abs(c.dx) + abs(c.dy)


def _with_baseline(image: np.ndarray, elements: Sequence[Element],
                   variants: Iterable[tuple[tuple[int, int], EditedCreative]]
                   ) -> Iterator[tuple[tuple[int, int] | None, EditedCreative]]:
    yield None, EditedCreative(image=image, elements=tuple(elements))
    yield from variants


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _overlap(a: Sequence[int], b: Sequence[int]) -> int:
    """Intersection area of two ``[x, y, w, h]`` boxes."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


def change_statement(name: str, edit: str, before: float, after: float) -> str:
    """``"move 'cta' by (+0, -60) px raises the share of 'cta' from 3.1% to 7.2% (+4.1 pp)"``."""
    verb = "raises" if after > before else "lowers" if after < before else "leaves"
    return (f"{edit} {verb} the share of {quoted(name)} from {100 * before:.1f}% to {100 * after:.1f}% "
            f"({_pp(after - before)})")


def outcome_document(outcome: EditOutcome, max_overlap: float = MAX_OVERLAP) -> dict[str, Any]:
    """The part of ``whatif.json`` describing one edit outcome: edits, boxes after, comparison, statements, and a
    note for each pair of elements the edits made overlap by more than ``max_overlap`` (as a search counts it)."""
    before = {e.name: e for e in outcome.before.elements}
    edited_names = {e.name for e in outcome.edited.elements if e.box != before[e.name].box}
    edit_text = "; ".join(describe_edit(e) for e in outcome.edits)
    # _pp, as compare prints it: a change under the material threshold never reads as +0.5 pp.
    changes = ", ".join(f"{quoted(e.name)} {100 * e.share_a:.1f}% -> {100 * e.share_b:.1f}% ({_pp(e.delta_share)})"
                        for e in outcome.comparison.elements if e.name in edited_names)
    body = outcome.comparison.to_dict()
    return {
        "edits": [edit_to_dict(e) for e in outcome.edits],
        "elements_after": [e.to_dict() for e in outcome.edited.elements],
        "statement": f"{edit_text}: {changes}" if changes else f"{edit_text}: no element box changed",
        **body,
        "notes": (body["notes"] + _cover_notes(before, outcome.edited.elements, edited_names, max_overlap)
                  + _lost_notes(before, outcome.edits, outcome.edited, max_overlap)),
    }


def _cover_notes(before: dict[str, Any], after: Sequence[Element], edited: set[str], max_overlap: float
                 ) -> list[str]:
    """A note for each pair of elements, one of them edited, that the edits made overlap by more than
    ``max_overlap`` of the smaller box: the pasted element hides the other there, and its attention counts as the
    union of the boxes says (a CTA pasted over the logo turned 'distractors' into 'conversion', read as 'better')."""
    notes = []
    for i, a in enumerate(after):
        if a.name not in edited:
            continue
        for j, b in enumerate(after):  # each pair once: two edited elements are met from the earlier one
            if j == i or (b.name in edited and j < i):
                continue
            covered = _overlap(a.box, b.box)
            if covered <= _overlap(before[a.name].box, before[b.name].box) or \
                    covered <= max_overlap * min(a.area, b.area) * (1 + 1e-9):
                continue
            notes.append(f"after the edits {quoted(a.name)} and {quoted(b.name)} overlap on "
                         f"{covered / min(a.area, b.area):.0%} of the smaller box (over max_overlap, {max_overlap:g}): the element pasted there hides "
                         "the other, so part of this change is a hidden element, not attention that moved")
    return notes


def _lost_notes(before: dict[str, Any], edits: Sequence[Edit], edited: EditedCreative, max_overlap: float
                ) -> list[str]:
    """A note for each element an edit pasted another over (by more than ``max_overlap`` of the smaller box, and
    more than before the edits) when the edits end with the two apart again: the covered pixels were replaced, and
    moving the pasted element away fills its place from around it, so the element stays partly erased (two opposite
    moves read as "no element box changed", and as better)."""
    final = {e.name: e for e in edited.elements}
    notes, seen = [], set()
    previous = tuple(before[e.name] for e in edited.elements)
    for k, (edit, step) in enumerate(zip(edits, edited.steps[:-1]), start=1):
        moved = {e.name for e, p in zip(step, previous) if e.box != p.box}
        for a in step:
            for b in step:
                if a.name not in moved or b.name == a.name or (a.name, b.name) in seen:
                    continue
                covered = _overlap(a.box, b.box)
                limit = max(_overlap(before[a.name].box, before[b.name].box),
                            max_overlap * min(a.area, b.area) * (1 + 1e-9))
                if covered <= limit or _overlap(final[a.name].box, final[b.name].box) > limit:
                    continue  # the last edit's overlap has its own note
                seen.add((a.name, b.name))
                notes.append(f"edit {k} ({describe_edit(edit)}) pasted {quoted(a.name)} over "
                             f"{covered / b.area:.0%} of {quoted(b.name)}; a later edit moved it off, but what it "
                             f"covered is filled in from around it, not restored: {quoted(b.name)} stays partly "
                             "erased in the edited creative, and part of this change is that, not attention that "
                             "moved")
        previous = step
    return notes


def search_document(result: SearchResult, *, top: int, positions: Positions, grid: tuple[int, int] | None,
                    step: int | None, max_overlap: float) -> dict[str, Any]:
    """The ``search`` part of ``whatif.json``: settings, baseline, the ``top`` best positions, every candidate."""
    name = result.element
    base = result.baseline.element(name)
    if grid is None and step is None:  # the grid the positions came from: "grid": null would hide it
        grid = DEFAULT_GRID
    best = []
    for rank, c in enumerate(result.candidates[:top], start=1):
        after = c.scores.element(name)
        comparison = compare_scores(result.baseline, c.scores)
        best.append({"rank": rank, "dx": c.dx, "dy": c.dy, "box": list(c.box), "share": after.share,
                     "lift": after.lift, "delta_share": after.share - base.share,
                     "statement": change_statement(name, describe_move(name, c.dx, c.dy, c.box), base.share,
                                                   after.share),
                     "verdict": comparison.verdict, "summary": comparison.summary,
                     "elements": [e.to_dict() for e in comparison.elements]})
    return {
        "element": name,
        "positions": {"grid": None if grid is None else [int(n) for n in grid], "step": step,
                      "max_overlap": max_overlap,
                      "edge_margin": EDGE_MARGIN, "tried": len(result.candidates),
                      "rejected_overlap": positions.rejected_overlap,
                      "rejected_unboxed_content": positions.rejected_content,
                      "content_allowance": positions.content_allowance},
        "baseline": {"box": list(base.box), "share": base.share, "lift": base.lift},
        "best": best,
        "candidates": [{"dx": c.dx, "dy": c.dy, "box": list(c.box), "share": c.share_of(name),
                        "lift": c.scores.element(name).lift} for c in result.candidates],
    }
