"""Rule-based recommendations, each backed by numbers read off the map.

Rules (every recommendation carries the numbers it was decided on).  With norms, an element's pass/fail decides
whether it is weak, so a recommendation never contradicts the pass column: every failing element is told to
draw more attention, and no failing element is told to draw less.

- ``cta_weak``: a CTA that fails its norm or, without norms, has lift < 1 (less attention than its area's share)
  or ranks in the bottom half of the creative's elements (rank > n/2).  Names the strongest competing element and
  its share.  Severity high.
- ``headline_weak``: a headline failing its norm or, without norms, with lift < 1.  Severity medium.
- ``<kind>_weak`` (``product_weak``, ``logo_weak``, ``face_weak``, ``body_text_weak``, ``other_weak``): an element
  of another kind that fails its norm (only with norms).  Severity medium for product, low for the others.
- ``distractor``: a logo, body_text or other element with lift > 1 (more attention than its area's share) that
  does not fail its own norm.  Severity medium when it draws more attention than the best CTA (or the creative
  has no CTA), else low.
- ``low_focus``: the top 10% of pixels hold less than the model's ``low_focus_top10`` threshold of the attention:
  it is scattered and no single message dominates.  The threshold belongs to the model (its card's
  ``"scoring"``, calibrated by ``engine/calibrate_scoring.py`` as the 10th percentile over OSIE train images,
  because sharper models concentrate more); a model without one (a user's ONNX) gets no ``low_focus`` rule.
  Severity medium.
- ``whatif``: the edits a what-if search found that raise an element's share materially (by at least
  :data:`MATERIAL_CHANGE`, as compare counts a change), best first (at most :data:`MAX_WHATIF`), passed in as
  :class:`WhatIfResult`.  Severity low.

Every rule is linear in the number of elements.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from ..errors import InputError, ModelError
from .elements import quoted
from .scores import CreativeScores, ElementScore, material_direction, percentile_text

SEVERITIES: tuple[str, ...] = ("high", "medium", "low")
DISTRACTOR_KINDS: frozenset[str] = frozenset({"logo", "body_text", "other"})
MAX_WHATIF = 3


@dataclass(frozen=True)
class Thresholds:
    """A model's calibrated scoring thresholds (None: not calibrated, the rule does not fire)."""

    low_focus_top10: float | None = None
    source: str = "none"

    @classmethod
    def of_card(cls, card: Any) -> "Thresholds":
        """The ``"scoring"`` entry of a model card (:class:`foveal.models.ModelCard`); a graph variant's own
        entry (``card.raw[precision]["scoring"]``) wins over the model's."""
        raw = getattr(card, "raw", {}) or {}
        precision = getattr(card, "precision", "fp32")
        variant = raw.get(precision) if precision != "fp32" else None
        entry = (variant or {}).get("scoring") if isinstance(variant, dict) else None
        entry = entry if entry is not None else raw.get("scoring")
        name = getattr(card, "name", "?")
        if entry is None:
            return cls(None, f"model {name!r} has no calibrated scoring thresholds")
        value = entry.get("low_focus_top10") if isinstance(entry, dict) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.1 <= value <= 1.0:
            raise ModelError(f"model card {name!r}: 'scoring.low_focus_top10' must be a number in [0.1, 1], got "
                             f"{value!r}; recalibrate with engine/calibrate_scoring.py")
        return cls(float(value), f"model {name!r} ({precision}) card")


@dataclass(frozen=True)
class WhatIfResult:
    """One edit a what-if search tried, and what it did to one element's share.

    ``edit`` is a human-readable description ("move 'cta' to x=540, y=820"); ``element`` the element measured.
    """

    edit: str
    element: str
    share_before: float
    share_after: float

    @property
    def delta_share(self) -> float:
        """``share_after − share_before``."""
        return self.share_after - self.share_before


@dataclass(frozen=True)
class Recommendation:
    """``id`` is ``rule`` or ``rule:element``; ``numbers`` holds the values the message quotes."""

    id: str
    severity: str
    message: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _pct(share: float, digits: int = 1) -> str:
    return f"{100 * share:.{digits}f}%"


