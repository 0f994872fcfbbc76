"""Atomic writes: a failure half-way leaves neither a partial target nor a temp file."""
from __future__ import annotations

import json

import numpy as np
import pytest

from foveal import InputError
from foveal.fileio import atomic_write, save_png, write_json


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
