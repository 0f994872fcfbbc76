"""Attention scores for elements on a saliency map, with definitions that make them comparable across creatives.

Every number here is a function of the map (``prob``, H×W, sums to 1) and the boxes; :data:`DEFINITIONS` states
each one and is copied into every ``scores.json``.

Per element (box ``B`` of ``area`` pixels on an ``N = H·W`` pixel map):

- ``share = Σ_B prob / Σ prob``: the fraction of predicted attention inside the box.
- ``density = share / area``: attention per pixel (``Σ_B prob / area`` for a map summing to 1).
- ``lift = share / (area / N)``: share relative to the box's area fraction; 1.0 is what a uniform map gives.
- ``rank``: 1 for the element with the largest share on this creative; ties share a rank (1, 2, 2, 4).
- ``percentile`` (needs norms): ``100 · #{norm shares ≤ share} / n`` over the ``n`` reference shares of elements of
  the same kind in the same format.  Ties count in the creative's favour (``≤``), so a share equal to the best
  reference scores 100.  The score compares **share**, not lift: share is the attention the element actually gets;
  lift rewards tiny boxes and is reported as a diagnostic.
- ``score = floor(percentile + 0.5)``: the percentile as a whole number 0..100.
- ``passed = percentile ≥ pass_percentile`` (default 70; a norms file may set its own per format and kind, as
  `foveal calibrate` proposes), equivalently ``share ≥ threshold_share`` where
  ``threshold_share`` is the smallest reference share ``t`` with ``#{norm ≤ t} ≥ 0.7·n``.

Per creative (boxes unioned, so overlapping boxes are never counted twice):

- ``conversion_share``: attention inside the union of cta, headline and product boxes.
- ``other_elements_share``: attention inside the union of all other boxes, outside the conversion union.
- ``background_share = 1 − conversion_share − other_elements_share``: attention on no element at all.
- ``focus = 1 − H(prob) / log N`` with ``H = −Σ p log p``: 0 for a uniform map, 1 for all mass on one pixel.
- ``top10_share``: the attention on the ``ceil(0.1·N)`` most-attended pixels (0.1 for a uniform map, 1 when
  attention covers under a tenth of the image).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Iterable, Protocol, Sequence

import numpy as np

from ..errors import InputError, checked_flag
from .elements import (CONVERSION_KINDS, Element, ElementSpec, check_elements, checked_format, element_list,
                       format_of, unknown_element)

if TYPE_CHECKING:
    from .norms import Norms

DEFAULT_PASS_PERCENTILE = 70.0
TOP_FRACTION = 0.10
#: Smallest |Δshare| (as a fraction of all attention) that counts as a change: 0.5 percentage points.
MATERIAL_CHANGE = 0.005
# A share difference is a difference of two float64 shares: 10.5% - 10.0% is 0.004999999999999991, yet it is the
# 0.5 pp the report quotes.  Slack far below any real difference in attention keeps such a change material.
_MATERIAL_SLACK = 1e-12

DEFINITIONS: dict[str, str] = {
    "box": "[x, y, w, h] in whole pixels from the top-left corner: the element's box after rounding, as scored",
    "area": "box area in pixels (w * h)",
    "area_fraction": "box area / image area (N pixels)",
    "share": "attention inside the box / attention on the whole image",
    "density": "attention inside the box / box area in pixels",
    "lift": "share / (box area / image area); 1.0 = what a uniform map gives",
    "rank": "1 = largest share among this creative's elements; ties share a rank",
    "percentile": "100 * (# reference shares of the same kind and format <= this share) / (# reference shares); "
                  "ties count in the creative's favour; null without norms",
    "score": "floor(percentile + 0.5): the percentile as a whole number 0..100; null without norms",
    "passed": "percentile >= pass_percentile (default 70), i.e. share >= threshold_share; null without norms",
    "pass_percentile": "per element: the percentile it must reach to pass, the norms' own for its format and kind "
                       "when they set one, else the creative's pass_percentile; null without norms",
    "threshold_share": "smallest reference share t with (# reference shares <= t) >= pass_percentile% of them",
    "norm_n": "how many reference shares (same kind and format) the element was compared with; null without them",
    "norm_note": "why no reference shares were compared with (no norms, no such format or kind); null when they were",
    "conversion_share": "attention inside the union of cta, headline and product boxes (overlaps counted once)",
    "other_elements_share": "attention inside the union of the other boxes, outside the conversion boxes",
    "background_share": "1 - conversion_share - other_elements_share: attention on no element",
    "focus": "1 - H/log(N), H = -sum p log p over the N pixels: 0 = uniform, 1 = one pixel",
    "top10_share": "attention on the ceil(0.1 N) most-attended pixels: 0.1 = uniform, 1 = fully concentrated",
}


class MapLike(Protocol):
    """What scoring needs from :class:`foveal.SaliencyMap` (or a :class:`foveal.DeviceSaliencyMap`)."""

    @property
    def prob(self) -> np.ndarray: ...

    def box_stats(self, boxes_xywh: Any) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class ElementScore:
    """Scores of one element; norm-dependent fields are None with ``norm_note`` saying why."""

    name: str
    kind: str
    box: tuple[int, int, int, int]
    area: int
    area_fraction: float
    share: float
    density: float
    lift: float
    rank: int
    percentile: float | None
    score: int | None
    passed: bool | None
    threshold_share: float | None
    norm_n: int | None
    norm_note: str | None
    #: The percentile ``passed`` was judged at: the norms' own for this format and kind, else the creative's.
    pass_percentile: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["box"] = list(self.box)
        return d


@dataclass(frozen=True)
class CreativeScores:
    """Scores of one creative: its elements (input order) and the creative-level numbers."""

    image_hw: tuple[int, int]
    format: str
    pass_percentile: float
    elements: tuple[ElementScore, ...]
    conversion_share: float
    other_elements_share: float
    background_share: float
    focus: float
    top10_share: float

    def element(self, name: str) -> ElementScore:
        """The score of the element called ``name`` (:class:`~foveal.errors.UnknownElementError`, a KeyError, if
        absent)."""
        for e in self.elements:
            if e.name == name:
                return e
        raise unknown_element("CreativeScores.element", name, [e.name for e in self.elements])

    def to_dict(self) -> dict[str, Any]:
        return {
            "image_size": {"height": self.image_hw[0], "width": self.image_hw[1]},
            "format": self.format,
            "pass_percentile": self.pass_percentile,
            "elements": [e.to_dict() for e in self.elements],
            "creative": {
                "conversion_share": self.conversion_share,
                "other_elements_share": self.other_elements_share,
                "background_share": self.background_share,
                "focus": self.focus,
                "top10_share": self.top10_share,
            },
            "definitions": DEFINITIONS,
        }


def percentile_of(value: float, sorted_values: np.ndarray) -> float:
    """``100 · #{sorted_values ≤ value} / n`` (exact; ties count as ≤).  ``sorted_values`` ascending, n ≥ 1."""
    n = len(sorted_values)
    if n == 0:
        raise InputError("percentile_of: sorted_values is empty; a percentile needs at least one reference value")
    return 100.0 * int(np.searchsorted(sorted_values, value, side="right")) / n


