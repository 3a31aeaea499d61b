// Checking a ledger entry in the browser: a C2SP tlog-proof against C2SP verifier keys.
//
// Invariant: verifyEntry (and verifyTlogProof, for a tlog-proof whose `extra` line is the
// entry) resolves to {ok: true, ...} only when an Ed25519 signature of the checkpoint note
// by one of the given verifier keys (name and key hash both matching) verifies, and the
// RFC 6962 leaf hash of the entry leads through the inclusion path (RFC 9162 2.1.3.2) to
// the checkpoint's root at its size; and, given a witness policy (options.witnesses: {keys,
// threshold}), when at least `threshold` of those witnesses' C2SP tlog-cosignatures on the
// checkpoint verify and no line naming one of their keys fails (docs/design/witnesses.md).
// Every other outcome is {ok: false, reason}; nothing here throws to the caller.
// The same checks, and the same strict parsing, as ledger/log/note.py, checkpoint.py and
// merkle/inclusion.py; all hashing and signatures go through WebCrypto (SubtleCrypto).
// Why and limits: docs/console.md, "Verify in the browser".

const PROOF_HEADER = "c2sp.org/tlog-proof@v1";
const SIG_PREFIX = "\u2014 "; // em dash, space
const ALG_ED25519 = 0x01;
const ALG_COSIGNATURE_V1 = 0x04;
const COSIGNATURE_SIZE = 8 + 64; // timestamp, Ed25519 signature (after the key hash)
const MAX_PROOF_HASHES = 64;
const MAX_SIGNATURES = 100;
const MAX_UINT64 = (1n << 64n) - 1n;
const DECIMAL = /^(0|[1-9][0-9]*)$/;
const HEX8 = /^[0-9a-fA-F]{8}$/;
// ASCII control characters other than newline (forbidden anywhere in a note).
const CONTROL = /[\x00-\x09\x0b-\x1f]/;
// Go's key-name rule: no Unicode space, no "+", no control character.
const BAD_NAME = /[\s+\x00-\x1f\x85]/u;
const utf8 = new TextEncoder();

/** A check that failed; `message` is shown to the reader after "not verified: ". */
export class VerifyError extends Error {}

function fail(message) {
  throw new VerifyError(message);
}

function subtle() {
  const s = globalThis.crypto && globalThis.crypto.subtle;
  if (!s) {
    fail("this browser withholds WebCrypto here (the console must be served over HTTPS)");
  }
  return s;
}

