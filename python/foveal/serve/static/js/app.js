// The foveal page: upload a creative, see its attention, score its elements, compare, try edits, download.
//
// Only a new image needs the network for the map: element shares, lifts, ranks and the creative-level shares are
// computed here from the float32 map /v1/predict returns (summed-area table, four reads per box), the same
// definitions as `foveal score`. The service's /v1/score document (percentile, pass, recommendations) follows a
// moment later for the same elements, and is what the JSON/CSV downloads contain.

import { Api, canRetry, editedImage } from "./api.js";
import { AttentionMap, mapStatistics, scoreLocally } from "./attention.js";
import { COLORMAPS, gradientCss } from "./colormap.js";
import { BoxEditor, moveBox, resizeBox } from "./editor.js";
import {
  ElementError, checkElements, checkName, elementFile, freeBox, freshName, makeElement, parseElementFile, roundHalfUp,
} from "./elements.js";
import { differenceMap, imagePixels, renderDifference, renderView } from "./render.js";
import { overlayPng, save, scoresCsv } from "./downloads.js";
import {
  contentHash, forget, lastCreative, onBoxesSaved, saveBoxes, saveLast, savedBoxes, savedCount,
} from "./storage.js";
import {
  bdi, committed, h, pct, pp, renderComparison, renderElementList, renderScores, renderWhatif, showValue,
  singleClick,
} from "./views.js";

const ACCEPTED = ["image/png", "image/jpeg", "image/webp"];
const TOO_LARGE = ["too_many_pixels", "body_too_large"]; // the service's codes for an image over its limits
const SERVER_DELAY_MS = 250;
const ENLARGED_SIDE = 240;
const MIN_SIDE = 24;

const $ = (id) => document.getElementById(id);

const state = {
  active: "A",
  creatives: { A: null, B: null },
  selected: null,
  view: "overlay",
  opacity: 0.7,
  cmap: "viridis",
  whatif: false,
  ghosts: new Map(),
  search: null, // the last position search: {creative, name, doc}
  edited: null, // the edited creative the what-if result shows: {blob, name}
  norms: "",
  passPercentile: 70,
  allowMismatch: false, // compare creatives of different formats anyway (an indicative verdict)
  paintedAB: null, // the A and B maps the side-by-side panels were last painted from
  paintedStage: null, // what the creative's canvas was last painted with: [creative, map, view, opacity, colours]
};

const api = new Api(askKey, () => loadServiceInfo());
const editor = new BoxEditor($("boxes"), {
  canCreate: () => !state.whatif,
  onCreate: createElement,
  onChange: changeBox,
  onSelect: (name) => { state.selected = name; refresh(); },
  onDelete: removeElement,
  onStuck: (name, box) => announceBox(name, box, state.whatif ? "cannot go further: the what-if edit stays inside "
    + "the image" : "cannot go further: a box stays inside the image and at least 1 px wide and high"),
}, "hint");

// ---------------------------------------------------------------------------------------------------- messages

/** Text and nodes (a file's name in bdi()), shown as text. */
function showError(...message) {
  $("error").replaceChildren(...message);
  $("error-box").hidden = false;
}

function clearError() {
  $("error-box").hidden = true;
  $("error").textContent = "";
}

const BAD_PASS_PERCENTILE = "The pass percentile must be a number in (0, 100].";

/** Clear the message if it still says `text` (a failure that has since been recovered from). */
function clearErrorIf(text) {
  if ($("error").textContent === text) clearError();
}

function status(...text) {
  $("status").replaceChildren(...text);
}

/** Clear the status line if it still says `text` (what it spoke of is gone). */
function clearStatusIf(text) {
  if (text && $("status").textContent === text) status("");
}

/**
 * A button disabled while its task runs loses focus to the page (Chromium moves it to the body): the function
 * returned, called once the task is over and the button enabled again, gives focus back to it if it had it.
 */
function keepFocus(button) {
  const had = document.activeElement === button;
  return () => {
    if (had && !button.disabled && document.activeElement === document.body) button.focus();
  };
}

/** Say where a box now is (read out by screen readers as it changes), and why when it was stopped short. */
function announceBox(name, [x, y, w, hh], note = "") {
  const what = state.whatif ? " (what-if)" : "";
  $("box-status").replaceChildren(bdi(name), `${what}: x ${x}, y ${y}, width ${w}, height ${hh}`,
    note ? ` (${note})` : "");
}

/** The key prompt; `reason` is a sentence, or the service's 401/403 refusal. */
function askKey(reason) {
  const dialog = $("key-dialog");
  $("key-reason").textContent = typeof reason === "string" ? reason : reason?.status === 403
    ? `The service did not accept the key (${reason.message}). Enter a valid key; it is kept for this tab only.`
    : "This foveal service needs an API key. Enter the key you were given; it is kept for this tab only.";
  $("key-input").value = "";
  return new Promise((resolve) => {
    const done = (value) => {
      dialog.removeEventListener("close", onClose);
      $("key-cancel").removeEventListener("click", onCancel);
      resolve(value);
    };
    const onClose = () => done(dialog.returnValue === "ok" ? $("key-input").value.trim() || null : null);
    const onCancel = () => { dialog.close("cancel"); };
    dialog.addEventListener("close", onClose);
    $("key-cancel").addEventListener("click", onCancel);
    dialog.showModal();
    $("key-input").focus();
    $("key-button").hidden = false;
  });
}

// --------------------------------------------------------------------------------------------------- creatives

const current = () => state.creatives[state.active];
const loads = { A: 0, B: 0 }; // files chosen per slot: a slower earlier one never replaces a later one

function isImageFile(file) {
  return ACCEPTED.includes(file.type) || /\.(png|jpe?g|webp)$/i.test(file.name);
}

