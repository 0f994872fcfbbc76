"""Calibration statistics, checked against scipy and by simulated campaigns with known strength and drift."""
from __future__ import annotations

import html
import json
import re
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import scipy.stats as ss

from foveal.calibration import calibrate
from foveal.calibration.analysis import Settings, analyse, build_data, decile_table, segment_name
from foveal.calibration.stats import (benjamini_hochberg, fisher_drop_test, kendall_weighted, pooled_rate_interval,
                                      rank_correlation, resample_weights, spearman_weighted, wilson_interval)
from foveal.calibration.thresholds import propose, separation
from foveal.cli import main
from foveal.errors import InputError
from foveal.scoring.norms import load_norms, norms_from_dict
from foveal.store import Store
from tests.campaign_sim import DAY0, simulate
from tests.store_fixtures import scored, without_root_override

WINDOW = 28


@pytest.mark.parametrize("n", [5, 37, 120])
def test_weighted_rank_correlations_equal_scipy_on_the_resample(n):
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    y = x + rng.normal(size=n)
    y[: n // 5] = y[0]  # ties
    w = resample_weights(n, 20, rng)
    for row in w:
        sample = np.repeat(np.arange(n), row.astype(int))
        assert spearman_weighted(x, y, row[None])[0] == pytest.approx(ss.spearmanr(x[sample], y[sample])[0], abs=1e-12)
        assert kendall_weighted(x, y, row[None])[0] == pytest.approx(ss.kendalltau(x[sample], y[sample])[0], abs=1e-12)


def test_rank_correlation_interval_covers_and_degenerate_cases():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    c = rank_correlation(x, x + rng.normal(size=200), rng)
    assert c.spearman_ci[0] < c.spearman < c.spearman_ci[1] and c.kendall_ci[0] < c.kendall < c.kendall_ci[1]
    # coverage: bivariate normal with r = 1/sqrt(2) has Spearman rho (6/pi) asin(r/2)
    truth = 6 / np.pi * np.arcsin(0.5 ** 0.5 / 2)
    hits = []
    for _ in range(30):
        x = rng.normal(size=60)
        c = rank_correlation(x, x + rng.normal(size=60), rng, bootstrap=300)
        hits.append(c.spearman_ci[0] <= truth <= c.spearman_ci[1])
    assert np.mean(hits) >= 0.85
    constant = rank_correlation(np.ones(10), rng.random(10), rng)
    assert constant.spearman is None and constant.spearman_ci is None
    assert rank_correlation(np.ones(2), np.ones(2), rng).n == 2


def test_benjamini_hochberg_and_fisher_test():
    p = np.random.default_rng(1).random(40) ** 2
    assert np.allclose(benjamini_hochberg(p), ss.false_discovery_control(p))
    z, pv = fisher_drop_test(0.6, 80, 0.0, 80)
    assert z > 3 and pv < 1e-3
    assert fisher_drop_test(0.3, 50, 0.5, 50)[1] > 0.5  # a rise is not a drop
    z, pv = fisher_drop_test(0.99, 40, -0.15, 40)  # a collapse: p far below 1e-16, not rounded to 0
    assert z > 10 and pv == pytest.approx(ss.norm.sf(z), rel=1e-9) and pv > 0


def test_a_perfect_reference_rank_correlation_is_no_drift_by_itself():
    """rho = 1 was clipped at 0.999999 (z 7.25): a fall from 1.00 to 0.95 on 10 creatives came out near-certain
    (p 3e-17), and the same small windows drawn from one relationship were flagged twice as often as alpha."""
    assert fisher_drop_test(1.0, 10, 0.95, 10)[1] > 0.05
    assert fisher_drop_test(1.0, 12, 0.99, 12)[1] > 0.05
    assert fisher_drop_test(1.0, 40, 0.2, 40)[1] < 1e-6  # a real collapse still is one
    rng = np.random.default_rng(3)
    flagged = 0
    for _ in range(400):  # no change between the windows: near-perfect rankings of 12 creatives each
        x = rng.normal(size=(2, 12))
        rho = [ss.spearmanr(xi, xi + rng.normal(scale=0.03, size=12))[0] for xi in x]
        flagged += fisher_drop_test(rho[0], 12, rho[1], 12)[1] <= 0.05
    assert flagged / 400 <= 0.05, flagged


def _flags(doc) -> np.ndarray:
    return np.array([s["flagged"] for s in doc["segments"]])


@pytest.mark.parametrize("seed", [11, 12])
def test_simulated_drift_is_detected_within_one_window_and_stable_segments_rarely_flagged(seed):
    """300 segments (100 drift at a known day from strength 0.5 to 0), realistic reach; run as a user would, one
    window (28 days, the documented delay) after the drift: >= 90 % of drifting segments flagged, <= 5 % of stable
    ones; and before the drift, no more false alarms among the future drifters than among the others."""
    drift_day = 2 * WINDOW
    data = simulate(300, drift_day + WINDOW, drifting=100, drift_day=drift_day, seed=seed)
    after = _flags(analyse(data, Settings(window_days=WINDOW, step_days=WINDOW, bootstrap=0)))
    assert after[:100].mean() >= 0.90
    assert after[100:].mean() <= 0.05
    before = _flags(analyse(data, Settings(window_days=WINDOW, step_days=WINDOW, bootstrap=0,
                                           until=date.fromordinal(DAY0 + drift_day - 1))))
    assert before.mean() <= 0.05


def test_no_drift_anywhere_flags_almost_nothing():
    flags = _flags(analyse(simulate(200, 3 * WINDOW, seed=5), Settings(window_days=WINDOW, step_days=WINDOW,
                                                                         bootstrap=0)))
    assert flags.mean() <= 0.05


def test_a_segments_intervals_do_not_depend_on_the_other_segments():
    """One generator for the whole run made a segment's bootstrap intervals move whenever a segment was added to
    the store (or a new one appeared in the data), though nothing about that segment changed."""
    data = simulate(3, 2 * WINDOW, seed=8)
    settings = Settings(window_days=WINDOW, step_days=WINDOW, bootstrap=200)
    whole = {s["name"]: s for s in analyse(data, settings)["segments"]}
    last = list(data.segments)[-1]
    alone = analyse(replace(data, segments={last: data.segments[last]}), settings)["segments"]
    assert len(whole) == 3 and [s["name"] for s in alone] == [segment_name(last)]
    mine = whole[segment_name(last)]
    assert alone[0]["windows"] == mine["windows"] and alone[0]["deciles"] == mine["deciles"]
    assert any(w["scores"] for w in mine["windows"]) and mine["deciles"]


def test_segments_get_distinct_file_names_whatever_their_values():
    """A segment's slug names its proposed norms file: two segments of one slug wrote one file, the second over the
    first (a/b and a b; Retail and retail on a case-insensitive disk), and a long one could not be written at all."""
    data = simulate(5, 2 * WINDOW, seed=1)
    values = ["a/b", "a b", "A/B", "x" * 200, "retail"]
    data = replace(data, segments={(("vertical", v),): m for v, m in zip(values, data.segments.values())})
    slugs = [s["slug"] for s in analyse(data, Settings(window_days=WINDOW, step_days=WINDOW, bootstrap=100))[
        "segments"]]
    assert len({s.lower() for s in slugs}) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9._-]{1,100}", s) for s in slugs)
    assert "vertical-retail" in slugs  # a name that is already distinct stays as it reads


