"""A campaign simulator for calibration tests: outcomes that depend on a predicted score with a known strength.

Each segment launches creatives at a steady rate; each runs 14-42 days with its own daily reach (log-normal, so a
few creatives get most impressions, as in real campaigns).  A creative's click-through rate is
``base · exp(strength · z + noise)``: ``z`` is its standardised predicted CTA share, ``noise`` its unexplained
quality.  In a drifting segment the strength drops to ``drift_to`` from ``drift_day`` on.
"""
from __future__ import annotations

from datetime import date

import numpy as np

from foveal.calibration.analysis import Data

DAY0 = date(2024, 1, 1).toordinal()
SHARE_A, SHARE_B = 2.0, 18.0  # CTA shares ~ Beta(2, 18): mean 0.10, like a CTA box of a few % of the area


def simulate(segments: int, days: int, *, drifting: int = 0, drift_day: int | None = None, strength: float = 0.5,
             drift_to: float = 0.0, noise: float = 0.5, launches_per_day: float = 1.5, seed: int = 0) -> Data:
    """``segments`` segments (the first ``drifting`` of them drift at ``drift_day``) over days ``0..days-1``."""
    rng = np.random.default_rng(seed)
    first_launch = -40
    per_segment = rng.poisson(launches_per_day * (days - first_launch), size=segments)
    n = int(per_segment.sum())
    segment = np.repeat(np.arange(segments), per_segment)
    launch = rng.integers(first_launch, days, size=n)
    duration = rng.integers(14, 43, size=n)
    share = rng.beta(SHARE_A, SHARE_B, size=n)
    mean, sd = SHARE_A / (SHARE_A + SHARE_B), np.sqrt(SHARE_A * SHARE_B / ((SHARE_A + SHARE_B) ** 2 * 21))
    z = (share - mean) / sd
    quality = rng.normal(0, noise, size=n)
    base = rng.uniform(0.006, 0.02, size=segments)[segment]
    reach = np.exp(rng.normal(np.log(600), 1.0, size=n))
    # one row per creative-day in 0..days-1
    creative = np.repeat(np.arange(n), duration)
    day = launch[creative] + (np.arange(creative.size) - np.repeat(np.cumsum(duration) - duration, duration))
    keep = (day >= 0) & (day < days)
    creative, day = creative[keep], day[keep]
    beta = np.full(creative.size, strength)
    if drifting and drift_day is not None:
        beta[(segment[creative] < drifting) & (day >= drift_day)] = drift_to
    ctr = np.minimum(base[creative] * np.exp(beta * z[creative] + quality[creative]), 0.5)
    impressions = rng.poisson(reach[creative])
    clicks = rng.binomial(impressions, ctr)
    conversions = rng.binomial(clicks, 0.05)
    return Data(ids=[f"s{s}-c{i}" for i, s in enumerate(segment)],
                segments={(("vertical", f"seg{s:03d}"),): np.flatnonzero(segment == s) for s in range(segments)},
                scores={"cta_share": share}, formats=["1080x1080"] * n, creative=creative, day=DAY0 + day,
                counts={"impressions": impressions, "clicks": clicks, "conversions": conversions})
