// The console's "Verify" control: wires every button.verify on the page.
//
// Invariant: a click fetches the entry's proof, the verifier keys (GET
// /console/verifier-keys) and the witness policy (GET /console/witness-policy: the
// witnesses whose cosignatures the checkpoint must carry, k of them), each once per page,
// same origin with the session cookie: by event
// (data-event-id: GET /v1/events/{id}/proof, the tlog-proof carrying the entry) or by
// position (data-log-id and data-leaf-index: the log's newest signed checkpoint, the
// inclusion proof at its size and the leaf, for roles that read no PHI by event id). It
// checks them with verify-core.js, and writes exactly one outcome into the
// button's result element: "verified: ..." with class `ok`, or "not verified: <reason>"
// with class `failed`. Nothing thrown escapes a click. The time the check took (fetches
// included, performance.now) is in the result element's data-verify-ms.
// Contract with the console's templates and why: docs/console.md, "Verify in the browser".

import { b64decode, claimedSize, verifyEntry, verifyTlogProof } from "./verify-core.js";

const KEYS_URL = "/console/verifier-keys";
const POLICY_URL = "/console/witness-policy";
const RESULT = ".verify-result, [data-verify-result]";
const BUTTONS = "button.verify[data-event-id], button.verify[data-log-id][data-leaf-index]";
const DECIMAL = /^(0|[1-9][0-9]*)$/;
let keysPromise = null;
let policyPromise = null;

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

function witnessPolicy() {
  policyPromise ??= (async () => {
    const response = await fetchOk(POLICY_URL, "application/json");
    let policy;
    try {
      policy = await response.json();
    } catch {
      throw new FetchFailure("the witness policy is not JSON");
    }
    const keys = policy?.keys;
    if (!Array.isArray(keys) || !keys.every((k) => typeof k === "string")) {
      throw new FetchFailure("the witness policy does not list witness keys");
    }
    if (!Number.isInteger(policy.threshold) || policy.threshold < 0) {
      throw new FetchFailure("the witness policy has no valid threshold");
    }
    return { keys, threshold: policy.threshold };
  })();
  policyPromise.catch(() => {
    policyPromise = null;
  });
  return policyPromise;
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

async function json(response, what) {
  try {
    return await response.json();
  } catch {
    throw new FetchFailure(`the ${what} is not JSON`);
  }
}

/** The parts of an entry's proof by position; the note is checked later, not trusted. */
async function positionParts(logId, leafIndex) {
  if (!DECIMAL.test(leafIndex)) throw new FetchFailure("the page names no valid leaf index");
  const log = `/logs/${encodeURIComponent(logId)}`;
  const note = await (await fetchOk(log + "/checkpoint", "text/plain")).text();
  const size = claimedSize(note);
  if (size === null) throw new FetchFailure("the log's checkpoint is unreadable");
  if (BigInt(leafIndex) >= size) {
    throw new FetchFailure(`entry ${leafIndex} is not under a signed checkpoint yet`);
  }
  const query = `index=${leafIndex}&tree_size=${size}`;
  const [proof, leaves] = await Promise.all([
    fetchOk(`/v1${log}/proof/inclusion?${query}`, "application/json").then((r) =>
      json(r, "inclusion proof"),
    ),
    fetchOk(`/v1${log}/leaves?start=${leafIndex}&limit=1`, "application/json").then((r) =>
      json(r, "leaf"),
    ),
  ]);
  const leaf = leaves?.leaves?.[0];
  if (!Array.isArray(proof?.hashes) || String(leaf?.index) !== leafIndex) {
    throw new FetchFailure(`the ledger did not return entry ${leafIndex} and its proof`);
  }
  return () => ({
    note,
    index: BigInt(leafIndex),
    hashes: proof.hashes.map((h) => b64decode(String(h), "an inclusion-path hash")),
    leaf: b64decode(String(leaf.leaf), "the entry"),
  });
}

/** Fetch and check one entry, by event id or by position: a verify-core outcome. */
export async function verifyButton({ eventId, logId, leafIndex }) {
  const byPosition = logId !== undefined && leafIndex !== undefined;
  let keys;
  let parts;
  let witnesses;
  try {
    const source = byPosition ? positionParts(logId, leafIndex) : proofText(eventId);
    [keys, witnesses, parts] = await Promise.all([verifierKeys(), witnessPolicy(), source]);
  } catch (err) {
    const reason = err instanceof FetchFailure ? err.message : `unexpected error (${err})`;
    return { ok: false, reason };
  }
  const options = { eventId: eventId ?? null, witnesses };
  return byPosition ? verifyEntry(parts, keys, options) : verifyTlogProof(parts, keys, options);
}

function sentence(outcome) {
  if (!outcome.ok) return `not verified: ${outcome.reason}`;
  const cosigned = outcome.witnessedBy?.length
    ? `, cosigned by ${outcome.witnessedBy.join(", ")}`
    : "";
  return (
    `verified: entry ${outcome.index} of ${outcome.origin}, ` +
    `checkpoint size ${outcome.size}, signed by ${outcome.signer}${cosigned}`
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
    outcome = await verifyButton(button.dataset);
  } catch (err) {
    outcome = { ok: false, reason: `unexpected error (${err})` };
  }
  result.textContent = sentence(outcome);
  result.classList.add(outcome.ok ? "ok" : "failed");
  result.dataset.verifyMs = (performance.now() - started).toFixed(2);
  result.dataset.verifyState = outcome.ok ? "ok" : "failed";
  button.removeAttribute("aria-busy");
}

/** Wire every Verify button under `root` (idempotent). */
export function wire(root = document) {
  for (const button of root.querySelectorAll(BUTTONS)) {
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
