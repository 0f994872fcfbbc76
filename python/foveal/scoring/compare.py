"""A/B comparison of two creatives' attention: where mass moved, per element and overall, and a verdict.

Definitions (copied into every ``compare.json`` as :data:`DEFINITIONS`):

- **Common grid**: B's pixel grid.  A's map is resampled onto it by area-preserving resampling — each map is
  read as a piecewise-constant density over the unit square (image stretched to fill it) and integrated over each
  target pixel — then both maps are renormalised to sum to 1 in float64.  Equal sizes need no resampling.
- **Difference map** ``D = P_B − P_A`` on that grid (positive: B draws more attention there).  It is drawn with a
  blue–white–red colormap symmetric about 0, scaled by ``max |D|``.
- ``moved_mass = ½ Σ |D|``: the fraction of attention that sits somewhere else in B (total-variation distance,
  0 = identical maps, 1 = disjoint).
- Per element matched by name: ``Δshare = share_B − share_A`` and ``Δlift = lift_B − lift_A`` (each creative
  scored against its own image).  Elements present in one creative only are listed, not compared.
- **Material change**: ``|Δ| ≥ 0.5`` percentage points of attention (:data:`MATERIAL_CHANGE`); smaller changes are
  "no material change".
- **Same format**: A and B are compared only when they are one format: equal format names, or two sizes
  ``WxH`` of one aspect ratio (within :data:`ASPECT_TOLERANCE`).  Shares of a 728x90 banner and a 300x250
  rectangle are not comparable (the layout sets them), so different formats are refused, or, when explicitly
  allowed, the verdict is qualified in the summary and the notes.
- **Verdict** from ``Δconversion`` (attention on the union of cta, headline and product boxes) and
  ``Δdistractors`` (attention on the union of all other element boxes, outside the conversion boxes):
  ``better`` when conversion rises and distractors do not rise, or conversion holds and distractors fall;
  ``worse`` in the mirror cases; ``mixed`` when both rise or both fall; ``no material change`` when neither moves.
"""
from __future__ import annotations

import html
import math
import numbers
from pathlib import Path
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from ..errors import FormatMismatchError, InputError, checked_flag, one_line
from ..models import COARSE_FOR_DECISIONS
from ..saliency_map import SaliencyMap
from .elements import CONVERSION_KINDS, Element, quoted, unknown_element
from .report import (DOCUMENT_CSP, GENERATOR_META, bdi, draw_boxes, label_font, legend_strip, png_uri, run_header,
                     shown_box, shown_pixels)
from .scores import DEFINITIONS as SCORE_DEFINITIONS
from .scores import MATERIAL_CHANGE, CreativeScores, material_direction

#: Two ``WxH`` sizes are one format when their aspect ratios differ by at most this fraction.
ASPECT_TOLERANCE = 0.02

DEFINITIONS: dict[str, str] = {
    "common_grid": "B's pixel grid; A's map is resampled onto it by area-preserving resampling (maps read as "
                   "piecewise-constant densities over the unit square, integrated over each target pixel), then "
                   "both are renormalised to sum to 1",
    "difference": "D = P_B - P_A on the common grid; red = more attention in B, blue = less; colour scaled by "
                  "max |D|",
    "moved_mass": "0.5 * sum |D|: fraction of attention that is somewhere else in B (0 = same map, 1 = disjoint)",
    "delta_share": "share_B - share_A of the element with the same name (each scored on its own image)",
    "delta_lift": "lift_B - lift_A of the element with the same name",
    "material_change": f"|delta| >= {MATERIAL_CHANGE * 100:g} percentage points; smaller is 'no material change'",
    "conversion": "attention on the union of " + ", ".join(sorted(CONVERSION_KINDS)) + " boxes",
    "distractors": "attention on the union of all other element boxes, outside the conversion boxes",
    "same_format": "equal format names, or WxH sizes whose aspect ratios differ by at most "
                   f"{ASPECT_TOLERANCE:.0%}; different formats are refused unless allowed, then the verdict is "
                   "qualified",
    "verdict": "better: conversion up and distractors not up, or conversion flat and distractors down; worse: the "
               "mirror; mixed: both up or both down; no material change: neither moves (by material_change)",
    "effect": "per element: helps = a conversion element gained or a distractor lost attention; hurts = the "
              "reverse; neutral = no material change",
}


