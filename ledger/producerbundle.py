"""Producer authentication in an export bundle: the key registry, the seals, and every
leaf's place in its seal.

Invariant: ``check_bundle_producers`` reports, per log, every leaf that is not shown to
come from the producer its event names: no seal reference, a reference to a seal that
is missing or does not verify against the exported registry (``ledger.producerauth``;
each seal's signature is checked once), a leaf whose hash is not its seal's entry, or an
event whose producer id is not the signing key's. Pure file I/O beside the bundle's own
files (``ledger.bundle``); no database, no network. Revocation is not held against a
leaf: a key revoked after a leaf was accepted signed it while it was valid
(docs/producer-auth.md says why).

Files (next to manifest.json)::

    producer-keys.json                   [{"key_id", "producer_id", "public_key" (hex),
                                           "created_at", "revoked_at", "revoked_reason"}]
    producer-seals.jsonl                 one {"seal_id", "key_id", "producer_id",
                                          "leaf_hashes", "signature"} (hex) per seal
    producer-seal-refs/<log_id>.jsonl    one {"leaf_index", "seal_id" (hex), "entry"} per leaf
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from ledger.bundle import BundleReader
from ledger.errors import MalformedInputError
from ledger.leaf import decode_leaf
from ledger.producerauth import (
    AuthFailure,
    ProducerAuthenticator,
    ProducerKeyId,
    RegisteredKey,
    Seal,
    check_producer,
    record_leaf_hash,
)
from ledger.verify import Finding, LogReport

KEYS_FILE: Final = "producer-keys.json"
SEALS_FILE: Final = "producer-seals.jsonl"
REFS_DIR: Final = "producer-seal-refs"
#: Findings of one kind reported per log before the rest are summarised in one.
MAX_PER_KIND: Final = 20


def write_producer_keys(bundle: Path, keys: Iterable[RegisteredKey]) -> None:
    rows = [
        {
            "key_id": k.key_id,
            "producer_id": k.producer_id,
            "public_key": k.public_key.hex(),
            "created_at": k.created_at.isoformat(),
            "revoked_at": None if k.revoked_at is None else k.revoked_at.isoformat(),
            "revoked_reason": k.revoked_reason,
        }
        for k in keys
    ]
    (bundle / KEYS_FILE).write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


def write_producer_seals(bundle: Path, seals: Iterable[Seal]) -> None:
    with (bundle / SEALS_FILE).open("w", encoding="utf-8") as out:
        for seal in seals:
            row = {
                "seal_id": seal.seal_id.hex(),
                "key_id": seal.key_id,
                "producer_id": seal.producer_id,
                "leaf_hashes": seal.leaf_hashes.hex(),
                "signature": seal.signature.hex(),
            }
            out.write(json.dumps(row) + "\n")


class SealRefWriter:
    """Writes one log's seal references; ``with SealRefWriter(bundle, log_id) as w: ...``."""

    def __init__(self, bundle: Path, log_id: int) -> None:
        directory = bundle / REFS_DIR
        directory.mkdir(mode=0o700, exist_ok=True)
        self._file = (directory / f"{log_id}.jsonl").open("w", encoding="utf-8")

    def add(self, leaf_index: int, seal_id: bytes, entry: int) -> None:
        row = {"leaf_index": leaf_index, "seal_id": seal_id.hex(), "entry": entry}
        self._file.write(json.dumps(row) + "\n")

    def __enter__(self) -> SealRefWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def _read_keys(bundle: Path) -> list[RegisteredKey]:
    try:
        raw = json.loads((bundle / KEYS_FILE).read_text(encoding="utf-8"))
        return [
            RegisteredKey(
                key_id=ProducerKeyId(str(r["key_id"])),
                producer_id=str(r["producer_id"]),
                public_key=bytes.fromhex(r["public_key"]),
                created_at=datetime.fromisoformat(r["created_at"]),
                # Held against acceptance, not against what was accepted while valid.
                revoked_at=None,
            )
            for r in raw
        ]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MalformedInputError(f"{KEYS_FILE} is unusable: {exc}") from exc


