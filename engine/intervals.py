"""The paired comparisons the training studies report: a mean difference over the same images, with its interval."""
from __future__ import annotations

import numpy as np


def paired_interval(d: np.ndarray, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of the paired differences ``d`` and its 95 % percentile-bootstrap interval (images resampled, seeded):
    ``(mean, low, high)``."""
    boots = d[np.random.default_rng(seed).integers(0, len(d), (n_boot, len(d)))].mean(1)
    lo, hi = np.percentile(boots, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)
