"""engine/quantize.py: the fp16 and int8 graphs it makes run on ONNX Runtime and agree with the fp32 graph."""
from __future__ import annotations

import numpy as np
import pytest

from foveal.models import load_card

quantize = pytest.importorskip("engine.quantize", reason="needs the source checkout's engine/ and onnx")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def _run(graph: bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(graph, providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]


@pytest.fixture(scope="module")
def card():
    return load_card("foveal-lite0")


def test_fp16_graph_keeps_float32_io_and_the_output(card):
    graph, how = quantize.to_fp16(card)
    x = ((np.random.default_rng(0).integers(0, 256, (1, 3, 64, 96)) - 127.0) / 128.0).astype(np.float32)
    want, got = _run(card.onnx_path.read_bytes(), x), _run(graph, x)
    assert got.dtype == np.float32 and got.shape == want.shape and "keep_io_types" in how["format"]
    np.testing.assert_allclose(got, want, atol=0.05)


def test_vectorised_softplus_is_the_same_function(card):
    model = onnx.load(str(card.onnx_path))
    assert any(n.op_type == "Softplus" for n in model.graph.node)
    graph = quantize.vectorised_softplus(model).SerializeToString()
    assert not any(n.op_type == "Softplus" for n in onnx.load_from_string(graph).graph.node)
    x = ((np.random.default_rng(1).integers(0, 256, (2, 3, 96, 64)) - 127.0) / 128.0).astype(np.float32)
    np.testing.assert_allclose(_run(graph, x), _run(card.onnx_path.read_bytes(), x), rtol=0, atol=1e-5)


@pytest.mark.data
def test_int8_graph_is_calibrated_on_train_images(card, data_dir):
    inputs = quantize.calibration_inputs(data_dir, card.input.working_size, card.input.pad_multiple)
    assert len(inputs) == sum(quantize.CALIBRATION.values())
    assert all(x.dtype == np.float32 and x.shape[2] % 32 == 0 and x.shape[3] % 32 == 0 for x in inputs)
    graph, how = quantize.to_int8(card, data_dir)
    assert len(graph) < card.onnx_path.stat().st_size / 3 and "train images" in how["calibration"]
    assert not any(n.op_type == "Softplus" for n in onnx.load_from_string(graph).graph.node)
    x = inputs[0]
    want, got = np.exp(_run(card.onnx_path.read_bytes(), x)), np.exp(_run(graph, x))
    assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99
