"""foveal.cpu kernels against NumPy float64 references written here (and scipy/OpenCV cross-checks)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from foveal import cpu
from foveal.errors import InputError

SETTINGS = settings(max_examples=25, deadline=None)
# Sizes that include 1, odd sizes and extreme aspect ratios when drawn in pairs.
sizes = st.integers(min_value=1, max_value=97)
seeds = st.integers(min_value=0, max_value=2**32 - 1)


# ---- references -------------------------------------------------------------------------------------------------


def area_weights(n_in: int, n_out: int) -> np.ndarray:
    """n_out x n_in box-filter matrix: output o averages source interval [o*s, (o+1)*s), s = n_in/n_out."""
    s = n_in / n_out
    w = np.zeros((n_out, n_in))
    for o in range(n_out):
        lo, hi = o * s, (o + 1) * s
        for i in range(int(math.floor(lo)), min(n_in, int(math.ceil(hi)))):
            w[o, i] = (min(i + 1, hi) - max(i, lo)) / s
    return w


def bilinear_weights(n_in: int, n_out: int, valid: float | None = None, origin: float = 0.0) -> np.ndarray:
    """n_out x n_in interpolation matrix sampling at origin + (o + 0.5) * valid / n_out - 0.5, clamped to
    [0, n_in - 1]."""
    valid = n_in if valid is None else valid
    w = np.zeros((n_out, n_in))
    for o in range(n_out):
        g = min(max(origin + (o + 0.5) * valid / n_out - 0.5, 0.0), n_in - 1.0)
        i0 = int(math.floor(g))
        i1 = min(i0 + 1, n_in - 1)
        w[o, i0] += 1.0 - (g - i0)
        w[o, i1] += g - i0
    return w


def resize_weights(n_in: int, n_out: int) -> np.ndarray:
    return area_weights(n_in, n_out) if n_out < n_in else bilinear_weights(n_in, n_out)


def preprocess_ref(image, resized_hw, padded_hw, mean, std, offset_hw=(0, 0)):
    (h, w, _), (rh, rw), (ph, pw), (top, left) = image.shape, resized_hw, padded_hw, offset_hw
    wy, wx = resize_weights(h, rh), resize_weights(w, rw)
    out = np.empty((1, 3, ph, pw))
    for c in range(3):
        plane = (wy @ image[:, :, c].astype(np.float64) @ wx.T - mean[c]) / std[c]
        out[0, c] = np.pad(plane, ((top, ph - rh - top), (left, pw - rw - left)), mode="edge")
    return out


def postprocess_ref(grid, out_hw, valid_hw, blur_sigma=0.0, origin_hw=(0.0, 0.0)):
    from scipy.ndimage import gaussian_filter1d

    ay = bilinear_weights(grid.shape[0], out_hw[0], valid_hw[0], origin_hw[0])
    ax = bilinear_weights(grid.shape[1], out_hw[1], valid_hw[1], origin_hw[1])
    v = ay @ grid.astype(np.float64) @ ax.T
    if blur_sigma > 0:
        radius = math.ceil(3 * blur_sigma)
        for axis in (0, 1):
            v = gaussian_filter1d(v, blur_sigma, axis=axis, mode="reflect", radius=radius)
    e = np.exp(v - v.max())
    return e / e.sum()


def sat_ref(prob):
    out = np.zeros((prob.shape[0] + 1, prob.shape[1] + 1))
    out[1:, 1:] = prob.astype(np.float64).cumsum(0).cumsum(1)
    return out


def random_prob(rng, h, w, dtype=np.float32):
    p = rng.random((h, w)) ** 4  # uneven mass, like a saliency map
    return (p / p.sum()).astype(dtype)


# ---- preprocess -------------------------------------------------------------------------------------------------


@SETTINGS
@given(h=sizes, w=sizes, rh=sizes, rw=sizes, pad_h=st.integers(0, 9), pad_w=st.integers(0, 9),
       before=st.tuples(st.floats(0, 1), st.floats(0, 1)), seed=seeds)
def test_preprocess_matches_weight_matrices(h, w, rh, rw, pad_h, pad_w, before, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    mean, std = rng.uniform(0, 255, 3), rng.uniform(0.5, 255, 3)
    offset = (round(pad_h * before[0]), round(pad_w * before[1]))
    got = cpu.preprocess(image, (rh, rw), (rh + pad_h, rw + pad_w), mean, std, offset)
    assert got.dtype == np.float32 and got.shape == (1, 3, rh + pad_h, rw + pad_w)
    ref = preprocess_ref(image, (rh, rw), (rh + pad_h, rw + pad_w), mean, std, offset)
    # Compare on the 0..255 scale: float32 accumulation over the taps.
    np.testing.assert_allclose(got * std[:, None, None], ref * std[:, None, None], atol=2e-3, rtol=0)


@pytest.mark.parametrize(
    ("shape", "out_hw", "interpolation"),
    [((481, 733), (97, 130), "INTER_AREA"), ((40, 23), (97, 130), "INTER_LINEAR")],
)
def test_preprocess_agrees_with_opencv(shape, out_hw, interpolation):
    """Cross-check of the references: OpenCV's exact area shrink and half-pixel bilinear enlarge (float input)."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    expected = cv2.resize(image.astype(np.float64), out_hw[::-1], interpolation=getattr(cv2, interpolation))
    got = cpu.preprocess(image, out_hw, out_hw, (0, 0, 0), (1, 1, 1))[0].transpose(1, 2, 0)
    np.testing.assert_allclose(got, expected, atol=2e-3, rtol=0)


