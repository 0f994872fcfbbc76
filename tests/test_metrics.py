"""foveal.metrics against hand-computed cases, metric properties, and pysaliency (the Tübingen reference code)."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from foveal import metrics as M
from foveal.errors import InputError

with warnings.catch_warnings():
    # pysaliency 0.2.22 imports pkg_resources (needs setuptools < 81), which warns on import.
    warnings.filterwarnings("ignore", "pkg_resources is deprecated", UserWarning)
    import pysaliency
    import pysaliency.metrics as pm
    from pysaliency.roc import general_roc


@pytest.fixture
def pysal(monkeypatch):
    """pysaliency 0.2.22 calls np.trapz, which NumPy 2.4 removed; hand it the renamed function for the test."""
    monkeypatch.setattr(np, "trapz", np.trapezoid, raising=False)
    return pysaliency


class _Map(pysaliency.SaliencyMapModel):
    """A pysaliency model that returns fixed maps, one per stimulus index."""

    def __init__(self, maps):
        super().__init__(caching=False)
        self._by_shape = {m.shape: m for m in maps}

    def _saliency_map(self, stimulus):
        return self._by_shape[stimulus.shape[:2]]


class _LogDensity(pysaliency.Model):
    def __init__(self, log_density):
        super().__init__(caching=False)
        self._log_density_map = log_density

    def _log_density(self, stimulus):
        return self._log_density_map


def _stimuli(*maps):
    return pysaliency.Stimuli([np.zeros(m.shape + (3,), np.uint8) for m in maps])


def _random_case(seed, shape=(23, 31), n_fix=40, quantise=False):
    rng = np.random.default_rng(seed)
    h, w = shape
    s = rng.random(shape)
    if quantise:  # many ties, the case where ROC conventions differ
        s = np.round(s * 4)
    xs = rng.uniform(0, w, n_fix)
    ys = rng.uniform(0, h, n_fix)
    return s, xs, ys


def _structured_case(seed, shape=(30, 40), n_fix=60):
    """A Gaussian-blob map and fixations drawn around the blob (what real predictions look like)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    s = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (0.15 * w) ** 2)) + 0.05 * rng.random(shape)
    xs = np.clip(rng.normal(cx, 0.2 * w, n_fix), 0, w - 1e-6)
    ys = np.clip(rng.normal(cy, 0.2 * h, n_fix), 0, h - 1e-6)
    return s, xs, ys


def _density(seed, shape):
    rng = np.random.default_rng(seed)
    d = rng.random(shape) ** 3
    return d / d.sum()


CASES = [("random", s, False) for s in range(3)] + [("ties", s, True) for s in range(3)] + \
        [("structured", s, None) for s in range(3)]


def _case(kind, seed, quantise):
    return _structured_case(seed) if kind == "structured" else _random_case(seed, quantise=quantise)


# --- hand-computed 3x3 cases ---------------------------------------------------------------------------------

VALUES = np.arange(1.0, 10.0).reshape(3, 3)  # 1..9 row by row
FIX_X, FIX_Y = np.array([2.3, 1.0]), np.array([2.7, 1.9])  # pixels (2, 2) = 9 and (1, 1) = 5


def test_auc_judd_by_hand():
    # Thresholds 9 and 5: (fpr, tpr) = (0, 1/2) then (3/7, 1) (unfixated 6, 7, 8 are >= 5), then (1, 1).
    assert M.auc_judd(VALUES, FIX_X, FIX_Y) == pytest.approx(25 / 28, abs=1e-15)


def test_nss_by_hand():
    # mean 5, population std sqrt(60/9); standardised values 4/std and 0.
    assert M.nss(VALUES, FIX_X, FIX_Y) == pytest.approx(2 / math.sqrt(60 / 9), abs=1e-15)


def test_cc_by_hand():
    centre = np.zeros((3, 3))
    centre[1, 1] = 1
    corner = np.zeros((3, 3))
    corner[0, 0] = 1
    # cov = 0 - 9 (1/9)^2 = -1/9, var = 1 - 1/9 = 8/9 for both.
    assert M.cc(centre, corner) == pytest.approx(-1 / 8, abs=1e-15)
    assert M.cc(VALUES, VALUES[::-1, ::-1]) == pytest.approx(-1.0, abs=1e-15)