def threshold_value(sorted_values: np.ndarray, pass_percentile: float) -> float:
    """The smallest ``t`` in ``sorted_values`` with ``percentile_of(t) ≥ pass_percentile`` (0 < pct ≤ 100)."""
    if not 0.0 < pass_percentile <= 100.0:
        raise InputError(f"pass_percentile must be in (0, 100], got {pass_percentile}")
    n = len(sorted_values)
    # The smallest count k whose percentile passes, by the very expression percentile_of and the pass test use:
    # a count rounded from pass_percentile * n / 100 broke "passed <=> share >= threshold" for 70.000000001.
    counts = np.arange(1, n + 1)
    k = int(counts[100.0 * counts / n >= pass_percentile][0])
    return float(sorted_values[k - 1])


def percentile_text(percentile: float, pass_percentile: float) -> str:
    """``percentile`` with one decimal, or as many more as it takes to print it on its own side of the pass mark:
    69.98 fails a mark of 70, and printed "70.0" beside "fail" it would read as a pass."""
    passed = percentile >= pass_percentile
    for digits in range(1, 7):
        text = f"{percentile:.{digits}f}"
        if (float(text) >= pass_percentile) == passed:
            break
    return text


def material_direction(delta: float) -> int:
    """+1 for a gain of at least :data:`MATERIAL_CHANGE`, -1 for such a loss, 0 for no material change."""
    if delta >= MATERIAL_CHANGE - _MATERIAL_SLACK:
        return 1
    if delta <= -MATERIAL_CHANGE + _MATERIAL_SLACK:
        return -1
    return 0


#: Shares closer than this are equal: a box's share comes from four reads of the summed-area table, each off by up to
#: about 1e-14, so boxes holding the same attention (a mirrored layout) differed in their last bits and split ranks.
TIE = 1e-12


def competition_ranks(values: Sequence[float]) -> list[int]:
    """Rank 1 = largest; values within :data:`TIE` of each other share the better rank (1, 2, 2, 4)."""
    v = np.asarray(values, dtype=np.float64)
    greater = len(v) - np.searchsorted(np.sort(v), v + TIE, side="right")  # how many values beat each one
    return (greater + 1).tolist()


