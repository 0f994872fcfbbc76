// Perceptually uniform, colour-blind-safe colormaps as 256-entry RGB tables.
// Degree-6 polynomial fits of matplotlib's viridis and inferno (coefficients: Matt Zucker's published fit).

const COEFFS = {
  viridis: [
    [0.2777273272234177, 0.005407344544966578, 0.3340998053353061],
    [0.1050930431085774, 1.404613529898575, 1.384590162594685],
    [-0.3308618287255563, 0.214847559468213, 0.09509516302823659],
    [-4.634230498983486, -5.799100973351585, -19.33244095627987],
    [6.228269936347081, 14.17993336680509, 56.69055260068105],
    [4.776384997670288, -13.74514537774601, -65.35303263337234],
    [-5.435455855934631, 4.645852612178535, 26.3124352495832],
  ],
  inferno: [
    [0.0002189403691192265, 0.001651004631001012, -0.01948089843709184],
    [0.1065134194856116, 0.5639564367884091, 3.932712388889277],
    [11.60249308247187, -3.972853965665698, -15.9423941062914],
    [-41.70399613139459, 17.43639888205313, 44.35414519872813],
    [77.162935699427, -33.40235894210092, -81.80730925738993],
    [-71.31942824499214, 32.62606426397723, 73.20951985803202],
    [25.13112622477341, -12.24266895238567, -23.07032500287172],
  ],
};

export const COLORMAPS = Object.keys(COEFFS);
const cache = new Map();

/** Uint8Array(256 * 3) RGB table of a colormap name. */
export function lut(name) {
  if (!cache.has(name)) {
    const c = COEFFS[name];
    if (!c) throw new Error(`unknown colormap ${name}`);
    const table = new Uint8Array(256 * 3);
    for (let i = 0; i < 256; i++) {
      const t = i / 255;
      for (let k = 0; k < 3; k++) {
        let v = c[6][k];
        for (let j = 5; j >= 0; j--) v = v * t + c[j][k];
        table[i * 3 + k] = Math.round(255 * Math.min(1, Math.max(0, v)));
      }
    }
    cache.set(name, table);
  }
  return cache.get(name);
}

/** CSS linear-gradient of a colormap, for the legend. */
export function gradientCss(name) {
  const table = lut(name);
  const stops = [];
  for (let i = 0; i <= 8; i++) {
    const j = Math.round((i / 8) * 255) * 3;
    stops.push(`rgb(${table[j]}, ${table[j + 1]}, ${table[j + 2]}) ${(i / 8) * 100}%`);
  }
  return `linear-gradient(to right, ${stops.join(", ")})`;
}
