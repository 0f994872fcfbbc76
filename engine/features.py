"""Training-time preprocessing and a cache of frozen backbone features.

Preprocessing is the runtime's (``foveal.cpu.preprocess``), so the network trains on exactly what it will see.  The frozen part of the
backbone runs once per image and per horizontal flip through ONNX Runtime (≈10× faster than eager PyTorch on
this CPU) and its outputs are kept as float16, so training epochs only run the trainable part.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from engine.backbone import pretrained
from foveal.network.onnx_export import fold_backbone
from foveal.datasets import Dataset
from foveal.network.training import preprocess


class _Frozen(torch.nn.Module):
    def __init__(self, variant: str, taps: tuple[int, ...]) -> None:
        super().__init__()
        self.net, self.taps = fold_backbone(pretrained(variant)), taps

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x, self.taps)


def _session(variant: str, taps: tuple[int, ...], threads: int):
    import onnxruntime as ort
    model = _Frozen(variant, taps).eval()
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "frozen.onnx")
        torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), path, input_names=["image"],
                          output_names=[f"b{t}" for t in taps], opset_version=17, dynamo=False,
                          dynamic_axes={"image": {2: "h", 3: "w"}})
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def cache_features(ds: Dataset, variant: str, taps: tuple[int, ...], folder: Path, working_size: int = 384,
                   threads: int = 2, log=print) -> dict:
    """Backbone outputs of blocks ``taps`` for every image of ``ds`` and its mirror image, cached in ``folder`` as
    ``<ds.name>-<variant>-<working_size>.pt``.

    Returns ``{"ids", "resized", "offset", "feats": [[{tap: float16 tensor}, flipped], ...]}``; reuses the file if
    it holds the same images, variant and working size, and at least these taps.
    """
    path = folder / f"{ds.name}-{variant}-{working_size}.pt"
    key = {"ids": ds.ids, "variant": variant, "working_size": working_size, "preprocess": "foveal.cpu",
           "padding": "centred"}
    if path.is_file():
        cached = torch.load(path, weights_only=False)
        if {k: cached["key"].get(k) for k in key} == key and set(taps) <= set(cached["key"]["taps"]):
            return cached
    key["taps"] = list(taps)
    sess, t0 = _session(variant, taps, threads), time.time()
    feats, resized, offset = [], [], []
    for i in range(len(ds)):
        img = ds.image(i)
        pair = []
        for flip in (False, True):
            x, p = preprocess(img[:, ::-1] if flip else img, working_size)
            outs = sess.run(None, {"image": x[None]})
            pair.append({t: torch.from_numpy(o[0]).half() for t, o in zip(taps, outs)})
        feats.append(pair)
        resized.append(p.resized_hw)
        offset.append(p.offset_hw)
        if (i + 1) % 100 == 0:
            log(f"features {ds.name}: {i + 1}/{len(ds)} images, {time.time() - t0:.0f} s")
    out = {"key": key, "ids": ds.ids, "resized": resized, "offset": offset, "feats": feats}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path)
    return out
