"""An independent reference for every number foveal's scoring reports, written from docs/SCORING.md and the
compare/what-if definitions in plain NumPy (direct pixel sums and masks, no summed-area table), compared with
foveal on random maps and boxes: borders, 1-px boxes, overlaps, whole-image boxes, ties, zeros, peaks, 1×1."""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from foveal import SaliencyMap
from foveal.boxes import resolve_boxes
from foveal.scoring.compare import MATERIAL_CHANGE, compare_scores, resample_mass, verdict_of
from foveal.scoring.edits import Move, apply_edits
from foveal.scoring.elements import ELEMENT_KINDS, Element
from foveal.scoring.norms import Norms
from foveal.scoring.recommend import WhatIfResult, recommend
from foveal.scoring.scores import CreativeScores, percentile_of, score_creative, threshold_value
from foveal.scoring.whatif import EDGE_MARGIN, MAX_POSITIONS, candidate_offsets, search_position

CONVERSION = {"cta", "headline", "product"}
# Box sums come from a float64 summed-area table, the reference sums pixels directly: they agree to rounding.
ABS = 1e-12


# ---- the reference, from the docs ---------------------------------------------------------------------------

def ref_edges(box, hw, units="px", box_format="xywh"):
    """docs/SCORING.md, "The box rule": relative values times W or H, each edge rounded half up."""
    h, w = hw
    a, b, c, d = (float(v) for v in box)
    if units == "relative":
        a, b, c, d = a * w, b * h, c * w, d * h
    x0, y0, x1, y1 = (a, b, a + c, b + d) if box_format == "xywh" else (a, b, c, d)
    return tuple(math.floor(v + 0.5) for v in (x0, y0, x1, y1))


def ref_percentile(share, refs):
    return 100.0 * sum(1 for r in refs if r <= share) / len(refs)


def ref_elements(prob, boxes_xyxy, kinds, norms=None, pass_pct=70.0):
    p = prob.astype(np.float64)
    total, n_pix = p.sum(), p.size
    out = []
    for (x0, y0, x1, y1), kind in zip(boxes_xyxy, kinds):
        area = (x1 - x0) * (y1 - y0)
        share = p[y0:y1, x0:x1].sum() / total
        out.append({"share": share, "density": share / area, "area_fraction": area / n_pix,
                    "lift": share / (area / n_pix)})
    return out


