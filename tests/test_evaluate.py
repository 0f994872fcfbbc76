"""foveal.evaluate and `foveal eval` on a synthetic folder dataset, plus a few real test-split images."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from foveal import Engine, load_image
from foveal import metrics as M
from foveal.cli import main
from foveal.datasets import Fixations, gaussian_density, load_dataset
from foveal.errors import InputError, ModelError, TooManyPixelsError
from foveal.evaluate import CENTRE_BIAS_MODEL, HUMAN_METRICS, HUMAN_MODEL, evaluate, human_consistency

SHAPES = [(40, 60), (48, 48), (30, 70), (52, 36)]  # (H, W), mixed sizes as in NUS Scene


def _folder(root, shapes=SHAPES, n_fix=12, seed=0, viewers=3):
    """images/ + fixations.csv, each image's fixations clustered on a bright patch near the top-right corner."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = ["image,x,y,subject"]
    for k, (h, w) in enumerate(shapes):
        image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        cy, cx = int(h * 0.15) + 4, int(w * 0.85) - 4
        image[cy - 4:cy + 4, cx - 4:cx + 4] = 250
        Image.fromarray(image).save(root / "images" / f"img{k:02d}.png")
        xs = np.clip(rng.normal(cx, 3, n_fix), 0, w - 0.01)
        ys = np.clip(rng.normal(cy, 3, n_fix), 0, h - 0.01)
        rows += [f"img{k:02d}.png,{x:.3f},{y:.3f},{s % viewers}" for s, (x, y) in enumerate(zip(xs, ys))]
    (root / "fixations.csv").write_text("\n".join(rows) + "\n")
    return root


class _FakeEngine:
    """Duck-typed Engine returning fixed maps: checks evaluate's plumbing without running a network."""

    def __init__(self, maps_by_shape):
        self.maps = maps_by_shape
        self.model = SimpleNamespace(name="fake", version="0", sha256="0" * 64)
        self.backend = "none"
        self.seen: list[tuple[int, int]] = []

    def predict_batch(self, images, batch_size=16, *, errors="raise"):
        shapes = [load_image(im).shape[:2] for im in images]
        self.seen += shapes
        return [SimpleNamespace(prob=self.maps[shape]) for shape in shapes]


def _expected(ds, i, prob, maps, seed=0):
    """Every metric of image i recomputed directly from foveal.metrics, on raw or metric-specific maps."""
    f, d = ds.fixations(i), ds.density(i)
    s = {m: prob if maps == "raw" else M.metric_map(m, prob, ds.sigma(i)) for m in M.METRICS}
    h, w = ds.shape(i)
    ox, oy = [], []
    for j in range(len(ds)):
        if j != i:
            hj, wj = ds.shape(j)
            ox.append(ds.fixations(j).x * w / wj)
            oy.append(ds.fixations(j).y * h / hj)
    return {
        "AUC-Judd": M.auc_judd(s["AUC-Judd"], f.x, f.y),
        "AUC-Borji": M.auc_borji(s["AUC-Borji"], f.x, f.y, rng=np.random.default_rng([seed, i])),
        "sAUC": M.auc_shuffled(s["sAUC"], f.x, f.y, np.concatenate(ox), np.concatenate(oy)),
        "NSS": M.nss(s["NSS"], f.x, f.y),
        "CC": M.cc(s["CC"], d),
        "KLD": M.kld(s["KLD"], d),
        "SIM": M.sim(s["SIM"], d),
        "IG": M.information_gain(s["IG"], M.centre_bias_log_density((h, w)), f.x, f.y),
    }