def union_share(smap: MapLike, boxes_xyxy: Sequence[tuple[int, int, int, int]]) -> float:
    """Share of attention inside the union of half-open boxes, overlaps counted once. The boxes' edges cut the image
    into at most (2n + 1)² cells, each wholly inside the union or wholly outside it, and the cells inside are summed
    from the map's summed-area table, four reads each: the cost grows with the boxes, not the map (a pixel mask of a
    1920x1080 map took 33 ms a union)."""
    h, w = smap.prob.shape
    boxes = np.asarray(boxes_xyxy, dtype=np.int64).reshape(-1, 4)
    boxes = np.clip(boxes, 0, [w, h, w, h])
    boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
    if not len(boxes):
        return 0.0
    xs, ys = np.unique(boxes[:, 0::2]), np.unique(boxes[:, 1::2])
    x0, x1 = np.searchsorted(xs, boxes[:, 0]), np.searchsorted(xs, boxes[:, 2])
    y0, y1 = np.searchsorted(ys, boxes[:, 1]), np.searchsorted(ys, boxes[:, 3])
    cover = np.zeros((len(ys), len(xs)), np.int64)  # boxes over each cell, as a 2-D difference array
    np.add.at(cover, (y0, x0), 1)
    np.add.at(cover, (y0, x1), -1)
    np.add.at(cover, (y1, x0), -1)
    np.add.at(cover, (y1, x1), 1)
    row, col = np.nonzero(cover.cumsum(0).cumsum(1)[:-1, :-1] > 0)
    cells = np.stack([xs[col], ys[row], xs[col + 1] - xs[col], ys[row + 1] - ys[row]], axis=1)
    return min(1.0, float(smap.box_stats(cells)["share"].sum()))


def focus(prob: np.ndarray) -> float:
    """``1 − H/log N``: normalised-entropy concentration of the map (0 uniform .. 1 a single pixel).

    ``H = log T − Σ q log q / T`` over the unnormalised values ``q`` (total ``T``), in float64, a block of 64K values
    at a time so that the temporaries stay in cache: 5 ms at 1920x1080, where whole-map temporaries took 14."""
    values = np.asarray(prob, dtype=np.float32).ravel()
    n = values.size
    if n == 1:
        return 1.0
    block = np.empty(min(n, _FOCUS_BLOCK))
    logs = np.empty_like(block)
    total = q_log_q = 0.0
    for start in range(0, n, _FOCUS_BLOCK):
        part = values[start:start + _FOCUS_BLOCK]
        q, log_q = block[:part.size], logs[:part.size]
        q[...] = part
        # A zero adds nothing: 0 · log(the smallest subnormal), not 0 · log 0 = NaN.
        np.log(np.maximum(q, np.finfo(np.float64).smallest_subnormal, out=log_q), out=log_q)
        total += float(q.sum())
        q_log_q += float(np.dot(q, log_q))
    entropy = math.log(total) - q_log_q / total
    return float(min(1.0, max(0.0, 1.0 - entropy / math.log(n))))


_FOCUS_BLOCK = 1 << 16


def top_share(prob: np.ndarray, fraction: float = TOP_FRACTION) -> float:
    """Attention on the ``ceil(fraction · N)`` most-attended pixels."""
    flat = prob.ravel()
    k = max(1, math.ceil(round(fraction * flat.size, 9)))
    top = np.partition(flat, flat.size - k)[flat.size - k:]
    return float(top.sum(dtype=np.float64) / flat.sum(dtype=np.float64))


def _checked_arguments(smap: Any, elements: Any, norms: Any, format: Any, pass_percentile: Any
                       ) -> tuple[tuple[Element, ...], str | None, float]:
    """The arguments :func:`score_elements` and :func:`score_creative` share, else InputError: ``elements`` as a
    tuple (an iterator is read once, not emptied by the first of several passes), ``format`` (by default an
    :class:`ElementSpec`'s own, as ``foveal score`` takes the element file's) and ``pass_percentile`` a float."""
    from .norms import Norms  # norms imports this module

    if not (hasattr(smap, "prob") and hasattr(smap, "box_stats")):
        hint = "; wrap an array of probabilities as SaliencyMap(prob)" if isinstance(smap, np.ndarray) else ""
        raise InputError(f"smap: expected a SaliencyMap (what Engine.predict returns), got {type(smap).__name__}"
                         f"{hint}")
    if format is None and isinstance(elements, ElementSpec):
        format = elements.format
    elements = element_list(elements)
    if norms is not None and not isinstance(norms, Norms):
        raise InputError(f"norms: expected a Norms (from load_norms(path) or build_norms), got "
                         f"{type(norms).__name__}")
    if format is not None:
        checked_format(format)
    return tuple(elements), format, checked_pass_percentile(pass_percentile)


