"""Saliency benchmark metrics with the MIT/Tübingen definitions, in pure NumPy.

Definitions follow Bylinskii, Judd, Oliva, Torralba, Durand, "What do different evaluation metrics tell us about
saliency models?" (TPAMI 2019) and Kümmerer, Wallis, Bethge, "Saliency benchmarking made easy: separating models,
maps and metrics" (ECCV 2018), as implemented by pysaliency (the Tübingen reference code); information gain is
that of Kümmerer, Wallis, Bethge, "Information-theoretic model comparison unifies saliency metrics" (PNAS 2015).

Conventions, stated once:

* Maps are H×W arrays indexed ``[y, x]``; any finite real values for AUC, NSS and CC; non-negative for KLD,
  SIM and IG, which renormalise them to sum 1.
* Fixations are 0-based float pixel coordinates: pixel ``(row, col)`` covers ``[col, col+1) × [row, row+1)``, so a
  fixation counts at ``(floor(y), floor(x))`` (pysaliency's ``x_int``).  Coordinates less than one pixel outside
  the image (rounding in the recorded data) are clipped onto its border; farther ones are an error.
* KLD and IG use the regulariser ``EPS = 2.2204e-16`` (MATLAB's ``eps`` as MATLAB prints it, and pysaliency's):
  ``KLD = Σ q log(EPS + q / (p + EPS))`` and ``IG = mean log2(EPS + p) - log2(EPS + b)``, p, q, b renormalised.
* Per-image metrics average over that image's fixations; :mod:`foveal.evaluate` averages images.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import InputError, is_list_like, real_number

__all__ = ["EPS", "METRICS", "CENTRE_BIAS", "off_image", "pixel_indices", "auc", "auc_judd", "auc_borji",
           "auc_shuffled", "nss", "cc", "kld", "sim", "information_gains", "information_gain", "centre_bias_log_density",
           "gaussian_blur", "metric_map"]

EPS = 2.2204e-16
#: Largest centre-bias map made (foveal's own image limit): 10^12 pixels asked for 7 TiB.
MAX_PIXELS = 100_000_000
#: Most draws auc_borji takes (each draw is one value per fixation).
MAX_SPLITS = 10_000
#: Draws auc_borji holds in memory at once (about 64 MB in each of its arrays).
DRAWS_PER_BLOCK = 1 << 23
METRICS = ("AUC-Judd", "AUC-Borji", "sAUC", "NSS", "CC", "KLD", "SIM", "IG")

# Centre-bias baseline: an axis-aligned Gaussian in coordinates normalised by the image's width and height
# (u = (x + 0.5) / W, v = (y + 0.5) / H), renormalised over the image's pixels.  Fitted by maximum likelihood
# (scipy.optimize Nelder-Mead on the Gaussian truncated to the unit square) to all 113,928 fixations of the TRAIN
# splits of OSIE (560 images) and NUS Scene (400 images) as loaded by foveal.datasets; val and test were not used.
# A uniform mixture component was fitted too and its weight went to 0, so it is left out.  The fit gains 0.60
# bits per fixation over a uniform map on those training fixations.
CENTRE_BIAS = {"mean": (0.5113, 0.4821), "sigma": (0.2375, 0.1949)}


def _map(saliency_map: np.ndarray, name: str = "saliency_map") -> np.ndarray:
    try:
        if np.iscomplexobj(saliency_map):  # a cast would drop the imaginary parts with only a warning
            raise TypeError
        s = np.asarray(saliency_map, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an H×W array of numbers, got {type(saliency_map).__name__}") from None
    if s.ndim != 2 or s.size == 0:
        raise InputError(f"{name} must be a non-empty H×W array, got shape {s.shape}")
    if not np.isfinite(s).all():
        raise InputError(f"{name} contains NaN or infinite values; a saliency map must be finite")
    return s


def _scores(values: Any, name: str) -> np.ndarray:
    """``values`` as a flat float64 array of real numbers, else InputError (text such as "1" was parsed, not
    refused; a dict or complex numbers raised TypeError)."""
    array = np.asarray(values) if not isinstance(values, (str, bytes, Mapping)) else None
    if array is None or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool) \
            or np.issubdtype(array.dtype, np.complexfloating):
        raise InputError(f"auc: {name} must be an array of real numbers, got {type(values).__name__}")
    return array.astype(np.float64).reshape(-1)


def _shape(shape: Any, name: str) -> tuple[int, int]:
    """``shape`` as (H, W) of whole numbers >= 1, else InputError (a -1 index would read the last pixel)."""
    if (not is_list_like(shape) or not hasattr(shape, "__len__") or len(shape) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in shape)):
        raise InputError(f"{name} must be (H, W) with whole numbers H, W >= 1, got {shape!r}")
    return int(shape[0]), int(shape[1])


def _eps(eps: Any) -> float:
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not (math.isfinite(eps) and eps >= 0):
        raise InputError(f"eps must be a finite number >= 0, got {eps!r}")
    return float(eps)


def _distribution(values: np.ndarray, name: str) -> np.ndarray:
    p = _map(values, name)
    if (p < 0).any():
        raise InputError(f"{name} has negative values (min {p.min():g}); KLD, SIM and IG need a non-negative map")
    top = p.max()
    if not top > 0:
        raise InputError(f"{name} sums to 0; KLD, SIM and IG need a map with some positive mass")
    p = p / top  # the sum of a map of values near 1e308 overflows to inf, which would zero every pixel
    return p / p.sum()


def _unit(s: np.ndarray) -> np.ndarray:
    """``s`` divided by its largest magnitude: squared values beyond ~1e154 overflow and below ~1e-154 underflow,
    which turned the std of such a map into inf or 0 (NSS 0 or NaN, CC 0 or inf) though both metrics are
    scale-invariant."""
    return s / np.abs(s).max()


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise InputError(f"{name_a} and {name_b} must have one shape, got {a.shape} and {b.shape}")


def off_image(x: np.ndarray, y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Which fixations no metric takes on an image of ``shape`` (H, W): not finite, or a pixel or more outside it
    (those less than a pixel outside are rounding in the recorded data, clipped onto the border)."""
    h, w = shape
    return ~(np.isfinite(x) & np.isfinite(y)) | (x <= -1) | (x >= w + 1) | (y <= -1) | (y >= h + 1)


