// An attention map in the page: the probability surface the service returned and its float64 summed-area table,
// so every box statistic costs four reads, exactly as foveal.SaliencyMap.box_stats (docs/SCORING.md).

const CONVERSION_KINDS = new Set(["cta", "headline", "product"]);
const TOP_FRACTION = 0.1;

export class AttentionMap {
  /** prob: Float32Array of height * width, row-major, summing to 1. */
  constructor(prob, height, width) {
    this.prob = prob;
    this.height = height;
    this.width = width;
    this.sat = summedAreaTable(prob, height, width);
    this.total = this.sat[this.sat.length - 1];
    let max = 0;
    for (let i = 0; i < prob.length; i++) if (prob[i] > max) max = prob[i];
    this.max = max;
    this.mask = new Uint8Array(prob.length); // reused by creativeShares
    this._focus = null;
    this._top10 = null;
  }

  /** Mass inside the half-open pixel box [x, y, w, h] (integers, inside the map). */
  boxSum([x, y, w, h]) {
    const s = this.sat;
    const stride = this.width + 1;
    const x1 = x + w;
    const y1 = y + h;
    return (s[y1 * stride + x1] - s[y * stride + x1]) - (s[y1 * stride + x] - s[y * stride + x]);
  }

  /** share, density, lift, area_fraction of one box (the definitions of docs/SCORING.md). */
  boxStats(box) {
    // The four reads can cancel to -6e-17 on a box of zero attention: clipped into [0, total] as the library does.
    const sum = Math.min(this.total, Math.max(0, this.boxSum(box)));
    const area = box[2] * box[3];
    const share = sum / this.total;
    const areaFraction = area / (this.height * this.width);
    return { share, density: share / area, lift: share / areaFraction, area, area_fraction: areaFraction };
  }

  /**
   * Attention inside the union of the conversion boxes, and inside the union of the other boxes outside them:
   * pixel masks, so overlapping boxes count once (`conversion_share`, `other_elements_share`).
   */
  creativeShares(conversionBoxes, otherBoxes) {
    const { width, prob, mask } = this;
    mask.fill(0);
    const sums = [0, 0];
    [conversionBoxes, otherBoxes].forEach((boxes, k) => {
      let sum = 0;
      for (const [x, y, w, h] of boxes) {
        for (let yy = y; yy < y + h; yy++) {
          for (let i = yy * width + x, end = i + w; i < end; i++) {
            if (mask[i]) continue;
            mask[i] = k + 1;
            sum += prob[i];
          }
        }
      }
      sums[k] = sum / this.total;
    });
    return sums;
  }

  /** 1 - H / log N: 0 for a uniform map, 1 for all attention on one pixel. */
  get focus() {
    if (this._focus === null) {
      const n = this.prob.length;
      let entropy = 0;
      for (let i = 0; i < n; i++) {
        const p = this.prob[i] / this.total;
        if (p > 0) entropy -= p * Math.log(p);
      }
      this._focus = n === 1 ? 1 : Math.min(1, Math.max(0, 1 - entropy / Math.log(n)));
    }
    return this._focus;
  }

  /** Attention on the ceil(0.1 N) most-attended pixels. */
  get top10Share() {
    if (this._top10 === null) {
      const n = this.prob.length;
      const k = Math.max(1, Math.ceil(Math.round(TOP_FRACTION * n * 1e9) / 1e9));
      const values = Float32Array.from(this.prob);
      selectKth(values, n - k);
      let sum = 0;
      for (let i = n - k; i < n; i++) sum += values[i];
      this._top10 = sum / this.total;
    }
    return this._top10;
  }
}

/** (H+1) x (W+1) float64 table with a zero top row and left column: row prefix plus the row above. */
function summedAreaTable(prob, height, width) {
  const stride = width + 1;
  const sat = new Float64Array((height + 1) * stride);
  const running = new Float64Array(width);
  for (let y = 0; y < height; y++) {
    let carry = 0;
    const src = y * width;
    const dst = (y + 1) * stride + 1;
    for (let x = 0; x < width; x++) {
      carry += prob[src + x];
      running[x] += carry;
      sat[dst + x] = running[x];
    }
  }
  return sat;
}

/** Partially sort `a` in place so a[k] is the k-th smallest and a[k..] are the largest (Hoare quickselect). */
function selectKth(a, k) {
  let lo = 0;
  let hi = a.length - 1;
  while (hi > lo) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (a[j] > pivot) j--;
      if (i <= j) {
        const t = a[i]; a[i] = a[j]; a[j] = t;
        i++; j--;
      }
    }
    if (k <= j) hi = j;
    else if (k >= i) lo = i;
    else break;
  }
}

// Shares closer than this are equal (foveal.scoring.scores.TIE): the table's last bits are not attention.
const TIE = 1e-12;

/** Competition ranks: 1 = largest; values within TIE share the better rank (1, 2, 2, 4). */
function competitionRanks(values) {
  return values.map((v) => 1 + values.filter((o) => o > v + TIE).length);
}

/** Compute the whole-map numbers (focus, top-10% share) once; later scoreLocally calls include them. */
export function mapStatistics(map) {
  return [map.focus, map.top10Share];
}

/**
 * The instant, local part of `foveal score`: per-element share, density, lift, area fraction, rank, and the
 * creative-level shares. Percentile, pass and recommendations come from the service (they need the norms).
 */
export function scoreLocally(map, elements) {
  const stats = elements.map((e) => ({ ...e, ...map.boxStats(e.box) }));
  const ranks = competitionRanks(stats.map((s) => s.share));
  stats.forEach((s, i) => { s.rank = ranks[i]; });
  const [conversion, others] = map.creativeShares(
    elements.filter((e) => CONVERSION_KINDS.has(e.kind)).map((e) => e.box),
    elements.filter((e) => !CONVERSION_KINDS.has(e.kind)).map((e) => e.box));
  return {
    elements: stats,
    creative: {
      conversion_share: conversion,
      other_elements_share: others,
      background_share: Math.max(0, 1 - conversion - others),
      // Whole-map numbers cost a pass over every pixel: null until mapStatistics() has run once for this map.
      focus: map._focus,
      top10_share: map._top10,
    },
  };
}