def _jsonl(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with path.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise TypeError("not an object")
            except (ValueError, TypeError) as exc:
                raise MalformedInputError(f"{path.name} line {n} is unusable: {exc}") from exc
            yield row


def _read_refs(bundle: Path, log_id: int) -> dict[int, tuple[bytes, int]]:
    path = bundle / REFS_DIR / f"{log_id}.jsonl"
    try:
        return {
            int(r["leaf_index"]): (bytes.fromhex(r["seal_id"]), int(r["entry"]))
            for r in _jsonl(path)
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedInputError(f"{path.name} is unusable: {exc}") from exc


def _load_seals(bundle: Path, auth: ProducerAuthenticator) -> dict[bytes, AuthFailure]:
    """Verify every exported seal once (into ``auth``); the failures, by seal id."""
    failed: dict[bytes, AuthFailure] = {}
    try:
        for r in _jsonl(bundle / SEALS_FILE):
            seal = Seal(
                seal_id=bytes.fromhex(r["seal_id"]),
                key_id=ProducerKeyId(str(r["key_id"])),
                producer_id=str(r["producer_id"]),
                leaf_hashes=bytes.fromhex(r["leaf_hashes"]),
                signature=bytes.fromhex(r["signature"]),
            )
            try:
                auth.add_seal(seal)
            except AuthFailure as exc:
                failed[seal.seal_id] = exc
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedInputError(f"{SEALS_FILE} is unusable: {exc}") from exc
    return failed


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7


def stamped_producer(value: bytes) -> str:
    """The producer id an event carries: every writer schema has event_id (string),
    event_time (long), then producer_id (string) after the 10-byte single-object header."""
    try:
        size, pos = _varint(value, 10)
        _, pos = _varint(value, pos + size)
        size, pos = _varint(value, pos)
        if size < 0 or pos + size > len(value):
            raise ValueError("producer_id runs past the value")
        return value[pos : pos + size].decode("utf-8")
    except (IndexError, ValueError) as exc:
        raise AuthFailure("producer_mismatch", "the event's producer id is unreadable") from exc


def _check_log(
    reader: BundleReader,
    log_id: int,
    origin: str,
    auth: ProducerAuthenticator,
    bad_seals: Mapping[bytes, AuthFailure],
) -> list[Finding]:
    refs = _read_refs(reader.path, log_id)
    found: list[Finding] = []
    counts: dict[str, int] = {}

    def report(kind: str, leaf_index: int | None, detail: str) -> None:
        counts[kind] = counts.get(kind, 0) + 1
        if counts[kind] <= MAX_PER_KIND:
            found.append(
                Finding(kind=kind, log=origin, leaf_index=leaf_index, checkpoint_size=None,
                        detail=detail)
            )  # fmt: skip

    for leaf_index, leaf in reader.iter_entries(log_id):
        ref = refs.pop(leaf_index, None)
        if ref is None:
            report("producer_unauthenticated", leaf_index, "no producer seal for this leaf")
            continue
        try:
            record = decode_leaf(leaf)
            key = _check_ref(auth, bad_seals, ref, record.topic, record.value)
            check_producer(key, stamped_producer(record.value))
        except AuthFailure as exc:
            kind = exc.reason if exc.reason.startswith("producer_") else f"producer_{exc.reason}"
            report(kind, leaf_index, exc.detail)
        except MalformedInputError as exc:
            report("producer_bad_envelope", leaf_index, f"leaf does not decode: {exc}")
    for leaf_index in sorted(refs):
        report("producer_envelope_orphan", leaf_index, "a seal reference for a leaf not in the log")
    for kind, n in counts.items():
        if n > MAX_PER_KIND:
            report(kind, None, f"{n - MAX_PER_KIND} more leaves with this finding")
    return found


def _check_ref(
    auth: ProducerAuthenticator,
    bad_seals: Mapping[bytes, AuthFailure],
    ref: tuple[bytes, int],
    topic: str,
    value: bytes,
) -> RegisteredKey:
    """The key whose verified seal holds this leaf at the referenced entry."""
    seal_id, entry = ref
    if seal_id in bad_seals:
        raise bad_seals[seal_id]
    seal = auth.seal(seal_id)
    if seal is None:
        raise AuthFailure("unknown_seal", f"seal {seal_id.hex()} is not in {SEALS_FILE}")
    key = auth.check_key_any(seal.key_id)
    leaf = record_leaf_hash(key.producer_id, topic, value)
    auth.check_entry(key, bytes.fromhex(seal.key_id), seal_id, entry, leaf)
    return key


def check_bundle_producers(path: Path, reports: Sequence[LogReport]) -> list[LogReport]:
    """``reports`` (of ``ledger.verify.verify_bundle``) with producer findings added.

    A bundle without ``producer-keys.json`` (exported before producer authentication, or
    fetched through the API) is returned unchanged.
    """
    if not (path / KEYS_FILE).exists():
        return list(reports)
    reader = BundleReader(path)
    auth = ProducerAuthenticator(_read_keys(path), cache_size=2**62)
    bad_seals = _load_seals(path, auth)
    ids: Mapping[str, int] = {g.origin: g.log_id for g in reader.logs}
    out = []
    for report in reports:
        log_id = ids.get(report.origin)
        if log_id is None:
            out.append(report)
            continue
        extra = _check_log(reader, log_id, report.origin, auth, bad_seals)
        out.append(dataclasses.replace(report, findings=report.findings + tuple(extra)))
    return out