def ref_creative(prob, boxes_xyxy, kinds):
    p = prob.astype(np.float64)
    p = p / p.sum()
    conv = np.zeros(p.shape, bool)
    other = np.zeros(p.shape, bool)
    for (x0, y0, x1, y1), kind in zip(boxes_xyxy, kinds):
        (conv if kind in CONVERSION else other)[y0:y1, x0:x1] = True
    c, o = p[conv].sum(), p[other & ~conv].sum()
    nz = p[p > 0]
    # 1x1: all attention is on one pixel, which the docs call 1 (the formula itself is 0/0 there)
    focus = 1.0 if p.size == 1 else 1.0 - float(-(nz * np.log(nz)).sum()) / math.log(p.size)
    k = -(-p.size // 10)  # ceil(0.1 N) in exact integer arithmetic
    top = np.sort(p.ravel())[::-1][:k].sum()
    return {"conversion_share": c, "other_elements_share": o, "background_share": 1.0 - c - o, "focus": focus,
            "top10_share": top}


def ref_verdict(d_conv, d_dist):
    """The compare docs' table, with |Δ| ≥ 0.5 pp material (Δ taken exactly, as the quoted shares differ)."""
    def direction(d):
        return 0 if abs(d) < Fraction(str(MATERIAL_CHANGE)) else (1 if d > 0 else -1)
    c, d = direction(d_conv), direction(d_dist)
    if c == 0 and d == 0:
        return "no material change"
    if (c > 0 and d <= 0) or (c == 0 and d < 0):
        return "better"
    if (c < 0 and d >= 0) or (c == 0 and d > 0):
        return "worse"
    return "mixed"


# ---- strategies ---------------------------------------------------------------------------------------------

@st.composite
def maps(draw, max_side=24):
    h = draw(st.integers(1, max_side))
    w = draw(st.integers(1, max_side))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    style = draw(st.sampled_from(["random", "peaked", "sparse", "uniform", "one_pixel"]))
    if style == "random":
        prob = rng.random((h, w))
    elif style == "peaked":
        prob = np.exp(-40 * rng.random((h, w)))
    elif style == "sparse":
        prob = rng.random((h, w)) * (rng.random((h, w)) < 0.3)
    elif style == "uniform":
        prob = np.ones((h, w))
    else:
        prob = np.zeros((h, w))
        prob[rng.integers(h), rng.integers(w)] = 1.0
    if prob.sum() == 0:
        prob[0, 0] = 1.0
    return (prob / prob.sum()).astype(np.float32)


@st.composite
def xyxy_boxes(draw, hw, min_size=1, max_size=6):
    h, w = hw
    out = []
    for _ in range(draw(st.integers(min_size, max_size))):
        x0 = draw(st.integers(0, w - 1))
        y0 = draw(st.integers(0, h - 1))
        # half the time a box touching the right/bottom border, the whole image now and then
        x1 = draw(st.one_of(st.just(w), st.integers(x0 + 1, w)))
        y1 = draw(st.one_of(st.just(h), st.integers(y0 + 1, h)))
        out.append((x0, y0, x1, y1))
    return out


def elements_of(boxes_xyxy, kinds):
    return [Element(f"e{i}", k, (x0, y0, x1 - x0, y1 - y0)) for i, ((x0, y0, x1, y1), k)
            in enumerate(zip(boxes_xyxy, kinds))]


# ---- per element and per creative ---------------------------------------------------------------------------

@settings(max_examples=150, deadline=None)
@given(st.data())
def test_element_and_creative_numbers_match_the_reference(data):
    prob = data.draw(maps())
    boxes = data.draw(xyxy_boxes(prob.shape))
    kinds = data.draw(st.lists(st.sampled_from(ELEMENT_KINDS), min_size=len(boxes), max_size=len(boxes)))
    cs = score_creative(SaliencyMap(prob), elements_of(boxes, kinds))
    for got, want in zip(cs.elements, ref_elements(prob, boxes, kinds)):
        assert got.share == pytest.approx(want["share"], abs=ABS)
        assert got.area_fraction == pytest.approx(want["area_fraction"], rel=1e-15)
        assert got.density == pytest.approx(want["density"], abs=ABS)
        assert got.lift == pytest.approx(want["lift"], abs=ABS * prob.size)
        # attention is never negative and never more than all of it, whatever the table's rounding
        assert 0.0 <= got.share <= 1.0 and got.density >= 0.0 and got.lift >= 0.0
    # ranks by the reported shares: 1 + how many are strictly larger (1, 2, 2, 4)
    shares = [e.share for e in cs.elements]
    assert [e.rank for e in cs.elements] == [1 + sum(s > v for s in shares) for v in shares]
    want = ref_creative(prob, boxes, kinds)
    for key, value in want.items():
        assert getattr(cs, key) == pytest.approx(value, abs=1e-12), key
    assert 0.0 <= cs.background_share <= 1.0


@settings(max_examples=60, deadline=None)
@given(maps(max_side=16), st.data())
def test_identical_attention_ties_in_rank(prob, data):
    """Two boxes that hold the same pixels of attention (one grown over empty pixels) share a rank."""
    prob = prob.copy()
    h, w = prob.shape
    assume(w >= 2)
    prob[:, -1] = 0.0
    assume(prob.sum() > 0)
    prob /= prob.sum()
    x0 = data.draw(st.integers(0, w - 2))
    y0 = data.draw(st.integers(0, h - 1))
    y1 = data.draw(st.integers(y0 + 1, h))
    els = elements_of([(x0, y0, w - 1, y1), (x0, y0, w, y1)], ["cta", "logo"])
    a, b = score_creative(SaliencyMap(prob), els).elements
    assert a.share == b.share and a.rank == b.rank == 1


def test_a_box_on_zero_attention_has_zero_share_not_a_negative_one():
    """On this sparse 17x13 map the table's four reads for the empty box x 5..8, y 14..15 cancel to -5.6e-17
    (found by the property test above): its share is 0, never negative."""
    rng = np.random.default_rng(0)
    rng.integers(2, 20, 2)  # the search that found it drew the size first
    prob = rng.random((17, 13)) ** 20 * (rng.random((17, 13)) < 0.5)
    prob = (prob / prob.sum()).astype(np.float32)
    assert prob[14:15, 5:8].sum() == 0
    smap = SaliencyMap(prob)
    stats = smap.box_stats([5, 14, 8, 15], box_format="xyxy")
    assert stats["sum"][0] == stats["share"][0] == stats["lift"][0] == 0.0
    boxes = np.array([[x0, y0, x1, y1] for x0 in range(13) for y0 in range(17) for x1 in range(x0 + 1, 14)
                      for y1 in range(y0 + 1, 18)])
    shares = smap.box_stats(boxes, box_format="xyxy")["share"]
    assert (shares >= 0).all() and (shares <= 1).all()


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([1, 2, 8, 32, 64]), st.sampled_from([1, 4, 16, 64]), st.data())
def test_box_rule_matches_the_reference(h, w, data):
    # Sizes are powers of two so that relative values on half-pixel edges are exact in binary: elsewhere a
    # relative half (24.5 px) can land on either side in floating point, whatever the order of operations.
    units = data.draw(st.sampled_from(["px", "relative"]))
    box_format = data.draw(st.sampled_from(["xywh", "xyxy"]))
    # edges on exact halves (in pixels) and arbitrary fractions
    x0, x1 = sorted(data.draw(st.lists(st.integers(0, 2 * w), min_size=2, max_size=2, unique=True)))
    y0, y1 = sorted(data.draw(st.lists(st.integers(0, 2 * h), min_size=2, max_size=2, unique=True)))
    edges = [x0 / 2, y0 / 2, x1 / 2, y1 / 2]
    if units == "relative":
        edges = [edges[0] / w, edges[1] / h, edges[2] / w, edges[3] / h]
    box = edges if box_format == "xyxy" else [edges[0], edges[1], edges[2] - edges[0], edges[3] - edges[1]]
    want = ref_edges(box, (h, w), units, box_format)
    if not (0 <= want[0] < want[2] <= w and 0 <= want[1] < want[3] <= h):
        return
    try:
        got = tuple(resolve_boxes([box], (h, w), box_format=box_format, units=units)[0].tolist())
    except ValueError:
        return  # refused as looking like the other reading (docs: "order and units are never guessed")
    assert got == want


