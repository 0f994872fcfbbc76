"""SaliencyMap: a fixation probability surface over an image, with O(1) box integrals."""
from __future__ import annotations

import math
import os
from functools import cached_property
from typing import Any, Sequence

import numpy as np

from . import cpu
from .errors import ImageError, InputError
from .fileio import open_input, save_png, write_npy
from .imageio import DEFAULT_MAX_PIXELS, checked_max_pixels, max_file_bytes, open_pillow

_SCALE_KEY = "foveal:scale"


def boxes_to_xyxy(boxes: Any, shape: tuple[int, int]) -> np.ndarray:
    """``[x, y, w, h]`` pixel boxes (one or (N, 4)) → int64 half-open ``x0, y0, x1, y1``.

    Coordinates are rounded to whole pixels; NaN, infinite and non-positive sizes are refused, as are boxes that
    lie entirely outside the ``(height, width)`` image. Partly outside boxes are clipped by the kernel.
    """
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise InputError(f"boxes: expected [x, y, w, h] or an (N, 4) array, got shape {np.shape(boxes)}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(f"boxes[{i}] = {arr[i].tolist()}: coordinates must be finite numbers")
    x0, y0 = np.rint(arr[:, 0]), np.rint(arr[:, 1])
    x1, y1 = np.rint(arr[:, 0] + arr[:, 2]), np.rint(arr[:, 1] + arr[:, 3])
    empty = (x1 <= x0) | (y1 <= y0)
    if empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise InputError(f"boxes[{i}] = {arr[i].tolist()}: width and height must be at least one pixel")
    height, width = shape
    outside = (x1 <= 0) | (y1 <= 0) | (x0 >= width) | (y0 >= height)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(f"boxes[{i}] = {arr[i].tolist()} lies entirely outside the {width}x{height} image")
    return np.stack([x0, y0, x1, y1], axis=1).astype(np.int64)


class SaliencyMap:
    """Probability that a fixation lands on each pixel: ``prob`` is (H, W) float32 and sums to 1.

    Box queries go through a float64 summed-area table built on first use, so each box costs four reads.
    """

    def __init__(self, prob: np.ndarray, provenance: dict[str, Any] | None = None) -> None:
        prob = np.asarray(prob)
        if prob.ndim != 2 or prob.size == 0:
            raise InputError(f"prob: expected a non-empty (H, W) array, got shape {prob.shape}")
        if not np.issubdtype(prob.dtype, np.floating):
            raise InputError(f"prob: expected a float array, got {prob.dtype}")
        self.prob = np.ascontiguousarray(prob, dtype=np.float32)
        self.provenance: dict[str, Any] = dict(provenance or {})

    def __repr__(self) -> str:
        model = self.provenance.get("model", "?")
        return f"SaliencyMap(shape={self.shape}, model={model!r}, backend={self.provenance.get('backend', '?')!r})"

    @property
    def shape(self) -> tuple[int, int]:
        return self.prob.shape  # type: ignore[return-value]

    @cached_property
    def sat(self) -> np.ndarray:
        """(H+1, W+1) float64 summed-area table with a zero top row and left column."""
        return cpu.summed_area_table(self.prob)

    @property
    def total(self) -> float:
        """Total mass (1 up to rounding for a model's output)."""
        return float(self.sat[-1, -1])

    def box_sum(self, boxes: Any) -> np.ndarray:
        """Mass inside each ``[x, y, w, h]`` box, clipped to the image: (N,) float64."""
        return cpu.box_sums(self.sat, boxes_to_xyxy(boxes, self.shape))

    def box_stats(self, boxes: Any) -> dict[str, np.ndarray]:
        """Per box: ``sum``, clipped ``area`` (pixels), ``density`` (mass per pixel), ``share`` and ``lift``.

        share = sum / total; lift = share / (area / image area), so 1.0 means "as much as an average region".
        """
        xyxy = boxes_to_xyxy(boxes, self.shape)
        sums = cpu.box_sums(self.sat, xyxy)
        height, width = self.shape
        area = ((np.minimum(xyxy[:, 2], width) - np.maximum(xyxy[:, 0], 0))
                * (np.minimum(xyxy[:, 3], height) - np.maximum(xyxy[:, 1], 0))).astype(np.float64)
        share = sums / self.total
        return {"sum": sums, "area": area, "density": sums / area, "share": share,
                "lift": share / (area / (height * width))}

    def share(self, box: Sequence[float]) -> float:
        """Share of attention inside one ``[x, y, w, h]`` box (0..1)."""
        return float(self.box_stats(box)["share"][0])

    def lift(self, box: Sequence[float]) -> float:
        """Share of one box divided by its area fraction (1.0 = average)."""
        return float(self.box_stats(box)["lift"][0])

    def to_png(self, path: str | os.PathLike, bits: int = 8) -> float:
        """Write a greyscale PNG scaled to the map's maximum; returns (and stores in the PNG) the scale factor
        that turns pixel values back into probabilities: ``prob ≈ value * scale``."""
        quantised, scale = cpu.quantize(self.prob, bits)
        meta = {_SCALE_KEY: repr(float(scale))}
        meta.update({f"foveal:{k}": str(v) for k, v in self.provenance.items()})
        save_png(path, quantised, **meta)
        return float(scale)

    @classmethod
    def from_png(cls, path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> "SaliencyMap":
        """Read a map written by :meth:`to_png` back into probabilities.

        Values are ``pixel * scale``, each within ``scale / 2`` of the original, so the total is 1 only up to that
        quantisation error; shares divide by the actual total. Maps over ``max_pixels`` are refused from their
        header, like images.
        """
        name, max_pixels = os.fspath(path), checked_max_pixels(max_pixels)
        with open_input(name, max_file_bytes(max_pixels), "saliency PNG") as fh:
            try:
                image = open_pillow(fh, name, max_pixels)
            except ImageError as exc:
                raise InputError(f"not a foveal saliency PNG: {exc}") from None
            try:
                scale = float(image.text[_SCALE_KEY])  # type: ignore[attr-defined]
                values = np.asarray(image, dtype=np.float64)
            except (OSError, KeyError, ValueError, AttributeError, SyntaxError, EOFError) as exc:
                raise InputError(f"{name}: not a foveal saliency PNG ({type(exc).__name__}: {exc})") from None
        if values.ndim != 2 or not math.isfinite(scale) or scale < 0:
            raise InputError(f"{name}: not a foveal saliency PNG (a {values.shape} image with scale {scale})")
        return cls((values * scale).astype(np.float32), {"source": name})

    def to_npy(self, path: str | os.PathLike) -> None:
        """Save ``prob`` as a float32 ``.npy``."""
        write_npy(path, self.prob)

    def overlay(self, image: np.ndarray, path: str | os.PathLike | None = None, alpha: float = 0.6,
                cmap: str = "turbo") -> np.ndarray:
        """Colourise the map over ``image`` (H, W, 3) uint8; save it as PNG when ``path`` is given."""
        image = np.asarray(image)
        if image.shape[:2] != self.shape:
            raise InputError(f"overlay: image is {image.shape[:2]}, map is {self.shape}; they must match")
        out = cpu.overlay(image, self.prob, alpha=alpha, cmap=cmap)
        if path is not None:
            save_png(path, out)
        return out
