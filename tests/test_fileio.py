"""Atomic writes: a failure half-way leaves neither a partial target nor a temp file."""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import foveal
from foveal import InputError
from foveal.fileio import atomic_write, folder_replacement, save_png, write_json, write_text, written_together

# where foveal is imported from: the installed package in CI, python/ in a checkout
FOVEAL_PATH = os.path.dirname(os.path.dirname(foveal.__file__))


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "out" / "scores.json"
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as fh:
            fh.write("{half")
            raise RuntimeError("boom")
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_failed_write_keeps_previous_version(tmp_path):
    target = tmp_path / "a.json"
    write_json(target, {"v": 1})
    with pytest.raises(InputError):
        write_json(target, {"v": float("nan")})  # NaN is not JSON
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_json_handles_numpy(tmp_path):
    write_json(tmp_path / "n.json", {"a": np.float32(0.5), "b": np.arange(3)})
    assert json.loads((tmp_path / "n.json").read_text()) == {"a": 0.5, "b": [0, 1, 2]}


def test_png_text_chunks_and_16_bit(tmp_path):
    from PIL import Image

    save_png(tmp_path / "m.png", np.array([[0, 65535]], np.uint16), note="hello")
    with Image.open(tmp_path / "m.png") as image:
        assert image.text["note"] == "hello"
        np.testing.assert_array_equal(np.asarray(image), [[0, 65535]])
    with pytest.raises(InputError):
        save_png(tmp_path / "x.png", np.zeros((2, 2), np.float32))


def test_outputs_get_ordinary_permissions(tmp_path):
    import os
    import stat

    write_json(tmp_path / "p.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "p.json").stat().st_mode) == 0o666 & ~umask


def test_import_and_writes_never_touch_the_process_umask(tmp_path):
    """The umask is process-wide: toggling it (as import foveal once did) races every other thread's file creation."""
    import os
    import subprocess
    import sys

    import foveal

    code = ("import os, stat\n"
            "def forbidden(*a): raise AssertionError('os.umask called')\n"
            "os.umask = forbidden\n"
            "import foveal\n"
            "from foveal.fileio import write_json\n"
            f"write_json({str(tmp_path / 'p.json')!r}, {{}})\n"
            f"print(oct(stat.S_IMODE(os.stat({str(tmp_path / 'p.json')!r}).st_mode)))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.path.dirname(foveal.__path__[0])},
                          preexec_fn=lambda: os.umask(0o027))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == oct(0o666 & ~0o027)


def test_output_that_is_a_folder_or_unwritable_is_an_input_error(tmp_path):
    import os

    (tmp_path / "dir").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        write_json(tmp_path / "dir", {})
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot write"):
        write_json(tmp_path / "file" / "below.json", {})  # a file where a folder should be
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        with pytest.raises(InputError, match="cannot write"):
            write_json(locked / "x.json", {})


def test_an_output_behind_a_folder_that_cannot_be_entered_says_where_to_write(tmp_path):
    """Not "give a valid file name": the name is fine, the folder is closed to this user."""
    from tests.store_fixtures import without_root_override

    locked = tmp_path / "locked"
    (locked / "reports").mkdir(parents=True)
    locked.chmod(0o000)
    code = f"from foveal.fileio import write_json; write_json({str(locked / 'reports' / 'x.json')!r}, {{}})"
    try:
        run = subprocess.run(without_root_override([sys.executable, "-c", code]), capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(foveal.__file__).resolve().parents[1])},
                             timeout=120)
    finally:
        locked.chmod(0o755)
    assert run.returncode == 1 and "Permission denied; choose a writable location" in run.stderr, run.stderr


def test_outputs_with_non_ascii_names_where_the_file_system_encoding_is_ascii(tmp_path):
    """Under PYTHONUTF8=0 LC_ALL=C Python names files in ASCII (non-ASCII bytes as surrogates): the temporary's name
    was cut and decoded as UTF-8 into characters it could not encode ('internal error: UnicodeEncodeError')."""
    env = {**os.environ, "PYTHONUTF8": "0", "LC_ALL": "C", "PYTHONCOERCECLOCALE": "0",
           "PYTHONPATH": str(Path(foveal.__file__).resolve().parents[1])}
    code = ("import os, sys; from foveal.fileio import write_json; assert sys.getfilesystemencoding() == 'ascii'; "
            "write_json(os.fsdecode(os.fsencode(sys.argv[1]) + 'Caf\\u00e9 \\u2713.json'.encode()), {}); print('ok')")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path) + "/"], env=env, capture_output=True, text=True,
                         timeout=120)
    if "AssertionError" in run.stderr:
        pytest.skip("this Python does not fall back to ASCII file names under LC_ALL=C")
    assert run.stdout == "ok\n", run.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["Café ✓.json"]