/** Strict standard base64: padded, alphabet only, canonical (re-encodes identically). */
export function b64decode(text, what) {
  let binary;
  try {
    binary = atob(text);
  } catch {
    fail(`${what} is not valid base64`);
  }
  if (btoa(binary) !== text) fail(`${what} is not canonical base64`);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function parseUint64(text, what) {
  if (!DECIMAL.test(text)) fail(`${what} is not a decimal number`);
  const value = BigInt(text);
  if (value > MAX_UINT64) fail(`${what} does not fit in 64 bits`);
  return value;
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

function equalBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

function isValidKeyName(name) {
  return typeof name === "string" && name.length > 0 && !BAD_NAME.test(name);
}

async function sha256(bytes) {
  return new Uint8Array(await subtle().digest("SHA-256", bytes));
}

/** RFC 6962 leaf hash: SHA-256(0x00 || leaf). */
export function leafHash(leaf) {
  return sha256(concat(Uint8Array.of(0), leaf));
}

function nodeHash(left, right) {
  return sha256(concat(Uint8Array.of(1), left, right));
}

/** The root an inclusion proof implies (RFC 9162 2.1.3.2); `index`, `size` are BigInt. */
export async function rootFromInclusionProof(leaf, index, size, proof) {
  if (size < 1n || size > MAX_UINT64) fail(`tree size ${size} is out of range`);
  if (index < 0n || index >= size) fail(`entry ${index} is beyond the checkpoint's size ${size}`);
  if (leaf.length !== 32 || proof.some((p) => p.length !== 32)) fail("a hash is not 32 bytes");
  let fn = index;
  let sn = size - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) fail("the inclusion proof has too many hashes");
    if (fn & 1n || fn === sn) {
      r = await nodeHash(p, r);
      while (fn && !(fn & 1n)) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  if (sn !== 0n) fail("the inclusion proof has too few hashes");
  return r;
}

/** Throws VerifyError unless `proof` leads from `leaf` (a leaf hash) to `root`. */
export async function verifyInclusion(leaf, index, size, proof, root) {
  const computed = await rootFromInclusionProof(leaf, index, size, proof);
  if (!equalBytes(computed, root)) {
    fail("the entry and its inclusion path do not lead to the checkpoint's signed root");
  }
}

/** A C2SP verifier key `<name>+<8 hex key hash>+<base64(0x01 || 32-byte key)>`. */
export function parseVerifierKey(vkey) {
  return parseKey(vkey, ALG_ED25519, "a verifier key");
}

/** A witness's cosignature key `<name>+<8 hex key hash>+<base64(0x04 || 32-byte key)>`. */
export function parseWitnessKey(vkey) {
  return parseKey(vkey, ALG_COSIGNATURE_V1, "a witness key");
}

async function parseKey(vkey, alg, what) {
  if (typeof vkey !== "string") fail(`${what} is not a string`);
  const first = vkey.indexOf("+");
  const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
  if (second < 0) fail(`${what} is not <name>+<key hash>+<key>`);
  const name = vkey.slice(0, first);
  const hex = vkey.slice(first + 1, second);
  if (!isValidKeyName(name) || !HEX8.test(hex)) fail(`${what} is malformed`);
  const raw = b64decode(vkey.slice(second + 1), what);
  if (raw.length !== 33 || raw[0] !== alg) {
    const kind = alg === ALG_ED25519 ? "an Ed25519 key" : "a cosignature/v1 key";
    fail(`${what} is not ${kind}`);
  }
  const keyId = (await sha256(concat(utf8.encode(`${name}\n`), raw))).slice(0, 4);
  if (!equalBytes(keyId, Uint8Array.from(hex.match(/../g), (h) => parseInt(h, 16)))) {
    fail(`${what.replace(/^a /, "")} ${name}+${hex} does not match its key hash`);
  }
  let key;
  try {
    key = await subtle().importKey("raw", raw.slice(1), { name: "Ed25519" }, false, ["verify"]);
  } catch (err) {
    if (err instanceof VerifyError) throw err;
    fail("this browser cannot check Ed25519 signatures (WebCrypto Ed25519 is missing)");
  }
  return { name, keyId, label: `${name}+${hex.toLowerCase()}`, key };
}

/**
 * The names of the `witnesses` (parsed witness keys) whose C2SP tlog-cosignature of the
 * checkpoint `text` verifies among the signature lines of `note`. A line naming one of
 * their keys that does not verify fails the check (forged, or made for another
 * checkpoint); lines by other keys are ignored, as in ledger/log/cosignature.py.
 */
export async function cosignedBy(note, text, witnesses) {
  const block = note.slice(note.lastIndexOf("\n\n") + 2, -1);
  const names = new Set();
  for (const sig of block.split("\n").map(parseSignatureLine)) {
    if (sig.signature.length !== COSIGNATURE_SIZE) continue;
    const w = witnesses.find((k) => k.name === sig.name && equalBytes(k.keyId, sig.keyId));
    if (w === undefined) continue;
    const time = new DataView(sig.signature.buffer, sig.signature.byteOffset, 8).getBigUint64(0);
    const message = concat(utf8.encode(`cosignature/v1\ntime ${time}\n`), utf8.encode(text));
    const ok =
      time < 1n << 63n &&
      (await subtle().verify({ name: "Ed25519" }, w.key, sig.signature.slice(8), message));
    if (!ok) fail(`the cosignature by witness ${sig.label} does not verify`);
    names.add(w.name);
  }
  return [...names];
}

function parseSignatureLine(line) {
  if (!line.startsWith(SIG_PREFIX)) fail("a checkpoint signature line is malformed");
  const rest = line.slice(SIG_PREFIX.length);
  const space = rest.indexOf(" ");
  if (space < 0) fail("a checkpoint signature line has no signature");
  const name = rest.slice(0, space);
  const raw = b64decode(rest.slice(space + 1), "a checkpoint signature");
  if (!isValidKeyName(name) || raw.length <= 4) fail("a checkpoint signature line is malformed");
  const keyId = raw.slice(0, 4);
  const hex = Array.from(keyId, (b) => b.toString(16).padStart(2, "0")).join("");
  return { name, keyId, label: `${name}+${hex}`, signature: raw.slice(4) };
}

/**
 * Open a signed note: returns {text, signer} where signer is the label of the first trusted
 * key whose signature verified. As open_note: every signature by a trusted key must verify,
 * signatures by other keys are ignored, and at least one trusted key must have signed.
 */
export async function openNote(note, verifiers) {
  if (CONTROL.test(note)) fail("the checkpoint contains a control character");
  const split = note.lastIndexOf("\n\n");
  if (split < 0) fail("the checkpoint has no signature");
  const text = note.slice(0, split + 1);
  const block = note.slice(split + 2);
  if (!block.endsWith("\n")) fail("the checkpoint's signature block is truncated");
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > MAX_SIGNATURES) fail("the checkpoint has too many signatures");
  const signatures = lines.map(parseSignatureLine);
  const message = utf8.encode(text);
  let signer = null;
  for (const sig of signatures) {
    const trusted = verifiers.filter((v) => v.name === sig.name && equalBytes(v.keyId, sig.keyId));
    if (trusted.length === 0) continue;
    if (trusted.length > 1) fail(`verifier key ${sig.label} is given twice`);
    const ok =
      sig.signature.length === 64 &&
      (await subtle().verify({ name: "Ed25519" }, trusted[0].key, sig.signature, message));
    if (!ok) fail(`the checkpoint's signature by ${sig.label} does not verify`);
    signer ??= trusted[0].label;
  }
  if (signer === null) {
    const by = signatures.map((s) => s.label).join(", ");
    const keys = verifiers.map((v) => v.label).join(", ") || "none";
    fail(`the checkpoint is signed by ${by}, not by a verifier key of this console (${keys})`);
  }
  return { text, signer };
}

/** Checkpoint body: origin, size (BigInt), root (32 bytes), extension lines. */
export function parseCheckpoint(text) {
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) fail("the checkpoint lacks its origin, size or root");
  const [origin, sizeText, rootText] = lines;
  if (!isValidKeyName(origin)) fail("the checkpoint's origin is malformed");
  const size = parseUint64(sizeText, "the checkpoint's size");
  const root = b64decode(rootText, "the checkpoint's root hash");
  if (root.length !== 32) fail("the checkpoint's root hash is not 32 bytes");
  if (lines.slice(3).some((l) => l === "")) fail("the checkpoint has an empty line");
  return { origin, size, root };
}

