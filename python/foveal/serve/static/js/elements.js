// Element files in the page: the JSON schema of the CLI (python/foveal/scoring/elements.py, docs/SCORING.md),
// read with the same rules (kinds in any case; units and box order declared, never guessed; edges rounded to the
// nearest pixel; boxes inside the image; names unique, at most 200 characters; no two names on one box; at least
// one element) so a file the page accepts is one `foveal score` accepts, with the same boxes.

export const ELEMENT_KINDS = ["cta", "headline", "body_text", "product", "logo", "face", "other"];
export const MAX_NAME_CHARS = 200;
const MAX_ELEMENTS = 10_000;

export class ElementError extends Error {}

// foveal.boxes.round_half_up: to the nearest pixel, halves up, a half computed a hair low (0.29 × 50 =
// 14.499999999999998) still a half; the same operations in the same order, so the same pixels as the service.
const HALF_SLACK = 1e-12;
export const roundHalfUp = (v) => Math.floor(v + 0.5 + HALF_SLACK * Math.max(1, Math.abs(v)));

/** A name `foveal score` accepts (non-empty, at most 200 characters, valid Unicode), or ElementError. */
export function checkName(name, where = "element") {
  if (typeof name !== "string" || !name.trim()) {
    throw new ElementError(`${where}: field 'name' must be a non-empty string`);
  }
  const chars = [...name].length; // code points, as Python counts them
  if (chars > MAX_NAME_CHARS) {
    throw new ElementError(`${where}: field 'name' is ${chars} characters long; use at most ${MAX_NAME_CHARS}`);
  }
  if (!name.isWellFormed()) {
    throw new ElementError(`${where}: field 'name' holds a lone UTF-16 surrogate; use a valid Unicode name`);
  }
  if ([...name].some(isControlOrNoncharacter)) { // as the CLI: reports cannot hold them
    throw new ElementError(`${where}: field 'name' holds a control character or a Unicode noncharacter; `
      + "use printable text");
  }
  return name;
}

/** Unicode category Cc (U+0000-U+001F, U+007F-U+009F), or a noncharacter (U+FDD0-U+FDEF, U+xxFFFE/F). */
function isControlOrNoncharacter(char) {
  const code = char.codePointAt(0);
  return code <= 0x1f || (code >= 0x7f && code <= 0x9f) || (code >= 0xfdd0 && code <= 0xfdef)
    || (code & 0xfffe) === 0xfffe;
}

/** The kind a file means: case, spaces and hyphens forgiven ("Body text" → body_text), as the CLI reads it. */
function normaliseKind(kind, where) {
  const key = typeof kind === "string" ? kind.trim().toLowerCase().replace(/-/g, " ").split(/\s+/).join("_") : null;
  if (!ELEMENT_KINDS.includes(key)) {
    throw new ElementError(`${where}: field 'kind' must be one of ${ELEMENT_KINDS.join(", ")} (any case); `
      + `got ${JSON.stringify(kind)}`);
  }
  return key;
}

function checkChoice(value, choices, field, where) {
  if (!choices.includes(value)) {
    const allowed = choices.map((c) => `'${c}'`).join(" or ");
    throw new ElementError(`${where}: field '${field}' must be ${allowed}, got ${JSON.stringify(value)}`);
  }
  return value;
}

/** Which other reading of an outside box's values would fit, when one would: the likely mistake (foveal.boxes). */
function outsideHint([a, b, c, d], boxFormat, units, width, height) {
  if (units === "relative" && Math.max(Math.abs(a), Math.abs(b), Math.abs(c), Math.abs(d)) > 1) {
    return "; relative values are fractions 0..1 of the image: these look like pixels, so drop units \"relative\"";
  }
  if (boxFormat === "xywh" && c > a && d > b && c <= width && d <= height && a >= 0 && b >= 0) {
    return "; if the box is [x0, y0, x1, y1] (corners), declare box_format \"xyxy\" (foveal's default is [x, y, w, h])";
  }
  return "";
}

/**
 * Resolve one element to an integer pixel box; throws ElementError naming the element and field.
 * boxFormat "xywh": [x, y, w, h]; "xyxy": corners [x0, y0, x1, y1].
 */
export function makeElement(name, kind, box, width, height, units = "px", where = "element", boxFormat = "xywh") {
  checkName(name, where);
  where = `${where} (${JSON.stringify(name)})`;
  kind = normaliseKind(kind, where);
  checkChoice(units, ["px", "relative"], "units", where);
  checkChoice(boxFormat, ["xywh", "xyxy"], "box_format", where);
  if (!Array.isArray(box) || box.length !== 4 || !box.every((v) => typeof v === "number" && Number.isFinite(v))) {
    throw new ElementError(`${where}: field 'box' must be a list of 4 finite numbers [x, y, w, h]`);
  }
  const shown = `box [${box.join(", ")}] ([${boxFormat === "xywh" ? "x, y, w, h" : "x0, y0, x1, y1"}], ${units})`;
  const [a, b, c, d] = box;
  if (boxFormat === "xywh" && (c <= 0 || d <= 0)) {
    throw new ElementError(`${where}: field 'box': ${shown} has zero or negative width or height; w and h must be > 0`);
  }
  if (boxFormat === "xyxy" && (c <= a || d <= b)) {
    throw new ElementError(`${where}: field 'box': ${shown} needs x1 > x0 and y1 > y0`);
  }
  const [x, y, x2, y2] = boxFormat === "xywh" ? [a, b, a + c, b + d] : [a, b, c, d];
  if (units === "px" && x >= 0 && y >= 0 && x2 <= 1 && y2 <= 1 && !box.every(Number.isInteger)) {
    throw new ElementError(`${where}: field 'box': ${shown} is in pixels (the default), but its edges all lie `
      + "between 0 and 1: if these are fractions of the image, declare units \"relative\"");
  }
  const [sx, sy] = units === "relative" ? [width, height] : [1, 1];
  const [x0, x1, y0, y1] = [x * sx, x2 * sx, y * sy, y2 * sy].map(roundHalfUp);
  if (x0 < 0 || y0 < 0 || x1 > width || y1 > height) {
    const hint = outsideHint(box, boxFormat, units, width, height);
    throw new ElementError(`${where}: field 'box': ${shown} covers pixels x ${x0}..${x1}, y ${y0}..${y1}, outside the `
      + `${width}x${height} image; boxes must lie inside the image${hint}`);
  }
  if (x1 <= x0 || y1 <= y0) {
    throw new ElementError(`${where}: field 'box': ${shown} rounds to an empty pixel box; make it at least one pixel `
      + "wide and high");
  }
  return { name, kind, box: [x0, y0, x1 - x0, y1 - y0] };
}