def test_a_name_that_is_not_utf8_is_shown_with_its_bytes_escaped():
    from foveal.fileio import shown_name, unicode_name

    name = os.fsdecode(b"\xff\xfe.png")
    assert shown_name(name) == "\\xff\\xfe.png" and shown_name("café.png") == "café.png"
    with pytest.raises(InputError, match=r"^\\xff\\xfe.png: the image's file name is not valid UTF-8; rename it$"):
        unicode_name(name, "the image's file name")


@pytest.mark.parametrize("path", [None, 3, b"map.png", ["map.png"]])
def test_a_path_that_is_no_path_is_an_input_error(tmp_path, path):
    """Every reader and writer of the public API refuses a non-path with an InputError, not a TypeError."""
    from foveal import SaliencyMap
    from foveal.scoring import find_element_file, load_elements, load_norms

    smap = SaliencyMap(np.full((4, 4), 1 / 16, np.float32))
    calls = [lambda: smap.to_png(path), lambda: smap.to_npy(path),
             lambda: SaliencyMap.from_png(path),
             lambda: load_elements(path, (4, 4)), lambda: load_norms(path), lambda: find_element_file(path, tmp_path),
             lambda: find_element_file("a.png", path), lambda: write_json(path, {})]
    if path is not None:  # overlay's path=None means "do not save"
        calls.append(lambda: smap.overlay(np.zeros((4, 4, 3), np.uint8), path))
    for call in calls:
        with pytest.raises(InputError, match="expected a file path \\(str or pathlib.Path\\), got"):
            call()
    assert list(tmp_path.iterdir()) == []


def test_inputs_are_never_replaced_while_protected(tmp_path):
    import os

    from foveal.fileio import inputs_protected, read_input

    source = tmp_path / "creative.png"
    source.write_bytes(b"original")
    os.symlink(source, tmp_path / "alias.png")
    with inputs_protected():
        assert read_input(tmp_path / "alias.png", 100) == b"original"
        for target in (source, tmp_path / "alias.png", tmp_path / "." / "creative.png"):
            with pytest.raises(InputError, match="one of this run's inputs"):
                write_json(target, {})
        write_json(tmp_path / "other.json", {})  # other paths are fine
    assert source.read_bytes() == b"original"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alias.png", "creative.png", "other.json"]
    write_json(source, {})  # outside the block the library writes where it is told


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "/dev/null"])
def test_special_files_are_refused_without_blocking(tmp_path, special):
    import os

    from foveal.fileio import read_input

    path = special
    if special == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)  # no writer: a plain open() would block forever
    with pytest.raises(InputError, match="not a regular file"):
        read_input(path, 1 << 20)


def test_inputs_are_read_to_a_bound(tmp_path):
    from foveal.fileio import read_input

    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:
        fh.truncate(10 << 20)  # sparse: costs no disk
    with pytest.raises(InputError, match="larger than"):
        read_input(big, 1 << 20)
    assert len(read_input(big, 10 << 20)) == 10 << 20