@dataclass(frozen=True)
class ElementDelta:
    """One element present in both creatives: its A and B scores and their differences."""

    name: str
    kind: str
    share_a: float
    share_b: float
    lift_a: float
    lift_b: float
    delta_share: float
    delta_lift: float
    change: str
    effect: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Comparison:
    """Everything :func:`compare_scores` concludes about B against A."""

    elements: tuple[ElementDelta, ...]
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]
    conversion_a: float
    conversion_b: float
    distractors_a: float
    distractors_b: float
    verdict: str
    summary: str
    notes: tuple[str, ...]
    format_a: str = ""
    format_b: str = ""
    same_format: bool = True

    @property
    def delta_conversion(self) -> float:
        return self.conversion_b - self.conversion_a

    @property
    def delta_distractors(self) -> float:
        return self.distractors_b - self.distractors_a

    def element(self, name: str) -> ElementDelta:
        """The delta of the element called ``name`` (:class:`~foveal.errors.UnknownElementError`, a KeyError, if it
        is not in both creatives)."""
        for e in self.elements:
            if e.name == name:
                return e
        raise unknown_element("Comparison.element (elements in both creatives)", name,
                              [e.name for e in self.elements])

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "summary": self.summary,
            "conversion": {"a": self.conversion_a, "b": self.conversion_b, "delta": self.delta_conversion},
            "distractors": {"a": self.distractors_a, "b": self.distractors_b, "delta": self.delta_distractors},
            "elements": [e.to_dict() for e in self.elements],
            "only_in_a": list(self.only_in_a),
            "only_in_b": list(self.only_in_b),
            "notes": list(self.notes),
            "formats": {"a": self.format_a, "b": self.format_b, "same": self.same_format},
        }


def change_of(delta: float) -> str:
    """``"gained"``, ``"lost"`` or ``"no material change"`` for a share difference."""
    return {1: "gained", -1: "lost", 0: "no material change"}[material_direction(delta)]


def verdict_of(delta_conversion: float, delta_distractors: float) -> str:
    """The verdict for a change in conversion and distractor attention (see the module docstring)."""
    conv, dist = material_direction(delta_conversion), material_direction(delta_distractors)
    if conv == 0 and dist == 0:
        return "no material change"
    if conv == dist:
        return "mixed"
    # Here the two directions differ: conversion up, or distractors down with conversion not down, is better.
    return "better" if conv > 0 or (conv == 0 and dist < 0) else "worse"


def same_format(format_a: str, format_b: str) -> bool:
    """One format: equal names, or ``WxH`` sizes of one aspect ratio (within :data:`ASPECT_TOLERANCE`)."""
    if format_a == format_b:
        return True
    sizes = [_size(f) for f in (format_a, format_b)]
    if sizes[0] is None or sizes[1] is None:
        return False
    (wa, ha), (wb, hb) = sizes
    ratio = (wa * hb) / (wb * ha)
    # Either way round (A's ratio over B's was 2.04 % one way and 2.00 % the other), and exactly 2 % is within.
    return max(ratio, 1.0 / ratio) - 1.0 <= ASPECT_TOLERANCE + 1e-12


def _size(fmt: str) -> tuple[int, int] | None:
    w, sep, h = fmt.lower().partition("x")
    if not (sep and w.isascii() and h.isascii() and w.isdigit() and h.isdigit()):  # "²" is a digit to isdigit
        return None
    return (int(w), int(h)) if int(w) > 0 and int(h) > 0 else None


def _format_mismatch(mismatch: str, remedy: str, allowed: bool) -> str:
    """The note a format mismatch adds when ``allowed``, else the FormatMismatchError saying ``remedy``."""
    if not allowed:
        raise FormatMismatchError(f"{mismatch}; {remedy}, or set allow_format_mismatch to see a qualified comparison",
                                  mismatch=mismatch)
    return mismatch + "; the verdict is indicative only"


