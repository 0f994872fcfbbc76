"""SaliencyMap: a fixation probability surface over an image, with O(1) box integrals."""
from __future__ import annotations

import math
import os
from functools import cached_property
from collections.abc import Mapping
from typing import Any

import numpy as np

from . import cpu
from .boxes import resolve_boxes
from .errors import ImageError, InputError, TooManyPixelsError
from .fileio import checked_path, open_input, save_png, write_npy
from .imageio import DEFAULT_MAX_PIXELS, checked_max_pixels, max_file_bytes, open_pillow

_SCALE_KEY = "foveal:scale"
#: Grey range the image is compressed to under an overlay: no black or white left for the heat to vanish into.
OVERLAY_BASE = (80.0, 170.0)
#: Bottom of the colormap left out, so the faintest heat is a visible purple rather than black.
OVERLAY_CMAP_START = 0.2
OVERLAY_ALPHA = 0.9
#: Pixels the overlay blends at a time (bounds its float32 temporaries to a few MB).
OVERLAY_BLOCK_PIXELS = 1 << 18


def overlay_ramp(t: np.ndarray) -> np.ndarray:
    """Where ``t = prob / max`` in [0, 1] lands on the overlay's colormap (the legend uses the same ramp)."""
    return (OVERLAY_CMAP_START + (1.0 - OVERLAY_CMAP_START) * np.asarray(t, np.float32)).astype(np.float32)


def clipped_sums(sums: np.ndarray, total: float) -> np.ndarray:
    """Box sums read from a summed-area table, clipped into [0, total]: the four reads of a box on zero attention can
    cancel to -6e-17 (or pass the total by as little), and attention is never negative nor more than all of it."""
    return np.clip(sums, 0.0, total)


def box_stats_from_sums(sums: np.ndarray, xyxy: np.ndarray, total: float, shape: tuple[int, int]
                        ) -> dict[str, np.ndarray]:
    """:meth:`SaliencyMap.box_stats` from the table's raw sums of the resolved boxes ``xyxy`` of a map of ``shape``
    (the host and the device maps alike)."""
    sums = clipped_sums(sums, total)
    height, width = shape
    area = ((xyxy[:, 2] - xyxy[:, 0]) * (xyxy[:, 3] - xyxy[:, 1])).astype(np.float64)
    share = sums / total
    # density from the share, as lift: a map summing to 1 only up to rounding (an 8-bit PNG's, within 9 %) or not
    # at all (a caller's raw counts) gave densities that far off, and scores carry them
    return {"sum": sums, "area": area, "density": share / area, "share": share,
            "lift": share / (area / (height * width))}


def _read_only(array: np.ndarray, owned: bool = False) -> np.ndarray:
    """A view of ``array`` that cannot be written: a map's values and its table must stay in step (the caller's
    own array, if it gave one, stays writeable). An array the map ``owned`` is locked too: through a view of a
    writeable one, ``flags.writeable = True`` made the view writeable again."""
    if owned:
        array.flags.writeable = False
    view = array.view()
    view.flags.writeable = False
    return view


def _check_float32_range(wide: np.ndarray, kept: np.ndarray) -> None:
    """InputError when casting ``wide`` to float32 (``kept``) lost its values: finite ones turned infinite, or every
    non-zero one flushed to zero. A map's scale does not matter to its shares, so the fix is to normalise it."""
    finite = wide[np.isfinite(wide)]
    if finite.size == 0:
        return  # NaN or infinite throughout: refused as no distribution at the first box query
    largest = float(np.abs(finite).max())
    if np.isinf(kept).sum() > wide.size - finite.size:
        where = "beyond"
    elif largest > 0 and not np.any(kept):
        where = "below"
    else:
        return
    raise InputError(f"prob: values up to {largest:g} are {where} float32's range; divide by their total first "
                     "(prob / prob.sum())")


