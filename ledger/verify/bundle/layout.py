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

    def __post_init__(self) -> None:
        if type(self.log_id) is not int or self.log_id < 0:
            raise MalformedInputError(f"log_id must be a non-negative int, got {self.log_id!r}")
        if not isinstance(self.origin, str) or not self.origin:
            raise MalformedInputError("log origin must be a non-empty string")
        if type(self.size) is not int or not 0 <= self.size <= MAX_U64:
            raise MalformedInputError(f"log size must be a uint64, got {self.size!r}")


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
