"""`foveal predict` end to end, exit codes and one-line errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal import InputError, SaliencyMap
from foveal.cli import main


def test_predict_writes_map_overlay_and_npy(tmp_path, rgb, capsys):
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rgb).save(tmp_path / name)
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "-o", str(out), "--model", "itti-koch",
                 "--bits", "16", "--npy"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.npy", "a.overlay.png", "a.png", "b.npy", "b.overlay.png",
                                                     "b.png"]
    prob = np.load(out / "a.npy")
    assert prob.shape == (90, 120) and abs(prob.sum(dtype=np.float64) - 1) < 1e-5
    # Within half a step, or a step where the tail was stored as 1 rather than 0.
    np.testing.assert_allclose(SaliencyMap.from_png(out / "a.png").prob, prob, atol=float(prob.max()) / 65535 * 1.001)


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_precision_is_recorded_in_the_png(tmp_path, rgb, precision):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert main(["-q", "predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--precision", precision]) == 0
    assert Image.open(tmp_path / "out" / "a.png").text["foveal:precision"] == precision


def test_one_bad_image_fails_the_run_but_not_the_others(tmp_path, rgb, capsys):
    Image.fromarray(rgb).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "bad.png"), str(tmp_path / "good.png"), "-o", str(out), "-q"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("foveal: error:") and "bad.png" in err[0]
    assert sorted(p.name for p in out.iterdir()) == ["good.overlay.png", "good.png"]


def test_summary_counts_the_maps_written(tmp_path, rgb, capsys):
    Image.fromarray(rgb).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main(["predict", str(tmp_path / "bad.png"), str(tmp_path / "good.png"), "-o", str(tmp_path / "out")]) == 1
    assert "foveal: 1 of 2 map(s) written to" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "good.png"), "-o", str(tmp_path / "out2")]) == 0
    printed = capsys.readouterr()
    assert "foveal: 1 map(s) written to" in printed.err and printed.out == ""  # on stderr, as foveal score's


@pytest.mark.parametrize("argv, code, text", [
    (["predict", "missing.png", "-o", "out"], 1, "not found"),
    (["predict", "x.png", "-o", "o", "--model", "nope"], 1, "unknown model"),
    (["predict", "x.png", "-o", "o", "--device", "tpu"], 2, "argument --device: unknown device"),
    (["predict", "x.png", "-o", "o", "--precision", "fp8"], 2, "invalid choice"),
    (["predict", "x.png", "-o", "o", "--max-pixels", "nan"], 2, "argument --max-pixels: must be a finite number"),
    (["predict", "x.png"], 2, "required"),
    (["frobnicate"], 2, "invalid choice"),
])
def test_errors_are_one_line_with_exit_codes(tmp_path, monkeypatch, argv, code, text):
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "foveal", *argv], capture_output=True, text=True)
    assert proc.returncode == code, proc.stderr
    assert text in proc.stderr and "Traceback" not in proc.stderr
    if code == 1:
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_file_name_cannot_drive_the_terminal(tmp_path, capsys):
    """Only line breaks were escaped in messages: a file name from an uploader holding ESC or BEL reached the
    terminal raw, where it can set the window title, erase the lines above or print fake ones."""
    bad = tmp_path / "b\x1b]0;title\x07\x1b[1A\x1b[2K\u009b2J\u2028.png"
    bad.write_bytes(b"not an image")
    assert main(["predict", str(bad), "-o", str(tmp_path / "out"), "-q"]) == 1
    err = capsys.readouterr().err
    assert "b\\x1b]0;title\\x07\\x1b[1A\\x1b[2K\\x9b2J\\u2028.png: not a recognised image" in err, err
    assert err.count("\n") == 1 and err[:-1].isprintable()


def test_duplicate_stems_refused(tmp_path, rgb):
    (tmp_path / "x").mkdir()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "x" / "a.png")
    from foveal.cli import build_parser
    from foveal.cli.predict import run

    with pytest.raises(InputError, match="would both write a.png"):
        run(build_parser().parse_args(["predict", str(tmp_path / "a.png"), str(tmp_path / "x" / "a.png"), "-o",
                                       str(tmp_path / "o")]))
    Image.fromarray(rgb).save(tmp_path / "x" / "b.png")
    Image.fromarray(rgb).save(tmp_path / "x" / "b.overlay.png")  # its map would be b.png's overlay
    with pytest.raises(InputError, match="would both write b.overlay.png"):
        run(build_parser().parse_args(["predict", str(tmp_path / "x" / "b.png"), str(tmp_path / "x" / "b.overlay.png"),
                                       "-o", str(tmp_path / "o")]))
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="exists and is not a folder"):
        run(build_parser().parse_args(["predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "file")]))
    assert not (tmp_path / "o").exists()


def test_npy_only_on_request(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert main(["-q", "predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "out"), "--model", "itti-koch"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.overlay.png", "a.png"]


def test_output_folder_holding_the_input_never_overwrites_it(tmp_path, monkeypatch, rgb, capsys):
    Image.fromarray(rgb).save(tmp_path / "creative.png")
    original = (tmp_path / "creative.png").read_bytes()
    monkeypatch.chdir(tmp_path)
    for argv in (["predict", "creative.png", "-o", "."], ["predict", str(tmp_path / "creative.png"), "-o", "./"],
                 ["predict", ".", "-o", str(tmp_path)]):
        assert main([*argv, "--model", "itti-koch"]) == 1
        err = capsys.readouterr().err
        assert "refusing to write" in err and "inputs" in err and len(err.strip().splitlines()) == 1
        assert (tmp_path / "creative.png").read_bytes() == original
        assert sorted(p.name for p in tmp_path.iterdir()) == ["creative.png"]  # nothing written at all


def test_an_output_name_matching_a_later_input_is_refused_before_any_work(tmp_path, rgb, capsys):
    """a.png's overlay would be a.overlay.png, which is also an input: refused up front, not after a.png ran."""
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "a.overlay.png")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert main(["-q", "predict", str(tmp_path / "a.png"), str(tmp_path / "a.overlay.png"), "-o", str(tmp_path),
                 "--model", "itti-koch"]) == 1
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_folders_expand_and_progress_counts_images(tmp_path, rgb, capsys, monkeypatch):
    folder = tmp_path / "creatives"
    folder.mkdir()
    for name in ("a.png", "b.jpg", "c.webp", "e.JFIF"):  # .jfif, a JPEG as Windows browsers save one, was skipped
        Image.fromarray(rgb).save(folder / name)
    (folder / "notes.txt").write_text("not an image")
    Image.fromarray(rgb).save(tmp_path / "d.png")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # one line per 10 %: the counts are readable
    assert main(["predict", str(folder), str(tmp_path / "d.png"), "-o", str(tmp_path / "out"), "--model", "itti-koch",
                 "--batch-size", "3"]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        f"{s}{x}" for s in "abcde" for x in (".overlay.png", ".png")]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("predict")]
    assert [line.split("] ")[1].split(" ")[0] for line in lines] == ["1/5", "2/5", "3/5", "4/5", "5/5"]