# ---- norms: percentile, score, pass, threshold --------------------------------------------------------------

pass_percentiles = st.one_of(st.sampled_from([70.0, 50.0, 100.0, 12.5, 100 / 3, 200 / 3]),
                             st.floats(1e-9, 100.0),
                             # a hair above a whole count of n (70.000000001 with n = 10)
                             st.integers(1, 99).map(lambda v: v + 1e-9))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.data(), pass_percentiles)
def test_percentile_score_pass_and_threshold_match_the_reference(values, data, pass_pct):
    refs = np.sort(np.asarray(values))
    share = data.draw(st.one_of(st.floats(0, 1), st.sampled_from(values)))
    pct = percentile_of(share, refs)
    assert pct == ref_percentile(share, refs)
    threshold = threshold_value(refs, pass_pct)
    # the docs' threshold: the smallest reference t with #{norm <= t} >= pass% of n
    assert threshold == min(t for t in refs if ref_percentile(t, refs) >= pass_pct)
    assert (pct >= pass_pct) == (share >= threshold)


def test_pass_and_threshold_agree_just_above_a_whole_count():
    """50.000000001 with two references: 0.0 is at the 50th percentile, which fails, so it is not the threshold
    (a count rounded to 9 decimals made it one, and a share of 0.0 was 'at the threshold' yet failed)."""
    refs = np.array([0.0, 1.0])
    assert percentile_of(0.0, refs) < 50.000000001
    assert threshold_value(refs, 50.000000001) == 1.0
    assert threshold_value(np.arange(10.0), 70.0) == 6.0


@settings(max_examples=60, deadline=None)
@given(maps(max_side=12), st.data(), pass_percentiles)
def test_scored_elements_carry_the_reference_percentile(prob, data, pass_pct):
    boxes = data.draw(xyxy_boxes(prob.shape))
    kinds = data.draw(st.lists(st.sampled_from(["cta", "logo"]), min_size=len(boxes), max_size=len(boxes)))
    refs = np.sort(np.asarray(data.draw(st.lists(st.floats(0, 1), min_size=1, max_size=12))))
    fmt = f"{prob.shape[1]}x{prob.shape[0]}"
    norms = Norms(model={"name": "t"}, formats={fmt: {"cta": refs}}, creatives={fmt: 1})
    cs = score_creative(SaliencyMap(prob), elements_of(boxes, kinds), norms=norms, pass_percentile=pass_pct)
    for e in cs.elements:
        if e.kind != "cta":
            assert e.percentile is e.score is e.passed is e.threshold_share is None and e.norm_note
            continue
        assert e.percentile == ref_percentile(e.share, refs)
        assert e.score == math.floor(e.percentile + 0.5) and 0 <= e.score <= 100
        assert e.passed == (e.percentile >= pass_pct) == (e.share >= e.threshold_share)
        assert e.norm_n == len(refs)


