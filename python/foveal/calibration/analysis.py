"""Calibration of predicted scores against in-market outcomes: per segment and rolling window, how well each
predicted score ranks creatives by their outcome rate, whether that has fallen (drift), and which pass threshold
separates good from poor performers.  Everything here works on plain arrays; :mod:`foveal.store` supplies them.
"""
from __future__ import annotations

import hashlib
import json
import numbers
import re
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any, Iterable, Sequence

import numpy as np

from .._version import __version__
from ..errors import InputError, checked_count
from ..evaluate import check_seed
from ..scoring.scores import checked_pass_percentile
from ..store.outcomes import NO_LABEL, STORED_NO_LABEL
from .stats import (CONFIDENCE, MAX_BOOTSTRAP, benjamini_hochberg, fisher_drop_test, pooled_rate_interval,
                    rank_correlation)

METRICS = {"ctr": ("clicks", "impressions"), "cvr": ("conversions", "clicks")}
SEGMENT_FIELDS = ("vertical", "format", "tag")
#: Creative-level predictors; every ``<kind>_share`` (the kind's best element) is one too.
CREATIVE_PREDICTORS = ("conversion_share", "focus", "top10_share")
DRIFT_METHOD = (
    "One-sided test that Spearman's rho between a predicted score and the outcome rate is lower in the recent "
    "window than in the reference window: Fisher z of each rho with the Bonett-Wright variance (1 + r^2/2)/(n - 3), "
    "windows treated as independent (creatives running in both make it conservative). The p values of every "
    "segment x score tested in one run are adjusted by Benjamini-Hochberg; a test is flagged when its q value is at "
    "most alpha, which keeps the expected share of false alarms among the flags at alpha.")


def is_predictor(name: object) -> bool:
    """Whether a stored score named ``name`` is one calibration correlates: a creative-level predictor, or the share
    of an element kind's best element (not the background's or the other elements' share of the attention)."""
    return isinstance(name, str) and (name in CREATIVE_PREDICTORS or name.endswith("_share") and
                                      name[:-6] not in ("", "background", "other_elements"))


@dataclass(frozen=True)
class Settings:
    """What a calibration run computes; see docs/CALIBRATION.md for the defaults' reasons."""

    by: tuple[str, ...] = ()
    window_days: int = 28
    step_days: int | None = None  # default: 7, or the window if shorter
    metric: str = "ctr"
    min_impressions: int = 1000
    min_clicks: int = 20          # cvr only: its denominator is clicks
    min_creatives: int = 10
    alpha: float = 0.05
    bootstrap: int = 1000
    seed: int = 0
    score: str | None = None      # the score the plots, deciles and thresholds use (default by metric)
    pass_percentile: float = 70.0
    until: date | None = None     # analyse outcomes up to this day (default: the last day with outcomes)

    def __post_init__(self) -> None:
        if self.step_days is None and isinstance(self.window_days, int) and not isinstance(self.window_days, bool):
            object.__setattr__(self, "step_days", min(7, self.window_days))
        if not (isinstance(self.by, (tuple, list)) and all(isinstance(f, str) for f in self.by)):
            raise InputError(f"by: expected a tuple of field names among {', '.join(SEGMENT_FIELDS)}, got {self.by!r}")
        for name in ("window_days", "step_days", "min_creatives", "bootstrap", "min_impressions", "min_clicks"):
            checked_count(getattr(self, name), name, minimum=0)
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, numbers.Real):
            raise InputError(f"alpha must be a number in (0, 1), got {self.alpha!r}")
        if not (self.score is None or is_predictor(self.score)):  # else refused after the store has been read
            raise InputError(f"score {self.score!r}: not a predicted score; name one of "
                             f"{', '.join(CREATIVE_PREDICTORS)} or an element kind's share (cta_share, "
                             "headline_share...), or leave it out")
        if not (self.until is None or isinstance(self.until, date)):
            raise InputError(f"until: expected a datetime.date or None, got {self.until!r}")
        checked_pass_percentile(self.pass_percentile)
        bad = [f for f in self.by if f not in SEGMENT_FIELDS]
        if bad or len(set(self.by)) != len(self.by):
            raise InputError(f"by {','.join(self.by)}: segment by distinct fields among {', '.join(SEGMENT_FIELDS)}")
        if not isinstance(self.metric, str) or self.metric not in METRICS:
            raise InputError(f"metric {self.metric!r}: choose one of {', '.join(METRICS)}")
        if self.window_days < 2 or not 1 <= self.step_days <= self.window_days:
            raise InputError(f"window {self.window_days}d, step {self.step_days}d: the window needs 2 days or "
                             "more and the step 1 day up to the window")
        if self.min_creatives < 5:
            raise InputError(f"min_creatives {self.min_creatives}: a rank correlation needs at least 5 creatives")
        if not 0 < self.alpha < 1:
            raise InputError(f"alpha {self.alpha}: must be in (0, 1)")
        if self.min_impressions < 1:
            raise InputError(f"min_impressions must be at least 1, got {self.min_impressions}")
        if self.bootstrap > MAX_BOOTSTRAP:
            raise InputError(f"bootstrap {self.bootstrap}: use at most {MAX_BOOTSTRAP} resamples; more only take "
                             "longer without making the 95% intervals any more useful")
        check_seed(self.seed)

    @property
    def primary(self) -> str:
        return self.score or ("cta_share" if self.metric == "ctr" else "conversion_share")


