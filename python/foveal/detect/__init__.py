"""Automatic element detection: faces, headline, body text, calls to action, logos and the product, as boxes.

>>> from foveal.detect import detect_elements
>>> detect_elements("creative.png")          # [Element(name='headline', kind='headline', box=(...)), ...]

Needs the optional dependencies of ``pip install 'foveal[detect]'`` (the graphs ship inside those wheels; nothing
is downloaded).  Each kind's rule is in docs/DETECTION.md.  Detection is deterministic, and boxes of one kind
never overlap (overlapping ones are merged), so attention is never counted twice inside a kind.
"""
from __future__ import annotations

import importlib.util
import numbers
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from ..errors import DetectorUnavailableError, ElementSpecError, InputError, checked_flag, is_list_like
from ..forking import keep_for_good
from ..imageio import DEFAULT_MAX_PIXELS, ImageLike, decode
from ..scoring.elements import Element, ElementSpec, check_elements, format_of
from .layout import (Block, Box, group_lines, intersects, is_imperative, near_corner, stands_apart, union,
                     MAX_CTA_CHARS)
from .models import INSTALL_HINT, graph_path, require_cv2
from .shapes import find_button, mark_beside, product_region
from .text import TextLine

#: Kinds the detector proposes, in the order it reports them.
DETECTED_KINDS: tuple[str, ...] = ("headline", "body_text", "cta", "logo", "face", "product")
SOURCE = "auto"


@dataclass(frozen=True)
class Detection:
    """A proposed element: its kind and box, how sure the rule or model is (0..1), and any text it read."""

    kind: str
    box: Box  # half-open (x0, y0, x1, y1) in image pixels
    confidence: float
    text: str | None = None