def test_preprocess_identity_and_constant_image():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (31, 17, 3), dtype=np.uint8)
    got = cpu.preprocess(image, (31, 17), (32, 32), (0, 0, 0), (1, 1, 1))[0]
    np.testing.assert_array_equal(got[:, :31, :17], image.transpose(2, 0, 1))
    np.testing.assert_array_equal(got[:, 31, :17], image[30].T)  # bottom padding repeats the last row
    np.testing.assert_array_equal(got[:, :31, 17:], np.repeat(image[:, 16].T[:, :, None], 15, axis=2))
    flat = np.full((1000, 3, 3), 200, dtype=np.uint8)
    expected = np.broadcast_to(np.array([50.0, 200.0, 200.0])[None, :, None, None], (1, 3, 7, 1))
    np.testing.assert_allclose(cpu.preprocess(flat, (7, 1), (7, 1), (100, 0, 0), (2, 1, 1)), expected, rtol=1e-5)


def test_preprocess_centred_in_its_padding():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (5, 6, 3), dtype=np.uint8)
    got = cpu.preprocess(image, (5, 6), (9, 7), (0, 0, 0), (1, 1, 1), (2, 1))[0]
    np.testing.assert_array_equal(got[:, 2:7, 1:7], image.transpose(2, 0, 1))
    for row in (0, 1):  # padding above repeats the first row, below the last, left the first column
        np.testing.assert_array_equal(got[:, row, 1:], image[0].T)
    for row in (7, 8):
        np.testing.assert_array_equal(got[:, row, 1:], image[4].T)
    np.testing.assert_array_equal(got[:, :, 0], got[:, :, 1])
    for offset in ((5, 0), (0, 2), (-1, 0)):
        with pytest.raises(InputError, match="offset_hw must place the resized image inside the padding"):
            cpu.preprocess(image, (5, 6), (9, 7), (0, 0, 0), (1, 1, 1), offset)


# ---- postprocess ------------------------------------------------------------------------------------------------


@SETTINGS
@given(
    gh=st.integers(1, 24), gw=st.integers(1, 24), h=sizes, w=sizes, fill_h=st.floats(0.3, 1.0),
    fill_w=st.floats(0.3, 1.0), blur=st.sampled_from([0.0, 0.4, 1.5, 7.0]), offset=st.floats(-50, 50),
    before=st.tuples(st.floats(0, 1), st.floats(0, 1)), seed=seeds,
)
def test_postprocess_matches_reference(gh, gw, h, w, fill_h, fill_w, blur, offset, before, seed):
    rng = np.random.default_rng(seed)
    grid = (rng.normal(0, 3, (gh, gw)) + offset).astype(np.float32)
    valid = (gh * fill_h, gw * fill_w)
    origin = (gh * (1 - fill_h) * before[0], gw * (1 - fill_w) * before[1])
    got = cpu.postprocess(grid, (h, w), valid, blur_sigma=blur, origin_hw=origin)
    assert got.dtype == np.float32 and got.shape == (h, w)
    assert abs(got.sum(dtype=np.float64) - 1.0) < 1e-6
    ref = postprocess_ref(grid, (h, w), valid, blur, origin)
    np.testing.assert_allclose(got, ref, rtol=5e-5, atol=1e-6 / (h * w))


