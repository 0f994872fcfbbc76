"""Report outputs of one scored creative: the ``scores.json`` document, the labelled overlay, the HTML page.

The HTML page is self-contained (images embedded as base64, inline CSS, an inline SVG bar chart), so it can be
mailed or opened offline.
"""
from __future__ import annotations

import base64
import html
import io
import math
from importlib import resources
from pathlib import Path
from string import Template
from typing import Any, Sequence

import numpy as np

from .. import cpu
from .._version import __version__
from ..errors import InputError, one_line
from ..fileio import check_output, encode_png, remove_stale, save_png, write_json, write_text, written_together
from ..saliency_map import OVERLAY_ALPHA, OVERLAY_BASE, overlay_ramp
from .elements import Element
from .norms import Norms
from .recommend import Recommendation, Thresholds, recommend
from .scores import (DEFAULT_PASS_PERCENTILE, DEFINITIONS, CreativeScores, ElementScore, MapLike, percentile_text,
                     score_creative)

#: The policy of every HTML page foveal writes (report, calibration, the service's HTML answers): no script, no
#: fetch, images only embedded (``data:``), styles only inline.  The pages need nothing else, so a name that ever
#: slipped past escaping could still not run or load anything, even in a report opened from disk.
DOCUMENT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
#: In the head of every HTML page foveal writes, so that a later run can tell its own earlier page from the user's.
GENERATOR_META = '<meta name="generator" content="foveal">'
#: The same for a report's overlay.png, as a PNG text chunk, and that chunk's bytes in the file.
_OVERLAY_TEXT, _OVERLAY_MARK = {"Software": "foveal"}, b"Software\0foveal"

KIND_COLOURS: dict[str, tuple[int, int, int]] = {
    "cta": (226, 36, 74), "headline": (24, 110, 230), "body_text": (96, 96, 110), "product": (235, 130, 0),
    "logo": (130, 60, 200), "face": (0, 150, 110), "other": (70, 70, 70)}
#: Label text on a kind's colour, where white would read under 4.5:1 (as the page's labels): black.
_LABEL_INK = {"product": (0, 0, 0), "face": (0, 0, 0)}


def build_document(scores: CreativeScores, recommendations: Sequence[Recommendation], provenance: dict[str, Any],
                   *, image: str, elements: str, norms: dict[str, Any] | None) -> dict[str, Any]:
    """The machine-readable ``scores.json``: provenance, inputs, scores, recommendations, definitions.

    ``norms`` describes the norms used (source, model, creatives, warning) or is None.
    """
    body = scores.to_dict()
    return {
        **run_header(provenance),
        "input": {"image": image, "image_sha256": provenance.get("image_sha256"), "elements": elements},
        "image_size": body["image_size"],
        "format": body["format"],
        "pass_percentile": body["pass_percentile"],
        "norms": norms,
        "elements": body["elements"],
        "creative": body["creative"],
        "recommendations": [r.to_dict() for r in recommendations],
        "definitions": DEFINITIONS,
    }


def score_document(smap: MapLike, elements: Sequence[Element], provenance: dict[str, Any], *, image: str,
                   elements_source: str, norms: Norms | None = None, norms_source: str | None = None,
                   norms_warning: str | None = None, format: str | None = None,
                   pass_percentile: float = DEFAULT_PASS_PERCENTILE, allow_model_mismatch: bool = False,
                   thresholds: Thresholds = Thresholds()) -> tuple[CreativeScores, dict[str, Any]]:
    """Score ``elements`` on a map and build its ``scores.json`` document: what ``foveal score`` writes and
    ``POST /v1/score`` returns, from this one function. ``thresholds`` are the model card's (``Thresholds.of_card``);
    norms built on another graph are refused unless ``allow_model_mismatch``."""
    scores = score_creative(smap, elements, norms=norms, format=format, pass_percentile=pass_percentile,
                            allow_model_mismatch=allow_model_mismatch)
    norms_info = None if norms is None else {
        "source": norms_source or norms.source, "model": norms.model, "creatives": norms.creatives.get(scores.format),
        "warning": norms_warning}
    return scores, scores_document(scores, provenance, image=image, elements_source=elements_source,
                                   norms=norms_info, thresholds=thresholds)


def scores_document(scores: CreativeScores, provenance: dict[str, Any], *, image: str, elements_source: str,
                    norms: dict[str, Any] | None = None, thresholds: Thresholds = Thresholds()) -> dict[str, Any]:
    """The ``scores.json`` document of already computed scores (the batch scores first, reports later)."""
    return build_document(scores, recommend(scores, thresholds=thresholds), provenance, image=image,
                          elements=elements_source, norms=norms)


