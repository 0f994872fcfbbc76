// What the page saves: files handed to the browser, the scores CSV of `foveal score DIR`, the labelled overlay.

import { renderView } from "./render.js";
import { h, pct } from "./views.js";

/** Offer `blob` as a download named `name`. */
export function save(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// The header of `foveal score DIR`'s scores.csv; FLOATS are written the way Python writes floats.
const CSV_HEADER = ["creative_id", "image", "image_sha256", "format", "element", "kind", "x", "y", "w", "h",
  "area_fraction", "share", "density", "lift", "rank", "percentile", "score", "passed", "conversion_share",
  "background_share", "focus", "top10_share", "model", "model_sha256", "graph_sha256", "precision"];
const FLOATS = new Set(["area_fraction", "share", "density", "lift", "percentile", "conversion_share",
  "background_share", "focus", "top10_share"]);

/** A number as Python's repr writes a float: shortest round trip, "75.0", "1.5e-05". */
function pyFloat(v) {
  if (!Number.isFinite(v)) return Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf";
  const a = Math.abs(v);
  if (a !== 0 && (a < 1e-4 || a >= 1e16)) {
    const [mantissa, exponent] = v.toExponential().split("e");
    const e = Number(exponent);
    return `${mantissa}e${e < 0 ? "-" : "+"}${String(Math.abs(e)).padStart(2, "0")}`;
  }
  const s = String(v);
  return Number.isInteger(v) ? `${s}.0` : s;
}

// Text a spreadsheet would run as a formula gets a leading ' (foveal.fileio.spreadsheet_cell, the same rule).
const FORMULA_START = /^[=+\-@\t\r']/;

/** The rows `foveal score DIR` writes to scores.csv, for one creative's score document. */
export function scoresCsv(doc, creative) {
  const cell = (v, column) => {
    if (v === null || v === undefined) return "";
    if (typeof v === "boolean") return v ? "True" : "False";
    let s;
    if (typeof v === "number") s = FLOATS.has(column) ? pyFloat(v) : String(v);
    else s = String(v).replace(FORMULA_START, "'$&");
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  const rows = doc.elements.map((e) => [creative, doc.input?.image, doc.input?.image_sha256, doc.format, e.name,
    e.kind, ...e.box, e.area_fraction, e.share, e.density, e.lift, e.rank, e.percentile, e.score, e.passed,
    doc.creative.conversion_share, doc.creative.background_share, doc.creative.focus, doc.creative.top10_share,
    doc.model?.name, doc.model?.sha256, doc.model?.graph_sha256, doc.model?.precision,
  ].map((v, i) => cell(v, CSV_HEADER[i])));
  return `${[CSV_HEADER, ...rows].map((r) => r.join(",")).join("\n")}\n`;
}

/** The overlay as shown, with each element's box and label (name, share) in its kind's colour, as a PNG blob. */
export async function overlayPng(c, opacity, cmap) {
  const canvas = new OffscreenCanvas(c.width, c.height);
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(c.width, c.height);
  renderView(img, c.rgba, c.map, "overlay", opacity, cmap);
  ctx.putImageData(img, 0, 0);
  const line = Math.max(2, Math.round(Math.min(c.width, c.height) / 300));
  const size = Math.max(11, Math.round(Math.min(c.width, c.height) / 42));
  ctx.font = `${size}px system-ui, sans-serif`;
  const styles = getComputedStyle(document.documentElement);
  for (const e of c.local.elements) {
    const colour = styles.getPropertyValue(`--${e.kind}`).trim();
    const [x, y, w, hh] = e.box;
    ctx.strokeStyle = colour;
    ctx.lineWidth = line;
    ctx.strokeRect(x + line / 2, y + line / 2, w - line, hh - line);
    const text = `\u2068${e.name}\u2069 ${pct(e.share)}`; // isolated: an override in the name keeps to it
    const tw = ctx.measureText(text).width + 6;
    const ty = y >= size + 4 ? y - size - 4 : y;
    ctx.fillStyle = colour;
    ctx.fillRect(x, ty, tw, size + 4);
    ctx.fillStyle = styles.getPropertyValue(`--${e.kind}-ink`).trim() || "#fff"; // the label's ink on screen
    ctx.fillText(text, x + 3, ty + size);
  }
  return canvas.convertToBlob({ type: "image/png" });
}
