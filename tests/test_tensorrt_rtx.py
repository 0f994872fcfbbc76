"""Every shipped ONNX model parses and builds with TensorRT's ONNX parser and builder, on a machine without a GPU.

TensorRT for RTX (``pip install tensorrt-rtx``, module ``tensorrt_rtx``) shares TensorRT's ONNX parser and builder
API and can build for a named compute capability without a GPU present. The build goes through the same
``trt_builder.build_plan`` and the same optimisation profiles as the tensorrt backend, so an operator TensorRT
cannot handle, a dynamic shape it cannot express or a profile it rejects fails here rather than on a user's GPU.
(TensorRT for RTX targets SM75-SM121 consumer parts; the H100's SM90 is not among them, which is why the backend
itself builds on the GPU it runs on.)
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from foveal.backends.trt_builder import build_plan, profiles_for
from foveal.models import MODELS_DIR, available_models, load_card

trt = pytest.importorskip("tensorrt_rtx", reason="TensorRT for RTX not installed (pip install tensorrt-rtx)")

# Every graph the tensorrt backend builds from: each model's fp32 graph and its fp16 graph where it ships one
# (how strongly typed TensorRT runs FP16).  The int8 variants are ONNX Runtime's (uint8 activations, int32
# biases: outside TensorRT's symmetric int8), and the backend refuses them.
SHIPPED = available_models()
GRAPHS = [(name, p) for name in SHIPPED for p in load_card(name).precisions if p != "int8"]
TARGETS = ("SM80", "SM86", "SM89")


def test_models_are_shipped() -> None:
    assert SHIPPED, f"no ONNX models in {MODELS_DIR}"
    files = {load_card(n).variant(p).onnx_path.name for n in SHIPPED for p in load_card(n).precisions}
    assert files == {p.name for p in MODELS_DIR.glob("*.onnx")}


@pytest.mark.slow
@pytest.mark.parametrize("name, precision", GRAPHS)
def test_builds_for_ampere_and_ada(name: str, precision: str) -> None:
    card = load_card(name).variant(precision)
    profiles = profiles_for(card)
    plan, timing = build_plan(trt, card.onnx_path, card.input.name, profiles, compute_capabilities=TARGETS)
    assert len(plan) > 1000 and timing is None


def test_unparsable_model_is_a_model_error(tmp_path: Path) -> None:
    from foveal.errors import ModelError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(ModelError, match="cannot parse bad.onnx"):
        build_plan(trt, bad, "image", profiles_for(load_card(SHIPPED[0])), compute_capabilities=TARGETS[:1])


def test_profile_input_name_matches_the_graph() -> None:
    for name in SHIPPED:
        card = load_card(name)
        raw = json.loads(card.onnx_path.with_suffix(".json").read_text())
        assert raw["input"]["name"] == card.input.name