@pytest.mark.parametrize("spread", [1.0, 4.0, 15.0])
def test_postprocess_large_maps_match_the_reference(spread):
    """Map-sized outputs, where most rows are products of the row above (see ExpRows in postprocess.cpp), stay
    within the reference's tolerance however steep the log-density."""
    grid = np.random.default_rng(5).normal(0, spread, (34, 60)).astype(np.float32)
    for out_hw, valid, origin in [((1080, 1920), (34.0, 60.0), (0.0, 0.0)), ((601, 957), (30.5, 51.0), (1.5, 4.0))]:
        got = cpu.postprocess(grid, out_hw, valid, 0.0, origin)
        assert abs(got.sum(dtype=np.float64) - 1.0) < 1e-6
        np.testing.assert_allclose(got, postprocess_ref(grid, out_hw, valid, 0.0, origin), rtol=5e-5, atol=1e-30)


def test_postprocess_rows_rising_out_of_underflow_are_exact():
    """A row whose values underflowed (a trough 150 nats deep) cannot be scaled back up: the rows below it are
    computed afresh, so a value that climbs out of the trough within a grid cell is still its own exp."""
    grid = np.zeros((9, 12), np.float32)
    grid[::2] = -150.0
    grid[:, ::3] += np.linspace(0, -20, 9, dtype=np.float32)[:, None]
    got = cpu.postprocess(grid, (100, 500), (9.0, 12.0))  # 11 rows a cell: up to 15 nats from one row to the next
    ref = postprocess_ref(grid, (100, 500), (9.0, 12.0))
    seen = ref > 1e-30 * ref.max()
    np.testing.assert_allclose(got[seen], ref[seen], rtol=5e-5)
    assert (got[ref > 1e-36] > 0).all()


def test_postprocess_large_map_sums_to_one_and_is_uniform_for_flat_grid():
    got = cpu.postprocess(np.zeros((135, 135), np.float32), (1080, 1080), (135.0, 135.0), blur_sigma=3.0)
    assert abs(got.sum(dtype=np.float64) - 1.0) < 1e-6
    np.testing.assert_allclose(got, 1.0 / got.size, rtol=1e-6)


def test_postprocess_survives_extreme_logits():
    grid = np.array([[0.0, -1e30], [-1e30, 80.0]], np.float32)
    got = cpu.postprocess(grid, (5, 7), (2.0, 2.0))
    assert np.isfinite(got).all() and abs(got.sum(dtype=np.float64) - 1.0) < 1e-6


def test_postprocess_when_row_maxima_lie_in_different_columns():
    """The one-pass softmax shifts by a bound from the row maxima. Here the rows peak in different columns, the
    bound is 100 above the map's max, and every pixel would underflow alike with it: the pass is rerun with the
    true max, and the middle column still gets e^-100 of the others' mass."""
    grid = np.array([[-200.0, -200.0, 0.0], [0.0, -200.0, -200.0]], np.float32)
    got = cpu.postprocess(grid, (1, 3), (2.0, 3.0))
    np.testing.assert_allclose(got, [[0.5, 0.0, 0.5]], atol=1e-30)
    np.testing.assert_allclose(got, postprocess_ref(grid, (1, 3), (2.0, 3.0)), rtol=5e-5, atol=1e-30)


def test_postprocess_samples_only_the_valid_region():
    grid = np.zeros((4, 4), np.float32)
    # With valid = 2 cells the last samples sit at grid coordinate 1.375: cell 2 is interpolated, cell 3 never.
    grid[3:, :] = 100.0
    grid[:, 3:] = 100.0
    got = cpu.postprocess(grid, (8, 8), (2.0, 2.0))
    np.testing.assert_allclose(got, 1 / 64, rtol=1e-6)


