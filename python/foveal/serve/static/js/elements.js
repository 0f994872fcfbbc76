// Element files in the page: the JSON schema of the CLI (python/foveal/scoring/elements.py, docs/SCORING.md),
// read with the same rules (units declared, never guessed; edges rounded to the nearest pixel; boxes inside the
// image; unique names; no two names on one box) so a file the page accepts is one `foveal score` accepts.

export const ELEMENT_KINDS = ["cta", "headline", "body_text", "product", "logo", "face", "other"];

export class ElementError extends Error {}

/** Resolve one element to an integer pixel box; throws ElementError naming the element and field. */
export function makeElement(name, kind, box, width, height, units = "px", where = "element") {
  if (typeof name !== "string" || !name.trim()) {
    throw new ElementError(`${where}: field 'name' must be a non-empty string`);
  }
  where = `${where} (${JSON.stringify(name)})`;
  if (!ELEMENT_KINDS.includes(kind)) {
    throw new ElementError(`${where}: field 'kind' must be one of ${ELEMENT_KINDS.join(", ")}; got ${JSON.stringify(kind)}`);
  }
  if (units !== "px" && units !== "relative") {
    throw new ElementError(`${where}: field 'units' must be 'px' or 'relative', got ${JSON.stringify(units)}`);
  }
  if (!Array.isArray(box) || box.length !== 4 || !box.every((v) => typeof v === "number" && Number.isFinite(v))) {
    throw new ElementError(`${where}: field 'box' must be a list of 4 finite numbers [x, y, w, h]`);
  }
  const [x, y, w, h] = box;
  if (w <= 0 || h <= 0) throw new ElementError(`${where}: field 'box' has zero or negative width or height`);
  const [sx, sy] = units === "relative" ? [width, height] : [1, 1];
  const x0 = Math.floor(x * sx + 0.5);
  const x1 = Math.floor((x + w) * sx + 0.5);
  const y0 = Math.floor(y * sy + 0.5);
  const y1 = Math.floor((y + h) * sy + 0.5);
  if (x0 < 0 || y0 < 0 || x1 > width || y1 > height) {
    throw new ElementError(`${where}: box [${box.join(", ")}] (${units}) lies outside the ${width}x${height} image`);
  }
  if (x1 <= x0 || y1 <= y0) throw new ElementError(`${where}: box rounds to an empty pixel box`);
  return { name, kind, box: [x0, y0, x1 - x0, y1 - y0] };
}

/** The whole-list rules: unique names, no two names on the identical box. */
export function checkElements(elements, source = "elements") {
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
  let items = obj;
  if (obj && typeof obj === "object" && !Array.isArray(obj)) {
    if (!("elements" in obj)) throw new ElementError(`${source}: a JSON object needs an 'elements' list`);
    format = obj.format ?? null;
    if (format !== null && (typeof format !== "string" || !format.trim())) {
      throw new ElementError(`${source}: field 'format' must be a non-empty string`);
    }
    units = obj.units ?? "px";
    items = obj.elements;
  }
  if (!Array.isArray(items)) throw new ElementError(`${source}: 'elements' must be a JSON list of objects`);
  const elements = items.map((item, i) => {
    const where = `${source}: element ${i}`;
    if (!item || typeof item !== "object" || Array.isArray(item)) {
      throw new ElementError(`${where}: must be an object with name, kind, box`);
    }
    for (const key of ["name", "kind", "box"]) {
      if (!(key in item)) throw new ElementError(`${where}: missing field '${key}' (each element needs name, kind, box)`);
    }
    return makeElement(item.name, item.kind, item.box, width, height, item.units ?? units, where);
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