@pytest.mark.parametrize("maps", ["metric", "raw"])
def test_evaluate_matches_metrics_per_image(tmp_path, maps):
    ds = load_dataset(_folder(tmp_path / "ds"))
    rng = np.random.default_rng(3)
    probs = {shape: rng.random(shape) for shape in SHAPES}
    engine = _FakeEngine(probs)
    result = evaluate(engine, ds, split=None, progress=False, batch_size=3, maps=maps)
    assert engine.seen == SHAPES  # every image once, in order, across batches
    assert result.metrics == M.METRICS and result.images == ds.ids and result.fixations == [12] * 4
    assert result.to_dict()["conventions"]["maps"] == maps
    for i, shape in enumerate(SHAPES):
        for name, value in _expected(ds, i, probs[shape], maps).items():
            assert result.per_image[name][i] == pytest.approx(value, abs=1e-12), name
    for name, values in result.per_image.items():
        assert result.aggregate[name] == pytest.approx(values.mean())
    assert result.provenance["model"] == "fake" and result.provenance["backend"] == "none"


def test_centre_bias_and_a_perfect_model(tmp_path):
    ds = load_dataset(_folder(tmp_path / "ds"))
    centre = evaluate(CENTRE_BIAS_MODEL, ds, split=None, progress=False)
    assert centre.model == CENTRE_BIAS_MODEL
    np.testing.assert_allclose(centre.per_image["IG"], 0, atol=1e-12)  # the baseline gains nothing over itself
    # The fixations sit off-centre, on the patch: the centre bias ranks them below average.
    assert centre.aggregate["NSS"] < 0
    # On raw maps the density map itself is the perfect CC/SIM/KLD map.
    perfect = evaluate(_FakeEngine({ds.shape(i): ds.density(i) for i in range(len(ds))}), ds, split=None,
                       progress=False, maps="raw")
    assert perfect.aggregate["CC"] == pytest.approx(1.0)
    assert perfect.aggregate["SIM"] == pytest.approx(1.0)
    assert perfect.aggregate["KLD"] == pytest.approx(0.0, abs=1e-9)
    assert perfect.aggregate["IG"] > 1.0 and perfect.aggregate["AUC-Judd"] > 0.95
    # With metric-specific maps the perfect prediction is the fixations' own distribution: blurred, it is the
    # density map up to placing each fixation at its pixel's centre.
    hist = {}
    for i in range(len(ds)):
        f, h = ds.fixations(i), np.zeros(ds.shape(i))
        np.add.at(h, (np.floor(f.y).astype(int), np.floor(f.x).astype(int)), 1.0)
        hist[ds.shape(i)] = h
    sharp = evaluate(_FakeEngine(hist), ds, split=None, progress=False)
    assert sharp.aggregate["CC"] > 0.99 and sharp.aggregate["SIM"] > 0.9
    assert sharp.aggregate["IG"] > perfect.aggregate["IG"]  # no probability wasted between fixations
    # The centre bias divided by itself is flat: shuffled AUC sees no information, exactly chance.
    np.testing.assert_array_equal(centre.per_image["sAUC"], 0.5)


def test_split_and_seed(tmp_path):
    ds = load_dataset(_folder(tmp_path / "ds", shapes=[(20, 30)] * 20, n_fix=5))
    result = evaluate(CENTRE_BIAS_MODEL, ds, split="test", metrics=["AUC-Borji", "NSS"], progress=False, seed=1)
    assert result.dataset == ds.name + "-test"
    assert result.images == ds.split("test").ids and len(result.images) == 2
    again = evaluate(CENTRE_BIAS_MODEL, ds, split="test", metrics=["AUC-Borji"], progress=False, seed=1)
    other = evaluate(CENTRE_BIAS_MODEL, ds, split="test", metrics=["AUC-Borji"], progress=False, seed=2)
    assert np.array_equal(again.per_image["AUC-Borji"], result.per_image["AUC-Borji"])
    assert not np.array_equal(other.per_image["AUC-Borji"], result.per_image["AUC-Borji"])


