"""Model cards: shipped models resolve by name and verify their sha256; bad cards and paths fail clearly."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from foveal import Engine, ModelError, available_models, load_card, models
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
    with pytest.raises(ModelError, match=f"model file not found: {tmp_path / 'missing.json'}$"):
        load_card(tmp_path / "missing.json")
    for blank in ("", "  "):  # an empty setting is not the current folder
        with pytest.raises(ModelError, match="^model: no model named; use one of foveal-lite0, itti-koch or a path"):
            load_card(blank)
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


def test_int8_variant_of_the_default_model():
    card = load_card("default")
    assert card.precisions == ("fp32", "fp16", "int8") and card.precision == "fp32"
    int8 = card.variant("int8")
    assert int8.precision == "int8" and int8.name == card.name and int8.input == card.input
    assert int8.onnx_path != card.onnx_path and int8.sha256 == card.raw["int8"]["sha256"] != card.sha256
    assert int8.onnx_path.stat().st_size < card.onnx_path.stat().st_size / 3
    assert card.variant("fp32") is card and int8.variant("int8") is int8
    for split in ("osie-test", "scene-test"):
        assert {"CC", "NSS", "AUC-Judd"} <= set(card.raw["int8"]["metrics"][split])
    with pytest.raises(ModelError, match="ships no int8 graph"):
        load_card("itti-koch").variant("int8")


def test_fp16_variant_matches_the_fp32_graph():
    import onnxruntime as ort

    card = load_card("default")
    fp16 = card.variant("fp16")
    assert fp16.precision == "fp16" and fp16.sha256 == card.raw["fp16"]["sha256"]
    assert fp16.onnx_path.stat().st_size < 0.6 * card.onnx_path.stat().st_size  # half-width weights
    x = ((np.random.default_rng(0).integers(0, 256, (2, 3, 96, 128)) - 127.0) / 128.0).astype(np.float32)
    a, b = (ort.InferenceSession(str(c.onnx_path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
            for c in (card, fp16))
    assert b.dtype == np.float32 and b.shape == a.shape  # fp16 inside, float32 at the edges (the contract)
    np.testing.assert_allclose(b, a, atol=0.05)  # log-density; fp16 keeps ~3 significant digits
    for split in ("osie-test", "scene-test"):
        assert abs(card.raw["fp16"]["metrics"][split]["CC"] - card.raw["metrics"][split]["CC"]) < 0.005


def test_damaged_int8_graph_is_refused(tmp_path):
    card = load_card("default")
    for path in (card.onnx_path, card.variant("int8").onnx_path):
        shutil.copy(path, tmp_path / path.name)
    raw = json.loads(json.dumps(card.raw))
    raw["int8"]["sha256"] = "0" * 64
    (tmp_path / f"{card.name}.json").write_text(json.dumps(raw))
    copy = load_card(tmp_path / f"{card.name}.onnx")
    with pytest.raises(ModelError, match="does not match its card"):
        copy.variant("int8")
    raw["int8"]["onnx"] = "gone.onnx"
    (tmp_path / f"{card.name}.json").write_text(json.dumps(raw))
    with pytest.raises(ModelError, match="not found"):
        load_card(tmp_path / f"{card.name}.onnx").variant("int8")


def _user_folder(tmp_path, base="default"):
    """A copy of a shipped model in a folder of its own, as ``foveal finetune`` writes one: graphs and a card that
    states their sha256."""
    card = load_card(base)
    for precision in card.precisions:
        shutil.copy(card.variant(precision).onnx_path, tmp_path)
    (tmp_path / f"{card.name}.json").write_text(json.dumps(card.raw))
    return card


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_a_swapped_graph_in_a_users_folder_is_refused(tmp_path, precision):
    """The fp32 graph of a user's folder was not checked at all: another graph ran under the card's name."""
    card = _user_folder(tmp_path)
    assert load_card(tmp_path).variant(precision).sha256 == card.variant(precision).sha256
    graph = tmp_path / card.variant(precision).onnx_path.name
    shutil.copy(load_card("itti-koch").onnx_path, graph)
    field = "sha256" if precision == "fp32" else f"{precision}.sha256"
    with pytest.raises(ModelError, match=rf"^{graph.name}: sha256 .* does not match its card \({card.name}.json "
                                         rf"{field}: .*changed after its card was written.*restore it") as info:
        load_card(tmp_path).variant(precision)
    assert "reinstall" not in str(info.value) and "\n" not in str(info.value)
    for path in (tmp_path, tmp_path / f"{card.name}.json", tmp_path / f"{card.name}.onnx"):
        with pytest.raises(ModelError, match="does not match its card"):
            Engine(path, precision=precision)


def test_a_damaged_shipped_graph_says_reinstall(tmp_path, monkeypatch):
    card = _user_folder(tmp_path, "itti-koch")
    shutil.copy(load_card("default").onnx_path, tmp_path / "itti-koch.onnx")
    monkeypatch.setattr(models, "MODELS_DIR", tmp_path)
    with pytest.raises(ModelError, match=r"^itti-koch.onnx: .*does not match its card.*reinstall foveal$"):
        models._load_shipped.__wrapped__(card.name)


def test_a_variant_graph_loaded_by_its_path_is_refused(tmp_path):
    """It ran as a bare ONNX file: mean 0 / std 255 where its card says 127 / 128, and 'version unknown'."""
    card = load_card("default")
    for precision in ("fp16", "int8"):
        with pytest.raises(ModelError, match=rf"^{card.name}.{precision}.onnx is the {precision} graph of the model "
                                             rf"'{card.name}', not a model of its own: load '{card.name}' with "
                                             rf"precision='{precision}' \(CLI: --model {card.name} --precision "
                                             rf"{precision}\)$"):
            load_card(card.variant(precision).onnx_path)
    _user_folder(tmp_path)
    own = re.escape(str(tmp_path / f"{card.name}.json"))
    with pytest.raises(ModelError, match=rf"graph of the model '{own}'.*--model {own} --precision int8\)$"):
        Engine(tmp_path / f"{card.name}.int8.onnx")
    assert load_card(tmp_path / f"{card.name}.json").variant("int8").precision == "int8"
    (tmp_path / "other.json").write_text("{not json")  # another file's broken card is not this file's
    shutil.copy(tmp_path / f"{card.name}.onnx", tmp_path / "other.onnx")
    (tmp_path / f"{card.name}.json").unlink()
    assert load_card(tmp_path / f"{card.name}.int8.onnx").version == "unknown"  # no card lists it: a bare file


def test_a_model_path_that_is_no_model_file_says_what_it_is(tmp_path):
    """/dev/null was "model file not found"; a file ONNX Runtime cannot parse gave only its protobuf error."""
    with pytest.raises(ModelError, match="^model /dev/null is not a regular file; pass a model's .onnx or .json"):
        load_card("/dev/null")
    (tmp_path / "fake.onnx").write_text("not a model\n")
    with pytest.raises(ModelError, match=r"^onnxruntime cannot load fake.onnx: .*; is it an ONNX model "):
        Engine(tmp_path / "fake.onnx")
