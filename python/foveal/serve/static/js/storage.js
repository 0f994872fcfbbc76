// The page's work kept in this browser (IndexedDB, on this machine only; nothing is sent anywhere): each creative's
// element boxes, keyed by a hash of the image's bytes, and the last creative A itself, so that a reload or a crashed
// tab finds them again. Storage that fails (a private window, a full disk) only means nothing is kept: every
// function here resolves to null then, never throws into the page.

const DB = "foveal";
const BOXES = "boxes"; // content hash → {hash, name, width, height, format, elements, saved}
const LAST = "last"; // "A" → {hash, file}
const KEEP = 200; // creatives whose boxes are kept; the least recently saved go first

let opened = null;

function database() {
  opened ??= new Promise((resolve) => {
    let req;
    try {
      req = indexedDB.open(DB, 1);
    } catch {
      resolve(null);
      return;
    }
    req.onupgradeneeded = () => {
      req.result.createObjectStore(BOXES, { keyPath: "hash" }).createIndex("saved", "saved");
      req.result.createObjectStore(LAST);
    };
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => resolve(null);
    req.onblocked = () => resolve(null);
  });
  return opened;
}

const done = (req) => new Promise((resolve, reject) => {
  req.onsuccess = () => resolve(req.result);
  req.onerror = () => reject(req.error);
});

/**
 * `work(stores)` in one transaction over `names`; its result once the transaction has committed, or null. `issued`:
 * `work` makes all its requests at once, so the transaction is committed at once, which a page being left (a reload,
 * a closed tab) still does; Chromium aborts one that waits for more requests then.
 */
async function transaction(names, mode, work, issued = false) {
  const db = await database();
  if (!db) return null;
  try {
    const tx = db.transaction(names, mode);
    const committed = new Promise((resolve, reject) => {
      tx.oncomplete = resolve;
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error);
    });
    const working = work(...names.map((name) => tx.objectStore(name)));
    if (issued) tx.commit?.();
    const result = await working;
    await committed;
    return result;
  } catch {
    return null;
  }
}

/** The image's SHA-256 in hex; outside a secure context (no SubtleCrypto: http on a LAN address) cyrb53's 53 bits. */
export async function contentHash(file) {
  const bytes = new Uint8Array(await file.arrayBuffer());
  if (globalThis.crypto?.subtle) {
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return [...digest].map((b) => b.toString(16).padStart(2, "0")).join("");
  }
  let h1 = 0xdeadbeef ^ bytes.length;
  let h2 = 0x41c6ce57 ^ bytes.length;
  for (let i = 0; i < bytes.length; i++) {
    h1 = Math.imul(h1 ^ bytes[i], 2654435761);
    h2 = Math.imul(h2 ^ bytes[i], 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return `cyrb53:${bytes.length}:${(h2 >>> 0).toString(16)}:${(h1 >>> 0).toString(16)}`;
}

/** The boxes saved for the creative with this hash: {name, width, height, format, elements}, or null. */
export function savedBoxes(hash) {
  return transaction([BOXES], "readonly", (boxes) => done(boxes.get(hash))).then((r) => r ?? null);
}

// Each save is told to the page's other tabs in this browser: one showing the same creative takes the boxes saved,
// or its own older list, kept on its next change, would bring back a box deleted here.
const channel = typeof BroadcastChannel === "function" ? new BroadcastChannel("foveal.boxes") : null;

/** Call `taken(record)` with the boxes another tab of this page has just kept: {hash, name, width, height, ...}. */
export function onBoxesSaved(taken) {
  channel?.addEventListener("message", (event) => taken(event.data));
}

/** Keep a creative's boxes (an empty list too: removing every box is kept as such), the oldest beyond KEEP go. */
export async function saveBoxes(hash, { name, width, height, format, elements }) {
  const record = { hash, name, width, height, format: format ?? null, saved: Date.now(),
    elements: elements.map((e) => ({ name: e.name, kind: e.kind, box: [...e.box] })) };
  const kept = await transaction([BOXES], "readwrite", (boxes) => done(boxes.put(record)).then(() => true), true);
  if (!kept) return null;
  channel?.postMessage(record);
  await transaction([BOXES], "readwrite", async (boxes) => {
    const extra = (await done(boxes.count())) - KEEP;
    if (extra > 0) {
      for (const key of await done(boxes.index("saved").getAllKeys(null, extra))) boxes.delete(key);
    }
  });
  return kept;
}

/**
 * Keep the creative shown as A (the file itself), to be shown again after a reload. One the browser has no room for
 * is not kept, and neither is the one before it: a reload would open on a creative that is no longer the last.
 */
export async function saveLast(file, hash) {
  const kept = await transaction([LAST], "readwrite", (last) => done(last.put({ hash, file }, "A")));
  return kept ?? transaction([LAST], "readwrite", (last) => done(last.delete("A")));
}

/** The creative last shown as A, as a File, or null. */
export function lastCreative() {
  return transaction([LAST], "readonly", (last) => done(last.get("A"))).then((r) => r?.file ?? null);
}

/** How many creatives' boxes are kept, or null when the browser cannot tell. */
export function savedCount() {
  return transaction([BOXES], "readonly", (boxes) => done(boxes.count()));
}

/** Forget everything kept: every creative's boxes and the last creative. */
export function forget() {
  return transaction([BOXES, LAST], "readwrite", (boxes, last) => Promise.all([done(boxes.clear()),
    done(last.clear())]));
}