def test_confidence_intervals(tmp_path):
    ds = load_dataset(_folder(tmp_path / "ds", shapes=[(20, 30)] * 30, n_fix=5))
    result = evaluate(CENTRE_BIAS_MODEL, ds, split=None, metrics=["NSS", "CC"], progress=False)
    ci = result.confidence_intervals()
    assert ci == result.confidence_intervals()  # seeded
    for name, (lo, hi) in ci.items():
        mean, values = result.aggregate[name], result.per_image[name]
        assert lo < mean < hi
        # For a mean of 30 values the 95 % interval is about +-1.96 standard errors.
        se = values.std() / np.sqrt(len(values))
        assert 2.5 * se < hi - lo < 5.5 * se
    lo90, hi90 = result.confidence_intervals(level=0.9)["NSS"]
    assert ci["NSS"][0] <= lo90 and hi90 <= ci["NSS"][1]
    with pytest.raises(InputError, match="level"):
        result.confidence_intervals(level=1.5)
    with pytest.raises(InputError, match="seed must be a whole number >= 0"):
        result.confidence_intervals(seed=-1)
    with pytest.raises(InputError, match="n_boot must be a whole number >= 1, got 2.5"):  # was a TypeError
        result.confidence_intervals(n_boot=2.5)
    for level in ("0.9", None, True):  # were TypeErrors (or level True taken as 1)
        with pytest.raises(InputError, match="level must be a number between 0 and 1"):
            result.confidence_intervals(level=level)
    with pytest.raises(InputError, match="n_boot must be at most 1,000,000"):  # asked for 149 GiB
        result.confidence_intervals(n_boot=10**10)
    with pytest.raises(InputError, match="seed must be a whole number >= 0, got True"):
        result.confidence_intervals(seed=True)


def test_confidence_intervals_draw_their_resamples_a_block_at_a_time(tmp_path, monkeypatch):
    import foveal.evaluate as E

    ds = load_dataset(_folder(tmp_path / "ds", shapes=[(20, 30)] * 30, n_fix=5))
    result = evaluate(CENTRE_BIAS_MODEL, ds, split=None, metrics=["NSS"], progress=False)
    whole = result.confidence_intervals(n_boot=4000)["NSS"]
    monkeypatch.setattr(E, "BOOT_PICKS_PER_BLOCK", 30 * 7)  # seven resamples a block, the last one short
    blocks = result.confidence_intervals(n_boot=4000)["NSS"]
    assert blocks == result.confidence_intervals(n_boot=4000)["NSS"]  # still seeded
    se = result.per_image["NSS"].std() / np.sqrt(30)
    assert abs(blocks[0] - whole[0]) < 0.3 * se and abs(blocks[1] - whole[1]) < 0.3 * se


def test_result_serialises(tmp_path):
    result = evaluate(CENTRE_BIAS_MODEL, load_dataset(_folder(tmp_path / "ds")), split=None, progress=False)
    doc = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert doc["n_images"] == 4 and doc["n_fixations"] == 48 and doc["lower_is_better"] == ["KLD"]
    assert doc["metrics"] == result.aggregate
    assert set(doc["ci95"]) == set(doc["metrics"]) and all(lo <= hi for lo, hi in doc["ci95"].values())
    assert [r["image"] for r in doc["per_image"]] == result.images
    md = result.to_markdown().splitlines()
    assert len(md) == 4 and "KLD ↓" in md[0] and f"{result.aggregate['CC']:.4f}" in md[2]
    lo, hi = result.confidence_intervals()["CC"]
    assert md[3].startswith("| (95 % interval)") and f"{lo:.3f}–{hi:.3f}" in md[3]