# ---- compare ------------------------------------------------------------------------------------------------

def _creative(conversion, others):
    return CreativeScores(image_hw=(10, 10), format="10x10", pass_percentile=70.0, elements=(),
                          conversion_share=conversion, other_elements_share=others,
                          background_share=1 - conversion - others, focus=0.5, top10_share=0.5)


# shares quoted to the thousandth: the boundary Δ = 0.005 exactly in decimal, never exactly in binary
thousandths = st.integers(0, 500).map(lambda v: v / 1000)


@settings(max_examples=300, deadline=None)
@given(thousandths, thousandths, thousandths, thousandths)
@example(0.1, 0.105, 0.2, 0.2)
@example(0.3, 0.3, 0.205, 0.2)
def test_compare_verdict_matches_the_documented_table(ca, cb, oa, ob):
    got = compare_scores(_creative(ca, oa), _creative(cb, ob)).verdict
    exact = ref_verdict(Fraction(str(cb)) - Fraction(str(ca)), Fraction(str(ob)) - Fraction(str(oa)))
    assert got == exact


def test_a_half_point_gain_is_material():
    """10.0% → 10.5% is +0.5 pp, which the docs call material; in binary 0.105 − 0.1 is 0.004999999999999991."""
    assert verdict_of(0.105 - 0.1, 0.0) == "better"
    assert compare_scores(_creative(0.1, 0.2), _creative(0.105, 0.2)).verdict == "better"


def ref_resample(prob, out_hw):
    """Each target cell integrates the source's piecewise-constant density over its overlap (unit square)."""
    def weights(n_in, n_out):
        m = np.zeros((n_out, n_in))
        for i in range(n_out):
            lo, hi = Fraction(i * n_in, n_out), Fraction((i + 1) * n_in, n_out)
            for j in range(n_in):
                m[i, j] = float(max(Fraction(0), min(hi, j + 1) - max(lo, Fraction(j))))
        return m
    return weights(prob.shape[0], out_hw[0]) @ prob.astype(np.float64) @ weights(prob.shape[1], out_hw[1]).T


@settings(max_examples=60, deadline=None)
@given(maps(max_side=12), st.integers(1, 15), st.integers(1, 15))
def test_resampling_matches_the_overlap_integral(prob, out_h, out_w):
    got = resample_mass(prob, (out_h, out_w))
    np.testing.assert_allclose(got, ref_resample(prob, (out_h, out_w)), rtol=0, atol=1e-12)
    assert got.sum() == pytest.approx(float(prob.sum(dtype=np.float64)), abs=1e-12)


# ---- what-if search -----------------------------------------------------------------------------------------

def ref_lattice(current, size, extent, grid_count, step):
    margin = max(1, math.floor(EDGE_MARGIN * extent + 0.5))
    lo, hi = margin, extent - size - margin
    if hi < lo:
        lo = hi = (extent - size) // 2
    if step is not None:
        return [v for v in range(extent) if (v - current) % step == 0 and lo <= v <= hi]
    if grid_count == 1:
        return [lo]
    return sorted({math.floor(lo + (hi - lo) * i / (grid_count - 1) + 0.5) for i in range(grid_count)})


def ref_overlap(a, b):
    ma = np.zeros((80, 80), bool)
    ma[a[1]:a[1] + a[3], a[0]:a[0] + a[2]] = True
    mb = np.zeros((80, 80), bool)
    mb[b[1]:b[1] + b[3], b[0]:b[0] + b[2]] = True
    return int((ma & mb).sum())


@st.composite
def layouts(draw):
    h, w = draw(st.integers(8, 60)), draw(st.integers(8, 60))
    els = []
    for i in range(draw(st.integers(1, 4))):
        bw, bh = draw(st.integers(1, w)), draw(st.integers(1, h))
        box = (draw(st.integers(0, w - bw)), draw(st.integers(0, h - bh)), bw, bh)
        if any(e.box == box for e in els):
            continue
        els.append(Element(f"e{i}", draw(st.sampled_from(ELEMENT_KINDS)), box))
    return (h, w), els


