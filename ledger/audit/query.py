"""Read-side types and the port the API queries the ledger through.

Invariant: every entry returned by a read names the log and leaf index it sits
at, so any answer can be proven against a signed checkpoint. Cursors are opaque
to clients and strictly validated on the way in.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from ledger.audit.unreadable import UnreadablePeriod
from ledger.errors import MalformedInputError


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerPosition:
    log_id: int
    origin: str
    leaf_index: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessEntry:
    """One row of an access history: who touched which PHI, when, how, from where."""

    event_id: uuid.UUID
    kind: str
    event_time: datetime
    facility_id: str
    patient_id: str | None
    patient_issuer: str | None
    patient_state: str | None
    user_id: str
    user_name: str | None
    user_role: str | None
    user_org: str | None
    dicom_event_id: str | None
    action: str | None
    outcome: str | None
    study_uid: str | None
    accession: str | None
    network_address: str | None
    purpose_of_use: str | None
    position: LedgerPosition
    #: In a patient's history: a read of the ledger that does not name the patient but
    #: returned at least one of the patient's entries (docs/read-attribution.md).
    via_disclosure: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvent:
    entry: AccessEntry
    producer_id: str
    producer_seq: int
    leaf: bytes
    leaf_hash: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSeal:
    """A closed log's ``log_seals`` row: its final size, its signed seal note, and the
    partition's next log (id, origin) with the Kafka offset it starts at."""

    size: int
    note: str
    next_log_id: int
    next_origin: str
    next_first_offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LogInfo:
    log_id: int
    origin: str
    topic: str
    partition: int
    size: int
    checkpoint_size: int = 0
    #: How long ago the newest checkpoint was signed (None: none yet, or not read).
    checkpoint_age: timedelta | None = None
    #: The log's period (its first day) and first Kafka offset (migration 0017).
    period: date | None = None
    first_offset: int | None = None
    #: Its seal, once the log is closed and sealed.
    seal: LogSeal | None = None
    #: The SHA-256 (hex) of the archive holding its entries, once its month left the
    #: database (``ledger archive detach``); ``size`` is then its sealed size.
    archive: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedCheckpoint:
    size: int
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EventProof:
    """An event's leaf and its inclusion proof under a signed checkpoint."""

    log: LogInfo
    leaf_index: int
    leaf: bytes
    hashes: tuple[bytes, ...]
    checkpoint: SignedCheckpoint


#: Most logs a cursor can pin (topics x partitions).
MAX_CURSOR_LOGS = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """The signed size of every log when a listing started: pages never show entries
    appended later, and every entry shown is covered by a signed checkpoint."""

    sizes: tuple[int, ...]  # index i holds the size of log_id i + 1

    def size_of(self, log_id: int) -> int:
        return self.sizes[log_id - 1] if 0 < log_id <= len(self.sizes) else 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Cursor:
    """Position after the last entry of a page (newest-first order), and its snapshot."""

    event_time: datetime
    event_id: uuid.UUID
    snapshot: Snapshot

    def encode(self) -> str:
        sizes = ".".join(str(n) for n in self.snapshot.sizes)
        raw = f"{self.event_time.isoformat()}|{self.event_id}|{sizes}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        if len(token) > 16_384:
            raise MalformedInputError("cursor is too long")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
            when, ident, sizes_text = raw.split("|")
            event_time = datetime.fromisoformat(when)
            event_id = uuid.UUID(ident)
            sizes = tuple(int(n) for n in sizes_text.split(".")) if sizes_text else ()
        except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
            raise MalformedInputError("cursor is not one this API issued") from exc
        if (
            event_time.tzinfo is None
            or len(sizes) > MAX_CURSOR_LOGS
            or any(not 0 <= n < 2**62 for n in sizes)
        ):
            raise MalformedInputError("cursor is not one this API issued")
        return cls(
            event_time=event_time.astimezone(UTC),
            event_id=event_id,
            snapshot=Snapshot(sizes=sizes),
        )


class HistoryKey(StrEnum):
    PATIENT = "patient"
    USER = "user"
    STUDY = "study"
    ACCESSION = "accession"


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryQuery:
    """Whose history, narrowed by optional filters. ``qualifier`` is the patient's
    issuer or the study's accession number (None for a user or an accession);
    ``since`` is inclusive, ``until`` exclusive."""

    key: HistoryKey
    value: str
    qualifier: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    action: str | None = None
    facility: str | None = None
    outcome: str | None = None
    #: Further narrowing (FHIR search): by user, by study, by DICOM EventID ("CRR" for a
    #: critical-result relay), by any of several actions.
    user: str | None = None
    study: str | None = None
    event_types: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    #: The IHE ITI-81 narrowing (FHIR search): any of several stored outcomes, facility ids
    #: (``source.site``), producer ids (``source.observer``); case-insensitive prefixes of
    #: the network address and of the user's name (``agent.name``).
    outcomes: tuple[str, ...] = ()
    facilities: tuple[str, ...] = ()
    producers: tuple[str, ...] = ()
    address_prefix: str | None = None
    user_name_prefix: str | None = None