def test_kld_sim_ig_by_hand():
    uniform = np.full((3, 3), 1 / 9)
    two = np.zeros((3, 3))
    two[0, 0] = two[2, 1] = 0.5
    assert M.kld(uniform, two) == pytest.approx(math.log(4.5), abs=1e-12)
    # Mass the prediction misses entirely costs log(q / eps) per pixel: 7 such pixels of q = 1/9.
    eps = M.EPS
    expected = 2 / 9 * math.log(eps + (1 / 9) / (0.5 + eps)) + 7 / 9 * math.log(eps + (1 / 9) / eps)
    assert M.kld(two, uniform) == pytest.approx(expected, rel=1e-12)
    assert M.sim(uniform, two) == pytest.approx(2 / 9, abs=1e-15)
    assert M.information_gain(two, np.log(uniform), [0.5, 1.5], [0.5, 2.5]) == pytest.approx(math.log2(4.5), 1e-12)
    # A fixation where the map has zero mass costs log2(eps * 9) bits: the MIT regulariser keeps it finite.
    ig = M.information_gains(two, np.log(uniform), [2.5], [2.5])
    assert ig[0] == pytest.approx(math.log2(M.EPS) - math.log2(M.EPS + 1 / 9), rel=1e-12)


def test_auc_by_hand_counts_ties_half():
    assert M.auc([3.0, 1.0], [1.0, 2.0]) == pytest.approx((2 + 0.5 + 0) / 4)


def test_fixation_pixels_floor_and_clip():
    row, col = M.pixel_indices(np.array([0.0, 0.999, 2.999, -0.4, 3.2]), np.array([0.0, 1.5, 1.0, 0.2, 1.0]), (2, 3))
    assert col.tolist() == [0, 0, 2, 0, 2]
    assert row.tolist() == [0, 1, 1, 0, 1]


# --- a 4x4 map against plain-loop references written from the published definitions ------------------------

MAP4 = np.arange(16.0).reshape(4, 4)  # value 4 * row + col
# Pixels (3, 3) = 15 twice (a repeat), (0, 0) = 0 on the border and (1, 2) = 6.
FIX4_X, FIX4_Y = np.array([3.5, 3.99, 0.0, 2.9]), np.array([3.1, 3.5, 0.0, 1.5])
DENS4 = np.abs(np.cos(np.arange(16.0))).reshape(4, 4)


def _loop_refs(s, xs, ys, d):
    """AUC-Judd, NSS, CC, KLD, SIM, IG (uniform baseline) as loops over pixels, MIT/pysaliency conventions."""
    h, w = s.shape
    fixated = [(int(y), int(x)) for x, y in zip(xs, ys)]
    pos = [s[p] for p in fixated]
    neg = [s[r, c] for r in range(h) for c in range(w) if (r, c) not in fixated]
    roc = [(0.0, 0.0)] + [(sum(v >= t for v in neg) / len(neg), sum(v >= t for v in pos) / len(pos))
                          for t in sorted(set(pos), reverse=True)] + [(1.0, 1.0)]
    judd = sum((f1 - f0) * (t0 + t1) / 2 for (f0, t0), (f1, t1) in zip(roc, roc[1:]))
    vals = s.ravel().tolist()
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    nss = sum((v - mean) / std for v in pos) / len(pos)
    dv = d.ravel().tolist()
    dm = sum(dv) / len(dv)
    cc = sum((a - mean) * (b - dm) for a, b in zip(vals, dv)) / math.sqrt(
        sum((a - mean) ** 2 for a in vals) * sum((b - dm) ** 2 for b in dv))
    p = [v / sum(vals) for v in vals]
    q = [v / sum(dv) for v in dv]
    kld = sum(b * math.log(M.EPS + b / (a + M.EPS)) for a, b in zip(p, q))
    sim = sum(min(a, b) for a, b in zip(p, q))
    ig = sum(math.log2(M.EPS + p[r * w + c]) - math.log2(M.EPS + 1 / (h * w)) for r, c in fixated) / len(fixated)
    return {"AUC-Judd": judd, "NSS": nss, "CC": cc, "KLD": kld, "SIM": sim, "IG": ig}


def _foveal_values(s, xs, ys, d):
    return {"AUC-Judd": M.auc_judd(s, xs, ys), "NSS": M.nss(s, xs, ys), "CC": M.cc(s, d), "KLD": M.kld(s, d),
            "SIM": M.sim(s, d), "IG": M.information_gain(s, np.zeros(s.shape), xs, ys)}


