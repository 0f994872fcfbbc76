// DOM for the panels. Every user-supplied string (element names, messages quoting them) goes in as text
// (textContent / option.text), never as markup.

import { ELEMENT_KINDS } from "./elements.js";

/** createElement with attributes and children (strings become text nodes). */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

/**
 * A name from the user or their files, bidi-isolated: a right-to-left override in it (U+202E) reverses only the
 * name, never the page's own words and numbers after it ("45" read as "54").
 */
export const bdi = (text) => h("bdi", {}, text);

/**
 * A click handler for a button that removes its own row: the second click of a double click would land on the
 * row that moved up under the pointer, so only the first click of a sequence acts (a key press's detail is 0).
 */
export const singleClick = (handler) => (event) => { if (event.detail < 2) handler(event); };

/**
 * Show `value` in a field the page fills, unless the person is editing it: focused, holding text the page did not
 * put there and that is not committed yet (typed, or stepped: a stepper steps on press and commits on release). A
 * re-render in between, such as scores arriving, would otherwise undo the edit.
 */
export function showValue(input, value) {
  const text = String(value);
  if (input === document.activeElement && input.value !== input.dataset.shown) return;
  if (input.value !== text) input.value = text;
  input.dataset.shown = text;
}

/** A field's text is committed (its change event): the next re-render shows the page's value in it again. */
export const committed = (input) => { input.dataset.shown = input.value; };

export const pct = (v, digits = 1) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(digits)}%`);
// foveal compare's material change (scoring/scores.py MATERIAL_CHANGE and its rounding slack), in points.
const MATERIAL_PP = 0.5;
const materialPp = (v) => Math.abs(100 * v) >= MATERIAL_PP - 1e-10;
/**
 * A share difference in percentage points: one decimal, or as many more as it takes to show it on its own side of
 * the material threshold (a 0.496 pp change is not material, and "+0.5 pp" would read as if it were).
 */
export const pp = (v) => {
  let text = "";
  for (let digits = 1; digits < 7; digits += 1) {
    text = Math.abs(100 * v).toFixed(digits);
    if ((Number(text) >= MATERIAL_PP) === materialPp(v)) break;
  }
  return `${v >= 0 ? "+" : "−"}${text} pp`;
};
const num = (v, digits = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));

const COORDINATES = [["x", "x"], ["y", "y"], ["w", "width"], ["h", "height"]];

/**
 * The editable element list: name, kind, box (x, y, width, height in image pixels), delete. Rows are updated in
 * place and only moved when the order changes, so focus survives a re-render. `image`: {width, height}, for the
 * ranges the coordinate fields offer.
 */
export function renderElementList(tbody, elements, selected, on, image) {
  const rows = new Map([...tbody.rows].map((tr) => [tr.dataset.name, tr]));
  const nameOf = (ev) => ev.target.closest("tr").dataset.name;
  const select = (ev) => on.select(nameOf(ev));
  const wanted = elements.map((e) => {
    let tr = rows.get(e.name);
    rows.delete(e.name);
    if (!tr) {
      const rename = (ev) => { committed(ev.target); on.rename(nameOf(ev), ev.target.value); };
      const name = h("input", { type: "text", class: "name", onchange: rename, onfocus: select });
      const kind = h("select", { onchange: (ev) => on.kind(nameOf(ev), ev.target.value), onfocus: select },
        ELEMENT_KINDS.map((k) => h("option", { value: k }, k)));
      const coordinates = COORDINATES.map(([short], i) => h("label", { class: "coordinate" }, short,
        h("input", { type: "number", step: "1", inputmode: "numeric", dataset: { index: String(i) },
          onchange: (ev) => { committed(ev.target); on.box(nameOf(ev), i, ev.target.value); }, onfocus: select })));
      const remove = h("button", { type: "button", class: "small",
        onclick: singleClick((ev) => on.remove(nameOf(ev))) }, "✕");
      tr = h("tr", {}, h("td", {}, name), h("td", {}, h("span", { class: "swatch" }), kind),
        h("td", {}, h("div", { class: "coordinates" }, coordinates)), h("td", {}, remove));
    }
    const name = tr.querySelector("input.name");
    const kind = tr.querySelector("select");
    tr.dataset.name = e.name;
    tr.dataset.kind = e.kind;
    tr.className = e.name === selected ? "selected" : "";
    showValue(name, e.name); // not while the person is typing a new one there
    if (kind.value !== e.kind) kind.value = e.kind;
    name.setAttribute("aria-label", `name of element ${e.name}`);
    kind.setAttribute("aria-label", `kind of element ${e.name}`);
    tr.querySelector("button").setAttribute("aria-label", `delete element ${e.name}`);
    const [x, y, w, hh] = e.box;
    const ranges = [[0, image.width - w], [0, image.height - hh], [1, image.width - x], [1, image.height - y]];
    for (const input of tr.querySelectorAll("input[type=number]")) {
      const i = Number(input.dataset.index);
      showValue(input, e.box[i]);
      [input.min, input.max] = ranges[i].map(String);
      input.setAttribute("aria-label", `${COORDINATES[i][1]} of element ${e.name}, in image pixels`);
    }
    return tr;
  });
  for (const tr of rows.values()) tr.remove();
  wanted.forEach((tr, i) => { if (tbody.rows[i] !== tr) tbody.insertBefore(tr, tbody.rows[i] ?? null); });
}

/**
 * Scores: the local numbers (share, lift, rank, creative-level) now, and the service's percentile, score, pass
 * and recommendations once its document for the same elements arrives (`served`, or null while pending).
 * `failed` ({message, retry}): the service could not be asked; said so, with a button that asks again when `retry`
 * is not null (a retry can help).
 */
export function renderScores(root, local, served, selected, failed = null) {
  const byName = new Map((served?.elements ?? []).map((e) => [e.name, e]));
  const waiting = served === null;
  const c = local.creative;
  root.cards.replaceChildren(
    card("conversion share", pct(c.conversion_share), "cta + headline + product"),
    card("other elements", pct(c.other_elements_share), "logo, text, faces…"),
    card("background", pct(c.background_share), "on no element"),
    card("focus", c.focus === null ? "…" : num(c.focus), "0 uniform … 1 one point"),
    card("top 10% pixels hold", c.top10_share === null ? "…" : pct(c.top10_share), "10% = scattered evenly"));
  const maxShare = Math.max(1e-9, ...local.elements.map((e) => e.share));
  // The bars as a picture whose name carries their numbers: what the overlay's description reads out too.
  root.chart.setAttribute("aria-label", `share of attention per element: ${local.elements.length
    ? local.elements.map((e) => `${e.name} ${pct(e.share, 2)}`).join(", ") : "no elements yet"}`);
  root.chart.replaceChildren(...local.elements.flatMap((e) => [
    h("span", { class: "chart-name" }, e.name),
    h("span", { class: "bar-wrap", dataset: { kind: e.kind } },
      barOf(e.share / maxShare), h("span", { class: "chart-value" }, pct(e.share))),
  ]));
  root.table.replaceChildren(...local.elements.map((e) => {
    const s = byName.get(e.name);
    const pending = (text) => h("td", { class: "num pending" }, text);
    const missing = () => h("td", { class: "num", title: "the service's scores could not be fetched" }, "–");
    const cells = failed ? [missing(), missing(), missing()]
      : waiting || !s ? [pending("…"), pending("…"), pending("…")] : [
      h("td", { class: "num" }, s.percentile === null ? "–" : num(s.percentile, 1)),
      h("td", { class: "num" }, s.score === null ? "–" : String(s.score)),
      h("td", { class: s.passed === null ? "" : s.passed ? "pass" : "fail" },
        s.passed === null ? "–" : s.passed ? "pass" : "fail"),
    ];
    return h("tr", { class: e.name === selected ? "selected" : null, dataset: { name: e.name, kind: e.kind } },
      h("th", { scope: "row", class: "el-name", title: e.kind }, h("span", { class: "swatch" }), e.name),
      h("td", { class: "num share", dataset: { share: String(e.share) } }, pct(e.share, 2)),
      h("td", { class: "num" }, num(e.lift)), h("td", { class: "num" }, String(e.rank)), ...cells);
  }));
  const notes = new Set((served?.elements ?? []).map((e) => e.norm_note).filter(Boolean));
  if (served?.norms?.warning) notes.add(served.norms.warning);
  root.notes.textContent = [...notes].join(" · ");
  const recs = served?.recommendations;
  root.recs.replaceChildren(...(failed ? [h("li", { class: "meta" },
    `The service's percentiles and recommendations could not be fetched (${failed.message})`,
    failed.retry && [" ", h("button", { type: "button", class: "small", onclick: failed.retry }, "Retry")])]
    : recs === undefined
    ? [h("li", { class: "meta" }, waiting ? "Asking the service for percentiles and recommendations…" : "")]
    : recs.length ? recs.map((r) => h("li", {}, h("span", { class: `sev ${r.severity}` }, r.severity), r.message))
      : [h("li", { class: "meta" }, "No recommendation fires: nothing stands out as needing a fix.")]));
}