def test_density_only_dataset(tmp_path):
    root = tmp_path / "maps_only"
    (root / "images").mkdir(parents=True)
    (root / "maps").mkdir()
    rng = np.random.default_rng(0)
    for k in range(2):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / "images" / f"{k}.png")
        Image.fromarray(rng.integers(1, 255, (20, 24), dtype=np.uint8)).save(root / "maps" / f"{k}.png")
    ds = load_dataset(root)
    assert evaluate(CENTRE_BIAS_MODEL, ds, split=None, progress=False).metrics == ("CC", "KLD", "SIM")
    with pytest.raises(InputError, match="density maps only"):
        evaluate(CENTRE_BIAS_MODEL, ds, split=None, metrics=["NSS"], progress=False)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"metrics": ["AUC"]}, InputError, "unknown metric 'AUC'"),
    ({"metrics": []}, InputError, "unknown metric"),
    ({"metrics": ["NSS", "CC", "NSS"]}, InputError, "^metrics: 'NSS' is named twice"),  # was one column of two
    ({"split": "test"}, InputError, r"has 4 images, too few for a test split .*; evaluate every image \(split=None\)"),
    ({"batch_size": 0}, InputError, "batch_size"),
    ({"batch_size": 2.5}, InputError, "batch_size must be a whole number >= 1, got 2.5"),  # was a TypeError
    ({"batch_size": None}, InputError, "batch_size must be a whole number >= 1, got None"),
    ({"maps": "blurred"}, InputError, "maps must be one of"),
    ({"seed": -1}, InputError, "seed must be a whole number >= 0, got -1"),
    ({"seed": 1.5}, InputError, "seed must be a whole number >= 0, got 1.5"),
    ({"model": 42}, InputError, "must be an Engine"),
    ({"model": _FakeEngine({s: np.ones((2, 2)) for s in SHAPES})}, ModelError, "must have their image's size"),
    ({"model": _FakeEngine({s: np.full(s, np.nan) for s in SHAPES})}, InputError,
     r"^fake's map of image '\w+.png' of ds: .*NaN"),
])
def test_bad_arguments(tmp_path, kwargs, error, match):
    ds = load_dataset(_folder(tmp_path / "ds"))
    kwargs = {"model": CENTRE_BIAS_MODEL, "split": None, **kwargs}
    with pytest.raises(error, match=match):
        evaluate(kwargs.pop("model"), ds, progress=False, **kwargs)


def test_human_consistency_is_each_half_predicting_the_other(tmp_path):
    # With two viewers every split is the same pair of halves, so the score is exact: both directions averaged.
    ds = load_dataset(_folder(tmp_path / "ds", viewers=2))
    got = human_consistency(ds, split=None, repeats=3, progress=False)
    assert got.model == HUMAN_MODEL and got.maps == "raw" and got.metrics == HUMAN_METRICS
    for i in range(len(ds)):
        f, shape, sigma = ds.fixations(i), ds.shape(i), ds.sigma(i)
        halves = [Fixations(f.x[f.subject == v], f.y[f.subject == v], f.subject[f.subject == v]) for v in (0, 1)]
        maps = [gaussian_density(h, shape, sigma) for h in halves]
        for name, score in (("NSS", lambda a, b: M.nss(maps[a], halves[b].x, halves[b].y)),
                            ("AUC-Judd", lambda a, b: M.auc_judd(maps[a], halves[b].x, halves[b].y)),
                            ("CC", lambda a, b: M.cc(maps[a], maps[b])),
                            ("SIM", lambda a, b: M.sim(maps[a], maps[b]))):
            assert got.per_image[name][i] == pytest.approx((score(0, 1) + score(1, 0)) / 2, abs=1e-12)
    # Fixations clustered on one patch: each half predicts the other well, far above the centre bias.
    centre = evaluate(CENTRE_BIAS_MODEL, ds, split=None, metrics=["NSS"], progress=False)
    assert got.aggregate["NSS"] > centre.aggregate["NSS"] + 1 and got.aggregate["AUC-Judd"] > 0.9


def test_human_halves_do_not_depend_on_the_metrics_asked_for(tmp_path):
    """AUC-Borji drew from the generator that split the viewers, so asking for it moved every later split: the
    ceiling's NSS changed with --metrics."""
    ds = load_dataset(_folder(tmp_path / "ds", viewers=6))
    every = human_consistency(ds, split=None, progress=False)
    alone = human_consistency(ds, split=None, metrics=["NSS"], progress=False)
    assert np.array_equal(every.per_image["NSS"], alone.per_image["NSS"])


@pytest.mark.parametrize("viewers, kwargs, match", [
    (1, {}, "two or more"),
    (3, {"metrics": ["IG"]}, "human consistency scores"),
    (3, {"metrics": ["NSS", "NSS"]}, "^metrics: 'NSS' is named twice"),
    (3, {"repeats": 0}, "repeats"),
    (3, {"repeats": 2.5}, "repeats must be a whole number >= 1, got 2.5"),  # was a TypeError
    (3, {"seed": -1}, "seed must be a whole number >= 0"),
])
def test_human_consistency_bad_arguments(tmp_path, viewers, kwargs, match):
    ds = load_dataset(_folder(tmp_path / "ds", viewers=viewers))
    with pytest.raises(InputError, match=match):
        human_consistency(ds, split=None, progress=False, **kwargs)


