"""Bad-input campaign, special files: FIFOs, devices, sockets, folders, links, unreadable and huge files.

Every reader (image decode, saliency PNG, model card, the CLI) refuses them with a FovealError at once: no read
that blocks forever, no file read whole into memory. The CLI runs in a subprocess with a timeout, so a hang fails
the test instead of stalling the suite.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import foveal
from foveal import FovealError, SaliencyMap, load_card, load_image


@pytest.fixture
def specials(tmp_path) -> dict[str, str]:
    paths = {"fifo": tmp_path / "pipe.png", "folder": tmp_path / "folder.png", "dangling": tmp_path / "gone.png",
             "loop": tmp_path / "loop.png", "socket": tmp_path / "sock.png", "sparse": tmp_path / "huge.png"}
    os.mkfifo(paths["fifo"])  # no writer: a blocking open() would wait forever
    paths["folder"].mkdir()
    os.symlink(tmp_path / "nowhere", paths["dangling"])
    os.symlink(paths["loop"], paths["loop"])
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(paths["socket"]))
    with open(paths["sparse"], "wb") as fh:  # 4 GB that cost no disk: a non-image file far over any limit
        fh.truncate(4 << 30)
    yield {name: str(path) for name, path in paths.items()} | {"zero": "/dev/zero", "null": "/dev/null",
                                                                "urandom": "/dev/urandom"}
    server.close()


READERS = {
    "load_image": lambda p: load_image(p, max_pixels=10**6),
    "from_png": lambda p: SaliencyMap.from_png(p, max_pixels=10**6),
}


def _bounded(call, seconds: float = 30.0):
    """``call()``'s exception (or None) within ``seconds``; a hang fails the test instead of stalling the suite."""
    outcome: list = []

    def run():
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed back to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still blocked after {seconds} s"
    return outcome[0]


@pytest.mark.parametrize("reader", sorted(READERS))
def test_readers_refuse_special_files(specials, reader):
    for name, path in specials.items():
        error = _bounded(lambda: READERS[reader](path))
        assert isinstance(error, FovealError) and "\n" not in str(error), (name, error)


def test_engine_refuses_special_files(specials):
    engine = foveal.Engine("itti-koch", max_pixels=10**6)
    results = engine.predict_batch(list(specials.values()), errors="return")
    assert all(isinstance(r, FovealError) for r in results), results


@pytest.mark.parametrize("special", ["fifo", "zero", "folder"])
def test_model_cards_from_special_files(specials, tmp_path, special):
    path = specials[special]
    with pytest.raises(FovealError):
        load_card(path if special != "folder" else path + "/x.onnx")


def test_card_that_is_a_fifo_beside_an_onnx(tmp_path):
    """A user's model whose card is a FIFO (or a device) must not block the Engine on it."""
    onnx = tmp_path / "mine.onnx"
    onnx.write_bytes(load_card("itti-koch").onnx_path.read_bytes())
    os.mkfifo(tmp_path / "mine.json")
    error = _bounded(lambda: load_card(onnx))
    assert isinstance(error, FovealError) and "not a regular file" in str(error), error


def test_cli_never_hangs_on_special_files(specials, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.path.dirname(foveal.__path__[0])}
    files = [path for name, path in specials.items() if name != "folder"]  # a folder stands for its images
    argv = [sys.executable, "-m", "foveal", "predict", *files, "-o", str(tmp_path / "out"), "--model",
            "itti-koch", "-q", "--max-pixels", "1e6"]
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == len(files) and all(line.startswith("foveal: error:") for line in lines), lines


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    path = tmp_path / "secret.png"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(FovealError, match="cannot read"):
        load_image(path)


def test_dataset_folder_with_a_fifo_image(tmp_path):
    """`foveal eval` reads image headers of a whole folder: a FIFO among them is an InputError, not a hang."""
    import json

    from foveal.datasets import load_folder

    os.mkfifo(tmp_path / "a.png")
    (tmp_path / "fixations.json").write_text(json.dumps({"a.png": [[1, 2]]}))

    def load():
        load_folder(tmp_path).shape(0)

    error = _bounded(load)
    assert isinstance(error, FovealError) and "not a regular file" in str(error), error


def test_writers_never_replace_special_files_or_take_bad_names(tmp_path):
    """Writes rename a temporary over the target: over a FIFO (or, as root, /dev/full) that replaced the node."""
    import numpy as np

    smap = SaliencyMap(np.full((4, 4), 1 / 16, np.float32))
    fifo = tmp_path / "map.png"
    os.mkfifo(fifo)
    for target in (fifo, "/dev/null"):
        with pytest.raises(FovealError, match="not a regular file"):
            smap.to_png(target)
        with pytest.raises(FovealError, match="not a regular file"):
            smap.to_npy(target)
    assert fifo.is_fifo() and not Path("/dev/null").is_file()
    with pytest.raises(FovealError, match="NUL byte"):
        smap.to_png(tmp_path / "a\0.png")
    with pytest.raises(FovealError, match="cannot write .*valid file name"):
        smap.to_png(tmp_path / ("a" * 300 + ".png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["map.png"]