/** Decode, predict and show a creative as A or B. */
async function loadCreative(which, file) {
  clearError();
  if (!isImageFile(file)) {
    showError(bdi(file.name), " is not a PNG, JPEG or WebP image; choose a creative in one of those formats.");
    return;
  }
  if (!file.size) { // nothing to decode or to send
    showError(bdi(file.name), " is empty (0 bytes); choose the creative's image file itself.");
    return;
  }
  const load = ++loads[which];
  const started = performance.now();
  performance.mark("foveal:file");
  status("Predicting attention on ", bdi(file.name), "…");
  // The upload starts at once; the browser decodes the image for display while the service predicts.
  const prediction = api.predictMap(file);
  prediction.catch(() => {}); // awaited below, unless the image cannot even be decoded here
  const remembered = remembering(file); // the boxes this browser kept for these very bytes, read meanwhile
  let bitmap;
  try {
    bitmap = await createImageBitmap(file);
  } catch {
    // The browser refuses an image past its own size limit as it refuses a corrupt one: the service's refusal of
    // its size, when that is the reason, says what to do ("save it again" would not help).
    const tooLarge = await prediction.then(() => null, (err) => (TOO_LARGE.includes(err.code) ? err : null));
    if (loads[which] !== load) return;
    showError(bdi(file.name), tooLarge ? `: ${tooLarge.message}` : " could not be read as an image (corrupt, or "
      + "not really a PNG, JPEG or WebP); save it again or choose another.");
    status("");
    return;
  }
  if (loads[which] !== load) { // another file was chosen meanwhile
    bitmap.close();
    return;
  }
  const { width, height } = bitmap;
  const { hash, kept } = await remembered;
  if (loads[which] !== load) {
    bitmap.close();
    return;
  }
  const creative = {
    file, bitmap, width, height, rgba: null, map: null, pixels: null, hash,
    elements: [], proposals: [], format: null, served: undefined, servedKey: null, local: null,
  };
  const previous = state.creatives[which];
  const template = previous ?? (which === "B" ? state.creatives.A : null);
  const twin = twinOf(which, hash);
  const restored = keptElements(kept, width, height);
  if (twin) { // the same image as the other creative: one image has one set of boxes, shown and kept for both
    creative.elements = twin.elements;
    creative.format = twin.format;
    creative.twin = which === "A" ? "B" : "A";
  } else if (restored) { // this image's own boxes, as they were left, before any carried from another creative
    creative.elements = restored;
    creative.format = kept.format;
    creative.restored = restored.length;
  } else if (template) {
    creative.elements = carryElements(template, width, height);
    creative.leftOut = template.elements.length - creative.elements.length;
  }
  // A declared format describes images of the size it came with; a creative of another size has its own. A new B
  // of A's size is a variant of A's format, as `foveal compare` reads one element file for both.
  if (!twin && !restored && template && template.width === width && template.height === height) {
    creative.format = template.format;
  }
  state.creatives[which] = creative;
  state.active = which;
  leaveCreative();
  refresh();
  creative.rgba = imagePixels(bitmap, width, height);
  try {
    const map = await prediction;
    if (map.width !== width || map.height !== height) {
      // Chromium ignores a WebP's EXIF orientation, which the service applies: rotated pixels read the same in both.
      const turned = map.width === height && map.height === width ? " (an EXIF rotation the browser ignores)" : "";
      throw new Error(`the service reads it as ${map.width}×${map.height} but this browser as ${width}×${height}`
        + `${turned}; save it with the rotation applied to its pixels, or as PNG or JPEG, and upload that`);
    }
    if (state.creatives[which] !== creative) return; // replaced while predicting
    creative.map = new AttentionMap(map.data, map.height, map.width);
    creative.provenance = map.provenance;
    // Kept once the service has taken it: a reload shows it again with its boxes (carried ones included).
    rememberBoxes(creative);
  } catch (err) {
    if (state.creatives[which] !== creative) return; // replaced while predicting
    state.creatives[which] = previous;
    state.active = previous || which === "A" ? which : "A";
    showError(bdi(file.name), `: ${err.message}`);
    status("");
    refresh();
    return;
  }
  refresh();
  // Overlay drawn and element scores shown: measured once the frame holding them has been produced.
  requestAnimationFrame(() => setTimeout(() => {
    performance.measure("foveal:drawn", "foveal:file");
    const ms = performance.now() - started;
    const leftOut = creative.leftOut ? ` · ${creative.leftOut} element(s) did not fit this image and were left out`
      : "";
    const restoredNote = creative.twin ? ` · the same image as ${creative.twin}: one set of boxes, shown for both`
      : creative.restored ? ` · its ${creative.restored} element box(es) restored from this browser` : "";
    status(bdi(file.name), `: ${width}×${height}, attention predicted and scored in ${ms.toFixed(0)} ms${leftOut}`
      + restoredNote);
    // The whole-map numbers (focus, top-10% share) take a pass over every pixel: after the first frame.
    mapStatistics(creative.map);
    if (current() === creative) refreshScores();
    document.body.dataset.ready = String(Number(document.body.dataset.ready || 0) + 1);
  }));
  // The full scores now, not after the debounce; not beside the map either: on a small CPU a second prediction
  // running with the first would delay the overlay, the part a person waits for.
  serveScores(which);
  scheduleServer();
}

/** {hash, kept}: the file's content hash and the boxes this browser kept for it (null when none or unreadable). */
async function remembering(file) {
  try {
    const hash = await contentHash(file);
    return { hash, kept: await savedBoxes(hash) };
  } catch {
    return { hash: null, kept: null };
  }
}

/** The other creative (of A and B) when it is this very image (the same content hash), else null. */
function twinOf(which, hash) {
  const other = state.creatives[which === "A" ? "B" : "A"];
  return hash && other?.hash === hash ? other : null;
}

/** Kept boxes as elements of a width×height image, or null when there are none that fit (then none are used). */
function keptElements(kept, width, height) {
  if (!kept || kept.width !== width || kept.height !== height || !Array.isArray(kept.elements)) return null;
  try {
    const elements = kept.elements.map((e) => makeElement(e.name, e.kind, e.box, width, height));
    checkElements(elements);
    return elements;
  } catch {
    return null;
  }
}

let forgotten = false; // Forget saved work was pressed and nothing has been kept since
let lastKept = null; // the creative A last kept as the one to open after a reload

/**
 * Keep a creative's boxes in this browser, under its content hash (once the service has taken the image), and A as
 * the creative a reload opens on. The first change after Forget saved work keeps what is on screen again: both
 * creatives' boxes and creative A, not only the boxes just changed.
 */
function rememberBoxes(c) {
  if (!c?.hash || !c.map) return;
  const again = forgotten
    ? [state.creatives.A, state.creatives.B].filter((k) => k?.hash && k.map && k.hash !== c.hash) : [];
  forgotten = false;
  for (const k of [c, ...again]) {
    saveBoxes(k.hash, { name: k.file.name, width: k.width, height: k.height, format: k.format, elements: k.elements });
  }
  const a = state.creatives.A;
  if (a?.hash && a.map && lastKept !== a) { // the file itself, once per creative: it may be megabytes
    lastKept = a;
    saveLast(a.file, a.hash);
  }
}

/**
 * Boxes another tab of this page kept for a creative shown here too: taken as they now stand, so that this tab's
 * next change keeps them with it, not its own older list (a box deleted there would come back). A drag under way
 * here keeps its own, to be kept when it ends.
 */
function takeSavedBoxes(record) {
  for (const which of ["A", "B"]) {
    const c = state.creatives[which];
    if (!c?.map || c.hash !== record.hash || c.beforeDrag) continue;
    const elements = keptElements(record, c.width, c.height);
    const same = JSON.stringify(elementFile(elements ?? [], record.format))
      === JSON.stringify(elementFile(c.elements, c.format));
    if (!elements || same) continue;
    c.format = record.format;
    if (c === current()) {
      if (!elements.some((e) => e.name === state.selected)) state.selected = null;
      setElements(elements, false);
    } else {
      c.elements = elements;
      c.served = undefined;
      scheduleServer();
    }
    status("The boxes of ", bdi(c.file.name), ` (${which}) were changed in another tab; shown here as they are now.`);
  }
}

/** The creative last shown as A, shown again with its boxes (a reload, a crashed tab), unless one is chosen first. */
async function restoreLast() {
  const file = await lastCreative();
  if (file && !loads.A && !state.creatives.A) await loadCreative("A", file);
}

/** Whether the person confirms forgetting: a modal dialog that says what goes, focus on keeping it (Enter keeps). */
async function confirmForget() {
  const count = await savedCount();
  const what = count === null ? "the element boxes of every creative you worked on here"
    : count === 1 ? "the element boxes of 1 creative" : `the element boxes of ${count} creatives (all of them, not `
      + "only the one shown)";
  $("forget-what").textContent = `This browser keeps ${what} and the last creative, so that a reload finds them. `
    + "Forgetting deletes them all and cannot be undone; what is on screen stays.";
  const dialog = $("forget-dialog");
  if (dialog.open) return false; // a second click while the count was read: the one dialog answers the first
  dialog.returnValue = ""; // Escape leaves the last answer standing otherwise
  dialog.showModal();
  $("forget-cancel").focus();
  await new Promise((resolve) => dialog.addEventListener("close", resolve, { once: true }));
  return dialog.returnValue === "forget";
}

/** Forget saved work, once confirmed: every creative's boxes and the last creative go; the screen stays. */
async function forgetWork() {
  if (!await confirmForget()) return;
  if (await forget()) {
    forgotten = true;
    lastKept = null;
    status("Saved work forgotten: this browser no longer keeps any creative or box; what you change "
      + "next is kept again.");
  } else {
    showError("This browser's saved work could not be forgotten; clear this site's data in the browser's settings.");
  }
}