def test_cli_human_matches_the_api(tmp_path, capsys):
    data = _folder(tmp_path / "ds")
    assert main(["-q", "eval", "--dataset", str(data), "--split", "all", "--model", "human",
                 "--metrics", "NSS,CC", "-o", str(tmp_path / "out")]) == 0
    doc = json.loads((tmp_path / "out" / "eval.json").read_text())
    expected = human_consistency(data, split=None, metrics=["NSS", "CC"], progress=False)
    assert doc["model"] == HUMAN_MODEL and doc["metrics"] == expected.aggregate
    assert capsys.readouterr().out == expected.to_markdown()


def _brightness_onnx(path):
    """A user model obeying docs/MODEL_CONTRACT.md: log-density = mean brightness per 8x8 cell (stride 8)."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["grey"], axes=[1], keepdims=1),
         helper.make_node("AveragePool", ["grey"], ["log_density"], kernel_shape=[8, 8], strides=[8, 8])],
        "brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("log_density", TensorProto.FLOAT, ["N", 1, "h", "w"])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def test_cli_end_to_end_with_a_user_onnx(tmp_path, capsys):
    data = _folder(tmp_path / "ds")
    _brightness_onnx(tmp_path / "bright.onnx")
    out = tmp_path / "out"
    assert main(["-q", "eval", "--dataset", str(data), "--split", "all", "--model", str(tmp_path / "bright.onnx"),
                 "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((out / "eval.json").read_text())
    assert (out / "eval.md").read_text() == printed
    assert doc["model"] == "bright" and doc["dataset"] == "ds" and doc["n_images"] == 4
    # The fixations sit on the bright patch, so a brightness model finds them.
    assert doc["metrics"]["AUC-Judd"] > 0.9 and doc["metrics"]["NSS"] > 1 and doc["metrics"]["IG"] > 0


def test_cli_centre_bias_matches_the_api(tmp_path, capsys):
    data = _folder(tmp_path / "ds")
    assert main(["-q", "eval", "--dataset", str(data), "--split", "all", "--model", "centre-bias",
                 "--metrics", "NSS,CC", "-o", str(tmp_path / "out")]) == 0
    doc = json.loads((tmp_path / "out" / "eval.json").read_text())
    expected = evaluate(CENTRE_BIAS_MODEL, data, split=None, metrics=["NSS", "CC"], progress=False)
    assert doc["metrics"] == expected.aggregate
    assert capsys.readouterr().out == expected.to_markdown()


@pytest.mark.parametrize("argv, text", [
    (["eval", "--dataset", "nowhere", "--model", "centre-bias"], "is not a folder"),
    (["eval", "--dataset", "ds", "--model", "broken.onnx"], "broken.onnx"),
    (["eval", "--dataset", "ds", "--split", "all", "--model", "human", "--metrics", "IG"],
     "human consistency scores"),
])
def test_cli_errors_are_one_line(tmp_path, monkeypatch, argv, text):
    _folder(tmp_path / "ds")
    (tmp_path / "broken.onnx").write_bytes(b"not an onnx model")
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "foveal", *argv], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("foveal: error:") and text in lines[0], proc.stderr


@pytest.mark.data
def test_real_test_split_images(data_dir):
    osie = load_dataset(data_dir / "osie").split("test")
    few = osie.subset(range(3), "osie-test-3")
    centre = evaluate(CENTRE_BIAS_MODEL, few, split=None, progress=False)
    assert centre.images == osie.ids[:3]
    np.testing.assert_allclose(centre.per_image["IG"], 0, atol=1e-12)
    assert 0.6 < centre.aggregate["AUC-Judd"] < 0.95 and centre.aggregate["NSS"] > 0.5
    network = evaluate("default", few, split=None, progress=False, metrics=["AUC-Judd", "NSS", "CC", "IG"])
    assert network.provenance["backend"] == "onnxruntime"
    assert 0.6 < network.aggregate["AUC-Judd"] <= 1.0 and network.aggregate["NSS"] > 0.3


def test_an_image_without_fixations_names_the_metrics_that_need_none(tmp_path):
    from foveal.datasets import Dataset

    full = load_dataset(_folder(tmp_path / "ds"))
    fixations = [full.fixations(i) for i in range(len(full))]
    fixations[1] = Fixations.from_arrays([], [])  # a folder drops such images; a Dataset built in Python may not
    ds = Dataset("built", full.ids, [full.path(i) for i in range(len(full))], fixations, None, lambda h, w: 2.0)
    with pytest.raises(InputError, match=r"^image 'img01.png' of built has no fixations; .*\(drop the image or "
                                         r"choose metrics among CC, KLD and SIM\)$"):
        evaluate(CENTRE_BIAS_MODEL, ds, split=None, metrics=["NSS"], progress=False)
    assert evaluate(CENTRE_BIAS_MODEL, ds, split=None, metrics=["CC"], progress=False).metrics == ("CC",)


def test_an_image_with_every_pixel_fixated_is_named_before_any_map(tmp_path):
    """AUC-Judd has no negatives on an image whose every pixel is fixated (a 2x2 image, four fixations): the error
    used to come from the metric mid-run, without the image's name or what to do."""
    root = _folder(tmp_path / "ds")
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(root / "images" / "tiny.png")
    with (root / "fixations.csv").open("a") as fh:
        fh.write("".join(f"tiny.png,{x + 0.5},{y + 0.5},0\n" for x in range(2) for y in range(2)))
    ds = load_dataset(root)
    with pytest.raises(InputError, match=r"^image 'tiny.png' of .* has every pixel fixated, so AUC-Judd has no "
                                         r"unfixated pixel to rank against \(drop the image or leave AUC-Judd out"):
        evaluate(CENTRE_BIAS_MODEL, ds, split=None, progress=False)
    result = evaluate(CENTRE_BIAS_MODEL, ds, split=None, metrics=["NSS", "AUC-Borji"], progress=False)
    assert len(result.images) == len(SHAPES) + 1