/** Strict tlog-proof: header, optional `extra`, `index`, hashes, blank line, note. */
export function parseTlogProof(text) {
  let pos = 0;
  const next = () => {
    const end = text.indexOf("\n", pos);
    if (end < 0) fail("the proof is truncated");
    const line = text.slice(pos, end);
    pos = end + 1;
    return line;
  };
  if (next() !== PROOF_HEADER) fail(`the proof does not start with ${PROOF_HEADER}`);
  let line = next();
  let extra = null;
  if (line.startsWith("extra ")) {
    extra = b64decode(line.slice(6), "the proof's entry");
    line = next();
  }
  if (!line.startsWith("index ")) fail("the proof has no index line");
  const index = parseUint64(line.slice(6), "the proof's index");
  const hashes = [];
  while ((line = next()) !== "") {
    if (hashes.length === MAX_PROOF_HASHES) fail("the proof has too many hashes");
    const h = b64decode(line, "an inclusion-path hash");
    if (h.length !== 32) fail("an inclusion-path hash is not 32 bytes");
    hashes.push(h);
  }
  return { index, hashes, extra, note: text.slice(pos) };
}

/**
 * The Kafka coordinates the leaf names (docs/leaf-format.md) and the event id, the first
 * field of every event schema (an Avro string after the 10-byte single-object header);
 * eventId is null when the value is not such a record.
 */
export function readLeaf(leaf) {
  const view = new DataView(leaf.buffer, leaf.byteOffset, leaf.byteLength);
  try {
    if (view.getUint8(0) !== 1) fail("the entry is not a version 1 leaf");
    const topicLength = view.getUint16(1);
    if (3 + topicLength > leaf.length) fail("the entry is truncated");
    const topic = new TextDecoder("utf-8", { fatal: true }).decode(leaf.slice(3, 3 + topicLength));
    let pos = 3 + topicLength;
    const partition = view.getUint32(pos);
    const offset = view.getBigUint64(pos + 4);
    const hasKey = view.getUint8(pos + 21);
    pos += 22;
    if (hasKey === 1) pos += 2 + view.getUint16(pos);
    else if (hasKey !== 0) fail("the entry is not a well-formed leaf");
    if (pos > leaf.length) fail("the entry is truncated");
    return { topic, partition, offset, eventId: readEventId(leaf.slice(pos)) };
  } catch (err) {
    if (err instanceof VerifyError) throw err;
    fail("the entry is not a well-formed leaf");
  }
}