def is_map_png(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PNG :meth:`SaliencyMap.to_png` wrote (its scale chunk sits before the pixels, so only
    the header is read); False for anything else, an unreadable file included."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.format == "PNG" and _SCALE_KEY in image.info
    except Exception:  # noqa: BLE001 - whatever it is, it is not a map of ours
        return False


class SaliencyMap:
    """Probability that a fixation lands on each pixel: ``prob`` is (H, W) float32 and sums to 1.

    Box queries go through a float64 summed-area table built on first use, so each box costs four reads. A caller
    that already has the table (the Engine's CPU path builds it in the same pass as the map,
    :func:`foveal.cpu.postprocess_sat`) passes it as ``sat``: it must be ``summed_area_table(prob)``, (H+1, W+1)
    float64; only its shape, dtype and total are checked (negative values in ``prob`` are then not looked for: the
    Engine's maps have none by construction). ``prob`` and ``sat`` are read-only views, so the two stay
    in step (a float32 ``prob`` given here is kept without a copy: leave it unchanged); a map pickles (or copies)
    as its ``prob`` and provenance, the table rebuilt on first use.
    """

    def __init__(self, prob: np.ndarray, provenance: dict[str, Any] | None = None, *,
                 sat: np.ndarray | None = None) -> None:
        if isinstance(prob, np.ma.MaskedArray) and np.ma.getmaskarray(prob).any():  # asarray would use what is hidden
            raise InputError("prob: the masked array has masked entries; fill them first (prob.filled(0))")
        prob = np.asarray(prob)
        if prob.ndim != 2 or prob.size == 0:
            raise InputError(f"prob: expected a non-empty (H, W) array, got shape {prob.shape}")
        if not np.issubdtype(prob.dtype, np.floating):
            raise InputError(f"prob: expected a float array, got {prob.dtype}")
        with np.errstate(over="ignore"):  # a value past float32's range is refused below, not warned about
            kept = np.ascontiguousarray(prob, dtype=np.float32)
        if prob.dtype.itemsize > 4:
            _check_float32_range(prob, kept)
        self.prob = _read_only(kept, owned=kept is not prob and not np.may_share_memory(kept, prob))
        if provenance is not None and not isinstance(provenance, Mapping):
            raise InputError(f"provenance: expected a dict of where the map came from, got {type(provenance).__name__}")
        self.provenance: dict[str, Any] = dict(provenance or {})
        if sat is not None:
            self.__dict__["sat"] = self._checked_sat(sat)

    def _checked_sat(self, sat: np.ndarray) -> np.ndarray:
        """A precomputed table for this map's ``prob``, seeding the cached :attr:`sat`."""
        expected = (self.shape[0] + 1, self.shape[1] + 1)
        if not isinstance(sat, np.ndarray) or sat.dtype != np.float64 or sat.shape != expected:
            raise InputError(f"sat: expected a float64 {expected} summed-area table of prob, got "
                             f"{getattr(sat, 'dtype', type(sat).__name__)} {getattr(sat, 'shape', '')}")
        total = float(sat[-1, -1])
        if not (np.isfinite(total) and total > 0):
            raise InputError(f"sat: this map is not a distribution (total {total:g}); box queries need a positive "
                             "finite total")
        return _read_only(np.ascontiguousarray(sat))

    def __reduce__(self) -> tuple[Any, ...]:
        return SaliencyMap, (self.prob, self.provenance)

    def __repr__(self) -> str:
        model = self.provenance.get("model", "?")
        return f"SaliencyMap(shape={self.shape}, model={model!r}, backend={self.provenance.get('backend', '?')!r})"

    @property
    def shape(self) -> tuple[int, int]:
        return self.prob.shape  # type: ignore[return-value]

    @cached_property
    def sat(self) -> np.ndarray:
        """(H+1, W+1) float64 summed-area table with a zero top row and left column.

        Built on the first box query, which is where a map that is not a distribution (negative, NaN or no mass)
        is refused: its shares would be meaningless."""
        table = cpu.summed_area_table(self.prob)
        total = float(table[-1, -1])
        if not (np.isfinite(total) and total > 0) or float(self.prob.min()) < 0:
            raise InputError(f"this map is not a distribution (total {total:g}, min {float(self.prob.min()):g}): "
                             "box queries need finite, non-negative values with a positive total")
        return _read_only(table, owned=True)

    @property
    def total(self) -> float:
        """Total mass (1 up to rounding for a model's output)."""
        return float(self.sat[-1, -1])

    def box_sum(self, boxes: Any, *, box_format: str = "xywh", units: str = "px") -> np.ndarray:
        """Mass inside each box: (N,) float64.  Boxes follow :mod:`foveal.boxes` (refused, never clipped,
        when they run off the image)."""
        xyxy = resolve_boxes(boxes, self.shape, box_format=box_format, units=units)
        return clipped_sums(self._raw_sums(xyxy), self.total)

    def _raw_sums(self, xyxy: np.ndarray) -> np.ndarray:
        return cpu.box_sums(self.sat, xyxy) if len(xyxy) else np.zeros(0, np.float64)

    def box_stats(self, boxes: Any, *, box_format: str = "xywh", units: str = "px") -> dict[str, np.ndarray]:
        """Per box: ``sum``, ``area`` (pixels), ``density`` (share per pixel), ``share`` and ``lift``.

        ``boxes`` is one box or an (N, 4) array (N may be 0), ``[x, y, w, h]`` unless ``box_format="xyxy"``, in
        pixels unless ``units="relative"``; see :mod:`foveal.boxes` for the rounding and validation rule.
        share = sum / total; density = share / area; lift = share / (area / image area), so 1.0 means "as much
        as an average region". The total is the map's own, so they hold for a map that sums to 1 only roughly.
        """
        xyxy = resolve_boxes(boxes, self.shape, box_format=box_format, units=units)
        return box_stats_from_sums(self._raw_sums(xyxy), xyxy, self.total, self.shape)

    def _one(self, box: Any, what: str, box_format: str, units: str) -> dict[str, np.ndarray]:
        stats = self.box_stats(box, box_format=box_format, units=units)
        if len(stats["sum"]) != 1:
            raise InputError(f"{what}: takes exactly one box [x, y, w, h], got {len(stats['sum'])}; for many boxes "
                             f"use box_stats(boxes)[{what!r}]")
        return stats

    def share(self, box: Any, *, box_format: str = "xywh", units: str = "px") -> float:
        """Share of attention inside one box (0..1): four numbers (a list, tuple or array), as in :meth:`box_stats`."""
        return float(self._one(box, "share", box_format, units)["share"][0])

    def lift(self, box: Any, *, box_format: str = "xywh", units: str = "px") -> float:
        """Share of one box divided by its area fraction (1.0 = average)."""
        return float(self._one(box, "lift", box_format, units)["lift"][0])

    def to_png(self, path: str | os.PathLike, bits: int = 8) -> float:
        """Write a greyscale PNG scaled to the map's maximum; returns (and stores in the PNG) the scale factor
        that turns pixel values back into probabilities: ``prob ≈ value * scale``."""
        meta = {f"foveal:{k}": str(v) for k, v in self.provenance.items()}
        if _SCALE_KEY in meta:  # it would replace the scale, and from_png would read wrong probabilities
            raise InputError(f"provenance key {_SCALE_KEY.partition(':')[2]!r} is where to_png stores the map's "
                             "scale; rename it before writing the PNG")
        quantised, scale = cpu.quantize(self.prob, bits)
        save_png(path, quantised, **meta, **{_SCALE_KEY: repr(float(scale))})
        return float(scale)

    @classmethod
    def from_png(cls, path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> "SaliencyMap":
        """Read a map written by :meth:`to_png` back into probabilities.

        Values are ``pixel * scale`` rounded to float32, each within ``scale / 2`` of the original (within ``scale``
        where the original was below ``scale / 2``: those are stored as 1, not 0; :func:`foveal.cpu.quantize`), plus
        that float32 rounding (half a unit in the last place of the value, at most 2**-24 of it, which a 16-bit map's
        largest values make visible: 65535 * 2**-24 = 0.0039 ``scale``, so 0.5039 ``scale`` at worst), so the total
        is 1 only up to that quantisation error; shares divide by the actual total. Maps over ``max_pixels`` are
        refused from their header, like images.

        The provenance is what :meth:`to_png` stored (its values as text) plus ``source``, the path read: norms
        checked against a map read back refuse another model's map as they refuse it before it was written.
        """
        name, max_pixels = checked_path(path, "saliency PNG"), checked_max_pixels(max_pixels)
        with open_input(name, max_file_bytes(max_pixels), "saliency PNG") as fh:
            try:
                image = open_pillow(fh, name, max_pixels)
            except TooManyPixelsError:  # a map, only too large: refused as such, like an image
                raise
            except ImageError as exc:
                raise InputError(f"not a foveal saliency PNG: {exc}") from None
            if image.mode not in ("L", "I;16", "I"):  # to_png writes grey levels; a palette's are only indices
                raise InputError(f"{name}: not a foveal saliency PNG (a {image.mode} image; maps are 8- or 16-bit "
                                 "grey)")
            try:
                text = image.text  # type: ignore[attr-defined]
                scale = float(text[_SCALE_KEY])
                values = np.asarray(image, dtype=np.float64)
            except KeyError:  # a PNG optimiser or an image editor saving it again drops text chunks
                raise InputError(f"{name}: no {_SCALE_KEY} text chunk, so its values cannot be turned back into "
                                 "probabilities (a tool that strips PNG metadata drops it); read the PNG foveal "
                                 "wrote, or its --npy") from None
            except (OSError, ValueError, AttributeError, SyntaxError, EOFError) as exc:
                raise InputError(f"{name}: not a foveal saliency PNG ({type(exc).__name__}: {exc})") from None
        if values.ndim != 2 or not math.isfinite(scale) or scale < 0:
            raise InputError(f"{name}: not a foveal saliency PNG (a {values.shape} image with scale {scale})")
        provenance = {key.partition(":")[2]: value for key, value in text.items()
                      if key.startswith("foveal:") and key != _SCALE_KEY}
        return cls((values * scale).astype(np.float32), {**provenance, "source": name})

    def to_npy(self, path: str | os.PathLike) -> None:
        """Save ``prob`` as a float32 ``.npy``."""
        write_npy(path, self.prob)

    def overlay(self, image: np.ndarray, path: str | os.PathLike | None = None, alpha: float = OVERLAY_ALPHA,
                cmap: str = "inferno") -> np.ndarray:
        """Attention drawn over ``image`` (H, W, 3) uint8; saved as PNG when ``path`` is given.

        The image is shown muted (grey, its range compressed to :data:`OVERLAY_BASE`) so that heat stays visible on
        dark and on saturated (e.g. red) areas; each pixel takes the colour of ``cmap`` at ``t = prob / max(prob)``
        (``"inferno"``: perceptually uniform and colour-blind safe, purple → orange → yellow; its darkest fifth is
        skipped, :func:`overlay_ramp`) with blend weight ``alpha * sqrt(t)``, so faint attention still shows and
        unattended pixels show the image.
        """
        if isinstance(image, (str, bytes, os.PathLike)):  # as an array it is 0-d: "image is ()" said nothing
            raise InputError(f"overlay: image must be the (H, W, 3) uint8 pixels, got a {type(image).__name__}; "
                             "read the file first: overlay(foveal.load_image(path))")
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] < 3:  # a grey image of the map's size is no size mismatch
            raise InputError(f"overlay: image must be (H, W, 3) RGB, got shape {image.shape}; "
                             "foveal.load_image(image) gives RGB for a grey image too")
        if image.shape[:2] != self.shape:
            raise InputError(f"overlay: image is {image.shape}, map is {self.shape}; they must match: give the "
                             "(H, W, 3) image the map was predicted from")
        if image.dtype != np.uint8:
            raise InputError(f"overlay: image must be uint8 RGB (0-255), got dtype {image.dtype}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.number)) or not 0.0 <= alpha <= 1.0:
            raise InputError(f"overlay: alpha must be a number in [0, 1], got {alpha!r}")
        peak = float(self.prob.max())
        if not (math.isfinite(peak) and float(self.prob.min()) >= 0):
            raise InputError("overlay: the map holds NaN, infinite or negative values; it is not a probability map")

        def scaled(prob: np.ndarray) -> np.ndarray:
            return prob / peak if peak > 0 else np.zeros_like(prob)

        colourmap = cpu.colorize(overlay_ramp(scaled(self.prob)), cmap)  # whole: colorize scales by its input's max
        out = np.empty(self.shape + (3,), np.uint8)
        # The blend a block of rows at a time: its float32 temporaries for a whole 30 MP image come to about 2 GB.
        # One set of block buffers worked in place, a plane per channel, so every step runs along whole rows:
        # fresh temporaries and pixel-interleaved colours (an inner loop three long) took 1.6 times as long.
        step = max(1, OVERLAY_BLOCK_PIXELS // self.shape[1])
        low, high = OVERLAY_BASE
        blend = np.empty((3, min(step, self.shape[0]), self.shape[1]), np.float32)
        base, weight = np.empty_like(blend[0]), np.empty_like(blend[0])
        for y in range(0, self.shape[0], step):
            rows = min(step, self.shape[0] - y)
            b, s, w = blend[:, :rows], base[:rows], weight[:rows]
            np.matmul(image[y:y + rows, :, :3], np.array([0.299, 0.587, 0.114], np.float32), out=s)
            s *= np.float32((high - low) / 255.0)
            s += np.float32(low)
            if peak > 0:
                np.divide(self.prob[y:y + rows], np.float32(peak), out=w)
            else:
                w.fill(0)
            np.sqrt(w, out=w)
            w *= np.float32(alpha)
            for c in range(3):
                b[c] = colourmap[y:y + rows, :, c]
            b -= s
            b *= w
            b += s
            b += np.float32(0.5)
            np.clip(b, 0, 255, out=b)
            for c in range(3):
                out[y:y + rows, :, c] = b[c]
        if path is not None:
            save_png(path, out)
        return out
