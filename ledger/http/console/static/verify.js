// The console's "Verify" control: wires every button.verify[data-event-id] on the page.
//
// Invariant: a click fetches the entry's tlog-proof (GET /v1/events/{id}/proof) and the
// verifier keys (GET /console/verifier-keys, once per page), same origin with the session
// cookie, checks them with verify-core.js, and writes exactly one outcome into the
// button's result element: "verified: ..." with class `ok`, or "not verified: <reason>"
// with class `failed`. Nothing thrown escapes a click. The time the check took (fetches
// included, performance.now) is in the result element's data-verify-ms.
// Contract with the console's templates and why: docs/console.md, "Verify in the browser".

import { verifyTlogProof } from "./verify-core.js";

const KEYS_URL = "/console/verifier-keys";
const RESULT = ".verify-result, [data-verify-result]";
let keysPromise = null;

class FetchFailure extends Error {}

async function fetchOk(url, accept) {
  let response;
  try {
    response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: accept },
      cache: "no-store",
    });
  } catch {
    throw new FetchFailure("the ledger could not be reached");
  }
  if (response.ok) return response;
  let detail = "";
  try {
    const body = await response.json();
    detail = body?.error?.message ? `: ${body.error.message}` : "";
  } catch {
    // not a JSON error body: the status alone says enough
  }
  throw new FetchFailure(`the ledger answered ${response.status}${detail}`);
}

function verifierKeys() {
  keysPromise ??= (async () => {
    const response = await fetchOk(KEYS_URL, "application/json");
    let keys;
    try {
      keys = await response.json();
    } catch {
      throw new FetchFailure("the verifier keys are not JSON");
    }
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
      throw new FetchFailure("the verifier keys are not a list of key strings");
    }
    return keys;
  })();
  // A failure is not cached: the next click asks again.
  keysPromise.catch(() => {
    keysPromise = null;
  });
  return keysPromise;
}

async function proofText(eventId) {
  const response = await fetchOk(
    `/v1/events/${encodeURIComponent(eventId)}/proof`,
    "text/plain",
  );
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(await response.arrayBuffer());
  } catch {
    throw new FetchFailure("the proof is not UTF-8 text");
  }
}

/** Fetch and check one event's proof: the outcome object of verifyTlogProof. */
export async function verifyEvent(eventId) {
  let keys;
  let text;
  try {
    [keys, text] = await Promise.all([verifierKeys(), proofText(eventId)]);
  } catch (err) {
    const reason = err instanceof FetchFailure ? err.message : `unexpected error (${err})`;
    return { ok: false, reason };
  }
  return verifyTlogProof(text, keys, { eventId });
}

function sentence(outcome) {
  if (!outcome.ok) return `not verified: ${outcome.reason}`;
  return (
    `verified: entry ${outcome.index} of ${outcome.origin}, ` +
    `checkpoint size ${outcome.size}, signed by ${outcome.signer}`
  );
}

/** The element a button's outcome goes to: <output for=id>, a sibling, or a new one. */
export function resultFor(button) {
  const doc = button.ownerDocument;
  if (button.id) {
    for (const out of doc.querySelectorAll("output")) {
      if (out.htmlFor && [...out.htmlFor].includes(button.id)) return out;
    }
  }
  for (let el = button.nextElementSibling; el; el = el.nextElementSibling) {
    if (el.matches(RESULT)) return el;
    if (el.matches("button.verify")) break;
  }
  const out = doc.createElement("output");
  out.className = "verify-result";
  button.after(out);
  return out;
}

async function onClick(button) {
  if (button.getAttribute("aria-busy") === "true") return;
  const result = resultFor(button);
  const started = performance.now();
  button.setAttribute("aria-busy", "true");
  result.setAttribute("aria-live", "polite");
  result.classList.remove("ok", "failed");
  result.dataset.verifyState = "pending";
  result.textContent = "verifying\u2026";
  let outcome;
  try {
    outcome = await verifyEvent(button.dataset.eventId);
  } catch (err) {
    outcome = { ok: false, reason: `unexpected error (${err})` };
  }
  result.textContent = sentence(outcome);
  result.classList.add(outcome.ok ? "ok" : "failed");
  result.dataset.verifyMs = (performance.now() - started).toFixed(2);
  result.dataset.verifyState = outcome.ok ? "ok" : "failed";
  button.removeAttribute("aria-busy");
}

/** Wire every button.verify[data-event-id] under `root` (idempotent). */
export function wire(root = document) {
  for (const button of root.querySelectorAll("button.verify[data-event-id]")) {
    if (button.dataset.verifyWired) continue;
    button.dataset.verifyWired = "1";
    button.addEventListener("click", () => {
      onClick(button).catch(() => {
        // onClick catches what it awaits; this only guards against a detached DOM.
      });
    });
  }
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", () => wire());
  } else {
    wire();
  }
}
