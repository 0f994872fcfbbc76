"""Model cards: shipped models resolve by name and verify their sha256; bad cards and paths fail clearly."""
from __future__ import annotations

import json
import shutil

import pytest

from foveal import ModelError, available_models, load_card
from foveal.geometry import plan
from foveal.models import DEFAULT_MODEL


def test_shipped_models_and_default():
    names = available_models()
    assert "itti-koch" in names and DEFAULT_MODEL in names
    card = load_card("default")
    assert card.name == DEFAULT_MODEL and len(card.sha256) == 64 and card.onnx_path.is_file()


@pytest.mark.parametrize("name", available_models())
def test_cards_obey_the_contract(name):
    card = load_card(name)
    raw = card.raw
    for key in ("name", "version", "sha256", "licence", "citation", "provenance", "metrics", "input", "output"):
        assert key in raw, f"{name} card lacks {key!r}"
    assert raw["input"]["layout"] == "NCHW" and raw["input"]["dtype"] == "float32"
    assert card.input.pad_multiple % card.stride == 0


def test_user_onnx_with_and_without_card(tmp_path):
    src = load_card("itti-koch")
    onnx = tmp_path / "mine.onnx"
    shutil.copy(src.onnx_path, onnx)
    bare = load_card(onnx)
    assert bare.name == "mine" and bare.sha256 == src.sha256
    (tmp_path / "mine.json").write_text(json.dumps({**src.raw, "name": "mine-v2"}))
    assert load_card(onnx).name == "mine-v2" and load_card(onnx).stride == src.stride


def test_bad_names_and_cards(tmp_path):
    with pytest.raises(ModelError, match="unknown model"):
        load_card("no-such-model")
    with pytest.raises(ModelError, match="not found"):
        load_card(tmp_path / "missing.onnx")
    (tmp_path / "m.onnx").write_bytes(b"junk")
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ModelError, match="cannot read model card"):
        load_card(tmp_path / "m.onnx")
    (tmp_path / "m.json").write_text(json.dumps({"input": {"mean": [0, 0]}}))
    with pytest.raises(ModelError, match="malformed"):
        load_card(tmp_path / "m.onnx")


@pytest.mark.parametrize("hw", [(600, 800), (1080, 1080), (400, 1600), (1600, 400), (1, 5000), (37, 23)])
def test_plan_keeps_aspect_and_pads_to_stride(hw):
    card = load_card("itti-koch")
    p = plan(*hw, card)
    assert max(p.resized_hw) == card.input.working_size
    assert all(r >= 1 and pad % card.input.pad_multiple == 0 and pad - r < card.input.pad_multiple
               for r, pad in zip(p.resized_hw, p.padded_hw))
    scale = card.input.working_size / max(hw)
    assert all(abs(r - max(side * scale, 1)) <= 0.5 for r, side in zip(p.resized_hw, hw))
    assert p.valid_hw == (p.resized_hw[0] / card.stride, p.resized_hw[1] / card.stride)