def test_deciles_rise_with_a_predictive_score():
    data = simulate(1, 60, strength=0.8, launches_per_day=6, seed=3)
    doc = analyse(data, Settings(window_days=WINDOW, step_days=WINDOW, bootstrap=200))
    seg = doc["segments"][0]
    rates = [row["rate"] for row in seg["deciles"]]
    assert len(rates) == 10 and rates[-1] > 1.5 * rates[0]
    lo, hi = seg["deciles"][0]["rate_ci"]
    assert lo <= rates[0] <= hi
    recent = seg["windows"][-1]["scores"]["cta_share"]
    assert 0.3 < recent["spearman"] < 0.9 and recent["spearman_ci"][0] < recent["spearman"] < recent["spearman_ci"][1]


def test_decile_table_uses_fewer_bins_for_few_creatives():
    rng = np.random.default_rng(0)
    rows = decile_table(rng.random(23), rng.integers(0, 10, 23), np.full(23, 100), rng, 100)
    assert len(rows) == 4 and sum(r["n"] for r in rows) == 23
    # --min-creatives 5 to 9 lets a window of fewer than 10 through: one bin, not two of fewer than 5
    rows = decile_table(rng.random(7), rng.integers(0, 10, 7), np.full(7, 100), rng, 100)
    assert [r["n"] for r in rows] == [7]


def test_a_rate_interval_is_never_narrower_than_its_counting_noise():
    """Resampling creatives that all had 0 clicks gave the interval [0, 0], as if a rate of 0 were certain."""
    rng = np.random.default_rng(0)
    rate, ci = pooled_rate_interval(np.zeros(8), np.full(8, 1000.0), rng, 500)
    # Wilson's upper end for 0 of n is z² / (n + z²)
    z2 = ss.norm.ppf(0.975) ** 2
    assert rate == 0 and ci[0] == 0 and ci[1] == pytest.approx(z2 / (8000 + z2), rel=1e-9)
    lo, hi = wilson_interval(10, 100)  # the textbook case
    assert (round(lo, 4), round(hi, 4)) == (0.0552, 0.1744)
    # Creatives that differ: the bootstrap is the wider, and is kept as it is.
    num, den = np.array([5, 50, 10, 80, 3, 40.0]), np.full(6, 1000.0)
    _, wide = pooled_rate_interval(num, den, np.random.default_rng(1), 500)
    boot = np.random.default_rng(1)
    draws = [(num[i].sum() / den[i].sum()) for i in boot.integers(0, 6, (500, 6))]
    assert wide[1] - wide[0] > 2 * (wilson_interval(188, 6000)[1] - wilson_interval(188, 6000)[0])
    assert wide[0] < np.quantile(draws, 0.1) and wide[1] > np.quantile(draws, 0.9)


def _threshold_case(centre: float, seed: int) -> dict:
    """A segment whose creatives sit around the ``centre`` percentile of the norms (stronger or weaker creatives
    than the norms' references) and whose outcome rises with the share: the above-median performers are those
    above about the median percentile, so the best threshold is near ``centre``, not at the current 70."""
    rng = np.random.default_rng(seed)
    norm = np.sort(rng.beta(2, 18, 400))
    u = rng.beta(centre / 10, (100 - centre) / 10, 300)          # where the segment's creatives fall in the norms
    share = np.quantile(norm, u)
    pct = 100.0 * np.searchsorted(norm, share, side="right") / len(norm)
    rate = 0.01 * np.exp(12 * share + rng.normal(0, 0.15, 300))  # outcome follows the share, with noise
    return propose(pct, rate, current=70.0)


@pytest.mark.parametrize("centre, direction", [(88, 1), (45, -1)])
def test_proposed_threshold_moves_the_right_way(centre, direction):
    for seed in range(5):
        result = _threshold_case(centre, seed)
        moved = result["after"]["pass_percentile"] - 70.0
        assert np.sign(moved) == direction and abs(result["after"]["pass_percentile"] - centre) <= 10
        assert result["after"]["youden_j"] > result["before"]["youden_j"]


