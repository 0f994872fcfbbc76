// The box layer over the creative: draw a box by dragging on empty image, drag a box to move it, drag a corner to
// resize it; from the keyboard, arrow keys move the selected box, Alt+arrow or Ctrl+arrow resize it (right and down
// grow it, left and up shrink it; Shift: 10 px), Delete removes it. Coordinates are whole image pixels; boxes
// always stay inside the image and are at least 1 px wide and high.

import { bdi } from "./views.js";

const MIN_SIZE = 2; // a drawn box narrower than this was a click, not a drag (unless the image itself is narrower)
const CORNERS = ["nw", "ne", "sw", "se"];

/** [x, y, w, h] moved by (dx, dy), its size kept, stopped at the edges of a width x height image. */
export function moveBox([x, y, w, h], dx, dy, width, height) {
  return [Math.min(width - w, Math.max(0, x + dx)), Math.min(height - h, Math.max(0, y + dy)), w, h];
}

/** [x, y, w, h] grown by (dw, dh) from its top-left corner, at least 1 px and inside a width x height image. */
export function resizeBox([x, y, w, h], dw, dh, width, height) {
  return [x, y, Math.min(width - x, Math.max(1, w + dw)), Math.min(height - y, Math.max(1, h + dh))];
}

export class BoxEditor {
  /**
   * layer: the element over the canvas that holds the boxes (same size as the displayed image).
   * callbacks: onCreate(box) → element name or null, onChange(name, box, final), onSelect(name), onDelete(name),
   * onStuck(name, box): a key press that cannot move or resize the box any further.
   * describedBy: the id of the text that tells how to operate a box, read out when a box gets focus.
   */
  constructor(layer, callbacks, describedBy = null) {
    this.layer = layer;
    this.cb = callbacks;
    this.describedBy = describedBy;
    this.width = 0;
    this.height = 0;
    this.items = [];      // [{name, kind, box, label, ghost?}]
    this.selected = null;
    this.drag = null;
    layer.addEventListener("pointerdown", (e) => this.onPointerDown(e));
    layer.addEventListener("pointermove", (e) => this.onPointerMove(e));
    layer.addEventListener("pointerup", (e) => this.onPointerUp(e));
    layer.addEventListener("pointercancel", (e) => this.onPointerUp(e));
    layer.addEventListener("keydown", (e) => this.onKeyDown(e));
  }

  setSize(width, height) {
    this.width = width;
    this.height = height;
  }

  /** items: [{name, kind, box, label, dashed}] drawn in order; a box shows its name, then its label. */
  render(items, selected) {
    this.items = items;
    this.selected = selected;
    const keep = new Map([...this.layer.querySelectorAll(".box")].map((el) => [el.dataset.name, el]));
    const active = document.activeElement;
    for (const item of items) {
      let el = keep.get(item.name);
      keep.delete(item.name);
      if (!el) {
        el = document.createElement("div");
        el.className = "box";
        el.tabIndex = 0;
        el.dataset.name = item.name;
        const label = document.createElement("span");
        label.className = "box-label";
        el.append(label);
        for (const c of CORNERS) {
          const handle = document.createElement("span");
          handle.className = `handle ${c}`;
          handle.dataset.corner = c;
          el.append(handle);
        }
        this.layer.append(el);
      }
      el.dataset.kind = item.kind;
      el.classList.toggle("selected", item.name === selected);
      el.classList.toggle("ghost", Boolean(item.dashed));
      el.setAttribute("role", "button");
      el.setAttribute("aria-pressed", String(item.name === selected)); // the selected box, for screen readers too
      if (this.describedBy) el.setAttribute("aria-describedby", this.describedBy);
      el.setAttribute("aria-label", `${item.kind} box ${item.name}: ${item.box.join(", ")}`);
      const label = el.querySelector(".box-label");
      if (label.textContent !== item.name + item.label) {
        // The name isolated: an override in it must not reverse the share and score after it.
        label.replaceChildren(bdi(item.name), item.label);
      }
      this.place(el, item.box);
    }
    for (const el of keep.values()) el.remove();
    if (active && active.classList?.contains("box") && !active.isConnected) this.layer.focus();
  }

  place(el, [x, y, w, h]) {
    el.style.left = `${(100 * x) / this.width}%`;
    el.style.top = `${(100 * y) / this.height}%`;
    el.style.width = `${(100 * w) / this.width}%`;
    el.style.height = `${(100 * h) / this.height}%`;
  }