def test_cli_eval_refuses_an_empty_metric_list(tmp_path, capsys):
    """`--metrics ''` (an unset variable) scored every metric, while `--metrics ,` was refused."""
    from foveal.cli import main

    root = _folder(tmp_path / "ds")
    for empty in ("", ","):
        with pytest.raises(SystemExit) as stop:  # a usage error, as an unknown name is
            main(["-q", "eval", "--dataset", str(root), "--split", "all", "--model", CENTRE_BIAS_MODEL,
                  "--metrics", empty])
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "argument --metrics: unknown metric '(none given)'" in err, err
        assert len(err.splitlines()) == 1, err


def test_cli_eval_of_a_dataset_too_small_to_split_names_the_flag_that_takes_it_whole(tmp_path, capsys):
    """"evaluate every image (no split)" read as leaving --split out, which means the test split."""
    from foveal.cli import main

    assert main(["eval", "--dataset", str(_folder(tmp_path / "ds")), "--model", CENTRE_BIAS_MODEL, "-q"]) == 1
    assert "too few for a test split (80/10/10 %); evaluate every image (--split all)" in capsys.readouterr().err


@pytest.mark.parametrize("option, text", [(["--metrics", "NSS,XYZ"], "argument --metrics: unknown metric 'XYZ'"),
                                          (["--seed", "-1"], "argument --seed: must be at least 0, got -1")])
def test_cli_eval_option_values_wrong_on_their_face_are_usage_errors(tmp_path, capsys, option, text):
    from foveal.cli import main

    with pytest.raises(SystemExit) as stop:
        main(["eval", "--dataset", str(_folder(tmp_path / "ds")), "--model", CENTRE_BIAS_MODEL, *option])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and text in err and len(err.splitlines()) == 1, err