@settings(max_examples=150, deadline=None)
@given(layouts(), st.data())
def test_search_positions_are_exactly_the_valid_lattice_points(layout, data):
    hw, els = layout
    target = els[0]
    mode = data.draw(st.sampled_from(["grid", "step"]))
    grid = (data.draw(st.integers(1, 7)), data.draw(st.integers(1, 7))) if mode == "grid" else None
    step = data.draw(st.integers(1, 20)) if mode == "step" else None
    max_overlap = data.draw(st.sampled_from([0.0, 0.1, 0.29, 0.35, 0.5, 1.0]))
    x, y, w, h = target.box
    xs = ref_lattice(x, w, hw[1], grid[0] if grid else None, step)
    ys = ref_lattice(y, h, hw[0], grid[1] if grid else None, step)
    want = []
    for ny in ys:
        for nx in xs:
            moved = (nx, ny, w, h)
            if (nx, ny) == (x, y):
                continue
            assert 0 <= nx and nx + w <= hw[1] and 0 <= ny and ny + h <= hw[0]
            if all(ref_overlap(moved, o.box) <= Fraction(str(max_overlap)) * min(w * h, o.area)
                   for o in els[1:]):
                want.append((nx - x, ny - y))
    try:
        got = candidate_offsets(hw, els, target.name, grid=grid, step=step, max_overlap=max_overlap)
    except ValueError as exc:
        if len(xs) * len(ys) > MAX_POSITIONS:  # a search that large is refused before any position is judged
            assert f"{len(xs) * len(ys)} positions to try" in str(exc)
        else:
            assert want == []
        return
    assert got.offsets == want
    assert got.rejected_overlap == len(xs) * len(ys) - ((x in xs) and (y in ys)) - len(want)


def test_an_overlap_of_exactly_max_overlap_is_allowed():
    """Two 12x15 boxes overlapping by 7x9 = 63 px, exactly 0.35 of either: "at most 0.35" allows it, though
    0.35 * 180 is 62.99999999999999 in binary."""
    els = [Element("cta", "cta", (30, 30, 12, 15)), Element("logo", "logo", (5, 5, 12, 15))]
    offsets = candidate_offsets((60, 60), els, "cta", step=1, max_overlap=0.35).offsets
    assert (5 + 12 - 7 - 30, 5 + 15 - 9 - 30) in offsets
    assert (5 + 12 - 8 - 30, 5 + 15 - 9 - 30) not in offsets  # 72 px is more


class Brightness:
    """A stand-in model that looks at the pixels: attention follows brightness, so moves change the map."""

    def predict_batch(self, images, batch_size=16):
        out = []
        for image in images:
            prob = (np.asarray(image, np.float64).mean(axis=2) + 1.0) ** 3
            out.append(SaliencyMap((prob / prob.sum()).astype(np.float32)))
        return out


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([1, 3, 16]))
def test_search_best_is_the_brute_force_best(seed, batch_size):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, (40, 48, 3)).astype(np.uint8)
    image[5:13, 6:20] = 250  # the element: bright, so where it goes matters
    image[28:34, 30:44] = rng.integers(0, 255, (6, 14, 3))
    els = [Element("cta", "cta", (6, 5, 14, 8)), Element("logo", "logo", (30, 28, 14, 6))]
    offsets = candidate_offsets(image.shape[:2], els, "cta", grid=(4, 4)).offsets
    engine = Brightness()
    result = search_position(engine, image, els, "cta", offsets, batch_size=batch_size)
    brute = []
    for order, (dx, dy) in enumerate(offsets):
        edited = apply_edits(image, els, [Move("cta", dx, dy)])
        (smap,) = engine.predict_batch([edited.image])
        share = score_creative(smap, edited.elements).element("cta").share
        brute.append((-share, abs(dx) + abs(dy), order, (dx, dy)))
    brute.sort()
    assert [(c.dx, c.dy) for c in result.candidates] == [b[3] for b in brute]
    assert (result.best.edits[0].dx, result.best.edits[0].dy) == brute[0][3]
    assert result.candidates[0].share_of("cta") == -brute[0][0]
    (base,) = engine.predict_batch([image])
    assert result.baseline.element("cta").share == score_creative(base, els).element("cta").share


def test_whatif_recommends_only_a_material_gain():
    """A move that raises a share by less than compare's material change is no recommendation: compare would call
    the same move 'no material change'."""
    scores = _creative(0.3, 0.1)
    tiny = WhatIfResult(edit="move 'cta' by (+1, +0) px", element="cta", share_before=0.1, share_after=0.1004)
    real = WhatIfResult(edit="move 'cta' by (+0, -9) px", element="cta", share_before=0.1, share_after=0.112)
    ids = [r.id for r in recommend(scores, [tiny, real])]
    assert ids.count("whatif:1") == 1 and "whatif:2" not in ids
