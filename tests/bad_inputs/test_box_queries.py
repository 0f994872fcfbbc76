"""Bad-input campaign, box queries: whatever a caller passes as boxes, the answer is numbers or an InputError with a
one-line message, never a raw ValueError/TypeError/IndexError and never a silent coercion."""
from __future__ import annotations

import datetime

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foveal import InputError, SaliencyMap

HW = (60, 80)
_PROB = np.random.default_rng(1).random(HW).astype(np.float32)
SMAP = SaliencyMap(_PROB / _PROB.sum())
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(
    st.integers(min_value=-(2**80), max_value=2**80), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5), st.binary(max_size=5), st.none(), st.booleans(), st.complex_numbers(max_magnitude=1e3),
    st.just(datetime.datetime(2020, 1, 1)), st.dictionaries(st.text(max_size=2), st.integers(), max_size=2))
queries = st.recursive(scalars, lambda inner: st.lists(inner, max_size=6) | st.tuples(inner, inner, inner, inner),
                       max_leaves=24)


def _check(call):
    try:
        out = call()
    except InputError as exc:
        message = str(exc)
        assert message and "\n" not in message and len(message) < 600
        return None
    return out


@FAST
@given(queries)
def test_any_python_value_as_boxes_gives_numbers_or_input_error(boxes):
    for call in (lambda: SMAP.box_stats(boxes), lambda: SMAP.box_sum(boxes), lambda: SMAP.share(boxes)):
        out = _check(call)
        if isinstance(out, dict):
            assert all(np.isfinite(v).all() for v in out.values())
            assert ((out["share"] >= 0) & (out["share"] <= 1 + 1e-9)).all()


@FAST
@given(st.lists(st.tuples(*[st.floats(-1e6, 1e6, allow_nan=False)] * 4), min_size=1, max_size=20))
def test_accepted_boxes_lie_inside_and_match_numpy(rows):
    boxes = np.array(rows)
    try:
        stats = SMAP.box_stats(boxes)
    except InputError:
        return
    x0, y0 = np.floor(boxes[:, 0] + 0.5), np.floor(boxes[:, 1] + 0.5)
    x1, y1 = np.floor(boxes[:, 0] + boxes[:, 2] + 0.5), np.floor(boxes[:, 1] + boxes[:, 3] + 0.5)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= HW[1]).all() and (y1 <= HW[0]).all()
    for k in range(len(boxes)):
        region = SMAP.prob[int(y0[k]):int(y1[k]), int(x0[k]):int(x1[k])]
        assert stats["sum"][k] == pytest.approx(region.sum(dtype=np.float64), abs=1e-9)
        assert stats["area"][k] == region.size


@pytest.mark.parametrize("boxes, match", [
    ("0,0,10,10", "got str"), (b"\x00" * 32, "got bytes"), ({"x": 0}, "got dict"), ([[0, 0, 10, 10], [1, 2, 3]], "expected"),
    (np.array([[1 + 2j, 0, 10, 10]]), "real numbers"), (np.array(["2020-01-01"] * 4, dtype="datetime64[D]"),
                                                        "real numbers"),
    (np.array([True, False, True, True]), "real numbers"), ([2**70, 0, 10, 10], "outside"),
    ([10**400, 0, 10, 10], "beyond any image"), (np.ma.masked_array([0, 0, 10, 10], mask=[0, 0, 1, 0]), "masked"),
    (np.zeros((2, 2, 4)), "shape"), (None, "got NoneType"), ([[0, 0, 10, 10], "abcd"], "expected|real numbers"),
])
def test_named_bad_queries(boxes, match):
    with pytest.raises(InputError, match=match):
        SMAP.box_stats(boxes)


def test_unmasked_masked_array_is_used_as_its_data():
    boxes = np.ma.masked_array([[0, 0, 10, 10]], mask=False)
    assert SMAP.box_stats(boxes)["sum"][0] == pytest.approx(SMAP.prob[:10, :10].sum(dtype=np.float64))


@pytest.mark.parametrize("prob", [np.zeros((10, 10)), np.full((10, 10), np.nan), -np.ones((10, 10)),
                                  np.array([[np.inf, 1.0]])])
def test_maps_that_are_not_distributions_refuse_box_queries(prob):
    smap = SaliencyMap(prob.astype(np.float32))
    with pytest.raises(InputError, match="not a distribution"):
        smap.box_stats([0, 0, 1, 1])