def test_a_stimulus_that_does_not_match_its_fixations_is_named_as_the_datasets_fault(tmp_path, data_dir):
    """A NUS Scene image swapped for one of another size was blamed on the model ("itti-koch returned a ... map")."""
    root = tmp_path / "scene"
    (root / "stimuli").mkdir(parents=True)
    (root / "tidy").symlink_to(data_dir / "scene" / "tidy")
    stimuli = sorted((data_dir / "scene" / "stimuli").iterdir())
    for path in stimuli:
        (root / "stimuli" / path.name).symlink_to(path)
    ds = load_dataset(root).split("test")
    first = root / "stimuli" / ds.ids[0]
    other = next(p for p in stimuli if load_image(p).shape != load_image(first).shape)
    first.unlink()
    first.symlink_to(other)
    with pytest.raises(InputError, match=r"image '[^']+' of .* is \d+x\d+, but the dataset's fixations are on a"):
        evaluate("itti-koch", ds.subset(range(1), "one"), split=None, metrics=["NSS"], progress=False)


def test_one_metric_name_given_as_a_string_is_told_to_be_a_list(tmp_path):
    ds = load_dataset(_folder(tmp_path / "ds"))
    with pytest.raises(InputError, match=r"pass \['NSS'\]"):
        evaluate(CENTRE_BIAS_MODEL, ds, split=None, metrics="NSS", progress=False)
    with pytest.raises(InputError, match=r"pass \['NSS'\]"):  # said "got 'N'"
        human_consistency(ds, split=None, metrics="NSS", progress=False)


