"""PP-OCRv4's text graphs with their scalar affines folded into the convolutions and their hard-swish fused.

The detection and recognition graphs as exported from Paddle spell each activation of their PPLCNetV3 backbones
out in elementwise nodes: every convolution is followed by a learnable scalar affine (``Mul`` then ``Add``), every
hard-swish is ``Add 3``, ``Clip 0..6``, ``Mul`` and ``Div 6``.  ONNX Runtime fuses none of them, and these passes
over full-size feature maps cost about a quarter of the networks' time.  Folding ``conv(x) * a + b`` into the
convolution's weights and bias, an activation's ``x * a + b`` into the unpadded convolutions it feeds, and writing
each hard-swish as ONNX's ``HardSwish`` computes the same function (outputs agree to float rounding) with far
fewer passes.  Done in memory when the detector loads; needs the ``onnx`` package (the detect extra).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..errors import DetectorUnavailableError
from .models import INSTALL_HINT

_OPSET = 14  # the first with HardSwish


def folded_graph(path: Path) -> bytes:
    """The graph at ``path`` with conv-then-scalar-affine folded and hard-swish fused, serialised."""
    try:
        import onnx
        from onnx import numpy_helper, version_converter
    except ImportError:
        raise DetectorUnavailableError(f"onnx is not installed; {INSTALL_HINT}") from None

    model = onnx.load(str(path))
    if model.opset_import[0].version < _OPSET:
        model = version_converter.convert_version(model, _OPSET)
    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    nodes = list(graph.node)
    users: dict[str, list] = defaultdict(list)
    for node in nodes:
        for name in node.input:
            users[name].append(node)
    producer = {out: node for node in nodes for out in node.output}
    outputs = {o.name for o in graph.output}  # a value the caller reads is never folded away

    def scalar(name: str) -> float | None:
        value = consts.get(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def only_user(name: str, op: str):
        found = users.get(name, [])
        return found[0] if len(found) == 1 and found[0].op_type == op else None

    def other_input(node, name: str) -> str:
        return node.input[1] if node.input[0] == name else node.input[0]

    dropped: set[int] = set()
    weights: dict[str, np.ndarray] = {}
    for conv in nodes:
        if conv.op_type != "Conv" or conv.input[1] not in consts:
            continue
        mul = only_user(conv.output[0], "Mul")
        add = mul and only_user(mul.output[0], "Add")
        a = mul and scalar(other_input(mul, conv.output[0]))
        b = add and scalar(other_input(add, mul.output[0]))
        if a is None or b is None or {conv.output[0], mul.output[0]} & outputs:
            continue
        w = consts[conv.input[1]]
        bias = consts[conv.input[2]] if len(conv.input) > 2 else np.zeros(w.shape[0], w.dtype)
        name = conv.output[0]
        weights[name + "_folded_w"] = (w * np.float32(a)).astype(w.dtype)
        weights[name + "_folded_b"] = (bias * np.float32(a) + np.float32(b)).astype(w.dtype)
        consts.update(weights)  # the forward fold below may take these weights further
        del conv.input[1:]
        conv.input.extend([name + "_folded_w", name + "_folded_b"])
        conv.output[0] = add.output[0]
        dropped.update((id(mul), id(add)))
    for mul in nodes:
        # an affine after an activation, feeding only unpadded convolutions (pointwise ones): into their weights
        add = only_user(mul.output[0], "Add") if mul.op_type == "Mul" and id(mul) not in dropped else None
        k = next((i for i, name in enumerate(mul.input) if scalar(name) is not None), None) if add else None
        a = scalar(mul.input[k]) if k is not None else None
        b = scalar(other_input(add, mul.output[0])) if a is not None else None
        convs = users.get(add.output[0], []) if b is not None else []
        if not convs or {mul.output[0], add.output[0]} & outputs or not all(
                _unpadded(c) and c.input[0] == add.output[0] and c.input[1] in consts for c in convs):
            continue
        for conv in convs:
            w = consts[conv.input[1]]
            bias = consts[conv.input[2]] if len(conv.input) > 2 else np.zeros(w.shape[0], w.dtype)
            name = conv.output[0]
            weights[name + "_folded_in_w"] = (w * np.float32(a)).astype(w.dtype)
            weights[name + "_folded_in_b"] = (bias + np.float32(b) * w.sum(axis=(1, 2, 3))).astype(w.dtype)
            conv.input[0] = mul.input[1 - k]
            for stale in conv.input[1:]:
                weights.pop(stale, None)
            del conv.input[1:]
            conv.input.extend([name + "_folded_in_w", name + "_folded_in_b"])
        dropped.update((id(mul), id(add)))
    for div in nodes:
        # x * clip(x + 3, 0, 6) / 6
        if div.op_type != "Div" or scalar(div.input[1]) != 6.0 or div.input[0] not in producer:
            continue
        mul = producer[div.input[0]]
        if mul.op_type != "Mul" or len(users[mul.output[0]]) != 1:
            continue
        clip = next((producer.get(i) for i in mul.input if producer.get(i) is not None
                     and producer[i].op_type == "Clip"), None)
        if clip is None or len(users[clip.output[0]]) != 1 or scalar(clip.input[1]) != 0.0 or \
                scalar(clip.input[2]) != 6.0:
            continue
        add = producer.get(clip.input[0])
        if add is None or add.op_type != "Add" or len(users[add.output[0]]) != 1:
            continue
        x = other_input(mul, clip.output[0])
        if x not in add.input or scalar(other_input(add, x)) != 3.0 or \
                {add.output[0], clip.output[0], mul.output[0]} & outputs:
            continue
        div.op_type = "HardSwish"
        del div.input[:]
        div.input.append(x)
        dropped.update((id(mul), id(clip), id(add)))
    kept = [n for n in nodes if id(n) not in dropped]
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    kept = [n for n in kept if n.op_type != "Constant" or n.output[0] in used]
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in weights.items())
    return model.SerializeToString()


def _unpadded(conv) -> bool:
    """A convolution over the whole input without padding or groups: conv(a x + b) = a conv(x) + b sum(w) exactly
    (zero padding would see b only inside the image)."""
    attrs = {a.name: a for a in conv.attribute}
    pads = list(attrs["pads"].ints) if "pads" in attrs else []
    auto = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
    group = attrs["group"].i if "group" in attrs else 1
    return conv.op_type == "Conv" and not any(pads) and auto in ("NOTSET", "VALID") and group == 1