def pixel_indices(xs: np.ndarray, ys: np.ndarray, shape: tuple[int, int],
                  name: str = "fixations") -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices ``(floor(y), floor(x))`` of fixations in an image of ``shape`` (H, W).

    Raises InputError for unequal lengths, no fixations, non-finite values, or points a pixel or more outside the
    image's ``[0, W) x [0, H)``; those less than a pixel outside are clipped onto its border.
    """
    try:
        x = np.asarray(xs, dtype=np.float64).reshape(-1)
        y = np.asarray(ys, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"{name}: x and y must be sequences of numbers") from None
    h, w = _shape(shape, "shape")
    if x.shape != y.shape:
        raise InputError(f"{name}: x and y must have one length, got {x.size} and {y.size}")
    if x.size == 0:
        raise InputError(f"{name}: no fixations; fixation-based metrics need at least one")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InputError(f"{name}: coordinates must be finite")
    outside = off_image(x, y, (h, w))
    if outside.any():
        k = int(np.argmax(outside))
        raise InputError(f"{name}: fixation {k} at ({x[k]:g}, {y[k]:g}) lies outside the {w}x{h} image; "
                         f"coordinates must be 0-based pixels of the image they belong to")
    col = np.clip(np.floor(x), 0, w - 1).astype(np.intp)
    row = np.clip(np.floor(y), 0, h - 1).astype(np.intp)
    return row, col


def auc(positives: np.ndarray, negatives: np.ndarray) -> float:
    """Area under the ROC curve of ``positives`` against ``negatives`` over every threshold.

    Equals P(positive > negative) + ½ P(positive = negative) (Mann-Whitney U / (n_pos n_neg)), which is what
    the trapezoidal ROC over all distinct values gives (pysaliency ``general_roc`` with ``judd=0``).
    """
    pos = _scores(positives, "positives")
    neg = np.sort(_scores(negatives, "negatives"))
    if pos.size == 0 or neg.size == 0:
        raise InputError(f"auc needs positives and negatives, got {pos.size} and {neg.size}")
    if np.isnan(pos).any() or np.isnan(neg).any():  # NaN sorts last: it would win or lose every comparison
        raise InputError("auc: positives and negatives must not be NaN; a NaN score has no rank")
    below = np.searchsorted(neg, pos, side="left")
    not_above = np.searchsorted(neg, pos, side="right")
    return float((below + not_above).sum() / (2.0 * pos.size * neg.size))


def auc_judd(saliency_map: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> float:
    """AUC-Judd: the ROC of fixated pixels against every unfixated pixel, thresholded at fixated values only.

    Positives are the map's values at each fixation (repeats count); negatives are the pixels no fixation hit.
    Ties need no jitter: every pixel equal to a threshold lies above it, so a constant map scores exactly 0.5.
    """
    s = _map(saliency_map)
    row, col = pixel_indices(xs, ys, s.shape)
    fixated = np.zeros(s.shape, dtype=bool)
    fixated[row, col] = True
    if fixated.all():
        raise InputError("auc_judd: every pixel is fixated, so there are no negatives to rank against")
    pos = np.sort(s[row, col])
    neg = np.sort(s[~fixated])
    thresholds = np.unique(pos)[::-1]
    tpr = (pos.size - np.searchsorted(pos, thresholds, side="left")) / pos.size
    fpr = (neg.size - np.searchsorted(neg, thresholds, side="left")) / neg.size
    tpr = np.concatenate(([0.0], tpr, [1.0]))
    fpr = np.concatenate(([0.0], fpr, [1.0]))
    return float(np.trapezoid(tpr, fpr))


def auc_borji(saliency_map: np.ndarray, xs: np.ndarray, ys: np.ndarray, n_splits: int = 100,
              rng: np.random.Generator | int | None = 0) -> float:
    """AUC-Borji: fixated values against as many uniformly drawn pixels, averaged over ``n_splits`` draws.

    Each draw is scored over every threshold (:func:`auc`) rather than the MIT code's 0.1 steps, so the
    expectation is the AUC against all pixels.  ``rng`` (a Generator or a seed) makes the draws reproducible.
    """
    s = _map(saliency_map)
    row, col = pixel_indices(xs, ys, s.shape)
    if not (isinstance(n_splits, (int, np.integer)) and not isinstance(n_splits, bool)
            and 1 <= n_splits <= MAX_SPLITS):
        raise InputError(f"auc_borji: n_splits must be a whole number from 1 to {MAX_SPLITS:,} (the MIT code draws "
                         f"100), got {n_splits!r}")
    if not (rng is None or isinstance(rng, np.random.Generator)
            or (isinstance(rng, (int, np.integer)) and not isinstance(rng, bool) and rng >= 0)):
        raise InputError(f"auc_borji: rng must be a numpy Generator, a whole-number seed >= 0 or None, got {rng!r}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    pos = np.sort(s[row, col])
    wins = np.empty(n_splits)
    # Splits drawn a block at a time, so memory stays bounded however many fixations and splits (one block, and so
    # the same draws as one call, up to DRAWS_PER_BLOCK of them).
    step = max(1, DRAWS_PER_BLOCK // pos.size)
    for start in range(0, n_splits, step):
        neg = s.reshape(-1)[gen.integers(0, s.size, size=(min(step, n_splits - start), pos.size))]
        # Per split: the share of (positive, negative) pairs the positive wins, ties counting a half.
        above = pos.size - np.searchsorted(pos, neg, side="right")
        not_below = pos.size - np.searchsorted(pos, neg, side="left")
        wins[start:start + len(neg)] = (above + not_below).sum(axis=1) / (2.0 * pos.size * pos.size)
    return float(wins.mean())


def auc_shuffled(saliency_map: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                 other_xs: np.ndarray, other_ys: np.ndarray) -> float:
    """Shuffled AUC: fixated values against the values at other images' fixations (the dataset's centre bias).

    ``other_xs``/``other_ys`` are those fixations already mapped into this image's pixel coordinates
    (pysaliency scales each by the ratio of image sizes).
    """
    s = _map(saliency_map)
    row, col = pixel_indices(xs, ys, s.shape)
    orow, ocol = pixel_indices(other_xs, other_ys, s.shape, name="other fixations")
    return auc(s[row, col], s[orow, ocol])


def nss(saliency_map: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> float:
    """Normalised scanpath saliency: mean of the standardised map (population std) at the fixations.

    A constant map scores 0.
    """
    s = _map(saliency_map)
    row, col = pixel_indices(xs, ys, s.shape)
    # Constancy is tested exactly: the std of a constant map computed in floating point can be ~1e-17, not 0.
    if s.max() == s.min():
        return 0.0
    s = _unit(s)
    return float(((s[row, col] - s.mean()) / s.std()).mean())


def cc(saliency_map: np.ndarray, density: np.ndarray) -> float:
    """Pearson correlation between the map and the fixation density map.

    A constant map against a varying density scores 0; two constant maps score 1 (they are identical).
    """
    a = _map(saliency_map)
    b = _map(density, "density")
    _same_shape(a, b, "saliency_map", "density")
    constant_a, constant_b = a.max() == a.min(), b.max() == b.min()
    if constant_a or constant_b:
        return 1.0 if constant_a and constant_b else 0.0
    a = _unit(a)
    b = _unit(b)
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def kld(saliency_map: np.ndarray, density: np.ndarray, eps: float = EPS) -> float:
    """KL divergence (nats) of the predicted map from the fixation density: ``Σ q log(eps + q / (p + eps))``.

    Both maps are renormalised to sum 1; lower is better, 0 for a perfect prediction.
    """
    eps = _eps(eps)
    p = _distribution(saliency_map, "saliency_map")
    q = _distribution(density, "density")
    _same_shape(p, q, "saliency_map", "density")
    return float((q * np.log(eps + q / (p + eps))).sum())


def sim(saliency_map: np.ndarray, density: np.ndarray) -> float:
    """Similarity (histogram intersection): ``Σ min(p, q)`` of the maps renormalised to sum 1; 1 when equal.

    The maps are not shifted to a zero minimum first (pysaliency), unlike the MIT code's range normalisation.
    """
    p = _distribution(saliency_map, "saliency_map")
    q = _distribution(density, "density")
    _same_shape(p, q, "saliency_map", "density")
    return float(np.minimum(p, q).sum())


def information_gains(saliency_map: np.ndarray, baseline_log_density: np.ndarray, xs: np.ndarray,
                      ys: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Information gain of each fixation in bits over a baseline: ``log2(eps + p) - log2(eps + b)``.

    ``saliency_map`` is a probability map (renormalised); ``baseline_log_density`` is a natural-log density over
    the same pixels (renormalised, so any additive constant is fine), e.g. :func:`centre_bias_log_density`.
    """
    eps = _eps(eps)
    p = _distribution(saliency_map, "saliency_map")
    logb = _map(baseline_log_density, "baseline_log_density")
    _same_shape(p, logb, "saliency_map", "baseline_log_density")
    b = np.exp(logb - logb.max())
    b /= b.sum()
    row, col = pixel_indices(xs, ys, p.shape)
    return np.log2(eps + p[row, col]) - np.log2(eps + b[row, col])


