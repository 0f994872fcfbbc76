// The page's client of the foveal service (docs/SERVING.md): same origin, API key sent as a header when the
// service asks for one, errors turned into one readable line.

import { parseNpy } from "./npy.js";

const KEY_STORAGE = "foveal.apiKey";
// A busy service (503 with Retry-After: queue full, starting, draining) is asked again after the wait it names,
// at most this many times, each wait capped.
const BUSY_RETRIES = 3;
const BUSY_WAIT_CAP_S = 5;
// A service that has not answered after this long is taken as stuck (a stopped process, a network that drops
// packets): one that works answers 504 at its own deadline (60 s unless `foveal serve --timeout-ms` says more).
const ANSWER_WAIT_S = 120;

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Whether asking again may go otherwise: the service was unreachable, busy, failing or wanting a key. A 4xx refuses
 * the input itself, which a retry would send unchanged.
 */
export const canRetry = (err) => !(err.status >= 400 && err.status < 500) || [401, 403, 408, 429].includes(err.status);

export class Api {
  /**
   * askKey: async (error) => key or null; called once when the service answers 401/403 (concurrent refusals share
   * one prompt). onKeyAccepted: called when a key entered at such a prompt is accepted by the service.
   */
  constructor(askKey, onKeyAccepted = () => {}) {
    this.askKey = askKey;
    this.onKeyAccepted = onKeyAccepted;
    this.key = sessionStorage.getItem(KEY_STORAGE);
  }