def test_a_pipe_named_as_an_image_in_a_folder_is_reported_not_skipped(tmp_path, rgb, capsys):
    folder = tmp_path / "creatives"
    folder.mkdir()
    Image.fromarray(rgb).save(folder / "a.png")
    os.mkfifo(folder / "b.jpg")
    assert main(["predict", str(folder), "-o", str(tmp_path / "out"), "-q"]) == 1
    assert f"{folder / 'b.jpg'}: not a regular file (a FIFO, socket or device)" in capsys.readouterr().err


def test_output_path_that_is_a_file(tmp_path, rgb, capsys):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    (tmp_path / "out").write_text("x")
    assert main(["predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]) == 1
    assert "not a folder" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_image(tmp_path, rgb, capsys, monkeypatch):
    """On a read-only disk every image was predicted, then failed to be written, with one error line each."""
    Image.fromarray(rgb).save(tmp_path / "a.png")
    (tmp_path / "ro").mkdir()
    real_access = os.access
    # A read-only mount, emulated: root writes into any folder whatever its mode bits.
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != tmp_path / "ro" and real_access(p, mode))
    monkeypatch.setattr(SaliencyMap, "to_png", lambda *a, **k: pytest.fail("predicted into an unwritable folder"))
    for out in (tmp_path / "ro", tmp_path / "ro" / "new" / "sub"):
        assert main(["predict", str(tmp_path / "a.png"), "-o", str(out)]) == 1
        assert f"-o {out}: {tmp_path / 'ro'} is not writable (a read-only disk" in capsys.readouterr().err


def test_the_same_image_twice_is_refused_as_listed_twice(tmp_path, rgb, capsys):
    """It was told to "rename one" of two mentions of one file."""
    Image.fromarray(rgb).save(tmp_path / "a.png")
    for argv in ([str(tmp_path / "a.png")] * 2, [str(tmp_path), str(tmp_path / "a.png")]):
        assert main(["predict", *argv, "-o", str(tmp_path / "o")]) == 1
        assert "a.png is listed twice" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_map_never_replaces_an_image_of_the_same_name_in_the_output_folder(tmp_path, rgb, capsys):
    """photo.jpg predicted into its own folder replaced photo.png, an image of the user's this run never read; an
    earlier run's map there is replaced as before."""
    Image.fromarray(rgb).save(tmp_path / "photo.jpg")
    Image.fromarray(rgb[::-1]).save(tmp_path / "photo.png")
    before = (tmp_path / "photo.png").read_bytes()
    assert main(["predict", str(tmp_path / "photo.jpg"), "-o", str(tmp_path)]) == 1
    assert (f"{tmp_path / 'photo.png'} exists and is not a map foveal wrote (an image of yours?)"
            in capsys.readouterr().err)
    assert (tmp_path / "photo.png").read_bytes() == before and not (tmp_path / "photo.overlay.png").exists()
    out = tmp_path / "out"
    for _ in range(2):
        assert main(["-q", "predict", str(tmp_path / "photo.jpg"), "-o", str(out)]) == 0


def test_an_output_name_too_long_is_refused_before_any_work_also_in_a_new_folder(tmp_path, rgb, capsys):
    """With -o still to be made, stat said only "not found": the other images were predicted and written, then the
    long name failed."""
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / f"{'x' * 246}.png")  # its overlay's name is 258 bytes
    assert main(["predict", str(tmp_path / "a.png"), str(tmp_path / f"{'x' * 246}.png"), "-o",
                 str(tmp_path / "new" / "out")]) == 1
    assert "File name too long (258 bytes, over 255)" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_an_error_shows_a_file_name_that_is_not_utf8_as_its_bytes(tmp_path, rgb, capsys):
    """Error lines showed Python's stand-in for the byte (tr\\udcfeunc.png), not the byte (tr\\xfeunc.png)."""
    name = tmp_path / os.fsdecode(b"tr\xfeunc.png")
    Image.fromarray(rgb).save(name, format="PNG")
    assert main(["predict", str(name), "-o", str(tmp_path / "o"), "--max-pixels", "10"]) == 1
    err = capsys.readouterr().err
    assert "tr\\xfeunc.png: 120x90 = 10,800 pixels" in err and "udcfe" not in err, err