class Detector:
    """Loads the text and face graphs once; :meth:`detect` is then safe to call from many threads.

    ``det_short``, ``det_long``: text detection runs on the image resized so its shorter side is ``det_short``
    pixels, or its longer side ``det_long`` if that is smaller (smaller is faster, misses smaller type).
    ``min_face``: the smallest face reported, as a fraction of the image's shorter side.
    ``concurrent``: find faces on a helper thread (one ONNX Runtime thread) while the text is found and read
    (default: when :func:`foveal.cpu.thread_count` is two or more). MTCNN's small graphs gain little from a second
    thread, so the text network keeps every thread and the faces take the time it leaves idle.
    """

    def __init__(self, det_short: int = 640, det_long: int = 1280, min_face: float = 0.04,
                 faces: bool = True, concurrent: bool | None = None) -> None:
        from .. import cpu
        from .faces import FaceDetector
        from .text import TextReader

        for name, value in (("det_short", det_short), ("det_long", det_long)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 32 <= value <= 8192:
                raise InputError(f"Detector: {name} must be a whole number of pixels from 32 to 8192, got {value!r}")
        det_short, det_long = int(det_short), int(det_long)
        if isinstance(min_face, bool) or not isinstance(min_face, numbers.Real) or not 0 < min_face < 1:
            raise InputError(f"Detector: min_face is a fraction of the short side in (0, 1), got {min_face!r}")
        faces = checked_flag(faces, "Detector: faces")
        if concurrent is not None:
            concurrent = checked_flag(concurrent, "Detector: concurrent")
        self.cv2 = require_cv2()
        threads = cpu.thread_count()
        side = faces and (threads > 1 if concurrent is None else concurrent)
        self.text = TextReader(det_short, det_long, threads)
        self.faces = FaceDetector(1 if side else threads) if faces else None
        self._side = ThreadPoolExecutor(1, thread_name_prefix="foveal-faces") if side else None
        self._side_pid = os.getpid()
        self.min_face, self.threads = min_face, threads
        _DETECTORS.add(self)

    def _faces(self, rgb: np.ndarray) -> list[Detection]:
        assert self.faces is not None
        min_face = max(20.0, self.min_face * min(rgb.shape[:2]))
        faces = [(tuple(int(round(v)) for v in f[:4]), float(f[4]), None) for f in self.faces.detect(rgb, min_face)]
        return [Detection("face", box, round(c, 3)) for box, c, _ in _merge_boxes(faces)]

    def __repr__(self) -> str:
        kinds = tuple(k for k in DETECTED_KINDS if k != "face" or self.faces is not None)
        return (f"Detector(text='PP-OCRv4', faces={'MTCNN' if self.faces is not None else None!r}, kinds={kinds}, "
                f"det_short={self.text.det_short}, det_long={self.text.det_long}, min_face={self.min_face}, "
                f"threads={self.threads}, concurrent={self._side is not None})")

    def __reduce__(self) -> Any:
        raise InputError("a Detector holds native sessions and cannot be pickled or sent to another process; make one "
                         "in each worker, or call detect_elements there (it makes the process's own)")

    def _side_pool(self) -> ThreadPoolExecutor | None:
        """The faces' helper thread, a new one in a process forked from the one that made it: a fork copies the pool
        but not its thread, so what the child sent it would never run (``detect`` hung)."""
        if self._side is not None and self._side_pid != os.getpid():
            self._side, self._side_pid = ThreadPoolExecutor(1, thread_name_prefix="foveal-faces"), os.getpid()
        return self._side

    def detect(self, image: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Detection]:
        """Every element found in ``image`` (refused over ``max_pixels``), by kind (:data:`DETECTED_KINDS` order),
        then top to bottom, in the image's own pixels (a reduced :class:`~foveal.imageio.DecodedImage` is looked at
        as it is, its boxes scaled to its ``image_hw``)."""
        decoded = decode(image, max_pixels)
        found = self._detect(decoded.pixels)
        if decoded.image_hw == decoded.pixels.shape[:2]:
            return found
        return [replace(d, box=_scaled(d.box, decoded.pixels.shape[:2], decoded.image_hw)) for d in found]

    def _detect(self, rgb: np.ndarray) -> list[Detection]:
        side = self._side_pool()
        faces = side.submit(self._faces, rgb) if side is not None else None
        found: list[Detection] = []
        lines = self.text.lines(rgb)
        scale = self.text.scale(*rgb.shape[:2])  # buttons are looked for at the scale the text was found at
        buttons = [(line, find_button(self.cv2, rgb, line.box, scale)) for line in lines]
        # One read for every line on a button: is it short and imperative?
        candidates = [(line, b) for line, b in buttons if b is not None]
        texts = self.text.read(rgb, [line.box for line, _ in candidates])
        on_button: set[int] = set()
        ctas: list[tuple[Box, float, str]] = []
        for (line, (box, strength)), (text, _) in zip(candidates, texts):
            if not text or len(text) > MAX_CTA_CHARS:
                continue
            on_button.add(id(line))
            confidence = strength * (0.95 if is_imperative(text) else 0.7)
            ctas.append((box, confidence, text))
        for box, confidence, text in _merge_boxes(ctas):
            found.append(Detection("cta", box, round(confidence, 3), text))
        if faces is not None:
            found += faces.result()
        elif self.faces is not None:
            found += self._faces(rgb)
        product = product_region(self.cv2, rgb, [line.box for line in lines] + [d.box for d in found])
        if product is not None:
            found.append(Detection("product", product[0], round(0.5 + 0.5 * product[1], 3)))
        # Text printed on the product (packaging, signs in a photo) belongs to the product, not to the message.
        free = [line for line in lines if id(line) not in on_button
                and (product is None or _inside(line.box, product[0]) < 0.5)]
        found += self._text_blocks(rgb, group_lines(free), lines)
        order = {k: i for i, k in enumerate(DETECTED_KINDS)}
        return sorted(found, key=lambda d: (order[d.kind], d.box[1], d.box[0]))

    def _text_blocks(self, rgb: np.ndarray, blocks: list[Block], lines: list[TextLine]) -> list[Detection]:
        """Headline (the largest type), logos (small wordmarks by a corner, with their mark), body text; ``lines``
        are all the text lines found, buttons' included."""
        if not blocks:
            return []
        hw = rgb.shape[:2]
        # Wordmarks by a corner, standing apart from the other text, are logos (a short headline set in a corner
        # leads a stack of body copy or a button); the headline is the largest type among the rest.
        corner = [b for b in blocks if len(b.lines) == 1 and near_corner(b.box, hw) and stands_apart(b.box, lines)]
        rest = [b for b in blocks if b not in corner] or corner
        headline = max(rest, key=lambda b: (b.line_height, (b.box[2] - b.box[0]) * (b.box[3] - b.box[1])))
        out = [Detection("headline", headline.box, round(headline.score, 3))]
        logos = [(mark_beside(self.cv2, rgb, b.box), 0.6 * b.score, None) for b in corner if b is not headline]
        # A block crossing the headline is split into its lines above, below and beside it before the merge, or its
        # union with the body around it would cross the headline too, and a text-heavy page would lose the body copy
        # around its headline with it.
        body = [(part.box, part.score, None) for b in rest if b is not headline and b not in corner
                for part in _clear_of(b, headline.box)]
        out += [Detection("logo", box, round(c, 3)) for box, c, _ in _merge_boxes(logos)]
        body = [(box, c, t) for box, c, t in _merge_boxes(body, avoid=headline.box)
                if not intersects(box, headline.box)]
        out += [Detection("body_text", box, round(c, 3)) for box, c, _ in body]
        return out


def _clear_of(block: Block, box: Box) -> list[Block]:
    """``block`` if it does not cross ``box``; else its lines above, below, left and right of ``box``, each side
    grouped again.

    A line crossing an edge of ``box`` by less than half its own extent there is cut back to that edge (the least
    deep cut where it crosses several): detected lines are grown beyond their ink, so on a page of dense copy the
    lines set just above and below a headline overlap its box by a few pixels. A line further inside is dropped.
    """
    if not intersects(block.box, box):
        return [block]
    sides: list[list[TextLine]] = [[], [], [], []]
    for line in block.lines:
        x0, y0, x1, y1 = line.box
        # Per side (above, below, left, right): how deep the line reaches into ``box``, and its extent on that axis.
        depths = ((y1 - box[1], y1 - y0), (box[3] - y0, y1 - y0), (x1 - box[0], x1 - x0), (box[2] - x0, x1 - x0))
        side = min(range(4), key=lambda i: (max(0, depths[i][0]) / depths[i][1], i))
        depth, extent = depths[side]
        if depth > 0 and 2 * depth >= extent:
            continue
        if depth > 0:
            cut = (x0, y0, x1, box[1]) if side == 0 else (x0, box[3], x1, y1) if side == 1 else \
                (x0, y0, box[0], y1) if side == 2 else (box[2], y0, x1, y1)
            line = replace(line, box=cut)
        sides[side].append(line)
    return [part for lines in sides if lines for part in group_lines(lines) if not intersects(part.box, box)]


def _inside(box: Box, outer: Box) -> float:
    """The fraction of ``box`` that lies inside ``outer``."""
    ix = max(0, min(box[2], outer[2]) - max(box[0], outer[0]))
    iy = max(0, min(box[3], outer[3]) - max(box[1], outer[1]))
    return ix * iy / max(1, (box[2] - box[0]) * (box[3] - box[1]))


def _merge_boxes(items: list[tuple[Box, float, Any]], avoid: Box | None = None) -> list[tuple[Box, float, Any]]:
    """Overlapping boxes of one kind merged into their union (keeping the best confidence), until none overlap.
    Where the union would cross ``avoid`` (the headline), the less confident of the two is cut back to its largest
    part outside the other instead: the parts of a column split around the headline overlap a little, and their
    union crossed the headline again, so the whole column was dropped."""
    items = sorted(items, key=lambda t: (-t[1], t[0]))
    merged = True
    while merged:
        merged = False
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                if intersects(items[i][0], items[j][0]):
                    a, b = items[i], items[j]
                    joined = union([a[0], b[0]])
                    if avoid is None or not intersects(joined, avoid):
                        items[i] = (joined, max(a[1], b[1]), a[2] if a[1] >= b[1] else b[2])
                        del items[j]
                    else:  # each cut leaves the pair apart: every pass removes an overlap or a box
                        keep, cut = (a, b) if a[1] >= b[1] else (b, a)
                        rest = _outside(cut[0], keep[0])
                        items[i], items[j] = keep, cut
                        if rest is None:
                            del items[j]
                        else:
                            items[j] = (rest, cut[1], cut[2])
                    merged = True
                    break
            if merged:
                break
    return items


def _outside(box: Box, other: Box) -> Box | None:
    """The largest of ``box``'s parts left of, right of, above and below ``other``; None when it has none."""
    x0, y0, x1, y1 = box
    parts = [(x0, y0, min(x1, other[0]), y1), (max(x0, other[2]), y0, x1, y1),
             (x0, y0, x1, min(y1, other[1])), (x0, max(y0, other[3]), x1, y1)]
    parts = [p for p in parts if p[2] > p[0] and p[3] > p[1]]
    return max(parts, key=lambda p: ((p[2] - p[0]) * (p[3] - p[1]), p)) if parts else None


_default: Detector | None = None
_default_lock = threading.Lock()


def unavailable_reason() -> str | None:
    """Why automatic detection cannot run here (the detect extra missing or incomplete), or None; no network is
    loaded, so a service can say whether it offers detection without building a detector."""
    from . import faces, text

    try:
        require_cv2()
        for package in ("onnxruntime", "onnx"):  # onnx folds the text graphs (fold.py)
            if importlib.util.find_spec(package) is None:
                raise DetectorUnavailableError(f"{package} is not installed; {INSTALL_HINT}")
        for package, graph in (*text.GRAPHS, *faces.GRAPHS):
            graph_path(package, graph)
    except DetectorUnavailableError as exc:
        return str(exc)
    return None


#: Every live Detector, for the fork handler below.
_DETECTORS: weakref.WeakSet[Detector] = weakref.WeakSet()


def _detectors_after_fork() -> None:
    """A forked child keeps what it inherited unfreed (:mod:`foveal.forking`), and makes its own default detector."""
    global _default, _default_lock
    for detector in list(_DETECTORS):
        keep_for_good(detector)
    _default, _default_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_detectors_after_fork)


