"""Producer authentication in an export bundle: the key registry and every leaf's envelope.

Invariant: ``check_bundle_producers`` reports, per log, every leaf that is not shown to
come from the producer its event names: no envelope, an envelope that does not verify
against the exported registry (``ledger.producerauth``), or an event whose producer id
is not the signing key's. Pure file I/O beside the bundle's own files (``ledger.bundle``);
no database, no network. Revocation is not held against a leaf: a key revoked after a
leaf was accepted signed it while it was valid (docs/producer-auth.md says why).

Files (next to manifest.json)::

    producer-keys.json                   [{"key_id", "producer_id", "public_key" (hex),
                                           "created_at", "revoked_at", "revoked_reason"}]
    producer-envelopes/<log_id>.jsonl    one {"leaf_index", "key_id", "envelope" (hex)}
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Final

from ledger.bundle import BundleReader
from ledger.errors import MalformedInputError
from ledger.leaf import decode_leaf
from ledger.producerauth import (
    AuthFailure,
    ProducerAuthenticator,
    ProducerKeyId,
    RegisteredKey,
    check_producer,
)
from ledger.verify import Finding, LogReport

KEYS_FILE: Final = "producer-keys.json"
ENVELOPES_DIR: Final = "producer-envelopes"
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


class EnvelopeWriter:
    """Writes one log's envelopes; ``with EnvelopeWriter(bundle, log_id) as w: w.add(...)``."""

    def __init__(self, bundle: Path, log_id: int) -> None:
        directory = bundle / ENVELOPES_DIR
        directory.mkdir(mode=0o700, exist_ok=True)
        self._file = (directory / f"{log_id}.jsonl").open("w", encoding="utf-8")

    def add(self, leaf_index: int, envelope: bytes) -> None:
        row = {"leaf_index": leaf_index, "key_id": envelope[1:9].hex(), "envelope": envelope.hex()}
        self._file.write(json.dumps(row) + "\n")

    def __enter__(self) -> EnvelopeWriter:
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


def _read_envelopes(bundle: Path, log_id: int) -> dict[int, bytes]:
    path = bundle / ENVELOPES_DIR / f"{log_id}.jsonl"
    out: dict[int, bytes] = {}
    if not path.exists():
        return out
    with path.open(encoding="utf-8") as lines:
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
                out[int(row["leaf_index"])] = bytes.fromhex(row["envelope"])
            except (ValueError, KeyError, TypeError) as exc:
                raise MalformedInputError(f"{path.name} line {n} is unusable: {exc}") from exc
    return out


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
    reader: BundleReader, log_id: int, origin: str, auth: ProducerAuthenticator
) -> list[Finding]:
    envelopes = _read_envelopes(reader.path, log_id)
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
        envelope = envelopes.pop(leaf_index, None)
        if envelope is None:
            report("producer_unauthenticated", leaf_index, "no producer envelope for this leaf")
            continue
        try:
            record = decode_leaf(leaf)
            key = auth.authenticate(topic=record.topic, value=record.value, envelope=envelope)
            check_producer(key, stamped_producer(record.value))
        except AuthFailure as exc:
            kind = exc.reason if exc.reason.startswith("producer_") else f"producer_{exc.reason}"
            report(kind, leaf_index, exc.detail)
        except MalformedInputError as exc:
            report("producer_bad_envelope", leaf_index, f"leaf does not decode: {exc}")
    for leaf_index in sorted(envelopes):
        report("producer_envelope_orphan", leaf_index, "an envelope for a leaf not in the log")
    for kind, n in counts.items():
        if n > MAX_PER_KIND:
            report(kind, None, f"{n - MAX_PER_KIND} more leaves with this finding")
    return found


def check_bundle_producers(path: Path, reports: Sequence[LogReport]) -> list[LogReport]:
    """``reports`` (of ``ledger.verify.verify_bundle``) with producer findings added.

    A bundle without ``producer-keys.json`` (exported before producer authentication, or
    fetched through the API) is returned unchanged.
    """
    if not (path / KEYS_FILE).exists():
        return list(reports)
    reader = BundleReader(path)
    auth = ProducerAuthenticator(_read_keys(path))
    ids: Mapping[str, int] = {g.origin: g.log_id for g in reader.logs}
    out = []
    for report in reports:
        log_id = ids.get(report.origin)
        if log_id is None:
            out.append(report)
            continue
        extra = _check_log(reader, log_id, report.origin, auth)
        out.append(dataclasses.replace(report, findings=report.findings + tuple(extra)))
    return out
