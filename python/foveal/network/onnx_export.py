"""Export of foveal's networks to ONNX: BatchNorm folding, a dynamo trace with dynamic N, H, W, and a check of
onnxruntime against torch at several shapes before anything is written.  Used by ``engine/export.py``,
``engine/train.py`` and ``foveal finetune``; needs torch, onnx and onnxscript (``pip install "foveal[train]"``).
"""
from __future__ import annotations

import copy
import logging
import warnings
from typing import Any

import numpy as np
import onnx
import onnxruntime
import torch
from torch import nn

from .backbone import EfficientNetLite, MBConv
from .deepgaze import SaliencyNet

OPSET = 18
TOLERANCE = 1e-4


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      groups=conv.groups, bias=True)
    fused.weight.data = conv.weight.data * scale.view(-1, 1, 1, 1)
    bias = conv.bias.data if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.data = (bias - bn.running_mean) * scale + bn.bias
    return fused


def fold_backbone(bb: EfficientNetLite) -> EfficientNetLite:
    """Fold every BatchNorm of an eval-mode backbone into the convolution before it (in place)."""
    bb._conv_stem, bb._bn0 = _fold_bn(bb._conv_stem, bb._bn0), nn.Identity()
    for blk in bb._blocks:
        assert isinstance(blk, MBConv)
        if blk.expand:
            blk._expand_conv, blk._bn0 = _fold_bn(blk._expand_conv, blk._bn0), nn.Identity()
        blk._depthwise_conv, blk._bn1 = _fold_bn(blk._depthwise_conv, blk._bn1), nn.Identity()
        blk._project_conv, blk._bn2 = _fold_bn(blk._project_conv, blk._bn2), nn.Identity()
    return bb


def fused(model: SaliencyNet) -> SaliencyNet:
    """An inference copy with every BatchNorm and the feature normalisation folded into convolutions.

    Same outputs (to float rounding) as ``model.eval()``, fewer nodes for ONNX Runtime.
    """
    m = copy.deepcopy(model).eval()
    fold_backbone(m.backbone)
    ro = m.readout
    offset = 0
    with torch.no_grad():
        for k, conv in enumerate(ro.project):
            c = conv.in_channels
            mean, std = ro.mean[offset:offset + c], ro.std[offset:offset + c]
            offset += c
            w = conv.weight / std.view(1, -1, 1, 1)
            shift = -(w[:, :, 0, 0] * mean).sum(1)
            new = nn.Conv2d(c, conv.out_channels, 1, bias=True)
            new.weight.copy_(w)
            new.bias.copy_(shift + (conv.bias if conv.bias is not None else 0.0))
            ro.project[k] = new
        ro.mean.zero_()
        ro.std.fill_(1.0)
    return m


def to_onnx(network: torch.nn.Module, card: dict[str, Any]) -> onnx.ModelProto:
    """Trace ``network`` with torch.export (dynamo) into an ONNX graph with dynamic N, H, W."""
    multiple = card["input"]["pad_multiple"]
    batch = torch.export.Dim("batch", min=1)
    rows = torch.export.Dim("h", min=1)
    cols = torch.export.Dim("w", min=1)
    example = torch.rand(1, 3, 9 * multiple, 12 * multiple)
    # The exporter logs that torchvision's ops are not registered and warns about its own deprecated internals;
    # neither concerns these networks, and `foveal finetune` promises readable output.
    quiet = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            program = torch.onnx.export(
                network,
                (example,),
                input_names=[card["input"]["name"]],
                output_names=[card["output"]["name"]],
                dynamic_shapes=({0: batch, 2: multiple * rows, 3: multiple * cols},),
                opset_version=OPSET,
                dynamo=True,
                optimize=True,
                external_data=False,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)
    return _clean(program.model_proto, card)


def _clean(model: onnx.ModelProto, card: dict[str, Any]) -> onnx.ModelProto:
    """Drop exporter debris (per-node stack traces naming local paths, intermediate shapes) and name dims."""
    for node in model.graph.node:
        node.doc_string = ""
        del node.metadata_props[:]
    del model.graph.value_info[:]
    # torch.export's graph signature and range constraints: the latter is a set printed in hash order, so the same
    # network exported twice gave two graphs (two sha256s) that compute the same thing.
    del model.graph.metadata_props[:]
    # The output is the input divided by the stride: "32*h" rows in → "2*h" cells out for stride 16.
    cells_per_multiple = card["input"]["pad_multiple"] // card["output"]["stride"]
    dims = model.graph.output[0].type.tensor_type.shape.dim
    for dim, param in zip(dims, ("batch", None, f"{cells_per_multiple}*h", f"{cells_per_multiple}*w")):
        if param is not None:
            dim.dim_param = param
    model.doc_string = card["description"]
    onnx.checker.check_model(model, full_check=True)
    return model


def verify(network: torch.nn.Module, model_bytes: bytes, card: dict[str, Any]) -> float:
    """Largest |onnxruntime - torch| over shapes that exercise the dynamic axes; raises past ``TOLERANCE``."""
    multiple = card["input"]["pad_multiple"]
    stride = card["output"]["stride"]
    session = onnxruntime.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for batch, rows, cols in ((1, 9, 12), (2, 3, 12), (1, 12, 3), (1, 1, 1)):
        image = rng.random((batch, 3, rows * multiple, cols * multiple), dtype=np.float32)
        (got,) = session.run(None, {card["input"]["name"]: image})
        with torch.no_grad():
            want = network(torch.from_numpy(image)).numpy()
        expected_shape = (batch, 1, rows * multiple // stride, cols * multiple // stride)
        if got.shape != expected_shape or want.shape != expected_shape:
            raise RuntimeError(f"output shape {got.shape} (torch {want.shape}) for input {image.shape}, "
                               f"expected {expected_shape}")
        worst = max(worst, float(np.abs(got - want).max()))
    if worst > TOLERANCE:
        raise RuntimeError(f"onnxruntime and torch differ by {worst:.3g} > {TOLERANCE}")
    return worst