# ---- summed-area table and boxes --------------------------------------------------------------------------------


@SETTINGS
@given(h=st.integers(1, 300), w=st.integers(1, 300), f64=st.booleans(), seed=seeds)
def test_sat_matches_cumsum(h, w, f64, seed):
    prob = random_prob(np.random.default_rng(seed), h, w, np.float64 if f64 else np.float32)
    sat = cpu.summed_area_table(prob)
    assert sat.dtype == np.float64 and sat.shape == (h + 1, w + 1)
    assert not sat[0].any() and not sat[:, 0].any()
    np.testing.assert_allclose(sat, sat_ref(prob), rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", [(2600, 2601), (1, 70_000), (70_000, 3)])
def test_sat_large_and_extreme_shapes(shape):
    """Large enough for the threaded split and streaming stores; single row/thin column layouts."""
    prob = random_prob(np.random.default_rng(2), *shape)
    np.testing.assert_allclose(cpu.summed_area_table(prob), sat_ref(prob), rtol=0, atol=1e-12)


def clipped_sum(prob, box):
    x0, y0, x1, y1 = box
    return prob[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)].sum(dtype=np.float64)


@SETTINGS
@given(h=sizes, w=sizes, n=st.integers(0, 60), seed=seeds)
def test_box_sums_match_direct_sums(h, w, n, seed):
    rng = np.random.default_rng(seed)
    prob = random_prob(rng, h, w)
    # Boxes reaching beyond the image on every side, then kept only when non-empty and overlapping it.
    x0 = rng.integers(-w, w, n)
    y0 = rng.integers(-h, h, n)
    boxes = np.stack([x0, y0, x0 + rng.integers(1, 2 * w + 1, n), y0 + rng.integers(1, 2 * h + 1, n)], axis=1)
    boxes = boxes[(boxes[:, 2] > 0) & (boxes[:, 3] > 0)].astype(np.int64)
    got = cpu.box_sums(cpu.summed_area_table(prob), boxes)
    assert got.dtype == np.float64 and got.shape == (len(boxes),)
    np.testing.assert_allclose(got, [clipped_sum(prob, b) for b in boxes], rtol=0, atol=1e-12)


def test_box_sums_whole_image_and_many_boxes():
    rng = np.random.default_rng(3)
    prob = random_prob(rng, 301, 199)
    sat = cpu.summed_area_table(prob)
    assert abs(cpu.box_sums(sat, [[0, 0, 199, 301]])[0] - prob.sum(dtype=np.float64)) < 1e-12
    xy = rng.integers(0, 150, (100_000, 2))
    boxes = np.concatenate([xy, xy + rng.integers(1, 60, (100_000, 2))], axis=1)
    got = cpu.box_sums(sat, boxes)
    integral = sat_ref(prob)
    x0, y0 = boxes[:, 0], boxes[:, 1]
    x1, y1 = np.minimum(boxes[:, 2], 199), np.minimum(boxes[:, 3], 301)
    ref = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12)


# ---- export -----------------------------------------------------------------------------------------------------


@SETTINGS
@given(h=sizes, w=sizes, bits=st.sampled_from([8, 16]), seed=seeds)
def test_quantize_round_trip(h, w, bits, seed):
    prob = random_prob(np.random.default_rng(seed), h, w)
    q, scale = cpu.quantize(prob, bits)
    assert q.dtype == (np.uint8 if bits == 8 else np.uint16) and q.shape == (h, w)
    assert scale == pytest.approx(float(prob.max()) / (2**bits - 1), rel=1e-12)
    assert int(q.max()) == 2**bits - 1
    tail = (prob > 0) & (prob < scale / 2)
    assert np.abs(q * scale - prob)[~tail].max(initial=0) <= scale / 2 * (1 + 1e-9)
    assert (q[tail] == 1).all() and ((q == 0) == (prob == 0)).all()