@dataclass
class Data:
    """Creatives (their segments and predicted scores) and their daily outcomes, as arrays."""

    ids: list[str]
    segments: dict[tuple[tuple[str, str], ...], np.ndarray]   # segment key -> creative indices
    scores: dict[str, np.ndarray]                              # predictor -> (n_creatives,) float, NaN = none
    formats: list[str]
    creative: np.ndarray                                       # per outcome row: creative index
    day: np.ndarray                                            # per outcome row: date.toordinal()
    counts: dict[str, np.ndarray]                              # impressions, clicks, conversions per row (float)


def _segment(label: str) -> str:
    """A stored label's segment: an older foveal let a vertical or tag be named NO_LABEL, which must not join the
    creatives that have none."""
    return STORED_NO_LABEL if label == NO_LABEL else label


def build_data(predictions: Sequence[dict[str, Any]], outcomes: Iterable[tuple], by: Sequence[str]) -> Data:
    """Arrays from :meth:`Store.latest_predictions` and :meth:`Store.outcome_rows` (rows of creatives without a
    prediction are ignored)."""
    # In code-point order whatever the database's collation: the bootstrap's draws and the split of tied scores
    # between decile bins follow this order, so SQLite and PostgreSQL stores give the same numbers
    predictions = sorted(predictions, key=lambda p: p["creative_id"])
    ids = [p["creative_id"] for p in predictions]
    index = {cid: i for i, cid in enumerate(ids)}
    names = sorted({k for p in predictions for k in p["scores"] if is_predictor(k)})
    scores = {k: np.array([p["scores"].get(k, np.nan) for p in predictions], np.float64) for k in names}
    segments: dict[tuple, list[int]] = {}
    for i, p in enumerate(predictions):
        options = []
        for field in by:
            if field == "tag":
                options.append([("tag", _segment(t)) for t in sorted(p.get("tags") or [])] or [("tag", NO_LABEL)])
            else:
                options.append([(field, _segment(p.get(field)) if p.get(field) else NO_LABEL)])
        keys = [()]
        for choices in options:
            keys = [k + (c,) for k in keys for c in choices]
        for key in keys:
            segments.setdefault(key, []).append(i)
    rows = [(index[r[0]], r[1].toordinal(), r[2], r[3], r[4]) for r in outcomes if r[0] in index]
    keys = np.array([r[:2] for r in rows], np.int64).reshape(-1, 2)
    # Counts as floats: a day's sum may pass 64 bits, and the window sums (bincount weights) are floats anyway.
    counts = np.array([r[2:4] for r in rows], np.float64).reshape(-1, 2)
    conversions = np.array([-1 if r[4] is None else r[4] for r in rows], np.float64)
    return Data(ids=ids, segments={k: np.array(v) for k, v in sorted(segments.items())}, scores=scores,
                formats=[p.get("format") or "" for p in predictions], creative=keys[:, 0], day=keys[:, 1],
                counts={"impressions": counts[:, 0], "clicks": counts[:, 1], "conversions": conversions})