def test_threshold_stays_when_the_current_one_is_best():
    rng = np.random.default_rng(0)
    pct = rng.uniform(0, 100, 200)
    rate = np.where(pct >= 70, 0.02, 0.01)
    result = propose(pct, rate, current=70.0)
    assert not result["changed"] and result["after"]["youden_j"] == pytest.approx(1.0)


def test_before_judges_each_creative_by_its_own_formats_threshold():
    """A segment of two formats whose norms set different pass marks: "before" is what happens now, each creative
    judged by its own format's mark (it used to judge all by the most common format's)."""
    pct = np.array([80.0, 85.0, 95.0, 60.0, 75.0, 92.0, 50.0, 65.0])
    current = np.array([90.0, 90.0, 90.0, 70.0, 70.0, 70.0, 70.0, 70.0])  # three of 300x250 at 90, five at 70
    rate = np.array([0.01, 0.01, 0.03, 0.01, 0.03, 0.03, 0.01, 0.01])
    before = propose(pct, rate, current)["before"]
    passed = pct >= current  # 95 (of the 90s), 75 and 92 (of the 70s)
    assert before["pass_rate"] == pytest.approx(passed.mean()) == pytest.approx(3 / 8)
    assert before["youden_j"] == pytest.approx(1.0)  # the passes are exactly the three top performers
    assert before["pass_percentile"] == 70.0  # the most common mark is the one shown
    assert propose(pct, rate, np.full(8, 70.0))["before"]["youden_j"] == pytest.approx(1 - 2 / 5)  # 80, 85 pass


def test_proposed_threshold_j_is_optimistic_as_the_docs_say():
    # docs/CALIBRATION.md: the after J is measured on the creatives it was chosen on; on new creatives of the same
    # segment it is lower, and most proposals move although the current threshold does about as well
    rng = np.random.default_rng(7)

    def segment(n):
        u = rng.random(n)
        return np.ceil(100 * u), np.exp(0.3 * ss.norm.ppf(u) + rng.normal(size=n))
    fresh_pct, fresh_rate = segment(4000)
    fresh_top = fresh_rate > np.median(fresh_rate)
    chosen, fresh, moved = [], [], []
    for _ in range(100):
        result = propose(*segment(40), current=70.0)
        chosen.append(result["after"]["youden_j"])
        fresh.append(separation(fresh_pct, fresh_top, result["after"]["pass_percentile"])["youden_j"])
        moved.append(result["changed"])
    assert np.mean(chosen) - np.mean(fresh) > 0.08 and np.mean(moved) > 0.8
    assert np.mean(fresh) < separation(fresh_pct, fresh_top, 70.0)["youden_j"] + 0.025


# --- the whole path: store, outcomes file, `foveal calibrate`, proposed norms -----------------------------------


def _campaign_store(url: str, tmp_path: Path, seed: int = 0) -> Path:
    """Two verticals of 40 creatives each; 'travel' stops following the CTA share from day 54 (the last window,
    days 54..81, lies wholly after it).  Records the creatives; returns the outcomes CSV (not yet imported) and
    writes norms.json beside it."""
    rng = np.random.default_rng(seed)
    lines = ["creative_id,date,impressions,clicks,conversions,source"]
    shares = []
    with Store(url) as store:
        for v, vertical in enumerate(("retail", "travel")):
            for i in range(40):
                weight = float(rng.beta(2, 12))
                scores, provenance = scored(1000 * v + i, cta_weight=weight)
                store.record(f"{vertical}-{i}", scores, provenance, vertical=vertical, tags=["sim"])
                share = scores.element("cta").share
                shares.append(share)
                z = (share - 0.13) / 0.08
                for d in range(0, 84, 3):  # every creative runs the whole time, reported every third day
                    strength = 0.0 if vertical == "travel" and d >= 54 else 0.7
                    impressions = int(rng.poisson(1500))
                    ctr = 0.01 * np.exp(strength * z + 0.15 * rng.normal())
                    clicks = int(rng.binomial(impressions, min(ctr, 0.5)))
                    day = date.fromordinal(DAY0 + d).isoformat()
                    lines.append(f"{vertical}-{i},{day},{impressions},{clicks},{int(rng.binomial(clicks, .1))},ads")
    (tmp_path / "outcomes.csv").write_text("\n".join(lines) + "\n")
    norms = {"foveal_norms": 2, "quantity": "share",
             "model": {"name": "test-model", "sha256": "cd" * 32, "graph_sha256": "ab" * 32, "precision": "fp32"},
             "formats": {"80x60": {"creatives": 80, "kinds": {"cta": sorted(shares), "headline": [0.1, 0.2]}}}}
    (tmp_path / "norms.json").write_text(json.dumps(norms))
    return tmp_path / "outcomes.csv"