def test_4x4_by_hand_and_against_loops():
    # Thresholds 15, 6, 0; the 13 unfixated pixels hold 1-5 and 7-14, 8 of them >= 6.
    by_hand = 0.5 * 8 / 13 * (2 / 4 + 3 / 4) + 0.5 * 5 / 13 * (3 / 4 + 1)  # trapezoids (0, 2/4)-(8/13, 3/4)-(1, 1)
    assert M.auc_judd(MAP4, FIX4_X, FIX4_Y) == pytest.approx(by_hand, abs=1e-15)
    expected = _loop_refs(MAP4, FIX4_X, FIX4_Y, DENS4)
    for name, value in _foveal_values(MAP4, FIX4_X, FIX4_Y, DENS4).items():
        assert value == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name


@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e170, 1e300])
def test_metrics_do_not_depend_on_the_map_magnitude(scale):
    """Squares of values beyond ~1e154 overflow and below ~1e-154 underflow; neither may change a score."""
    expected = _loop_refs(MAP4, FIX4_X, FIX4_Y, DENS4)
    for name, value in _foveal_values(MAP4 * scale, FIX4_X, FIX4_Y, DENS4).items():
        assert value == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name
    assert M.cc(MAP4, DENS4 * scale) == pytest.approx(expected["CC"], rel=1e-12)
    assert M.kld(MAP4, DENS4 * scale) == pytest.approx(expected["KLD"], rel=1e-12)
    np.testing.assert_allclose(M.gaussian_blur(MAP4 * scale, 1.0), M.gaussian_blur(MAP4, 1.0), rtol=1e-12)


# --- properties ------------------------------------------------------------------------------------------------

# Integer-valued maps: an affine rescale then keeps every order and tie exactly, which the AUC check relies on.
maps = arrays(np.float64, st.tuples(st.integers(2, 12), st.integers(2, 12)), elements=st.integers(0, 1000).map(float))


@settings(max_examples=40, deadline=None)
@given(maps, st.floats(0.01, 100), st.floats(-100, 100), st.integers(0, 2**32 - 1))
def test_properties(s, scale, shift, seed):
    rng = np.random.default_rng(seed)
    h, w = s.shape
    xs, ys = rng.uniform(0, w, 5), rng.uniform(0, h, 5)
    assert M.nss(scale * s + shift, xs, ys) == pytest.approx(M.nss(s, xs, ys), abs=1e-6)
    if not _fixes_every_pixel(xs, ys, s.shape):
        assert M.auc_judd(scale * s + shift, xs, ys) == pytest.approx(M.auc_judd(s, xs, ys), abs=1e-12)
    if s.std() > 0:
        assert M.cc(s, s) == pytest.approx(1.0, abs=1e-9)
        assert M.cc(s, scale * s + shift) == pytest.approx(1.0, abs=1e-6)
    if s.sum() > 0:
        assert M.kld(s, s) == pytest.approx(0.0, abs=1e-9)
        assert M.sim(s, s) == pytest.approx(1.0, abs=1e-12)
        assert 0.0 <= M.sim(s, rng.random(s.shape)) <= 1.0 + 1e-12


def _fixes_every_pixel(xs, ys, shape):
    row, col = M.pixel_indices(xs, ys, shape)
    return len(set(zip(row.tolist(), col.tolist()))) == shape[0] * shape[1]


def test_perfect_and_constant_maps():
    rng = np.random.default_rng(1)
    h, w = 20, 30
    xs, ys = rng.uniform(0, w, 15), rng.uniform(0, h, 15)
    others_x, others_y = rng.uniform(0, w, 50), rng.uniform(0, h, 50)
    row, col = M.pixel_indices(xs, ys, (h, w))
    perfect = np.zeros((h, w))
    perfect[row, col] = 1.0
    keep = perfect[M.pixel_indices(others_x, others_y, (h, w))] == 0
    assert M.auc_judd(perfect, xs, ys) == 1.0
    assert M.auc_shuffled(perfect, xs, ys, others_x[keep], others_y[keep]) == 1.0
    constant = np.full((h, w), 0.3)
    assert M.auc_judd(constant, xs, ys) == 0.5
    assert M.auc_borji(constant, xs, ys) == 0.5
    assert M.auc_shuffled(constant, xs, ys, others_x, others_y) == 0.5
    assert M.nss(constant, xs, ys) == 0.0
    assert M.cc(constant, perfect) == 0.0
    assert M.information_gain(constant, np.zeros((h, w)), xs, ys) == pytest.approx(0.0, abs=1e-12)


