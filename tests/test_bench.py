"""foveal bench: every stage timed with ordered percentiles, throughput per batch size, table and JSON."""
from __future__ import annotations

import io
import json
import math
import sys
import time

import numpy as np
import pytest
from PIL import Image

from foveal import Engine, cpu
from foveal.bench import run_bench, synthetic_jpeg
from foveal.cli import main
from foveal.errors import InputError

STAGES = ["decode", "preprocess", "network", "postprocess", "box queries (1000)", "predict (end to end)"]


def _small_jpeg(path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())


def test_run_bench_times_every_stage_and_batch_size(tmp_path) -> None:
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    report = run_bench(Engine("itti-koch"), [image], repeats=3, batch_sizes=(1, 2), max_seconds=20)
    assert [s.stage for s in report.stages] == STAGES
    for s in report.stages:
        assert s.n == 3 and 0 < s.p50_ms <= s.p90_ms <= s.p99_ms
    assert [t.batch_size for t in report.throughput] == [1, 2]
    assert all(t.images >= 8 and t.images_per_s > 0 for t in report.throughput)
    assert report.machine["cpus_usable"] == cpu.usable_cpus() >= 1 and report.versions["foveal"]
    assert report.images == [str(image)]
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["engine"]["model"] == "itti-koch" and len(doc["stages"]) == len(STAGES)
    assert "p99 ms" in report.table() and "images/s" in report.table()
    with pytest.raises(InputError, match="repeats"):
        run_bench(Engine("itti-koch"), [image], repeats=0)


def test_one_image_is_run_once_untimed_before_the_timed_rounds(tmp_path, monkeypatch) -> None:
    """The first, cold call was a timed sample: decode p99 read 142 ms against a 13 ms p50. (One image only: all of
    a folder of 60 took the whole --max-seconds and left one timed call a stage.)"""
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    engine = Engine("itti-koch")
    calls = []
    decode = engine._decode
    monkeypatch.setattr(engine, "_decode", lambda source: calls.append(source) or decode(source))
    report = run_bench(engine, [image], repeats=3, batch_sizes=(1,), max_seconds=20)
    assert report.stages[0].stage == "decode" and report.stages[0].n == 3
    assert len([c for c in calls if c == image]) >= 4  # one warm-up and three timed, before the batch loop
    assert report.to_dict()["settings"] == {"repeats": 3, "max_seconds": 20.0, "batch_sizes": [1]}


def test_run_bench_runs_every_batch_size_of_a_generator(tmp_path) -> None:
    """Checking the sizes once consumed a generator, so the report then had no batch size at all."""
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    report = run_bench(Engine("itti-koch"), [image], repeats=2, batch_sizes=(b for b in (1, 2)), max_seconds=20)
    assert [row.batch_size for row in report.throughput] == [1, 2]
    assert report.to_dict()["settings"]["batch_sizes"] == [1, 2]


@pytest.mark.parametrize("kwargs, match", [
    ({"images": "a.jpg"}, "got a single one; pass \\[image\\]"),
    ({"repeats": 2.5}, "repeats must be an integer >= 1"),
    ({"batch_sizes": ("a",)}, "batch size must be an integer >= 1"),
    ({"batch_sizes": (1.7,)}, "batch size must be an integer >= 1"),  # was run as batch size 1
    ({"batch_sizes": 8}, "batch_sizes: expected a list"),
    ({"max_seconds": "3"}, "max_seconds must be a positive number"),
])
def test_run_bench_refuses_bad_arguments_in_one_line(kwargs, match) -> None:
    with pytest.raises(InputError, match=match):
        run_bench(Engine("itti-koch"), **{"images": [b"x"], **kwargs})


def test_synthetic_image_is_a_1080p_jpeg() -> None:
    image = Image.open(io.BytesIO(synthetic_jpeg()))
    assert image.format == "JPEG" and image.size == (1920, 1080)