def test_calibrate_cli_end_to_end(store_url, tmp_path, capsys):
    outcomes = _campaign_store(store_url, tmp_path)
    assert main(["outcomes", "import", str(outcomes), "--db", store_url, "-q"]) == 0
    out = tmp_path / "cal"
    assert main(["calibrate", "--db", store_url, "--by", "vertical", "--window", "4w", "--step", "28d",
                 "--bootstrap", "200", "--norms", str(tmp_path / "norms.json"), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "may be drifting on \u2068vertical=travel\u2069:" in err and "vertical=retail" not in err
    doc = json.loads((out / "calibration.json").read_text())
    segs = {s["name"]: s for s in doc["segments"]}
    assert segs["vertical=travel"]["flagged"] and not segs["vertical=retail"]["flagged"]
    assert segs["vertical=retail"]["drift"]["cta_share"]["recent_spearman"] > 0.5
    retail_window = segs["vertical=retail"]["windows"][-1]["scores"]["cta_share"]
    assert retail_window["n"] == 40 and retail_window["kendall_ci"] is not None
    assert doc["model"]["graph_sha256"] == "ab" * 32 and "Benjamini-Hochberg" in doc["drift_method"]
    assert len(segs["vertical=retail"]["deciles"]) == 8  # 40 creatives: 8 bins of 5
    page = (out / "calibration.html").read_text()
    assert page.count("<svg") >= 6 and "may be drifting" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # self-contained: nothing fetched
    # thresholds: proposed for the segment, written beside (never over) the input norms, and adoptable
    assert "cta" in segs["vertical=retail"]["thresholds"]
    assert "cta" not in segs["vertical=travel"]["thresholds"]  # the score no longer predicts there: no proposal
    assert "does not predict" in segs["vertical=travel"]["thresholds_skipped"]["cta"]
    before = (tmp_path / "norms.json").read_text()
    for name in doc["segments"]:
        if name.get("proposed_norms"):
            proposed = load_norms(out / name["proposed_norms"])
            kind_pass = proposed.pass_percentiles["80x60"]["cta"]
            assert kind_pass == name["thresholds"]["cta"]["after"]["pass_percentile"]
    assert (tmp_path / "norms.json").read_text() == before
    # a rerun into the folder removes the proposals it no longer makes: adopting one would apply a stale threshold
    stale = out / "proposed_norms" / "vertical-travel.json"
    stale.write_text((out / segs["vertical=retail"]["proposed_norms"]).read_text())
    assert main(["calibrate", "--db", store_url, "--by", "vertical", "--window", "4w", "--step", "28d",
                 "--bootstrap", "200", "--norms", str(tmp_path / "norms.json"), "-o", str(out), "-q"]) == 0
    assert not stale.exists() and (out / segs["vertical=retail"]["proposed_norms"]).is_file()


def test_a_segment_with_too_few_creatives_for_a_threshold_says_so(tmp_path):
    """With --norms, a kind left without a proposal is explained on the page and in calibration.json, also when the
    segment has too few creatives with a percentile (a run that proposes nothing must not be silent about why)."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(["outcomes", "import", str(_campaign_store(url, tmp_path)), "--db", url, "-q"]) == 0
    out = tmp_path / "cal"
    assert main(_calibrate_args(url, tmp_path, out, "--min-creatives", "25")) == 0  # 40 creatives, 50 needed
    doc = json.loads((out / "calibration.json").read_text())
    retail = next(s for s in doc["segments"] if s["name"] == "vertical=retail")
    assert retail["thresholds"] == {}
    assert "40 creatives" in retail["thresholds_skipped"]["cta"] and "50" in retail["thresholds_skipped"]["cta"]
    assert "no logo" in retail["thresholds_skipped"]["logo"]  # the norms hold no logo shares for its format
    assert "top10" not in retail["thresholds_skipped"]  # a creative's score, not an element kind
    assert html.escape(retail["thresholds_skipped"]["cta"]) in (out / "calibration.html").read_text()


def _calibrate_args(url: str, tmp_path: Path, out: Path, *extra: str) -> list[str]:
    return ["calibrate", "--db", url, "--by", "vertical", "--window", "4w", "--step", "28d", "--bootstrap", "100",
            "--norms", str(tmp_path / "norms.json"), "-o", str(out), "-q", *extra]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_calibration_that_fails_midway_leaves_the_previous_one_whole(tmp_path, monkeypatch, capsys):
    import importlib

    module = importlib.import_module("foveal.calibration.calibrate")  # the package's `calibrate` is the function
    url = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(["outcomes", "import", str(_campaign_store(url, tmp_path)), "--db", url, "-q"]) == 0
    out = tmp_path / "cal"
    assert main(_calibrate_args(url, tmp_path, out)) == 0
    before = _files(out)
    assert "calibration.html" in before and any(name.startswith("proposed_norms/") for name in before)
    write_text = module.write_text

    def disk_full_at_the_page(path, text):
        if Path(path).name == "calibration.html":
            raise InputError(f"cannot write {path}: No space left on device; free some space, then run again")
        write_text(path, text)

    monkeypatch.setattr(module, "write_text", disk_full_at_the_page)
    assert main(_calibrate_args(url, tmp_path, out, "--seed", "1")) == 1  # other intervals: another set
    assert "No space left on device" in capsys.readouterr().err
    assert _files(out) == before  # the previous run's set, whole: not new numbers beside old proposals
    monkeypatch.undo()
    assert main(_calibrate_args(url, tmp_path, out, "--seed", "1")) == 0
    assert json.loads((out / "calibration.json").read_text())["settings"]["seed"] == 1
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing left beside the folder


def test_calibrate_replaces_only_a_folder_of_its_own_and_never_an_input(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(["outcomes", "import", str(_campaign_store(url, tmp_path)), "--db", url, "-q"]) == 0
    mine = tmp_path / "reports"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(_calibrate_args(url, tmp_path, mine)) == 1
    err = capsys.readouterr().err
    assert f"{mine}: holds notes.txt besides a calibration's files" in err and err.count("\n") == 1
    assert _files(mine) == {"notes.txt": b"mine"}
    # the norms given are an earlier proposal, in the folder the run would replace
    adopted = tmp_path / "cal" / "proposed_norms" / "vertical-old.json"
    adopted.parent.mkdir(parents=True)
    adopted.write_bytes((tmp_path / "norms.json").read_bytes())
    args = _calibrate_args(url, tmp_path, tmp_path / "cal")
    args[args.index("--norms") + 1] = str(adopted)
    assert main(args) == 1
    assert f"refusing to write {adopted}: it is one of this run's inputs" in capsys.readouterr().err
    assert adopted.read_bytes() == (tmp_path / "norms.json").read_bytes()
    # the working folder: replaced, it would leave the shell in a deleted folder
    monkeypatch.chdir(tmp_path / "cal" / "proposed_norms")
    assert main(_calibrate_args(url, tmp_path, Path(".."))) == 1
    assert "the current folder is in it" in capsys.readouterr().err


def test_norms_of_another_graph_are_refused_unless_allowed(tmp_path, capsys):
    """A share is comparable only with norms of the graph that predicted it (as `foveal score --norms` checks):
    percentiles in another graph's norms, and thresholds proposed from them, mean nothing."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(["outcomes", "import", str(_campaign_store(url, tmp_path)), "--db", url, "-q"]) == 0
    norms = json.loads((tmp_path / "norms.json").read_text())
    norms["model"]["graph_sha256"] = "ef" * 32
    (tmp_path / "norms.json").write_text(json.dumps(norms))
    assert main(_calibrate_args(url, tmp_path, tmp_path / "cal")) == 1
    err = capsys.readouterr().err
    assert "was built with model 'test-model' fp32 graph (sha256 efefefefefef…) but scores come from" in err
    assert "shares from different graphs are not comparable" in err and err.count("\n") == 1
    assert not (tmp_path / "cal").exists()
    assert main([*_calibrate_args(url, tmp_path, tmp_path / "cal"), "--allow-model-mismatch"]) == 0
    assert "warning: " in capsys.readouterr().err
    doc = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    assert "shares from different graphs are not comparable" in doc["norms_warning"]


def test_calibrate_never_writes_over_its_own_store(tmp_path, capsys):
    # a store file that happens to bear an output's name, in the output folder
    out = tmp_path / "cal"
    out.mkdir()
    store = out / "calibration.json"
    outcomes = _campaign_store(f"sqlite:///{store}", tmp_path)
    assert main(["outcomes", "import", str(outcomes), "--db", str(store), "-q"]) == 0
    before = store.read_bytes()
    assert main(["calibrate", "--db", str(store), "--bootstrap", "100", "-o", str(out), "-q"]) == 1
    assert "it is one of this run's inputs" in capsys.readouterr().err
    assert store.read_bytes() == before


def test_calibrate_reads_a_store_it_may_not_write(tmp_path):
    """Calibration only reads: a store file without write permission, in a folder without it, is calibrated."""
    import os
    import subprocess
    import sys

    import foveal

    folder = tmp_path / "archive"
    folder.mkdir()
    db = folder / "foveal.db"
    outcomes = _campaign_store(f"sqlite:///{db}", tmp_path)
    assert main(["outcomes", "import", str(outcomes), "--db", str(db), "-q"]) == 0
    db.chmod(0o444)
    folder.chmod(0o555)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.dirname(foveal.__file__)),
                                                       str(Path(__file__).resolve().parents[1])])}
    try:
        run = subprocess.run(without_root_override([sys.executable, "-m", "foveal", "calibrate", "--db", str(db),
                                                    "--bootstrap", "100", "-q", "-o", str(tmp_path / "cal")]),
                             env=env, capture_output=True, text=True, timeout=300)
    finally:
        folder.chmod(0o755)
    assert run.returncode == 0, run.stderr
    assert json.loads((tmp_path / "cal" / "calibration.json").read_text())["data"]["creatives"] == 80
    assert sorted(p.name for p in folder.iterdir()) == ["foveal.db"]


