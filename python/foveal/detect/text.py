"""Text lines and their words: PP-OCRv4 detection (a DB text-probability map) and CTC recognition.

Detection runs once on the whole image, resized so its shorter side is ``det_short`` pixels (type in a creative is
sized by its shorter side), unless that makes the longer side exceed ``det_long``; recognition runs only
on the lines that the layout rules need to read (candidate buttons), which keeps OCR's cost near one network pass.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fold import folded_graph
from .models import graph_path, require_cv2, session

_PACKAGE = "rapidocr_onnxruntime"
_DET_GRAPH = "models/ch_PP-OCRv4_det_infer.onnx"
_REC_GRAPH = "models/ch_PP-OCRv4_rec_infer.onnx"
#: (package, file) of the text detection and recognition graphs.
GRAPHS = ((_PACKAGE, _DET_GRAPH), (_PACKAGE, _REC_GRAPH))
_REC_HEIGHT = 48
# Crops per recognition run. A run pads every crop to its widest, so runs take crops in order of width, none more than
# twice as wide as the run's first: one long line among 150 buttons had padded them all to its 58:1 (6.6 GB, 26 s
# for a 1280x640 creative).
_READ_BATCH = 16
_PIXEL_THRESHOLD = 0.3  # DB's binarisation threshold on the text probability
_BOX_THRESHOLD = 0.5    # mean probability a region needs to count as text
_UNCLIP = 1.5           # DB maps shrunk text kernels; grow each box by area * ratio / perimeter
_INK_SHARE = 0.1        # the share of a line's pixels, farthest from its surround in colour, taken as its ink


@dataclass(frozen=True)
class TextLine:
    """One detected line of text: an axis-aligned half-open box ``(x0, y0, x1, y1)`` in image pixels."""

    box: tuple[int, int, int, int]
    score: float
    ink: tuple[int, int, int] | None = None  # the type's colour (RGB); None for a box too small to tell

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]


def ink_colour(rgb: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, int, int] | None:
    """The colour of the type in ``box``: the median of the pixels farthest in colour from the box's rim.

    A detected line's box is grown beyond its ink, so its rim is the surround; the farthest tenth of the pixels
    (squared RGB distance) are the cores of the strokes, which anti-aliasing leaves untouched even in small type.
    """
    x0, y0, x1, y1 = box
    if x1 - x0 < 3 or y1 - y0 < 3:
        return None
    step = max(1, (y1 - y0) // 24)  # strokes grow with the type: a sparser sample of large type sees them as well
    crop = rgb[y0:y1:step, x0:x1:step].astype(np.float32)
    rim = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
    distance = ((crop - np.median(rim, axis=0)) ** 2).sum(-1).ravel()
    k = int((1 - _INK_SHARE) * (distance.size - 1))
    # At least half as far from the surround as the farthest pixel: thin type may cover less than the tenth.
    ink = crop.reshape(-1, 3)[distance >= max(np.partition(distance, k)[k], 0.25 * distance.max())]
    return tuple(int(round(v)) for v in np.median(ink, axis=0))


class TextReader:
    """PP-OCRv4 text detection and recognition on ONNX Runtime."""

    def __init__(self, det_short: int = 640, det_long: int = 1280, threads: int | None = None) -> None:
        self.cv2 = require_cv2()
        self.det_short, self.det_long = det_short, det_long
        self._det = session(folded_graph(graph_path(_PACKAGE, _DET_GRAPH)), threads)
        self._rec = session(folded_graph(graph_path(_PACKAGE, _REC_GRAPH)), threads)
        chars = self._rec.get_modelmeta().custom_metadata_map["character"].splitlines()
        self._alphabet = ["", *chars, " "]  # CTC blank first, space last, as the graph was trained

    def input_size(self, h: int, w: int) -> tuple[int, int]:
        """The (height, width) text detection sees an ``h`` x ``w`` image at: multiples of 32, the network's stride."""
        scale = min(self.det_short / min(h, w), self.det_long / max(h, w))
        return max(32, int(round(h * scale / 32)) * 32), max(32, int(round(w * scale / 32)) * 32)

    def scale(self, h: int, w: int) -> float:
        """How much text detection resizes an ``h`` x ``w`` image (the smaller of its two axes' factors)."""
        rh, rw = self.input_size(h, w)
        return min(rh / h, rw / w)

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """The detection network's text probability (float32 in [0, 1]) at the size :meth:`input_size` gives."""
        cv2 = self.cv2
        h, w = rgb.shape[:2]
        rh, rw = self.input_size(h, w)
        small = cv2.resize(rgb, (rw, rh), interpolation=cv2.INTER_AREA if rw < w else cv2.INTER_LINEAR)
        # PaddleOCR's graphs were trained on BGR input normalised to [-1, 1]; written plane by plane into the
        # network's layout, without the temporaries of a whole-image expression.
        x = np.empty((1, 3, rh, rw), np.float32)
        for plane, channel in enumerate((2, 1, 0)):
            np.divide(small[:, :, channel], 127.5, out=x[0, plane], dtype=np.float32)
        x -= 1.0
        return self._det.run(None, {"x": x})[0][0, 0]

    def lines(self, rgb: np.ndarray) -> list[TextLine]:
        """Detected text lines, sorted top to bottom then left to right."""
        cv2 = self.cv2
        h, w = rgb.shape[:2]
        prob = self.probability(rgb)
        rh, rw = prob.shape
        binary = (prob > _PIXEL_THRESHOLD).astype(np.uint8)
        binary = cv2.dilate(binary, np.ones((2, 2), np.uint8))
        n, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=4)
        sx, sy = w / rw, h / rh
        found = []
        for i in range(1, n):
            x0, y0, bw, bh, area = (int(v) for v in stats[i])
            if min(bw, bh) < 3:
                continue
            score = float(prob[y0:y0 + bh, x0:x0 + bw][labels[y0:y0 + bh, x0:x0 + bw] == i].mean())
            if score < _BOX_THRESHOLD:
                continue
            grow = area * _UNCLIP / (2 * (bw + bh))
            box = (max(0, int(round((x0 - grow) * sx))), max(0, int(round((y0 - grow) * sy))),
                   min(w, int(round((x0 + bw + grow) * sx))), min(h, int(round((y0 + bh + grow) * sy))))
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                found.append(TextLine(box, score, ink_colour(rgb, box)))
        return sorted(found, key=lambda t: (t.box[1], t.box[0]))

    def read(self, rgb: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[tuple[str, float]]:
        """Recognise the text in each box: ``(text, mean character confidence)`` per box."""
        if not boxes:
            return []
        cv2 = self.cv2
        crops = []
        for x0, y0, x1, y1 in boxes:
            crop = rgb[y0:y1, x0:x1, ::-1]
            width = max(1, int(np.ceil(_REC_HEIGHT * crop.shape[1] / crop.shape[0])))
            crops.append(cv2.resize(crop, (width, _REC_HEIGHT), interpolation=cv2.INTER_LINEAR))
        runs: list[list[int]] = []
        for i in sorted(range(len(crops)), key=lambda i: (crops[i].shape[1], i)):
            if runs and len(runs[-1]) < _READ_BATCH and crops[i].shape[1] <= 2 * crops[runs[-1][0]].shape[1]:
                runs[-1].append(i)
            else:
                runs.append([i])
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        for run in runs:
            batch = np.zeros((len(run), 3, _REC_HEIGHT, crops[run[-1]].shape[1]), np.float32)
            for k, i in enumerate(run):
                batch[k, :, :, :crops[i].shape[1]] = (crops[i].astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)
            for i, p in zip(run, self._rec.run(None, {"x": batch})[0]):
                best = p.argmax(1)
                keep = (best != 0) & np.concatenate([[True], best[1:] != best[:-1]])
                conf = p.max(1)[keep]
                out[i] = ("".join(self._alphabet[k] for k in best[keep]).strip(),
                          float(conf.mean()) if conf.size else 0.0)
        return out