class LedgerReader(Protocol):
    async def snapshot(self, *, fresh: bool = False) -> Snapshot:
        """Every log's newest signed size (cached briefly; ``fresh``: read now)."""
        ...

    async def origins(self) -> Mapping[int, str]:
        """Each log's origin by log id (logs are never removed or renamed)."""
        ...

    async def history(
        self, query: HistoryQuery, *, snapshot: Snapshot, limit: int, after: Cursor | None
    ) -> Sequence[AccessEntry]:
        """Entries matching ``query`` within ``snapshot``, newest first, after ``after``."""
        ...

    async def event(self, event_id: uuid.UUID) -> StoredEvent | None: ...

    async def detached_periods(self) -> Sequence[UnreadablePeriod]:
        """Every period whose events left the database (``ledger.audit.unreadable``
        picks those an answer could not read); read it after the answer's rows."""
        ...

    async def leaves_at(
        self, positions: Sequence[LedgerPosition]
    ) -> Mapping[tuple[int, int], bytes]:
        """The stored leaf at each (log id, leaf index) position that exists."""
        ...

    async def logs(self) -> Sequence[LogInfo]: ...

    async def writer_schemas(self) -> Sequence[tuple[bytes, str, str]]:
        """(fingerprint, full name, schema JSON) of every registered writer schema."""
        ...

    async def log(self, log_id: int) -> LogInfo | None: ...

    async def checkpoints(
        self, log_id: int, *, after: int, limit: int
    ) -> Sequence[SignedCheckpoint]: ...

    async def latest_checkpoint(self, log_id: int) -> SignedCheckpoint | None: ...

    async def tile(self, log_id: int, level: int, index: int, width: int) -> bytes | None:
        """Concatenated hashes of a (partial) tile, or None when it does not exist yet."""
        ...

    async def entries(self, log_id: int, index: int, width: int) -> bytes | None:
        """A tlog-tiles entry bundle, or None when it does not exist yet."""
        ...

    async def inclusion(
        self, log_id: int, index: int, tree_size: int, current_size: int
    ) -> tuple[bytes, ...]:
        """Proof hashes; ``current_size`` is the log's size as just read (from ``log``)."""
        ...

    async def consistency(
        self, log_id: int, first: int, second: int, current_size: int
    ) -> tuple[bytes, ...]: ...

    async def leaves(self, log_id: int, *, start: int, end: int) -> Sequence[tuple[int, bytes]]:
        """(leaf index, leaf) for stored leaves with index in [start, end), as stored."""
        ...

    async def index_rows(
        self, log_id: int, *, start: int, limit: int
    ) -> Sequence[Mapping[str, object]]:
        """Rows of the event index for leaves ``start..``, in leaf order."""
        ...

    async def quarantine(
        self, *, after: int, limit: int, reason: str | None
    ) -> Sequence[Mapping[str, object]]:
        """Quarantined records with id > ``after``, oldest first."""
        ...

    async def alerts(self, *, after: int, limit: int) -> Sequence[Mapping[str, object]]:
        """Security alerts with id > ``after``, oldest first."""
        ...

    async def event_proof(self, event_id: uuid.UUID) -> EventProof | None:
        """None when the event is unknown; raises PushbackError while no checkpoint covers it."""
        ...


#: One access-history row as ``RowHistory`` returns it: ``AccessEntry``'s fields in their
#: order with the position flattened (log id, origin, leaf index), then ``via_disclosure``.
#: A database row (asyncpg's ``Record``) is one as it comes, with no object per entry.
AccessRow = Sequence[Any]
ROW_EVENT_ID, ROW_TIME, ROW_KIND = 0, 2, 1
ROW_ORIGIN, ROW_LEAF_INDEX = 19, 20


def entry_row(e: AccessEntry) -> tuple[Any, ...]:
    """``e`` as an ``AccessRow`` (the shape the history's JSON is made from)."""
    p = e.position
    return (
        e.event_id, e.kind, e.event_time, e.facility_id, e.patient_id, e.patient_issuer,
        e.patient_state, e.user_id, e.user_name, e.user_role, e.user_org, e.dicom_event_id,
        e.action, e.outcome, e.study_uid, e.accession, e.network_address, e.purpose_of_use,
        p.log_id, p.origin, p.leaf_index, e.via_disclosure,
    )  # fmt: skip


@runtime_checkable
class RowHistory(Protocol):
    """A reader that also returns a history as rows (``AccessRow``), for the API's pages:
    the same entries as ``LedgerReader.history``, without an object per entry."""

    async def history_rows(
        self, query: HistoryQuery, *, snapshot: Snapshot, limit: int, after: Cursor | None
    ) -> Sequence[AccessRow]: ...