@pytest.mark.parametrize("metric", ["ctr", "cvr"])
def test_sqlite_and_postgresql_stores_give_the_same_calibration(metric, postgres_server, tmp_path):
    import uuid

    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_server.replace("postgresql+psycopg", "postgresql") + "/postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    docs = []
    for url, folder in ((f"sqlite:///{tmp_path / 'f.db'}", tmp_path / "lite"), (f"{postgres_server}/{name}",
                                                                                   tmp_path / "pg")):
        folder.mkdir()
        outcomes = _campaign_store(url, folder)
        # a second source on some days, one without conversions: summed per day, conversions then unknown
        extra = folder / "extra.csv"
        extra.write_text("creative_id,date,impressions,clicks,conversions,source\n" + "".join(
            f"retail-{i},{date.fromordinal(DAY0 + 3 * i).isoformat()},700,{i},{'' if i % 2 else i // 4},other\n"
            for i in range(20)))
        with Store(url) as store:
            store.import_outcomes(outcomes)
            store.import_outcomes(extra)
            docs.append(calibrate(store, Settings(by=("vertical", "tag"), metric=metric, min_clicks=5,
                                                  bootstrap=100), norms=load_norms(folder / "norms.json")).document)
    assert docs[0] == docs[1] and docs[0]["segments"][0]["windows"][-1]["scores"]


def test_adopted_norms_change_who_passes():
    scores, _ = scored(3, cta_weight=0.1)
    values = [0.05, 0.08, 0.09, 0.11, 0.2]
    base = {"foveal_norms": 1, "quantity": "share", "model": {"name": "m", "sha256": "x"},
            "formats": {"80x60": {"creatives": 5, "kinds": {"cta": values}}}}
    from foveal.scoring.scores import score_creative
    from foveal.saliency_map import SaliencyMap
    from foveal.scoring.elements import make_element

    smap = SaliencyMap(np.full((60, 80), 1 / 4800, np.float32))
    cta = [make_element("cta", "cta", (0, 0, 20, 24), (60, 80))]  # share 0.1: percentile 60
    plain = score_creative(smap, cta, norms=norms_from_dict(base))
    stricter = score_creative(smap, cta, norms=norms_from_dict(
        {**base, "formats": {"80x60": {**base["formats"]["80x60"], "pass_percentiles": {"cta": 50}}}}))
    assert plain.elements[0].passed is False and stricter.elements[0].passed is True
    with pytest.raises(InputError, match="pass_percentiles"):
        norms_from_dict({**base, "formats": {"80x60": {**base["formats"]["80x60"], "pass_percentiles": {"logo": 50}}}})


