"""Bad-input campaign, scoring API arguments: Element objects built by hand, pass percentiles, formats and norms
reach score_creative / recommend / compare as numbers or an InputError, never a raw exception or a NaN."""
from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from foveal import InputError, SaliencyMap
from foveal.scoring.compare import compare_scores
from foveal.scoring.elements import Element
from foveal.scoring.norms import Norms
from foveal.scoring.recommend import Thresholds, recommend
from foveal.scoring.report import build_document
from foveal.scoring.scores import score_creative

HW = (40, 50)
_PROB = np.random.default_rng(3).random(HW).astype(np.float32)
SMAP = SaliencyMap(_PROB / _PROB.sum())
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ints = st.integers(-60, 60)
elements = st.lists(st.builds(Element, st.sampled_from(["a", "b", "c", "a"]),
                              st.sampled_from(["cta", "logo", "headline", "button", ""]),
                              st.tuples(ints, ints, ints, ints)), max_size=5)
percentiles = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 200), st.none(),
                        st.text(max_size=3))


@FAST
@given(elements, percentiles, st.one_of(st.none(), st.text(max_size=5)))
def test_score_recommend_document(items, pass_percentile, fmt):
    fmt_key = fmt or f"{HW[1]}x{HW[0]}"
    norms = Norms(model={"name": "m", "sha256": "0"}, creatives={fmt_key: 2},
                  formats={fmt_key: {"cta": np.array([0.01, 0.5]), "logo": np.array([0.2])}})
    try:
        scores = score_creative(SMAP, items, norms=norms, format=fmt, pass_percentile=pass_percentile)
    except InputError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    recs = recommend(scores, thresholds=Thresholds(0.5))
    doc = build_document(scores, recs, {}, image="a.png", elements="a.json", norms=None)
    json.dumps(doc, allow_nan=False)  # no NaN or inf anywhere
    for e in scores.elements:
        assert 0.0 <= e.share <= 1.0 + 1e-9 and math.isfinite(e.lift)
    assert compare_scores(scores, scores).verdict == "no material change"