/** Another creative is shown: the what-if edits and result and the box line, all of the one before, go. */
function leaveCreative() {
  dropEdits(); // by element name: the next creative may have elements of the same names
  dropSearch();
  $("box-status").textContent = "";
}

/**
 * Elements of another creative carried onto a new one (scaled when the size differs); one that rounds to nothing
 * or onto the box of one already carried is left out (the status line counts them).
 */
function carryElements(from, width, height) {
  const sx = width / from.width;
  const sy = height / from.height;
  const out = [];
  const boxes = new Set();
  for (const e of from.elements) {
    const [x, y, w, hh] = e.box;
    try {
      const box = sx === 1 && sy === 1 ? e.box : [x * sx, y * sy, w * sx, hh * sy];
      const carried = makeElement(e.name, e.kind, box, width, height);
      if (boxes.has(carried.box.join())) continue;
      boxes.add(carried.box.join());
      out.push(carried);
    } catch {
      // Too small for the new image: left out.
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------- elements

/** The current creative's boxes become `elements`, kept in this browser unless `keep` is false (taken from it). */
function setElements(elements, keep = true) {
  // A what-if edit is kept by name, as far as it still fits its element's box (moved, resized or imported anew);
  // an element that is gone takes its edit with it.
  for (const [name, g] of state.ghosts) {
    const e = elements.find((el) => el.name === name);
    if (e) fitGhost(current(), e, g);
    else state.ghosts.delete(name);
  }
  clearErrorIf(noFreeBox(current())); // boxes changed: that may no longer be true
  current().elements = elements;
  const twin = twinOf(state.active, current().hash);
  if (twin) { // one image, one set of boxes: the other view of it shows them too
    twin.elements = elements;
    twin.format = current().format;
    twin.served = undefined;
  }
  delete current().beforeDrag; // a change made during a drag (a box deleted) is not undone when the drag ends
  current().served = undefined;
  if (keep) rememberBoxes(current());
  $("whatif-result").hidden = true; // its before/after shares were of the boxes just replaced
  whatifSeq++; // and an answer still on its way is of those boxes too
  dropSearch(); // a search's positions too
  refresh();
  scheduleServer();
}

/** A drawn box becomes an element: its name field gets focus, to be named at once. */
function createElement(box) {
  const c = current();
  if (!c) return;
  const name = addElement(box);
  if (!name) return;
  const input = document.querySelector(`#elements-table tr[data-name="${CSS.escape(name)}"] input`);
  input?.focus();
  input?.select();
}

/** A new element named "element N" on `box`, selected; null (and the reason shown) when another holds the box. */
function addElement(box) {
  const c = current();
  const name = freshName(c.elements);
  const elements = [...c.elements, { name, kind: "other", box }];
  try {
    checkElements(elements);
  } catch (err) {
    showError(err.message);
    return null;
  }
  state.selected = name;
  setElements(elements);
  announceBox(name, box, "added");
  return name;
}

function noFreeBox(c) {
  return `Every box a ${c.width}×${c.height} image can hold is already an element's; `
    + "move or resize one, or remove it, first.";
}

/** The Add element button: a box of a default size, focused, so the arrow keys move and resize it at once. */
function addDefaultElement() {
  const c = current();
  if (!c || state.whatif) return;
  const box = freeBox(c.elements, c.width, c.height);
  if (!box) {
    showError(noFreeBox(c));
    return;
  }
  clearError();
  const name = addElement(box);
  document.querySelector(`#boxes .box[data-name="${CSS.escape(name)}"]`)?.focus();
}

function changeBox(name, box, final) {
  const c = current();
  if (state.whatif) {
    changeGhost(name, box, final);
    return;
  }
  if (!final) {
    c.beforeDrag ??= c.elements; // what a drag that ends refused goes back to
    c.elements = c.elements.map((e) => (e.name === name ? { ...e, box } : e));
    refreshScores();
    return;
  }
  if (c.beforeDrag) {
    c.elements = c.beforeDrag;
    delete c.beforeDrag;
  }
  setBox(name, box);
}

/** An element's box changed for good (a drag ended, a key press, a typed coordinate): checked, then re-scored. */
function setBox(name, box, note = "") {
  const c = current();
  const elements = c.elements.map((e) => (e.name === name ? { ...e, box } : e));
  try {
    checkElements(elements);
  } catch (err) {
    showError(err.message);
    refresh();
    scheduleServer(); // a drag's boxes may have been asked for meanwhile: the service's scores of these boxes
    return;
  }
  setElements(elements);
  announceBox(name, box, note);
}

const BOX_FIELDS = ["x", "y", "width", "height"];

/** A coordinate typed in the element list: x or y moves the box, width or height resizes it, as the keys do. */
function typeCoordinate(name, index, text) {
  const c = current();
  const e = c?.elements.find((el) => el.name === name);
  if (!e) return;
  const value = text.trim() ? Number(text) : NaN;
  if (!Number.isFinite(value)) {
    showError(`The ${BOX_FIELDS[index]} of `, bdi(name),
      ` must be a number of image pixels; it stays ${e.box[index]}.`);
    refresh();
    return;
  }
  clearError();
  const wanted = Math.round(value); // whole pixels, as a drag gives
  const delta = wanted - e.box[index];
  const box = index < 2 ? moveBox(e.box, index === 0 ? delta : 0, index === 1 ? delta : 0, c.width, c.height)
    : resizeBox(e.box, index === 2 ? delta : 0, index === 3 ? delta : 0, c.width, c.height);
  state.selected = name;
  const note = box[index] === wanted ? "" : `${BOX_FIELDS[index]} ${wanted} kept to ${box[index]}: a box stays `
    + `inside the ${c.width}×${c.height} image and at least 1 px wide and high`;
  if (box.every((v, i) => v === e.box[i])) {
    refresh(); // the field shows the box's value again
    announceBox(name, box, note);
  } else {
    setBox(name, box, note);
  }
}

/**
 * The ✕ of a row in the element list: the row goes, and focus moves to the ✕ of the row that took its place (after
 * the last row, to Add element), not back to the top of the page.
 */
function removeListed(name) {
  const rows = $("elements-table").tBodies[0].rows;
  const index = [...rows].findIndex((tr) => tr.dataset.name === name);
  removeElement(name);
  const next = rows[Math.min(index, rows.length - 1)]?.querySelector("button");
  (next ?? ($("add-element").disabled ? $("import-elements") : $("add-element"))).focus();
}

function removeElement(name) {
  if (state.selected === name) state.selected = null;
  setElements(current().elements.filter((e) => e.name !== name));
  $("box-status").replaceChildren(bdi(name), " removed");
}

/** Why element `old` cannot be renamed `name` (trimmed), as the message's parts, or null when it can. */
function nameRefusal(old, name) {
  if (!name) return ["An element needs a name; the old name was kept."];
  try {
    checkName(name, "the new name");
  } catch (err) {
    return [err.message, "; the old name was kept."];
  }
  if (name !== old && current().elements.some((e) => e.name === name)) {
    return [`Another element is already called ${JSON.stringify(name)}; names must be unique.`];
  }
  return null;
}

function renameElement(old, name) {
  clearTimeout(draftTimer);
  name = name.trim();
  const refused = nameRefusal(old, name);
  if (refused) {
    showError(...refused);
    rememberBoxes(current()); // the names as they are, in place of a typed one kept meanwhile
    refresh();
    return;
  }
  clearError();
  if (state.selected === old) state.selected = name;
  if (state.ghosts.has(old)) { state.ghosts.set(name, state.ghosts.get(old)); state.ghosts.delete(old); }
  setElements(current().elements.map((e) => (e.name === old ? { ...e, name } : e)));
}

const DRAFT_DELAY_MS = 300;
let draftTimer = 0;

/**
 * A name being typed in the list, not confirmed yet (no Enter, focus still in its field), kept as if it were, so that
 * a reload or a closed tab does not lose it: a moment after the typing stops, and when the page is hidden or left.
 * One that would be refused keeps the names as they are.
 */
function keepDraft() {
  clearTimeout(draftTimer);
  const field = document.activeElement;
  const c = current();
  if (!c?.hash || !c.map || !field?.matches("#elements-table input.name")) return;
  const old = field.closest("tr").dataset.name;
  const name = field.value.trim();
  if (name === old || nameRefusal(old, name)) {
    rememberBoxes(c);
    return;
  }
  rememberBoxes({ ...c, elements: c.elements.map((e) => (e.name === old ? { ...e, name } : e)) });
}

function setKind(name, kind) {
  setElements(current().elements.map((e) => (e.name === name ? { ...e, kind } : e)));
}

async function importElements(file) {
  clearError();
  const c = current();
  if (!c) {
    showError("Upload a creative first: element boxes are resolved against its size.");
    return;
  }
  let text;
  try { // as the CLI: a file that is not UTF-8 is refused, not read with replacement characters
    text = new TextDecoder("utf-8", { fatal: true }).decode(await file.arrayBuffer());
  } catch {
    showError(`${file.name}: element file is not UTF-8 text; save it as UTF-8`);
    return;
  }
  try {
    const spec = parseElementFile(text, c.width, c.height, file.name);
    c.format = spec.format;
    state.selected = null;
    setElements(spec.elements);
    status(`Imported ${spec.elements.length} element(s) from `, bdi(file.name));
  } catch (err) {
    if (!(err instanceof ElementError)) throw err;
    showError(err.message);
  }
}

// ------------------------------------------------------------------------------------------------- proposals

let detecting = false; // one detection at a time (each takes every core of the service)

/** Ask the service's detector for elements; they are offered, not applied, until the user accepts them. */
async function proposeElements() {
  const c = current();
  if (!c?.map) return;
  clearError();
  const asking = "Detecting elements…";
  status(asking);
  const refocus = keepFocus($("detect"));
  detecting = true;
  $("detect").disabled = true;
  try {
    const doc = await api.detect(c.file);
    const spec = doc.elements?.length ? parseElementFile(JSON.stringify(doc), c.width, c.height, "proposed elements")
      : { elements: [] };
    c.proposals = spec.elements.map((e, i) => ({ ...e, confidence: doc.elements[i].confidence ?? null,
      text: doc.elements[i].text ?? null }));
    c.offer = c.proposals.length ? `${c.proposals.length} element(s) proposed: accept or dismiss each`
      : "No element was found automatically; draw the boxes yourself.";
    if (current() === c) status(c.offer); // not of a creative removed or switched away from meanwhile
  } catch (err) {
    if (current() === c) showError(`detection: ${err.message}`);
  } finally {
    clearStatusIf(asking);
    detecting = false;
    refresh();
    refocus();
  }
}

function acceptProposals(indices) {
  const c = current();
  let elements = [...c.elements];
  for (const i of indices) {
    const p = c.proposals[i];
    if (elements.some((e) => e.box.join() === p.box.join())) continue; // already an element
    const taken = new Set(elements.map((e) => e.name));
    let name = p.name;
    for (let k = 2; taken.has(name); k++) name = `${p.name} ${k}`;
    elements.push({ name, kind: p.kind, box: [...p.box] });
  }
  c.proposals = c.proposals.filter((_, i) => !indices.includes(i));
  if (!c.proposals.length) clearStatusIf(c.offer);
  setElements(elements);
}

function dismissProposals(indices) {
  const c = current();
  c.proposals = c.proposals.filter((_, i) => !indices.includes(i));
  if (!c.proposals.length) clearStatusIf(c.offer);
  refresh();
}

/**
 * After a proposal is accepted or dismissed, focus goes to the same button of the proposal that took its place (or
 * the one before), or to Propose elements when none is left: not back to the top of the page.
 */
function focusProposal(index, label) {
  const items = $("proposal-list").children;
  const item = items[Math.min(index, items.length - 1)];
  (item ? [...item.querySelectorAll("button")].find((b) => b.textContent === label) : $("detect")).focus();
}

function refreshProposals(c) {
  const proposals = c?.proposals ?? [];
  $("proposals").hidden = !proposals.length;
  $("proposal-list").replaceChildren(...proposals.map((p, i) => h("li", { dataset: { kind: p.kind } },
    h("span", { class: "swatch" }),
    h("span", { class: "what" }, `${p.kind} "`, bdi(p.name), '"', p.text ? ` · ${JSON.stringify(p.text)}` : "",
      p.confidence === null ? "" : ` · ${Math.round(100 * p.confidence)}%`),
    h("button", { type: "button", class: "small", onclick: singleClick(() => {
      acceptProposals([i]);
      focusProposal(i, "Accept");
    }) }, "Accept"),
    h("button", { type: "button", class: "small", onclick: singleClick(() => {
      dismissProposals([i]);
      focusProposal(i, "Dismiss");
    }) }, "Dismiss"))));
  const layer = $("proposal-boxes");
  layer.replaceChildren(...(state.whatif ? [] : proposals).map((p) => {
    const box = h("div", { class: "box proposal", dataset: { kind: p.kind } },
      h("span", { class: "box-label" }, bdi(p.name), "?"));
    editor.place(box, p.box);
    return box;
  }));
}

// ----------------------------------------------------------------------------------------------------- what-if

/** The box an element would have after its what-if edit (scale about its centre, then move). */
function ghostBox(e, g) {
  const [x, y, w, hh] = e.box;
  const nw = Math.max(1, roundHalfUp(w * g.factor));
  const nh = Math.max(1, roundHalfUp(hh * g.factor));
  return [x + Math.floor((w - nw) / 2) + g.dx, y + Math.floor((hh - nh) / 2) + g.dy, nw, nh];
}

function changeGhost(name, box, final) {
  const c = current();
  const e = c.elements.find((el) => el.name === name);
  const g = { ...(state.ghosts.get(name) ?? { dx: 0, dy: 0, factor: 1 }) };
  const before = ghostBox(e, g);
  if (box[2] !== before[2] || box[3] !== before[3]) {
    // A scale keeps proportions: the side that changed sets it (a key press changes one), rounded the way it
    // went so that a 1 px step never rounds back to the factor before.
    const side = box[2] !== before[2] ? 2 : 3;
    const ratio = (100 * box[side]) / e.box[side];
    g.factor = Math.max(0.1, (box[side] > before[side] ? Math.ceil(ratio - 1e-9) : Math.floor(ratio + 1e-9)) / 100);
  } else {
    const base = ghostBox(e, { ...g, dx: 0, dy: 0 });
    g.dx = box[0] - base[0];
    g.dy = box[1] - base[1];
  }
  fitGhost(c, e, g);
  if (final) {
    refresh();
    announceBox(name, ghostBox(e, g));
  }
}

/**
 * The edited element stays inside the image (the service refuses an edit that leaves it): a scale that would not
 * fit is cut to one that does, and a scale about the centre that would cross an edge takes the move that keeps it in.
 */
function fitGhost(c, e, g) {
  const most = Math.floor(100 * Math.min(c.width / e.box[2], c.height / e.box[3])) / 100;
  g.factor = Math.min(most, g.factor);
  const [x, y, w, hh] = ghostBox(e, { ...g, dx: 0, dy: 0 });
  g.dx = Math.min(c.width - x - w, Math.max(-x, g.dx));
  g.dy = Math.min(c.height - y - hh, Math.max(-y, g.dy));
  state.ghosts.set(e.name, g);
}

/**
 * The what-if edits, in the order the service applies them, each step inside the image: a shrink before the
 * move (it stays within the old box), a growth after it (it holds the moved box). Either order ends on ghostBox.
 */
function edits() {
  const out = [];
  for (const e of current()?.elements ?? []) {
    const g = state.ghosts.get(e.name);
    if (!g) continue;
    const scale = g.factor !== 1 ? [{ op: "scale", element: e.name, factor: g.factor }] : [];
    const move = g.dx || g.dy ? [{ op: "move", element: e.name, dx: g.dx, dy: g.dy }] : [];
    out.push(...(g.factor > 1 ? [...move, ...scale] : [...scale, ...move]));
  }
  return out;
}

const EDIT_FIELDS = ["whatif-dx", "whatif-dy", "whatif-scale"];

/**
 * The what-if edit of one element as numbers (move right, move down, scale), for the selected element: a way to
 * make an edit without dragging (WCAG 2.5.7), with a click on the fields' steppers or by typing.
 */
/** `select` offering the element `names`, its options remade only when they differ (a choice open stays open). */
function elementPicker(select, names) {
  if (JSON.stringify([...select.options].map((o) => o.value)) !== JSON.stringify(names)) {
    select.replaceChildren(...names.map((name) => h("option", { value: name }, name)));
  }
  return select;
}

function refreshEditFields(c) {
  const names = c?.elements.map((e) => e.name) ?? [];
  $("whatif-fields").hidden = !state.whatif || !names.length;
  if ($("whatif-fields").hidden) return;
  const select = elementPicker($("whatif-element"), names);
  select.value = names.includes(state.selected) ? state.selected : names[0];
  const g = state.ghosts.get(select.value) ?? { dx: 0, dy: 0, factor: 1 };
  [g.dx, g.dy, Math.round(100 * g.factor)].forEach((v, i) => showValue($(EDIT_FIELDS[i]), v));
}

/** An edit typed (or stepped) in the what-if fields: recorded as a drag or the keys record it, inside the image. */
function typeEdit(event) {
  committed(event.target);
  const c = current();
  const name = $("whatif-element").value;
  const e = c?.elements.find((el) => el.name === name);
  if (!e) return;
  const [dx, dy, scale] = EDIT_FIELDS.map((id) => ($(id).value.trim() ? Number($(id).value) : NaN));
  if (![dx, dy, scale].every(Number.isFinite) || scale <= 0) {
    showError("A what-if edit needs a number of pixels to move by and a scale above 0 %; the edit of ", bdi(name),
      " stays as it was.");
    refresh();
    return;
  }
  clearError();
  const g = { dx: Math.round(dx), dy: Math.round(dy), factor: Math.max(0.1, Math.round(scale) / 100) };
  const wanted = [g.dx, g.dy, g.factor].join();
  fitGhost(c, e, g);
  state.selected = name;
  refresh(); // the fields show the edit as kept inside the image
  announceBox(name, ghostBox(e, g), [g.dx, g.dy, g.factor].join() === wanted ? ""
    : "kept inside the image: the service refuses an edit that leaves it");
}

let whatifSeq = 0; // moves on when the edits are dropped: a what-if still under way is then not shown
let whatifRunning = false; // one what-if at a time: a change meanwhile must not offer a second

function refreshWhatifRun() {
  $("whatif-run").disabled = !edits().length || !current()?.map || whatifRunning;
}

/** The what-if edits and their result go (Reset edits, another creative shown). */
function dropEdits() {
  state.ghosts.clear();
  whatifSeq++;
  $("whatif-result").hidden = true;
}

/** A what-if document (statement, shares before and after, verdict, notes) and its edited creative, shown. */
function showWhatif(doc, edited) {
  renderWhatif({ verdict: $("whatif-verdict"), table: $("whatif-table").tBodies[0], notes: $("whatif-notes") }, doc);
  const image = $("whatif-image");
  if (image.src) URL.revokeObjectURL(image.src);
  image.src = URL.createObjectURL(edited);
  state.edited = { blob: edited, name: `${stemOf(current())}.edited.png` }; // for Download edited creative
  $("whatif-figure").hidden = false;
  $("whatif-result").hidden = false;
}

async function runWhatif() {
  const c = current();
  const list = edits();
  if (!c?.map || !list.length) return;
  clearError();
  const asking = "Re-scoring the edited creative…";
  status(asking);
  const refocus = keepFocus($("whatif-run"));
  whatifRunning = true;
  refreshWhatifRun();
  const seq = whatifSeq;
  try {
    // One request: the document carries the edited creative (asking for each apart predicted everything twice).
    const doc = await api.whatif(c.file, elementFile(c.elements, c.format), list);
    if (seq !== whatifSeq) return;
    showWhatif(doc, editedImage(doc));
    status("What-if scored.");
  } catch (err) {
    if (seq === whatifSeq) showError(`what-if: ${err.message}`);
  } finally {
    clearStatusIf(asking);
    whatifRunning = false;
    refreshWhatifRun();
    refocus();
  }
}

// --------------------------------------------------------------------------------------------- position search

let searchSeq = 0; // moves on when the boxes or the creative change: a search still under way is then not shown
let searching = false; // one search at a time (each is a prediction per position)
let searchCancel = null; // stops the search under way: the service stops it too, once its client has gone

/** The search's result goes (the boxes or the creative it was of changed), and a search still under way stops. */
function dropSearch() {
  searchSeq++;
  state.search = null;
  searchCancel?.abort();
}

/**
 * A refused or unfinished search in the page's words: the service's advice names its API fields (step, max_overlap)
 * where the page offers a grid, and a search past the service's deadline would be past it again if asked again.
 */
function searchMessage(err) {
  if (err.code === "deadline_exceeded") {
    return "the search did not finish within the service's time limit (each position tried is one prediction); "
      + "choose a coarser grid, or start `foveal serve` with a longer --timeout-ms";
  }
  return err.message.replace(/^(search (['"]).*?\2|field 'search'): /, "") // the element is named before it
    .replace("raise max_overlap, use a finer grid or step, or box that content as an element",
      "choose a finer grid, or box that content as an element")
    .replace("use a smaller step or a finer grid", "choose a finer grid")
    .replace(/use a coarser grid or a larger step|use a larger step or a smaller grid/, "choose a coarser grid");
}

/** Try the chosen element at each point of the chosen grid (the service's search), best places first. */
async function runSearch() {
  const c = current();
  const name = $("search-element").value;
  if (!c?.map || !name || searching) return;
  clearError();
  const grid = Number($("search-grid").value);
  const asking = `Trying ${name} at up to ${grid * grid} positions…`;
  status("Trying ", bdi(name), ` at up to ${grid * grid} positions…`);
  const refocus = keepFocus($("search-run"));
  dropSearch();
  const seq = searchSeq;
  const cancel = new AbortController();
  searchCancel = cancel;
  searching = true;
  refresh();
  try {
    const doc = await api.search(c.file, elementFile(c.elements, c.format), { element: name, grid: [grid, grid],
      top: 3 }, cancel.signal);
    if (seq !== searchSeq) return;
    state.search = { creative: c, name, doc };
    const tried = doc.search.positions.tried;
    status(bdi(name), `: ${tried} position(s) tried, the best ${doc.search.best.length} shown dotted on the creative`);
  } catch (err) {
    if (seq === searchSeq) showError("position search of ", bdi(name), `: ${searchMessage(err)}`);
  } finally {
    if (searchCancel === cancel) searchCancel = null;
    if (cancel.signal.aborted && $("status").textContent === asking) {
      status("Position search of ", bdi(name), " stopped: the boxes or the creative it was of changed.");
    }
    clearStatusIf(asking);
    searching = false;
    refresh();
    refocus();
  }
}

/**
 * The best place becomes the element's what-if move (edit mode on). The search has predicted that very edit: when
 * it is the only one, its result is shown at once, without asking the service again.
 */
function applyBestPosition() {
  const c = current();
  const s = state.search;
  const e = s?.creative === c ? c.elements.find((el) => el.name === s.name) : null;
  const best = s?.doc.search.best[0];
  if (!e || !best) return;
  whatifSeq++; // a what-if under way was of the edits before
  fitGhost(c, e, { dx: best.dx, dy: best.dy, factor: 1 });
  state.whatif = true;
  $("whatif-mode").checked = true;
  state.selected = e.name;
  if (edits().length === 1) {
    const outcome = s.doc.best_edit;
    showWhatif({ ...outcome, notes: [...outcome.notes, ...(s.doc.notes ?? [])] }, editedImage(s.doc));
  } else {
    $("whatif-result").hidden = true; // of other edits; Re-score edited creative scores them all
  }
  refresh();
  announceBox(e.name, ghostBox(e, state.ghosts.get(e.name)), "the best position, as a what-if move");
}

const signed = (v) => `${v >= 0 ? "+" : "−"}${Math.abs(v)}`;

function refreshSearch(c) {
  const names = c?.elements.map((e) => e.name) ?? [];
  const select = elementPicker($("search-element"), names);
  if (names.includes(state.selected)) select.value = state.selected;
  $("search-run").disabled = !c?.map || !names.length || searching;
  const s = state.search?.creative === c ? state.search : null;
  const e = s && c.elements.find((el) => el.name === s.name);
  $("search-result").hidden = !e;
  if (!e) {
    $("search-boxes").replaceChildren();
    return;
  }
  const { baseline, best, positions } = s.doc.search;
  const rejected = positions.rejected_overlap + positions.rejected_unboxed_content;
  $("search-summary").replaceChildren(bdi(e.name), ` holds ${pct(baseline.share)} where it is; ${positions.tried} `
    + `other position(s) tried${rejected ? ` (${rejected} left out: over another element or over unboxed content)`
      : ""}. The best:`);
  $("search-list").replaceChildren(...best.map((b) => h("li", {}, `${pct(b.share)} (${pp(b.delta_share)}) at x `
    + `${b.box[0]}, y ${b.box[1]}: a move by (${signed(b.dx)}, ${signed(b.dy)}) px`)));
  // Ghost boxes, each labelled with its rank and share; the one the element's what-if move already puts it on goes.
  const edited = state.whatif && state.ghosts.has(e.name) ? ghostBox(e, state.ghosts.get(e.name)).join() : null;
  $("search-boxes").replaceChildren(...best.filter((b) => b.box.join() !== edited).map((b) => {
    const box = h("div", { class: "box candidate", dataset: { kind: e.kind } },
      h("span", { class: "box-label" }, `#${b.rank} ${pct(b.share)}`));
    editor.place(box, b.box);
    return box;
  }));
}

// ------------------------------------------------------------------------------------------------ the service

let serverTimer = null;

function serverKey(c) {
  return JSON.stringify([elementFile(c.elements, c.format), state.norms, state.passPercentile]);
}

function scheduleServer() {
  clearTimeout(serverTimer);
  serverTimer = setTimeout(() => {
    for (const which of ["A", "B"]) serveScores(which);
    serveComparison();
  }, SERVER_DELAY_MS);
}

/** The service's score document for a creative's current elements (cached by elements + norms). */
async function serveScores(which) {
  const c = state.creatives[which];
  if (!c?.map || !c.elements.length) return null;
  const key = serverKey(c);
  if (c.servedKey === key && c.served) return c.served;
  const failure = c.failed ? `scores: ${c.failed.message}` : null;
  c.served = null;
  c.failed = null;
  if (state.active === which) refreshScores();
  const request = c.request?.key === key ? c.request.promise
    : api.score(c.file, elementFile(c.elements, c.format), {
      norms: state.norms || null, passPercentile: state.passPercentile, format: c.format,
    });
  c.request = { key, promise: request };
  try {
    const doc = await request;
    if (serverKey(c) === key) {
      c.served = doc;
      c.servedKey = key;
      if (failure) clearErrorIf(failure);
      if (state.active === which) refreshScores();
      performance.measure("foveal:served", "foveal:file"); // the service's percentiles and recommendations shown
    }
    return doc;
  } catch (err) {
    if (serverKey(c) === key && state.creatives[which] === c) {
      c.served = undefined;
      c.failed = { key, message: err.message, retry: canRetry(err) }; // shown in place of the service's numbers
      showError(`scores: ${err.message}`);
      refreshScores();
    }
    return null;
  } finally {
    if (c.request?.key === key) c.request = null;
  }
}

const mib = (bytes) => Number((bytes / 2 ** 20).toPrecision(3)); // as the service writes its limit

let compareSeq = 0;
let compareError = null; // the message a failed comparison showed, cleared once one succeeds

async function serveComparison() {
  const { A, B } = state.creatives;
  if (!A?.map || !B?.map) return;
  const seq = ++compareSeq;
  if (!A.elements.length || !B.elements.length) {
    delete $("ab").dataset.pending;
    if (compareError) clearErrorIf(compareError);
    noComparison(`${A.elements.length ? "B" : "A"} has no elements yet: draw or import them to compare.`);
    return;
  }
  $("ab").dataset.pending = "1"; // the last verdict stays, greyed, until this one arrives
  try {
    const doc = await api.compare(A.file, elementFile(A.elements, A.format), B.file, elementFile(B.elements, B.format),
      { allowFormatMismatch: state.allowMismatch });
    if (seq !== compareSeq) return;
    if (compareError) clearErrorIf(compareError);
    renderComparison({ verdict: $("verdict"), table: $("delta-table").tBodies[0], notes: $("ab-notes") }, doc);
  } catch (err) {
    if (seq !== compareSeq) return;
    // The service's advice names its API field; on the page, the field is the A/B section's checkbox. Its advice
    // for a body over the limit is "send a smaller image", and A and B, each taken alone, were not too large.
    const message = err.code === "format_mismatch"
      ? err.message.replace("set allow_format_mismatch", "tick \"compare different formats anyway\"")
      : err.code === "body_too_large"
        ? `${err.message.split(";")[0]}: A and B go in one request, ${mib(A.file.size + B.file.size)} MiB `
          + "together; save them smaller (as JPEG, or with fewer pixels), or start `foveal serve` with a larger "
          + "--max-body-mb"
        : err.message;
    compareError = `comparison: ${message}`;
    showError(compareError);
    noComparison(`No comparison: ${message}`, ...(canRetry(err)
      ? [" ", h("button", { type: "button", class: "small", onclick: (event) => {
        event.currentTarget.disabled = true; // one retry a click: a double click asked for two comparisons
        serveComparison();
      } }, "Retry")] : []));
  } finally {
    if (seq === compareSeq) delete $("ab").dataset.pending;
  }
}

/** B is gone: a comparison still under way is not shown, and the message refusing the pair is taken back. */
function dropComparison() {
  compareSeq++;
  delete $("ab").dataset.pending;
  if (compareError) clearErrorIf(compareError);
}

/** The A/B verdict replaced by why there is none: an earlier verdict must not stand for the current pair. */
function noComparison(...why) {
  $("verdict").className = "verdict";
  $("verdict").replaceChildren(...why);
  $("delta-table").tBodies[0].replaceChildren();
  $("ab-notes").textContent = "";
}

// ------------------------------------------------------------------------------------------------- rendering

function refresh() {
  const c = current();
  $("stage").classList.toggle("empty", !c);
  $("dropzone").hidden = Boolean(c);
  $("frame").hidden = !c;
  $("which").hidden = !state.creatives.B;
  document.querySelector(`input[name=which][value=${state.active}]`).checked = true;
  $("remove-b").hidden = !state.creatives.B;
  if (c) drawStage(c);
  $("legend").hidden = !c?.map || state.view === "image";
  renderElementList($("elements-table").tBodies[0], c?.elements ?? [], state.selected, {
    rename: renameElement, kind: setKind, remove: removeListed, box: typeCoordinate,
    select: (name) => { state.selected = name; refreshBoxes(); },
  }, c);
  $("add-element").disabled = !c || state.whatif;
  $("export-elements").disabled = !c?.elements.length; // an empty list is a file foveal score (and Import) refuses
  $("elements-empty").hidden = Boolean(c?.elements.length);
  refreshProposals(c);
  $("detect").disabled = !c?.map || detecting;
  refreshScores();
  refreshComparison();
  const list = edits();
  $("edits").replaceChildren(...list.map((e) => h("li", {}, `${e.op} `, bdi(e.element), e.op === "move"
    ? ` by (${e.dx >= 0 ? "+" : ""}${e.dx}, ${e.dy >= 0 ? "+" : ""}${e.dy}) px`
    : ` by ×${e.factor}`)));
  refreshWhatifRun();
  $("whatif-reset").disabled = !list.length;
  refreshEditFields(c);
  refreshSearch(c);
  refreshDownloads();
}

const downloading = new Set(); // kinds whose download is under way: a second click asks nothing again

function refreshDownloads() {
  const c = current();
  for (const button of document.querySelectorAll("[data-download]")) {
    const kind = button.dataset.download;
    const needsElements = ["json", "csv", "report"].includes(kind);
    button.disabled = !c?.map || (needsElements && !c.elements.length) || downloading.has(kind);
  }
}

/**
 * The size to show a small creative at, in CSS pixels, or null for its own size: enlarged (its pixels drawn as
 * squares) until its longer side is ENLARGED_SIDE, and a sliver (1×500) widened to MIN_SIDE, so that its boxes can
 * be seen, drawn and pointed at.
 */
function enlargedSize(width, height) {
  const scale = Math.max(1, ENLARGED_SIDE / Math.max(width, height));
  const size = [width, height].map((side) => Math.max(MIN_SIDE, side * scale));
  return scale > 1 || size[0] > width || size[1] > height ? size : null;
}

function drawStage(c) {
  const canvas = $("view");
  if (canvas.width !== c.width || canvas.height !== c.height) {
    canvas.width = c.width;
    canvas.height = c.height;
    const shown = enlargedSize(c.width, c.height);
    canvas.style.width = shown ? `${shown[0]}px` : "";
    canvas.style.height = shown ? `${shown[1]}px` : "";
    $("frame").classList.toggle("enlarged", Boolean(shown));
  }
  editor.setSize(c.width, c.height);
  // Painted only when the picture changed: a box selected, moved or renamed leaves it as it is, and repainting a
  // 6000×4000 photo takes a third of a second, which every key press on a box would wait for.
  const look = [c, c.map, state.view, state.opacity, state.cmap];
  if (!look.every((v, i) => v === state.paintedStage?.[i])) {
    state.paintedStage = look;
    const ctx = canvas.getContext("2d");
    if (!c.map) {
      ctx.drawImage(c.bitmap, 0, 0);
    } else {
      if (!c.pixels) c.pixels = ctx.createImageData(c.width, c.height);
      renderView(c.pixels, c.rgba, c.map, state.view, state.opacity, state.cmap);
      $("legend-bar").style.background = state.view === "map" ? "linear-gradient(to right, #000, #fff)"
        : gradientCss(state.cmap);
      $("legend-scale").textContent = `brightest = ${(c.map.max * c.width * c.height).toFixed(1)}× the average pixel`;
      ctx.putImageData(c.pixels, 0, 0);
    }
  }
  canvas.dataset.state = c.map ? state.view : "image-only";
  // The picture in words; its description (aria-describedby) is the chart's: each element's share.
  const shown = { overlay: "attention overlay on ", map: "attention map of ", image: "" }[c.map ? state.view : "image"];
  canvas.setAttribute("aria-label", `${shown}${c.file.name}, ${c.width}×${c.height} px: ${c.map
    ? `the brightest pixel holds ${(c.map.max * c.width * c.height).toFixed(1)}× the average pixel's attention`
    : "attention not predicted yet"}`);
}

function refreshBoxes() {
  const c = current();
  if (!c) return;
  const byName = new Map((c.local?.elements ?? []).map((e) => [e.name, e]));
  // Only the service's answer for these very boxes: during a drag the box moves on while the answer is older.
  const answered = c.served && c.servedKey === serverKey(c) ? c.served.elements : [];
  const served = new Map(answered.map((e) => [e.name, e]));
  const items = c.elements.map((e) => {
    if (state.whatif) {
      const g = state.ghosts.get(e.name) ?? { dx: 0, dy: 0, factor: 1 };
      return { ...e, box: ghostBox(e, g), dashed: true, label: " (what-if)" };
    }
    const s = byName.get(e.name);
    const score = served.get(e.name)?.score;
    const label = s ? ` ${pct(s.share)}${score == null ? "" : ` · ${score}`}` : "";
    return { ...e, label };
  });
  editor.render(items, state.selected);
}

function refreshScores() {
  const c = current();
  const root = { cards: $("creative-cards"), chart: $("chart"), table: $("scores-table").tBodies[0], notes: $("norm-notes"), recs: $("recs") };
  if (!c?.map) {
    for (const node of [root.cards, root.chart, root.table]) node.replaceChildren();
    root.notes.textContent = "";
    refreshBoxes();
    return;
  }
  c.local = scoreLocally(c.map, c.elements);
  const key = serverKey(c);
  const failed = c.failed?.key === key
    ? { message: c.failed.message, retry: c.failed.retry ? () => serveScores(state.active) : null } : null;
  const served = c.servedKey === key && c.served ? c.served : c.served === undefined ? undefined : null;
  renderScores(root, c.local, failed ? undefined : served ?? (c.elements.length ? null : undefined), state.selected,
    failed);
  if (!c.elements.length) root.recs.replaceChildren(h("li", { class: "meta" }, "Draw or import elements to score them."));
  refreshBoxes();
}

function refreshComparison() {
  const { A, B } = state.creatives;
  const show = Boolean(A?.map && B?.map);
  $("ab").hidden = !show;
  if (!show) return;
  if (state.paintedAB?.a !== A.map || state.paintedAB?.b !== B.map) {
    state.paintedAB = { a: A.map, b: B.map };
    paintSmall($("ab-a"), A, (img) => renderView(img, A.rgba, A.map, "overlay", 0.7, state.cmap));
    paintSmall($("ab-b"), B, (img) => renderView(img, B.rgba, B.map, "overlay", 0.7, state.cmap));
    $("ab-a").setAttribute("aria-label", `A: attention overlay on ${A.file.name}; shares per element in the table below`);
    $("ab-b").setAttribute("aria-label", `B: attention overlay on ${B.file.name}; shares per element in the table below`);
    const diff = differenceMap(A.map, B.map);
    paintSmall($("ab-diff"), B, (img) => renderDifference(img, B.rgba, diff));
  }
}

function paintSmall(canvas, c, fill) {
  canvas.width = c.width;
  canvas.height = c.height;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(c.width, c.height);
  fill(img);
  ctx.putImageData(img, 0, 0);
}

// ------------------------------------------------------------------------------------------------- downloads

/** The name a creative's downloads are saved under, less their suffix: "creative" for creative.png. */
const stemOf = (c) => c.file.name.replace(/\.[^.]+$/, "") || "creative";

async function download(kind) {
  const c = current();
  if (!c?.map || downloading.has(kind)) return;
  clearError();
  const stem = stemOf(c);
  const refocus = keepFocus(document.querySelector(`[data-download=${kind}]`));
  downloading.add(kind);
  refreshDownloads();
  try {
    if (kind === "overlay") return save(await overlayPng(c, state.opacity, state.cmap), `${stem}.overlay.png`);
    if (kind === "map") return save(await api.mapPng(c.file), `${stem}.map.png`);
    if (kind === "report") {
      const blob = await api.report(c.file, elementFile(c.elements, c.format), {
        norms: state.norms || null, passPercentile: state.passPercentile, format: c.format });
      return save(blob, `${stem}.report.html`);
    }
    const doc = await serveScores(state.active);
    if (!doc) return;
    if (kind === "json") save(new Blob([JSON.stringify(doc, null, 2)], { type: "application/json" }), `${stem}.scores.json`);
    else save(new Blob([scoresCsv(doc, stem)], { type: "text/csv" }), `${stem}.scores.csv`);
  } catch (err) {
    showError(`${kind} download: ${err.message}`);
  } finally {
    downloading.delete(kind);
    refreshDownloads();
    refocus();
  }
}

// ---------------------------------------------------------------------------------------------------- wiring

function wire() {
  for (const name of COLORMAPS) $("colormap").append(h("option", { value: name, selected: name === state.cmap }, name));
  $("file-a").addEventListener("change", (e) => { if (e.target.files[0]) loadCreative("A", e.target.files[0]); e.target.value = ""; });
  $("file-b").addEventListener("change", (e) => {
    if (!e.target.files[0]) return;
    if (!state.creatives.A?.map) showError("Upload creative A first; B is compared against it.");
    else loadCreative("B", e.target.files[0]);
    e.target.value = "";
  });
  $("remove-b").addEventListener("click", () => {
    status(""); // it may speak of B: its upload, its proposals
    state.creatives.B = null;
    dropComparison();
    state.active = "A";
    state.selected = null;
    leaveCreative();
    refresh();
    $("file-b").focus(); // Remove B is hidden now: focus stays on the A/B controls
  });
  for (const input of document.querySelectorAll("input[name=which]")) {
    input.addEventListener("change", () => {
      clearStatusIf(current()?.offer); // the other creative's proposals are not on screen
      state.active = input.value;
      state.selected = null;
      leaveCreative();
      refresh();
    });
  }
  const stage = $("stage");
  stage.addEventListener("dragover", (e) => { e.preventDefault(); stage.classList.add("dragover"); });
  stage.addEventListener("dragleave", () => stage.classList.remove("dragover"));
  stage.addEventListener("drop", (e) => {
    e.preventDefault();
    stage.classList.remove("dragover");
    const file = e.dataTransfer.files[0];
    if (file) loadCreative(state.creatives.B ? state.active : "A", file);
  });
  document.addEventListener("dragover", (e) => e.preventDefault());
  document.addEventListener("drop", (e) => e.preventDefault());
  for (const input of document.querySelectorAll("input[name=view]")) {
    input.addEventListener("change", () => { state.view = input.value; refresh(); });
  }
  $("opacity").addEventListener("input", (e) => {
    state.opacity = Number(e.target.value) / 100;
    e.target.setAttribute("aria-valuetext", `${e.target.value}%`);
    if (current()?.map) drawStage(current());
  });
  $("colormap").addEventListener("change", (e) => { state.cmap = e.target.value; state.paintedAB = null; refresh(); });
  $("add-element").addEventListener("click", addDefaultElement);
  $("import-elements").addEventListener("change", (e) => { if (e.target.files[0]) importElements(e.target.files[0]); e.target.value = ""; });
  $("export-elements").addEventListener("click", singleClick(() => {
    const c = current();
    if (!c) return;
    const text = `${JSON.stringify(elementFile(c.elements, c.format), null, 2)}\n`;
    save(new Blob([text], { type: "application/json" }), `${stemOf(c)}.json`);
  }));
  $("clear-elements").addEventListener("click", () => { if (current()) { state.selected = null; setElements([]); } });
  $("forget-work").addEventListener("click", forgetWork);
  $("elements-table").addEventListener("input", (e) => {
    if (e.target.matches("input.name")) {
      clearTimeout(draftTimer);
      draftTimer = setTimeout(keepDraft, DRAFT_DELAY_MS);
    }
  });
  document.addEventListener("visibilitychange", () => { if (document.hidden) keepDraft(); });
  window.addEventListener("pagehide", keepDraft);
  $("norms").addEventListener("change", (e) => { state.norms = e.target.value; refresh(); scheduleServer(); });
  $("pass-percentile").addEventListener("change", (e) => {
    const v = Number(e.target.value);
    if (!(v > 0 && v <= 100)) {
      showError(BAD_PASS_PERCENTILE);
      e.target.value = String(state.passPercentile);
      return;
    }
    clearErrorIf(BAD_PASS_PERCENTILE);
    state.passPercentile = v;
    refresh();
    scheduleServer();
  });
  $("ab-mismatch").addEventListener("change", (e) => { state.allowMismatch = e.target.checked; serveComparison(); });
  $("whatif-mode").addEventListener("change", (e) => { state.whatif = e.target.checked; refresh(); });
  $("whatif-element").addEventListener("change", (e) => { state.selected = e.target.value; refresh(); });
  for (const id of EDIT_FIELDS) $(id).addEventListener("change", typeEdit);
  $("whatif-run").addEventListener("click", runWhatif);
  $("whatif-reset").addEventListener("click", () => { dropEdits(); refresh(); });
  $("whatif-download").addEventListener("click", singleClick(() => save(state.edited.blob, state.edited.name)));
  $("search-element").addEventListener("change", (e) => { state.selected = e.target.value; refresh(); });
  $("search-run").addEventListener("click", runSearch);
  $("search-apply").addEventListener("click", applyBestPosition);
  for (const button of document.querySelectorAll("[data-download]")) { // one file for a double click
    button.addEventListener("click", singleClick(() => download(button.dataset.download)));
  }
  $("key-button").addEventListener("click", async () => {
    const key = await askKey("Enter the API key to use for this tab.");
    if (key) { api.key = key; sessionStorage.setItem("foveal.apiKey", key); loadServiceInfo(); }
  });
  $("key-button").hidden = !api.key;
  $("error-close").addEventListener("click", () => {
    clearError();
    $("file-a").focus(); // on to the control after the message, not back to the top of the page
  });
  $("detect").addEventListener("click", proposeElements);
  $("accept-all").addEventListener("click", () => {
    acceptProposals(current().proposals.map((_, i) => i));
    $("detect").focus(); // the proposals are gone
  });
  $("dismiss-all").addEventListener("click", () => {
    dismissProposals(current().proposals.map((_, i) => i));
    $("detect").focus();
  });
  refresh();
}

let serviceInfo = null; // the load of the model line, norms and detection offer, once it has succeeded or is under way

function loadServiceInfo() {
  serviceInfo ??= fetchServiceInfo().then((loaded) => { if (!loaded) serviceInfo = null; });
}

/** The model line, the norms to choose from, automatic detection; false when the service wants a key first. */
async function fetchServiceInfo() {
  try {
    const { serving, detection } = await api.models();
    $("detect").hidden = detection !== true; // the button would only ever answer "not installed"
    if (serving) {
      $("model-info").textContent = `model ${serving.name} ${serving.version ?? ""} · ${serving.precision} on ${serving.backend}`;
    }
  } catch (err) {
    showError(err.message);
    // The key was asked for once and not given: the rest waits until a key is accepted (Api's onKeyAccepted).
    if (err.status === 401 || err.status === 403) return false;
  }
  try {
    for (const name of await api.normNames()) $("norms").append(h("option", { value: name }, name));
  } catch {
    // A service without norms: only "none" is offered.
  }
  return true;
}

wire();
onBoxesSaved(takeSavedBoxes);
loadServiceInfo();
restoreLast();