def information_gain(saliency_map: np.ndarray, baseline_log_density: np.ndarray, xs: np.ndarray,
                     ys: np.ndarray, eps: float = EPS) -> float:
    """Mean :func:`information_gains` over the fixations: bits per fixation the map gains over the baseline."""
    return float(information_gains(saliency_map, baseline_log_density, xs, ys, eps).mean())


def centre_bias_log_density(shape: tuple[int, int]) -> np.ndarray:
    """The fitted centre-bias baseline (:data:`CENTRE_BIAS`) as an H×W natural-log density summing to 1."""
    h, w = _shape(shape, "centre_bias_log_density: shape")
    if h * w > MAX_PIXELS:
        raise InputError(f"centre_bias_log_density: shape {shape} is {h * w:,} pixels, over {MAX_PIXELS:,}")
    (mx, my), (sx, sy) = CENTRE_BIAS["mean"], CENTRE_BIAS["sigma"]
    u = (np.arange(w) + 0.5) / w
    v = (np.arange(h) + 0.5) / h
    log_gauss = -0.5 * ((v[:, None] - my) / sy) ** 2 - 0.5 * ((u[None, :] - mx) / sx) ** 2
    return log_gauss - np.log(np.exp(log_gauss).sum())


def gaussian_blur(density: np.ndarray, sigma: float, truncate: float = 8.0) -> np.ndarray:
    """``density`` convolved with an isotropic Gaussian of ``sigma`` pixels, zero outside the image, summing to 1.

    The same kernel and border as the datasets' fixation density maps (a Gaussian per fixation evaluated at
    pixel centres, mass falling outside the image lost, then renormalised), so blurring a predicted density
    gives the density map its fixations are expected to produce.  Separable, through real FFTs; the kernel stops
    at ``truncate`` sigmas (at 8, the tail left out is below 1e-15 of its mass; at 5 it moved CC, KLD and SIM by
    up to 1e-6).
    """
    p = _distribution(density, "density")
    for name, value in (("sigma", sigma), ("truncate", truncate)):
        number = real_number(value)
        if number is None or not 0 <= number < math.inf:
            raise InputError(f"gaussian_blur: {name} must be a finite number >= 0, got {value!r}")
    sigma, truncate = float(sigma), float(truncate)
    if sigma == 0:
        return p
    for axis in (0, 1):
        n = p.shape[axis]
        reach = truncate * sigma  # inf for a sigma near float's limit: int() of it raised OverflowError
        r = n - 1 if reach >= n - 1 else int(np.ceil(reach))
        taps = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
        size = _fast_length(n + 2 * r)
        spectrum = np.fft.rfft(p, size, axis=axis) * np.expand_dims(np.fft.rfft(taps, size), 1 - axis)
        # The linear convolution has n + 2r samples (zeros beyond); sample k + r is centred on input pixel k.
        p = np.take(np.fft.irfft(spectrum, size, axis=axis), np.arange(r, r + n), axis=axis)
    p = np.maximum(p, 0.0)  # FFT round-off leaves ~1e-17 negatives far from any mass
    return p / p.sum()