def checked_pass_percentile(value: Any) -> float:
    """``value`` as a pass percentile, a number in (0, 100], else InputError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 100.0:
        raise InputError(f"pass_percentile must be a number in (0, 100], got {value!r}")
    return float(value)


def score_elements(smap: MapLike, elements: Iterable[Element], *, norms: Norms | None = None,
                   format: str | None = None, pass_percentile: float = DEFAULT_PASS_PERCENTILE,
                   allow_model_mismatch: bool = False) -> tuple[ElementScore, ...]:
    """Per-element scores (input order).  Box sums come from the map's summed-area table: O(1) per box.

    ``elements``: a sequence of :class:`Element`, or the :class:`ElementSpec` of an element file. ``format``
    selects the norms to compare against (default: the ElementSpec's declared format, else ``"WxH"`` of the map).
    Norms built with another graph than the one in the map's provenance are refused (InputError) unless
    ``allow_model_mismatch``.
    """
    elements, format, pass_percentile = _checked_arguments(smap, elements, norms, format, pass_percentile)
    checked_flag(allow_model_mismatch, "allow_model_mismatch")  # "yes" passed while no norms were given
    if not elements:
        return ()
    # Element objects built directly skip make_element; an edit may legitimately put two on one box.
    check_elements(elements, smap.prob.shape, "elements", identical_boxes=True)
    provenance = getattr(smap, "provenance", None) or {}
    if norms is not None and provenance.get("graph_sha256"):
        norms.check_graph(provenance, checked_flag(allow_model_mismatch, "allow_model_mismatch"))
    h, w = smap.prob.shape
    fmt = format or format_of((h, w))
    stats = smap.box_stats(np.array([e.box for e in elements], dtype=np.int64))
    shares, densities, lifts = (stats[k].tolist() for k in ("share", "density", "lift"))
    ranks = competition_ranks(shares)
    out = []
    for i, e in enumerate(elements):
        share = shares[i]
        percentile = score = passed = threshold = norm_n = kind_pass = None
        if norms is None:
            note = "no norms given: percentile, score and pass need norms of reference creatives"
        else:
            values, note = norms.lookup(fmt, e.kind)
            if values is not None:
                norm_n = len(values)
                percentile = percentile_of(share, values)
                score = math.floor(percentile + 0.5)
                kind_pass = norms.pass_percentile_for(fmt, e.kind, pass_percentile)
                threshold = threshold_value(values, kind_pass)
                passed = percentile >= kind_pass
        out.append(ElementScore(
            name=e.name, kind=e.kind, box=e.box, area=e.area, area_fraction=e.area / (h * w), share=share,
            density=densities[i], lift=lifts[i], rank=ranks[i], percentile=percentile, score=score, passed=passed,
            threshold_share=threshold, norm_n=norm_n, norm_note=note, pass_percentile=kind_pass))
    return tuple(out)


def score_creative(smap: MapLike, elements: Iterable[Element], *, norms: Norms | None = None,
                   format: str | None = None, pass_percentile: float = DEFAULT_PASS_PERCENTILE,
                   allow_model_mismatch: bool = False) -> CreativeScores:
    """Element scores plus creative-level numbers (conversion vs other vs background, focus, top-10% share);
    ``elements`` and ``format`` as in :func:`score_elements`."""
    elements, format, pass_percentile = _checked_arguments(smap, elements, norms, format, pass_percentile)
    prob = smap.prob
    h, w = prob.shape
    # The whole image's box query refuses a map that is not a distribution (focus and top-10% share would be
    # meaningless), also when no element's query would.
    smap.box_stats(np.array([[0, 0, w, h]], np.int64))
    fmt = format or format_of((h, w))
    element_scores = score_elements(smap, elements, norms=norms, format=fmt, pass_percentile=pass_percentile,
                                    allow_model_mismatch=allow_model_mismatch)
    xywh = np.array([e.box for e in elements], np.int64).reshape(-1, 4)
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    is_conversion = np.array([e.kind in CONVERSION_KINDS for e in elements], bool)
    conversion = union_share(smap, xyxy[is_conversion])
    others = max(0.0, union_share(smap, xyxy) - conversion)  # the other boxes' attention outside the conversion ones
    return CreativeScores(
        image_hw=(h, w), format=fmt, pass_percentile=pass_percentile, elements=element_scores,
        conversion_share=conversion, other_elements_share=others,
        background_share=max(0.0, 1.0 - conversion - others),
        focus=focus(prob), top10_share=top_share(prob))