def test_auc_borji_is_seeded():
    s, xs, ys = _random_case(0)
    assert M.auc_borji(s, xs, ys, rng=7) == M.auc_borji(s, xs, ys, rng=np.random.default_rng(7))
    assert M.auc_borji(s, xs, ys, rng=7) != M.auc_borji(s, xs, ys, rng=8)


# --- against pysaliency --------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,seed,quantise", CASES)
def test_map_metrics_match_pysaliency(kind, seed, quantise, pysal):
    s, xs, ys = _case(kind, seed, quantise)
    d = _density(seed + 100, s.shape)
    ix, iy = xs.astype(int), ys.astype(int)
    assert M.nss(s, xs, ys) == pytest.approx(pm.NSS(s, ix, iy).mean(), rel=1e-12, abs=1e-12)
    assert M.cc(s, d) == pytest.approx(pm.CC(s, d), rel=1e-12, abs=1e-12)
    assert M.sim(s, d) == pytest.approx(pm.SIM(s, d), rel=1e-12)
    with np.errstate(divide="ignore"):  # pysaliency takes log(0) of zero pixels before regularising
        expected_kld = pm.MIT_KLDiv(s, d)
    assert M.kld(s, d) == pytest.approx(expected_kld, rel=1e-12)


@pytest.mark.parametrize("kind,seed,quantise", CASES)
def test_aucs_match_pysaliency(kind, seed, quantise, pysal):
    s, xs, ys = _case(kind, seed, quantise)
    stimuli = _stimuli(s)
    fix = pysal.Fixations.create_without_history(xs, ys, np.zeros(xs.size, int))
    model = _Map([s])
    assert M.auc_judd(s, xs, ys) == pytest.approx(model.AUC_Judd(stimuli, fix, jitter=False), abs=1e-12)
    uniform = model.AUC(stimuli, fix, nonfixations="uniform", average="image")
    assert M.auc(s[ys.astype(int), xs.astype(int)], s.ravel()) == pytest.approx(uniform, abs=1e-12)
    # AUC-Borji estimates the uniform AUC by sampling; 2000 splits of 40 draws put it within ~0.003.
    assert M.auc_borji(s, xs, ys, n_splits=2000, rng=seed) == pytest.approx(uniform, abs=0.01)