def metric_map(metric: str, density: np.ndarray, sigma: float) -> np.ndarray:
    """The saliency map of a predicted fixation ``density`` that ``metric`` should score (Kümmerer et al. 2018).

    AUC-Judd, AUC-Borji, NSS and IG: the density itself.  sAUC, whose negatives are other images' fixations
    (centre-biased): the log ratio of the density to the centre-bias baseline.  CC, KLD and SIM, which compare
    with a density map blurred by ``sigma`` pixels: the density blurred the same way, the expected density map.
    For SIM this is the usual approximation; its exact optimum has no closed form (pysaliency optimises it).
    """
    if metric not in METRICS:
        raise InputError(f"unknown metric {metric!r}; choose from {', '.join(METRICS)}")
    if metric in ("CC", "KLD", "SIM"):
        return gaussian_blur(density, sigma)
    if metric == "sAUC":
        p = _distribution(density, "density")
        # No EPS inside the log (it would tilt the ratio where p is tiny), only a floor for p == 0; rounded to
        # 1e-9 nats, as exp/log round-off would otherwise rank a flat ratio (the centre bias over itself) at
        # random instead of as ties.
        logp = np.log(np.maximum(p, np.finfo(np.float64).tiny))
        return np.round(logp - centre_bias_log_density(p.shape), 9)
    return _map(density, "density")


def _fast_length(n: int) -> int:
    """The smallest m >= n with no prime factor above 5: pocketfft is several times slower on other lengths."""
    while True:
        m = n
        for f in (2, 3, 5):
            while m % f == 0:
                m //= f
        if m == 1:
            return n
        n += 1
