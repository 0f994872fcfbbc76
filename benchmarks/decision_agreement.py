"""Do the int8 graph's decisions match the fp32 graph's?  compare verdicts, per-element calls, what-if searches.

    PYTHONPATH=python python benchmarks/decision_agreement.py --out decisions.json [--synthetic 40] [--searches 10]

The int8 graph moves single element shares by a median 0.37 pp against fp32 (docs/MODEL.md), and compare calls a
change of 0.5 pp material.  compare scores A and B on one graph, so part of the error may cancel; this measures
the decisions themselves.  Each A/B pair is compared (``compare_scores``, as ``foveal compare`` does) on the map
of ``Engine(precision="int8")`` and of ``Engine(precision="fp32")`` in one process; the verdict and each
element's call (gained / lost / no material change) are counted as agreeing or not.  Pairs:

- every two example creatives (``examples/*.png``, ``examples/references/*.png``: one 600x600 format, six elements
  each, matched by name), once per unordered pair (B against A is the mirror);
- edits a creative team makes on each example (moves, scales, swaps; :mod:`foveal.scoring.edits`), original A
  against edited B, as ``foveal whatif`` compares them;
- synthetic creatives (``benchmarks/creatives.py``, true boxes; needs ../shared/data photos and fonts): pairs of
  two creatives of one format, and the same edits on each.

What-if: position searches (``whatif_search``, default 5x5 grid) for the CTA and the headline of each example
creative and the CTA of synthetic ones, on both graphs: the best position, the top-3, the what-if
recommendations, and the regret (what int8's pick loses on the fp32 map against fp32's pick).  Timing: each
comparison's model call and each search are timed per graph, the two graphs alternating which runs first.
``--graph fp16`` holds the fp16 graph (on ONNX Runtime) against fp32 instead.  Not run in CI; in the output
"test" is the graph held against fp32.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from foveal import Engine
from foveal.errors import InputError
from foveal.imageio import decode
from foveal.scoring.compare import compare_scores
from foveal.scoring.edits import Edit, Move, Scale, Swap, apply_edits
from foveal.scoring.elements import Element, load_elements, parse_elements
from foveal.scoring.recommend import Thresholds
from foveal.scoring.scores import MATERIAL_CHANGE, score_creative
from foveal.scoring.whatif import whatif_search

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
#: The graph under test ("test" in the output; --graph) and the reference.
GRAPHS = ("int8", "fp32")


@dataclass
class Creative:
    name: str
    image: np.ndarray
    elements: tuple[Element, ...]
    format: str


@dataclass
class Pair:
    group: str
    label: str
    a: Creative
    b: Creative
    seconds: dict[str, float] = field(default_factory=dict)


def example_creatives() -> list[Creative]:
    pngs = sorted(EXAMPLES.glob("*.png")) + sorted((EXAMPLES / "references").glob("*.png"))
    out = []
    for png in pngs:
        pixels = decode(str(png)).pixels
        spec = load_elements(png.with_suffix(".json"), pixels.shape[:2])
        out.append(Creative(png.stem, pixels, tuple(spec.elements), spec.format))
    return out


def synthetic_creatives(count: int) -> list[Creative]:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import creatives as gen  # benchmarks/creatives.py: drawn ads with true boxes

    latin, cjk = gen.fonts()
    pics = gen.photos(gen.DATA)
    if not latin or not pics:
        print(f"no fonts or photos under {gen.DATA}: no synthetic creatives", file=sys.stderr)
        return []
    out = []
    for seed in range(count):
        img, truth = gen.make_creative(seed, pics, latin, cjk)
        pixels = np.asarray(img.convert("RGB"))
        spec = parse_elements(gen.truth_file(truth, img.size), pixels.shape[:2])
        out.append(Creative(f"synthetic_{seed:04d}", pixels, tuple(spec.elements), spec.format))
    return out


def typical_edits(c: Creative) -> list[Edit]:
    """Edits a creative team tries, sized to the creative: moves by an eighth of the image, scales, swaps."""
    h, w = c.image.shape[:2]
    names = {e.name for e in c.elements}
    dx, dy = max(8, w // 8), max(8, h // 8)
    edits: list[Edit] = []
    for name in ("cta", "headline", "logo", "product", "face"):
        if name in names:
            edits += [Move(name, 0, -dy), Move(name, 0, dy), Move(name, -dx, 0), Move(name, dx, 0)]
    for name in ("cta", "logo", "headline", "product"):
        if name in names:
            edits += [Scale(name, 1.25), Scale(name, 0.8)]
    for first, second in (("cta", "headline"), ("cta", "product"), ("logo", "cta"), ("face", "product")):
        if first in names and second in names:
            edits.append(Swap(first, second))
    return edits


def edit_pairs(c: Creative, group: str, limit: int) -> list[Pair]:
    pairs = []
    for edit in typical_edits(c):
        if len(pairs) >= limit:
            break
        try:
            edited = apply_edits(c.image, c.elements, [edit])
        except InputError:
            continue  # the edit leaves the image: a team could not make it either
        b = Creative(f"{c.name}+{edit}", edited.image, edited.elements, c.format)
        pairs.append(Pair(group, f"{c.name}: {edit}", c, b))
    return pairs


def build_pairs(examples: list[Creative], synthetic: list[Creative], edits_per_example: int,
                edits_per_synthetic: int) -> list[Pair]:
    pairs = [Pair("example vs example", f"{a.name} vs {b.name}", a, b)
             for i, a in enumerate(examples) for b in examples[i + 1:]]
    for c in examples:
        pairs += edit_pairs(c, "example edit", edits_per_example)
    by_format: dict[str, list[Creative]] = {}
    for c in synthetic:
        by_format.setdefault(c.format, []).append(c)
    for group in by_format.values():
        pairs += [Pair("synthetic vs synthetic", f"{a.name} vs {b.name}", a, b) for a, b in zip(group, group[1:])]
    for c in synthetic:
        pairs += edit_pairs(c, "synthetic edit", edits_per_synthetic)
    return pairs


def compare_on(engine: Engine, pair: Pair):
    start = time.perf_counter()
    map_a, map_b = engine.predict_batch([pair.a.image, pair.b.image], batch_size=2)
    seconds = time.perf_counter() - start
    scores_a = score_creative(map_a, pair.a.elements, format=pair.a.format)
    scores_b = score_creative(map_b, pair.b.elements, format=pair.b.format)
    return compare_scores(scores_a, scores_b), seconds


def pp(v: float) -> float:
    return round(100.0 * v, 3)


def measure_pairs(engines: dict[str, Engine], pairs: Sequence[Pair], deadline: float) -> list[dict[str, Any]]:
    rows = []
    for i, pair in enumerate(pairs):
        if time.monotonic() > deadline:
            print(f"time limit: stopped after {i} pairs", file=sys.stderr)
            break
        order = GRAPHS if i % 2 == 0 else GRAPHS[::-1]  # alternate so load drifts hit both graphs alike
        result = {}
        for g in order:
            result[g], pair.seconds[g] = compare_on(engines[g], pair)
        q, r = result[GRAPHS[0]], result["fp32"]
        elements = [{"name": eq.name, "kind": eq.kind, GRAPHS[0]: eq.change, "fp32": er.change,
                     "delta_test_pp": pp(eq.delta_share), "delta_fp32_pp": pp(er.delta_share)}
                    for eq, er in zip(q.elements, r.elements)]
        rows.append({"group": pair.group, "pair": pair.label, "verdict_test": q.verdict, "verdict_fp32": r.verdict,
                     "d_conversion_pp": {GRAPHS[0]: pp(q.delta_conversion), "fp32": pp(r.delta_conversion)},
                     "d_distractors_pp": {GRAPHS[0]: pp(q.delta_distractors), "fp32": pp(r.delta_distractors)},
                     "elements": elements, "seconds": dict(pair.seconds)})
    return rows


def measure_searches(engines: dict[str, Engine], searches: Sequence[tuple[Creative, str]],
                     deadline: float) -> list[dict[str, Any]]:
    rows = []
    for i, (c, element) in enumerate(searches):
        if time.monotonic() > deadline:
            print(f"time limit: stopped after {i} searches", file=sys.stderr)
            break
        out, seconds = {}, {}
        for g in (GRAPHS if i % 2 == 0 else GRAPHS[::-1]):
            start = time.perf_counter()
            try:
                body, _, n = whatif_search(engines[g], c.image, c.elements, element, batch_size=16,
                                           thresholds=Thresholds.of_card(engines[g].graph))
            except InputError:  # no valid position for this element on this creative
                break
            seconds[g] = time.perf_counter() - start
            out[g] = body
        if len(out) < 2:
            continue
        q, r = out[GRAPHS[0]]["search"], out["fp32"]["search"]
        fp32_share = {(cand["dx"], cand["dy"]): cand["share"] for cand in r["candidates"]}
        best_q, best_r = (q["best"][0]["dx"], q["best"][0]["dy"]), (r["best"][0]["dx"], r["best"][0]["dy"])
        top_q = [(b["dx"], b["dy"]) for b in q["best"]]
        top_r = [(b["dx"], b["dy"]) for b in r["best"]]
        recs = {g: [x["numbers"]["edit"] for x in out[g]["recommendations"]] for g in GRAPHS}
        rows.append({
            "creative": c.name, "element": element, "positions": len(r["candidates"]),
            "best_test": best_q, "best_fp32": best_r, "same_best": best_q == best_r,
            "top3_overlap": len(set(top_q) & set(top_r)),
            # What the test graph's pick costs on the fp32 map: fp32's best share minus its share at that pick.
            "regret_fp32_pp": pp(fp32_share[best_r] - fp32_share[best_q]),
            "best_gain_pp": {GRAPHS[0]: pp(q["best"][0]["delta_share"]), "fp32": pp(r["best"][0]["delta_share"])},
            "verdict_best": {GRAPHS[0]: q["best"][0]["verdict"], "fp32": r["best"][0]["verdict"]},
            "recommendations": recs, "same_recommendations": recs[GRAPHS[0]] == recs["fp32"],
            "recommends_any": {g: bool(recs[g]) for g in GRAPHS}, "seconds": seconds, "images": n})
    return rows


def summarise(rows: list[dict[str, Any]], searches: list[dict[str, Any]]) -> dict[str, Any]:
    def rate(k: int, n: int) -> str:
        return f"{k}/{n} = {100.0 * k / n:.1f}%" if n else "0/0"

    out: dict[str, Any] = {"pairs": len(rows)}
    groups = sorted({r["group"] for r in rows})
    for name, sub in [("all", rows)] + [(g, [r for r in rows if r["group"] == g]) for g in groups]:
        verdict_same = sum(r["verdict_test"] == r["verdict_fp32"] for r in sub)
        calls = [e for r in sub for e in r["elements"]]
        calls_same = sum(e[GRAPHS[0]] == e["fp32"] for e in calls)
        flips = sum({e[GRAPHS[0]], e["fp32"]} == {"gained", "lost"} for e in calls)
        out[name] = {"pairs": len(sub), "verdicts_agree": rate(verdict_same, len(sub)),
                     "element_calls_agree": rate(calls_same, len(calls)), "opposite_calls": flips,
                     "fp32_material_calls": sum(e["fp32"] != "no material change" for e in calls)}
    calls = [e for r in rows for e in r["elements"]]
    bad = [e for e in calls if e[GRAPHS[0]] != e["fp32"]]
    if calls:
        diff = np.array([abs(e["delta_test_pp"] - e["delta_fp32_pp"]) for e in calls])
        out["delta_error_pp_all_calls"] = {"median": round(float(np.median(diff)), 3),
                                           "p90": round(float(np.percentile(diff, 90)), 3),
                                           "p99": round(float(np.percentile(diff, 99)), 3),
                                           "max": round(float(diff.max()), 3)}
    if bad:
        ref = np.array([abs(e["delta_fp32_pp"]) for e in bad])
        err = np.array([abs(e["delta_test_pp"] - e["delta_fp32_pp"]) for e in bad])
        out["disagreeing_calls"] = {
            "count": len(bad), "fp32_abs_delta_pp": {"median": round(float(np.median(ref)), 3),
                                                     "max": round(float(ref.max()), 3)},
            "test_minus_fp32_pp": {"median": round(float(np.median(err)), 3), "max": round(float(err.max()), 3)}}
    vbad = [r for r in rows if r["verdict_test"] != r["verdict_fp32"]]
    out["disagreeing_verdicts"] = [{"pair": r["pair"], GRAPHS[0]: r["verdict_test"], "fp32": r["verdict_fp32"],
                                    "d_conversion_pp": r["d_conversion_pp"], "d_distractors_pp": r["d_distractors_pp"]}
                                   for r in vbad]
    secs = {g: np.array([r["seconds"][g] for r in rows]) for g in GRAPHS}
    if rows:
        ratio = secs["fp32"] / secs[GRAPHS[0]]
        out["compare_seconds"] = {"test_median": round(float(np.median(secs[GRAPHS[0]])), 3),
                                  "fp32_median": round(float(np.median(secs["fp32"])), 3),
                                  "fp32_over_test_median_ratio": round(float(np.median(ratio)), 3)}
    if searches:
        n = len(searches)
        ss = {g: np.array([s["seconds"][g] for s in searches]) for g in GRAPHS}
        regret = np.array([s["regret_fp32_pp"] for s in searches])
        out["searches"] = {
            "count": n, "same_best": rate(sum(s["same_best"] for s in searches), n),
            "top3_overlap_mean": round(float(np.mean([s["top3_overlap"] for s in searches])), 2),
            "same_recommendations": rate(sum(s["same_recommendations"] for s in searches), n),
            "same_recommends_any": rate(sum(len(set(s["recommends_any"].values())) == 1 for s in searches), n),
            "same_best_verdict": rate(sum(len(set(s["verdict_best"].values())) == 1 for s in searches), n),
            "regret_fp32_pp": {"median": round(float(np.median(regret)), 3), "max": round(float(regret.max()), 3)},
            "seconds": {"test_median": round(float(np.median(ss[GRAPHS[0]])), 2),
                        "fp32_median": round(float(np.median(ss["fp32"])), 2),
                        "fp32_over_test_median_ratio": round(float(np.median(ss["fp32"] / ss[GRAPHS[0]])), 3)}}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="JSON file for every pair's result and the summary")
    p.add_argument("--synthetic", type=int, default=40, help="synthetic creatives (default: %(default)s)")
    p.add_argument("--edits-per-example", type=int, default=14)
    p.add_argument("--edits-per-synthetic", type=int, default=3)
    p.add_argument("--searches", type=int, default=30,
                   help="position searches: the CTA, then the headline, of each example creative, then the CTA "
                        "of synthetic ones (default: %(default)s)")
    p.add_argument("--minutes", type=float, default=30.0, help="stop adding pairs and searches after this long")
    p.add_argument("--graph", choices=("int8", "fp16"), default="int8", help="the graph held against fp32")
    args = p.parse_args(argv)
    global GRAPHS
    GRAPHS = (args.graph, "fp32")
    deadline = time.monotonic() + 60.0 * args.minutes
    engines = {g: Engine(precision=g) for g in GRAPHS}
    examples = example_creatives()
    synthetic = synthetic_creatives(args.synthetic)
    pairs = build_pairs(examples, synthetic, args.edits_per_example, args.edits_per_synthetic)
    print(f"{len(pairs)} pairs", file=sys.stderr)
    load = os.getloadavg()
    rows = measure_pairs(engines, pairs, deadline)
    wanted = [(c, "cta") for c in examples] + [(c, "headline") for c in examples] + \
        [(c, "cta") for c in synthetic if any(e.name == "cta" for e in c.elements)]
    searches = measure_searches(engines, wanted[:args.searches], deadline)
    summary = summarise(rows, searches)
    summary["machine"] = {"cpus": os.cpu_count(), "load_average_start": [round(v, 1) for v in load],
                          "load_average_end": [round(v, 1) for v in os.getloadavg()],
                          "graphs": {g: e.graph_sha256[:8] for g, e in engines.items()},
                          "material_change_pp": MATERIAL_CHANGE * 100, "test": GRAPHS[0]}
    args.out.write_text(json.dumps({"summary": summary, "pairs": rows, "searches": searches}, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