def test_cli_stdout_is_the_table_alone(tmp_path, capsys):
    """`foveal eval ... -o DIR > table.md`: the line saying where the files went is on stderr, not in the table."""
    data = _folder(tmp_path / "ds")
    out = tmp_path / "out"
    assert main(["eval", "--dataset", str(data), "--split", "all", "--model", "centre-bias", "--metrics", "NSS",
                 "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert printed.out == (out / "eval.md").read_text()
    assert f"eval.json and eval.md written to {out}" in printed.err


def test_cli_table_on_a_stdout_that_cannot_encode_it(tmp_path):
    """A Windows console or redirect (cp1252) has no "↓" for "KLD ↓": the command failed after the evaluation,
    before writing eval.json; the character is now escaped, as on stderr."""
    _folder(tmp_path / "ds")
    env = {**os.environ, "PYTHONIOENCODING": "cp1252"}
    proc = subprocess.run([sys.executable, "-m", "foveal", "-q", "eval", "--dataset", str(tmp_path / "ds"), "--split",
                           "all", "--model", "centre-bias", "--metrics", "KLD", "-o", str(tmp_path / "out")],
                          capture_output=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert b"| KLD \\u2193 |" in proc.stdout and (tmp_path / "out" / "eval.json").is_file()


def test_cli_writes_its_files_even_when_stdout_is_gone(tmp_path):
    """`foveal eval ... -o DIR | true`: the table was printed before the files were written, so a reader that had
    left (broken pipe) cost eval.json and eval.md, the product of the whole evaluation."""
    _folder(tmp_path / "ds")
    proc = subprocess.Popen([sys.executable, "-m", "foveal", "-q", "eval", "--dataset", str(tmp_path / "ds"),
                             "--split", "all", "--model", "centre-bias", "--metrics", "NSS",
                             "-o", str(tmp_path / "out")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the table
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == b"", err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["eval.json", "eval.md"]


def test_provenance_names_the_graph_that_ran(tmp_path):
    """eval.json named only the card's (fp32) sha256, so an int8 or fp16 row could not say which graph it scored;
    every other output of foveal names it as graph_sha256."""
    engine = Engine("foveal-lite0", precision="int8")
    got = evaluate(engine, load_dataset(_folder(tmp_path / "ds")), split=None, metrics=["NSS"], progress=False)
    provenance = got.to_dict()["provenance"]
    assert provenance["precision"] == "int8" and provenance["model_sha256"] == engine.model.sha256
    assert provenance["graph_sha256"] == engine.graph_sha256 != engine.model.sha256


def test_the_datasets_pixel_limit_is_the_one_given(tmp_path):
    """Header reads, images and maps had foveal's default limit fixed, so `foveal eval --max-pixels` could lower the
    limit (the engine's check) but never raise it, while its message said to."""
    root = _folder(tmp_path / "ds")
    limit = max(h * w for h, w in SHAPES)
    with pytest.raises(TooManyPixelsError, match=f"^{root / 'images'}/img\\d\\d.png: .* over the limit"):
        load_dataset(root, max_pixels=limit - 1)
    ds = load_dataset(root, max_pixels=limit)
    assert ds.max_pixels == limit and ds.subset([0], "one").max_pixels == limit
    assert [ds.image(i).shape[:2] for i in range(len(ds))] == SHAPES


def test_an_image_the_engine_refuses_is_named_by_its_file(tmp_path):
    """The engine was handed decoded images, so its refusal named a batch slot: "images[2]: <array>: ..."."""
    root = _folder(tmp_path / "ds")
    ds = load_dataset(root)
    big = max(range(len(ds)), key=lambda i: np.prod(ds.shape(i)))
    engine = Engine("itti-koch", max_pixels=int(np.prod(ds.shape(big))) - 1)
    with pytest.raises(TooManyPixelsError, match=f"^{ds.path(big)}: "):
        evaluate(engine, ds, split=None, progress=False)
    with pytest.raises(TooManyPixelsError, match=f"^{ds.path(big)}: "):  # a path is read within the engine's limit
        evaluate(engine, root, split=None, progress=False)
    assert main(["-q", "eval", "--dataset", str(root), "--split", "all", "--metrics", "NSS", "--model", "itti-koch",
                 "--max-pixels", str(engine.max_pixels)]) == 1


def test_human_consistency_names_an_image_no_metric_takes(tmp_path):
    """A 1x1 image whose halves fixate its one pixel: AUC-Judd's bare message named neither image nor remedy."""
    (tmp_path / "images").mkdir()
    Image.new("RGB", (1, 1)).save(tmp_path / "images" / "a.png")
    (tmp_path / "fixations.csv").write_text("image,x,y,subject\na.png,0.5,0.5,0\na.png,0.2,0.2,1\n")
    with pytest.raises(InputError, match=r"^image 'a.png' of \w+: auc_judd: every pixel is fixated.*leave AUC-Judd out"):
        human_consistency(load_dataset(tmp_path), split=None, progress=False)


def test_a_fixation_off_its_image_is_the_datasets_fault_not_the_models(tmp_path):
    """A Dataset built in code with a fixation 20 px left of its image: the error blamed the model's map and told
    the user to leave the metric out; CC, KLD and SIM used the fixation without a word."""
    from foveal.datasets import Dataset

    full = load_dataset(_folder(tmp_path / "ds"))
    fixations = [full.fixations(i) for i in range(len(full))]
    f = fixations[2]
    fixations[2] = Fixations(np.r_[-20.0, f.x[1:]], f.y, f.subject)
    ds = Dataset("built", full.ids, [full.path(i) for i in range(len(full))], fixations, None, lambda h, w: 2.0)
    says = r"^image 'img02.png' of built: fixation 0 at \(-20, [\d.]+\) lies outside its 70x30 image; correct or remove"
    for metrics in (["NSS"], ["CC", "SIM"]):
        with pytest.raises(InputError, match=says):
            evaluate(CENTRE_BIAS_MODEL, ds, split=None, metrics=metrics, progress=False)
        with pytest.raises(InputError, match=says):
            human_consistency(ds, split=None, metrics=metrics, progress=False)
    fixations[2] = Fixations(np.r_[np.nan, f.x[1:]], f.y, f.subject)
    with pytest.raises(InputError, match="fixation 0 at \\(nan"):
        evaluate(CENTRE_BIAS_MODEL, Dataset("built", full.ids, [full.path(i) for i in range(len(full))], fixations,
                                            None, lambda h, w: 2.0), split=None, metrics=["CC"], progress=False)
