"""The statistics of calibration, vectorised: rank correlations with bootstrap intervals, binned outcome rates, a
one-sided test for a fall in correlation, and Benjamini–Hochberg control across many tests.

Every bootstrap here resamples creatives (pairs of predicted score and outcome rate) with replacement, many times
at once as a ``(B, n)`` matrix of how often each creative is drawn (in chunks of at most :data:`CHUNK_CELLS` cells,
so memory does not grow with the number of resamples), and reports the 2.5th and 97.5th percentiles (a percentile
interval).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.special import ndtr, ndtri

BOOTSTRAP = 1000
#: More resamples only take longer: here the Monte Carlo error of an interval's ends is already a tenth of the
#: default's (it shrinks as 1/sqrt(B)).
MAX_BOOTSTRAP = 100_000
CONFIDENCE = 0.95
#: Resample matrix cells computed at once (8 MB per float64 array; the statistics hold a few such arrays).
CHUNK_CELLS = 1 << 20


@dataclass(frozen=True)
class Correlation:
    """A rank correlation with its bootstrap 95 % interval; None where it is undefined (n < 3 or constant)."""

    n: int
    spearman: float | None
    spearman_ci: tuple[float, float] | None
    kendall: float | None
    kendall_ci: tuple[float, float] | None

    def to_dict(self) -> dict:
        return {"n": self.n, "spearman": self.spearman, "spearman_ci": self.spearman_ci,
                "kendall": self.kendall, "kendall_ci": self.kendall_ci}


def resample_weights(n: int, bootstrap: int, rng: np.random.Generator) -> np.ndarray:
    """``(bootstrap, n)`` multiplicities: how often each of ``n`` creatives is drawn in each resample of size n."""
    draws = rng.integers(0, n, size=(bootstrap, n)) + n * np.arange(bootstrap)[:, None]
    return np.bincount(draws.ravel(), minlength=bootstrap * n).reshape(bootstrap, n).astype(np.float64)


def _resampled(n: int, bootstrap: int, rng: np.random.Generator,
               statistic: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``statistic`` (of a ``(b, n)`` weight matrix, one value per row along the last axis) over ``bootstrap``
    resamples, computed a chunk of rows at a time."""
    rows = max(1, CHUNK_CELLS // n)
    return np.concatenate([statistic(resample_weights(n, min(rows, bootstrap - start), rng))
                           for start in range(0, bootstrap, rows)], axis=-1)


def spearman_weighted(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spearman's rho (ties averaged) of the samples that repeat creative ``i`` ``w[b, i]`` times, for each row of
    ``w`` (shape ``(B, n)``); NaN where a resample is constant.  O(B·n²) as matrix products, no per-row sort."""
    def ranks(v: np.ndarray) -> np.ndarray:
        below = (v[None, :] < v[:, None]).astype(np.float64)  # [i, j] = v_j < v_i
        same = (v[None, :] == v[:, None]).astype(np.float64)
        return w @ below.T + (w @ same.T + 1) / 2
    rx, ry = ranks(x), ranks(y)
    total = w.sum(1, keepdims=True)
    rx -= (w * rx).sum(1, keepdims=True) / total
    ry -= (w * ry).sum(1, keepdims=True) / total
    den = np.sqrt((w * rx * rx).sum(1) * (w * ry * ry).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, (w * rx * ry).sum(1) / np.where(den > 1e-12, den, 1), np.nan)


def kendall_weighted(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of the same weighted resamples as :func:`spearman_weighted`: with pair signs
    ``S[i, j] = sign(v_i − v_j)``, each sum over the resample's pairs is the quadratic form ``wᵀ S w``."""
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
    def form(m: np.ndarray) -> np.ndarray:
        return ((w @ m) * w).sum(1)
    den = np.sqrt(form(sx * sx) * form(sy * sy))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, form(sx * sy) / np.where(den > 0, den, 1), np.nan)


def _interval(samples: np.ndarray) -> tuple[float, float] | None:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0 or finite.size < 0.5 * samples.size:  # most resamples degenerate (constant): no honest interval
        return None
    alpha = (1 - CONFIDENCE) / 2
    lo, hi = np.quantile(finite, [alpha, 1 - alpha])
    return float(lo), float(hi)


def _finite(v: float) -> float | None:
    return None if not math.isfinite(v) else float(v)


def rank_correlation(score: np.ndarray, rate: np.ndarray, rng: np.random.Generator,
                     bootstrap: int = BOOTSTRAP) -> Correlation:
    """Spearman and Kendall between predicted ``score`` and outcome ``rate`` over creatives, with bootstrap 95 %
    intervals from ``bootstrap`` resamples of the creatives."""
    score, rate = np.asarray(score, np.float64), np.asarray(rate, np.float64)
    n = len(score)
    if n < 3:
        return Correlation(n, None, None, None, None)
    once = np.ones((1, n))
    rho = float(spearman_weighted(score, rate, once)[0])
    tau = float(kendall_weighted(score, rate, once)[0])
    if bootstrap == 0:  # point estimates only (large simulations)
        return Correlation(n, _finite(rho), None, _finite(tau), None)
    rhos, taus = _resampled(n, bootstrap, rng, lambda w: np.stack([spearman_weighted(score, rate, w),
                                                                   kendall_weighted(score, rate, w)]))
    return Correlation(n, _finite(rho), _interval(rhos) if math.isfinite(rho) else None,
                       _finite(tau), _interval(taus) if math.isfinite(tau) else None)


def pooled_rate_interval(numerators: np.ndarray, denominators: np.ndarray, rng: np.random.Generator,
                         bootstrap: int = BOOTSTRAP) -> tuple[float, tuple[float, float] | None]:
    """The pooled (denominator-weighted) rate ``Σ num / Σ den`` of a group of creatives, with a bootstrap 95 %
    interval over creatives (so differences between creatives, not just counting noise, widen it), widened where
    it is narrower than the Wilson interval of the pooled counts: resampling creatives that all have 0 clicks gives
    [0, 0], as if 0 were certain, and few clicks understate the counting noise the same way."""
    num, den = np.asarray(numerators, np.float64), np.asarray(denominators, np.float64)
    total_num, total_den = float(num.sum()), float(den.sum())
    rate = total_num / total_den
    if len(num) < 2 or bootstrap == 0:
        return rate, None
    ci = _interval(_resampled(len(num), bootstrap, rng, lambda w: (w @ num) / (w @ den)))
    if ci is None:
        return rate, None
    lo, hi = wilson_interval(total_num, total_den)
    return rate, (min(ci[0], lo), max(ci[1], hi))


def wilson_interval(successes: float, trials: float) -> tuple[float, float]:
    """Wilson's score 95 % interval of a binomial rate (``trials`` > 0): the counting noise alone."""
    z = float(ndtri(1 - (1 - CONFIDENCE) / 2))
    p, z2n = successes / trials, z * z / trials
    centre = (p + z2n / 2) / (1 + z2n)
    half = z * math.sqrt(max(p * (1 - p), 0.0) / trials + z2n / (4 * trials)) / (1 + z2n)
    return max(0.0, centre - half), min(1.0, centre + half)


def fisher_drop_test(r_ref: float, n_ref: int, r_new: float, n_new: int) -> tuple[float, float]:
    """One-sided test that Spearman's rho fell from a reference window to a recent one.

    Fisher's z of each rho, with the Bonett–Wright variance for Spearman ``(1 + r²/2) / (n − 3)``; the windows are
    treated as independent samples (creatives running in both make the test conservative).  Returns
    ``(z statistic, p value)``; a large z means the recent correlation is lower.
    """
    def var(r: float, n: int) -> float:
        return (1 + r * r / 2) / (n - 3)

    def z(r: float, n: int) -> float:
        # A rho of 1 (common among few creatives) has no finite z; clipped near 1 it made a fall from 1.00 to 0.99
        # on 12 creatives a near-certain drift. Ranks of n items cannot tell 1 from one swap of neighbours, the
        # largest rho below 1: that is where it is clipped.
        clip = 1 - 12 / (n * (n * n - 1))
        return math.atanh(max(-clip, min(clip, r)))

    stat = (z(r_ref, n_ref) - z(r_new, n_new)) / math.sqrt(var(r_ref, n_ref) + var(r_new, n_new))
    return stat, float(ndtr(-stat))  # not 1 - ndtr(stat): that rounds every p below 1e-16 to 0


def benjamini_hochberg(p_values: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p values (q values): reject where ``q ≤ α`` to keep the expected share of false
    alarms among the flags at α, across every test of one run."""
    p = np.asarray(p_values, np.float64)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(scaled[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out