@pytest.mark.parametrize("seed", range(4))
def test_auc_matches_general_roc(seed):
    rng = np.random.default_rng(seed)
    pos = np.round(rng.normal(1, 1, 30), 1)
    neg = np.round(rng.normal(0, 1, 200), 1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(np, "trapz", np.trapezoid, raising=False)
        expected = general_roc(pos, neg, judd=0)[0]
    assert M.auc(pos, neg) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("quantise", [False, True])
def test_shuffled_auc_matches_pysaliency(quantise, pysal):
    shapes = [(20, 30), (24, 18), (15, 15)]
    cases = [_random_case(k, shape, 25, quantise) for k, shape in enumerate(shapes)]
    stimuli = _stimuli(*(c[0] for c in cases))
    xs = np.concatenate([c[1] for c in cases])
    ys = np.concatenate([c[2] for c in cases])
    ns = np.repeat(np.arange(len(cases)), [c[1].size for c in cases])
    fix = pysal.Fixations.create_without_history(xs, ys, ns)
    per_fixation = _Map([c[0] for c in cases]).AUCs(stimuli, fix, nonfixations="shuffled")
    for n, (s, x, y) in enumerate(cases):
        h, w = s.shape
        other = ns != n
        # Other images' fixations, scaled into this image as pysaliency does.
        ox = xs[other] * w / np.array([shapes[k][1] for k in ns[other]])
        oy = ys[other] * h / np.array([shapes[k][0] for k in ns[other]])
        assert M.auc_shuffled(s, x, y, ox, oy) == pytest.approx(per_fixation[ns == n].mean(), abs=1e-12)


@pytest.mark.parametrize("kind,seed,quantise", CASES)
def test_information_gain_matches_pysaliency(kind, seed, quantise, pysal):
    s, xs, ys = _case(kind, seed, quantise)
    p = (s + 0.01) / (s + 0.01).sum()  # strictly positive, so pysaliency's exact logs and our eps agree
    base = M.centre_bias_log_density(s.shape)
    fix = pysal.Fixations.create_without_history(xs, ys, np.zeros(xs.size, int))
    expected = _LogDensity(np.log(p)).information_gain(_stimuli(s), fix, baseline_model=_LogDensity(base))
    assert M.information_gain(p, base, xs, ys) == pytest.approx(expected, rel=1e-9)


# --- centre bias ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (600, 800), (37, 5)])
def test_centre_bias_is_a_log_density_peaking_near_the_middle(shape):
    logd = M.centre_bias_log_density(shape)
    assert logd.shape == shape
    assert np.exp(logd).sum() == pytest.approx(1.0, abs=1e-12)
    row, col = np.unravel_index(np.argmax(logd), shape)
    assert abs((row + 0.5) / shape[0] - M.CENTRE_BIAS["mean"][1]) <= 1 / shape[0]
    assert abs((col + 0.5) / shape[1] - M.CENTRE_BIAS["mean"][0]) <= 1 / shape[1]


# --- metric-specific maps (Kümmerer et al. 2018) ---------------------------------------------------------------

@pytest.mark.parametrize("shape, sigma", [((60, 80), 7.0), ((33, 20), 2.5), ((5, 200), 30.0)])
def test_blurred_delta_is_the_density_map_of_one_fixation(shape, sigma):
    from foveal.datasets import Fixations, gaussian_density

    y, x = shape[0] // 3, shape[1] - 4
    p = np.zeros(shape)
    p[y, x] = 1.0
    expected = gaussian_density(Fixations.from_arrays([x + 0.5], [y + 0.5]), shape, sigma)
    # The 5-sigma truncation leaves exp(-12.5) ~ 4e-6 of the Gaussian's peak out.
    np.testing.assert_allclose(M.gaussian_blur(p, sigma), expected, rtol=0, atol=4e-6 * expected.max())


@pytest.mark.parametrize("seed", range(3))
def test_gaussian_blur_matches_scipy(seed):
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(seed)
    p = rng.random((41, 57)) ** 6
    sigma = float(rng.uniform(0.5, 12))
    expected = ndimage.gaussian_filter(p / p.sum(), sigma, mode="constant", truncate=8.0)
    np.testing.assert_allclose(M.gaussian_blur(p, sigma), expected / expected.sum(), rtol=1e-9, atol=1e-15)


def test_gaussian_blur_of_a_fixation_is_the_datasets_density_of_it():
    # Its docstring's promise; cut off at 5 sigma the two differed by 1e-5 in KLD.
    from foveal.datasets import Fixations, gaussian_density

    delta = np.zeros((120, 160))
    delta[60, 80] = 1
    expected = gaussian_density(Fixations.from_arrays([80.5], [60.5]), (120, 160), 12.0)
    assert abs(M.kld(M.gaussian_blur(delta, 12.0), expected)) < 1e-10
    np.testing.assert_allclose(M.gaussian_blur(delta, 12.0), expected, rtol=1e-9, atol=1e-18)


def test_gaussian_blur_edges():
    p = np.random.default_rng(0).random((7, 9))
    np.testing.assert_allclose(M.gaussian_blur(p, 0.0), p / p.sum(), rtol=1e-15, atol=0)
    wide = M.gaussian_blur(p, 1e4)  # wider than the image: flat, no wrap-around
    assert wide.sum() == pytest.approx(1.0) and wide.min() >= 0 and np.ptp(wide) < 1e-3 * wide.max()
    # truncate x sigma past float's range raised OverflowError from int(inf)
    for sigma, truncate in ((1e308, 8.0), (2.0, 1e308)):
        np.testing.assert_allclose(M.gaussian_blur(p, sigma, truncate), M.gaussian_blur(p, 1e4, 8.0) if sigma > 2
                                   else M.gaussian_blur(p, 2.0, 1e4), rtol=1e-6)
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(InputError, match="sigma"):
            M.gaussian_blur(p, bad)


def test_metric_maps():
    rng = np.random.default_rng(1)
    p = rng.random((30, 40))
    for name in ("AUC-Judd", "AUC-Borji", "NSS", "IG"):
        np.testing.assert_array_equal(M.metric_map(name, p, 3.0), p)
    for name in ("CC", "KLD", "SIM"):
        np.testing.assert_array_equal(M.metric_map(name, p, 3.0), M.gaussian_blur(p, 3.0))
    s = M.metric_map("sAUC", p, 3.0)
    np.testing.assert_allclose(np.exp(s) * np.exp(M.centre_bias_log_density(p.shape)), p / p.sum(), rtol=1e-9)
    for shape in (p.shape, (600, 800)):  # corners of 800x600 hold densities ~1e-13: no EPS may tilt them
        centre = np.exp(M.centre_bias_log_density(shape))
        assert np.ptp(M.metric_map("sAUC", centre, 0)) == 0  # the centre bias over itself carries nothing
    with pytest.raises(InputError, match="unknown metric"):
        M.metric_map("AUC", p, 1.0)


def test_blurring_helps_cc_only_when_the_prediction_is_sharp():
    """A sharp prediction of the fixation distribution scores CC ~1 through its metric map, not as it is."""
    from foveal.datasets import Fixations, gaussian_density

    rng = np.random.default_rng(2)
    shape, sigma = (60, 80), 6.0
    xs, ys = rng.integers(5, 75, 20), rng.integers(5, 55, 20)
    truth = gaussian_density(Fixations.from_arrays(xs + 0.5, ys + 0.5), shape, sigma)
    sharp = np.zeros(shape)
    np.add.at(sharp, (ys, xs), 1.0)
    assert M.cc(sharp, truth) < 0.5
    assert M.cc(M.metric_map("CC", sharp, sigma), truth) > 0.9999


# --- bad input -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,match", [
    (lambda: M.nss(np.ones((3, 3)), [5.0], [1.0]), "outside the 3x3 image"),
    (lambda: M.nss(np.ones((3, 3)), [1.0, 2.0], [1.0]), "one length"),
    (lambda: M.nss(np.ones((3, 3)), [], []), "no fixations"),
    (lambda: M.nss(np.ones((3, 3)), [np.nan], [1.0]), "finite"),
    (lambda: M.nss(np.ones(3), [1.0], [1.0]), "H×W"),
    (lambda: M.auc_judd(np.full((2, 2), np.inf), [1.0], [1.0]), "NaN or infinite"),
    (lambda: M.cc(np.ones((3, 3)), np.ones((3, 4))), "one shape"),
    (lambda: M.kld(-np.ones((3, 3)), np.ones((3, 3))), "negative"),
    (lambda: M.sim(np.zeros((3, 3)), np.ones((3, 3))), "sums to 0"),
    (lambda: M.auc_judd(np.ones((1, 2)), [0.5, 1.5], [0.5, 0.5]), "every pixel is fixated"),
    (lambda: M.auc_borji(np.ones((3, 3)), [1.0], [1.0], n_splits=0), "n_splits"),
    (lambda: M.auc_borji(np.ones((3, 3)), [1.0], [1.0], n_splits=2.5), "n_splits must be a whole number"),
    (lambda: M.auc_borji(np.ones((3, 3)), [1.0], [1.0], n_splits=10**12), "from 1 to 10,000"),  # 22 TiB of draws
    (lambda: M.auc_borji(np.ones((3, 3)), [1.0], [1.0], rng=-1), "rng must be a numpy Generator"),
    (lambda: M.auc_borji(np.ones((3, 3)), [1.0], [1.0], rng=1.5), "rng must be"),
    (lambda: M.nss(np.array([["a", "b"]]), [0.0], [0.0]), "H×W array of numbers"),
    (lambda: M.auc([], [1.0]), "positives and negatives"),
    (lambda: M.auc([np.nan], [1.0, 2.0]), "NaN"),  # was 1.0: a NaN sorted above every negative
    (lambda: M.auc([1.0], [2.0, np.nan]), "NaN"),
    (lambda: M.centre_bias_log_density((0, 4)), "shape"),
])
def test_bad_input_raises_input_error(call, match):
    with pytest.raises(InputError, match=match):
        call()