def default_detector() -> Detector:
    """The process-wide :class:`Detector`, built on first use (the CLI, the service and the page share it)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Detector()
        return _default


def detect(image: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Detection]:
    """:meth:`Detector.detect` with the default detector."""
    return default_detector().detect(image, max_pixels)


def kind_names(kinds: Sequence[str]) -> list[str]:
    """Element names for boxes of these kinds, in order: each kind's first is the kind itself, then ``cta_2``..."""
    counts: dict[str, int] = {}
    names = []
    for kind in kinds:
        counts[kind] = counts.get(kind, 0) + 1
        names.append(kind if counts[kind] == 1 else f"{kind}_{counts[kind]}")
    return names


def to_elements(detections: list[Detection]) -> list[Element]:
    """Detections as scoring elements named by kind (``cta``, ``cta_2``...)."""
    if not is_list_like(detections):
        raise InputError("to_elements: expected a list of Detection (detect()'s result)")
    detections = list(detections)
    if not all(isinstance(d, Detection) for d in detections):
        raise InputError("to_elements: expected a list of Detection (detect()'s result)")
    return [Element(name=name, kind=d.kind, box=(d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]))
            for name, d in zip(kind_names([d.kind for d in detections]), detections)]


def detect_elements(image: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> list[Element]:
    """The elements of ``image`` (refused over ``max_pixels``) found automatically, ready for
    :func:`foveal.scoring.scores.score_creative`."""
    return to_elements(detect(image, max_pixels))


def detected_spec(image: ImageLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> ElementSpec:
    """The elements of ``image`` found automatically, validated as an element file would be (``source`` "auto").

    Raises :class:`~foveal.errors.ElementSpecError` when nothing is found, and
    :class:`~foveal.errors.DetectorUnavailableError` without the ``foveal[detect]`` extra.
    """
    decoded = decode(image, max_pixels)  # once: detection takes it as it is, where an array would be hashed again
    elements = detect_elements(decoded, max_pixels)
    if not elements:
        raise ElementSpecError(f"{_name(image)}: automatic detection found no elements (no text, button, face or "
                               "product); write an element file for it")
    check_elements(elements, decoded.image_hw, SOURCE)
    return ElementSpec(elements=tuple(elements), format=None, source=SOURCE)


def _scaled(box: Box, hw: Sequence[int], image_hw: Sequence[int]) -> Box:
    """``box`` on an (h, w) rendering moved to the (H, W) image; one rounding for every edge, so boxes that did not
    overlap still do not."""
    (h, w), (big_h, big_w) = hw, image_hw
    x0, y0, x1, y1 = box
    return (round(x0 * big_w / w), round(y0 * big_h / h), round(x1 * big_w / w), round(y1 * big_h / h))


def _name(image: ImageLike) -> str:
    source = getattr(image, "source", None)
    return str(source if source is not None else image if isinstance(image, (str, os.PathLike)) else "image")


def element_file(detections: list[Detection], image_hw: tuple[int, int]) -> dict[str, Any]:
    """The standard element file (what ``foveal score --elements`` reads), each element marked ``source: auto``
    with its ``confidence`` (and ``text`` where it was read)."""
    if not (isinstance(detections, (list, tuple)) and all(isinstance(d, Detection) for d in detections)):
        raise InputError("detections: expected the list of Detection objects Detector.detect returns")
    fmt = format_of(image_hw)
    bad = next((d for d in detections if not (isinstance(d.confidence, numbers.Real)
                                              and 0 <= d.confidence <= 1)), None)
    if bad is not None:
        raise InputError(f"detections: {bad.kind} confidence must be a number from 0 to 1, got {bad.confidence!r}")
    proposed = to_elements(detections)
    if proposed:  # the boxes, kinds and names an element file must hold, on this image
        check_elements(proposed, image_hw, "detections")
    elements = []
    for element, d in zip(proposed, detections):
        item = {**element.to_dict(), "confidence": d.confidence, "source": SOURCE}
        if d.text:
            item["text"] = d.text
        elements.append(item)
    return {"format": fmt, "units": "px", "source": SOURCE, "elements": elements}


__all__ = ["Detection", "Detector", "DETECTED_KINDS", "INSTALL_HINT", "default_detector", "detect",
           "detect_elements", "detected_spec", "element_file", "to_elements"]