def test_calibrate_errors(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'e.db'}"
    assert main(["calibrate", "--db", url, "-o", str(tmp_path / "o")]) == 1
    assert "no store at" in capsys.readouterr().err and not (tmp_path / "e.db").exists()
    Store(url).close()
    assert main(["calibrate", "--db", url, "-o", str(tmp_path / "o")]) == 1
    assert "no predictions" in capsys.readouterr().err
    with Store(url) as store:
        store.record("a", *scored(1))
    assert main(["calibrate", "--db", url, "-o", str(tmp_path / "o")]) == 1
    assert "no outcomes" in capsys.readouterr().err
    with Store(url) as store:
        store.record("b", *scored(2, graph="ef" * 32))
    assert main(["calibrate", "--db", url, "-o", str(tmp_path / "o")]) == 1
    assert "choose one with --graph (a prefix of its sha256)" in capsys.readouterr().err
    (tmp_path / "o.csv").write_text("creative_id,date,impressions,clicks\na,2024-01-01,5000,10\n")
    assert main(["outcomes", "import", str(tmp_path / "o.csv"), "--db", url, "-q"]) == 0
    assert main(["calibrate", "--db", url, "--graph", "ab", "-o", str(tmp_path / "o")]) == 1
    assert "less than one 28-day window" in capsys.readouterr().err
    for option, message in [(["--by", "colour"], "argument --by: colour: segment by distinct fields"),
                            (["--window", "0d"], "argument --window: '0d': expected a number of days like 28d"),
                            (["--pass-percentile", "0"], "argument --pass-percentile: must be a number in (0, 100]"),
                            (["--pass-percentile", "150"], "argument --pass-percentile: must be a number in (0, 100]"),
                            (["--seed", "-1"], "argument --seed: must be at least 0, got -1"),
                            (["--bootstrap", "99"], "argument --bootstrap: must be from 100 to 100000, got 99"),
                            (["--bootstrap", "100000000"], "argument --bootstrap: must be from 100 to 100000"),
                            # was exit 1, in the library's words ("window 2d, step 3d")
                            (["--window", "2d", "--step", "3d"], "error: --step 3d is longer than --window 2d")]:
        with pytest.raises(SystemExit) as stop:  # wrong on its face: a usage error, before the store is opened
            main(["calibrate", "--db", url, "--graph", "ab", *option, "-o", str(tmp_path / "o")])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and message in err and err.count("\n") == 1, err
    assert main(["calibrate", "--db", url, "--graph", "ab", "-o", str(tmp_path / "o.csv")]) == 1  # before any work
    assert f"error: -o {tmp_path / 'o.csv'}: exists and is not a folder; name a folder" in capsys.readouterr().err
    for option, message in [(["--window", "5d", "--until", "1900-01-01"],  # the default step: 7d, or the window
                             "error: until 1900-01-01: before the first outcome; choose a day from 2024-01-01"),
                            (["--window", "2d", "--step", "1d", "--until", "1900-01-01"],
                             "error: until 1900-01-01: before the first outcome; choose a day from 2024-01-01"),
                            (["--window", "2d", "--step", "1d", "--until", "9999-12-31"],
                             "error: until 9999-12-31: 2+ days after the last outcome")]:
        assert main(["calibrate", "--db", url, "--graph", "ab", *option, "-o", str(tmp_path / "o")]) == 1
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("day", ["20240101", "2024-W01-1", "2024-1-1", "\u0662\u0660\u0662\u0664-01-01", "2024-02-30"])
def test_until_takes_only_the_documented_date_form(day, tmp_path, capsys):
    # date.fromisoformat took the first two (Python 3.11): the docs promise YYYY-MM-DD
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", "--db", str(tmp_path / "none.db"), "--until", day, "-o", str(tmp_path / "o")])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --until: {day!r} is not a date (YYYY-MM-DD)" in err and err.count("\n") == 1


@pytest.mark.parametrize("seed", [-1, 1.5, "7"])
def test_settings_refuse_a_seed_numpy_cannot_take(seed):
    """The Python API's seed is checked up front like the CLI's (1.5 once passed and failed at the first resample)."""
    with pytest.raises(InputError, match=f"seed must be a whole number >= 0, got {seed!r}"):
        Settings(seed=seed)


@pytest.mark.parametrize("score", ["", " ", "cta", "cta_share ", "background_share", "other_elements_share", 7])
def test_settings_refuse_a_score_no_store_holds(score):
    """Such a score was refused only once the store's predictions and outcomes had been read."""
    with pytest.raises(InputError, match="^score "):
        Settings(score=score)


@pytest.mark.parametrize("score", ["cta_share", "focus", "top10_share", "conversion_share", "other_share"])
def test_settings_take_every_predicted_score(score):
    assert Settings(score=score).primary == score


