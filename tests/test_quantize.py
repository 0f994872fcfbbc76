"""engine/quantize.py and foveal.network.quantize: the fp16 and int8 graphs run on ONNX Runtime and agree with the
fp32 graph."""
from __future__ import annotations

import numpy as np
import pytest

from foveal.models import load_card

quantize = pytest.importorskip("engine.quantize", reason="needs the source checkout's engine/ and onnx")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from foveal.network import quantize as package_quantize  # noqa: E402


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
    graph = package_quantize.vectorised_softplus(model).SerializeToString()
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


def test_int8_graph_keeps_the_stem_early_blocks_and_readout_in_float(card):
    model = onnx.load(str(card.onnx_path))
    floats = set(package_quantize.float_nodes(model, blocks=2))
    weight = {n.name: n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    assert {n.name for n in model.graph.node if n.op_type in ("LogSoftmax", "Resize")} <= floats
    assert {name for name, w in weight.items() if not w.startswith("backbone.")} <= floats  # readout and blur
    assert {name for name, w in weight.items() if w.startswith(("backbone._conv_stem.", "backbone._blocks.0.",
                                                                  "backbone._blocks.1."))} <= floats
    assert not {name for name, w in weight.items() if w.startswith("backbone._blocks.2.")} & floats
    # The residual add of block 2 reads block 1's (float) and block 2's (int8) outputs: quantised.
    assert len(floats) < len(set(package_quantize.float_nodes(model, blocks=5)))


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_shipped_graph_shares_stay_within_the_stated_tolerance_of_fp32(card, precision):
    """The accuracy contract of each reduced-precision graph: element shares on the example creatives."""
    agreement = pytest.importorskip("engine.share_agreement")
    from foveal import Engine

    pairs = agreement.example_creatives()
    assert len(pairs) == 10
    got = agreement.example_agreement(card.name, {precision: Engine(card.name, precision=precision)})[precision]
    assert got.differences.size == 60 and np.all(np.isfinite(got.differences))
    assert got.max <= agreement.TOLERANCE_PP[precision], got.summary()
    assert got.median <= agreement.MEDIAN_TOLERANCE_PP[precision], got.summary()
    # The card states the same tolerance and the agreement of the graph it ships (not of an earlier one).
    recorded = card.raw[precision]["share_agreement"]
    assert recorded["tolerance_pp"] == {"max": agreement.TOLERANCE_PP[precision],
                                        "median": agreement.MEDIAN_TOLERANCE_PP[precision]}
    examples = recorded["example_creatives"]
    if precision == "int8":
        # ONNX Runtime picks its int8 kernels by instruction set, so the card's numbers (measured on an AVX2 CPU)
        # are this graph's there only: with AVX-512 VNNI / AMX it lands closer to fp32 (an Intel Xeon: largest
        # 1.08 pp, median 0.24, against the card's 1.43 and 0.37). What holds everywhere is the tolerance, above.
        assert examples["max_pp"] <= agreement.TOLERANCE_PP[precision]
        assert examples["median_pp"] <= agreement.MEDIAN_TOLERANCE_PP[precision]
    else:
        assert abs(examples["max_pp"] - got.max) < 0.01
        assert abs(examples["median_pp"] - got.median) < 0.01


def test_share_agreement_measures_a_graph_file_against_fp32(card, tmp_path):
    agreement = pytest.importorskip("engine.share_agreement")
    same = agreement.graph_engine(card.name, card.onnx_path, tmp_path)
    got = agreement.example_agreement(card.name, {"fp32 copy": same})["fp32 copy"]
    assert got.max < 1e-6 and got.summary()["boxes"] == 60
    boxes = agreement.grid_boxes((601, 403))
    assert boxes.shape == (16, 4) and boxes[:, 2].sum() == 4 * 403 and boxes[:, 3].sum() == 4 * 601