def compare_scores(a: CreativeScores, b: CreativeScores, *, allow_format_mismatch: bool = False) -> Comparison:
    """Compare creative B's scores with A's: per-element deltas (matched by name) and the verdict.

    Creatives of different formats (:func:`same_format`) are refused (InputError) unless
    ``allow_format_mismatch``, which qualifies the summary and adds a note.
    """
    for label, scores in (("a", a), ("b", b)):
        if not isinstance(scores, CreativeScores):
            raise InputError(f"compare_scores: {label} must be CreativeScores (what score_creative returns), got "
                             f"{type(scores).__name__}")
    allow_format_mismatch = checked_flag(allow_format_mismatch, "allow_format_mismatch")  # "no" is a true string
    deltas, notes = [], []
    formats, shown = [], []  # the formats compared, and as the summary names them
    for label, scores in (("A", a), ("B", b)):  # a declared WxH of another shape would make any two formats one
        own = f"{scores.image_hw[1]}x{scores.image_hw[0]}"
        if _size(scores.format) is None or same_format(scores.format, own):
            formats.append(scores.format)
            shown.append(scores.format)
            continue
        notes.append(_format_mismatch(f"{label}'s elements declare format {scores.format}, but {label} is {own}: "
                                      "its boxes were laid out for another shape",
                                      "use the element file made for this creative", allow_format_mismatch))
        formats.append(own)
        shown.append(f"{scores.format} declared on {own}")
    b_by_name = {e.name: e for e in b.elements}
    a_names = {e.name for e in a.elements}
    one_format = same_format(*formats)
    same = one_format and shown == formats  # a declaration its creative contradicts keeps the verdict indicative
    if not one_format:
        notes.append(_format_mismatch(f"A is format {formats[0]} and B is {formats[1]}: shares of different formats "
                                      "are not comparable (the layout sets them)", "compare variants of one format",
                                      allow_format_mismatch))
    for ea in a.elements:
        eb = b_by_name.get(ea.name)
        if eb is None:
            continue
        if ea.kind != eb.kind:
            notes.append(f"element {quoted(ea.name)} is a {ea.kind} in A and a {eb.kind} in B; each creative's own "
                         "kinds count for the verdict")
        d_share = eb.share - ea.share
        conversion = ea.kind in CONVERSION_KINDS
        change = change_of(d_share)
        effect = "neutral" if change == "no material change" else \
            "helps" if (change == "gained") == conversion else "hurts"
        deltas.append(ElementDelta(name=ea.name, kind=ea.kind, share_a=ea.share, share_b=eb.share,
                                   lift_a=ea.lift, lift_b=eb.lift, delta_share=d_share,
                                   delta_lift=eb.lift - ea.lift, change=change, effect=effect))
    d_conv = b.conversion_share - a.conversion_share
    d_dist = b.other_elements_share - a.other_elements_share
    verdict = verdict_of(d_conv, d_dist)
    summary = ("" if same else f"formats differ ({shown[0]} vs {shown[1]}), indicative only: ") + (
               f"{verdict}: conversion elements {_pct(a.conversion_share)} -> {_pct(b.conversion_share)} "
               f"({_pp(d_conv)}), distractors {_pct(a.other_elements_share)} -> {_pct(b.other_elements_share)} "
               f"({_pp(d_dist)})")
    return Comparison(
        format_a=a.format, format_b=b.format, same_format=same,
        elements=tuple(deltas),
        only_in_a=tuple(e.name for e in a.elements if e.name not in b_by_name),
        only_in_b=tuple(e.name for e in b.elements if e.name not in a_names),
        conversion_a=a.conversion_share, conversion_b=b.conversion_share,
        distractors_a=a.other_elements_share, distractors_b=b.other_elements_share,
        verdict=verdict, summary=summary, notes=tuple(notes))


def graph_notes(provenance: dict[str, Any]) -> list[str]:
    """A note, for a document's ``notes``, when the maps came from a graph too coarse for decisions at the
    material-change threshold (:data:`foveal.models.COARSE_FOR_DECISIONS`); else nothing."""
    precision = provenance.get("precision")
    if precision not in COARSE_FOR_DECISIONS:
        return []
    return [f"the maps came from the {precision} graph, whose rounding changes calls near the "
            f"{MATERIAL_CHANGE * 100:g} pp threshold: against the fp32 graph it changed 20 of 340 measured A/B "
            "verdicts and 113 of 1,835 element calls (foveal-lite0 on a CPU with VNNI, where its shares are closer to "
            "fp32 than on AVX2-only CPUs; each a change the fp32 graph measures under 1.5 pp); run with precision "
            "fp32 for a reference decision"]


