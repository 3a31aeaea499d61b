"""The bundle layout (``phi-ledger-export/v1``): names, record heads, manifest logs, cells.

Invariant: this module is the one place the writer and the reader take the format from:
the file names, the binary record heads (``entries.bin``: u64 leaf index, u16 length;
``tiles.bin``: u8 level, u64 tile index), the ``index.jsonl`` columns and how each cell
is rendered. The layout of a bundle directory and of each file: docs/bundle-format.md
(``size`` in the manifest is the size the exporting database *claimed*; the verifier
checks it).
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from ledger.errors import MalformedInputError

BUNDLE_FORMAT: Final = "phi-ledger-export/v1"
"""The ``format`` value of a version-1 manifest."""

ARCHIVE_FORMAT: Final = "phi-ledger-archive/v1"
"""The ``format`` of an archive bundle: one sealed period, every file's digest in the
manifest (``ledger.verify.bundle.archive``, docs/archive.md)."""

FORMATS: Final = frozenset({BUNDLE_FORMAT, ARCHIVE_FORMAT})

TILE_BYTES: Final = 256 * 32
"""Size of a stored (full) tile: 256 SHA-256 hashes."""

INDEX_COLUMNS: Final = (
    "leaf_index",
    "event_id",
    "kind",
    "event_time",
    "producer_id",
    "producer_seq",
    "facility_id",
    "patient_id",
    "patient_issuer",
    "patient_state",
    "user_id",
    "user_name",
    "user_role",
    "user_org",
    "dicom_event_id",
    "action",
    "outcome",
    "study_uid",
    "accession",
    "network_address",
    "purpose_of_use",
    # What a read of the ledger disclosed (``read_disclosures``, ledger.audit.disclosure.cell):
    # [[origin, first leaf, end leaf], ...] sorted; [] for every other event.
    "disclosed",
    # The patients an access answer returned (``event_patients``, PhiAccessEvent v2):
    # [[issuer, id, state, [study UIDs]], ...] in the leaf's order; [] for every other event.
    "patients",
)
"""The ``events``-table columns carried by each ``index.jsonl`` row, in file order, the
leaf's ``read_disclosures`` rows as one ``disclosed`` cell and its ``event_patients`` rows as
one ``patients`` cell (a bundle written before a cell existed has rows without it: they
read as disclosing nothing)."""

MANIFEST: Final = "manifest.json"
SCHEMAS: Final = "schemas.json"
ENTRIES: Final = "entries.bin"
TILES: Final = "tiles.bin"
CHECKPOINTS: Final = "checkpoints.jsonl"
INDEX: Final = "index.jsonl"
SEAL: Final = "seal.json"

ENTRY_HEAD: Final = struct.Struct(">QH")
TILE_HEAD: Final = struct.Struct(">BQ")
MAX_U64: Final = (1 << 64) - 1
MAX_LEAF: Final = 0xFFFF
COLUMN_SET: Final = frozenset(INDEX_COLUMNS)


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleLog:
    """One log listed in a manifest.

    Invariant: ``log_id`` and ``size`` are non-negative ints and ``origin`` a non-empty str.
    """

    log_id: int
    origin: str
    size: int
    #: Where the log lies in its partition's chain of periods (manifests since 0017):
    #: its topic and partition, its period's first day (ISO date) and first Kafka offset.
    topic: str | None = None
    partition: int | None = None
    period: str | None = None
    first_offset: int | None = None

    def __post_init__(self) -> None:
        if type(self.log_id) is not int or self.log_id < 0:
            raise MalformedInputError(f"log_id must be a non-negative int, got {self.log_id!r}")
        if not isinstance(self.origin, str) or not self.origin:
            raise MalformedInputError("log origin must be a non-empty string")
        if type(self.size) is not int or not 0 <= self.size <= MAX_U64:
            raise MalformedInputError(f"log size must be a uint64, got {self.size!r}")
        if self.first_offset is not None:
            check_u64(self.first_offset, "first offset")
        if self.partition is not None:
            check_u64(self.partition, "partition")

    def manifest_entry(self) -> dict[str, object]:
        """The log's object in ``manifest.json`` (chain fields only when known)."""
        entry: dict[str, object] = {"log_id": self.log_id, "origin": self.origin, "size": self.size}
        chain = {
            "topic": self.topic,
            "partition": self.partition,
            "period": self.period,
            "first_offset": self.first_offset,
        }
        entry.update({k: v for k, v in chain.items() if v is not None})
        return entry


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredSeal:
    """A log's ``seal.json``: its ``log_seals`` row as stored, unjudged (the verifier
    opens ``note`` with its own keys; the other fields are what the database claimed)."""

    size: int
    note: str
    next_log_id: int
    next_origin: str
    next_first_offset: int

    @classmethod
    def from_json(cls, obj: object, what: str) -> StoredSeal:
        if not isinstance(obj, dict):
            raise MalformedInputError(f"{what} is not a JSON object")
        ints = [obj.get(k) for k in ("size", "next_log_id", "next_first_offset")]
        note, origin = obj.get("note"), obj.get("next_origin")
        if any(type(v) is not int for v in ints) or not isinstance(note, str):
            raise MalformedInputError(f"{what} needs int size, next_log_id, next_first_offset")
        if not isinstance(origin, str):
            raise MalformedInputError(f"{what} needs a str next_origin and note")
        size, next_log_id, next_first_offset = (int(str(v)) for v in ints)
        return cls(
            size=size,
            note=note,
            next_log_id=next_log_id,
            next_origin=origin,
            next_first_offset=next_first_offset,
        )


def check_u64(value: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= MAX_U64:
        raise MalformedInputError(f"{what} must be a uint64, got {value!r}")


def iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise MalformedInputError("timestamps in a bundle must carry a time zone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def json_cell(column: str, value: object) -> object:
    """An index cell rendered JSON-safe: datetimes as ISO-8601 UTC, UUIDs as strings."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise MalformedInputError(f"index column {column} cannot hold a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple) and all(range_cell(item) for item in value):
        return [list(item) for item in value]
    if isinstance(value, list | tuple) and all(patient_cell(item) for item in value):
        return [[*item[:3], list(item[3])] for item in value]
    raise MalformedInputError(f"index column {column} cannot hold a {type(value).__name__}")


def range_cell(item: object) -> bool:
    """One ``[origin, first leaf, end leaf]`` of a ``disclosed`` cell, copied as given."""
    return (
        isinstance(item, list | tuple)
        and len(item) == 3
        and isinstance(item[0], str)
        and all(type(x) is int for x in item[1:])
    )


def patient_cell(item: object) -> bool:
    """One ``[issuer, id, state, [study UIDs]]`` of a ``patients`` cell, copied as given."""
    return (
        isinstance(item, list | tuple)
        and len(item) == 4
        and isinstance(item[1], str)
        and all(x is None or isinstance(x, str) for x in (item[0], item[2]))
        and isinstance(item[3], list | tuple)
        and all(isinstance(uid, str) for uid in item[3])
    )


# --------------------------------------------------------------------------------------------


def index_row(values: Mapping[str, object]) -> dict[str, object]:
    """A row with exactly ``INDEX_COLUMNS`` from a mapping that has at least those keys."""
    try:
        return {column: values[column] for column in INDEX_COLUMNS}
    except KeyError as exc:
        raise MalformedInputError(f"index row lacks column {exc.args[0]}") from exc