def segment_name(key: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{f}={v}" for f, v in key) or "all"


#: The longest slug: a file name holds 255 bytes, and a segment of three 200-character values would pass that.
MAX_SLUG = 100


def slugs(keys: Iterable[tuple[tuple[str, str], ...]]) -> dict[tuple[tuple[str, str], ...], str]:
    """Each segment's slug, which names its proposed norms file: its values in file-name characters, distinct from
    the others' even on a case-insensitive disk (``a/b`` and ``a b``, ``Retail`` and ``retail`` read alike), with a
    digest of the key where they are not, or where the slug would be too long."""
    keys = list(keys)
    plain = {k: re.sub(r"[^A-Za-z0-9._-]+", "-", "_".join(f"{f}-{v}" for f, v in k) or "all").strip("-")
             for k in keys}
    alike = Counter(s.lower() for s in plain.values())
    return {k: s if alike[s.lower()] == 1 and len(s) <= MAX_SLUG else f"{s[:MAX_SLUG - 13]}-{_digest(k).hex()[:12]}"
            for k, s in plain.items()}


def _digest(key: tuple[tuple[str, str], ...]) -> bytes:
    return hashlib.sha256(json.dumps(sorted(key)).encode()).digest()


def window_ends(days: np.ndarray, last: int, settings: Settings) -> list[int]:
    """Day numbers where windows end: the last day, then every ``step`` days back while a whole window fits after
    the first of ``days`` (the outcomes' days). A window must hold outcomes and begin no earlier than the stretch
    of outcomes it holds (stretches part where a whole window passes without any): one row dated years before the
    rest (a 0001-01-01 in an export) adds no window for every step in between, nor turns the first windows of
    the real outcomes into windows that began before them."""
    width = settings.window_days
    present = np.unique(days)
    stretch_starts = present[np.r_[True, np.diff(present) >= width]]
    ends = np.arange(last, int(present[0]) + width - 2, -settings.step_days)[::-1]
    starts = ends - width + 1
    found = np.searchsorted(present, starts)  # the window's first outcome day, if it holds one
    holds = found < len(present)
    holds[holds] = present[found[holds]] <= ends[holds]
    first_held = present[np.minimum(found, len(present) - 1)]
    began = stretch_starts[np.searchsorted(stretch_starts, first_held, side="right") - 1]
    return [int(end) for end in ends[holds & (began <= starts)]]


def window_totals(data: Data, start: int, end: int, settings: Settings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per creative over days ``[start, end]``: outcome numerator, denominator, and whether it is eligible (enough
    impressions, and for cvr enough clicks, at least one, and no unknown conversions in the window)."""
    mask = (data.day >= start) & (data.day <= end)
    n = len(data.ids)
    c = data.creative[mask]
    impressions = np.bincount(c, data.counts["impressions"][mask], minlength=n)
    clicks = np.bincount(c, data.counts["clicks"][mask], minlength=n)
    if settings.metric == "ctr":
        return clicks, impressions, impressions >= settings.min_impressions
    conv = data.counts["conversions"][mask]
    unknown = np.bincount(c, conv < 0, minlength=n) > 0
    conversions = np.bincount(c, np.maximum(conv, 0), minlength=n)
    # clicks > 0 whatever min_clicks: without clicks there is no conversion rate (0/0), only NaN in the ranks
    enough = (impressions >= settings.min_impressions) & (clicks >= max(settings.min_clicks, 1))
    return conversions, clicks, enough & ~unknown


def _iso(day: int) -> str:
    return date.fromordinal(day).isoformat()


def segment_rng(seed: int, key: tuple[tuple[str, str], ...]) -> np.random.Generator:
    """The bootstrap's generator for one segment, from the run's seed and the segment's key alone: a segment's
    intervals do not move when other segments are added to the store or left out of a run."""
    return np.random.default_rng([seed, int.from_bytes(_digest(key)[:8], "little")])


def analyse(data: Data, settings: Settings) -> dict[str, Any]:
    """The calibration document (without thresholds): per segment, correlations over windows, reference vs
    recent drift tests (Benjamini–Hochberg across the run), deciles and scatter of the primary score."""
    if data.day.size == 0:
        raise InputError("no outcomes for the scored creatives: import some with `foveal outcomes import`")
    if settings.score is not None and settings.score not in data.scores:
        raise InputError(f"score {settings.score!r}: no such score in the store (have: "
                         f"{', '.join(data.scores) or 'none'})")
    first, newest = int(data.day.min()), int(data.day.max())
    last = settings.until.toordinal() if settings.until else newest
    # Past the data by a whole window, the recent window would be empty (and every window up to it written out).
    if not first <= last < newest + settings.window_days:
        side = "before the first outcome" if last < first else f"{settings.window_days}+ days after the last outcome"
        raise InputError(f"until {settings.until}: {side}; choose a day from {_iso(first)} to {_iso(newest)}")
    ends = window_ends(data.day, last, settings)
    if not ends and last - first + 1 < settings.window_days:
        raise InputError(f"outcomes span {last - first + 1} day(s), less than one {settings.window_days}-day window; "
                         "use a shorter window or wait for more data")
    if not ends:
        raise InputError(f"no {settings.window_days}-day window ending on {_iso(last)} or a whole number of "
                         f"{settings.step_days}-day steps before it lies within a stretch of outcomes (they run "
                         f"{_iso(first)} to {_iso(newest)}, with gaps of a window or more); choose another until "
                         "day or a shorter window")
    windows = [(end - settings.window_days + 1, end) for end in ends]
    totals = [window_totals(data, a, b, settings) for a, b in windows]
    segments, tests = [], []
    names = slugs(data.segments)
    for key, members in data.segments.items():
        seg: dict[str, Any] = {"name": segment_name(key), "key": dict(key), "slug": names[key],
                               "creatives": int(len(members)), "windows": []}
        rng = segment_rng(settings.seed, key)
        usable = []
        for (a, b), (num, den, ok) in zip(windows, totals):
            sel = members[ok[members]]
            entry = {"start": _iso(a), "end": _iso(b), "creatives_with_outcomes": int(len(sel)), "scores": {}}
            for name, values in data.scores.items():
                pick = sel[np.isfinite(values[sel])]
                if len(pick) < settings.min_creatives:
                    continue
                corr = rank_correlation(values[pick], num[pick] / den[pick], rng, settings.bootstrap)
                entry["scores"][name] = corr.to_dict()
            seg["windows"].append(entry)
            usable.append(bool(entry["scores"]))
        seg.update(_drift_pair(usable, windows, settings))
        for name in data.scores:
            test = _drift_test(seg, name)
            if test is not None:
                seg.setdefault("drift", {})[name] = test
                tests.append(test)
        seg.update(_primary_views(data, members, windows, totals, seg, settings, rng))
        segments.append(seg)
    q = benjamini_hochberg(np.array([t["p"] for t in tests]))
    for t, qv in zip(tests, q):
        t["q"] = float(qv)
        t["flagged"] = bool(qv <= settings.alpha and t["recent_spearman"] < t["reference_spearman"])
    flags = []
    for seg in segments:
        fell = {name: t for name, t in seg.get("drift", {}).items() if t["flagged"]}
        seg["flagged"] = bool(fell)
        if fell:
            flags.append({"segment": seg["name"], "scores": sorted(fell),
                          "message": _flag_message(seg, fell, settings)})
    return {"foveal_calibration": 1, "foveal_version": __version__, "settings": _settings_dict(settings),
            "confidence": CONFIDENCE, "drift_method": DRIFT_METHOD,
            "data": {"creatives": len(data.ids), "outcome_rows": int(data.day.size), "first_date": _iso(first),
                     "last_date": _iso(last)},
            "flags": flags, "segments": segments}


def _settings_dict(settings: Settings) -> dict[str, Any]:
    d = asdict(settings)
    d["by"] = list(settings.by)
    d["score"] = settings.primary
    d["until"] = None if settings.until is None else settings.until.isoformat()
    return d


def _drift_pair(usable: list[bool], windows: list[tuple[int, int]], settings: Settings) -> dict[str, Any]:
    """The reference window (the segment's first with enough creatives) and the recent one (the last), when they
    do not overlap."""
    first = next((i for i, u in enumerate(usable) if u), None)
    recent = len(windows) - 1
    if first is None or not usable[recent] or windows[first][1] >= windows[recent][0]:
        return {"reference": None, "recent": None,
                "drift_note": f"not enough history: drift needs two non-overlapping {settings.window_days}-day "
                              f"windows with at least {settings.min_creatives} creatives of "
                              f"{settings.min_impressions}+ impressions"
                              + (f" and {max(settings.min_clicks, 1)}+ clicks" if settings.metric == "cvr" else "")}
    return {"reference": first, "recent": recent, "drift_note": None}


def _drift_test(seg: dict[str, Any], name: str) -> dict[str, Any] | None:
    if seg["reference"] is None:
        return None
    ref = seg["windows"][seg["reference"]]["scores"].get(name)
    new = seg["windows"][seg["recent"]]["scores"].get(name)
    if not ref or not new or ref["spearman"] is None or new["spearman"] is None:
        return None
    z, p = fisher_drop_test(ref["spearman"], ref["n"], new["spearman"], new["n"])
    return {"reference_spearman": ref["spearman"], "reference_ci": ref["spearman_ci"], "reference_n": ref["n"],
            "recent_spearman": new["spearman"], "recent_ci": new["spearman_ci"], "recent_n": new["n"],
            "z": z, "p": p}


def _flag_message(seg: dict[str, Any], fell: dict[str, dict[str, Any]], settings: Settings) -> str:
    ref, new = seg["windows"][seg["reference"]], seg["windows"][seg["recent"]]
    drops = ", ".join(f"{name} {t['reference_spearman']:.2f} → {t['recent_spearman']:.2f} ({_q(t['q'])})"
                      for name, t in sorted(fell.items()))
    # U+2068/U+2069 isolate the segment's values (users' verticals and tags): a right-to-left override in one must
    # not reverse the rest of the sentence, in the report or on a terminal
    return (f"the model may be drifting on \u2068{seg['name']}\u2069: rank correlation with {settings.metric}, "
            f"reference window {ref['start']}..{ref['end']} → recent window {new['start']}..{new['end']}: {drops}; "
            "check what changed in this segment and update your benchmark thresholds")


def _q(q: float) -> str:
    return "q<0.0001" if q < 1e-4 else f"q={q:.2g}"


def _primary_views(data: Data, members: np.ndarray, windows: list[tuple[int, int]], totals: list,
                   seg: dict[str, Any], settings: Settings, rng: np.random.Generator) -> dict[str, Any]:
    """Scatter (reference and recent windows) and the decile table (recent window) of the primary score."""
    name = settings.primary
    values = data.scores.get(name)
    out: dict[str, Any] = {"scatter": {}, "deciles": None}
    if values is None:
        return out
    recent = len(windows) - 1
    for label, i in (("reference", seg["reference"]), ("recent", recent)):
        if i is None:
            continue
        num, den, ok = totals[i]
        sel = members[ok[members] & np.isfinite(values[members])]
        out["scatter"][label] = {"start": _iso(windows[i][0]), "end": _iso(windows[i][1]),
                                 "points": [[float(values[j]), float(num[j] / den[j]), int(den[j])] for j in sel]}
    num, den, ok = totals[recent]
    sel = members[ok[members] & np.isfinite(values[members])]
    if len(sel) >= settings.min_creatives:
        out["deciles"] = decile_table(values[sel], num[sel], den[sel], rng, settings.bootstrap)
    return out


def decile_table(score: np.ndarray, num: np.ndarray, den: np.ndarray, rng: np.random.Generator,
                 bootstrap: int) -> list[dict[str, Any]]:
    """Creatives cut into (up to) ten equal-count bins of predicted score; each bin's pooled outcome rate with a
    bootstrap interval.  Fewer bins when there are under 50 creatives (at least 5 per bin: one under 10)."""
    bins = int(min(10, max(1, len(score) // 5)))
    order = np.argsort(score, kind="stable")
    rows = []
    for b, part in enumerate(np.array_split(order, bins)):
        rate, ci = pooled_rate_interval(num[part], den[part], rng, bootstrap)
        rows.append({"bin": b + 1, "bins": bins, "n": int(len(part)), "score_min": float(score[part].min()),
                     "score_max": float(score[part].max()), "rate": rate, "rate_ci": ci,
                     "denominator": int(den[part].sum())})
    return rows


def parse_days(text: str) -> int:
    """``28d``, ``4w`` or ``28`` → days."""
    m = re.fullmatch(r"\s*(\d+)\s*([dw]?)\s*", text)
    if not m or int(m.group(1)) == 0:
        raise InputError(f"{text!r}: expected a number of days like 28d (or weeks like 4w)")
    return int(m.group(1)) * (7 if m.group(2) == "w" else 1)
