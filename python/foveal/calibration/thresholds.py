"""Pass thresholds from outcomes: the norms percentile that best separates a segment's above-median performers
from the rest, proposed as a new norms file (the user adopts it by scoring with it; nothing changes silently).

Separation is Youden's J = (share of top performers that pass) − (share of the others that pass), over the
creatives of the segment's recent window; J is 0 for a threshold that passes both groups alike and 1 for a perfect
split.  Among equally good thresholds the one closest to the current threshold wins.  The proposal's J is measured
on the creatives it was chosen on, so it overstates what it will do on new ones (docs/CALIBRATION.md says by how
much).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..scoring.norms import Norms
from ..scoring.scores import percentile_of

CANDIDATES = np.arange(1, 101, dtype=np.float64)


def separation(percentiles: np.ndarray, top: np.ndarray, threshold: float | np.ndarray) -> dict[str, Any]:
    """How a pass threshold splits creatives: Youden's J, pass rate, and the share of top performers among those
    that pass and among those that fail. ``threshold`` may be one per creative (its format's); the one shown is then
    the most common of them."""
    passed = percentiles >= threshold
    tpr = float(passed[top].mean()) if top.any() else 0.0
    fpr = float(passed[~top].mean()) if (~top).any() else 0.0
    values, counts = np.unique(np.asarray(threshold, dtype=np.float64), return_counts=True)
    return {"pass_percentile": float(values[np.argmax(counts)]), "youden_j": tpr - fpr,
            "pass_rate": float(passed.mean()),
            "top_share_passed": float(top[passed].mean()) if passed.any() else None,
            "top_share_failed": float(top[~passed].mean()) if (~passed).any() else None}


def propose(percentiles: np.ndarray, rates: np.ndarray, current: float | np.ndarray) -> dict[str, Any]:
    """The threshold (1..100) with the largest Youden's J between above-median ``rates`` and the rest.

    ``current``: the threshold in force, one for all or one per creative (a segment's formats may each have their
    own); "before" judges each creative by its own, and among equally good thresholds the one closest to the most
    common current one wins.
    """
    top = rates > np.median(rates)
    passed = percentiles[None, :] >= CANDIDATES[:, None]
    tpr = passed[:, top].mean(1) if top.any() else np.zeros(len(CANDIDATES))
    fpr = passed[:, ~top].mean(1) if (~top).any() else np.zeros(len(CANDIDATES))
    j = tpr - fpr
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0.0, atol=1e-12))
    before = separation(percentiles, top, current)
    choice = float(CANDIDATES[best[np.argmin(np.abs(CANDIDATES[best] - before["pass_percentile"]))]])
    return {"n": int(len(rates)), "top_performers": int(top.sum()), "before": before,
            "after": separation(percentiles, top, choice), "changed": bool(np.any(np.asarray(current) != choice))}


def creative_percentiles(shares: np.ndarray, formats: list[str], kind: str, norms: Norms) -> np.ndarray:
    """Each creative's percentile of its best ``kind`` element's share in its format's norms (NaN where the norms
    have no such format or kind)."""
    out = np.full(len(shares), np.nan)
    for i, (share, fmt) in enumerate(zip(shares, formats)):
        values, _ = norms.lookup(fmt, kind)
        if values is not None and np.isfinite(share):
            out[i] = percentile_of(float(share), values)
    return out


def proposed_norms(norms: Norms, passes: dict[str, dict[str, float]]) -> dict[str, Any]:
    """``norms`` as a norms-file dict with ``passes`` (format → kind → percentile) set on top of its own."""
    merged = {fmt: dict(kinds) for fmt, kinds in norms.pass_percentiles.items()}
    for fmt, kinds in passes.items():
        merged.setdefault(fmt, {}).update(kinds)
    return Norms(model=norms.model, formats=norms.formats, creatives=norms.creatives, source=norms.source,
                 foveal_version=norms.foveal_version, pass_percentiles=merged).to_dict()
