"""Bootstrap rank correlations (Spearman + Kendall, 1000 resamples): foveal's matrix-product bootstrap vs the loop
a careful engineer writes with scipy, and vs a vectorised rankdata Spearman, on one segment-window of creatives.

Run: ``python -m pytest benchmarks/test_bench_calibration.py`` (NumPy's BLAS threads follow OMP_NUM_THREADS).
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import kendalltau, rankdata, spearmanr

from foveal.calibration.stats import rank_correlation

B = 1000


def _data(n: int):
    rng = np.random.default_rng(n)
    x = rng.beta(2, 18, n)
    return x, 0.01 * np.exp(3 * x + rng.normal(0, 0.5, n))


def scipy_loop(x, y, rng):
    idx = rng.integers(0, len(x), size=(B, len(x)))
    rho = [spearmanr(x[i], y[i]).statistic for i in idx]
    tau = [kendalltau(x[i], y[i]).statistic for i in idx]
    return np.quantile(rho, [0.025, 0.975]), np.quantile(tau, [0.025, 0.975])


def rankdata_spearman_only(x, y, rng):
    idx = rng.integers(0, len(x), size=(B, len(x)))
    rx, ry = rankdata(x[idx], axis=1), rankdata(y[idx], axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    rho = (rx * ry).sum(1) / np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    return np.quantile(rho, [0.025, 0.975])


@pytest.mark.parametrize("n", [40, 150, 500])
def test_bootstrap_scipy_loop(record, n):
    x, y = _data(n)
    record(f"bootstrap n={n}", "scipy loop (rho+tau)", scipy_loop, x, y, np.random.default_rng(0), baseline=True)


@pytest.mark.parametrize("n", [40, 150, 500])
def test_bootstrap_rankdata_spearman(record, n):
    x, y = _data(n)
    record(f"bootstrap n={n}", "rankdata (rho only)", rankdata_spearman_only, x, y, np.random.default_rng(0))


@pytest.mark.parametrize("n", [40, 150, 500])
def test_bootstrap_foveal(record, n):
    x, y = _data(n)
    record(f"bootstrap n={n}", "foveal (rho+tau)", rank_correlation, x, y, np.random.default_rng(0))
