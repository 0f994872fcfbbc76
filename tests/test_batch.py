"""foveal.batch in one process: inputs, tables, errors, maps, resume after crashes, settings and graph checks."""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import foveal
from foveal import Engine, InputError
from foveal.batch import (CREATIVE_COLUMNS, CSV_HEADER, ELEMENT_COLUMNS, ERROR_COLUMNS, BatchItem, BatchOptions,
                          BatchStore, BatchSummary, CreativeResult, is_batch_input, read_inputs, run_batch)
from foveal.batch import store as store_module
from foveal.batch.scorer import AUTO
from foveal.scoring.elements import parse_elements

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def make_creatives(folder: Path, n: int, size: int = 96) -> list[Path]:
    """``n`` small creatives with a relative-units element file beside each (seeded, different per index)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(17)
    paths = []
    for i in range(n):
        pixels = np.full((size, size, 3), 40 + 3 * i % 200, np.uint8)
        x, y = rng.integers(0, size // 2, 2)
        pixels[y:y + size // 3, x:x + size // 3] = rng.integers(0, 256, 3)
        path = folder / f"c{i:03d}.png"
        Image.fromarray(pixels).save(path)
        (folder / f"c{i:03d}.json").write_text(json.dumps({"units": "relative", "elements": [
            {"name": "cta", "kind": "cta", "box": [0.1, 0.6, 0.3, 0.2]},
            {"name": "logo", "kind": "logo", "box": [0.6, 0.05, 0.3, 0.2]}]}))
        paths.append(path)
    return paths


def tables(out: Path) -> tuple[pa.Table, pa.Table]:
    return pq.read_table(out / "elements"), pq.read_table(out / "creatives")


def csv_rows(out: Path) -> list[dict[str, str]]:
    with (out / "scores.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture
def folder(tmp_path) -> Path:
    make_creatives(tmp_path / "in", 6)
    return tmp_path / "in"


def test_tables_rows_identity_and_csv_agree(folder, tmp_path, engine):
    out = tmp_path / "out"
    summary = run_batch(read_inputs(folder), out, engine)
    assert (summary.scored, summary.skipped, summary.failed) == (6, 0, 0)
    elements, creatives = tables(out)
    assert elements.column_names == list(ELEMENT_COLUMNS) and creatives.column_names == list(CREATIVE_COLUMNS)
    assert elements.num_rows == 12 and sorted(creatives.column("creative_id").to_pylist()) == \
        [f"c{i:03d}" for i in range(6)]
    for table in (elements, creatives):
        assert set(table.column("graph_sha256").to_pylist()) == {engine.graph_sha256}
        assert set(table.column("precision").to_pylist()) == {engine.precision}
        assert set(table.column("model").to_pylist()) == {engine.model.name}
    rows = csv_rows(out)
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == 12
    assert [float(r["share"]) for r in rows] == elements.column("share").to_pylist()
    # Same share as predicting the creative alone.
    smap = engine.predict(folder / "c003.png")
    cta = [r for r in elements.to_pylist() if r["creative_id"] == "c003" and r["element"] == "cta"][0]
    assert cta["share"] == pytest.approx(smap.share([cta["x"], cta["y"], cta["w"], cta["h"]]), abs=1e-12)
    settings = json.loads((out / "scores.settings.json").read_text())
    assert settings["graph_sha256"] == engine.graph_sha256 and settings["precision"] == engine.precision
    assert not (out / "reports").exists() and not (out / "maps").exists()  # only when asked
    assert pq.read_table(out / "errors.parquet").num_rows == 0


def test_csv_cells_that_a_spreadsheet_would_run_are_text_and_resume_reads_them_back(tmp_path, engine):
    """A file or element name starting with = + - @ is a formula to a spreadsheet opening scores.csv (CSV
    injection): written with a leading ', which resuming strips again to recognise the creatives it committed."""
    from foveal.fileio import spreadsheet_text

    folder = tmp_path / "in"
    folder.mkdir()
    names = ["=HYPERLINK(1)", "+1", "-2", "@SUM(A1)", "'quoted", "plain"]
    for i, name in enumerate(names):
        Image.fromarray(np.full((64, 64, 3), 30 * i, np.uint8)).save(folder / f"{name}.png")
        (folder / f"{name}.json").write_text(json.dumps({"units": "relative", "elements": [
            {"name": name, "kind": "cta", "box": [0.1, 0.1, 0.5, 0.5]}]}))
    (folder / "=broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    summary = run_batch(read_inputs(folder), out, engine)
    assert (summary.scored, summary.failed) == (6, 1)
    text = (out / "scores.csv").read_text()
    rows = csv_rows(out)
    assert sorted(r["creative_id"] for r in rows) == sorted(["'=HYPERLINK(1)", "'+1", "'-2", "'@SUM(A1)", "''quoted",
                                                             "plain"])
    for r in rows:
        assert r["element"] == r["creative_id"] and spreadsheet_text(r["creative_id"]) in names
        assert float(r["share"]) > 0  # numbers stay numbers
    elements = tables(out)[0].to_pylist()  # Parquet is for programs: it keeps the text as it is
    assert sorted(r["element"] for r in elements) == sorted(names)
    with (out / "errors.csv").open(newline="") as fh:
        assert next(csv.DictReader(fh))["creative_id"] == "'=broken"
    again = run_batch(read_inputs(folder), out, engine)
    assert (again.scored, again.skipped) == (0, 6)
    assert (out / "scores.csv").read_text() == text


def test_list_file_and_tables_give_the_same_rows(folder, tmp_path, engine):
    images = sorted(folder.glob("*.png"))
    (tmp_path / "list.txt").write_text("# creatives\n" + "\n".join(f"in/{p.name}" for p in images) + "\n\n")
    specs = {p.stem: json.loads(p.with_suffix(".json").read_text()) for p in images}
    pq.write_table(pa.table({"image": [str(p) for p in images], "creative_id": [f"id-{p.stem}" for p in images],
                             "elements": [json.dumps(specs[p.stem]) for p in images]}), tmp_path / "t.parquet")
    long = [{"creative_id": p.stem, "path": f"in/{p.name}", "units": "relative", "name": e["name"],
             "kind": e["kind"], **dict(zip("xywh", e["box"]))} for p in images for e in specs[p.stem]["elements"]]
    with (tmp_path / "long.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, list(long[0]))
        writer.writeheader()
        writer.writerows(long)
    shares = {}
    for name in ("list.txt", "t.parquet", "long.csv"):
        items = read_inputs(tmp_path / name)
        assert len(items) == 6
        run_batch(items, tmp_path / f"out-{name}", engine)
        rows = tables(tmp_path / f"out-{name}")[0].to_pylist()
        shares[name] = sorted((r["creative_id"].removeprefix("id-"), r["element"], r["share"]) for r in rows)
    assert shares["list.txt"] == shares["t.parquet"] == shares["long.csv"]


@pytest.mark.parametrize("text, message", [
    ("creative_id,image\na,x.png\na,y.png\n", "share the creative id 'a'"),
    ("image\n\n", "no creatives listed"),
    ("creative_id,image\nx/y,a.png\n", "cannot name a file"),
    ("creative_id,image\nx\x9b2J,a.png\n", "cannot name a file"),  # a C1 control, CSI to a terminal
    # 200 characters, 400 bytes: reports/<id>/ and maps/<id>.npy were too long a file name, and stopped the batch
    ("creative_id,image\n" + "é" * 200 + ",a.png\n", r"cannot name a file: use 1-200 characters \(200 bytes"),
    ("name,kind\n", "needs an 'image'"),
    ("image,image\na.png,b.png\n", "column 'image' appears more than once"),
    ("image,name,kind,x,y,w,h\na.png,cta,cta,inf,5,5,5\n", "column 'x' is inf"),
    ("image,name,kind,x,y,w,h\na.png,cta,cta,5,,5,5\n", "column 'y' is empty"),
    # One typo made the column text: every creative failed, the good ones with "value x must be a number, got '10'"
    ("creative_id,image,name,kind,x,y,w,h\nc0,a.png,cta,cta,10,10,50,20\nc1,b.png,cta,cta,1O,10,50,20\n",
     r"row 2: column 'x' is '1O', not a number"),
    # Boxes under other names were dropped for the element files beside the images.
    ("image,name,kind,x,y,width,height\na.png,cta,cta,5,5,5,5\n", "has name,kind,x,y but not w,h"),
    ("image,name,kind,x,y,w\na.png,cta,cta,5,5,5\n", "has name,kind,x,y,w but not h"),
])
def test_bad_tables_refused(tmp_path, text, message):
    (tmp_path / "t.csv").write_text(text)
    with pytest.raises(InputError, match=message):
        read_inputs(tmp_path / "t.csv")


def test_a_wide_header_is_refused_at_once_in_a_bounded_message(tmp_path):
    """A table's header of 5,000 columns took 10 s to check for repeated names (50,000: minutes, a hang), and its
    refusal listed every name."""
    (tmp_path / "t.csv").write_text(",".join(f"c{i}" for i in range(5000)) + "\n" + ",".join("1" * 5000) + "\n")
    started = time.monotonic()
    with pytest.raises(InputError, match=r"needs an 'image' \(or 'path'\) column; got c0, .*, c11 and 4,988 more$"):
        read_inputs(tmp_path / "t.csv")
    assert time.monotonic() - started < 5


def test_hidden_files_in_a_folder_are_not_creatives(tmp_path):
    """macOS leaves a ._NAME file beside each file copied to a foreign disk: its '._c000' could not be a creative
    id, and one refused the whole batch."""
    Image.new("RGB", (8, 8)).save(tmp_path / "c000.png")
    (tmp_path / "._c000.png").write_bytes(b"\0\5\26\7 AppleDouble")
    (tmp_path / ".hidden.jpg").write_bytes(b"")
    assert [item.creative_id for item in read_inputs(tmp_path)] == ["c000"]


def test_a_file_name_that_cannot_be_an_id_is_named_with_what_to_do(tmp_path):
    """It said "creative_id 'a\\tb' cannot name a file", about an id the user never gave."""
    Image.new("RGB", (8, 8)).save(tmp_path / "a\tb.png")
    with pytest.raises(InputError, match=r"a\\tb\.png: the file's name 'a\\tb' cannot serve as a creative id .*: "
                                         "rename the file or move it out of the batch"):
        read_inputs(tmp_path)


def test_a_list_file_sharing_an_id_is_not_told_of_a_column_it_cannot_have(tmp_path):
    for sub in ("x", "y"):
        (tmp_path / sub).mkdir()
        Image.new("RGB", (8, 8)).save(tmp_path / sub / "dup.png")
    (tmp_path / "list.txt").write_text("x/dup.png\ny/dup.png\n")
    with pytest.raises(InputError, match="share the creative id 'dup'; their rows, reports and maps would collide: "
                                         "rename one$"):
        read_inputs(tmp_path / "list.txt")


def test_a_table_sharing_an_id_in_its_creative_id_column_is_told_to_fix_that_column(tmp_path):
    """It was told to "give a creative_id column", which it has."""
    (tmp_path / "t.csv").write_text("creative_id,image\nx1,a.png\nx1,b.png\n")
    with pytest.raises(InputError, match="share the creative id 'x1'; their rows, reports and maps would collide: "
                                         "give each creative its own creative_id$"):
        read_inputs(tmp_path / "t.csv")
    (tmp_path / "u.csv").write_text("image\nx/a.png\ny/a.png\n")  # ids from the file names: a column would do
    with pytest.raises(InputError, match="share the creative id 'a'.*: rename one or give a creative_id column$"):
        read_inputs(tmp_path / "u.csv")


def test_table_units_cell_left_empty_means_pixels(tmp_path):
    """A long table mixing pixel and relative creatives leaves ``units`` empty on pixel rows (a CSV has no null),
    as an element CSV may: the empty cell is the default, pixels."""
    (tmp_path / "t.csv").write_text("creative_id,image,name,kind,x,y,w,h,units\n"
                                    "p,a.png,cta,cta,400,520,150,44,\n"
                                    "r,b.png,cta,cta,0.1,0.1,0.2,0.1, relative\n")
    items = {item.creative_id: json.loads(item.elements) for item in read_inputs(tmp_path / "t.csv")}
    assert items["p"] == [{"name": "cta", "kind": "cta", "box": [400, 520, 150, 44]}]
    assert items["r"][0]["units"] == "relative"


def test_table_ids_are_kept_as_written(tmp_path):
    """No type guessing on ids: outcomes keyed by 00123 must find the creative 00123."""
    (tmp_path / "t.csv").write_text("image,creative_id\na.png,00123\nb.png,1e3\nc.png,true\n")
    assert [item.creative_id for item in read_inputs(tmp_path / "t.csv")] == ["00123", "1e3", "true"]


def test_failures_go_to_errors_table_and_are_retried(folder, tmp_path, engine):
    (folder / "c001.png").write_bytes(b"not an image")
    (folder / "c004.json").write_text('{"elements": [{"name": "x", "kind": "cta", "box": [0, 0, 500, 10]}]}')
    out = tmp_path / "out"
    summary = run_batch(read_inputs(folder), out, engine)
    assert (summary.scored, summary.failed) == (4, 2)
    errors = pq.read_table(out / "errors.parquet")
    assert errors.column_names == list(ERROR_COLUMNS)
    assert errors.column("creative_id").to_pylist() == ["c001", "c004"]
    assert all(e for e in errors.column("error").to_pylist())
    with (out / "errors.csv").open() as fh:
        assert [r["creative_id"] for r in csv.DictReader(fh)] == ["c001", "c004"]
    make_creatives(folder, 6)  # fixed: the rerun scores just those two
    summary = run_batch(read_inputs(folder), out, engine)
    assert (summary.scored, summary.skipped, summary.failed) == (2, 4, 0)
    assert sorted(tables(out)[1].column("creative_id").to_pylist()) == [f"c{i:03d}" for i in range(6)]
    assert pq.read_table(out / "errors.parquet").num_rows == 0


def test_a_run_stopped_early_still_lists_the_failures_it_did_not_retry(folder, tmp_path, engine, monkeypatch):
    """Ctrl-C (or SIGTERM) on a resume before it reached last run's failures: errors.csv must not say they are gone."""
    (folder / "c004.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    run_batch(read_inputs(folder)[2:], out, engine)  # c002-c005 done but c004, which failed
    from foveal.batch import scorer as scorer_module

    real = scorer_module.Scorer.score

    def stop_at_c004(self, items):
        if any(i.creative_id == "c004" for i in items):
            raise KeyboardInterrupt
        return real(self, items)

    monkeypatch.setattr(scorer_module.Scorer, "score", stop_at_c004)
    with pytest.raises(KeyboardInterrupt):  # c000, c001 are new: scored and committed, then the stop
        run_batch(read_inputs(folder), out, engine, batch_size=2, commit_every=2)
    monkeypatch.undo()
    assert pq.read_table(out / "creatives").num_rows == 5
    with (out / "errors.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["creative_id"] for r in rows] == ["c004"] and "not a recognised image" in rows[0]["error"]
    summary = run_batch(read_inputs(folder), out, engine)  # the rerun retries it: still failing, listed once
    assert (summary.scored, summary.skipped, summary.failed) == (0, 5, 1)
    assert pq.read_table(out / "errors.parquet").column("creative_id").to_pylist() == ["c004"]
    (folder / "c004.png").unlink()  # no longer an input: a finished run no longer lists it
    assert run_batch(read_inputs(folder), out, engine).failed == 0
    assert pq.read_table(out / "errors.parquet").num_rows == 0


def test_maps_and_reports_when_asked(folder, tmp_path, engine):
    out = tmp_path / "out"
    run_batch(read_inputs(folder)[:2], out, engine, BatchOptions(maps=True, reports=True, html=False))
    prob = np.load(out / "maps" / "c000.npy")
    assert prob.shape == (96, 96) and prob.dtype == np.float32 and prob.sum() == pytest.approx(1, abs=1e-4)
    assert sorted(p.name for p in (out / "reports" / "c001").iterdir()) == ["scores.json"]


@pytest.mark.parametrize("fail_on", ["journal", "rows", "parquet", "report"])
def test_resume_after_crash_no_duplicates_or_losses(folder, tmp_path, engine, monkeypatch, fail_on):
    items, options = read_inputs(folder), BatchOptions(reports=True, html=False)
    clean = tmp_path / "clean"
    run_batch(items, clean, engine, options, batch_size=2, commit_every=1)
    expected = sorted(tuple(r.values()) for r in csv_rows(clean))

    # Crash on the third commit: after its rows, before its journal line ("journal"); halfway through its CSV rows
    # ("rows"); after its elements part, before its creatives part ("parquet"); before its report ("report").
    calls = {"append": 0, "parquet": 0, "report": 0}
    real_append, real_parquet = store_module._append_durably, store_module._write_parquet
    from foveal.batch import scorer as scorer_module
    real_report = scorer_module.write_report

    def append(fh, text):
        calls["append"] += 1
        if fail_on == "journal" and calls["append"] == 6:
            raise RuntimeError("power cut")
        if fail_on == "rows" and calls["append"] == 5:
            real_append(fh, text[: len(text) // 2])
            raise RuntimeError("power cut")
        real_append(fh, text)

    def parquet(path, name, rows):
        calls["parquet"] += 1
        if fail_on == "parquet" and calls["parquet"] == 6:
            raise KeyboardInterrupt
        real_parquet(path, name, rows)

    def report(*a, **k):
        calls["report"] += 1
        if fail_on == "report" and calls["report"] == 3:
            raise KeyboardInterrupt
        real_report(*a, **k)

    monkeypatch.setattr(store_module, "_append_durably", append)
    monkeypatch.setattr(store_module, "_write_parquet", parquet)
    monkeypatch.setattr(scorer_module, "write_report", report)
    out = tmp_path / "out"
    with pytest.raises((RuntimeError, KeyboardInterrupt)):
        run_batch(items, out, engine, options, batch_size=2, commit_every=1)
    monkeypatch.undo()
    assert (out / "scores.journal").read_text().count("\n") == 2
    (out / "elements" / ".part-000009.parquet.x1y2.part").write_bytes(b"half")  # as a kill -9 leaves them

    summary = run_batch(items, out, engine, options, batch_size=2, commit_every=1)
    assert summary.skipped == 2 and summary.scored == 4
    assert sorted(tuple(r.values()) for r in csv_rows(out)) == expected
    elements, creatives = tables(out)
    assert sorted(creatives.column("creative_id").to_pylist()) == [f"c{i:03d}" for i in range(6)]
    assert elements.num_rows == 12 and len(set(zip(*[elements.column(c).to_pylist()
                                                     for c in ("creative_id", "element")]))) == 12
    assert not list(out.rglob("*.part"))
    assert run_batch(items, out, engine, options).scored == 0  # all done: nothing rescored or appended
    assert sorted(tuple(r.values()) for r in csv_rows(out)) == expected


def test_resume_refuses_another_graph_or_settings(folder, tmp_path, engine):
    items, out = read_inputs(folder)[:2], tmp_path / "out"
    run_batch(items, out, engine)
    fp32 = Engine(precision="fp32")
    assert fp32.graph_sha256 != engine.graph_sha256
    with pytest.raises(InputError, match="graph_sha256, precision differ"):
        run_batch(read_inputs(folder), out, fp32)
    with pytest.raises(InputError, match="pass_percentile differ"):
        run_batch(read_inputs(folder), out, engine, BatchOptions(pass_percentile=50))
    with pytest.raises(InputError, match="maps differ"):  # a resume skips done creatives: it could not add their maps
        run_batch(read_inputs(folder), out, engine, BatchOptions(maps=True))
    # Detected elements (--elements auto) and the element files name other boxes, and no row says which it holds.
    detected = [dataclasses.replace(item, elements=AUTO) for item in read_inputs(folder)]
    with pytest.raises(InputError, match="elements differ"):
        run_batch(detected, out, engine)
    assert len(csv_rows(out)) == 4 and tables(out)[1].num_rows == 2
    run_batch([detected[0], items[1]], tmp_path / "auto", engine)  # items[1] commits with or without foveal[detect]
    with pytest.raises(InputError, match="elements differ"):
        run_batch(read_inputs(folder), tmp_path / "auto", engine)


def test_resume_refuses_another_store_or_tags(folder, tmp_path, engine):
    """A resume records only the creatives left: resumed without its --db (or into another, or with other tags) it
    left the store with a gap, or one run's creatives under two tags, without a word."""
    items, out = read_inputs(folder)[:2], tmp_path / "out"
    db = f"sqlite:///{tmp_path / 'a.db'}"
    run_batch(items, out, engine, BatchOptions(db=db, vertical="retail", tags=("q3",)))
    for options in (BatchOptions(), BatchOptions(db=f"sqlite:///{tmp_path / 'b.db'}", vertical="retail", tags=("q3",)),
                    BatchOptions(db=db, vertical="travel", tags=("q3",)), BatchOptions(db=db, vertical="retail")):
        with pytest.raises(InputError, match="store differ"):
            run_batch(read_inputs(folder), out, engine, options)
    summary = run_batch(read_inputs(folder), out, engine, BatchOptions(db=db, vertical="retail", tags=("q3",)))
    assert (summary.scored, summary.skipped) == (4, 2)
    # A password never reaches the settings file.
    url = "postgresql+psycopg://me:hunter2@127.0.0.1:1/x?password=hunter2"
    settings = store_module.batch_settings(store_module.engine_identity(engine), BatchOptions(db=url), items)
    assert "hunter2" not in json.dumps(settings) and settings["store"]["database"] == "postgresql:x"
    # One database reached another way (directly, after a proxy failed) is the same store.
    direct = store_module.batch_settings(store_module.engine_identity(engine),
                                         BatchOptions(db="postgresql+psycopg://me@10.0.0.5:5432/x"), items)
    assert direct["store"] == settings["store"]
    # A folder written without a store still resumes without one.
    plain = tmp_path / "plain"
    run_batch(items, plain, engine)
    assert run_batch(read_inputs(folder), plain, engine).skipped == 2


def test_a_run_that_committed_nothing_leaves_its_settings_open(folder, tmp_path, engine):
    """Stopped before its first commit (Ctrl-C on noticing a forgotten --maps), or every creative failed: there are
    no rows to mix, so the rerun's settings replace the first run's."""
    out = tmp_path / "out"
    summary = run_batch([BatchItem("gone", str(folder / "gone.png"))], out, engine)
    assert summary.failed == 1 and not (out / "scores.journal").read_text()
    summary = run_batch(read_inputs(folder), out, engine, BatchOptions(maps=True))
    assert (summary.scored, summary.failed) == (6, 0) and len(list((out / "maps").glob("*.npy"))) == 6
    assert json.loads((out / "scores.settings.json").read_text())["maps"] is True
    with pytest.raises(InputError, match="maps differ"):  # now there are rows to keep apart
        run_batch(read_inputs(folder), out, engine)


def test_one_writer_at_a_time_and_inputs_never_outputs(folder, tmp_path, engine):
    out = tmp_path / "out"
    settings = {"model": "m", "model_sha256": "s", "graph_sha256": "g", "precision": "fp32"}
    with BatchStore(out, settings):
        with pytest.raises(InputError, match="another foveal batch is writing"):
            BatchStore(out, settings)
    with pytest.raises(InputError, match="one of the batch's output files"):
        run_batch([BatchItem("a", str(out / "scores.csv"))], out, engine)
    with pytest.raises(InputError, match="non-empty sequence"):
        run_batch("creatives/", out, engine)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="appears twice"):
        run_batch([BatchItem("a", "x.png"), BatchItem("a", "y.png")], out, engine)
    # A list of paths, or a DataFrame, was refused without saying how to make a batch of it.
    with pytest.raises(InputError, match=r"got str; read_inputs\(folder, list file or table\) gives them"):
        run_batch(["x.png"], out, engine)  # type: ignore[list-item]
    pd = pytest.importorskip("pandas")
    with pytest.raises(InputError, match=r"got a DataFrame; save it as a table \(df.to_parquet"):
        read_inputs(pd.DataFrame({"image": ["x.png"]}))  # type: ignore[arg-type]
    assert os.listdir(out)  # the refused runs left the folder as it was


# --- Faults a data team causes: kills, signals, damaged folders, a full disk, messy lists ---------------------------


def test_many_failures_cost_no_scan_per_failure(tmp_path):
    """40,000 images gone missing (a storage outage): their errors are kept by id, not found by scanning a list."""
    settings = {"model": "m", "model_sha256": "s", "graph_sha256": "g", "precision": "fp32"}
    started = time.monotonic()
    with BatchStore(tmp_path / "out", settings) as store:
        for start in range(0, 40_000, 256):
            store.commit(CreativeResult(f"m{i:05d}", f"m{i:05d}.png", error="image file not found")
                         for i in range(start, min(start + 256, 40_000)))
        store.commit([CreativeResult("m00003", "m00003.png", error="again")])
        assert len(store.errors) == 40_000 and store.errors[-1] == {
            "creative_id": "m00003", "image": "m00003.png", "error": "again", **settings}
    assert time.monotonic() - started < 20  # a scan per failure: over a minute
    assert pq.read_table(tmp_path / "out" / "errors.parquet").num_rows == 40_000


FOVEAL_PATH = str(Path(foveal.__file__).resolve().parents[1])  # the installed package in CI, python/ in a checkout


def cli(*argv: object) -> subprocess.Popen:
    """``foveal -q score ARGV`` in a child process, as a scheduler runs it."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [FOVEAL_PATH, os.environ.get("PYTHONPATH")]))}
    # A suite started in the background (a shell's `cmd &`) hands SIGINT down ignored, and Python then sets no
    # Ctrl-C handler: the child must get SIGINT as a scheduler's foreground job would.
    return subprocess.Popen([sys.executable, "-m", "foveal", "-q", "score", *map(str, argv)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def journaled(out: Path) -> int:
    path = out / "scores.journal"
    return path.read_bytes().count(b"\n") if path.exists() else 0


def assert_same_as(out: Path, clean: Path) -> None:
    """The rows of one clean run, each creative once, values equal to the last bit; nothing half-written left."""
    want, got = csv_rows(clean), csv_rows(out)
    assert sorted(tuple(r.values()) for r in got) == sorted(tuple(r.values()) for r in want)
    for a, b in zip(tables(out), tables(clean)):
        assert sorted(map(tuple, (r.values() for r in a.to_pylist()))) == \
            sorted(map(tuple, (r.values() for r in b.to_pylist())))
    ids = tables(out)[1].column("creative_id").to_pylist()
    assert len(ids) == len(set(ids)) and sorted((out / "scores.journal").read_text().split()) == \
        sorted(json.dumps(i) for i in ids)
    assert not list(out.rglob("*.part"))


def non_ascii_creatives(folder: Path, n: int) -> None:
    """Creatives whose element names hold commas, quotes and multi-byte characters (quoted CSV cells)."""
    make_creatives(folder, n, size=64)
    for spec in folder.glob("*.json"):
        spec.write_text(json.dumps({"units": "relative", "elements": [
            {"name": "Jetzt kaufen, schön", "kind": "cta", "box": [0.1, 0.6, 0.3, 0.2]},
            {"name": 'Marke "Ü" — 品牌', "kind": "logo", "box": [0.6, 0.05, 0.3, 0.2]}]}, ensure_ascii=False),
            encoding="utf-8")


@pytest.mark.slow
def test_killed_terminated_interrupted_then_resumed_equals_one_clean_run(tmp_path):
    """Real processes: SIGKILL, SIGTERM and SIGINT each arrive mid-batch (after a few more commits); TERM and INT end
    with one line and a non-zero status, and the last run's tables equal those of one uninterrupted run."""
    non_ascii_creatives(tmp_path / "in", 120)
    args = (tmp_path / "in", "--no-report", "--commit-every", "1", "--batch-size", "1")
    clean = cli(*args, "-o", tmp_path / "clean")
    assert clean.communicate(timeout=300) == ("", "") and clean.returncode == 0
    out = tmp_path / "out"
    for sig, code, line in ((signal.SIGKILL, -signal.SIGKILL, None), (signal.SIGTERM, 143, "foveal: terminated"),
                            (signal.SIGINT, 130, "foveal: interrupted")):
        proc, target, deadline = cli(*args, "-o", out), journaled(out) + 2, time.monotonic() + 120
        try:
            while journaled(out) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            assert proc.poll() is None, f"ended before {sig.name}: {proc.communicate()[1][-2000:]}"
            proc.send_signal(sig)
        finally:
            _, err = proc.communicate(timeout=120)
        assert proc.returncode == code, err[-2000:]
        if line is not None:
            assert err.splitlines() == [line]
    before = journaled(out)
    assert 6 <= before < 120
    last = cli(*args, "-o", out)
    assert last.communicate(timeout=300) == ("", "") and last.returncode == 0
    assert_same_as(out, tmp_path / "clean")


@pytest.fixture
def partial(folder, tmp_path, engine) -> tuple[Path, Path]:
    """A finished batch (three commits) and a clean copy to compare with."""
    items = read_inputs(folder)
    for name in ("clean", "out"):
        run_batch(items, tmp_path / name, engine, commit_every=2)
    return tmp_path / "out", tmp_path / "clean"


@pytest.mark.parametrize("damage, message", [
    (lambda out: (out / "scores.journal").write_bytes(b'"c000"\n\x9c\xff\x00garbage\n'), "corrupt"),
    (lambda out: (out / "scores.journal").write_text((out / "scores.journal").read_text() + "{}\n"), "corrupt"),
    (lambda out: ((out / "scores.journal").unlink(), (out / "scores.journal").mkdir()), "Is a directory"),
    (lambda out: (out / "elements" / "part-000002.parquet").write_bytes(b"PAR1 not parquet"), "not a part"),
    (lambda out: pq.write_table(pa.table({"x": [1]}), out / "creatives" / "part-000007.parquet"), "not a part"),
    (lambda out: ((out / ".lock").unlink(), (out / ".lock").mkdir()), "Is a directory"),
    # A file where a table's folder was read as an empty table, and every committed row was dropped.
    (lambda out: (shutil.rmtree(out / "elements"), (out / "elements").write_text("")), "not a folder"),
    (lambda out: (shutil.rmtree(out / "creatives"), (out / "creatives").write_text("")), "not a folder"),
])
def test_damaged_folder_is_one_line_that_says_what_to_do(partial, folder, engine, damage, message):
    out, clean = partial
    damage(out)
    kept = {name: (out / name).read_bytes() for name in ("scores.csv", "scores.journal") if (out / name).is_file()}
    with pytest.raises(InputError, match=message) as refused:
        run_batch(read_inputs(folder), out, engine)
    assert {name: (out / name).read_bytes() for name in kept} == kept, "a refused run changed the tables"
    text = str(refused.value)
    assert "\n" not in text and ("delete it" in text or "use another output folder" in text)
    broken = Path(text.split(":")[0].removeprefix("cannot use "))
    assert broken.exists() and broken.parent in (out, out / "elements", out / "creatives")
    shutil.rmtree(broken) if broken.is_dir() else broken.unlink()  # as the message says; then it resumes
    run_batch(read_inputs(folder), out, engine)
    assert_same_as(out, clean)


@pytest.mark.parametrize("damage", ["csv row lost", "csv row doubled", "csv row garbled", "part copied",
                                    "part deleted", "cut inside a character"])
def test_damaged_rows_are_rescored_never_lost_or_doubled(partial, folder, engine, damage):
    """Whatever a crash or a careless hand did to the tables, each creative ends up whole and once in each."""
    out, clean = partial
    table = out / "scores.csv"
    lines = table.read_bytes().splitlines(keepends=True)
    if damage == "csv row lost":
        table.write_bytes(b"".join(lines[:3] + lines[4:]))
    elif damage == "csv row doubled":
        table.write_bytes(b"".join(lines + lines[5:7]))
    elif damage == "csv row garbled":
        table.write_bytes(b"".join(lines[:1] + [lines[1].replace(b"cta", b"ct\xff", 1)] + lines[2:]))
    elif damage == "part copied":
        shutil.copy(out / "elements" / "part-000001.parquet", out / "elements" / "part-000009.parquet")
    elif damage == "part deleted":
        (out / "creatives" / "part-000003.parquet").unlink()
    else:  # a kill (or a full disk) cut the last append inside a two-byte character
        table.write_bytes(b"".join(lines) + 'c005,caf\u00e9'.encode()[:-1])
        (out / "scores.journal").write_text("".join(f'"c00{i}"\n' for i in range(5)))
    assert damage.startswith("part") or table.read_bytes() != b"".join(lines)
    summary = run_batch(read_inputs(folder), out, engine)
    assert summary.scored >= 1 and summary.scored + summary.skipped == 6
    assert_same_as(out, clean)


@pytest.mark.skipif(shutil.which("unshare") is None or subprocess.run(
    ["unshare", "-rm", "true"], capture_output=True).returncode != 0,
    reason="needs unshare -rm (a private mount namespace) to mount a small filesystem")
def test_full_disk_and_read_only_folder_are_one_line_and_resumable(tmp_path):
    """A real full filesystem (a 48 KiB tmpfs in a private mount namespace), then the same one read-only, then
    enlarged: one line saying what to do each time, and the batch resumes to the rows of a clean run."""
    non_ascii_creatives(tmp_path / "in", 40)
    args = f"-q score {tmp_path / 'in'} --no-report --commit-every 2"
    clean = cli(*args.split()[2:], "-o", tmp_path / "clean")
    assert clean.communicate(timeout=300)[1] == "" and clean.returncode == 0
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = f"""
        run() {{ {sys.executable} -m foveal {args} -o {mnt}/out 2>{tmp_path}/err$1; echo $? >{tmp_path}/rc$1; }}
        mount -t tmpfs -o size=48k tmpfs {mnt} || exit 99
        run 1; run 2
        mount -o remount,ro {mnt}; run 3
        mount -o remount,rw,size=20m {mnt}; run 4
        cp -r {mnt}/out {tmp_path}/out
    """
    env = {**os.environ, "PYTHONPATH": FOVEAL_PATH}
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    runs = [((tmp_path / f"rc{i}").read_text().strip(), (tmp_path / f"err{i}").read_text()) for i in range(1, 5)]
    assert [rc for rc, _ in runs] == ["1", "1", "1", "0"], runs
    for _, err in runs[:2]:  # full: while scoring, or while reopening the folder
        assert err.count("\n") == 1 and err.startswith("foveal: error: cannot write ") and (
            "No space left on device; free some space, then run again" in err), err
    assert runs[2][1].count("\n") == 1 and runs[2][1].startswith(f"foveal: error: -o {mnt}/out: {mnt}/out is not "
                                                                  "writable (a read-only disk") and runs[3][1] == ""
    assert_same_as(tmp_path / "out", tmp_path / "clean")


@pytest.mark.parametrize("locked", ["elements", "creatives", "elements/part-000002.parquet"])
def test_an_unreadable_table_is_refused_and_nothing_committed_is_dropped(partial, folder, locked):
    """A table folder the run may not read was listed as holding no parts (Path.glob says nothing), so recovery
    dropped every committed creative as having no rows; an unreadable part was called foreign, to be deleted."""
    from tests.store_fixtures import without_root_override

    out, clean = partial
    kept = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    (out / locked).chmod(0o000)
    try:
        run = subprocess.run(without_root_override([sys.executable, "-m", "foveal", "-q", "score", str(folder), "-o",
                                                    str(out), "--no-report", "--commit-every", "2"]),
                             env={**os.environ, "PYTHONPATH": FOVEAL_PATH}, capture_output=True, text=True,
                             timeout=300)
    finally:
        (out / locked).chmod(0o755 if (out / locked).is_dir() else 0o644)
    assert run.returncode == 1 and run.stderr.count("\n") == 1, run.stderr
    assert f"cannot use {out / locked}" in run.stderr and "Permission denied" in run.stderr, run.stderr
    assert "delete" not in run.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"} == kept
    assert run_batch(read_inputs(folder), out, Engine()).skipped == 6
    assert_same_as(out, clean)


def test_an_input_folder_that_cannot_be_listed_is_one_line(folder, tmp_path):
    from tests.store_fixtures import without_root_override

    folder.chmod(0o000)
    try:
        run = subprocess.run(without_root_override([sys.executable, "-m", "foveal", "-q", "score", str(folder), "-o",
                                                    str(tmp_path / "out"), "--no-report"]),
                             env={**os.environ, "PYTHONPATH": FOVEAL_PATH}, capture_output=True, text=True,
                             timeout=300)
    finally:
        folder.chmod(0o755)
    assert run.returncode == 1 and run.stderr == f"foveal: error: cannot list {folder}: Permission denied; make it " \
        "readable\n", run.stderr


def test_a_pipe_or_folder_named_as_an_image_fails_on_its_own_line(folder, tmp_path, engine):
    """Listed like a link to no file, so that it is reported instead of vanishing from the batch."""
    os.mkfifo(folder / "pipe.jpg")
    (folder / "folder.png").mkdir()
    items = read_inputs(folder)
    assert {"pipe", "folder"} <= {i.creative_id for i in items}
    summary = run_batch(items, tmp_path / "out", engine)
    assert summary.scored == 6
    reasons = {e["creative_id"]: e["error"] for e in summary.errors}
    assert set(reasons) == {"pipe", "folder"} and "not a regular file" in reasons["pipe"], reasons
    assert "folder" in reasons["folder"] or "directory" in reasons["folder"], reasons


@pytest.mark.skipif(shutil.which("unshare") is None or subprocess.run(
    ["unshare", "-rm", "true"], capture_output=True).returncode != 0,
    reason="needs unshare -rm (a private mount namespace) to mount a small filesystem")
def test_a_full_disk_that_refuses_new_folders_stops_the_batch(tmp_path):
    """A filesystem out of inodes (or of blocks for a new folder) refuses each report's folder: that was one failed
    creative after another, "choose a writable location", the whole input scored for nothing. It stops the run."""
    non_ascii_creatives(tmp_path / "in", 30)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    args = f"-q score {tmp_path / 'in'} --commit-every 2"
    script = f"""
        run() {{ {sys.executable} -m foveal {args} -o {mnt}/out 2>{tmp_path}/err$1; echo $? >{tmp_path}/rc$1; }}
        mount -t tmpfs -o size=20m,nr_inodes=40 tmpfs {mnt} || exit 99
        run 1
        mount -o remount,nr_inodes=4000 {mnt}; run 2
        cp -r {mnt}/out {tmp_path}/out
    """
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], env={**os.environ, "PYTHONPATH": FOVEAL_PATH},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    (rc1, err1), (rc2, err2) = (((tmp_path / f"rc{i}").read_text().strip(), (tmp_path / f"err{i}").read_text())
                                for i in (1, 2))
    assert rc1 == "1" and err1.count("\n") == 1, err1
    assert "No space left on device; free some space, then run again" in err1, err1
    assert rc2 == "0" and err2 == "", err2
    assert len(csv_rows(tmp_path / "out")) == 60 and not list((tmp_path / "out").rglob("*.part"))


def test_list_files_as_editors_and_scripts_write_them(tmp_path, engine, monkeypatch):
    """A byte-order mark, CRLF, a file listed twice, a link to a deleted image, relative paths from two folders."""
    make_creatives(tmp_path / "in", 3)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "l.txt").write_bytes("\ufeffc000.png\r\n\r\n../in/c001.png\r\n".encode().replace(
        b"c000.png", b"../in/c000.png"))
    monkeypatch.chdir(tmp_path)
    here = read_inputs("lists/l.txt")
    monkeypatch.chdir(lists)
    assert read_inputs("l.txt") == here  # a resume from another folder records the same images
    assert [i.creative_id for i in here] == ["c000", "c001"]
    assert all(Path(i.image).is_absolute() and Path(i.image).is_file() for i in here)

    (lists / "twice.txt").write_text("../in/c000.png\n./../in/c000.png\n")
    with pytest.raises(InputError, match=r"c000.png is listed twice; list each creative once"):
        read_inputs("twice.txt")

    gone = tmp_path / "in" / "c009.png"
    gone.symlink_to(tmp_path / "deleted.png")
    items = read_inputs(tmp_path / "in")
    assert [i.creative_id for i in items] == ["c000", "c001", "c002", "c009"]
    summary = run_batch(items, tmp_path / "out", engine)
    assert summary.scored == 3 and [e["creative_id"] for e in summary.errors] == ["c009"]
    assert "not found" in summary.errors[0]["error"]

    loop = tmp_path / "in" / "c010.png"
    loop.symlink_to(loop)  # a link to itself: that creative fails, the batch goes on
    summary = run_batch(read_inputs(tmp_path / "in"), tmp_path / "out", engine)
    assert [e["creative_id"] for e in summary.errors] == ["c009", "c010"]


def test_many_failures_are_counted_on_the_terminal_and_listed_in_the_table(tmp_path, capsys):
    """A batch with thousands of failures prints the first few and where all of them are, not a line each."""
    from foveal.cli.score import ERRORS_SHOWN, report_summary

    errors = [{"creative_id": f"b{i:04d}", "error": "file is empty"} for i in range(ERRORS_SHOWN + 5)]
    assert report_summary(BatchSummary(tmp_path, scored=3, errors=errors), quiet=False) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[:ERRORS_SHOWN] == [f"foveal: error: b{i:04d}: file is empty" for i in range(ERRORS_SHOWN)]
    assert lines[ERRORS_SHOWN:] == [
        f"foveal: error: 5 more failed creative(s): all {ERRORS_SHOWN + 5} are in {tmp_path / 'errors.csv'}",
        f"foveal: scored 3 creative(s), 0 already done, {ERRORS_SHOWN + 5} failed → {tmp_path}"]


def test_progress_in_a_log_says_the_time_left_and_a_line_a_minute(capsys, monkeypatch):
    from foveal import progress as progress_module

    assert list(progress_module.progress(range(50), label="score")) == list(range(50))
    lines = capsys.readouterr().err.splitlines()  # not a terminal: a line per 10 %
    assert len(lines) == 10 and lines[-1].startswith("score [##############################] 50/50 (")
    assert all(line.endswith(" left)") for line in lines[:-1]) and lines[-1].endswith("/s)")
    assert [progress_module._duration(s) for s in (4.4, 65, 7620)] == ["4s", "1m05s", "2h07m"]
    monkeypatch.setattr(progress_module, "LOG_EVERY_SECONDS", 0.0)  # a slow batch: a line per interval
    list(progress_module.progress(range(5), total=1000, label="score"))
    assert len(capsys.readouterr().err.splitlines()) == 5


def terminal(monkeypatch, term: str):
    """stderr as a terminal of type ``term`` (its text is the returned stream's), each progress item 0.2 s after
    the one before: past the bar's 0.1 s redraw interval, and the rate, and so the line's length, falls and rises."""
    import io
    from foveal import progress as progress_module

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setenv("TERM", term)
    ticks = iter(np.arange(0, 1e4, 0.2))
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(ticks))
    return stream


@pytest.mark.parametrize("term, erase", [("xterm", "\033[K"), ("dumb", None)])
def test_progress_on_a_terminal_erases_a_longer_line_as_the_terminal_can(monkeypatch, term, erase):
    """A dumb terminal (TERM=dumb) shows escape codes as text: the bar printed "^[[K" after every redraw there."""
    from foveal import progress as progress_module

    stream = terminal(monkeypatch, term)
    list(progress_module.progress(range(12), total=12, label="score"))
    redraws = stream.getvalue().split("\r")[1:]
    assert len(redraws) == 12
    if erase:
        assert all(r.rstrip("\n").endswith(erase) for r in redraws)
    else:
        assert "\033" not in stream.getvalue()
        widths = [len(r.rstrip("\n")) for r in redraws]
        assert all(b >= a for a, b in zip(widths, widths[1:]))  # each redraw covers the one before


@pytest.mark.parametrize("term", ["xterm", "dumb"])
def test_a_note_during_a_progress_bar_takes_a_line_of_its_own(monkeypatch, term):
    """An error printed while the bar was on the terminal's line was written onto it ("1/3 (3.6/s)foveal: error")."""
    from foveal import progress as progress_module

    stream = terminal(monkeypatch, term)
    for i in progress_module.progress(range(3), total=3, label="predict"):
        if i == 1:
            progress_module.note("foveal: error: b.png: broken")
    progress_module.note("foveal: done")
    screen = stream.getvalue()
    before, after = screen.split("foveal: error: b.png: broken\n")
    if term == "xterm":
        assert before.endswith("]\033[K\r\033[K") or before.endswith(")\033[K\r\033[K"), repr(before[-40:])
    else:  # blanked with spaces, then back to the line's start
        assert re.search(r"\)\r {40,}\r$", before) and "\033" not in screen, repr(before[-80:])
    assert after.startswith("\rpredict [") and after.endswith("\nfoveal: done\n"), repr(after)


def test_norms_build_ends_its_progress(tmp_path, capsys):
    """zip(items, bar) stopped at the items' end, before the bar counted its last one: a log's last line was 4/5."""
    from foveal.cli import main

    refs = tmp_path / "refs"
    make_creatives(refs, 5)
    assert main(["norms", "build", str(refs), "-o", str(tmp_path / "n.json"), "--model", "itti-koch"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("norms [")]
    assert lines[-1].startswith("norms [##############################] 5/5"), lines


def test_a_folder_of_subfolders_says_how_to_batch_them(tmp_path):
    make_creatives(tmp_path / "creatives" / "campaign-a", 1)
    with pytest.raises(InputError, match=r"no images .*; subfolders are not searched: give a list file"):
        read_inputs(tmp_path / "creatives")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no images \([^)]*\)$"):  # no subfolder: no hint
        read_inputs(tmp_path / "empty")


@pytest.mark.parametrize("options, match", [
    ({"pass_percentile": 500}, r"pass_percentile must be a number in \(0, 100\], got 500"),
    ({"pass_percentile": "50"}, "pass_percentile must be a number"),
    ({"elements_dir": "/nonexistent"}, "elements_dir /nonexistent: not a folder"),
    ({"reports": "no"}, "reports must be True or False, got 'no'"),
    ({"tags": "spring"}, r"pass \['spring'\] for one tag"),
])
def test_batch_options_are_checked_when_made(options, match):
    """A bad setting was accepted, then failed every creative one by one (pass_percentile=500, a missing
    elements_dir), or meant its opposite (reports="no" wrote reports)."""
    with pytest.raises(InputError, match=match):
        BatchOptions(**options)


def test_run_batch_refuses_a_generator_and_batch_size_0_before_making_its_folder(tmp_path):
    image = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(image)
    items = [BatchItem("a", str(image), '[{"name": "cta", "kind": "cta", "box": [0, 0, 4, 4]}]')]
    for call, match in ((lambda: run_batch((i for i in items), tmp_path / "o1", None), "a non-empty sequence"),
                        (lambda: run_batch(items, tmp_path / "o2", None, batch_size=0), "batch_size must be >= 1")):
        with pytest.raises(InputError, match=match):
            call()
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


_CTRL_C_DURING_PANDAS_IMPORT = """
import os, signal, sys
class CtrlC:
    fired = False
    def find_spec(self, name, path=None, target=None):
        if name == "pandas.core.api" and not CtrlC.fired:  # what pyarrow imports on its first table
            CtrlC.fired = True
            os.kill(os.getpid(), signal.SIGINT)
        return None
sys.meta_path.insert(0, CtrlC())
from foveal.cli import main
status = main(sys.argv[1:])
print("pandas imported" if CtrlC.fired else "pandas not imported")
sys.exit(status)
"""


def test_a_ctrl_c_while_pyarrow_imports_pandas_stops_the_batch(tmp_path):
    """The first decode imported pandas (through pyarrow's Arrow export) in Cython code that swallows a
    KeyboardInterrupt: a Ctrl-C in that half second was lost and the batch ran to its end, exit 0. pandas is now
    first imported by the first Parquet table, where an interrupt goes through."""
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-c", _CTRL_C_DURING_PANDAS_IMPORT, "-q", "score",
                          str(EXAMPLES / "references"), "-o", str(out), "--model", "itti-koch"],
                         env={**os.environ, "PYTHONPATH": FOVEAL_PATH}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 130 and "interrupted" in run.stderr, (run.returncode, run.stdout, run.stderr)
    assert "pandas imported" in run.stdout
    assert not (out / "scores.journal").read_text()  # nothing committed after the interrupt


def test_decoding_an_image_never_imports_pandas(tmp_path):
    """The decode's Arrow export went through pa.array and to_numpy, whose first use imports pandas in that same
    Cython code: a Ctrl-C during a command's first decode was lost and predict wrote its maps, exit 0."""
    run = subprocess.run([sys.executable, "-c", _CTRL_C_DURING_PANDAS_IMPORT, "-q", "predict",
                          str(EXAMPLES / "creative.png"), "-o", str(tmp_path / "out"), "--model", "itti-koch"],
                         env={**os.environ, "PYTHONPATH": FOVEAL_PATH}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "pandas not imported" in run.stdout, (run.returncode, run.stdout, run.stderr)


def test_relative_option_paths_are_recorded_absolute_as_with_ray(tmp_path, monkeypatch):
    """Without Ray, errors and reports named "edir/c000.json"; with Ray, the absolute path of the same file."""
    make_creatives(tmp_path / "in", 2)
    (tmp_path / "edir").mkdir()
    for name in ("c000", "c001"):
        (tmp_path / "edir" / f"{name}.json").write_text('[{"name": "x", "kind": "button", "box": [1, 1, 5, 5]}]')
    monkeypatch.chdir(tmp_path)
    summary = run_batch(read_inputs("in"), "out", Engine("itti-koch"), BatchOptions(elements_dir="edir"))
    assert [e["error"].split(":")[0] for e in summary.errors] == [str(tmp_path / "edir" / f"c00{i}.json")
                                                                   for i in range(2)]


def test_run_batch_closes_the_calibration_store_it_opened(folder, tmp_path, engine, monkeypatch):
    """A process that runs batch after batch (a scheduler's worker) kept one database connection per run open, until
    a garbage collection found it: PostgreSQL refuses connections past its limit."""
    from foveal.store import Store

    closed = []
    close = Store.close
    monkeypatch.setattr(Store, "close", lambda self: (closed.append(self), close(self))[1])
    items = read_inputs(folder)[:2]
    summary = run_batch(items, tmp_path / "out", engine, BatchOptions(db=f"sqlite:///{tmp_path / 'f.db'}"))
    assert summary.scored == 2 and len(closed) == 1
    lock = store_module._lock(tmp_path / "out" / store_module.LOCK_NAME)  # another writer: the run is refused...
    with lock:
        with pytest.raises(InputError, match="another foveal batch is writing"):
            run_batch(items, tmp_path / "out", engine, BatchOptions(db=f"sqlite:///{tmp_path / 'f.db'}"))
    assert len(closed) == 2  # ...and closes the store all the same


def test_a_store_that_may_not_be_written_is_refused_before_any_creative_is_scored(store_url, folder, tmp_path):
    """A read-only SQLite file, or a PostgreSQL database that only reads (a standby, a read-only default), was
    found out creative by creative, each scored first and then refused: a day's batch thrown away line by line."""
    import psycopg

    from foveal.store import Store
    from tests.store_fixtures import without_root_override

    Store(store_url).close()  # a store that exists, so that opening it writes nothing
    if store_url.startswith("sqlite"):
        Path(store_url.removeprefix("sqlite:///")).chmod(0o444)
    else:
        base, name = store_url.rsplit("/", 1)
        with psycopg.connect(base.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {name} SET default_transaction_read_only = on")
    run = subprocess.run(without_root_override([sys.executable, "-m", "foveal", "-q", "score", str(folder), "-o",
                                                str(tmp_path / "out"), "--no-report", "--db", store_url]),
                         env={**os.environ, "PYTHONPATH": FOVEAL_PATH}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 1 and len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert "the store failed" in run.stderr and "may be written" in run.stderr
    assert not (tmp_path / "out").exists()  # refused before the batch began


def _batch_frozen_in_its_second_record(postgres_server: str, name: str, items, out: Path, engine,
                                       monkeypatch) -> tuple[BatchSummary, list[float]]:
    """Run a batch recording to database ``name`` through a FreezingProxy that stops answering within the second
    creative's record (the response limit set to 2 s); its summary and the seconds each record took."""
    import threading

    import psycopg
    import sqlalchemy as sa

    from foveal.store import Store, database
    from tests.store_fixtures import FreezingProxy

    with psycopg.connect(postgres_server.replace("postgresql+psycopg", "postgresql") + "/postgres",
                         autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    monkeypatch.setattr(database, "RESPONSE_TIMEOUT_S", 2)
    record, waits = Store.record, []

    def timed_record(self, *args, **kwargs):
        if len(waits) == 1:
            sa.event.listen(self.engine, "before_cursor_execute", lambda *_: proxy.freeze(), once=True)
        begun = time.monotonic()
        try:
            return record(self, *args, **kwargs)
        finally:
            waits.append(time.monotonic() - begun)

    monkeypatch.setattr(Store, "record", timed_record)
    done: list[BatchSummary] = []
    with FreezingProxy(int(postgres_server.rsplit(":", 1)[1])) as proxy:
        url = f"postgresql+psycopg://foveal@127.0.0.1:{proxy.port}/{name}?connect_timeout=2"
        batch = threading.Thread(target=lambda: done.append(run_batch(
            items, out, engine, BatchOptions(db=url), batch_size=1)), daemon=True)
        start = time.monotonic()
        batch.start()
        batch.join(timeout=40)
        assert done, f"the batch still waited on the store after {time.monotonic() - start:.0f} s"
    monkeypatch.setattr(Store, "record", record)
    return done[0], waits


def test_a_store_that_stops_answering_fails_the_creatives_it_holds_up_and_the_rerun_records_them(
        postgres_server, folder, tmp_path, engine, monkeypatch):
    """A PostgreSQL server (or a proxy before it) that stopped answering mid-batch held the batch forever: only
    connecting had a limit, and the kernel still acknowledged the connection, so no TCP timeout ended the wait."""
    from foveal.store import Store

    items = read_inputs(folder)[:4]
    summary, _ = _batch_frozen_in_its_second_record(postgres_server, "frozen_mid_batch", items, tmp_path / "out",
                                                    engine, monkeypatch)
    assert summary.scored == 1 and [e["creative_id"] for e in summary.errors] == ["c001", "c002", "c003"]
    assert "the server did not answer within 2 s" in summary.errors[0]["error"]
    assert all(len(e["error"].splitlines()) == 1 and "then rerun" in e["error"] for e in summary.errors)
    summary = run_batch(items, tmp_path / "out", engine, BatchOptions(db=f"{postgres_server}/frozen_mid_batch"))
    assert (summary.scored, summary.skipped, summary.errors) == (3, 1, [])
    with Store(f"{postgres_server}/frozen_mid_batch") as store:
        assert store.counts()["predictions"] == 4


def test_after_a_store_stops_answering_the_later_creatives_fail_at_once_and_the_rerun_records_them(
        postgres_server, tmp_path, engine, monkeypatch):
    """Once the server stopped answering, every later creative waited the whole connect limit (30 s) before its store
    write failed: 55 creatives after a freeze took half an hour, where scoring them takes seconds."""
    from foveal.store import Store, database

    monkeypatch.setattr(database, "COOL_DOWN_S", 600, raising=False)  # no retry within this test
    items = read_inputs(make_creatives(tmp_path / "in", 8)[0].parent)
    summary, waits = _batch_frozen_in_its_second_record(postgres_server, "frozen_then_down", items,
                                                        tmp_path / "out", engine, monkeypatch)
    assert summary.scored == 1 and [e["creative_id"] for e in summary.errors] == [f"c{i:03d}" for i in range(1, 8)]
    assert 1.5 < waits[1] < 10 and max(waits[2:]) < 0.5, waits
    first, *later = (e["error"] for e in summary.errors)
    assert "the server did not answer within 2 s" in first
    assert all(len(e.splitlines()) == 1 and "the store is down" in e and "rerun" in e for e in later), later
    with (tmp_path / "out" / "errors.csv").open(newline="", encoding="utf-8") as fh:
        assert [row["creative_id"] for row in csv.DictReader(fh)] == [f"c{i:03d}" for i in range(1, 8)]
    summary = run_batch(items, tmp_path / "out", engine, BatchOptions(db=f"{postgres_server}/frozen_then_down"))
    assert (summary.scored, summary.skipped, summary.errors) == (7, 1, [])
    with Store(f"{postgres_server}/frozen_then_down") as store:
        assert store.counts()["predictions"] == 8


def test_a_batch_stopped_while_its_store_does_not_answer_says_only_that_it_was_stopped(postgres_server, tmp_path):
    """SIGTERM (or Ctrl-C) while a store query waited on a server that stopped answering printed psycopg's own
    warnings ("query cancellation failed: ...", "query not terminated after cancellation: ...") before the command's
    one line."""
    import psycopg

    from tests.store_fixtures import FreezingProxy

    make_creatives(tmp_path / "in", 30)
    admin = postgres_server.replace("postgresql+psycopg", "postgresql")
    with psycopg.connect(f"{admin}/postgres", autocommit=True) as conn:
        conn.execute("CREATE DATABASE stopped_while_frozen")
    with FreezingProxy(int(postgres_server.rsplit(":", 1)[1])) as proxy:
        url = f"postgresql+psycopg://foveal@127.0.0.1:{proxy.port}/stopped_while_frozen"
        with subprocess.Popen([sys.executable, "-m", "foveal", "-q", "score", str(tmp_path / "in"), "-o",
                               str(tmp_path / "out"), "--no-report", "--db", url], stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": FOVEAL_PATH}) as batch:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and batch.poll() is None:  # until the first creative is recorded
                with psycopg.connect(f"{admin}/stopped_while_frozen") as conn:
                    table = conn.execute("SELECT to_regclass('predictions')").fetchone()[0]
                    if table and conn.execute("SELECT count(*) FROM predictions").fetchone()[0]:
                        break
                time.sleep(0.02)
            proxy.freeze()
            time.sleep(1)
            batch.terminate()
            _, err = batch.communicate(timeout=40)
    assert (batch.returncode, err) == (143, "foveal: terminated\n")


def test_a_float32_column_of_relative_boxes_gives_the_boxes_of_its_decimals(tmp_path):
    """A Parquet float column of 0.7 (float32: 0.699999988 widened) made x1 = 0.7 + 0.125 of a 300 px image
    247.49999 px, a pixel short of the 248 that the same table written as float64 or CSV gives."""
    Image.new("RGB", (300, 300)).save(tmp_path / "a.png")
    rows = {"creative_id": ["a", "a"], "image": ["a.png", "a.png"], "name": ["cta", "logo"], "kind": ["cta", "logo"],
            "units": ["relative", "relative"]}
    boxes = {"x": [0.7, 0.35], "y": [0.1, 0.45], "w": [0.125, 0.125], "h": [0.3, 0.375]}
    resolved = {}
    for kind in (pa.float64(), pa.float32(), pa.float16()):
        table = pa.table({**rows, **{c: pa.array(v, kind) for c, v in boxes.items()}})
        pq.write_table(table, tmp_path / "t.parquet")
        (item,) = read_inputs(tmp_path / "t.parquet")
        resolved[str(kind)] = [e.box for e in parse_elements(json.loads(item.elements), (300, 300)).elements]
    assert resolved["float"] == resolved["double"] == [(210, 30, 38, 90), (105, 135, 38, 113)], resolved
    assert resolved["halffloat"] == resolved["double"], resolved


def test_an_element_file_found_by_name_is_never_overwritten_by_the_tables(tmp_path, engine):
    """A batch scored into its own input folder took errors.png's element file, errors.csv, for one of its tables:
    the first run was refused only after the work, and the rerun (the creative done, its file no longer opened)
    replaced it with the errors table."""
    folder = tmp_path / "in"
    make_creatives(folder, 1)
    (folder / "c000.png").rename(folder / "errors.png")
    (folder / "errors.csv").write_text("name,kind,x,y,w,h\ncta,cta,10,10,20,20\n")
    (folder / "c000.json").unlink()
    before = (folder / "errors.csv").read_text()
    for _ in range(2):
        with pytest.raises(InputError, match="errors.png: an input is one of the batch's output files"):
            run_batch(read_inputs(folder), folder, engine)
    assert (folder / "errors.csv").read_text() == before
    assert sorted(p.name for p in folder.iterdir()) == ["errors.csv", "errors.png"]  # refused before any work


def test_a_part_of_the_other_table_is_named_not_taken(folder, tmp_path, engine):
    """A creatives part copied among the elements parts was read for its creative_id alone, which both tables
    have: taken as the elements table's, the resumed run ended 0 with a table that had no element column."""
    out = tmp_path / "out"
    run_batch(read_inputs(folder), out, engine, commit_every=1)
    shutil.copy(sorted((out / "creatives").glob("part-*.parquet"))[0], out / "elements" / "part-999999.parquet")
    with pytest.raises(InputError, match=r"part-999999.parquet: not a part of this batch's elements table \(its "
                                         r"columns are not the elements table's\)"):
        run_batch(read_inputs(folder), out, engine)


def test_a_report_that_cannot_be_written_fails_its_creative_not_the_batch(folder, tmp_path, engine):
    """A file in the place of one creative's report folder stopped the batch: nothing after it ran, and what had
    been scored before it in that commit was thrown away."""
    out = tmp_path / "out"
    (out / "reports").mkdir(parents=True)
    (out / "reports" / "c002").write_text("in the way")
    summary = run_batch(read_inputs(folder), out, engine, options=BatchOptions(reports=True))
    assert summary.scored == 5 and [e["creative_id"] for e in summary.errors] == ["c002"]
    assert "cannot write" in summary.errors[0]["error"] and "Not a directory" in summary.errors[0]["error"]


def test_batch_items_take_paths_and_refuse_what_is_no_name(tmp_path):
    """A pathlib.Path reached pyarrow as it was and failed the batch with a traceback; None or a number as the
    creative id was a TypeError."""
    item = BatchItem("p", Path("a.png"), Path("a.json"))
    assert (item.image, item.elements) == ("a.png", "a.json")
    for args, says in ((("p", None), "image: expected text or a path"), ((None, "x.png"), "creative_id: expected text"),
                       ((5, "x.png"), "creative_id: expected text"), (("a", "x.png", [{}]), "elements: expected")):
        with pytest.raises(InputError, match=says):
            BatchItem(*args)
    assert is_batch_input(str(tmp_path)) and not is_batch_input("a.png")  # took only a Path (AttributeError)
    with pytest.raises(InputError, match="path: expected a file path"):
        is_batch_input(None)


def test_batch_options_tags_are_a_list_of_text():
    # None passed, then failed the batch's first store write; [5] passed without a store, unchecked.
    for tags in (None, [5], 7):
        with pytest.raises(InputError, match="tags: expected a list of text tags"):
            BatchOptions(tags=tags)
    assert BatchOptions(tags=(t for t in ["a", "b"])).tags == ("a", "b")