  /** `signal`: aborts the request (the service stops work whose client has gone, such as a position search). */
  async request(path, { method = "GET", body = null, query = null, signal = null } = {}) {
    const url = query ? `${path}?${new URLSearchParams(query)}` : path;
    let busy = 0;
    for (let attempt = 0; ; attempt++) {
      const sent = this.key;
      const headers = sent ? { "X-API-Key": sent } : {};
      let response;
      try {
        const timeout = AbortSignal.timeout(1000 * ANSWER_WAIT_S);
        response = await fetch(url, { method, body, headers,
          signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
      } catch (err) {
        if (signal?.aborted) throw new ApiError(0, "cancelled", "cancelled");
        if (err.name === "TimeoutError") {
          throw new ApiError(0, "no_answer", `the foveal service did not answer within ${ANSWER_WAIT_S} s; check `
            + "that `foveal serve` is running and not stuck, then try again");
        }
        throw new ApiError(0, "network", `cannot reach the foveal service (${err.message}); is \`foveal serve\` running?`);
      }
      if ((response.status === 401 || response.status === 403) && attempt === 0) {
        const error = await readError(response);
        // Concurrent calls refused together share one prompt; a key entered meanwhile is simply retried.
        if (this.key === sent) {
          this.prompt ??= this.askKey(error).finally(() => { this.prompt = null; });
          const key = await this.prompt;
          if (!key) {
            throw new ApiError(error.status, error.code, error.status === 401
              ? "this service needs an API key and none was entered; use API key… at the top to enter one"
              : `${error.message}; use API key… at the top to enter another`);
          }
          if (this.key === sent) {
            this.key = key;
            sessionStorage.setItem(KEY_STORAGE, key);
          }
        }
        continue;
      }
      const wait = Number(response.headers.get("Retry-After") ?? NaN); // seconds; an HTTP date is not waited for
      if (response.status === 503 && wait >= 0 && busy < BUSY_RETRIES) {
        busy++;
        await response.body?.cancel();
        await new Promise((resolve) => { setTimeout(resolve, 1000 * Math.min(wait, BUSY_WAIT_CAP_S)); });
        attempt--; // a wait is not a key attempt
        continue;
      }
      if (response.status === 401 || response.status === 403) { // the key just entered was refused too
        const error = await readError(response);
        throw new ApiError(error.status, error.code, `${error.message}; use API key… at the top to enter another`);
      }
      if (!response.ok) throw await readError(response);
      if (attempt > 0) this.onKeyAccepted();
      return response;
    }
  }

  /**
   * The JSON document a route answers, holding the key `needs`: a 200 that is none (a proxy's login page, another
   * application on the port) is an ApiError saying so, not the parser's or a renderer's TypeError.
   */
  async json(path, options, needs) {
    const response = await this.request(path, options);
    let doc = null;
    try {
      if ((response.headers.get("Content-Type") ?? "").includes("json")) doc = await response.json();
    } catch {
      doc = null;
    }
    if (doc === null || typeof doc !== "object" || !(needs in doc)) {
      throw new ApiError(response.status, "bad_answer", "the answer is not a foveal answer; check that the page "
        + "comes from `foveal serve` (not a proxy's page or another application), then reload it");
    }
    return doc;
  }

  /** The creative's attention map as float32 probabilities: {data, height, width, provenance}. */
  async predictMap(file) {
    const form = new FormData();
    form.append("image", file);
    const response = await this.request("/v1/predict", { method: "POST", body: form, query: { format: "npy" } });
    const map = parseNpy(await response.arrayBuffer());
    const provenance = response.headers.get("X-Foveal-Provenance");
    map.provenance = provenance ? JSON.parse(provenance) : {};
    return map;
  }

  /** The `foveal score` document for a creative and its elements (norms by name, or none). */
  async score(file, elementFile, { norms = null, passPercentile = null, format = null } = {}) {
    const form = scoreForm(file, elementFile, norms, passPercentile, format);
    return this.json("/v1/score", { method: "POST", body: form }, "elements");
  }

  /** allowFormatMismatch: compare creatives of different formats anyway (the verdict then says it is indicative). */
  async compare(fileA, elementsA, fileB, elementsB, { allowFormatMismatch = false } = {}) {
    const form = new FormData();
    form.append("image_a", fileA);
    form.append("elements_a", JSON.stringify(elementsA));
    form.append("image_b", fileB);
    form.append("elements_b", JSON.stringify(elementsB));
    form.append("allow_format_mismatch", String(allowFormatMismatch));
    return this.json("/v1/compare", { method: "POST", body: form }, "verdict");
  }

  /**
   * edits: [{op: "move", element, dx, dy} | {op: "scale", element, factor}] (the CLI's whatif.json form). One
   * request: the document carries the edited creative (`edited`, base64 PNG; see editedImage).
   */
  async whatif(file, elementFile, edits) {
    return this.json("/v1/whatif", { method: "POST", body: whatifForm(file, elementFile, "edits", edits),
      query: { edited: "true" } }, "timing");
  }

  /**
   * A position search for one element: {element, grid: [cols, rows], top}. The document ranks the positions
   * tried, best first, and carries the best one's edited creative, as whatif's does. `signal` stops it.
   */
  async search(file, elementFile, search, signal = null) {
    return this.json("/v1/whatif", { method: "POST", body: whatifForm(file, elementFile, "search", search),
      query: { edited: "true" }, signal }, "timing");
  }

  /** Proposed elements for a creative: the element file `foveal detect` writes (confidence, source "auto"). */
  async detect(file) {
    const form = new FormData();
    form.append("image", file);
    return this.json("/v1/detect", { method: "POST", body: form }, "elements");
  }

  /** {serving: the model this service runs, models: the shipped cards, detection: whether /v1/detect works}. */
  async models() {
    return this.json("/v1/models", undefined, "serving");
  }

  /** Names of the norms this service has. */
  async normNames() {
    const doc = await this.json("/v1/norms", undefined, "norms");
    return Object.keys(doc.norms ?? {}).sort();
  }

  /** The 16-bit map PNG (its scale in the foveal:scale text chunk, readable by SaliencyMap.from_png). */
  async mapPng(file) {
    const form = new FormData();
    form.append("image", file);
    return (await this.request("/v1/predict", { method: "POST", body: form, query: { format: "png" } })).blob();
  }

  /** The self-contained report.html of `foveal score`, as a blob. */
  async report(file, elementFile, { norms = null, passPercentile = null, format = null } = {}) {
    const form = scoreForm(file, elementFile, norms, passPercentile, format);
    return (await this.request("/v1/score", { method: "POST", body: form, query: { format: "html" } })).blob();
  }
}

function scoreForm(file, elementFile, norms, passPercentile, format) {
  const form = new FormData();
  form.append("image", file);
  form.append("elements", JSON.stringify(elementFile));
  if (norms) form.append("norms", norms);
  if (passPercentile !== null) form.append("pass_percentile", String(passPercentile));
  if (format) form.append("format", format);
  return form;
}

function whatifForm(file, elementFile, field, value) {
  const form = new FormData();
  form.append("image", file);
  form.append("elements", JSON.stringify(elementFile));
  form.append(field, JSON.stringify(value));
  return form;
}

/** The edited creative a what-if document carries (`edited`: base64 PNG), as a blob. */
export function editedImage(doc) {
  const text = atob(doc.edited.data);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return new Blob([bytes], { type: "image/png" });
}

// Refusals whose message names what only an API caller can change (X-Deadline-Ms): said in the page's words.
const PAGE_MESSAGES = {
  deadline_exceeded: "the service did not answer within its time limit; try again in a moment",
};

async function readError(response) {
  let code = `http_${response.status}`;
  let message = `the service answered ${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    const error = body.error ?? body;
    if (error.code) code = error.code;
    if (typeof error.message === "string") message = error.message;
    else if (typeof error.detail === "string") message = error.detail;
  } catch {
    // Not JSON (a proxy's page): the status line, and what to do about it.
    message += response.status >= 500
      ? "; check that `foveal serve` is running behind it, then try again"
      : "; check that the page comes from `foveal serve`, then reload it";
  }
  return new ApiError(response.status, code, PAGE_MESSAGES[code] ?? message);
}
