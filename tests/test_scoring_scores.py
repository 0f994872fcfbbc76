"""Score definitions on constructed maps whose answers are known exactly."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from foveal import SaliencyMap
from foveal.errors import InputError
from foveal.scoring.elements import Element, parse_elements
from foveal.scoring.norms import Norms
from foveal.scoring.scores import (DEFINITIONS, competition_ranks, focus, percentile_of, score_creative,
                                   score_elements, threshold_value, top_share, union_share)

H, W = 60, 100
N = H * W


def uniform() -> SaliencyMap:
    return SaliencyMap(np.full((H, W), 1.0 / N, np.float32))


def delta(y: int, x: int) -> SaliencyMap:
    prob = np.zeros((H, W), np.float32)
    prob[y, x] = 1.0
    return SaliencyMap(prob)


def two_blobs() -> SaliencyMap:
    """0.7 spread evenly over rows 0..9, cols 0..9; 0.3 over rows 40..49, cols 50..69."""
    prob = np.zeros((H, W), np.float64)
    prob[0:10, 0:10] = 0.7 / 100
    prob[40:50, 50:70] = 0.3 / 200
    return SaliencyMap(prob.astype(np.float32))


def E(name, kind, box):
    return Element(name, kind, tuple(box))


def test_uniform_map_share_is_area_fraction_and_lift_is_one():
    elements = [E("cta", "cta", (10, 10, 20, 5)), E("logo", "logo", (0, 0, 100, 60)), E("px", "other", (3, 3, 1, 1))]
    scores = score_elements(uniform(), elements)
    for e, s in zip(elements, scores):
        assert s.share == pytest.approx(e.area / N, rel=1e-6)
        assert s.area_fraction == e.area / N
        assert s.lift == pytest.approx(1.0, rel=1e-6)
        assert s.density == pytest.approx(1.0 / N, rel=1e-6)
    assert [s.rank for s in scores] == [2, 1, 3]


def test_delta_map_puts_everything_in_the_box_that_holds_it():
    scores = score_elements(delta(30, 50), [E("hit", "cta", (45, 25, 10, 10)), E("miss", "logo", (0, 0, 10, 10))])
    assert scores[0].share == pytest.approx(1.0) and scores[1].share == 0.0
    assert scores[0].lift == pytest.approx(N / 100)
    assert [s.rank for s in scores] == [1, 2]


def test_two_blobs_shares_and_half_open_edges():
    smap = two_blobs()
    scores = score_elements(smap, [E("a", "cta", (0, 0, 10, 10)), E("b", "product", (50, 40, 20, 10)),
                                   E("half_b", "logo", (50, 40, 10, 10)), E("edge", "other", (10, 0, 5, 10))])
    assert [s.share for s in scores] == pytest.approx([0.7, 0.3, 0.15, 0.0], abs=1e-6)
    assert scores[0].lift == pytest.approx(0.7 / (100 / N), rel=1e-5)


def test_creative_level_union_counts_overlaps_once():
    smap = two_blobs()
    elements = [E("cta", "cta", (0, 0, 10, 10)), E("headline", "headline", (0, 0, 5, 10)),  # inside the cta box
                E("logo", "logo", (5, 0, 10, 10)),  # half on the cta blob: that half is conversion already
                E("product", "product", (50, 40, 10, 10))]
    cs = score_creative(smap, elements)
    assert cs.conversion_share == pytest.approx(0.7 + 0.15, abs=1e-6)
    assert cs.other_elements_share == pytest.approx(0.0, abs=1e-7)
    assert cs.background_share == pytest.approx(0.15, abs=1e-6)
    assert sum(e.share for e in cs.elements if e.kind in ("cta", "headline", "product")) > cs.conversion_share


def test_focus_and_top_share_known_values():
    assert focus(uniform().prob) == pytest.approx(0.0, abs=1e-9)
    assert focus(delta(1, 1).prob) == pytest.approx(1.0)
    # Uniform over k pixels: H = log k, so focus = 1 - log k / log N.
    assert focus(two_blobs().prob) == pytest.approx(
        1 - (-(0.7 * math.log(0.007) + 0.3 * math.log(0.0015))) / math.log(N), rel=1e-6)
    assert top_share(uniform().prob) == pytest.approx(math.ceil(0.1 * N) / N, rel=1e-6)
    assert top_share(delta(1, 1).prob) == pytest.approx(1.0)
    assert top_share(two_blobs().prob) == pytest.approx(1.0, rel=1e-6)  # 300 non-zero pixels < 600
    assert focus(np.ones((1, 1), np.float32)) == 1.0


def test_percentile_exact_with_ties_in_favour():
    norm = np.array([0.1, 0.2, 0.2, 0.3, 0.4])
    assert percentile_of(0.05, norm) == 0.0
    assert percentile_of(0.1, norm) == 20.0
    assert percentile_of(0.2, norm) == 60.0
    assert percentile_of(0.25, norm) == 60.0
    assert percentile_of(0.4, norm) == 100.0
    assert percentile_of(9.0, norm) == 100.0
    with pytest.raises(InputError):
        percentile_of(0.1, np.array([]))


def test_threshold_is_the_smallest_value_reaching_the_percentile():
    norm = np.array([0.1, 0.2, 0.2, 0.3, 0.4])
    assert threshold_value(norm, 70) == 0.3   # 3 of 5 (60%) <= 0.2, 4 of 5 (80%) <= 0.3
    assert threshold_value(norm, 60) == 0.2
    assert threshold_value(norm, 100) == 0.4
    ten = np.arange(10) / 10.0
    assert threshold_value(ten, 70) == 0.6   # exactly 7 of 10 <= 0.6: float 0.7*10 must not round up to 8
    with pytest.raises(InputError):
        threshold_value(norm, 0)


def test_competition_ranks():
    assert competition_ranks([0.2, 0.5, 0.2, 0.1]) == [2, 1, 2, 4]
    assert competition_ranks([0.012799427220076005, 0.012799427220076022, 0.3]) == [2, 2, 1]  # the table's last bits
    assert competition_ranks([0.2, 0.2 + 1e-9]) == [2, 1]


def test_mirrored_boxes_on_a_mirrored_map_share_their_rank():
    """Two boxes holding the same attention got ranks 1 and 2: their shares, four table reads each, differed in
    the last bits (29 of 30 mirrored pairs)."""
    rng = np.random.default_rng(2)
    half = rng.random((300, 200)).astype(np.float32) ** 4
    prob = np.hstack([half, half[:, ::-1]])
    smap = SaliencyMap((prob / prob.sum(dtype=np.float64)).astype(np.float32))
    for x, y, w, h in [(21, 17, 137, 11), (3, 50, 90, 120), (60, 200, 30, 40), (100, 100, 60, 60)]:
        left, right = score_creative(smap, [Element("left", "cta", (x, y, w, h)),
                                            Element("right", "cta", (400 - x - w, y, w, h))]).elements
        assert left.rank == right.rank == 1


def test_union_share_counts_overlaps_once():
    smap = uniform()
    assert union_share(smap, [(0, 0, 50, 60)]) == pytest.approx(0.5)
    assert union_share(smap, [(0, 0, 50, 60), (25, 0, 75, 60)]) == pytest.approx(0.75)
    assert union_share(smap, [(0, 0, 50, 60), (10, 10, 20, 20)]) == pytest.approx(0.5)
    assert union_share(smap, []) == 0.0 and union_share(smap, [(5, 5, 5, 9)]) == 0.0  # nothing, or no area


def test_union_share_is_the_pixel_masks_share():
    """Read from the summed-area table cell by cell (a pixel mask of a 1920x1080 map took 33 ms a union): the same
    share as summing the map under a mask of the union, for overlapping, nested, touching and edge boxes."""
    rng = np.random.default_rng(11)
    prob = rng.gamma(0.3, size=(97, 131)).astype(np.float32)
    prob /= prob.sum(dtype=np.float64)
    smap = SaliencyMap(prob)
    for n in (1, 2, 5, 30):
        for _ in range(20):
            x0, y0 = rng.integers(0, 131, n), rng.integers(0, 97, n)
            boxes = np.stack([x0, y0, x0 + rng.integers(1, 60, n), y0 + rng.integers(1, 50, n)], axis=1)
            boxes[:, 2], boxes[:, 3] = np.minimum(boxes[:, 2], 131), np.minimum(boxes[:, 3], 97)
            mask = np.zeros(prob.shape, bool)
            for bx0, by0, bx1, by1 in boxes:
                mask[by0:by1, bx0:bx1] = True
            want = prob[mask].sum(dtype=np.float64) / prob.sum(dtype=np.float64)
            assert union_share(smap, boxes) == pytest.approx(want, rel=1e-9, abs=1e-12)


def norms_for(fmt: str, **kinds) -> Norms:
    return Norms(model={"name": "m", "sha256": "0" * 64},
                 formats={fmt: {k: np.sort(np.asarray(v, float)) for k, v in kinds.items()}}, creatives={fmt: 5})


def test_norms_give_percentile_score_and_pass():
    norms = norms_for("100x60", cta=[0.01, 0.02, 0.03, 0.04, 0.05])
    # uniform map: the cta share is its area fraction, 0.03 (3rd of 5 -> 60th percentile, fails 70)
    cs = score_creative(uniform(), [E("cta", "cta", (0, 0, 18, 10)), E("logo", "logo", (50, 0, 6, 10))], norms=norms)
    cta, logo = cs.elements
    assert cta.percentile == 60.0 and cta.score == 60 and cta.passed is False
    assert cta.threshold_share == 0.04 and cta.norm_n == 5 and cta.norm_note is None
    assert logo.percentile is None and logo.passed is None and "no 'logo'" in logo.norm_note
    loose = score_creative(uniform(), [E("cta", "cta", (0, 0, 18, 10))], norms=norms, pass_percentile=60)
    assert loose.elements[0].passed is True


def test_score_rounds_half_up():
    norms = norms_for("100x60", cta=[0.0] + [0.5] * 7)  # 1 of 8 <= 0.03 -> 12.5th percentile
    cta = score_creative(uniform(), [E("cta", "cta", (0, 0, 18, 10))], norms=norms).elements[0]
    assert cta.percentile == 12.5 and cta.score == 13


def test_missing_norms_are_null_with_a_reason():
    cs = score_creative(uniform(), [E("cta", "cta", (0, 0, 18, 10))])
    e = cs.elements[0]
    assert (e.percentile, e.score, e.passed, e.threshold_share) == (None, None, None, None)
    assert "no norms" in e.norm_note
    other = score_creative(uniform(), [E("cta", "cta", (0, 0, 18, 10))], norms=norms_for("1080x1080", cta=[0.1]))
    assert "no format '100x60'" in other.elements[0].norm_note and "1080x1080" in other.elements[0].norm_note
    chosen = score_creative(uniform(), [E("cta", "cta", (0, 0, 18, 10))], norms=norms_for("feed", cta=[0.1]),
                            format="feed")
    assert chosen.format == "feed" and chosen.elements[0].percentile == 0.0


def test_an_element_file_is_scored_against_its_own_format():
    """score_creative(smap, load_elements(...)) compared against the WxH norms, not the file's "format" as
    `foveal score` does, so Python found no norms where the CLI gave percentiles."""
    spec = parse_elements({"format": "feed", "elements": [{"name": "cta", "kind": "cta", "box": [0, 0, 18, 10]}]},
                          (H, W))
    norms = norms_for("feed", cta=[0.1])
    cta = score_creative(uniform(), spec, norms=norms).elements[0]
    assert cta.percentile == 0.0 and cta.norm_note is None
    assert score_elements(uniform(), spec, norms=norms)[0].percentile == 0.0
    assert score_creative(uniform(), spec, norms=norms, format="100x60").elements[0].percentile is None


def test_elements_from_an_iterator_are_all_scored():
    boxes = [E("cta", "cta", (0, 0, 18, 10)), E("logo", "logo", (50, 0, 6, 10))]
    listed = score_creative(uniform(), boxes)
    streamed = score_creative(uniform(), iter(boxes))  # read once, not once per pass over the elements
    assert streamed == listed and len(streamed.elements) == 2 and streamed.conversion_share > 0
    assert score_elements(uniform(), (e for e in boxes)) == listed.elements


@pytest.mark.parametrize("kwargs, match", [
    ({"smap": np.full((H, W), 1.0 / N, np.float32)}, "smap: expected a SaliencyMap.*SaliencyMap\\(prob\\)"),
    ({"smap": None}, "smap: expected a SaliencyMap"),
    ({"elements": None}, "elements: expected a list of Element objects"),
    ({"elements": "cta.json"}, "elements: expected a list of Element objects.*load_elements"),
    ({"elements": np.array(5.0)}, "elements: expected a list of Element objects"),  # was iter()'s TypeError
    ({"norms": "norms.json"}, "norms: expected a Norms.*load_norms"),
    ({"norms": {"1080x1080": {}}}, "norms: expected a Norms"),
    ({"pass_percentile": True}, "pass_percentile must be a number"),
    ({"pass_percentile": "70"}, "pass_percentile must be a number"),
    ({"format": 1080}, "format: expected a format name"),
])
def test_wrong_arguments_are_input_errors(kwargs, match):
    args = {"smap": uniform(), "elements": [E("cta", "cta", (0, 0, 18, 10))], **kwargs}
    for score in (score_creative, score_elements):
        with pytest.raises(InputError, match=match):
            score(**args)


@pytest.mark.parametrize("prob, match", [
    (np.zeros((4, 4), np.float32), "total 0"),  # was a math domain error from focus
    (np.full((4, 4), np.nan, np.float32), "total nan"),  # was focus 0, top-10% share NaN
    (np.array([[-1.0, 1.0], [1.0, 1.0]], np.float32), "min -1"),  # was focus 1, top-10% share 0.14
])
def test_a_map_that_is_no_distribution_is_refused_with_no_elements_too(prob, match):
    with pytest.raises(InputError, match=f"not a distribution.*{match}"):
        score_creative(SaliencyMap(prob), [])


def test_numpy_pass_percentiles_are_numbers():
    norms = norms_for("100x60", cta=[0.01, 0.02, 0.03, 0.04, 0.05])
    for value in (np.float32(60), np.int64(60), np.float64(60)):
        cs = score_creative(uniform(), [E("cta", "cta", (0, 0, 18, 10))], norms=norms, pass_percentile=value)
        assert cs.elements[0].passed is True and type(cs.pass_percentile) is float


def test_to_dict_carries_definitions_and_is_json_ready():
    import json

    d = score_creative(two_blobs(), [E("cta", "cta", (0, 0, 10, 10))]).to_dict()
    assert d["definitions"] == DEFINITIONS
    assert set(d["creative"]) <= set(DEFINITIONS)
    # every number an element carries is defined (docs/SCORING.md: "Every number foveal score writes is defined")
    assert set(d["elements"][0]) - {"name", "kind"} <= set(DEFINITIONS)
    assert set(DEFINITIONS) >= {"share", "lift", "percentile", "score", "passed"}
    json.dumps(d, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=30), st.floats(0, 1), st.floats(1, 100))
def test_pass_is_share_at_or_above_threshold(values, share, pass_pct):
    norm = np.sort(np.asarray(values))
    passed = percentile_of(share, norm) >= pass_pct
    assert passed == (share >= threshold_value(norm, pass_pct))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.lists(st.tuples(st.integers(0, W - 1), st.integers(0, H - 1),
                                                     st.integers(1, W), st.integers(1, H)), min_size=1, max_size=6))
def test_shares_match_a_brute_force_mask_sum(seed, raw_boxes):
    prob = np.random.default_rng(seed).random((H, W)).astype(np.float32)
    prob /= prob.sum()
    boxes = {(x, y, min(w, W - x), min(h, H - y)) for x, y, w, h in raw_boxes}
    elements = [E(f"e{i}", "cta" if i % 2 else "logo", b) for i, b in enumerate(sorted(boxes))]
    cs = score_creative(SaliencyMap(prob), elements)
    total = prob.sum(dtype=np.float64)
    for e, s in zip(elements, cs.elements):
        x, y, w, h = e.box
        assert s.share == pytest.approx(prob[y:y + h, x:x + w].sum(dtype=np.float64) / total, abs=1e-6)
    conv = np.zeros((H, W), bool)
    for e in elements:
        if e.kind == "cta":
            x, y, w, h = e.box
            conv[y:y + h, x:x + w] = True
    assert cs.conversion_share == pytest.approx(prob[conv].sum(dtype=np.float64) / total, abs=1e-6)
    assert cs.conversion_share + cs.other_elements_share + cs.background_share == pytest.approx(1.0)


def test_norms_built_directly_are_sorted_and_flags_are_true_or_false():
    """Norms handed unsorted shares gave percentile 100 and a pass for what sorted ones put at 67 and a fail; a
    string such as "no" counted as True for allow_model_mismatch."""
    import numpy as np

    from foveal import SaliencyMap
    from foveal.errors import InputError
    from foveal.scoring import Norms, make_element, score_creative

    smap = SaliencyMap(np.full((100, 200), 5e-5, np.float32))
    cta = [make_element("cta", "cta", [0, 0, 20, 50], (100, 200))]
    model = {"name": "m", "sha256": "a", "graph_sha256": "b", "precision": "fp32"}
    scores = [score_creative(smap, cta, norms=Norms(model, {"200x100": {"cta": refs}}, {"200x100": 3})).elements[0]
              for refs in ([0.01, 0.02, 0.9], [0.9, 0.01, 0.02])]
    assert [(e.percentile, e.passed) for e in scores] == [(scores[0].percentile, False)] * 2
    with pytest.raises(InputError, match=r"shares in \[0, 1\]"):
        Norms(model, {"200x100": {"cta": [0.1, float("nan")]}}, {"200x100": 2})
    mapped = SaliencyMap(np.full((100, 200), 5e-5, np.float32), {"graph_sha256": "other", "model": "m"})
    with pytest.raises(InputError, match="allow_model_mismatch must be True or False, got 'no'"):
        score_creative(mapped, cta, norms=Norms(model, {"200x100": {"cta": [0.1]}}, {"200x100": 1}),
                       allow_model_mismatch="no")


def test_an_element_looked_up_by_a_name_it_lacks_is_a_one_line_input_error_and_a_key_error():
    """CreativeScores.element and Comparison.element raised a bare KeyError('nope')."""
    from foveal import InputError, UnknownElementError
    from foveal.scoring.compare import compare_scores

    smap = SaliencyMap(np.full((10, 10), 0.01, np.float32))
    scores = score_creative(smap, [Element("cta", "cta", (1, 1, 2, 2)), Element("logo", "logo", (5, 5, 2, 2))])
    for lookup, where in ((scores.element, "CreativeScores.element"),
                          (compare_scores(scores, scores).element, "Comparison.element")):
        with pytest.raises(UnknownElementError) as refused:
            lookup("nope")
        assert isinstance(refused.value, InputError) and isinstance(refused.value, KeyError)
        assert str(refused.value).startswith(f"{where}") and str(refused.value).endswith(
            "no element named 'nope'; the elements are cta, logo")


def test_density_is_the_share_per_pixel_whatever_the_maps_total():
    """A map that does not sum to 1 (an 8-bit PNG's sums within 9 %; a caller's raw values not at all) gave shares
    and lifts right but densities that far off: SaliencyMap(np.full((4, 4), 5.0)) had a density of 5 per pixel."""
    raw = SaliencyMap(np.full((4, 4), 5.0, np.float32))
    unit = SaliencyMap(np.full((4, 4), 1 / 16, np.float32))
    for key in ("share", "density", "lift"):
        assert raw.box_stats([0, 0, 2, 2])[key] == pytest.approx(unit.box_stats([0, 0, 2, 2])[key])
    assert raw.box_stats([0, 0, 2, 2])["density"] == pytest.approx([1 / 16])
    assert score_creative(raw, [Element("cta", "cta", (0, 0, 2, 2))]).element("cta").density == pytest.approx(1 / 16)


def test_numpy_integer_boxes_are_written_as_plain_numbers():
    """An Element from a DataFrame row (NumPy integers) scored, but its scores could not be written as JSON."""
    import json

    from foveal import SaliencyMap
    from foveal.scoring import Element, score_creative

    smap = SaliencyMap(np.full((50, 50), 1 / 2500, np.float32))
    scores = score_creative(smap, [Element("cta", "cta", (np.int64(1), np.int32(2), 10, np.uint8(10)))])
    assert json.loads(json.dumps(scores.to_dict()))["elements"][0]["box"] == [1, 2, 10, 10]
    assert all(type(v) is int for v in scores.elements[0].box)


def test_allow_model_mismatch_is_checked_without_norms_too():
    from foveal import SaliencyMap
    from foveal.errors import InputError
    from foveal.scoring import make_element, score_creative

    smap = SaliencyMap(np.full((10, 10), 0.01, np.float32))
    with pytest.raises(InputError, match="allow_model_mismatch must be True or False, got 'yes'"):
        score_creative(smap, [make_element("a", "cta", [0, 0, 5, 5], (10, 10))], allow_model_mismatch="yes")