function card(title, value, caption) {
  return h("div", { class: "card" }, h("span", {}, title), h("b", {}, value), h("span", {}, caption));
}

function barOf(fraction) {
  const bar = h("span", { class: "bar" });
  bar.style.width = `${Math.max(0.5, 100 * fraction) * 0.8}%`;
  return bar;
}

/** A/B: verdict, per-element deltas, notes (the service's compare document). */
export function renderComparison(root, doc) {
  root.verdict.className = `verdict ${doc.verdict.replace(/ /g, "-")}`;
  root.verdict.textContent = doc.summary ?? doc.verdict;
  root.table.replaceChildren(...doc.elements.map((e) => h("tr", { dataset: { name: e.name } },
    h("th", { scope: "row" }, e.name), h("td", { class: "num" }, pct(e.share_a)),
    h("td", { class: "num" }, pct(e.share_b)), h("td", { class: "num" }, pp(e.delta_share)),
    h("td", { class: e.effect }, e.effect))));
  const names = (list) => list.flatMap((name, i) => [i ? ", " : "", bdi(name)]);
  const notes = [...(doc.notes ?? [])];
  if (doc.only_in_a?.length) notes.push(["only in A: ", ...names(doc.only_in_a)]);
  if (doc.only_in_b?.length) notes.push(["only in B: ", ...names(doc.only_in_b)]);
  if (doc.moved_mass !== undefined) notes.push(`${pct(doc.moved_mass)} of the attention moved`);
  root.notes.replaceChildren(...notes.flatMap((note, i) => [i ? " · " : "", note].flat()));
}

/** What-if: the statement, before/after shares, verdict, notes (the int8 caveat, an element pasted over another). */
export function renderWhatif(root, doc) {
  root.verdict.className = `verdict ${doc.verdict.replace(/ /g, "-")}`;
  root.verdict.textContent = `${doc.statement}. Overall: ${doc.summary ?? doc.verdict}`;
  root.table.replaceChildren(...doc.elements.map((e) => h("tr", { dataset: { name: e.name } },
    h("th", { scope: "row" }, e.name), h("td", { class: "num" }, pct(e.share_a)),
    h("td", { class: "num" }, pct(e.share_b)), h("td", { class: "num" }, pp(e.delta_share)))));
  root.notes.textContent = (doc.notes ?? []).join(" · ");
}
