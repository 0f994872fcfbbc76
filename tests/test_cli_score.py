"""`foveal score` and `foveal norms build` end to end on the example creatives: single, batch, resume, norms."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from foveal import DEFAULT_MODEL
from foveal.cli import main
from foveal.batch import CSV_HEADER

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CREATIVE, ELEMENTS = EXAMPLES / "creative.png", EXAMPLES / "creative.json"


def run(*argv: object) -> int:
    return main(["-q", *map(str, argv)])


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def norms_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("norms") / "norms.json"
    assert run("norms", "build", EXAMPLES / "references", "-o", out) == 0
    return out


@pytest.fixture
def small_folder(tmp_path) -> Path:
    """Six 200x200 creatives (the references shrunk), element files in relative units in a separate folder."""
    images, elements = tmp_path / "creatives", tmp_path / "elements"
    images.mkdir(), elements.mkdir()
    for src in sorted((EXAMPLES / "references").glob("*.png"))[:6]:
        with Image.open(src) as im:
            im.resize((200, 200), Image.Resampling.BOX).save(images / src.name)
        spec = json.loads(src.with_suffix(".json").read_text())
        for e in spec["elements"]:
            e["box"] = [v / 600 for v in e["box"]]
        (elements / f"{src.stem}.json").write_text(json.dumps({"units": "relative", "elements": spec["elements"]}))
    return tmp_path


def test_single_creative_writes_scores_overlay_and_report(tmp_path):
    out = tmp_path / "out"
    assert run("score", CREATIVE, "--elements", ELEMENTS, "-o", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["overlay.png", "report.html", "scores.json"]
    doc = json.loads((out / "scores.json").read_text())
    assert doc["input"]["image_sha256"] == hashlib.sha256(CREATIVE.read_bytes()).hexdigest()
    assert doc["model"]["name"] == DEFAULT_MODEL and len(doc["model"]["sha256"]) == 64
    assert doc["image_size"] == {"height": 600, "width": 600} and doc["format"] == "600x600"
    names = [e["name"] for e in json.loads(ELEMENTS.read_text())["elements"]]
    assert [e["name"] for e in doc["elements"]] == names
    assert sorted(e["rank"] for e in doc["elements"]) == list(range(1, len(names) + 1))
    assert all(e["percentile"] is None and e["passed"] is None and "no norms" in e["norm_note"]
               for e in doc["elements"])
    assert doc["norms"] is None and "share" in doc["definitions"]
    c = doc["creative"]
    assert c["conversion_share"] + c["other_elements_share"] + c["background_share"] == pytest.approx(1.0)
    assert all({"id", "severity", "message", "numbers"} <= set(r) for r in doc["recommendations"])
    page = (out / "report.html").read_text()
    assert "<svg" in page and page.count("data:image/jpeg;base64,") == 2
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    with Image.open(out / "overlay.png") as overlay:
        assert overlay.size == (600, 600)


def test_element_file_found_beside_image_and_csv_accepted(tmp_path):
    shutil.copy(CREATIVE, tmp_path / "ad.png")
    rows = ["name,kind,x,y,w,h"] + [f'{e["name"]},{e["kind"]},{",".join(map(str, e["box"]))}'
                                    for e in json.loads(ELEMENTS.read_text())["elements"]]
    (tmp_path / "ad.csv").write_text("\n".join(rows) + "\n")
    assert run("score", tmp_path / "ad.png", "-o", tmp_path / "out", "--no-report") == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["scores.json"]
    from_csv = json.loads((tmp_path / "out" / "scores.json").read_text())["elements"]
    assert run("score", CREATIVE, "--elements", ELEMENTS, "-o", tmp_path / "ref", "--no-report") == 0
    assert from_csv == json.loads((tmp_path / "ref" / "scores.json").read_text())["elements"]


def test_norms_build_then_score_with_percentiles(tmp_path, norms_file):
    norms = json.loads(norms_file.read_text())
    assert list(norms["formats"]) == ["600x600"] and norms["formats"]["600x600"]["creatives"] == 8
    assert all(len(v) == 8 for v in norms["formats"]["600x600"]["kinds"].values())
    assert norms["model"]["name"] == DEFAULT_MODEL
    out = tmp_path / "out"
    assert run("score", CREATIVE, "--elements", ELEMENTS, "-o", out, "--norms", norms_file) == 0
    doc = json.loads((out / "scores.json").read_text())
    assert doc["norms"]["creatives"] == 8 and doc["norms"]["warning"] is None
    for e in doc["elements"]:
        values = norms["formats"]["600x600"]["kinds"][e["kind"]]
        assert e["percentile"] == 100.0 * sum(v <= e["share"] for v in values) / len(values)
        assert e["score"] == int(e["percentile"] + 0.5) and e["passed"] == (e["percentile"] >= 70)


def test_a_format_the_norms_lack_is_refused(tmp_path, norms_file, capsys):
    """An explicit --format missing from the norms is a typo: every percentile would be null, with no word."""
    out = tmp_path / "out"
    assert run("score", CREATIVE, "--elements", ELEMENTS, "-o", out, "--norms", norms_file, "--format", "60x600") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"foveal: error: format '60x600' is not in the norms {norms_file} (they have 600x600); name one "
                   "of those"] and not out.exists()


def test_norms_from_another_model_refused_unless_allowed(tmp_path, norms_file, capsys):
    other = json.loads(norms_file.read_text())
    other["model"] = {"name": "other", "sha256": "f" * 64, "graph_sha256": "f" * 64, "precision": "fp32"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    out = tmp_path / "out"
    assert run("score", CREATIVE, "--elements", ELEMENTS, "-o", out, "--norms", tmp_path / "other.json") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pass --allow-model-mismatch" in err[0] and not out.exists()
    assert run("score", CREATIVE, "--elements", ELEMENTS, "-o", out, "--norms", tmp_path / "other.json",
               "--allow-model-mismatch") == 0
    assert "not comparable" in json.loads((out / "scores.json").read_text())["norms"]["warning"]


def test_norms_of_another_precision_refused_and_the_graph_recorded(tmp_path, norms_file, capsys):
    # The norms were built with the default (int8) graph; fp32 shares of the same model differ, so they are refused.
    norms = json.loads(norms_file.read_text())
    assert norms["foveal_norms"] == 2 and norms["model"]["precision"] == "int8"
    out = tmp_path / "out"
    assert run("score", CREATIVE, "--elements", ELEMENTS, "-o", out, "--norms", norms_file, "--precision", "fp32") == 1
    assert "int8 graph" in capsys.readouterr().err and not out.exists()
    assert run("score", CREATIVE, "--elements", ELEMENTS, "-o", out, "--norms", norms_file, "--no-report") == 0
    model = json.loads((out / "scores.json").read_text())["model"]
    assert model["graph_sha256"] == norms["model"]["graph_sha256"] and model["precision"] == "int8"
    assert model["graph_sha256"] != model["sha256"]


@pytest.mark.parametrize("setup, argv, text", [
    (None, ["missing.png", "--elements", ELEMENTS], "missing.png: not found (give an image, a folder of images"),
    ('[{"name": "cta", "kind": "cta", "box": [590, 0, 20, 20]}]', ["IMG", "--elements", "EL"], "outside"),
    ('[{"name": "cta", "kind": "button", "box": [0, 0, 20, 20]}]', ["IMG", "--elements", "EL"], "'kind'"),
    ('{"elements": [', ["IMG", "--elements", "EL"], "malformed JSON"),
    (None, ["IMG", "--elements", "nope.json"], "not found"),
    (None, ["IMG", "--elements", ELEMENTS, "--norms", "none.json"], "not found"),
    # there, but no image file: said as what it is, not "not found"
    (None, ["FIFO", "--elements", ELEMENTS], "fifo.png: not a regular file (a FIFO, socket or device)"),
    (None, ["/dev/zero", "--elements", ELEMENTS], "/dev/zero: not a regular file"),
    (None, ["LOOP", "--elements", ELEMENTS], "Too many levels of symbolic links"),
])
def test_bad_input_one_line_exit_1_no_output(tmp_path, capsys, setup, argv, text):
    el = tmp_path / "el.json"
    if setup is not None:
        el.write_text(setup)
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    named = {"IMG": CREATIVE, "EL": el, "FIFO": tmp_path / "fifo.png", "LOOP": tmp_path / "a.png"}
    argv = [str(named.get(a, a)) for a in argv]
    out = tmp_path / "out"
    assert run("score", *argv, "-o", out) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("foveal: error:") and text in err[0]
    assert not out.exists()


def test_batch_scores_every_creative_once(small_folder):
    out = small_folder / "out"
    assert run("score", small_folder / "creatives", "--elements-dir", small_folder / "elements", "-o", out) == 0
    rows = read_csv(out / "scores.csv")
    assert list(rows[0]) == list(CSV_HEADER)
    assert len(rows) == 6 * 6 and len({(r["creative_id"], r["element"]) for r in rows}) == 36
    assert (out / "scores.journal").read_text().count("\n") == 6
    for stem in {r["creative_id"] for r in rows}:
        assert sorted(p.name for p in (out / "reports" / stem).iterdir()) == ["overlay.png", "report.html", "scores.json"]
    # Same numbers as scoring the creative alone.
    alone = small_folder / "alone"
    assert run("score", small_folder / "creatives" / "ref_02.png", "--elements",
               small_folder / "elements" / "ref_02.json", "-o", alone, "--no-report") == 0
    shares = {e["name"]: e["share"] for e in json.loads((alone / "scores.json").read_text())["elements"]}
    assert {r["element"]: float(r["share"]) for r in rows if r["creative_id"] == "ref_02"} == shares


def test_batch_bad_creative_reported_others_scored(small_folder, capsys):
    (small_folder / "elements" / "ref_01.json").write_text('[{"name": "x", "kind": "cta", "box": [0, 0, 0, 1]}]')
    (small_folder / "elements" / "ref_03.json").unlink()
    out = small_folder / "out"
    args = ["score", small_folder / "creatives", "--elements-dir", small_folder / "elements", "-o", out, "--no-report"]
    assert run(*args) == 1
    err = capsys.readouterr().err
    assert "ref_01" in err and "ref_03" in err and err.count("foveal: error:") == 2
    assert {r["creative_id"] for r in read_csv(out / "scores.csv")} == {"ref_00", "ref_02", "ref_04", "ref_05"}
    # Fixing the inputs and rerunning scores just the two that failed.
    shutil.copy(EXAMPLES / "references" / "ref_03.json", small_folder / "elements" / "ref_03.json")
    spec = json.loads((EXAMPLES / "references" / "ref_01.json").read_text())
    (small_folder / "elements" / "ref_01.json").write_text(json.dumps(
        {"units": "relative", "elements": [{**e, "box": [v / 600 for v in e["box"]]} for e in spec["elements"]]}))
    assert run(*args) == 1  # ref_03.json is in 600x600 pixels: outside a 200x200 image
    assert "ref_03" in capsys.readouterr().err
    assert len({r["creative_id"] for r in read_csv(out / "scores.csv")}) == 5


def test_batch_refuses_to_resume_with_other_settings(small_folder, capsys):
    args = ["score", small_folder / "creatives", "--elements-dir", small_folder / "elements", "-o",
            small_folder / "out", "--no-report"]
    assert run(*args) == 0
    assert run(*args, "--pass-percentile", "80") == 1
    assert "pass_percentile differ" in capsys.readouterr().err
    assert len(read_csv(small_folder / "out" / "scores.csv")) == 36


def test_batch_argument_mistakes(small_folder, capsys):
    creatives = small_folder / "creatives"
    shutil.copy(creatives / "ref_00.png", small_folder / "single.png")
    cases = [
        (["score", creatives, "--elements", ELEMENTS], "--elements-dir"),
        (["score", small_folder / "single.png", "--elements-dir", small_folder], "--elements FILE"),
        (["score", creatives, "--elements-dir", small_folder / "nope"], "not a folder"),
        (["score", small_folder / "elements"], "no images"),
        (["score", creatives, "--actors", "2"], "add --ray"),
        (["score", small_folder / "single.png", "--ray"], "--ray is for a batch"),
        (["score", small_folder / "single.png", "--maps"], "one image's map use `foveal predict IMAGE --npy`"),
        (["score", small_folder / "list.txt"], "not found"),
        (["score", small_folder / "nosuchdir", "--ray"], "nosuchdir: not found"),  # was "--ray is for a batch"
    ]
    for argv, text in cases:
        assert run(*argv, "-o", small_folder / "out") == 1
        assert text in capsys.readouterr().err
    Image.new("RGB", (10, 10)).save(creatives / "ref_00.jpg")
    assert run("score", creatives, "-o", small_folder / "out") == 1
    assert "share the creative id 'ref_00'" in capsys.readouterr().err
    assert not (small_folder / "out").exists()


def test_batch_refuses_foreign_csv(small_folder, capsys):
    out = small_folder / "out"
    out.mkdir()
    (out / "scores.csv").write_text("a,b\n1,2\n")
    assert run("score", small_folder / "creatives", "--elements-dir", small_folder / "elements", "-o", out) == 1
    assert "no scores.settings.json; use a new output folder" in capsys.readouterr().err
    assert (out / "scores.csv").read_text() == "a,b\n1,2\n"


def test_norms_build_refuses_bad_reference(small_folder, capsys):
    (small_folder / "elements" / "ref_04.json").write_text("[]")
    out = small_folder / "norms.json"
    assert run("norms", "build", small_folder / "creatives", "--elements", small_folder / "elements", "-o", out) == 1
    assert "ref_04" in capsys.readouterr().err and not out.exists()


def test_norms_build_checks_its_output_before_scoring(small_folder, capsys, monkeypatch):
    """-o a folder, or a path under a file, was refused only after every reference creative was scored."""
    import foveal.cli.norms

    monkeypatch.setattr(foveal.cli.norms, "make_engine", lambda args: pytest.fail("scored before the -o check"))
    creatives = small_folder / "creatives"
    image = next(creatives.glob("*.png"))
    for out, message in [(creatives, "it is a folder"), (image / "n.json", "Not a directory"),
                         (image, "one of this run's inputs")]:
        assert run("norms", "build", creatives, "--elements", small_folder / "elements", "-o", out) == 1
        assert message in capsys.readouterr().err
    # on a read-only disk it failed after the scoring too (emulated: root writes into any folder whatever its mode)
    read_only = small_folder / "ro"
    read_only.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != read_only and real_access(p, mode))
    for out in (read_only / "n.json", read_only / "new" / "n.json"):
        assert run("norms", "build", creatives, "--elements", small_folder / "elements", "-o", out) == 1
        assert f"-o {out}: {read_only} is not writable (a read-only disk" in capsys.readouterr().err


def test_norms_build_explicit_format(small_folder):
    out = small_folder / "norms.json"
    assert main(["norms", "build", str(small_folder / "creatives"), "--elements", str(small_folder / "elements"),
                 "--format", "banner", "-o", str(out), "-q"]) == 0  # -q after the action works too
    assert list(json.loads(out.read_text())["formats"]) == ["banner"]


def test_retrying_from_the_batchs_own_errors_table_is_refused_before_the_work(small_folder, capsys):
    """`score OUT/errors.csv -o OUT` scored the failures, then refused to write errors.csv (an input): the creative
    was committed while errors.csv still listed it as failed."""
    out = small_folder / "out"
    (small_folder / "creatives" / "ref_01.png").write_bytes(b"garbage")
    assert run("score", small_folder / "creatives", "--elements-dir", small_folder / "elements", "-o", out) == 1
    capsys.readouterr()
    journal = (out / "scores.journal").read_text()
    assert run("score", out / "errors.csv", "--elements-dir", small_folder / "elements", "-o", out) == 1
    assert (f"{out / 'errors.csv'} is one of the tables this batch rewrites in {out}; copy it out first"
            in capsys.readouterr().err)
    assert (out / "scores.journal").read_text() == journal


@pytest.mark.parametrize("target", ["missing_dir", "loop"])
def test_an_out_that_is_a_link_to_nowhere_is_refused_at_once(tmp_path, capsys, target):
    """A dangling link or a loop as -o was taken for a folder to make: every image's work was done, then each
    failed with "File exists" (or "Too many levels of symbolic links")."""
    link = tmp_path / "loop" if target == "loop" else tmp_path / "o"
    link.symlink_to(link.name if target == "loop" else target)
    assert run("predict", EXAMPLES / "references", "-o", link) == 1
    assert f"-o {link}: {link} is a link to " in capsys.readouterr().err


def test_a_closed_or_full_stderr_does_not_stop_the_work(tmp_path):
    """With stderr closed (2>&-) the progress bar called None.isatty(): an internal error and nothing written; on a
    full one (2>/dev/full) its first line's ENOSPC stopped the run after one image."""
    import subprocess
    import sys

    import foveal

    env = {**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(foveal.__file__))}
    for name, stderr in (("closed", "close"), ("full", "/dev/full")):
        out = tmp_path / name
        argv = [sys.executable, "-m", "foveal", "predict", str(EXAMPLES / "references"), "-o", str(out)]
        if stderr == "close":
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, timeout=120,
                                  preexec_fn=lambda: os.close(2))
        else:
            with open(stderr, "w") as full:
                done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=full, env=env, timeout=120)
        assert len(list(out.glob("ref_*.overlay.png"))) == 8, (name, done.stdout)