def _share_digits(e: ElementScore) -> int:
    """Decimals for an element's share and the share it needs to pass: one, or as many more as it takes to print a
    failing share below what it needs (28.2% against "passing needs 28.2%" reads as a pass)."""
    if e.passed is not False or e.threshold_share is None:
        return 1
    for digits in range(1, 7):
        if float(f"{100 * e.share:.{digits}f}") < float(f"{100 * e.threshold_share:.{digits}f}"):
            return digits
    return 6


def _fails(e: ElementScore) -> bool:
    """Below its norm when norms exist, else below its area's share."""
    return e.passed is False if e.passed is not None else e.lift < 1.0


def _low_rank(e: ElementScore, n: int) -> bool:
    """Without norms: in the bottom half of the creative's elements by share."""
    return e.passed is None and n >= 2 and e.rank > n / 2


def _ordinal(value: float) -> str:
    """1st, 2nd, 3rd, 11th, 72nd; a fractional percentile keeps its decimals (72.5th)."""
    if value != int(value):
        return f"{value:.15g}th"  # every digit: a mark of 70.0000001 printed "70" would pass a 70.0 that fails
    n = int(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _standing(e: ElementScore, n: int, default_mark: float) -> str:
    """How the element compares, in words: score (rounded percentile) and the share needed to pass, or the lift
    and rank."""
    rank = f"ranks {_ordinal(e.rank)} of {n} elements"
    if e.score is None:
        below = ", below 1 = less than its area's share" if e.lift < 1 else ""
        return f"lift {e.lift:.2f}{below}; {rank}"
    # The percentile itself, not the rounded score: a score of 70 may be the 69.6th percentile, which fails 70.
    mark = default_mark if e.pass_percentile is None else e.pass_percentile  # None: built without one
    return (f"lift {e.lift:.2f}, {rank}, score {e.score}: percentile {percentile_text(e.percentile or 0.0, mark)} of "
            f"its norm; passing needs {_pct(e.threshold_share or 0.0, _share_digits(e))} (the {_ordinal(mark)} "
            "percentile)")


def _numbers(e: ElementScore, n: int) -> dict[str, Any]:
    # Every number a message quotes (a distractor's area, a weak element's score) is here for a program to read.
    return {"element": e.name, "kind": e.kind, "share": e.share, "area_fraction": e.area_fraction, "lift": e.lift,
            "rank": e.rank, "elements": n, "percentile": e.percentile, "score": e.score, "passed": e.passed,
            "pass_percentile": e.pass_percentile, "threshold_share": e.threshold_share}


def _strongest_other(top_two: list[ElementScore], e: ElementScore) -> ElementScore | None:
    for candidate in top_two:
        if candidate.name != e.name:
            return candidate
    return None


_FIXES = {
    "headline": "Increase its size or contrast, or move it toward the focal point.",
    "product": "Make the product larger or more prominent, or place it nearer the focal point.",
    "logo": "Make the logo larger or higher-contrast, or place it where the eye passes.",
    "face": "A face draws and directs gaze: show it larger or facing toward the message.",
}


def recommend(scores: CreativeScores, whatif: Sequence[WhatIfResult] = (), *,
              thresholds: Thresholds = Thresholds()) -> list[Recommendation]:
    """Recommendations for one scored creative, most severe first (stable within a severity).

    ``thresholds``: the model's (:meth:`Thresholds.of_card` of ``Engine.graph``); without them ``low_focus`` is
    not judged.
    """
    if not isinstance(scores, CreativeScores):
        raise InputError(f"recommend: scores must be CreativeScores (what score_creative returns), got "
                         f"{type(scores).__name__}")
    if isinstance(whatif, (str, bytes)) or not isinstance(whatif, Sequence) or not all(
            isinstance(w, WhatIfResult) for w in whatif):
        raise InputError("recommend: whatif must be a list of WhatIfResult (what a what-if search tried), got "
                         f"{type(whatif).__name__}")
    if not isinstance(thresholds, Thresholds):
        raise InputError(f"recommend: thresholds must be Thresholds (Thresholds.of_card(engine.graph)), got "
                         f"{type(thresholds).__name__}")
    recs: list[Recommendation] = []
    elements = scores.elements
    n = len(elements)
    pp = scores.pass_percentile
    top_two = _top_two(elements)
    best_cta = max((e.share for e in elements if e.kind == "cta"), default=None)

    for e in elements:
        if e.kind == "cta":
            if not (_fails(e) or _low_rank(e, n)):
                continue
            numbers = _numbers(e, n)
            message = (f"CTA {quoted(e.name)} gets {_pct(e.share, _share_digits(e))} of attention "
                       f"({_standing(e, n, pp)})")
            top = _strongest_other(top_two, e)
            if top is not None:
                numbers.update(competitor=top.name, competitor_kind=top.kind, competitor_share=top.share)
                message += f"; the strongest competitor is {top.kind} {quoted(top.name)} with {_pct(top.share)}"
            recs.append(Recommendation(f"cta_weak:{e.name}", "high", message + ". Make the CTA larger, "
                                       "higher-contrast or closer to the focal point.", numbers))
        elif e.kind == "headline" and _fails(e):
            recs.append(Recommendation(
                f"headline_weak:{e.name}", "medium",
                f"Headline {quoted(e.name)} gets {_pct(e.share, _share_digits(e))} of attention "
                f"({_standing(e, n, pp)}). {_FIXES['headline']}",
                _numbers(e, n)))
        elif e.passed is False:
            fix = _FIXES.get(e.kind, "Make it larger or higher-contrast if it matters to the message.")
            recs.append(Recommendation(
                f"{e.kind}_weak:{e.name}", "medium" if e.kind == "product" else "low",
                f"{e.kind} {quoted(e.name)} gets {_pct(e.share, _share_digits(e))} of attention, below its norm "
                f"({_standing(e, n, pp)}). {fix}", _numbers(e, n)))
        elif e.kind in DISTRACTOR_KINDS and e.lift > 1.0:
            outdraws = best_cta is None or e.share > best_cta
            numbers = _numbers(e, n) | {"best_cta_share": best_cta}
            message = (f"{e.kind} {quoted(e.name)} takes {_pct(e.share)} of attention on {_pct(e.area_fraction)} of "
                       f"the area (lift {e.lift:.2f})")
            if best_cta is not None and outdraws:
                message += f", more than the best CTA ({_pct(best_cta)})"
            recs.append(Recommendation(f"distractor:{e.name}", "medium" if outdraws else "low",
                                       message + ". Tone it down, shrink it or move it away from the CTA.", numbers))

    limit = thresholds.low_focus_top10
    if limit is not None and scores.top10_share < limit:
        recs.append(Recommendation(
            "low_focus", "medium",
            f"Attention is scattered: the most-attended 10% of the image holds only {_pct(scores.top10_share)} of "
            f"it (below {_pct(limit)}, this model's 10th percentile on natural photos; focus {scores.focus:.2f}). "
            "Give the creative one clear focal point and reduce competing detail.",
            {"top10_share": scores.top10_share, "focus": scores.focus, "threshold": limit,
             "threshold_source": thresholds.source}))

    # Only a gain compare would call material: +0.0 points is no reason to move an element.
    gains = sorted((w for w in whatif if material_direction(w.delta_share) > 0), key=lambda w: w.delta_share,
                   reverse=True)
    for i, w in enumerate(gains[:MAX_WHATIF], start=1):
        recs.append(Recommendation(
            f"whatif:{i}", "low",
            f"What-if: {w.edit} raises {quoted(w.element)} from {_pct(w.share_before)} to {_pct(w.share_after)} "
            f"({100 * w.delta_share:+.1f} points).",
            {"edit": w.edit, "element": w.element, "share_before": w.share_before, "share_after": w.share_after,
             "delta_share": w.delta_share}))

    return sorted(recs, key=lambda r: SEVERITIES.index(r.severity))


def _top_two(elements: Sequence[ElementScore]) -> list[ElementScore]:
    """The two elements with the largest shares, in one pass (ties: the earlier element)."""
    first = second = None
    for e in elements:
        if first is None or e.share > first.share:
            first, second = e, first
        elif second is None or e.share > second.share:
            second = e
    return [x for x in (first, second) if x is not None]
