"""The int8 graph of a fp32 saliency graph, for ONNX Runtime's CPU provider (shipped models and fine-tuned ones).

ONNX Runtime static quantisation in QDQ format: int8 weights per output channel, uint8 activations whose ranges
are calibrated on network inputs the caller prepares as at run time.  The layers whose quantisation moves the map
most stay in float (:func:`float_nodes`): the stem, the first :data:`FLOAT_BLOCKS` blocks and the whole readout.
Needs the ``onnx`` package (the train extra).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

# Backbone blocks (after the stem) kept in float.  Quantising the stem or block 0 alone moves an element's share
# on the example creatives by up to 9 and 6.5 pp; chosen on OSIE + Scene val by share agreement against speed
# (docs/MODEL.md): 5 blocks halve the val differences again but cut int8's lead over fp32 further (1.29x against
# 1.37x by median).
FLOAT_BLOCKS = 2
FORMAT = ("ONNX QDQ: int8 weights (symmetric, per output channel), uint8 activations (MinMax); "
          f"the stem, blocks 0-{FLOAT_BLOCKS - 1} and the readout in float")


def float_nodes(model, blocks: int = FLOAT_BLOCKS) -> list[str]:
    """Names of the nodes of ``model`` (an ``onnx.ModelProto``) that the int8 graph keeps in float.

    * The readout: every node the backbone's last convolution does not depend on (normalisation of the taps,
      projections, head, blur, centre prior, log-softmax).  It costs a few per cent of the network's time and
      ends in a log-density, which uint8 cannot hold to the precision a share needs.
    * The stem's and the first ``blocks`` blocks' convolutions (torch names ``backbone._conv_stem``,
      ``backbone._blocks.<i>``), and each Add all of whose inputs come from float nodes.
    """
    nodes = list(model.graph.node)
    producer = {out: n for n in nodes for out in n.output}
    backbone = [n for n in nodes if n.op_type == "Conv" and n.input[1].startswith("backbone.")]
    needed, stack = set(), [backbone[-1]]
    while stack:
        node = stack.pop()
        if node.name not in needed:
            needed.add(node.name)
            stack += [producer[i] for i in node.input if i in producer]
    early = ("backbone._conv_stem.",) + tuple(f"backbone._blocks.{i}." for i in range(blocks))
    floats = {n.name for n in backbone if n.input[1].startswith(early)}
    for n in nodes:
        if n.op_type == "Add" and n.name in needed and all(
                i in producer and producer[i].name in floats for i in n.input):
            floats.add(n.name)
    return [n.name for n in nodes if n.name not in needed or n.name in floats]


def int8_graph(fp32_onnx: str | Path, input_name: str, inputs: Iterable[np.ndarray]) -> bytes:
    """The int8 QDQ graph of the graph at ``fp32_onnx``, its activation ranges calibrated on ``inputs``
    (1×3×H×W float32 network inputs, preprocessed as at run time; their sizes may differ)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(inputs)

        def get_next(self) -> dict | None:
            x = next(self._items, None)
            return None if x is None else {input_name: x}

    with tempfile.TemporaryDirectory() as tmp:
        pre, q = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32_onnx), str(pre))
        # Calibration runs image by image; shapes differ between images (aspect ratios), which MinMax allows.
        quantize_static(str(pre), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=float_nodes(onnx.load(str(pre))))
        return vectorised_softplus(onnx.load(str(q))).SerializeToString()


def vectorised_softplus(model):
    """``model`` with each Softplus node replaced by ``relu(x) + log(1 + exp(-|x|))``, the same function.

    ONNX Runtime's CPU Softplus kernel evaluates element by element; the seven replacement nodes run its
    vectorised kernels, which makes the int8 graph about 6 % faster here (docs/PERFORMANCE.md).
    """
    from onnx import helper, numpy_helper

    one = "vectorised_softplus_one"
    nodes, replaced = [], 0
    for node in model.graph.node:
        if node.op_type != "Softplus":
            nodes.append(node)
            continue
        replaced += 1
        x, y, t = node.input[0], node.output[0], f"{node.output[0]}_softplus"
        nodes += [helper.make_node("Relu", [x], [f"{t}_relu"]),
                  helper.make_node("Abs", [x], [f"{t}_abs"]),
                  helper.make_node("Neg", [f"{t}_abs"], [f"{t}_neg"]),
                  helper.make_node("Exp", [f"{t}_neg"], [f"{t}_exp"]),
                  helper.make_node("Add", [f"{t}_exp", one], [f"{t}_1p"]),
                  helper.make_node("Log", [f"{t}_1p"], [f"{t}_log"]),
                  helper.make_node("Add", [f"{t}_relu", f"{t}_log"], [y])]
    if replaced:
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.append(numpy_helper.from_array(np.array(1.0, np.float32), one))
    return model
