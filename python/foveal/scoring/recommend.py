"""Rule-based recommendations, each backed by numbers read off the map.

Rules (constants below; every recommendation carries the numbers it was decided on):

- ``cta_weak``: a CTA that fails its norm (percentile < pass percentile) or, without norms, has lift < 1 (less
  attention than its area's share).  Names the strongest competing element and its share.  Severity high.
- ``distractor``: a logo, body_text or other element with lift > 1 (more attention than its area's share).
  Severity medium when it draws more attention than the best CTA (or the creative has no CTA), else low.
- ``headline_weak``: a headline failing its norm or, without norms, with lift < 1.  Severity medium.
- ``low_focus``: the top 10% of pixels hold less than :data:`LOW_FOCUS_TOP10` of the attention: it is scattered
  and no single message dominates (0.62 = 10th percentile of the first 120 OSIE train scenes under foveal-lite0
  1.2.0's fp32 graph, median 0.77; its int8 graph gives 0.63 and 0.78; model-dependent: itti-koch's maps give
  0.29 and 0.38).
  Severity medium.
- ``whatif``: the edits a what-if search found that raise an element's share, best first (at most
  :data:`MAX_WHATIF`), passed in as :class:`WhatIfResult`.  Severity low.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from .scores import CreativeScores, ElementScore

SEVERITIES: tuple[str, ...] = ("high", "medium", "low")
DISTRACTOR_KINDS: frozenset[str] = frozenset({"logo", "body_text", "other"})
LOW_FOCUS_TOP10 = 0.62
MAX_WHATIF = 3


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


def _pct(share: float) -> str:
    return f"{100 * share:.1f}%"


def _fails(e: ElementScore) -> bool:
    """Below its norm when norms exist, else below its area's share."""
    return e.passed is False if e.passed is not None else e.lift < 1.0


def _ordinal(value: float) -> str:
    """1st, 2nd, 3rd, 11th, 72nd; a fractional percentile keeps its decimals (72.5th)."""
    if value != int(value):
        return f"{value:g}th"
    n = int(value)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _standing(e: ElementScore, pass_percentile: float) -> str:
    """How the element compares, in words: score (rounded percentile) and the share needed to pass, or the lift."""
    if e.score is None:
        return f"lift {e.lift:.2f}, below 1 = less than its area's share"
    return (f"lift {e.lift:.2f}, score {e.score}: {_ordinal(e.score)} percentile of its norm; passing needs "
            f"{_pct(e.threshold_share or 0.0)} (the {_ordinal(pass_percentile)} percentile)")


def _numbers(e: ElementScore) -> dict[str, Any]:
    return {"element": e.name, "kind": e.kind, "share": e.share, "lift": e.lift, "percentile": e.percentile,
            "threshold_share": e.threshold_share}


def recommend(scores: CreativeScores, whatif: Sequence[WhatIfResult] = ()) -> list[Recommendation]:
    """Recommendations for one scored creative, most severe first (stable within a severity)."""
    recs: list[Recommendation] = []
    elements = scores.elements
    ctas = [e for e in elements if e.kind == "cta"]
    best_cta = max((e.share for e in ctas), default=None)

    for cta in ctas:
        if not _fails(cta):
            continue
        rivals = [e for e in elements if e.name != cta.name]
        numbers = _numbers(cta)
        message = f"CTA {cta.name!r} gets {_pct(cta.share)} of attention ({_standing(cta, scores.pass_percentile)})"
        if rivals:
            top = max(rivals, key=lambda e: e.share)
            numbers.update(competitor=top.name, competitor_kind=top.kind, competitor_share=top.share)
            message += f"; the strongest competitor is {top.kind} {top.name!r} with {_pct(top.share)}"
        recs.append(Recommendation(f"cta_weak:{cta.name}", "high",
                                   message + ". Make the CTA larger, higher-contrast or closer to the focal point.",
                                   numbers))

    for e in elements:
        if e.kind in DISTRACTOR_KINDS and e.lift > 1.0:
            outdraws = best_cta is None or e.share > best_cta
            numbers = _numbers(e) | {"best_cta_share": best_cta}
            message = (f"{e.kind} {e.name!r} takes {_pct(e.share)} of attention on {_pct(e.area_fraction)} of the "
                       f"area (lift {e.lift:.2f})")
            if best_cta is not None and outdraws:
                message += f", more than the best CTA ({_pct(best_cta)})"
            recs.append(Recommendation(f"distractor:{e.name}", "medium" if outdraws else "low",
                                       message + ". Tone it down, shrink it or move it away from the CTA.", numbers))

    for e in elements:
        if e.kind == "headline" and _fails(e):
            recs.append(Recommendation(
                f"headline_weak:{e.name}", "medium",
                f"Headline {e.name!r} gets {_pct(e.share)} of attention ({_standing(e, scores.pass_percentile)}). "
                "Increase its size or contrast, or move it toward the focal point.", _numbers(e)))

    if scores.top10_share < LOW_FOCUS_TOP10:
        recs.append(Recommendation(
            "low_focus", "medium",
            f"Attention is scattered: the most-attended 10% of the image holds only {_pct(scores.top10_share)} of "
            f"it (below {_pct(LOW_FOCUS_TOP10)}; focus {scores.focus:.2f}). Give the creative one clear focal "
            "point and reduce competing detail.",
            {"top10_share": scores.top10_share, "focus": scores.focus, "threshold": LOW_FOCUS_TOP10}))

    gains = sorted((w for w in whatif if w.delta_share > 0), key=lambda w: w.delta_share, reverse=True)
    for i, w in enumerate(gains[:MAX_WHATIF], start=1):
        recs.append(Recommendation(
            f"whatif:{i}", "low",
            f"What-if: {w.edit} raises {w.element!r} from {_pct(w.share_before)} to {_pct(w.share_after)} "
            f"({100 * w.delta_share:+.1f} points).",
            {"edit": w.edit, "element": w.element, "share_before": w.share_before, "share_after": w.share_after,
             "delta_share": w.delta_share}))

    return sorted(recs, key=lambda r: SEVERITIES.index(r.severity))
