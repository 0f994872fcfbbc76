"""No subcommand's output may replace one of its inputs, whatever the output folder."""
from __future__ import annotations

import os
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import foveal
from foveal.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def out(tmp_path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("command", ["score", "whatif", "compare"])
def test_an_input_named_like_an_output_is_never_replaced(out, command, capsys):
    """Each input is given the name of a file the command writes into ``out``."""
    elements = EXAMPLES / "creative.json"
    if command == "score":  # the element file is named like the scores the command writes
        shutil.copy(EXAMPLES / "creative.png", out / "creative.png")
        shutil.copy(elements, out / "scores.json")
        argv = ["score", str(out / "creative.png"), "--elements", str(out / "scores.json")]
    elif command == "whatif":  # the creative is named like the edited creative the command writes
        shutil.copy(EXAMPLES / "creative.png", out / "edited.png")
        argv = ["whatif", str(out / "edited.png"), "--elements", str(elements), "--move", "logo:10,10"]
    else:
        shutil.copy(EXAMPLES / "creative.png", out / "compare.png")
        argv = ["compare", str(out / "compare.png"), str(EXAMPLES / "creative_b.png"), "--elements", str(elements),
                str(EXAMPLES / "creative_b.json")]
    before = _snapshot(out)
    assert main(["-q", *argv, "-o", str(out), "--model", "itti-koch"]) == 1
    err = capsys.readouterr().err
    assert "refusing to write" in err and len(err.strip().splitlines()) == 1
    after = _snapshot(out)
    assert {name: after[name] for name in before} == before  # every input intact (other outputs may be written)


@pytest.mark.parametrize("command", ["score", "compare", "whatif"])
def test_a_file_name_that_is_not_utf8_is_refused_before_any_output(tmp_path, command, capsys):
    """Scores, reports and stores are UTF-8: a name the OS cannot decode is refused in one line, nothing written.
    (whatif.json held it as a lone surrogate, "\\udcff", which strict JSON readers refuse.)"""
    image = tmp_path / "bad\udcff.png"  # the bytes b"bad\xff.png"
    shutil.copy(EXAMPLES / "creative.png", image)
    elements = str(EXAMPLES / "creative.json")
    argv = {"score": ["score", str(image), "--elements", elements],
            "compare": ["compare", str(image), str(EXAMPLES / "creative_b.png"), "--elements", elements,
                        str(EXAMPLES / "creative_b.json")],
            "whatif": ["whatif", str(image), "--elements", elements, "--move", "cta:0,-20"]}[command]
    assert main(["-q", *argv, "-o", str(tmp_path / "out"), "--model", "itti-koch"]) == 1
    err = capsys.readouterr().err.strip()
    assert "bad\\xff.png: the image's file name is not valid UTF-8; rename it" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("option, text", [
    ("--norms", "bad\\xff.json: the norms file's name is not valid UTF-8; rename it"),
    ("--format", "format 'bad?' is not valid UTF-8"),
    ("--elements", "field 'format' holds a lone UTF-16 surrogate"),
])
def test_an_undecodable_norms_name_or_format_is_refused_before_any_output(tmp_path, option, text, capsys):
    """Both are written into scores.json and report.html: they once failed the report half-written (overlay.png
    left behind, "internal error: UnicodeEncodeError")."""
    norms = tmp_path / "bad\udcff.json"  # the bytes b"bad\xff.json"
    norms.write_text("{}")
    spec = tmp_path / "elements.json"
    spec.write_text(json.dumps({**json.loads((EXAMPLES / "creative.json").read_text()), "format": "600x600\ud800"}))
    value = {"--norms": str(norms), "--format": "bad\udcff", "--elements": str(spec)}[option]
    argv = ["score", str(EXAMPLES / "creative.png"), "-o", str(tmp_path / "out"), "--model", "itti-koch"]
    assert main(["-q", *argv, *([] if option == "--elements" else ["--elements", str(EXAMPLES / "creative.json")]),
                 option, value]) == 1
    err = capsys.readouterr().err.strip()
    assert text in err and len(err.splitlines()) == 1 and "internal error" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("command", ["predict", "score", "compare", "whatif", "detect"])
def test_out_naming_a_file_is_refused_before_any_work(tmp_path, command, capsys):
    target = tmp_path / "taken.json"
    target.write_text("{}")
    image, elements = str(EXAMPLES / "creative.png"), str(EXAMPLES / "creative.json")
    argv = {"predict": ["predict", image], "score": ["score", image, "--elements", elements],
            "compare": ["compare", image, str(EXAMPLES / "creative_b.png"), "--elements", elements,
                        str(EXAMPLES / "creative_b.json")],
            "whatif": ["whatif", image, "--elements", elements, "--move", "logo:10,10"],
            "detect": ["detect", image]}[command]
    assert main(["-q", *argv, "-o", str(target)]) == 1
    err = capsys.readouterr().err.strip()
    assert f"-o {target}: exists and is not a folder" in err and len(err.splitlines()) == 1
    assert target.read_text() == "{}"


@pytest.mark.parametrize("command", ["predict", "score", "eval"])
def test_out_under_a_file_is_refused_before_any_work(tmp_path, command, capsys, monkeypatch):
    """-o afile/sub ran a whole evaluation, then failed to write eval.json ("Not a directory")."""
    import foveal.cli.eval

    monkeypatch.setattr(foveal.cli.eval, "load_dataset", lambda *a: pytest.fail("the work ran first"))
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "sub" / "deeper"
    image = str(EXAMPLES / "creative.png")
    argv = {"predict": ["predict", image], "score": ["score", image, "--elements", str(EXAMPLES / "creative.json")],
            "eval": ["eval", "--dataset", str(tmp_path), "--model", "centre-bias"]}[command]
    assert main(["-q", *argv, "-o", str(target)]) == 1
    err = capsys.readouterr().err.strip()
    assert f"{tmp_path / 'afile'} is a file, so no folder can be made under it" in err and len(err.splitlines()) == 1
    (tmp_path / "out" / "eval.md").mkdir(parents=True)  # an output's name taken by a folder
    assert main(["-q", "eval", "--dataset", str(tmp_path), "--model", "centre-bias", "-o", str(tmp_path / "out")]) == 1
    assert "eval.md: it is a folder" in capsys.readouterr().err


@pytest.mark.parametrize("command, taken", [("whatif", "whatif.json"), ("compare", "compare.json")])
def test_an_output_name_taken_by_a_folder_is_refused_before_the_work(tmp_path, command, taken, capsys, monkeypatch):
    for module in ("whatif", "compare"):
        monkeypatch.setattr(f"foveal.cli.{module}.make_engine", lambda *a: pytest.fail("the work ran first"))
    (tmp_path / "out" / taken).mkdir(parents=True)
    image, elements = str(EXAMPLES / "creative.png"), str(EXAMPLES / "creative.json")
    argv = {"whatif": ["whatif", image, "--elements", elements, "--search", "cta"],
            "compare": ["compare", image, str(EXAMPLES / "creative_b.png"), "--elements", elements]}[command]
    assert main(["-q", *argv, "-o", str(tmp_path / "out")]) == 1
    assert f"{taken}: it is a folder" in capsys.readouterr().err


def test_running_out_of_memory_is_one_line(monkeypatch, tmp_path, capsys):
    import foveal.cli.predict

    def exhausted(args):
        raise MemoryError("Unable to allocate 4.47 GiB")

    monkeypatch.setattr(foveal.cli.predict, "run", exhausted)
    assert main(["-q", "predict", str(EXAMPLES / "creative.png"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("foveal: error: not enough memory") and "--max-pixels" in err[0]
    # a 300 KB Parquet outcomes file can hold 20 million rows: no image, and no --max-pixels to lower
    import foveal.cli.outcomes

    monkeypatch.setattr(foveal.cli.outcomes, "run_import", exhausted)
    assert main(["-q", "outcomes", "import", str(tmp_path / "o.parquet"), "--db", str(tmp_path / "s.db")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["foveal: error: not enough memory for this input; split the input into smaller files, or free "
                   "memory"]


@pytest.mark.parametrize("extra, message", [
    (["--creative-id", "", "--db", "sqlite:///never.db"], "argument --creative-id: '' cannot name a file"),
    (["--actors", "0"], "argument --actors: must be at least 1, got 0"),
    (["--commit-every", "0"], "argument --commit-every: must be at least 1, got 0"),
    (["--cpus-per-actor", "0"], "argument --cpus-per-actor: must be at least 1, got 0"),
    (["--gpus-per-actor", "2"], "argument --gpus-per-actor: must be a number in (0, 1], got 2"),
])
def test_score_options_out_of_range_are_refused_not_ignored(tmp_path, extra, message, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["-q", "score", str(EXAMPLES / "creative.png"), "--elements", str(EXAMPLES / "creative.json"),
              "-o", str(tmp_path / "out"), *extra])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err and not (tmp_path / "out").exists()
    assert not (tmp_path / "never.db").exists()


@pytest.mark.parametrize("argv, message", [
    ([], "foveal: error: the following arguments are required: COMMAND (see foveal --help)"),
    (["frob"], "foveal: error: argument COMMAND: invalid choice: 'frob'"),
    (["compare", "a.png"], "foveal compare: error: the following arguments are required: --elements"),
    (["score", "a.png", "--pass-percentile", "abc"],
     "foveal score: error: argument --pass-percentile: expected a number, got 'abc'"),
    (["predict", "a.png", "--bits", "7\n8"], "foveal predict: error: argument --bits: invalid int value: '7\\n8'"),
    (["predict", "a.png", "-o", "o", "--bogus\x1b[2J"],
     "foveal predict: error: unrecognized arguments: --bogus\\x1b[2J (see foveal predict --help)"),
    # An option the command does not have: its own --help lists its options, `foveal --help` does not.
    (["finetune", "DATA", "-o", "OUT", "--data", "x"],
     "foveal finetune: error: unrecognized arguments: --data x (see foveal finetune --help)"),
    (["norms", "build", "DIR", "-o", "n.json", "--bogus"],
     "foveal norms build: error: unrecognized arguments: --bogus (see foveal norms build --help)"),
    (["norms", "--bogus", "build", "DIR", "-o", "n.json"],
     "foveal norms: error: unrecognized arguments: --bogus (see foveal norms --help)"),
    (["--bogus", "predict", "a.png", "-o", "OUT"],
     "foveal: error: unrecognized arguments: --bogus (see foveal --help)"),
])
def test_usage_errors_are_one_line_with_exit_status_2(argv, message, capsys):
    """argparse printed the whole usage (a dozen lines) before the line that says what is wrong."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1 and "usage:" not in err


@pytest.mark.parametrize("argv", [["predict", "-o", "OUT", ""], ["score", "", "-o", "OUT"],
                                  ["norms", "build", "", "-o", "OUT/n.json"], ["bench", ""],
                                  ["score", str(EXAMPLES / "creative.png"), "--format", "", "-o", "OUT"]])
def test_an_empty_argument_is_refused_not_read_as_the_current_folder(tmp_path, monkeypatch, argv, capsys):
    """``Path("")`` is ``.``: a script passing an unset variable ran the command on whatever the working folder
    held, and an empty --format was taken as no format."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLES / "creative.png", tmp_path / "a.png")  # what an empty path would have found
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main(["-q", *(a.replace("OUT", str(out)) for a in argv)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert ("an empty path" in err or "an empty name" in err) and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_compare_says_the_creatives_go_before_elements(tmp_path, capsys):
    """--elements takes one or two files; given first, it took the creatives too, and argparse then said A and B
    were missing without saying why."""
    files = [str(EXAMPLES / n) for n in ("creative.json", "creative_b.json", "creative.png", "creative_b.png")]
    with pytest.raises(SystemExit) as stop:
        main(["-q", "compare", "--elements", *files, "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "give the creatives A and B before --elements" in err and "took the images" in err
    assert not (tmp_path / "out").exists()


def test_eval_checks_its_output_folder_before_evaluating(tmp_path, capsys):
    """-o naming a file was refused only once the whole evaluation had run; now before anything is read (the
    dataset named here does not exist, so an evaluation would have failed on it first)."""
    not_a_folder = tmp_path / "results.txt"
    not_a_folder.write_text("keep me")
    assert main(["-q", "eval", "--dataset", str(tmp_path / "no-such-dataset"), "-o", str(not_a_folder)]) == 1
    err = capsys.readouterr().err
    assert "exists and is not a folder" in err and len(err.strip().splitlines()) == 1, err
    assert not_a_folder.read_text() == "keep me"


def test_advice_names_flags_not_the_librarys_arguments(tmp_path, capsys):
    """The library's messages name its arguments (max_pixels); on the command line they name the flag."""
    assert main(["-q", "score", str(EXAMPLES / "creative.png"), "--elements", str(EXAMPLES / "creative.json"),
                 "--max-pixels", "1000", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.rstrip().endswith("downscale it or raise --max-pixels") and "max_pixels" not in err, err
    with pytest.raises(SystemExit):
        main(["score", str(EXAMPLES / "creative.png"), "--commit-every", "abc", "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "expected a whole number, got 'abc'" in err and "_positive_int" not in err, err


def test_error_lines_name_only_flags_the_command_has(tmp_path, capsys):
    """'raise max_pixels' became 'raise --max-pixels' for every command, and foveal finetune (which has no such
    option) then advised a flag that argparse refuses."""
    import argparse

    from foveal.cli import error_line
    from foveal.errors import ImageError

    exc = ImageError("big.png: 12000x9000 = 108.0 MP, over the limit of 100.0 MP; downscale it or raise max_pixels")
    assert error_line(exc, argparse.Namespace(max_pixels=1e8)).endswith("downscale it or raise --max-pixels")
    assert error_line(exc, argparse.Namespace()).endswith("over the limit of 100.0 MP; downscale it")


def test_a_reader_that_leaves_early_ends_the_command_quietly(tmp_path):
    """`foveal bench --json | head -2` ended in "foveal: internal error: BrokenPipeError"."""
    import subprocess
    import sys

    import foveal

    env = {**os.environ, "PYTHONPATH": str(Path(foveal.__file__).parent.parent)}
    proc = subprocess.Popen([sys.executable, "-m", "foveal", "bench", str(EXAMPLES / "creative.png"), "--model",
                             "itti-koch", "--repeats", "1", "--batch", "1", "--max-seconds", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the first line
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and err == b"", err


def test_ctrl_c_while_the_commands_load_is_one_line(monkeypatch, capsys):
    import foveal.cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(foveal.cli, "build_parser", interrupted)
    assert main(["predict", "x.png"]) == 130
    assert capsys.readouterr().err == "foveal: interrupted\n"


def test_an_import_interrupted_by_ctrl_c_is_not_a_missing_package():
    """onnxruntime's C extension, interrupted while it initialises, raises ImportError("initialization failed")
    caused by the KeyboardInterrupt: the CLI said onnxruntime was not installed."""
    from foveal.backends.onnxruntime import _interrupted

    failed = ImportError("initialization failed")
    failed.__cause__ = KeyboardInterrupt()
    with pytest.raises(KeyboardInterrupt):
        _interrupted(failed)
    _interrupted(ImportError("No module named 'onnxruntime'"))  # a missing package stays one


def test_help_gives_the_exit_statuses_scripts_branch_on(capsys):
    """A folder run with one bad image exits 1 with the others written: a script must be able to read that, and
    every status main() returns, in `foveal --help`."""
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for status in ("0 done", "1 an error", "any image or creative of a run of several failed", "2 a malformed",
                   "130 Ctrl-C", "143 SIGTERM"):
        assert status in text


def test_a_sigterm_a_library_turned_into_its_own_keyboard_interrupt_still_ends_as_terminated(monkeypatch, capsys):
    """Ray's blocking calls (ray.get, the Ray batch's wait for results) swallow the exception a signal handler raises
    and raise a KeyboardInterrupt of their own: a SIGTERM to `foveal score --ray` ended as "interrupted", exit 130."""
    import signal
    import time

    from foveal.cli import score

    def handler(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)  # the signal's handler runs here
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # as Ray's check_status does
        return 0

    monkeypatch.setattr(score, "run", handler)
    assert main(["score", str(EXAMPLES / "creative.png"), "-o", "never"]) == 143
    assert capsys.readouterr().err.strip() == "foveal: terminated"
    # a Ctrl-C after it, in another command of the same process, is an interrupt again
    monkeypatch.setattr(score, "run", lambda args: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["score", str(EXAMPLES / "creative.png"), "-o", "never"]) == 130


def test_model_options_mean_the_same_in_every_command():
    """bench and serve described --model without model folders and --precision auto without what it picks."""
    from foveal.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices

    def helps(command):
        return {a.dest: a.help for a in command._actions if a.dest in ("model", "device", "precision")}
    expected = helps(commands["predict"])
    for name in ("score", "eval", "bench", "serve"):
        assert helps(commands[name]) == expected, name
    assert "model folder" in expected["model"] and "auto: the model's int8 graph" in expected["precision"]


def test_model_help_names_the_default_model(capsys):
    """`--model` said "(default: default)", which names no model a user can look up."""
    from foveal import DEFAULT_MODEL

    with pytest.raises(SystemExit):
        main(["predict", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(default: {DEFAULT_MODEL})" in text and "(default: default)" not in text


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_standard_output_on_a_full_disk_is_a_one_line_error(tmp_path):
    """`foveal eval ... > /dev/full` (a redirect onto a full disk) wrote its files, then said "internal error:
    OSError: [Errno 28]"; `foveal --help > /dev/full` said nothing and exited 0 (argparse drops the failure)."""
    (tmp_path / "ds" / "images").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "ds" / "images" / "a.png")
    (tmp_path / "ds" / "fixations.csv").write_text("image,x,y\na.png,10,10\na.png,20,15\n")
    says = "foveal: error: cannot write the standard output: No space left on device; free some space, or send it "
    for argv in (["eval", "--dataset", str(tmp_path / "ds"), "--split", "all", "--model", "centre-bias", "-q",
                  "--metrics", "CC", "-o", str(tmp_path / "out")], ["--help"], ["predict", "--help"], ["--version"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run([sys.executable, "-m", "foveal", *argv], stdout=full, stderr=subprocess.PIPE,
                                  text=True, timeout=120,
                                  env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(foveal.__file__))})
        assert done.returncode == 1 and done.stderr == says + "elsewhere\n", (argv, done.stderr)


def _foveal(argv: list[str], cwd: Path, shell_redirect: str = "", **env: str) -> subprocess.CompletedProcess:
    """``foveal ARGV`` in a shell (for redirects such as ``2>&-``), with the installed foveal under test."""
    command = " ".join(["exec", shutil.which("env") or "env", sys.executable, "-m", "foveal",
                        *(f"'{a}'" for a in argv), shell_redirect])
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": os.path.dirname(os.path.dirname(foveal.__file__)), **env})


def test_names_over_255_bytes_are_one_line_errors(tmp_path):
    """Python 3.11's Path.is_file() raises for a name the system cannot take: nearly every command said
    "internal error: OSError: [Errno 36] File name too long"."""
    long = "a" * 300
    for argv in (["predict", f"{long}.jpg", "-o", "x"], ["eval", "--dataset", long, "-o", "e"],
                 ["norms", "build", long, "-o", "n.json"],
                 ["predict", str(EXAMPLES / "creative.png"), "--model", f"{long}.onnx", "-o", "x"]):
        done = _foveal(argv, tmp_path)
        assert done.returncode == 1 and done.stderr.endswith("File name too long; name a path whose every part is at "
                                                             "most 255 bytes\n"), (argv, done.stderr)
        assert done.stderr.count("\n") == 1 and not done.stdout


def test_a_legal_255_byte_image_name_whose_element_file_name_cannot_exist(tmp_path):
    # Its default element file, <stem>.json, is 256 bytes: looking for it raised instead of finding none.
    image = tmp_path / ("a" * 251 + ".png")
    shutil.copy(EXAMPLES / "creative.png", image)
    done = _foveal(["score", str(image), "-o", "out", "--model", "itti-koch"], tmp_path)
    assert done.returncode == 1 and "no element file for" in done.stderr and done.stderr.count("\n") == 1, done.stderr


def test_a_loop_of_links_as_the_store_is_a_one_line_error(tmp_path):
    (tmp_path / "loop1").symlink_to("loop2")
    (tmp_path / "loop2").symlink_to("loop1")
    for argv in (["calibrate", "--db", "loop1", "-o", "cal"],
                 ["score", str(EXAMPLES / "creative.png"), "-o", "o", "-q", "--model", "itti-koch", "--db", "loop1"]):
        done = _foveal(argv, tmp_path)
        assert done.returncode == 1 and done.stderr.startswith("foveal: error: database sqlite:///loop1: "), done.stderr
        assert "internal error" not in done.stderr and done.stderr.count("\n") == 1


def test_a_tilde_in_an_sqlite_url_is_the_home_folder_for_every_command(tmp_path):
    """`score --db sqlite:///~/q.db` failed to open (or, beside a folder named "~", wrote ./~/q.db) while
    `calibrate` read $HOME/q.db."""
    pytest.importorskip("sqlalchemy")
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "~").mkdir()
    done = _foveal(["score", str(EXAMPLES / "creative.png"), "--elements", str(EXAMPLES / "creative.json"), "-o", "o",
                    "-q", "--model", "itti-koch", "--db", "sqlite:///~/q.db"], tmp_path, HOME=str(home))
    assert done.returncode == 0, done.stderr
    assert (home / "q.db").is_file() and not any((tmp_path / "~").iterdir())


def test_with_stderr_closed_messages_stay_off_the_data(tmp_path):
    # Python sets sys.stderr to None, and print(file=None) writes to stdout: an error landed among the data.
    done = _foveal(["predict", "nonexistent.jpg", "-o", "x"], tmp_path, "2>&-")
    assert done.returncode == 1 and done.stdout == ""


def test_compare_says_its_summary_on_stderr(tmp_path):
    """Every command's summary goes to stderr; compare's (and whatif's) went to stdout."""
    done = _foveal(["compare", str(EXAMPLES / "creative.png"), str(EXAMPLES / "creative_b.png"), "--elements",
                    str(EXAMPLES / "creative.json"), str(EXAMPLES / "creative_b.json"), "--model", "itti-koch",
                    "-o", "c"], tmp_path)
    assert done.returncode == 0 and done.stdout == "" and "Wrote c/compare.json" in done.stderr, done.stderr


@pytest.mark.parametrize("argv, says", [
    (["--bogus"], "foveal: error: unrecognized arguments: --bogus"),
    (["norms", "build", "--bogus"], "foveal norms build: error: unrecognized arguments: --bogus"),
    (["predict", "--bogus=1"], "foveal predict: error: unrecognized arguments: --bogus=1"),
    (["predict"], "foveal predict: error: the following arguments are required: IMAGE|FOLDER, -o/--out"),
])
def test_a_misspelt_option_is_named_even_when_a_required_argument_is_missing(argv, says, capsys):
    """argparse checks the required arguments first: `foveal --bogus` said a COMMAND was required, and the option
    the user mistyped was never named."""
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and capsys.readouterr().err.startswith(says)