@pytest.mark.parametrize("call, match", [
    (lambda: M.kld(np.ones((3, 3)), np.ones((3, 3)), eps=-1), "eps must be a finite number >= 0"),
    (lambda: M.kld(np.ones((3, 3)), np.ones((3, 3)), eps=float("nan")), "eps must be"),
    (lambda: M.information_gain(np.ones((3, 3)), np.zeros((3, 3)), [1.0], [1.0], eps=-1), "eps must be"),
    (lambda: M.pixel_indices([0.5], [0.5], (0, 0)), r"shape must be \(H, W\) with whole numbers"),  # read pixel -1
    (lambda: M.centre_bias_log_density((3.5, 4)), "whole numbers"),  # was cut to (3, 4)
    (lambda: M.centre_bias_log_density(np.array(5)), "whole numbers"),  # was len()'s TypeError
    (lambda: M.centre_bias_log_density((10**6, 10**6)), "over 100,000,000"),  # asked for 7 TiB
])
def test_metric_arguments_that_gave_nan_or_wrong_pixels_are_refused(call, match):
    with pytest.raises(InputError, match=match):
        call()


@pytest.mark.parametrize("x, y", [(-1.0, 0.0), (4.0, 0.0), (0.0, -1.0), (0.0, 3.0), (-1.5, 1.0), (4.0, 3.0)])
def test_a_fixation_a_pixel_or_more_outside_is_refused(x, y):
    """The rule says less than one pixel outside is clipped; exactly one (x = -1, x = W + 1) was clipped too."""
    with pytest.raises(InputError, match="outside the 3x2 image"):
        M.pixel_indices([x], [y], (2, 3))