def test_quantize_keeps_a_peaked_density_tail_above_zero():
    """A Gaussian density 10⁸ times higher at its peak than in its corners: no pixel of its PNG is 0."""
    y, x = np.mgrid[:300, :400]
    logd = -((x - 200.0) ** 2 + (y - 150.0) ** 2) / (2 * 40.0**2)
    prob = np.exp(logd - logd.max()).astype(np.float32)
    prob /= prob.sum()
    for bits in (8, 16):
        q, scale = cpu.quantize(prob, bits)
        assert q.min() >= 1
        assert abs(q.sum() * scale - 1) < (0.05 if bits == 8 else 1e-3)


def test_quantize_all_zero_map():
    q, scale = cpu.quantize(np.zeros((3, 4), np.float32), 16)
    assert scale == 0.0 and not q.any()


def polynomial_turbo(x: np.ndarray) -> np.ndarray:
    """Google's published turbo polynomial fit (Mikhailov, 2019)."""
    coef = np.array([
        [0.13572138, 4.61539260, -42.66032258, 132.13108234, -152.94239396, 59.28637943],
        [0.09140261, 2.19418839, 4.84296658, -14.18503333, 4.27729857, 2.82956604],
        [0.10667330, 12.64194608, -60.58204836, 110.36276771, -89.90310912, 27.34824973],
    ])
    rgb = np.stack([np.polynomial.polynomial.polyval(x, c) for c in coef], axis=-1)
    return np.rint(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def test_colorize_turbo_is_the_polynomial_at_rounded_levels():
    values = np.linspace(0, 3, 256, dtype=np.float32).reshape(16, 16)
    np.testing.assert_array_equal(cpu.colorize(values).reshape(256, 3), polynomial_turbo(np.arange(256) / 255))


@SETTINGS
@given(h=sizes, w=sizes, cmap=st.sampled_from(["turbo", "inferno"]), seed=seeds)
def test_colorize_indexes_by_value_over_max(h, w, cmap, seed):
    values = np.random.default_rng(seed).random((h, w)).astype(np.float32)
    lut = cpu.colorize(np.linspace(0, 1, 256, dtype=np.float32)[None, :], cmap)[0]
    index = np.clip(np.floor(values.astype(np.float64) / values.max() * 255 + 0.5), 0, 255).astype(int)
    got = cpu.colorize(values, cmap)
    assert got.dtype == np.uint8 and got.shape == (h, w, 3)
    # float32 rounding may pick the neighbouring entry exactly at a .5 boundary
    assert (np.abs(got.astype(int) - lut[index].astype(int)).max(axis=-1) <= 3).all()
    np.testing.assert_array_equal(cpu.colorize(values * 4, cmap), got)  # exact rescale, same colours


def test_inferno_endpoints_and_monotone_luminance():
    lut = cpu.colorize(np.linspace(0, 1, 256, dtype=np.float32)[None, :], "inferno")[0].astype(np.float64)
    np.testing.assert_array_equal(lut[0], [0, 0, 4])
    np.testing.assert_array_equal(lut[-1], [252, 255, 164])
    luminance = lut @ [0.2126, 0.7152, 0.0722]
    assert (np.diff(luminance) > -0.5).all()  # monotone up to uint8 rounding
    assert luminance[-1] - luminance[0] > 240


@SETTINGS
@given(h=sizes, w=sizes, alpha=st.floats(0, 1), cmap=st.sampled_from(["turbo", "inferno"]), seed=seeds)
@example(h=62, w=82, alpha=1.0, cmap="turbo", seed=1042771853)  # prob / max * 255 lands on a .5 tie
def test_overlay_matches_reference(h, w, alpha, cmap, seed):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    prob = random_prob(rng, h, w)
    t = prob.astype(np.float64) / prob.max()
    colors = cpu.colorize(prob, cmap).astype(np.float64)
    a = (alpha * t)[..., None]
    ref = image * (1 - a) + colors * a
    got = cpu.overlay(image, prob, alpha, cmap)
    assert got.dtype == np.uint8 and got.shape == image.shape
    assert np.abs(got - ref).max() <= 0.5 + 1e-3


def test_overlay_of_zero_prob_is_the_image():
    image = np.random.default_rng(4).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    np.testing.assert_array_equal(cpu.overlay(image, np.zeros((9, 13), np.float32)), image)
    np.testing.assert_array_equal(cpu.overlay(image, np.ones((9, 13), np.float32), alpha=0.0), image)