def test_cli_bench_json_and_bad_image(tmp_path, capsys) -> None:
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    assert main(["bench", str(image), "--model", "itti-koch", "--repeats", "2", "--batch", "1", "--json",
                 "--max-seconds", "10"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in doc["stages"]] == STAGES and doc["throughput"][0]["batch_size"] == 1
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    assert main(["bench", str(bad), "--model", "itti-koch", "--repeats", "1", "--batch", "1"]) == 1
    assert "not a recognised image format" in capsys.readouterr().err


def test_a_batch_size_that_cannot_fit_the_time_budget_is_skipped(tmp_path) -> None:
    # A predict_batch call cannot stop midway: 1000 images a batch (3000 in its warm-up and first call) take tens of
    # seconds, so within a 2 s budget that row is skipped, saying why, and the run still ends on time.
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    engine = Engine("itti-koch")
    t0 = time.perf_counter()
    report = run_bench(engine, [image], repeats=1, batch_sizes=(1, 1000), max_seconds=2)
    assert time.perf_counter() - t0 < 10
    small, large = report.throughput
    assert small.images >= 8 and small.images_per_s > 0 and not small.skipped
    assert large.images == 0 and large.images_per_s is None
    assert "skipped" in large.skipped and "a larger max_seconds" in large.skipped and large.skipped in report.table()
    assert json.loads(json.dumps(report.to_dict()))["throughput"][1]["images_per_s"] is None


def test_the_command_lines_skipped_row_names_its_flag(tmp_path, capsys) -> None:
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    for json_flag in ([], ["--json"]):
        assert main(["bench", str(image), "--model", "itti-koch", "--repeats", "1", "--batch", "1,1000",
                     "--max-seconds", "2", *json_flag]) == 0
        out = capsys.readouterr().out
        assert "a larger --max-seconds" in out and "max_seconds" not in out.replace('"max_seconds": 2.0', "")


@pytest.mark.parametrize("seconds", [-1.0, 0.0, math.nan, math.inf])
def test_max_seconds_must_be_positive_and_finite(tmp_path, seconds, capsys) -> None:
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    with pytest.raises(InputError, match="max_seconds must be a positive number of seconds"):
        run_bench(Engine("itti-koch"), [image], repeats=1, batch_sizes=(1,), max_seconds=seconds)
    with pytest.raises(SystemExit) as stop:  # the command line's flag, refused while parsing
        main(["bench", str(image), "--model", "itti-koch", "--repeats", "1", "--batch", "1",
              "--max-seconds", str(seconds)])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument --max-seconds: must be a finite number > 0, got {seconds}" in err, err


def test_a_model_that_returns_nan_is_blamed_in_bench_as_in_predict(tmp_path) -> None:
    """bench ran the stages one by one, past the engine's contract checks: a NaN model read "log_density must be
    finite", where predict and score say the model is broken."""
    pytest.importorskip("onnx")
    from onnx import helper

    from foveal.errors import ModelError
    from tests.test_model_contract import _const, _pooled

    model = _pooled(tmp_path / "nan.onnx", 8, [helper.make_node("Mul", ["mean", "c"], ["log_density"])],
                    initializers=[_const("c", float("nan"))])
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    with pytest.raises(ModelError, match="model 'nan' .* returned NaN or infinite log-density"):
        run_bench(Engine(model), [image], repeats=1, batch_sizes=(1,), max_seconds=5)


def test_cpu_throughput_times_warm_lanes_and_gives_every_lane_work(tmp_path, monkeypatch) -> None:
    """On the CPU predict_batch runs one image per lane, on single-threaded sessions made on first use. The warm-up
    of batch size 1 ran one image, which makes no lanes, so the first timed call made them all (a 2-CPU run read
    17.7 images/s at batch 1 against 42 from predict's latency; FOVEAL_NUM_THREADS=999 spent 39 s of a 4 s budget);
    and with 8 images a call, lanes past the eighth stood idle, so batch 1 read slower than 16 on a big machine."""
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    monkeypatch.setattr(cpu, "usable_cpus", lambda: 6)  # six lanes, as on a machine of six CPUs
    engine = Engine("itti-koch", threads=6)
    calls: list[tuple[int, bool]] = []
    batch = engine.predict_batch

    def spy(images, **kwargs):
        if sys._getframe(1).f_code.co_name == "_throughput":  # not predict's own calls in the stage loop
            calls.append((len(images), engine._lanes is not None))
        return batch(images, **kwargs)

    monkeypatch.setattr(engine, "predict_batch", spy)
    report = run_bench(engine, [image], repeats=1, batch_sizes=(1,), max_seconds=20)
    warm_up, *timed = calls
    assert warm_up[0] >= 6 and timed and all(n >= 12 and made for n, made in timed)
    assert report.throughput[0].images == sum(n for n, _ in timed)


def test_a_batch_size_given_twice_is_measured_once(tmp_path) -> None:
    """``--batch 1,1,1`` ran batch size 1 three times on a third of the budget each: the later rows read "skipped"
    for a size the table had just measured."""
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    report = run_bench(Engine("itti-koch"), [image], repeats=1, batch_sizes=(2, 1, 2, 1), max_seconds=20)
    assert [row.batch_size for row in report.throughput] == [2, 1]
    assert report.settings["batch_sizes"] == [2, 1]


def test_table_columns_line_up_with_the_gpu_stage_name() -> None:
    """On a GPU backend the 30-character "preprocess+network+postprocess" overran the 22-character stage column and
    pushed its numbers 8 characters right of the headings."""
    from foveal.bench import BenchReport, StageTiming

    engine = {"model": "m", "precision": "fp16", "backend": "torch", "device": "cuda:0", "decode": "in full"}
    report = BenchReport(engine, {"cpu": "c", "cpus_usable": 1, "native_threads": 1, "platform": "p"}, {"foveal": "0"},
                         ["a"],
                         stages=[StageTiming("decode", 3, 1.0, 2.0, 3.0),
                                 StageTiming("preprocess+network+postprocess", 3, 1.0, 2.0, 3.0),
                                 StageTiming("predict (end to end)", 3, 1.0, 2.0, 3.0)])
    lines = report.table().splitlines()
    header = next(line for line in lines if line.startswith("stage"))
    rows = [line for line in lines if line.startswith(("decode", "preprocess+", "predict"))]
    assert len(rows) == 3 and {len(row) for row in rows} == {len(header)}


def test_throughput_warm_up_is_the_call_it_then_times(tmp_path, monkeypatch) -> None:
    """A warm-up of one batch (8 images a timed call at batch size 1) left the first timed call cold: it allocates
    every map it returns for the first time, and read 22 images/s against 65 for the calls after it, so a row of two
    to four calls came out 25-35 % low."""
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    engine = Engine("itti-koch", threads=1)
    sizes: list[int] = []
    batch = engine.predict_batch

    def spy(images, **kwargs):
        if sys._getframe(1).f_code.co_name == "_throughput":
            sizes.append(len(images))
        return batch(images, **kwargs)

    monkeypatch.setattr(engine, "predict_batch", spy)
    report = run_bench(engine, [image], repeats=1, batch_sizes=(1,), max_seconds=20)
    assert len(sizes) >= 2 and set(sizes) == {8}  # the warm-up, then the timed calls
    assert report.throughput[0].images == 8 * (len(sizes) - 1)


def test_a_folder_with_unreadable_images_benchmarks_the_rest(tmp_path, capsys) -> None:
    """One corrupt file failed the whole run, where foveal predict skips it with a line and goes on: the readable
    images are measured, each unreadable one is a line on stderr and an entry of the JSON's skipped."""
    folder = tmp_path / "photos"
    folder.mkdir()
    _small_jpeg(folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"not a jpeg")
    (folder / "c.jpg").write_bytes((folder / "a.jpg").read_bytes()[:600])  # truncated
    big = folder / "d.png"
    Image.new("RGB", (400, 300)).save(big)
    assert main(["bench", str(folder), "--model", "itti-koch", "--repeats", "1", "--batch", "1", "--json",
                 "--max-seconds", "5", "--max-pixels", "100000"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["images"] == [str(folder / "a.jpg")] and doc["stages"][0]["n"] == 1
    assert [s["image"] for s in doc["skipped"]] == [str(folder / name) for name in ("b.jpg", "c.jpg", "d.png")]
    err = captured.err.splitlines()
    assert len(err) == 3 and all(line.startswith(f"foveal: skipped {folder}") for line in err), err
    assert "not a recognised image format" in err[0] and "truncated" in err[1] and "raise --max-pixels" in err[2]
    assert main(["bench", str(folder / "b.jpg"), str(folder / "c.jpg"), "--model", "itti-koch", "--repeats", "1",
                 "--batch", "1"]) == 1  # none readable: an error, one line
    err = capsys.readouterr().err
    assert err.startswith("foveal: error: no image to benchmark: ") and "(and 1 more unreadable)" in err
    assert err.count("\n") == 1, err


def test_run_bench_lists_what_it_skipped(tmp_path) -> None:
    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    report = run_bench(Engine("itti-koch"), [b"garbage", image], repeats=1, batch_sizes=(1,), max_seconds=5)
    assert report.images == [str(image)] and [s["image"] for s in report.skipped] == ["<7 bytes>"]
    assert "skipped  1 unreadable: <7 bytes>" in report.table()
    with pytest.raises(InputError, match="no image to benchmark: <bytes>: not a recognised image format"):
        run_bench(Engine("itti-koch"), [b"garbage"], repeats=1, batch_sizes=(1,), max_seconds=5)


def test_images_are_read_first_within_the_time_budget(tmp_path, monkeypatch) -> None:
    """Every image was decoded before either timed loop's clock started: 200 large photos took 14 s at
    --max-seconds 1."""
    import foveal.bench as bench

    image = tmp_path / "a.jpg"
    _small_jpeg(image)
    ticks = iter(range(1000))
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(ticks)))  # each read takes "a second"
    readable, skipped, pixels = bench._readable(Engine("itti-koch"), [image] * 50, 3.0)
    assert len(readable) < 10 and pixels == 240 * 320
    assert skipped == []  # not read is not unreadable: the report counts them apart


def test_the_synthetic_image_over_the_pixel_limit_is_not_told_to_downscale(capsys) -> None:
    assert main(["bench", "--model", "itti-koch", "--max-pixels", "1e6", "--max-seconds", "1"]) == 1
    err = capsys.readouterr().err
    assert err == ("foveal: error: the synthetic 1920x1080 JPEG measured without images is over the engine's limit "
                   "of 1,000,000 pixels; raise --max-pixels or give images\n")


def test_the_command_line_keeps_paths_as_they_are_and_counts_images_not_read(tmp_path, monkeypatch, capsys) -> None:
    """The whole report went through the flag wording meant for messages: a folder named "raise max_pixels" came
    out as "raise --max-pixels"; and images the time budget did not reach were "unreadable"."""
    import itertools

    import foveal.bench as bench

    folder = tmp_path / "raise max_pixels"
    folder.mkdir()
    for i in range(6):
        _small_jpeg(folder / f"{i}.jpg")
    ticks = itertools.count()
    monkeypatch.setattr(bench.time, "perf_counter", lambda: float(next(ticks)))  # each read takes "a second"
    assert main(["bench", str(folder), "--model", "itti-koch", "--repeats", "1", "--batch", "1", "--max-seconds",
                 "2", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert doc["images"] and all(path.startswith(str(folder)) for path in doc["images"])
    assert doc["skipped"] == [] and doc["not_read"] == 6 - len(doc["images"]) > 0
    assert (f"foveal: {doc['not_read']} image(s) not read within --max-seconds (2 s); the run uses the "
            f"{len(doc['images'])} read before them") in captured.err


def test_a_batch_size_whose_maps_would_not_fit_is_skipped_and_versions_name_the_decoder(tmp_path) -> None:
    # --batch 96 held 4.9 GB of maps at 1080p in one call, and nothing capped it; the synthetic JPEG's decoder was
    # missing from the versions when no image file had been decoded before they were listed.
    report = run_bench(Engine("itti-koch"), repeats=1, batch_sizes=(128,), max_seconds=5)
    (row,) = report.throughput
    assert row.images_per_s is None and "would hold 5.9 GiB of maps (over 2 GiB)" in row.skipped
    assert "simplejpeg" in report.versions