def test_a_file_named_like_an_option_gets_a_hint(tmp_path, rgb, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Image.fromarray(rgb).save("-dash.png")
    with pytest.raises(SystemExit) as stop:
        main(["predict", "-dash.png", "-o", "out"])
    assert stop.value.code == 2
    assert "unrecognized arguments: -dash.png; for a file named -dash.png, write ./-dash.png" in capsys.readouterr().err
    assert main(["-q", "predict", "./-dash.png", "-o", "out"]) == 0


def test_a_link_beside_its_image_is_refused_naming_both(tmp_path, rgb, capsys):
    """A folder holding latest.png -> v3.png was refused as "v3.png is listed twice", which the user never did."""
    Image.fromarray(rgb).save(tmp_path / "v3.png")
    (tmp_path / "latest.png").symlink_to("v3.png")
    assert main(["predict", str(tmp_path), "-o", str(tmp_path / "o")]) == 1
    assert (f"{tmp_path / 'latest.png'} and {tmp_path / 'v3.png'} are the same file (one links to the other); "
            "predict one of them: list it alone, or remove the link from its folder" in capsys.readouterr().err)
    assert not (tmp_path / "o").exists()


def test_an_output_that_cannot_be_written_is_refused_before_any_image_is_predicted(tmp_path, rgb, capsys,
                                                                                   monkeypatch):
    """a.overlay.png being a folder stopped the run after a.png was written, and b was never predicted."""
    images, out = tmp_path / "in", tmp_path / "out"
    images.mkdir()
    for name in ("a", "b"):
        Image.fromarray(rgb).save(images / f"{name}.png")
    (out / "a.overlay.png").mkdir(parents=True)
    assert main(["predict", str(images), "-o", str(out)]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["a.overlay.png"]
    (out / "a.overlay.png").rmdir()

    from foveal.saliency_map import SaliencyMap

    real = SaliencyMap.overlay

    def blocked(self, image, path=None, *args, **kwargs):  # the folder appears while the run goes on
        if path is not None and path.name == "a.overlay.png":
            path.mkdir()
        return real(self, image, path, *args, **kwargs)

    monkeypatch.setattr(SaliencyMap, "overlay", blocked)
    assert main(["-q", "predict", str(images), "-o", str(out)]) == 1
    assert capsys.readouterr().err.count("cannot write") == 1
    assert {"b.png", "b.overlay.png"} <= {p.name for p in out.iterdir()}  # the image after it still done


def test_a_full_disk_stops_the_run_at_the_first_image(tmp_path, rgb, capsys, monkeypatch):
    """A write that fails for want of space will fail for every later image too: predicting them all, one error
    line each, is hours of work thrown away."""
    import errno

    from foveal.fileio import cannot_write

    images = tmp_path / "in"
    images.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray(rgb).save(images / f"{name}.png")
    written = []

    def full(self, path, bits=8):
        written.append(path.name)
        raise cannot_write(path, OSError(errno.ENOSPC, "No space left on device"))

    monkeypatch.setattr(SaliencyMap, "to_png", full)
    assert main(["predict", str(images), "-o", str(tmp_path / "out"), "--model", "itti-koch"]) == 1
    err = capsys.readouterr().err
    assert written == ["a.png"] and err.count("free some space") == 1, (written, err)


def test_a_models_failure_on_one_of_several_images_names_the_image(tmp_path, rgb, capsys):
    """Failures in a multi-image run are named on stderr; a NaN from the model said only "for this image"."""
    pytest.importorskip("onnx")
    from onnx import helper

    from tests.test_model_contract import _const, _pooled

    model = _pooled(tmp_path / "nan.onnx", 8, [helper.make_node("Mul", ["mean", "c"], ["log_density"])],
                    initializers=[_const("c", float("nan"))])
    for name in ("a", "b"):
        Image.fromarray(rgb).save(tmp_path / f"{name}.png")
    assert main(["-q", "predict", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", str(model),
                 "-o", str(tmp_path / "out")]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all("returned NaN or infinite log-density" in line for line in lines), lines
    assert [line.split(": ")[2] for line in lines] == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]
