// Pixels of the views: the attention overlay, the raw grey map, and the signed A/B difference map.

import { lut } from "./colormap.js";

/** RGBA pixels of an ImageBitmap/HTMLImageElement at its natural size. */
export function imagePixels(source, width, height) {
  const canvas = new OffscreenCanvas(width, height);
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  ctx.fillStyle = "#fff"; // transparent pixels on white, as foveal decodes them
  ctx.fillRect(0, 0, width, height);
  ctx.drawImage(source, 0, 0, width, height);
  return ctx.getImageData(0, 0, width, height).data;
}

/**
 * Fill `out` (RGBA ImageData) with the view: "overlay" blends the colormapped map over the image with weight
 * opacity * sqrt(p / max) (unattended regions show the image unchanged; the square root keeps the spread of a
 * peaked map visible),
 * "map" is the map in grey scaled to its maximum, "image" is the creative alone.
 */
export function renderView(out, rgba, map, mode, opacity, cmap) {
  const px = out.data;
  const n = map.width * map.height;
  if (mode === "image") {
    px.set(rgba);
    return;
  }
  const scale = map.max > 0 ? 1 / map.max : 0;
  if (mode === "map") {
    const levels = 255 * scale;
    for (let i = 0, j = 0; i < n; i++, j += 4) {
      const v = (map.prob[i] * levels + 0.5) | 0;
      px[j] = v; px[j + 1] = v; px[j + 2] = v; px[j + 3] = 255;
    }
    return;
  }
  const table = lut(cmap);
  const weight = new Float32Array(256); // blend weight per colormap level
  for (let k = 0; k < 256; k++) weight[k] = opacity * Math.sqrt(k / 255);
  const levels = 255 * scale;
  const prob = map.prob;
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    const k = (prob[i] * levels + 0.5) | 0;
    const c = k * 3;
    const a = weight[k];
    px[j] = rgba[j] + a * (table[c] - rgba[j]);
    px[j + 1] = rgba[j + 1] + a * (table[c + 1] - rgba[j + 1]);
    px[j + 2] = rgba[j + 2] + a * (table[c + 2] - rgba[j + 2]);
    px[j + 3] = 255;
  }
}

/**
 * Area-preserving resampling of a mass map onto outH x outW covering the same unit square (the common grid of
 * `foveal compare`): cumulative mass interpolated linearly at the target cell edges, per axis. Float64Array.
 */
export function resampleMass(prob, height, width, outH, outW) {
  if (height === outH && width === outW) return Float64Array.from(prob);
  const rows = new Float64Array(outH * width);
  for (let x = 0; x < width; x++) {
    resampleLine((i) => prob[i * width + x], height, outH, (i, v) => { rows[i * width + x] = v; });
  }
  const out = new Float64Array(outH * outW);
  for (let y = 0; y < outH; y++) {
    resampleLine((i) => rows[y * width + i], width, outW, (i, v) => { out[y * outW + i] = v; });
  }
  return out;
}

function resampleLine(get, nIn, nOut, set) {
  const cum = new Float64Array(nIn + 1);
  for (let i = 0; i < nIn; i++) cum[i + 1] = cum[i] + get(i);
  let prev = 0;
  for (let k = 1; k <= nOut; k++) {
    const edge = (k * nIn) / nOut;
    const left = Math.min(Math.floor(edge), nIn - 1);
    const frac = edge - left;
    const at = cum[left] * (1 - frac) + cum[left + 1] * frac;
    set(k - 1, at - prev);
    prev = at;
  }
}

/** D = P_B - P_A on B's grid, both renormalised to 1 (A resampled by resampleMass). */
export function differenceMap(mapA, mapB) {
  const a = resampleMass(mapA.prob, mapA.height, mapA.width, mapB.height, mapB.width);
  let sa = 0;
  let sb = 0;
  for (let i = 0; i < a.length; i++) { sa += a[i]; sb += mapB.prob[i]; }
  const d = new Float64Array(a.length);
  let peak = 0;
  for (let i = 0; i < a.length; i++) {
    d[i] = mapB.prob[i] / sb - a[i] / sa;
    peak = Math.max(peak, Math.abs(d[i]));
  }
  return { data: d, peak, height: mapB.height, width: mapB.width };
}

/** The difference over a washed-out grey copy of B: red = more attention in B, blue = less, white = same. */
export function renderDifference(out, rgbaB, diff) {
  const px = out.data;
  const inv = diff.peak > 0 ? 1 / diff.peak : 0;
  for (let i = 0, j = 0; i < diff.data.length; i++, j += 4) {
    const t = diff.data[i] * inv;
    const fade = 1 - Math.abs(t);
    const grey = 0.299 * rgbaB[j] + 0.587 * rgbaB[j + 1] + 0.114 * rgbaB[j + 2];
    const washed = 96 + grey * (159 / 255);
    px[j] = washed * (t < 0 ? fade : 1);
    px[j + 1] = washed * fade;
    px[j + 2] = washed * (t > 0 ? fade : 1);
    px[j + 3] = 255;
  }
}
