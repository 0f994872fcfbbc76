"""Scoring speed: 10,000 boxes on one 1080x1080 map, and `foveal score` over a folder of 100 banners (300x250).

Baselines measured in the same run: per-box NumPy slicing sums (what the summed-area table replaces), and the bare
``Engine.predict_batch`` on the 100 banners (what scoring, reports and the resumable CSV add on top).
Run: python -m pytest benchmarks/test_bench_scoring.py --benchmark-group-by=group
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from foveal import Engine, SaliencyMap
from foveal.cli import main
from foveal.scoring.elements import ELEMENT_KINDS, Element
from foveal.scoring.scores import score_creative, score_elements

N_BOXES, N_BANNERS = 10_000, 100


@pytest.fixture(scope="module")
def smap() -> SaliencyMap:
    prob = np.random.default_rng(0).random((1080, 1080)).astype(np.float32)
    return SaliencyMap(prob / prob.sum())


@pytest.fixture(scope="module")
def elements() -> list[Element]:
    rng = np.random.default_rng(1)
    xy = rng.integers(0, 980, (N_BOXES, 2))
    wh = rng.integers(1, 100, (N_BOXES, 2))
    return [Element(f"e{i}", ELEMENT_KINDS[i % len(ELEMENT_KINDS)], (int(x), int(y), int(w), int(h)))
            for i, ((x, y), (w, h)) in enumerate(zip(xy, wh))]


@pytest.mark.benchmark(group="10k boxes on 1080x1080")
def test_score_elements_10k(benchmark, smap, elements):
    assert smap.sat.shape == (1081, 1081)  # build the cached table first: the timing is the box queries alone
    scores = benchmark(score_elements, smap, elements)
    assert len(scores) == N_BOXES


@pytest.mark.benchmark(group="10k boxes on 1080x1080")
def test_box_stats_kernel_10k(benchmark, smap, elements):
    boxes = [e.box for e in elements]
    stats = benchmark(smap.box_stats, boxes)
    assert len(stats["share"]) == N_BOXES


@pytest.mark.benchmark(group="10k boxes on 1080x1080")
def test_baseline_numpy_slices_10k(benchmark, smap, elements):
    prob = smap.prob

    def slice_sums():
        return [float(prob[y:y + h, x:x + w].sum(dtype=np.float64)) for x, y, w, h in (e.box for e in elements)]

    sums = benchmark.pedantic(slice_sums, rounds=3, iterations=1)
    np.testing.assert_allclose(sums, smap.box_stats([e.box for e in elements])["sum"], rtol=1e-6, atol=1e-12)


@pytest.mark.benchmark(group="10k boxes on 1080x1080")
def test_score_creative_union_and_focus(benchmark, smap, elements):
    benchmark.extra_info.update(elements=100)
    cs = benchmark(score_creative, smap, elements[:100])
    assert 0 <= cs.focus <= 1


@pytest.fixture(scope="module")
def banners(tmp_path_factory):
    folder = tmp_path_factory.mktemp("banners")
    rng = np.random.default_rng(2)
    for i in range(N_BANNERS):
        image = np.full((250, 300, 3), rng.integers(150, 250, 3), np.uint8)
        x, y = int(rng.integers(0, 200)), int(rng.integers(150, 210))
        image[y:y + 36, x:x + 96] = rng.integers(0, 255, 3)
        image[20:60, 20:260] = rng.integers(0, 120, 3)
        Image.fromarray(image).save(folder / f"b{i:03d}.png")
        (folder / f"b{i:03d}.json").write_text(json.dumps([
            {"name": "cta", "kind": "cta", "box": [x, y, 96, 36]},
            {"name": "headline", "kind": "headline", "box": [20, 20, 240, 40]},
            {"name": "logo", "kind": "logo", "box": [250, 200, 40, 40]}]))
    return folder


@pytest.mark.benchmark(group="100 banners 300x250")
def test_baseline_predict_batch_100(benchmark, banners):
    engine = Engine()
    paths = sorted(banners.glob("*.png"))
    maps = benchmark.pedantic(engine.predict_batch, args=(paths,), kwargs={"batch_size": 16}, rounds=3, iterations=1)
    assert len(maps) == N_BANNERS


@pytest.mark.parametrize("outputs", ["scores-only", "full-report"])
@pytest.mark.benchmark(group="100 banners 300x250")
def test_foveal_score_folder_100(benchmark, banners, tmp_path, outputs):
    runs = iter(range(100))
    extra = ["--no-report"] if outputs == "scores-only" else []

    def score_folder():
        out = tmp_path / f"run{next(runs)}"  # a fresh folder each round: resume would skip everything
        return main(["-q", "score", str(banners), "-o", str(out), *extra])

    assert benchmark.pedantic(score_folder, rounds=3, iterations=1) == 0


# --- recommendations and element files at scale: linear, not quadratic ------------------------------------------

@pytest.fixture(scope="module")
def scored_10k(smap, elements):
    return score_creative(smap, elements)


@pytest.mark.benchmark(group="recommend, 10k elements")
def test_recommend_10k(benchmark, scored_10k):
    from foveal.scoring.recommend import Thresholds, recommend

    recs = benchmark.pedantic(recommend, (scored_10k,), {"thresholds": Thresholds(0.62)}, rounds=5, iterations=1)
    assert recs


@pytest.mark.benchmark(group="recommend, 10k elements")
def test_baseline_per_cta_rival_scan_10k(benchmark, scored_10k):
    # What recommend did before: for each CTA, a scan of every other element for its strongest rival.
    elements = scored_10k.elements

    def rivals():
        return [max((e for e in elements if e.name != cta.name), key=lambda e: e.share)
                for cta in elements if cta.kind == "cta"]

    assert benchmark.pedantic(rivals, rounds=1, iterations=1)


@pytest.mark.benchmark(group="element file at the element cap")
def test_parse_score_recommend_max_elements(benchmark, tmp_path_factory, smap):
    from foveal.scoring.elements import MAX_ELEMENTS, load_elements
    from foveal.scoring.recommend import Thresholds, recommend

    path = tmp_path_factory.mktemp("elements") / "e.json"
    path.write_text(json.dumps([{"name": f"e{i}", "kind": ELEMENT_KINDS[i % 7],
                                 "box": [i % 1000, (i // 1000) % 1000, 50, 50]}
                                for i in range(MAX_ELEMENTS)]))

    def run():
        spec = load_elements(path, smap.shape)
        return recommend(score_creative(smap, spec.elements), thresholds=Thresholds(0.62))

    assert benchmark.pedantic(run, rounds=2, iterations=1)