def test_bootstrap_memory_is_bounded_whatever_the_resample_count():
    import tracemalloc

    rng = np.random.default_rng(0)
    score = rng.random(300)
    rate = score + rng.random(300)
    tracemalloc.start()
    try:
        corr = rank_correlation(score, rate, np.random.default_rng(1), 20_000)
        pooled_rate_interval(rng.integers(1, 50, 300), rng.integers(100, 200, 300), np.random.default_rng(2), 20_000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 80e6  # about 35 MB in chunks; the (20000, 300) matrices at once took 190 MB
    # the chunks draw the same resamples as one matrix would
    rhos = spearman_weighted(score, rate, resample_weights(300, 20_000, np.random.default_rng(1)))
    assert corr.spearman_ci == pytest.approx(tuple(np.quantile(rhos, [0.025, 0.975])))
    with pytest.raises(InputError, match="^bootstrap 100001: use at most 100000"):
        Settings(bootstrap=100_001)


def test_cvr_uses_conversions_over_clicks_and_skips_unknown_conversions():
    predictions = [{"creative_id": f"c{i}", "vertical": "v", "format": "f", "tags": [], "model": "m",
                    "graph_sha256": "g", "precision": "fp32", "scores": {"conversion_share": i / 30}}
                   for i in range(30)]
    rows = []
    for i in range(30):
        for d in range(28):
            conversions = None if (i == 0 and d == 3) else (i + d) % 4 + i // 3
            rows.append((f"c{i}", date.fromordinal(DAY0 + d), 2000, 40, conversions))
    data = build_data(predictions, rows, ())
    doc = analyse(data, Settings(metric="cvr", bootstrap=100, window_days=28))
    window = doc["segments"][0]["windows"][-1]
    assert window["creatives_with_outcomes"] == 29  # c0 has a day of unknown conversions
    assert window["scores"]["conversion_share"]["spearman"] > 0.9
    with pytest.raises(InputError, match="^score 'cta_share': no such score"):
        analyse(data, Settings(score="cta_share", window_days=28))


def test_cvr_with_min_clicks_0_leaves_out_creatives_without_clicks(tmp_path, capsys):
    # a creative with no clicks has no conversion rate (0/0): it must not enter the ranks, bins or scatter as NaN
    predictions = [{"creative_id": f"c{i}", "vertical": "v", "format": "f", "tags": [], "model": "m",
                    "graph_sha256": "g", "precision": "fp32", "scores": {"conversion_share": i / 30}}
                   for i in range(30)]
    rows = [(f"c{i}", date.fromordinal(DAY0 + d), 2000, 0 if i < 5 else 40, 0 if i < 5 else i % 7)
            for i in range(30) for d in range(28)]
    with np.errstate(all="raise"):  # no 0/0 anywhere
        doc = analyse(build_data(predictions, rows, ()), Settings(metric="cvr", min_clicks=0, bootstrap=100))
    segment = doc["segments"][0]
    assert segment["windows"][-1]["creatives_with_outcomes"] == 25
    assert segment["windows"][-1]["scores"]["conversion_share"]["n"] == 25
    assert all(np.isfinite(point[1]) for point in segment["scatter"]["recent"]["points"])
    assert all(np.isfinite(row["rate"]) for row in segment["deciles"])


def test_one_outcome_dated_centuries_early_adds_one_window_not_one_per_step():
    """An export's 0001-01-01 made a window every step from year 1 on: 125 MB of calibration.json, or past a minute
    with --step 1d; windows that hold no outcome are left out."""
    predictions = [{"creative_id": f"c{i}", "vertical": "v", "format": "f", "tags": [],
                    "scores": {"cta_share": i / 30}} for i in range(30)]
    rows = [(f"c{i}", date.fromordinal(DAY0 + d), 2000, 20 + i, None) for i in range(30) for d in range(60)]
    clean = analyse(build_data(predictions, rows, ()), Settings(bootstrap=50, step_days=1))
    early = analyse(build_data(predictions, [*rows, ("c0", date(1, 1, 1), 50, 10, None)], ()),
                    Settings(bootstrap=50, step_days=1))
    windows = [(w["start"], w["end"]) for w in early["segments"][0]["windows"]]
    assert windows[0] == ("0001-01-01", "0001-01-28")  # the one window that holds the stray row
    # then the clean run's own: none that began before the real outcomes (27 did, and the first of them became the
    # drift test's reference window, with a few days of data)
    kept = [(w["start"], w["end"]) for w in clean["segments"][0]["windows"]]
    assert windows[1:] == kept
    assert early["segments"][0]["drift"] == clean["segments"][0]["drift"]


def test_windows_begin_no_earlier_than_the_stretch_of_outcomes_they_hold():
    """After a pause of a window or more, the first windows of the new stretch began in the pause (partial); a
    calibration until a day whose windows all fall so said the outcomes spanned too few days."""
    predictions = [{"creative_id": f"c{i}", "vertical": "v", "format": "f", "tags": [],
                    "scores": {"cta_share": i / 30}} for i in range(30)]
    days = [*range(0, 40), *range(100, 150)]  # a 60-day pause
    rows = [(f"c{i}", date.fromordinal(DAY0 + d), 2000, 20 + i, None) for i in range(30) for d in days]
    result = analyse(build_data(predictions, rows, ()), Settings(bootstrap=50))
    starts = [date.fromisoformat(w["start"]).toordinal() - DAY0 for w in result["segments"][0]["windows"]]
    assert any(s < 40 for s in starts) and all(0 <= s < 40 or 100 <= s for s in starts)  # none began in the pause
    stray = [(f"c{i}", date.fromordinal(DAY0 + d), 2000, 20 + i, None) for i in range(30) for d in (0, *days[40:])]
    with pytest.raises(InputError, match=r"no 28-day window ending on .* lies within a stretch of outcomes \(they run "
                                         r".* with gaps of a window or more\); choose another until day"):
        analyse(build_data(predictions, stray, ()), Settings(bootstrap=50, until=date.fromordinal(DAY0 + 110)))


def test_the_default_step_is_a_week_or_the_window_if_shorter():
    # Settings(window_days=5) refused its own default step of 7 days; the CLI applied the documented rule itself.
    assert Settings(window_days=5).step_days == 5 and Settings().step_days == 7


def test_the_proposed_threshold_maximises_youdens_j_exactly():
    """Near-ties within 1e-5 (np.isclose's relative tolerance) counted as equal: 70 was kept with J 0.998999 where
    65 had 0.999000."""
    from foveal.calibration.thresholds import propose

    percentiles = np.array([95.0] * 998 + [65.0, 65.0] + [10.0] * 999)
    rates = np.array([1.0] * 999 + [0.0] * 1000)
    assert propose(percentiles, rates, 70.0)["after"]["pass_percentile"] == 65.0


def test_a_vertical_or_tag_named_like_the_no_label_segment_is_refused():
    from foveal.store import check_label

    for what in ("vertical", "tag"):
        with pytest.raises(InputError, match="is what a calibration calls creatives without one"):
            check_label(" (none) ", what)
    assert check_label("(none)", "creative id") == "(none)"
    with pytest.raises(InputError, match="is what a calibration calls creatives without one"):
        check_label('"(none)" as stored', "vertical")


def test_a_label_an_older_foveal_stored_as_none_is_kept_apart_from_creatives_without_one():
    """Stored before '(none)' was refused, such creatives were pooled with the unlabelled ones without a word."""
    predictions = [{"creative_id": cid, "vertical": vertical, "format": "f", "tags": tags, "scores": {"cta_share": 0.1}}
                   for cid, vertical, tags in (("a", None, []), ("b", "(none)", ["(none)"]), ("c", "retail", ["x"]))]
    segments = build_data(predictions, [], ("vertical", "tag")).segments
    ids = {key: [predictions[i]["creative_id"] for i in members] for key, members in segments.items()}
    assert ids == {(("vertical", "(none)"), ("tag", "(none)")): ["a"],
                   (("vertical", '"(none)" as stored'), ("tag", '"(none)" as stored')): ["b"],
                   (("vertical", "retail"), ("tag", "x")): ["c"]}


def test_numbers_do_not_depend_on_the_order_the_store_returns_creatives_in():
    # PostgreSQL orders ids by the database's collation, SQLite by code point: the bootstrap's draws and the split
    # of tied scores between decile bins must follow the creatives, not their order
    rng = np.random.default_rng(5)
    predictions = [{"creative_id": f"c{i:02d}", "vertical": "v", "format": "f", "tags": [],
                    "scores": {"cta_share": float(s)}} for i, s in enumerate(np.round(rng.random(30), 1))]
    rows = [(p["creative_id"], date.fromordinal(DAY0 + d), 1500,
             int(rng.binomial(1500, 0.01 + 0.02 * p["scores"]["cta_share"])), None)
            for p in predictions for d in range(28)]
    forward, backward = (analyse(build_data(p, rows, ()), Settings(bootstrap=200))
                         for p in (predictions, predictions[::-1]))
    assert forward == backward


def test_calibration_page_of_hostile_segments_holds_them_as_text_and_runs_no_script(tmp_path):
    """Verticals, tags, creative ids and outcome sources come from whoever fed the store: ``foveal calibrate`` for
    real on such a store writes a page that holds the segment names as text (html.parser) and, in Chromium, runs
    none of them, shows them and refuses inline script by its own policy."""
    from tests.html_audit import PAYLOADS, written_page_checked

    url = f"sqlite:///{tmp_path / 'store.db'}"
    verticals, tag = PAYLOADS[:2], PAYLOADS[3]
    rng = np.random.default_rng(3)
    lines = ["creative_id,date,impressions,clicks,conversions,source"]
    with Store(url) as store:
        for v, vertical in enumerate(verticals):
            for i in range(30):
                creative = f"{PAYLOADS[2]}{v}-{i}"
                scores, provenance = scored(100 * v + i, cta_weight=float(rng.beta(2, 12)))
                store.record(creative, scores, provenance, vertical=vertical, tags=[tag])
                z = (scores.element("cta").share - 0.13) / 0.08
                quoted = '"' + creative.replace('"', '""') + '"'
                for d in range(0, 84, 3):  # the second vertical stops following the CTA share: a drift flag
                    strength = 0.0 if v == 1 and d >= 54 else 0.7
                    impressions = int(rng.poisson(1500))
                    clicks = int(rng.binomial(impressions, min(0.01 * np.exp(strength * z), 0.5)))
                    lines.append(f"{quoted},{date.fromordinal(DAY0 + d).isoformat()},{impressions},{clicks},0,"
                                 f'"{PAYLOADS[5]}"')
    (tmp_path / "outcomes.csv").write_text("\n".join(lines) + "\n")
    assert main(["outcomes", "import", str(tmp_path / "outcomes.csv"), "--db", url, "-q"]) == 0
    out = tmp_path / "cal"
    assert main(["calibrate", "--db", url, "--by", "vertical,tag", "--window", "4w", "--step", "28d",
                 "--bootstrap", "100", "-o", str(out), "-q"]) == 0
    assert "Drift flagged" in (out / "calibration.html").read_text(encoding="utf-8")
    with written_page_checked(out / "calibration.html", [*verticals, tag], images=0) as driver:
        assert driver.execute_script("return document.querySelectorAll('svg').length") >= 4  # the page still works


def test_the_drift_note_names_the_clicks_a_conversion_rate_needs():
    """With --metric cvr creatives count only with enough clicks, yet the note asked only for impressions, which these
    creatives all had."""
    data = simulate(1, 3 * WINDOW, seed=3)
    data.counts["clicks"][:] = 0
    notes = {s["drift_note"] for s in analyse(data, Settings(window_days=WINDOW, step_days=WINDOW, bootstrap=0,
                                                             metric="cvr"))["segments"]}
    assert notes == {f"not enough history: drift needs two non-overlapping {WINDOW}-day windows with at least 10 "
                     "creatives of 1000+ impressions and 20+ clicks"}