#: Most characters of an element's name on the overlay (names may have 200: a label as wide as the image).
OVERLAY_NAME_CHARS = 32
#: The labels' typeface: DejaVu Sans, shipped (licence beside it), for every alphabet it covers; Pillow's own
#: default covers ASCII only, and drew "Café" as "Caf▯".
LABEL_FONT = Path(__file__).resolve().parents[1] / "fonts" / "DejaVuSans.ttf"


def label_font(size: int) -> Any:
    """The labels' font at ``size`` pixels."""
    from PIL import ImageFont

    return ImageFont.truetype(str(LABEL_FONT), size=size)


def _label(e: ElementScore) -> str:
    name = e.name if len(e.name) <= OVERLAY_NAME_CHARS else e.name[:OVERLAY_NAME_CHARS - 1].rstrip() + "…"
    text = f"{name} {100 * e.share:.1f}%"
    return text if e.score is None else f"{text} · {e.score}"


def run_header(provenance: dict[str, Any]) -> dict[str, Any]:
    """What produced a result, from a SaliencyMap's provenance: foveal version, model (with the precision of the
    graph that ran) and backend; the opening fields of every JSON document foveal writes about a creative."""
    return {
        "foveal_version": __version__,
        "model": {"name": provenance.get("model"), "version": provenance.get("model_version"),
                  "sha256": provenance.get("model_sha256"), "graph_sha256": provenance.get("graph_sha256"),
                  "precision": provenance.get("precision")},
        "backend": provenance.get("backend"),
    }


#: Most pixels of a creative a page or figure shows: a larger one (a print file) is shown reduced. At full size a
#: 25-MP creative's report.html was 38 MB, and two of them made a 111-MB compare page.
DISPLAY_PIXELS = 2_000_000


def shown_pixels(pixels: np.ndarray) -> tuple[np.ndarray, float]:
    """``pixels`` (H, W, 3) uint8 area-averaged to at most :data:`DISPLAY_PIXELS`, and the scale they are shown at;
    as they are when they fit."""
    from PIL import Image

    h, w = pixels.shape[:2]
    if h * w <= DISPLAY_PIXELS:
        return pixels, 1.0
    scale = math.sqrt(DISPLAY_PIXELS / (h * w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX)), scale


def shown_box(box: Sequence[int], scale: float = 1.0) -> tuple[int, int, int, int]:
    """An element's ``[x, y, w, h]`` box on its image shown ``scale`` times its size, half-open (x0, y0, x1, y1),
    at least one pixel wide and high."""
    x, y, w, h = box
    x0, y0 = math.floor(x * scale), math.floor(y * scale)
    return x0, y0, max(x0 + 1, math.ceil((x + w) * scale)), max(y0 + 1, math.ceil((y + h) * scale))