/** The whole-list rules: unique names, no two names on the identical box. */
export function checkElements(elements, source = "elements") {
  if (elements.length > MAX_ELEMENTS) {
    throw new ElementError(`${source}: ${elements.length} elements, more than the ${MAX_ELEMENTS} a creative may have`);
  }
  const names = new Map();
  const boxes = new Map();
  elements.forEach((e, i) => {
    if (names.has(e.name)) {
      throw new ElementError(`${source}: elements ${names.get(e.name)} and ${i} are both named ${JSON.stringify(e.name)}; names must be unique`);
    }
    const key = e.box.join(",");
    if (boxes.has(key)) {
      throw new ElementError(`${source}: elements ${boxes.get(key)} and ${i} have the identical box [${e.box.join(", ")}]; remove one or fix its box`);
    }
    names.set(e.name, i);
    boxes.set(key, i);
  });
}

/** Parse element JSON text (a list, or {elements, format, units}) against a width x height image. */
export function parseElementFile(text, width, height, source = "elements") {
  let obj;
  try {
    obj = JSON.parse(text);
  } catch (err) {
    throw new ElementError(`${source}: malformed JSON (${err.message})`);
  }
  let format = null;
  let units = "px";
  let boxFormat = "xywh";
  let items = obj;
  if (obj && typeof obj === "object" && !Array.isArray(obj)) {
    if (!("elements" in obj)) throw new ElementError(`${source}: a JSON object needs an 'elements' list`);
    format = obj.format ?? null;
    if (format !== null && (typeof format !== "string" || !format.trim() || !format.isWellFormed())) {
      throw new ElementError(`${source}: field 'format' must be a non-empty string of valid Unicode`);
    }
    units = checkChoice(obj.units ?? "px", ["px", "relative"], "units", source);
    boxFormat = checkChoice(obj.box_format ?? "xywh", ["xywh", "xyxy"], "box_format", source);
    items = obj.elements;
  }
  if (!Array.isArray(items)) throw new ElementError(`${source}: 'elements' must be a JSON list of objects`);
  if (!items.length) throw new ElementError(`${source}: no elements; give at least one element to score`);
  const elements = items.map((item, i) => {
    const where = `${source}: element ${i}`;
    if (!item || typeof item !== "object" || Array.isArray(item)) {
      throw new ElementError(`${where}: must be an object with name, kind, box`);
    }
    for (const key of ["name", "kind", "box"]) {
      if (!(key in item)) throw new ElementError(`${where}: missing field '${key}' (each element needs name, kind, box)`);
    }
    return makeElement(item.name, item.kind, item.box, width, height, item.units ?? units, where,
      item.box_format ?? boxFormat);
  });
  checkElements(elements, source);
  return { elements, format };
}

/** The element JSON the CLI reads back (pixel units). */
export function elementFile(elements, format) {
  const doc = { units: "px", elements: elements.map((e) => ({ name: e.name, kind: e.kind, box: [...e.box] })) };
  return format ? { format, ...doc } : doc;
}

/** A name not yet used: "element 1", "element 2"... */
export function freshName(elements, stem = "element") {
  const used = new Set(elements.map((e) => e.name));
  for (let i = 1; ; i++) if (!used.has(`${stem} ${i}`)) return `${stem} ${i}`;
}

/**
 * The box a new element gets: a quarter of the image each way, centred; when an element holds that box already
 * (two names on one box are refused), the next free spot down and to the right, then a smaller box anywhere.
 * Null when every box the image can hold is taken (a 1x1 image holds one).
 */
export function freeBox(elements, width, height) {
  const taken = new Set(elements.map((e) => e.box.join()));
  const w0 = Math.max(1, Math.round(width / 4));
  const h0 = Math.max(1, Math.round(height / 4));
  const step = [Math.max(1, Math.round(w0 / 4)), Math.max(1, Math.round(h0 / 4))];
  for (let x = Math.floor((width - w0) / 2), y = Math.floor((height - h0) / 2);
    x + w0 <= width && y + h0 <= height; x += step[0], y += step[1]) {
    if (!taken.has([x, y, w0, h0].join())) return [x, y, w0, h0];
  }
  for (let w = w0; w >= 1; w--) {
    for (let h = h0; h >= 1; h--) {
      for (let y = 0; y + h <= height; y++) {
        for (let x = 0; x + w <= width; x++) if (!taken.has([x, y, w, h].join())) return [x, y, w, h];
      }
    }
  }
  return null;
}