def build_document(comparison: Comparison, scores_a: CreativeScores, scores_b: CreativeScores, diff: np.ndarray,
                   provenance: dict[str, Any], inputs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The machine-readable ``compare.json``: inputs, verdict, element deltas, both creatives' scores, definitions.

    ``inputs`` is ``{"a": {...}, "b": {...}}`` describing each creative (image path, element file, sha256).
    """
    def creative(scores: CreativeScores) -> dict[str, Any]:
        body = scores.to_dict()
        return {k: body[k] for k in ("image_size", "elements", "creative")}

    body = comparison.to_dict()
    return {
        **run_header(provenance),
        "input": inputs,
        "common_grid": {"height": int(diff.shape[0]), "width": int(diff.shape[1]), "of": "b"},
        "moved_mass": moved_mass(diff),
        **body,
        "notes": body["notes"] + graph_notes(provenance),
        "a": creative(scores_a),
        "b": creative(scores_b),
        "definitions": {**DEFINITIONS, **SCORE_DEFINITIONS},
    }


#: Most pixels :func:`resample_mass` makes: ten times the default pixel limit of an image, so any map's grid.
MAX_RESAMPLED_PIXELS = 1 << 30


def resample_mass(prob: np.ndarray, out_hw: Sequence[int]) -> np.ndarray:
    """Area-preserving resampling of a mass map (H×W) onto an ``out_hw`` grid covering the same unit square.

    Each source pixel's mass is spread uniformly over its cell; each target pixel receives the mass its cell
    overlaps.  Separable and exact: the cumulative mass is interpolated linearly at the target cell edges along
    each axis, then differenced.  Returns float64 with the same total as ``prob``.
    """
    prob = np.asarray(prob, dtype=np.float64)
    if prob.ndim != 2 or prob.size == 0:
        raise InputError(f"resample_mass: prob must be a non-empty (H, W) array, got shape {prob.shape}")
    if not (isinstance(out_hw, (tuple, list)) and len(out_hw) == 2
            and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in out_hw)):
        raise InputError(f"resample_mass: out_hw must be a (height, width) pair of whole numbers, got {out_hw!r:.60}")
    out_h, out_w = (int(v) for v in out_hw)
    if out_h < 1 or out_w < 1:
        raise InputError(f"resample_mass: out_hw must be positive, got {tuple(out_hw)}")
    if out_h * out_w > MAX_RESAMPLED_PIXELS:  # a float64 result and its intermediates: 10**5 squared asked for 75 GiB
        raise InputError(f"resample_mass: out_hw {out_h}x{out_w} is over {MAX_RESAMPLED_PIXELS:,} pixels; resample "
                         "to a map's own size")
    if prob.shape == (out_h, out_w):
        return prob.copy()
    return _resample_axis(_resample_axis(prob, out_h, axis=0), out_w, axis=1)


def _resample_axis(a: np.ndarray, n_out: int, axis: int) -> np.ndarray:
    a = np.moveaxis(a, axis, -1)
    n_in = a.shape[-1]
    cum = np.concatenate([np.zeros(a.shape[:-1] + (1,)), np.cumsum(a, axis=-1)], axis=-1)
    # Cumulative mass is linear inside each source cell, so interpolate it at the target cell edges.
    edges = np.linspace(0.0, n_in, n_out + 1)
    left = np.minimum(np.floor(edges).astype(np.int64), n_in - 1)
    frac = edges - left
    at_edges = cum[..., left] * (1.0 - frac) + cum[..., left + 1] * frac
    return np.moveaxis(np.diff(at_edges, axis=-1), -1, axis)


def difference_map(prob_a: np.ndarray, prob_b: np.ndarray) -> np.ndarray:
    """``D = P_B − P_A`` on B's grid (float64), A resampled by :func:`resample_mass`, both renormalised to 1."""
    b = np.asarray(prob_b, dtype=np.float64)
    a = resample_mass(prob_a, b.shape)
    for name, m in (("prob_a", a), ("prob_b", b)):
        total = m.sum()
        if not (np.isfinite(total) and total > 0):
            raise InputError(f"difference_map: {name} must have a positive finite total, got {total}")
    return b / b.sum() - a / a.sum()


def moved_mass(diff: np.ndarray) -> float:
    """``½ Σ |D|``: the fraction of attention that moved (total-variation distance)."""
    return 0.5 * float(np.abs(diff).sum())


def diverging_colors(values: np.ndarray) -> np.ndarray:
    """Blue–white–red colours (H×W×3 uint8) for signed ``values``, symmetric about 0 and scaled by ``max |v|``."""
    peak = float(np.abs(values).max()) if values.size else 0.0
    t = values / peak if peak > 0 else np.zeros_like(values, dtype=np.float64)
    fade = 1.0 - np.abs(t)
    pos, neg = t > 0, t < 0
    rgb = np.ones(values.shape + (3,), np.float64)
    rgb[..., 0] = np.where(neg, fade, 1.0)   # red channel fades towards blue
    rgb[..., 1] = fade                        # green fades either way
    rgb[..., 2] = np.where(pos, fade, 1.0)   # blue channel fades towards red
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def render_difference(image: np.ndarray, diff: np.ndarray) -> np.ndarray:
    """The difference map over ``image`` (H×W×3 uint8, same H×W): a washed-out grey copy of the image tinted by
    :func:`diverging_colors` (multiply blend), so zero difference shows the image and strong change shows colour."""
    image = np.asarray(image)
    if image.shape[:2] != diff.shape:
        raise InputError(f"render_difference: image is {image.shape[:2]}, difference map is {diff.shape}; "
                         "they must match")
    grey = image[..., :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    washed = 96.0 + grey * (159.0 / 255.0)  # keep the layout readable without competing with the colours
    out = washed[..., None] * diverging_colors(diff) / 255.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


#: Creatives wider than this (width / height) get their panels stacked top to bottom: three banners side by side
#: would each be a sliver of the page.
STACK_ASPECT = 1.25


#: Narrowest width a panel's label is wrapped to, in pixels: a narrower panel's label runs past it.
MIN_LABEL_WIDTH = 240


def side_by_side(panels: Sequence[np.ndarray], labels: Sequence[str], gap: int = 8,
                 footer: np.ndarray | None = None, footer_label: str = "") -> np.ndarray:
    """Panels (uint8 H×W×3) with a label each, on white: left to right at the last panel's height, or, for
    landscape panels (width/height > :data:`STACK_ASPECT`), top to bottom at its width; smaller than that where
    they would then hold more pixels than as many panels the size of the largest.  ``footer`` (e.g. the colour
    legend) goes under them, labelled."""
    from PIL import Image, ImageDraw

    last = panels[-1]
    stacked = last.shape[1] / last.shape[0] > STACK_ASPECT
    shared = 1 if stacked else 0  # the axis every panel is scaled to

    def across(p: np.ndarray, extent: int) -> int:
        return max(1, round(p.shape[1 - shared] * extent / p.shape[shared]))

    extent = last.shape[shared]
    planned = extent * sum(across(p, extent) for p in panels)
    most = len(panels) * max(p.shape[0] * p.shape[1] for p in panels)
    if planned > most:  # a 5000×1 banner beside a 1×5000 strip: at the strip's height, 25,000,000 pixels wide
        extent = max(1, int(extent * math.sqrt(most / planned)))
    scaled = []
    for p in panels:
        size = (extent, across(p, extent)) if stacked else (across(p, extent), extent)  # Pillow's (width, height)
        same = size == (p.shape[1], p.shape[0])
        scaled.append(p if same else np.asarray(Image.fromarray(p).resize(size, Image.Resampling.BILINEAR)))
    last = scaled[-1]
    font = label_font(max(12, min(last.shape[:2]) // 20, 14))
    # Wrapped to their panel's width: "after - before: red = more attention, blue = less" lost its "blue" on a
    # 600-pixel panel. Not narrower than a few words: a sliver of a panel gave a word a line, the band a page.
    lines = [_wrapped(label, font, max(p.shape[1] - 4, MIN_LABEL_WIDTH)) for p, label in zip(scaled, labels)]
    line_h = font.size + 2
    label_h = max(len(t) for t in lines) * line_h + 6
    if stacked:
        width = last.shape[1]
        height = sum(p.shape[0] + label_h for p in scaled) + gap * (len(scaled) - 1)
    else:
        width = sum(p.shape[1] for p in scaled) + gap * (len(scaled) - 1)
        height = last.shape[0] + label_h
    footer_lines = _wrapped(footer_label, font, width - 4)
    footer_label_h = len(footer_lines) * line_h + 6
    footer_h = 0 if footer is None else footer.shape[0] + footer_label_h + gap
    canvas = Image.new("RGB", (width, height + footer_h), "white")
    draw = ImageDraw.Draw(canvas)
    x = y = 0
    for p, text in zip(scaled, lines):
        draw.multiline_text((x + 2, y + 3), "\n".join(text), fill="black", font=font, spacing=2)
        canvas.paste(Image.fromarray(p), (x, y + label_h))
        if stacked:
            y += p.shape[0] + label_h + gap
        else:
            x += p.shape[1] + gap
    if footer is not None:
        top = height + gap
        draw.multiline_text((2, top + 3), "\n".join(footer_lines), fill="black", font=font, spacing=2)
        strip = np.asarray(Image.fromarray(footer).resize((min(width, footer.shape[1]), footer.shape[0])))
        canvas.paste(Image.fromarray(strip), (0, top + footer_label_h))
    return np.asarray(canvas)


def _wrapped(text: str, font: Any, width: int) -> list[str]:
    """``text`` broken at spaces into lines no wider than ``width`` pixels in ``font`` (a word wider than that on
    its own line)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def compare_figure(image_a: np.ndarray, map_a: SaliencyMap, scores_a: CreativeScores,
                   image_b: np.ndarray, map_b: SaliencyMap, scores_b: CreativeScores, diff: np.ndarray,
                   labels: tuple[str, str] = ("A", "B")) -> np.ndarray:
    """Three panels: A's and B's attention overlays with labelled element boxes, and ``diff``
    (:func:`difference_map`) over B; the overlays' colour legend underneath. Creatives over
    :data:`~foveal.scoring.report.DISPLAY_PIXELS` pixels are shown reduced (:func:`reduced_for_display`), the
    numbers coming from their full-size maps."""
    image_a, map_a, scale_a = reduced_for_display(image_a, map_a)
    image_b, map_b, scale_b = reduced_for_display(image_b, map_b)
    if scale_b != 1.0:
        diff = resample_mass(diff, image_b.shape[:2])
    elements_b = [Element(e.name, e.kind, e.box) for e in scores_b.elements]
    width = image_b.shape[1] if image_b.shape[1] / image_b.shape[0] > STACK_ASPECT else 3 * image_b.shape[1]
    return side_by_side(
        [draw_boxes(map_a.overlay(image_a), scores_a, scale_a), draw_boxes(map_b.overlay(image_b), scores_b, scale_b),
         outline_boxes(render_difference(image_b, diff), elements_b, scale=scale_b)],
        [labels[0], labels[1], f"{labels[1]} - {labels[0]}: red = more attention, blue = less"],
        footer=legend_strip(max(60, min(600, width // 2))),
        footer_label="attention on the overlays: none (grey) -> purple -> orange -> yellow (peak)")


def reduced_for_display(image: np.ndarray, smap: SaliencyMap) -> tuple[np.ndarray, SaliencyMap, float]:
    """``image`` as :func:`~foveal.scoring.report.shown_pixels` shows it and its map's mass resampled to match
    (:func:`resample_mass`), with the scale; as they are when they fit."""
    shown, scale = shown_pixels(image)
    if scale == 1.0:
        return image, smap, 1.0
    prob = resample_mass(smap.prob, shown.shape[:2])
    return shown, SaliencyMap((prob / prob.sum()).astype(np.float32), smap.provenance), scale


def outline_boxes(image: np.ndarray, elements: Sequence[Element], color: Sequence[int] = (40, 40, 40), *,
                  scale: float = 1.0) -> np.ndarray:
    """A copy of ``image`` with a 1-pixel outline around each element box (of the creative shown ``scale`` times
    its size, :func:`~foveal.scoring.report.shown_box`)."""
    out = image.copy()
    h, w = image.shape[:2]
    for e in elements:
        x0, y0, x1, y1 = shown_box(e.box, scale)
        x1, y1 = min(x1, w), min(y1, h)  # a reduced box's far edge rounded up, past the last pixel
        out[y0, x0:x1] = color
        out[y1 - 1, x0:x1] = color
        out[y0:y1, x0] = color
        out[y0:y1, x1 - 1] = color
    return out


_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{generator}
<meta http-equiv="Content-Security-Policy" content="{csp}"><title>foveal compare: {title}</title>
<style>
body {{ font: 15px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #1d232a; background: #f4f5f7; margin: 0; }}
main {{ max-width: 1180px; margin: 0 auto; padding: 24px 28px 48px; }}
.meta, figcaption {{ color: #5b6570; font-size: 13px; }}
.verdict {{ background: #fff; border-radius: 8px; padding: 12px 16px; margin: 16px 0;
           border-left: 6px solid {colour}; }}
img {{ width: 100%; height: auto; max-height: 80vh; object-fit: contain; }}
table {{ border-collapse: collapse; width: 100%; background: #fff; }}
th, td {{ padding: 6px 10px; text-align: right; border-bottom: 1px solid #e8eaee; font-variant-numeric: tabular-nums; }}
th {{ background: #eceef2; }} td:nth-child(-n+2), th:nth-child(-n+2) {{ text-align: left; overflow-wrap: anywhere; }}
.helps {{ color: #0b7a3e; }} .hurts {{ color: #c0262d; }} .neutral {{ color: #8a939c; }}
dt {{ font-weight: 600; margin-top: 6px; }} dd {{ margin: 0 0 0 16px; font-size: 13px; }}
</style></head><body><main>
<h1>{heading}</h1><div class="meta">{meta}</div>
<div class="verdict"><b>{verdict}</b><br>{summary}</div>
<figure><img alt="A and B attention and their difference" src="{figure}">
<figcaption>Predicted attention on A and B with element shares, and B − A over B: red = B draws more attention
there, blue = less. {moved}</figcaption></figure>
<h2>Elements</h2>{table}{extra}
<h2>Definitions</h2><details><summary>How each number is computed</summary><dl>{definitions}</dl></details>
</main></body></html>
"""
_VERDICT_COLOURS = {"better": "#0b7a3e", "worse": "#c0262d", "mixed": "#e08a00", "no material change": "#8a939c"}


def render_html(doc: dict[str, Any], figure: np.ndarray) -> str:
    """A self-contained page (figure embedded as PNG) for a ``compare.json`` document."""
    rows = "".join(
        f'<tr><td>{html.escape(e["name"])}</td><td>{html.escape(e["kind"])}</td><td>{_pct(e["share_a"])}</td>'
        f'<td>{_pct(e["share_b"])}</td><td>{_pp(e["delta_share"])}</td><td>{e["lift_a"]:.2f}</td>'
        f'<td>{e["lift_b"]:.2f}</td><td>{e["delta_lift"]:+.2f}</td>'
        f'<td class="{e["effect"]}">{html.escape(e["change"])} ({e["effect"]})</td></tr>'
        for e in doc["elements"])
    table = ("<table><tr><th>element</th><th>kind</th><th>share A</th><th>share B</th><th>Δshare</th>"
             f"<th>lift A</th><th>lift B</th><th>Δlift</th><th>change</th></tr>{rows}</table>")
    # Each name isolated: an override in one must not reverse the names after it.
    only = [f"<p>Only in {side.upper()}: {', '.join(map(bdi, doc['only_in_' + side]))}</p>"
            for side in "ab" if doc["only_in_" + side]]
    extra = "".join(only + [f"<p>{html.escape(line)}</p>" for line in doc["notes"]])
    model = doc["model"]
    a, b = doc["input"]["a"], doc["input"]["b"]
    names = one_line(Path(a["image"]).name), one_line(Path(b["image"]).name)  # a file's name may hold ESC, BEL...
    return _HTML.format(
        csp=DOCUMENT_CSP, generator=GENERATOR_META,
        title=html.escape(f"\u2068{names[0]}\u2069 vs \u2068{names[1]}\u2069"),  # as the heading
        heading=" vs ".join(map(bdi, names)),  # an override in one name must not reverse the rest of the heading
        meta=html.escape(f'model {model["name"]} {model["version"] or ""} on {doc["backend"]} · '
                         f'foveal {doc["foveal_version"]}'),
        colour=_VERDICT_COLOURS[doc["verdict"]], verdict=html.escape(doc["verdict"]),
        summary=html.escape(doc["summary"]),
        figure=png_uri(figure),
        moved=html.escape(f'{_pct(doc["moved_mass"])} of the attention sits somewhere else in B.'),
        table=table, extra=extra,
        definitions="".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                            for k, v in doc["definitions"].items()))


def _pct(v: float) -> str:
    return f"{v * 100:.1f}%"


def _pp(v: float) -> str:
    # One decimal, or as many more as it takes to show a change on its own side of the material threshold:
    # 0.496 pp is "no material change", and printed "+0.5 pp" it would read as one.
    material = material_direction(v) != 0
    for digits in range(1, 7):
        text = f"{v * 100:+.{digits}f}"
        if (abs(float(text)) >= MATERIAL_CHANGE * 100) == material:
            break
    return f"{text} pp"