def draw_boxes(overlay: np.ndarray, scores: CreativeScores, scale: float = 1.0) -> np.ndarray:
    """Draw each element's box and a label (name, share, score) on a copy of ``overlay`` (H, W, 3) uint8: the
    creative shown ``scale`` times its size (:func:`shown_box`)."""
    from PIL import Image, ImageDraw

    canvas = Image.fromarray(overlay)
    draw = ImageDraw.Draw(canvas)
    h, w = overlay.shape[:2]
    size = max(11, min(h, w) // 42)
    font = label_font(size)
    line = max(1, min(2, min(h, w) // 8), min(h, w) // 300)  # a 1-pixel-wide creative kept its heat visible
    boxes = [(e, shown_box(e.box, scale)) for e in scores.elements]
    for e, (x0, y0, x1, y1) in boxes:
        draw.rectangle([x0, y0, x1 - 1, y1 - 1], outline=KIND_COLOURS[e.kind], width=line)  # last row included
    texts = [_label(e) for e, _ in boxes]
    bounds = [draw.textbbox((0, 0), text, font=font) for text in texts]
    sizes = [(tx1 - tx0 + 8, ty1 - ty0 + 6) for tx0, ty0, tx1, ty1 in bounds]
    for (e, _), text, (tx0, ty0, _, _), (tw, th), (lx, ly) in zip(
            boxes, texts, bounds, sizes, label_places([box for _, box in boxes], sizes, (h, w), line)):
        draw.rectangle([lx, ly, lx + tw, ly + th], fill=KIND_COLOURS[e.kind])
        draw.text((lx + 4 - tx0, ly + 3 - ty0), text, font=font, fill=_LABEL_INK.get(e.kind, (255, 255, 255)))
    return np.asarray(canvas)


def label_places(boxes: Sequence[tuple[int, int, int, int]], sizes: Sequence[tuple[int, int]], shape: tuple[int, int],
                 line: int) -> list[tuple[int, int]]:
    """Where each box's label (``sizes``: width, height) goes on an image of ``shape`` (H, W), in order: above the
    box, else just inside its top edge, else below it, else inside its bottom edge, the first of these that no
    earlier label covers (a logo's label lay under the label of a full-image box that also began at y=0); if all
    are taken, the first that fits the image."""
    h, w = shape
    placed: list[tuple[int, int, int, int]] = []
    for (x0, y0, _, y1), (tw, th) in zip(boxes, sizes):
        lx = min(max(0, x0), max(0, w - tw))
        spots = [(lx, min(max(0, top), max(0, h - th))) for top in (y0 - th, y0 + line, y1, y1 - line - th)]
        free = [(x, y) for x, y in spots
                if not any(x < b[2] and b[0] < x + tw and y < b[3] and b[1] < y + th for b in placed)]
        lx, ly = free[0] if free else spots[0 if y0 - th >= 0 else 1]
        placed.append((lx, ly, lx + tw, ly + th))
    return [(x, y) for x, y, _, _ in placed]


def legend_strip(width: int, height: int = 14) -> np.ndarray:
    """The overlay's colour scale as an (height, width, 3) uint8 strip: attention relative to the map's peak, from
    none (left, the muted image) to the peak (right), blended exactly as :meth:`SaliencyMap.overlay` blends it over
    a mid-grey image."""
    t = np.linspace(0.0, 1.0, max(2, width), dtype=np.float32)[None, :].repeat(height, axis=0)
    colours = cpu.colorize(overlay_ramp(t), "inferno").astype(np.float32)
    base = np.float32(sum(OVERLAY_BASE) / 2)
    weight = (OVERLAY_ALPHA * np.sqrt(t))[..., None]
    return np.clip(base + (colours - base) * weight + 0.5, 0, 255).astype(np.uint8)


LEGEND_TEXT = ("Colour = predicted attention relative to the map's peak: none (grey image) → purple → orange → "
               "yellow (peak); colour-blind-safe inferno scale")


def png_uri(pixels: np.ndarray) -> str:
    """``pixels`` as a PNG data URI, for a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(encode_png(pixels)).decode("ascii")


#: Longest side libjpeg (through Pillow) encodes; a longer strip is embedded as PNG.
JPEG_MAX_SIDE = 65500


def _data_uri(pixels: np.ndarray) -> str:
    """JPEG (quality 88) as a data URI: a tenth of a PNG's size for photographic overlays. PNG for an image with a
    side over :data:`JPEG_MAX_SIDE` (a banner strip), which JPEG cannot hold."""
    from PIL import Image

    if max(pixels.shape[:2]) > JPEG_MAX_SIDE:
        return png_uri(pixels)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=88)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def bdi(text: str) -> str:
    """A name from the caller, escaped and bidi-isolated: a right-to-left override in it (U+202E) cannot reverse
    the report's own words after it."""
    return f"<bdi>{html.escape(one_line(text))}</bdi>"


def _fmt_pct(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{100 * v:.{digits}f}%"


#: Characters of "name (kind)" the bar chart's label column holds at its font size.
LABEL_CHARS = 24


def _bar_chart(elements: Sequence[dict[str, Any]]) -> str:
    """Inline SVG: one bar per element (share), a tick at its area fraction (what a uniform map would give)."""
    if not elements:  # score_creative takes an empty list; there is nothing to scale the bars by
        return "<p>No elements were scored: the creative-level numbers above cover the whole image.</p>"
    rows = sorted(elements, key=lambda e: e["share"], reverse=True)
    label_w, bar_w, row_h, top = 190, 620, 30, 28
    scale = max(max(max(e["share"], e["area_fraction"]) for e in rows), 1e-12)
    height = top + row_h * len(rows) + 8
    judged = any(e["passed"] is not None for e in rows)
    legend = "; green = passes its norm, red = fails" if judged else ""
    parts = [f'<svg viewBox="0 0 1000 {height}" width="100%" role="img" aria-label="share of attention by element" '
             'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, DejaVu Sans, sans-serif" font-size="13">',
             f'<text x="{label_w}" y="16" fill="#5b6570">bar = share of attention; black tick = area fraction '
             f'(lift 1){legend}</text>']
    for i, e in enumerate(rows):
        y = top + i * row_h
        colour = "#%02x%02x%02x" % KIND_COLOURS[e["kind"]]
        if e["passed"] is not None:
            colour = "#0b7a3e" if e["passed"] else "#c0262d"
        width = bar_w * e["share"] / scale
        tick = label_w + bar_w * e["area_fraction"] / scale
        # U+2068/U+2069 isolate the name (SVG has no <bdi>): an override in it cannot reverse " (kind)". A name too
        # long for the label column is cut at its end (its start tells names apart); the tooltip holds it whole.
        kind = "" if e["name"] == e["kind"] else f' ({e["kind"]})'
        room = LABEL_CHARS - len(kind)
        shown = e["name"] if len(e["name"]) <= room else e["name"][:room - 1] + "…"
        name = html.escape(f"\u2068{shown}\u2069{kind}")
        title = html.escape(f'\u2068{e["name"]}\u2069{kind}')
        parts += [
            f'<text x="{label_w - 8}" y="{y + 18}" text-anchor="end"><title>{title}</title>{name}</text>',
            f'<rect x="{label_w}" y="{y + 5}" width="{width:.1f}" height="{row_h - 10}" rx="3" fill="{colour}"/>',
            f'<line x1="{tick:.1f}" x2="{tick:.1f}" y1="{y + 2}" y2="{y + row_h - 2}" stroke="#111" stroke-width="2"/>',
            # Beside its own bar, whatever the tick does; a white halo keeps it legible where the tick crosses it.
            f'<text x="{label_w + width + 6:.1f}" y="{y + 18}" fill="#1d232a" stroke="#fff" stroke-width="3" '
            f'paint-order="stroke">{100 * e["share"]:.1f}% · lift {e["lift"]:.2f}</text>',
        ]
    parts.append("</svg>")
    return "\n".join(parts)


def _table(elements: Sequence[dict[str, Any]], pass_mark: float) -> str:
    head = ("<tr><th>element</th><th>kind</th><th>share</th><th>area</th><th>lift</th><th>rank</th>"
            "<th>percentile</th><th>score</th><th>pass</th></tr>")
    rows = []
    for e in elements:
        if e["passed"] is None:
            verdict = '<span class="na">n/a</span>'
        else:
            verdict = '<span class="pass">pass</span>' if e["passed"] else '<span class="fail">fail</span>'
        mark = e.get("pass_percentile") or pass_mark  # scores built without one were judged by the creative's
        pct = "—" if e["percentile"] is None else percentile_text(e["percentile"], mark)
        score = "—" if e["score"] is None else str(e["score"])
        rows.append(f'<tr><td>{html.escape(e["name"])}</td><td>{html.escape(e["kind"])}</td>'
                    f'<td>{_fmt_pct(e["share"])}</td><td>{_fmt_pct(e["area_fraction"])}</td>'
                    f'<td>{e["lift"]:.2f}</td><td>{e["rank"]}</td><td>{pct}</td><td>{score}</td><td>{verdict}</td></tr>')
    return f"<table>{head}{''.join(rows)}</table>"


def _recommendations(recs: Sequence[dict[str, Any]]) -> str:
    if not recs:
        return "<p>No rule fired: every element gets at least its expected attention.</p>"
    items = [f'<li class="{r["severity"]}"><span class="sev">{r["severity"]}</span>{html.escape(r["message"])}</li>'
             for r in recs]
    return f'<ul class="recs">{"".join(items)}</ul>'


def render_html(doc: dict[str, Any], image: np.ndarray, overlay: np.ndarray) -> str:
    """The self-contained report page for a ``scores.json`` document and its creative and overlay pixels."""
    creative = doc["creative"]
    model = doc["model"]
    cards = [("conversion share", _fmt_pct(creative["conversion_share"]), "cta + headline + product"),
             ("background share", _fmt_pct(creative["background_share"]), "on no element"),
             ("focus", f'{creative["focus"]:.2f}', "0 uniform … 1 one point"),
             ("top 10% pixels hold", _fmt_pct(creative["top10_share"]), "10% = scattered evenly")]
    notes = []
    norms = doc["norms"]
    if norms is None:
        notes.append("No norms were given: percentile, score and pass are not available. Build norms from your "
                     "best creatives with <code>foveal norms build</code> and pass <code>--norms</code>.")
    else:
        count = norms["creatives"]
        against = (f'{count} reference creative{"s" if count != 1 else ""}' if count else
                   "no reference creatives of this format")
        # The norms may set a kind's own pass mark (foveal calibrate proposes them): name each one that differs.
        own = {e["kind"]: e["pass_percentile"] for e in doc["elements"]
               if e.get("pass_percentile") is not None and e["pass_percentile"] != doc["pass_percentile"]}
        marks = "".join(f"; {kind}: ≥ {p:.15g}" for kind, p in sorted(own.items()))
        notes.append(f'Percentiles against {bdi(Path(str(norms["source"])).name)} (format {bdi(doc["format"])}: '
                     + html.escape(f'{against}); pass = percentile ≥ {doc["pass_percentile"]:.15g}'
                                   + (f"{marks} (set by the norms)." if marks else ".")))
        if norms.get("warning"):
            notes.append("Warning: " + html.escape(norms["warning"]))
    missing = sorted({e["norm_note"] for e in doc["elements"] if norms is not None and e["norm_note"]})
    notes += [html.escape(m) for m in missing]
    size = doc["image_size"]
    graph = model.get("graph_sha256") or model["sha256"]
    if model["name"] is None:  # a SaliencyMap made by hand, not by an Engine
        made = "a map without provenance (no model recorded)"
    else:
        made = (f'model {model["name"]} {model["version"] or ""}, {model.get("precision") or "fp32"} graph'
                + (f" (sha256 {str(graph)[:12]}…)" if graph else "")
                + (f' on {doc["backend"]}' if doc["backend"] else ""))
    meta = (f'{size["width"]}×{size["height"]} · format {bdi(doc["format"])} · '
            + html.escape(f'{made} · foveal {doc["foveal_version"]}'))
    definitions = "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                   for k, v in doc["definitions"].items()) + "</dl>"
    template = Template(resources.files(__package__).joinpath("report.html").read_text(encoding="utf-8"))
    return template.substitute(
        csp=DOCUMENT_CSP, generator=GENERATOR_META,
        title=html.escape(one_line(Path(doc["input"]["image"]).name)),  # a file's name may hold ESC, BEL...
        meta=meta,
        cards="".join(f'<div class="card"><span>{html.escape(a)}</span><b>{b}</b><span>{html.escape(c)}</span></div>'
                      for a, b, c in cards),
        notes="".join(f'<div class="note">{n}</div>' for n in notes),
        creative_src=_data_uri(shown_pixels(image)[0]),  # boxes drawn at full size: lines and labels scale down
        overlay_src=_data_uri(shown_pixels(overlay)[0]),
        legend_src=png_uri(legend_strip(400)),
        legend_text=html.escape(LEGEND_TEXT),
        score_caption="" if norms is None else " · score (0–100 percentile)",
        chart=_bar_chart(doc["elements"]),
        table=_table(doc["elements"], doc["pass_percentile"]),
        recommendations=_recommendations(doc["recommendations"]),
        definitions=definitions,
    )


def write_report(out_dir: str | Path, doc: dict[str, Any], image: np.ndarray, overlay: np.ndarray,
                 html_report: bool = True) -> None:
    """Write ``scores.json`` and, with ``html_report``, ``overlay.png`` and ``report.html`` into ``out_dir``.

    Everything is rendered and every target checked (:func:`~foveal.fileio.check_output`) before the first file is
    written, and the files land together (:func:`~foveal.fileio.written_together`), so a failure leaves neither a
    partial file nor a set mixing two runs.
    """
    out = Path(out_dir)
    if html_report:
        for name, pixels in (("image", image), ("overlay", overlay)):
            if not (isinstance(pixels, np.ndarray) and pixels.dtype == np.uint8 and pixels.ndim == 3
                    and pixels.shape[2] == 3):
                got = f"{pixels.dtype} {pixels.shape}" if isinstance(pixels, np.ndarray) else type(pixels).__name__
                raise InputError(f"write_report: {name} must be (H, W, 3) uint8 pixels, got {got}")
        if overlay.shape != image.shape:
            raise InputError(f"write_report: the overlay is {overlay.shape[1]}x{overlay.shape[0]} but the image "
                             f"{image.shape[1]}x{image.shape[0]}; draw it with SaliencyMap.overlay(image)")
    if not isinstance(doc, dict) or not isinstance(doc.get("creative"), dict):
        raise InputError("write_report: doc must be a scores document (score_document's second result)")
    page = render_html(doc, image, overlay) if html_report else None
    for name in ("overlay.png", "report.html", "scores.json") if page is not None else ("scores.json",):
        check_output(out / name)  # all first: a refused scores.json must not leave this run's report beside the old
    with written_together():
        if page is not None:
            save_png(out / "overlay.png", overlay, **_OVERLAY_TEXT)
            write_text(out / "report.html", page)
        write_json(out / "scores.json", doc)
    if page is None:  # an earlier run's report would describe another creative than this scores.json
        remove_stale(out / "report.html", GENERATOR_META.encode())
        remove_stale(out / "overlay.png", _OVERLAY_MARK)