def test_save_png_uses_the_fast_zlib_level(tmp_path):
    """PNGs (maps, overlays, reports) are written at zlib level 1: the stream header's FLEVEL says "fastest"."""
    import struct

    from foveal.fileio import save_png

    path = tmp_path / "o.png"
    save_png(path, np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    data = path.read_bytes()
    at = data.index(b"IDAT")
    (length,) = struct.unpack(">I", data[at - 4:at])
    zlib_header = data[at + 4:at + 6]
    assert length > 0 and zlib_header[0] & 0x0F == 8 and zlib_header[1] >> 6 == 0  # deflate, FLEVEL 0 = fastest


@pytest.mark.parametrize("exchange", [True, False], ids=["exchange", "moved-aside"])
def test_a_folder_replacement_appears_whole_or_not_at_all(exchange, tmp_path, monkeypatch):
    import os
    import stat

    import foveal.fileio as fileio

    if not exchange:  # a system without renameat2's exchange: the old folder is moved aside first
        monkeypatch.setattr(fileio, "_exchange", lambda a, b: False)
    target = tmp_path / "set"
    with fileio.folder_replacement(target) as new:
        write_json(new / "a.json", 1)
    assert sorted(p.name for p in target.iterdir()) == ["a.json"]
    target.chmod(0o750)
    with pytest.raises(RuntimeError), fileio.folder_replacement(target) as new:
        write_json(new / "a.json", 2)
        raise RuntimeError("boom")
    assert json.loads((target / "a.json").read_text()) == 1  # untouched
    (tmp_path / "link").symlink_to(target)
    with fileio.folder_replacement(tmp_path / "link") as new:  # the folder a link names is replaced, not the link
        write_json(new / "b.json", 3)
    assert sorted(p.name for p in target.iterdir()) == ["b.json"] and (tmp_path / "link").is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o750  # the owner's permissions stay
    assert sorted(os.listdir(tmp_path)) == ["link", "set"]  # nothing left beside it


def test_a_ctrl_c_the_moment_the_temporary_is_made_leaves_no_temporary(tmp_path, monkeypatch):
    """The temporary was deleted only once it was known: a SIGTERM or Ctrl-C raised right after os.open made it (the
    report caught one in about 40 interrupted `foveal predict` runs) left its .part behind. The interrupt is
    raised here at that instant, which a real signal hits only by chance."""
    from foveal import fileio

    real_open = os.open

    def interrupted_open(*args, **kwargs):
        real_open(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(fileio.os, "open", interrupted_open)
    with pytest.raises(KeyboardInterrupt):
        with fileio.atomic_write(tmp_path / "map.png") as fh:
            fh.write(b"never")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("unshare") is None or subprocess.run(
    ["unshare", "-rm", "true"], capture_output=True).returncode != 0,
    reason="needs unshare -rm (a private mount namespace) to mount a small filesystem")
def test_a_full_disk_under_a_npy_map_is_the_one_line_disk_full_error(tmp_path):
    """np.save writes a real file with tofile(), whose short write is an OSError without an errno: it came out as
    an internal error instead of saying to free space."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code = ("import numpy as np\nfrom foveal import InputError, SaliencyMap\n"
            f"try:\n    SaliencyMap(np.ones((600, 600))).to_npy({str(mnt / 'map.npy')!r})\n"
            "except InputError as exc:\n    print(exc)\n")
    (tmp_path / "save.py").write_text(code)
    script = f"mount -t tmpfs -o size=64k tmpfs {mnt} || exit 99; {sys.executable} {tmp_path / 'save.py'}; ls -a {mnt}"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": FOVEAL_PATH})
    assert done.returncode == 0 and done.stderr == "", done.stderr
    message, *listing = done.stdout.splitlines()
    assert message.startswith("cannot write ") and message.endswith(
        "No space left on device; free some space, then run again"), message
    assert listing == [".", ".."]  # the temporary file is gone


@pytest.mark.parametrize("length", [236, 237, 255])
def test_a_legal_name_of_up_to_255_bytes_is_written_as_a_file_and_as_a_folder(tmp_path, length):
    """The temporary sibling was the name plus 19 bytes: a 237-255 byte name failed as "File name too long"."""
    stem = "é" * ((length - 5) // 2) + "x" * ((length - 5) % 2)  # two bytes a letter: a cut may split one
    target = tmp_path / f"{stem}.json"
    assert len(os.fsencode(target.name)) == length
    write_json(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    folder = tmp_path / f"{stem}.dirs"
    assert len(os.fsencode(folder.name)) == length
    with folder_replacement(folder) as new:
        (new / "f.txt").write_text("x")
    assert (folder / "f.txt").read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([target.name, folder.name])


def test_a_temporary_name_cut_to_fit_keeps_whole_characters():
    """Cut mid-character, the name was not UTF-8, which macOS's file systems refuse."""
    from pathlib import Path

    from foveal.fileio import NAME_MAX, _sibling_name

    for stem in ("日" * 83, "é" * 125 + "x"):
        name = _sibling_name(Path("/tmp") / f"{stem}.json", "part").name
        assert len(name.encode("utf-8")) <= NAME_MAX and name.endswith(".part")


@pytest.mark.parametrize("shape,dtype", [((37, 53), np.uint8), ((37, 53, 2), np.uint8), ((37, 53, 3), np.uint8),
                                         ((37, 53, 4), np.uint8), ((37, 53), np.uint16), ((1, 1, 3), np.uint8),
                                         ((5, 1), np.uint16), ((1, 300, 4), np.uint8)])
def test_encode_png_is_read_back_exactly_by_pillow(shape, dtype):
    """foveal writes its PNGs itself (every row Sub-filtered, one zlib level-1 stream): half Pillow's time for a
    photograph's overlay. Any reader must get the pixels and text back."""
    import io

    from PIL import Image

    from foveal.fileio import encode_png

    pixels = np.random.default_rng(sum(shape)).integers(0, np.iinfo(dtype).max + 1, shape, dtype)
    text = {"foveal:scale": "1.5e-07", "source": "créa ✓ 広告.png"}  # Latin-1 (tEXt) and not (iTXt)
    data = encode_png(pixels, text)
    Image.open(io.BytesIO(data)).verify()  # chunk CRCs and structure
    image = Image.open(io.BytesIO(data))
    image.load()
    assert {k: image.info[k] for k in text} == text
    assert image.mode == {1: "I;16" if dtype == np.uint16 else "L", 2: "LA", 3: "RGB", 4: "RGBA"}[
        1 if len(shape) == 2 else shape[2]]
    assert np.array_equal(np.asarray(image).astype(dtype).reshape(shape), pixels)


def test_encode_png_refuses_what_png_cannot_hold():
    from foveal.fileio import encode_png

    for bad in (np.zeros((4, 4), np.float32), np.zeros((4, 4, 5), np.uint8), np.zeros((4, 4, 3), np.uint16),
                np.zeros((0, 4), np.uint8), np.zeros(4, np.uint8)):
        with pytest.raises(InputError, match="PNG: "):
            encode_png(bad)
    with pytest.raises(InputError, match="PNG text key"):
        encode_png(np.zeros((2, 2), np.uint8), {"": "x"})


def test_write_png_refuses_a_bad_text_key_before_writing_anything():
    """The key was checked as its chunk was written, after the signature and header: the caller's stream held the
    start of a PNG."""
    from foveal.fileio import write_png

    sink = io.BytesIO()
    with pytest.raises(InputError, match="PNG text key"):
        write_png(sink, np.zeros((2, 2), np.uint8), {"ok": "1", "bad\x00key": "2"})
    assert sink.getvalue() == b""


def test_write_png_holds_a_few_blocks_of_rows_not_a_copy_of_the_image():
    """Rows are filtered and deflated a block at a time: a 100 MP report overlay must not cost another 300 MB."""
    import tracemalloc

    from foveal.fileio import write_png

    pixels = np.random.default_rng(0).integers(0, 256, (2500, 6000, 3), np.uint8)  # 45 MB, incompressible

    class Sink:
        size = 0

        def write(self, data: bytes) -> None:
            self.size += len(data)

    sink = Sink()
    tracemalloc.start()
    try:
        write_png(sink, pixels)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sink.size > pixels.nbytes  # the data went through
    assert peak < 48 << 20, peak / 2**20  # a few 8 MB blocks, not the image's 45 MB again and again


def test_files_written_together_land_together_or_not_at_all(tmp_path):
    """A command writing a set of files (compare.png, .html, .json) wrote them one by one: a failure at the last
    left the first new beside the others old, a folder that disagreed with itself."""
    first, second = tmp_path / "a.json", tmp_path / "b.txt"
    write_json(first, {"run": 1})
    write_text(second, "run 1")
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="it is a folder"):
        with written_together():
            write_json(first, {"run": 2})
            write_text(second, "run 2")
            write_text(tmp_path / "folder", "in the way")
    assert json.loads(first.read_text()) == {"run": 1} and second.read_text() == "run 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.txt", "folder"]  # no temporary left
    with written_together():
        write_json(first, {"run": 3})
        write_text(second, "run 3")
        assert json.loads(first.read_text()) == {"run": 1}  # nothing lands before the block ends
    assert json.loads(first.read_text()) == {"run": 3} and second.read_text() == "run 3"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.txt", "folder"]


def test_a_file_past_the_size_limit_is_a_one_line_error_and_leaves_nothing(tmp_path):
    """EFBIG (ulimit -f, a file system's largest file) was re-raised as it came: "internal error: OSError: [Errno 27]
    File too large"."""
    import resource

    examples = Path(__file__).resolve().parents[1] / "examples"
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "foveal", "whatif", str(examples / "creative.png"), "--elements",
                           str(examples / "creative.json"), "--move", "cta:0,-30", "-o", str(out), "-q"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": FOVEAL_PATH},
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (200 * 1024, 200 * 1024)))
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "File too large (past the size limit for one file: `ulimit -f`" in done.stderr
    assert not out.exists() or not [p for p in out.iterdir() if p.is_file()]