def test_a_fixation_less_than_a_pixel_outside_is_clipped_onto_the_border():
    row, col = M.pixel_indices([-0.999, 3.999, 1.0, 1.0], [0.0, 0.0, -0.999, 2.999], (2, 3))
    assert col.tolist() == [0, 2, 1, 1] and row.tolist() == [0, 0, 0, 1]


def test_auc_borji_draws_its_splits_a_block_at_a_time(monkeypatch):
    """Splits x fixations were drawn in one array: 10,000 splits of a million fixations asked for 75 GiB."""
    rng = np.random.default_rng(3)
    s = rng.random((30, 40))
    xs, ys = rng.uniform(0, 40, 200), rng.uniform(0, 30, 200)
    # Up to a block, the draws are those of one call, as before.
    gen = np.random.default_rng(0)
    pos = np.sort(s[np.floor(ys).astype(int), np.floor(xs).astype(int)])
    neg = s.reshape(-1)[gen.integers(0, s.size, size=(50, pos.size))]
    wins = (2 * pos.size - np.searchsorted(pos, neg, "right") - np.searchsorted(pos, neg, "left")).sum(axis=1)
    assert M.auc_borji(s, xs, ys, n_splits=50, rng=0) == pytest.approx((wins / (2.0 * pos.size ** 2)).mean(), abs=1e-15)
    monkeypatch.setattr(M, "DRAWS_PER_BLOCK", 3 * 200 + 1)  # three splits a block, the last block short
    blocked = M.auc_borji(s, xs, ys, n_splits=50, rng=0)
    assert blocked == M.auc_borji(s, xs, ys, n_splits=50, rng=0)
    assert blocked == pytest.approx(M.auc(pos, s.ravel()), abs=0.02)  # the all-pixel AUC it estimates


def test_complex_maps_are_refused():
    s = np.ones((3, 3), complex) + 1j
    with pytest.raises(InputError, match="saliency_map must be an H×W array of numbers"):
        M.auc_judd(s, [0], [0])


@pytest.mark.parametrize("bad", ["abc", {"a": 1}, [1j], ["1", "2"], None])
def test_auc_takes_real_numbers_only(bad):
    # A ValueError or TypeError from inside, text such as "1" parsed as a number, None told as "NaN".
    with pytest.raises(InputError, match="auc: positives must be an array of real numbers"):
        M.auc(bad, [1.0])


def test_numbers_past_floats_range_are_refused_as_too_large():
    """10**400 raised OverflowError from float() in every check built on errors.real_number."""
    from foveal import cpu

    with pytest.raises(InputError, match="sigma must be a finite number"):
        M.gaussian_blur(np.random.default_rng(0).random((20, 30)), 10**400)
    with pytest.raises(InputError):
        cpu.overlay(np.zeros((2, 2, 3), np.uint8), np.ones((2, 2), np.float32), 10**400)