  toImage(event) {
    const rect = this.layer.getBoundingClientRect();
    return [
      Math.min(this.width, Math.max(0, ((event.clientX - rect.left) * this.width) / rect.width)),
      Math.min(this.height, Math.max(0, ((event.clientY - rect.top) * this.height) / rect.height)),
    ];
  }

  onPointerDown(event) {
    if (!this.width || event.button !== 0) return;
    const [px, py] = this.toImage(event);
    const boxEl = event.target.closest(".box");
    if (boxEl) {
      const item = this.items.find((i) => i.name === boxEl.dataset.name);
      if (!item) return;
      this.cb.onSelect(item.name);
      this.drag = { mode: event.target.dataset.corner || "move", name: item.name, start: [px, py], orig: [...item.box],
        box: [...item.box], el: boxEl };
    } else {
      if (this.cb.canCreate && !this.cb.canCreate()) return;
      const el = document.createElement("div");
      el.className = "box drawing";
      this.layer.append(el);
      this.drag = { mode: "create", start: [px, py], el, box: null };
      this.place(el, [Math.round(px), Math.round(py), 0, 0]);
    }
    this.layer.setPointerCapture(event.pointerId);
    event.preventDefault();
  }

  onPointerMove(event) {
    if (!this.drag) return;
    const box = this.dragBox(this.toImage(event));
    this.drag.box = box;
    this.place(this.drag.el, box);
    if (this.drag.mode !== "create") this.cb.onChange(this.drag.name, box, false);
  }

  onPointerUp(event) {
    const drag = this.drag;
    if (!drag) return;
    this.drag = null;
    if (this.layer.hasPointerCapture(event.pointerId)) this.layer.releasePointerCapture(event.pointerId);
    if (drag.mode === "create") {
      drag.el.remove();
      const [w, h] = [Math.min(MIN_SIZE, this.width), Math.min(MIN_SIZE, this.height)];
      if (drag.box && drag.box[2] >= w && drag.box[3] >= h) this.cb.onCreate(drag.box);
      return;
    }
    this.cb.onChange(drag.name, drag.box, true);
  }

  /** The box the current drag describes, in whole pixels, clamped to the image. */
  dragBox([px, py]) {
    const { mode, start } = this.drag;
    const W = this.width;
    const H = this.height;
    if (mode === "create") {
      const x0 = Math.round(Math.min(start[0], px));
      const y0 = Math.round(Math.min(start[1], py));
      const x1 = Math.round(Math.max(start[0], px));
      const y1 = Math.round(Math.max(start[1], py));
      return [x0, y0, x1 - x0, y1 - y0];
    }
    const [x, y, w, h] = this.drag.orig;
    const dx = Math.round(px - start[0]);
    const dy = Math.round(py - start[1]);
    if (mode === "move") return moveBox(this.drag.orig, dx, dy, W, H);
    let x0 = x;
    let y0 = y;
    let x1 = x + w;
    let y1 = y + h;
    if (mode.includes("w")) x0 = Math.min(x1 - 1, Math.max(0, x0 + dx));
    if (mode.includes("e")) x1 = Math.max(x0 + 1, Math.min(W, x1 + dx));
    if (mode.includes("n")) y0 = Math.min(y1 - 1, Math.max(0, y0 + dy));
    if (mode.includes("s")) y1 = Math.max(y0 + 1, Math.min(H, y1 + dy));
    return [x0, y0, x1 - x0, y1 - y0];
  }

  onKeyDown(event) {
    const boxEl = event.target.closest?.(".box");
    if (!boxEl) return;
    const item = this.items.find((i) => i.name === boxEl.dataset.name);
    if (!item) return;
    if (event.key === "Delete" || event.key === "Backspace") {
      this.cb.onDelete(item.name);
      event.preventDefault();
      return;
    }
    if (event.key === "Enter" || event.key === " ") { // a button: Enter and Space select it, as a click does
      this.cb.onSelect(item.name);
      event.preventDefault();
      return;
    }
    const step = event.shiftKey ? 10 : 1;
    const arrows = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
    if (!(event.key in arrows) || event.metaKey) return;
    const [dx, dy] = arrows[event.key];
    // Alt or Ctrl: whichever of the two the person's system leaves to the page (macOS takes Ctrl+arrow).
    const resize = event.altKey || event.ctrlKey;
    const box = resize ? resizeBox(item.box, dx, dy, this.width, this.height)
      : moveBox(item.box, dx, dy, this.width, this.height);
    this.cb.onSelect(item.name);
    if (box.every((v, i) => v === item.box[i])) this.cb.onStuck?.(item.name, item.box);
    else this.cb.onChange(item.name, box, true);
    event.preventDefault();
  }
}