function readEventId(value) {
  if (value.length < 11 || value[0] !== 0xc3 || value[1] !== 0x01) return null;
  let pos = 10;
  let zigzag = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    const b = value[pos++];
    if (b === undefined) return null;
    zigzag |= (b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  const length = zigzag >>> 1;
  if (zigzag & 1 || length !== 36 || pos + 36 > value.length) return null;
  return String.fromCharCode(...value.slice(pos, pos + 36));
}

/**
 * Verify an entry: `note` (a signed checkpoint), `index` (BigInt), `hashes` (its inclusion
 * path, Uint8Arrays), `leaf` (the entry's bytes) against verifier keys (C2SP strings).
 * With `eventId`, the entry must be that event. Resolves to {ok: true, origin, index,
 * size, signer, topic, partition, offset} or {ok: false, reason}; never rejects.
 */
export function verifyEntry(entry, verifierKeys, options = {}) {
  // `entry` may be a function returning it, so its decoding failures become reasons too.
  const parts = typeof entry === "function" ? entry : () => entry;
  return checked(parts, verifierKeys, options.eventId ?? null, options.witnesses ?? null);
}

/** verifyEntry for a tlog-proof (text), whose `extra` line carries the entry. */
export function verifyTlogProof(proofText, verifierKeys, options = {}) {
  const parts = () => {
    const { note, index, hashes, extra } = parseTlogProof(proofText);
    return { note, index, hashes, leaf: extra };
  };
  return checked(parts, verifierKeys, options.eventId ?? null, options.witnesses ?? null);
}

async function checked(parts, verifierKeys, eventId, witnesses) {
  try {
    return await check(parts, verifierKeys, eventId, witnesses);
  } catch (err) {
    const reason = err instanceof VerifyError ? err.message : `unexpected error (${err})`;
    return { ok: false, reason };
  }
}

// A log is one Kafka partition (for one period, docs/design/periods.md): its origin is
// `<ledger>/<topic>/<partition>`, or that and `/<YYYY-MM>` or `/<YYYY-MM-DD>`.
const PERIOD_LABEL = /^[0-9]{4}-[0-9]{2}(-[0-9]{2})?$/;

function fromPartition(origin, entry) {
  const base = `/${entry.topic}/${entry.partition}`;
  if (origin.endsWith(base)) return true;
  const cut = origin.lastIndexOf("/");
  return PERIOD_LABEL.test(origin.slice(cut + 1)) && origin.slice(0, cut).endsWith(base);
}

async function check(parts, verifierKeys, eventId, witnesses) {
  if (!Array.isArray(verifierKeys) || verifierKeys.length === 0) {
    fail("this console has no verifier key to check against");
  }
  // The same key configured twice (LEDGER_VERIFIER_KEY and _KEYS) is one key.
  const verifiers = await Promise.all([...new Set(verifierKeys)].map(parseVerifierKey));
  const { note, index, hashes, leaf } = parts();
  if (leaf === null) fail("the proof does not carry the entry");
  const { text, signer } = await openNote(note, verifiers);
  const cp = parseCheckpoint(text);
  const entry = readLeaf(leaf);
  if (!fromPartition(cp.origin, entry)) {
    fail(`the entry is from ${entry.topic}/${entry.partition}, not from log ${cp.origin}`);
  }
  if (eventId !== null && entry.eventId?.toLowerCase() !== String(eventId).toLowerCase()) {
    fail(`the proof is for event ${entry.eventId ?? "(unknown)"}, not ${eventId}`);
  }
  await verifyInclusion(await leafHash(leaf), index, cp.size, hashes, cp.root);
  const witnessedBy = await witnessed(note, text, witnesses);
  return { ok: true, origin: cp.origin, index, size: cp.size, signer, witnessedBy, ...entry };
}

/** The witnesses that cosigned, when a policy is given; fails below its threshold. */
async function witnessed(note, text, policy) {
  if (policy === null || !Array.isArray(policy.keys) || policy.keys.length === 0) return [];
  const keys = await Promise.all([...new Set(policy.keys)].map(parseWitnessKey));
  const by = await cosignedBy(note, text, keys);
  const threshold = Number(policy.threshold) || keys.length;
  if (by.length < threshold) {
    fail(
      `the checkpoint is cosigned by ${by.length} of the ${threshold} witnesses required ` +
        `(${by.join(", ") || "none"})`,
    );
  }
  return by;
}

/** The size a signed note's checkpoint claims, before any check (null if unreadable). */
export function claimedSize(note) {
  try {
    return parseCheckpoint(note.slice(0, note.lastIndexOf("\n\n") + 1)).size;
  } catch {
    return null;
  }
}
