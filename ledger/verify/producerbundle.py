"""Producer authentication in an export bundle: the key registry, the seals, and every
leaf's place in its seal.

Invariant: every file is written owner-only like the rest of the bundle
(``ledger.verify.bundle.files`` FILE_MODE/DIR_MODE, never through a symlink, never over an
existing file) and read back as exactly what was written. The check of each leaf against
them is the verifier's ``ledger.verify.producers``. Pure file I/O beside the bundle's own
files; no database, no network.

Files (next to manifest.json)::

    producer-keys.json                   [{"key_id", "producer_id", "public_key" (hex),
                                           "created_at", "revoked_at", "revoked_reason"}]
    producer-seals.jsonl                 one {"seal_id", "key_id", "producer_id",
                                          "leaf_hashes", "signature"} (hex) per seal
    producer-seal-refs/<log_id>.jsonl    one {"leaf_index", "seal_id" (hex), "entry"} per leaf
    producer-auth-start.json             {"<log_id>": first authenticated leaf index}, for
                                         logs that had leaves before migration 0009
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from ledger.audit.producerauth import (
    AuthFailure,
    ProducerAuthenticator,
    ProducerKeyId,
    RegisteredKey,
    Seal,
)
from ledger.errors import MalformedInputError
from ledger.verify.bundle.files import new_dir, new_file

KEYS_FILE: Final = "producer-keys.json"
SEALS_FILE: Final = "producer-seals.jsonl"
REFS_DIR: Final = "producer-seal-refs"
START_FILE: Final = "producer-auth-start.json"


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
    with open(new_file(bundle / KEYS_FILE), "w", encoding="utf-8") as out:
        out.write(json.dumps(rows, indent=1) + "\n")


def write_auth_start(bundle: Path, starts: Mapping[int, int]) -> None:
    """Where producer authentication starts in each log that is older than it."""
    with open(new_file(bundle / START_FILE), "w", encoding="utf-8") as out:
        out.write(json.dumps({str(k): v for k, v in sorted(starts.items())}) + "\n")


def read_auth_start(bundle: Path) -> dict[int, int]:
    """``write_auth_start``'s mapping; empty without the file (every leaf is authenticated)."""
    path = bundle / START_FILE
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        out = {int(k): int(v) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError, TypeError) as exc:
        raise MalformedInputError(f"{START_FILE} is unusable: {exc}") from exc
    if any(v < 0 for v in out.values()):
        raise MalformedInputError(f"{START_FILE} holds a negative leaf index")
    return out


def write_producer_seals(bundle: Path, seals: Iterable[Seal]) -> None:
    with open(new_file(bundle / SEALS_FILE), "w", encoding="utf-8") as out:
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
        if not directory.is_dir():
            new_dir(directory)
        self._file = open(new_file(directory / f"{log_id}.jsonl"), "w", encoding="utf-8")  # noqa: SIM115

    def add(self, leaf_index: int, seal_id: bytes, entry: int) -> None:
        row = {"leaf_index": leaf_index, "seal_id": seal_id.hex(), "entry": entry}
        self._file.write(json.dumps(row) + "\n")

    def __enter__(self) -> SealRefWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._file.close()


def read_keys(bundle: Path) -> list[RegisteredKey]:
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


def read_seal_refs(bundle: Path, log_id: int) -> dict[int, tuple[bytes, int]]:
    path = bundle / REFS_DIR / f"{log_id}.jsonl"
    try:
        return {
            int(r["leaf_index"]): (bytes.fromhex(r["seal_id"]), int(r["entry"]))
            for r in _jsonl(path)
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise MalformedInputError(f"{path.name} is unusable: {exc}") from exc


def load_seals(bundle: Path, auth: ProducerAuthenticator) -> dict[bytes, AuthFailure]:
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
