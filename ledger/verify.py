"""Offline verification of one Merkle log (or a whole export bundle) from its stored data.

Invariant: ``verify_log`` is pure apart from consuming the iterators of its ``LogSource``;
it never stops at the first problem and never raises because the *data* is bad -- every
inconsistency becomes a ``Finding`` with a stable ``kind`` (``FINDING_KINDS``), located by
leaf index, checkpoint size and/or tile wherever the data allows.  A report with no findings
(``LogReport.ok``) means: every checkpoint is signed by a trusted key, names this log and
has a root equal to the RFC 6962 root recomputed from the leaves; the leaf indexes are
exactly ``0..n-1``; every stored tile equals the tree nodes recomputed from the leaves, and
every full tile that must exist does; and (with ``check_index``) every leaf decodes to an
event whose projection equals its one ``events``-table row, with no row left over.

What is recomputed, and how:

* Checkpoints (a).  Each note is opened with the trusted verifiers (unknown keys only or a
  bad signature by a trusted key -> ``checkpoint_signature``), its origin compared with the
  log's (``checkpoint_origin``) and its size with the sizes listed before it
  (``checkpoint_order``).  Only signed checkpoints of this log are used below.
* Leaves (b).  Entries are streamed once.  Indexes must run 0, 1, 2, ...; a bounded reorder
  window absorbs local disorder (``leaf_disorder``), a gap becomes ``leaf_missing``, a second
  entry for an index ``leaf_duplicate`` (the first one is used).  Every leaf is hashed
  (``SHA-256(0x00 || leaf)``) and compared with the stored level-0 tile entry.  A leaf that is
  not a version-1 leaf of this log's topic and partition is ``leaf_malformed`` or
  ``leaf_misplaced``.
* Roots (c, d).  The tree is rebuilt in 256-leaf blocks: each block's root (the tree node at
  level 8) feeds a ``merkle.TreeBuilder`` whose leaves are block roots, which is the same
  RFC 6962 tree for every size that is a multiple of 256; for any other checkpoint size the
  builder's compact range is completed with the partial block via
  ``TreeBuilder.from_state``. No node is hashed twice.  Memory is O(log n) for the roots;
  the tile checks below add 32 bytes per 256 leaves plus the stored higher tiles (1/256 of
  the level-0 tile data).  Successive checkpoints of one log are mutually consistent (the
  later tree extends the earlier) if and only if each root matches the recomputation from
  the same leaf sequence -- each is then the MTH of a prefix of one sequence -- so no
  consistency proof is needed, and a pair of successive checkpoints whose roots both verify
  needs no further check.  A checkpoint larger than the leaves present is
  ``checkpoint_beyond_log``; one whose root differs is ``checkpoint_root_mismatch``, located
  by the first altered leaf found after the last *verified* checkpoint (not merely the
  previous one: a failed checkpoint proves nothing about the leaves below it), else by a
  disagreeing higher tile, else by the leaf range ``[last verified size, size)``.  A missing
  leaf is replaced by its stored level-0 tile hash when that tile exists (so the checkpoints
  still prove what the leaf hashed to); otherwise the checkpoints covering it are
  ``checkpoint_unverifiable``.
* Tiles (e).  Level-0 tiles are compared entry by entry with the recomputed leaf hashes, and
  every higher tile (level L, entry j) with the tree node at level 8L recomputed from the
  leaves -- which equals "the root of level-(L-1) tile j" whenever that tile is right, and
  blames the right tile when it is not.  A disagreement is attributed with the checkpoints:
  if a verified checkpoint covers the leaves, the stored tile is wrong (``tile_mismatch``);
  otherwise the leaves are suspect (``leaf_hash_mismatch`` for level 0; ``tile_mismatch``
  says so for higher levels).  Full tiles that should exist are ``tile_missing``; tiles for
  leaves beyond both the entries and the claimed size are ``tile_beyond_log``.
* Index (f, optional).  Each leaf's value is decoded with the stored writer schemas and
  projected (``project_event``) onto the ``events`` columns, and the row with the same
  ``leaf_index`` must match column by column (``index_mismatch`` names the column but never
  echoes values: findings carry no PHI).  ``event_time`` compares as an instant and
  ``event_id`` as a UUID.  For a relay, ``action``/``outcome``/``purpose_of_use`` are
  consumer policy rather than event fields and are not compared.

Sources are read in one pass each and are expected in ascending order (entries and rows by
``leaf_index``, level-0 tiles by index; higher tiles may come in any order); disorder beyond
the reorder windows loses precision, never soundness.  Findings of one kind beyond
``max_findings_per_kind`` are counted (``findings_truncated``), not listed.
"""

from __future__ import annotations

import bisect
import hashlib
import heapq
import uuid
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Final, Generic, Protocol, TypeVar, runtime_checkable

from ledger import disclosure
from ledger.avro import JsonValue, SchemaSet, StoredSchema
from ledger.bundle import TILE_BYTES, BundleLog, BundleReader
from ledger.checkpoint import Checkpoint, open_checkpoint, parse_checkpoint
from ledger.errors import LedgerError, MalformedInputError, VerificationError
from ledger.leaf import LEAF_VERSION, decode_leaf
from ledger.merkle import EMPTY_ROOT, TreeBuilder
from ledger.note import Verifier

__all__ = [
    "FINDING_KINDS",
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "BatchedLogSource",
    "BundleLogSource",
    "Finding",
    "LogReport",
    "LogSource",
    "ProgressCallback",
    "build_full_tiles",
    "project_event",
    "verify_bundle",
    "verify_log",
]

TILE_HEIGHT: Final = 8
TILE_WIDTH: Final = 1 << TILE_HEIGHT
_MASK: Final = TILE_WIDTH - 1
_HASH: Final = 32
_MAX_TILE_LEVEL: Final = 7  # a full level-8 tile would need 2**72 leaves
_ZERO: Final = bytes(_HASH)

ENTRY_WINDOW: Final = 4096
"""Entries held back while waiting for a smaller index (local disorder)."""
TILE_WINDOW: Final = 8
ROW_WINDOW: Final = 1024
MAX_GAP: Final = 1 << 24
"""An entry this far beyond the next expected index is reported, not waited for."""
PROGRESS_EVERY: Final = 50_000
BATCH: Final = 4096

FINDING_KINDS: Final[Mapping[str, str]] = {
    "checkpoint_malformed": "a checkpoint note does not parse, or its row's size differs",
    "checkpoint_signature": "no trusted key verifies the checkpoint (or a trusted key's "
    "signature is invalid)",
    "checkpoint_origin": "a signed checkpoint names another log",
    "checkpoint_order": "a checkpoint is smaller than one listed before it",
    "checkpoint_root_mismatch": "the root recomputed from the leaves differs from the signed one",
    "checkpoint_unverifiable": "a leaf it covers is missing and no stored hash replaces it",
    "checkpoint_beyond_log": "the checkpoint covers more leaves than are present",
    "leaf_missing": "no entry for a leaf index (or a range of them)",
    "leaf_duplicate": "a second entry for a leaf index (the first is the one verified)",
    "leaf_disorder": "an entry is stored after an entry with a larger index",
    "leaf_out_of_range": "an entry's index is implausibly far ahead; it is not verified",
    "leaf_malformed": "the bytes are not a version-1 leaf",
    "leaf_misplaced": "the leaf records another topic or partition than its log's",
    "leaf_offset_order": "the leaf's Kafka offset does not exceed the previous leaf's",
    "leaf_hash_mismatch": "the leaf's hash differs from its stored level-0 tile entry and no "
    "verified checkpoint vouches for the leaf",
    "log_size_mismatch": "more entries are present than the source claims",
    "tile_malformed": "a tile record has a bad level, index or length",
    "tile_duplicate": "a tile is stored twice",
    "tile_mismatch": "a stored tile entry differs from the node recomputed from the leaves",
    "tile_missing": "full tiles that must exist are absent",
    "tile_beyond_log": "tiles cover leaves beyond both the entries and the claimed size",
    "event_undecodable": "the leaf value does not decode with the stored writer schemas",
    "index_missing": "no index row for a leaf",
    "index_orphan": "an index row for a leaf that is not present",
    "index_duplicate": "a second index row for a leaf",
    "index_disorder": "an index row out of order (not compared)",
    "index_malformed": "an index row without a usable leaf_index",
    "index_mismatch": "an index row disagrees with its leaf's event (the column is named)",
    "disclosure_mismatch": "the read_disclosures rows of a leaf disagree with what its read "
    "disclosed (ledger.disclosure)",
    "schema_invalid": "a stored writer schema does not match its fingerprint",
    "source_error": "the source could not be read completely",
    "findings_truncated": "more findings of one kind than are listed",
}
"""Every stable finding code, with what it means."""

ProgressCallback = Callable[[str, int, int], None]
"""``progress(origin, leaves_done, leaves_total)``, called at most every ~50k leaves."""

_T = TypeVar("_T")


# --------------------------------------------------------------------------------------------
# Public values
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One inconsistency.  ``kind`` is a stable code from ``FINDING_KINDS``; ``log`` is the
    log's origin; ``tile`` is ``(level, index)`` for tile findings; ``detail`` is for people
    and never contains event values (no PHI)."""

    kind: str
    log: str
    leaf_index: int | None
    checkpoint_size: int | None
    detail: str
    tile: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogReport:
    """The outcome of verifying one log.

    ``leaves_checked`` counts distinct leaf indexes present and hashed; ``checkpoints_checked``
    the checkpoint notes examined, ``checkpoints_verified`` those whose signature, origin and
    root all verified, and ``verified_size`` the largest such size (every leaf below it is
    proven); ``events_checked`` counts index rows compared with their leaf.
    """

    origin: str
    leaves_checked: int
    checkpoints_checked: int
    findings: tuple[Finding, ...]
    checkpoints_verified: int = 0
    verified_size: int = 0
    events_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings


class LogSource(Protocol):
    """What the verifier reads of one log.  Each method is called once per verification.

    ``iter_entries`` yields ``(leaf_index, leaf bytes)`` and ``iter_index_rows`` the
    ``events``-table rows (``leaf_index`` plus the columns of ``ledger.bundle.INDEX_COLUMNS``;
    times as ISO-8601 strings or aware datetimes), both ideally in ``leaf_index`` order;
    ``iter_tiles`` yields ``(level, tile_index, 8192 bytes)`` full tiles, ideally level 0 in
    index order; ``checkpoints`` the ``(size, signed note)`` pairs in issuing order.  A source
    reports a read failure by raising a ``LedgerError`` (it becomes ``source_error``).
    """

    @property
    def origin(self) -> str: ...

    @property
    def size(self) -> int: ...

    def iter_entries(self) -> Iterator[tuple[int, bytes]]: ...

    def iter_tiles(self) -> Iterator[tuple[int, int, bytes]]: ...

    def checkpoints(self) -> Sequence[tuple[int, str]]: ...

    def iter_index_rows(self) -> Iterator[Mapping[str, object]]: ...


@runtime_checkable
class BatchedLogSource(LogSource, Protocol):
    """A ``LogSource`` that can also hand over entries a list at a time (optional fast path:
    the same records as ``iter_entries``, in the same order)."""

    def iter_entry_batches(self) -> Iterator[list[tuple[int, bytes]]]: ...


def _batched(items: Iterator[_T], size: int) -> Iterator[list[_T]]:
    while batch := list(islice(items, size)):
        yield batch


# --------------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------------


_LEAF_SEED: Final = hashlib.sha256(b"\x00")
_NODE_SEED: Final = hashlib.sha256(b"\x01")


def _perfect_root(level: list[bytes]) -> bytes:
    """MTH of a power-of-two number (>= 1) of node hashes."""
    seed = _NODE_SEED
    while len(level) > 1:
        parents: list[bytes] = []
        add = parents.append
        for left, right in zip(level[0::2], level[1::2], strict=True):
            h = seed.copy()
            h.update(left)
            h.update(right)
            add(h.digest())
        level = parents
    return level[0]


def _split(data: bytes) -> list[bytes]:
    return [data[k : k + _HASH] for k in range(0, len(data), _HASH)]


def build_full_tiles(leaf_hashes: Iterable[bytes]) -> Iterator[tuple[int, int, bytes]]:
    """Every full tile of the tree with these leaf hashes, as ``(level, index, 8192 bytes)``.

    Streams in O(256 * levels) memory.  Each tile is yielded as soon as it is complete, so a
    level-L tile comes right after the level-(L-1) tile that completes it (level 0 ascending,
    each level ascending).  Entry j of a level-L tile (L >= 1) is the MTH of level-(L-1)
    tile j, i.e. the tree node at level 8L with index ``256 * T + j``.
    """
    pending: list[list[bytes]] = [[]]
    counts: list[int] = [0]
    it = iter(leaf_hashes)
    while True:
        chunk = list(islice(it, TILE_WIDTH - len(pending[0])))
        if not chunk:
            return
        if {*map(len, chunk)} != {_HASH}:
            raise MalformedInputError(f"every leaf hash must be {_HASH} bytes")
        pending[0].extend(chunk)
        level = 0
        while len(pending[level]) == TILE_WIDTH:
            entries = pending[level]
            yield level, counts[level], b"".join(entries)
            counts[level] += 1
            pending[level] = []
            if level + 1 == len(pending):
                pending.append([])
                counts.append(0)
            pending[level + 1].append(_perfect_root(entries))
            level += 1


# --------------------------------------------------------------------------------------------
# Index projection
# --------------------------------------------------------------------------------------------

_ACCESS: Final = "philedger.audit.PhiAccessEvent"
_RELAY: Final = "philedger.audit.CriticalResultRelay"
_AUDIT_LOG_USED: Final = "philedger.audit.AuditLogUsed"
_SECURITY: Final = "philedger.audit.SecurityEvent"


def _sub(record: Mapping[str, JsonValue], key: str) -> dict[str, JsonValue]:
    value = record.get(key)
    if not isinstance(value, dict):
        raise MalformedInputError(f"event field {key} is not a record")
    return value


def _opt_sub(record: Mapping[str, JsonValue], key: str) -> dict[str, JsonValue]:
    """An optional nested record (an absent one reads as empty)."""
    value = record.get(key)
    if value is not None and not isinstance(value, dict):
        raise MalformedInputError(f"event field {key} is not a record")
    return value or {}


def project_event(full_name: str, record: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """The ``events`` columns that a decoded event determines (``SchemaSet.decode`` output).

    Must agree with the consumer's projection (``consumers.consumer.index_fields``).
    Raises ``MalformedInputError`` for a schema without a projection or a record that lacks
    a nested record.  Relay ``action``/``outcome``/``purpose_of_use`` are not included.
    """
    facility = _sub(record, "facility")
    if full_name == _SECURITY:
        actor = _sub(record, "actor")
        named = _opt_sub(record, "patient")
        return {
            "event_id": record.get("event_id"),
            "event_time": record.get("event_time"),
            "producer_id": record.get("producer_id"),
            "producer_seq": record.get("producer_seq"),
            "facility_id": facility.get("id"),
            "patient_id": named.get("id"),
            "patient_issuer": named.get("issuer"),
            "patient_state": named.get("state"),
            "kind": "security_event",
            "user_id": actor.get("user_id"),
            "user_name": actor.get("name"),
            "user_role": actor.get("role"),
            "user_org": actor.get("organization"),
            "dicom_event_id": record.get("dicom_event_id"),
            "action": record.get("action"),
            "outcome": record.get("outcome"),
            "study_uid": None,
            "accession": None,
            "network_address": record.get("network_address"),
            "purpose_of_use": record.get("purpose_of_use"),
        }
    if full_name == _AUDIT_LOG_USED:
        actor = _sub(record, "actor")
        who = _opt_sub(record, "patient")
        return {
            "event_id": record.get("event_id"),
            "event_time": record.get("event_time"),
            "producer_id": record.get("producer_id"),
            "producer_seq": record.get("producer_seq"),
            "facility_id": facility.get("id"),
            "patient_id": who.get("id"),
            "patient_issuer": who.get("issuer"),
            "patient_state": who.get("state"),
            "kind": "audit_log_used",
            "user_id": actor.get("user_id"),
            "user_name": actor.get("name"),
            "user_role": actor.get("role"),
            "user_org": actor.get("organization"),
            "dicom_event_id": "110101",
            "action": "R",
            "outcome": record.get("outcome"),
            "study_uid": None,
            "accession": None,
            "network_address": record.get("network_address"),
            "purpose_of_use": None,
        }
    patient = _sub(record, "patient")
    out: dict[str, JsonValue] = {
        "event_id": record.get("event_id"),
        "event_time": record.get("event_time"),
        "producer_id": record.get("producer_id"),
        "producer_seq": record.get("producer_seq"),
        "facility_id": facility.get("id"),
        "patient_id": patient.get("id"),
        "patient_issuer": patient.get("issuer"),
        "patient_state": patient.get("state"),
    }
    if full_name == _ACCESS:
        actor = _sub(record, "actor")
        study = record.get("study")
        if study is not None and not isinstance(study, dict):
            raise MalformedInputError("event field study is not a record")
        out.update(
            kind="phi_access",
            user_id=actor.get("user_id"),
            user_name=actor.get("name"),
            user_role=actor.get("role"),
            user_org=actor.get("organization"),
            dicom_event_id=record.get("dicom_event_id"),
            action=record.get("action"),
            outcome=record.get("outcome"),
            study_uid=None if study is None else study.get("uid"),
            accession=None if study is None else study.get("accession"),
            network_address=record.get("network_address"),
            purpose_of_use=record.get("purpose_of_use"),
        )
    elif full_name == _RELAY:
        sender = _sub(record, "sender")
        study = _sub(record, "study")
        out.update(
            kind="critical_result_relay",
            user_id=sender.get("user_id"),
            user_name=sender.get("name"),
            user_role=sender.get("role"),
            user_org=sender.get("organization"),
            dicom_event_id=None,
            study_uid=study.get("uid"),
            accession=study.get("accession"),
            network_address=None,
        )
    else:
        raise MalformedInputError(f"no index projection for schema {full_name}")
    return out


def _as_uuid(value: object) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    return None


def _as_instant(value: object) -> datetime | None:
    moment: datetime
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.utcoffset() is not None else None


def _cell_equal(column: str, expected: object, actual: object) -> bool:
    if type(actual) is str and actual == expected:
        return True  # the common case, whatever the column
    if column == "event_id":
        want = _as_uuid(expected)
        return want is not None and want == _as_uuid(actual)
    if column == "event_time":
        when = _as_instant(expected)
        return when is not None and when == _as_instant(actual)
    if column == "producer_seq":
        return type(actual) is int and actual == expected
    return (actual is None or isinstance(actual, str)) and actual == expected


# --------------------------------------------------------------------------------------------
# Machinery
# --------------------------------------------------------------------------------------------


class _Merge(Generic[_T]):
    """Items keyed by a non-negative int, taken for keys 0, 1, 2, ... in turn.

    Up to ``window`` future keys are buffered, so local disorder is absorbed; an item whose
    key was already taken is put on ``late``.
    """

    __slots__ = ("_buf", "_done", "_it", "_next", "_window", "late")

    def __init__(self, items: Iterator[tuple[int, _T]], window: int) -> None:
        self._it = items
        self._window = window
        self._buf: dict[int, list[_T]] = {}
        self._done = False
        self._next = 0
        self.late: list[tuple[int, _T]] = []

    def take(self, key: int) -> list[_T]:
        self._next = key + 1
        out = self._buf.pop(key, [])
        buf = self._buf
        while not self._done and len(buf) < self._window:
            try:
                k, item = next(self._it)
            except StopIteration:
                self._done = True
                break
            if k == key:
                out.append(item)
            elif k < key:
                self.late.append((k, item))
            else:
                buf.setdefault(k, []).append(item)
        return out

    def rest(self) -> Iterator[tuple[int, _T, bool]]:
        """Everything not taken: ``(key, item, late)``; buffered items first, by key."""
        for k in sorted(self._buf):
            for item in self._buf[k]:
                yield k, item, k < self._next
        self._buf.clear()
        if not self._done:
            for k, item in self._it:
                yield k, item, k < self._next
            self._done = True


class _Findings:
    __slots__ = ("_cap", "_counts", "_items", "_origin")

    def __init__(self, origin: str, cap: int) -> None:
        self._origin = origin
        self._cap = cap
        self._counts: dict[str, int] = {}
        self._items: list[Finding] = []

    def add(
        self,
        kind: str,
        detail: str,
        *,
        leaf_index: int | None = None,
        checkpoint_size: int | None = None,
        tile: tuple[int, int] | None = None,
    ) -> None:
        n = self._counts.get(kind, 0) + 1
        self._counts[kind] = n
        if n <= self._cap:
            self._items.append(
                Finding(
                    kind=kind,
                    log=self._origin,
                    leaf_index=leaf_index,
                    checkpoint_size=checkpoint_size,
                    detail=detail,
                    tile=tile,
                )
            )

    def count(self, kind: str, extra: int) -> None:
        self._counts[kind] = self._counts.get(kind, 0) + extra

    def result(self) -> tuple[Finding, ...]:
        def position(f: Finding) -> int:
            if f.leaf_index is not None:
                return f.leaf_index
            if f.checkpoint_size is not None:
                return max(f.checkpoint_size - 1, 0)
            return -1

        items = sorted(self._items, key=position)
        for kind, n in sorted(self._counts.items()):
            if n > self._cap:
                items.append(
                    Finding(
                        kind="findings_truncated",
                        log=self._origin,
                        leaf_index=None,
                        checkpoint_size=None,
                        detail=f"{n - self._cap} more {kind} findings are not listed ({n} in all)",
                    )
                )
        return tuple(items)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Signed:
    size: int
    root: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class _Failed:
    size: int
    since: int  # largest verified size below this one when it was checked
    unverifiable_at: int | None  # first unrecoverable missing leaf, when not recomputable


def _log_position(origin: str) -> tuple[str, int] | None:
    """``(topic, partition)`` from an origin ``<ledger name>/<topic>/<partition>``."""
    parts = origin.rsplit("/", 2)
    if len(parts) != 3 or not parts[1] or not parts[2].isdigit() or not parts[2].isascii():
        return None
    return parts[1], int(parts[2])


def _leaf_prefix(position: tuple[str, int] | None) -> bytes | None:
    """The first bytes every leaf of this log shares: version, topic length, topic, partition."""
    if position is None:
        return None
    topic = position[0].encode("utf-8")
    if len(topic) > 0xFFFF or position[1] > 0xFFFFFFFF:
        return None
    return (
        bytes([LEAF_VERSION])
        + len(topic).to_bytes(2, "big")
        + topic
        + position[1].to_bytes(4, "big")
    )


def _range_text(start: int, end: int, noun: str) -> str:
    return f"{noun} {start}" if end - start == 1 else f"{noun}s {start}..{end - 1} ({end - start})"


def _tiles_text(level: int, start: int, end: int) -> str:
    if end - start == 1:
        return f"tile {level}/{start}"
    return f"tiles {level}/{start}..{level}/{end - 1} ({end - start})"


def _ranges(values: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for v in values:
        if out and out[-1][1] == v:
            out[-1] = (out[-1][0], v + 1)
        else:
            out.append((v, v + 1))
    return out


# --------------------------------------------------------------------------------------------
# The verifier
# --------------------------------------------------------------------------------------------


class _LogVerifier:
    """State of one ``verify_log`` run (see the module docstring for what is checked)."""

    def __init__(
        self,
        source: LogSource,
        schemas: SchemaSet,
        verifiers: Sequence[Verifier],
        *,
        check_index: bool,
        progress: ProgressCallback | None,
        max_findings: int,
    ) -> None:
        self.source = source
        self.origin = source.origin
        self.claimed = source.size
        self.schemas = schemas
        self.verifiers = tuple(verifiers)
        self.progress = progress
        self.f = _Findings(self.origin, max_findings)
        self.max_pending = max_findings + 1
        self.position = _log_position(self.origin)
        self.prefix = _leaf_prefix(self.position)
        self.min_leaf = 0 if self.prefix is None else len(self.prefix) + 18

        # checkpoints
        self.signed: list[_Signed] = []
        self.cp_next = 0
        self.checkpoints_checked = 0
        self.checkpoints_verified = 0
        self.verified_size = 0
        self.failed: list[_Failed] = []
        # sequencing
        self.expected = 0
        self.max_seen = -1
        self.pending: dict[int, bytes] = {}
        self.pending_keys: list[int] = []  # heap over pending (stale keys are skipped)
        self.gaps: list[tuple[int, int]] = []
        self.leaves_checked = 0
        # blocks and tree
        self.cur: list[bytes] = []
        self.block = 0
        self.holes: deque[tuple[int, int]] = deque()  # missing positions not yet in a block
        self.poisoned: int | None = None
        self.tree = TreeBuilder()  # leaves are block roots
        self.level8 = bytearray()
        self.unknown8: set[int] = set()
        self.l0_present = bytearray()
        self.l0_mismatch: list[int] = []  # leaf indexes whose hash differs from the tile
        self.l0_unlocated: list[int] = []  # late level-0 tiles whose root differs
        self.upper: dict[tuple[int, int], bytes] = {}
        self.tile_ranges: list[tuple[int, int, tuple[int, int]]] = []  # upper mismatches
        # events
        self.last_offset: int | None = None
        self.events_checked = 0
        self.next_progress = PROGRESS_EVERY

        self.tiles: _Merge[bytes] = _Merge(
            self._level0_tiles(self._guard(source.iter_tiles, "tiles")), TILE_WINDOW
        )
        self.rows: _Merge[Mapping[str, object]] | None = None
        if check_index:
            self.rows = _Merge(
                self._keyed_rows(self._guard(source.iter_index_rows, "index rows")), ROW_WINDOW
            )

    # ---------------------------------------------------------------- sources

    def _guard(self, make: Callable[[], Iterable[_T]], what: str) -> Iterator[_T]:
        try:
            yield from make()
        except LedgerError as exc:
            self.f.add("source_error", f"reading {what} failed: {exc}")

    def _level0_tiles(self, raw: Iterator[tuple[int, int, bytes]]) -> Iterator[tuple[int, bytes]]:
        upper = self.upper
        for level, index, data in raw:
            if (
                type(level) is not int
                or type(index) is not int
                or index < 0
                or not isinstance(data, bytes)
                or len(data) != TILE_BYTES
                or not 0 <= level <= _MAX_TILE_LEVEL
            ):
                self.f.add(
                    "tile_malformed",
                    f"tile record ({level!r}, {index!r}) is not a full tile at level 0..7",
                )
                continue
            if level == 0:
                yield index, data
            elif (level, index) in upper:
                same = "identical" if upper[(level, index)] == data else "different"
                self.f.add(
                    "tile_duplicate",
                    f"tile {level}/{index} is stored twice ({same} contents; the first is used)",
                    tile=(level, index),
                )
            else:
                upper[(level, index)] = data

    def _keyed_rows(
        self, raw: Iterator[Mapping[str, object]]
    ) -> Iterator[tuple[int, Mapping[str, object]]]:
        for row in raw:
            key = row.get("leaf_index") if isinstance(row, Mapping) else None
            if type(key) is not int or key < 0:
                self.f.add("index_malformed", f"index row without a valid leaf_index: {key!r}")
                continue
            yield key, row

    # ---------------------------------------------------------------- checkpoints

    def load_checkpoints(self) -> None:
        try:
            rows = list(self.source.checkpoints())
        except LedgerError as exc:
            self.f.add("source_error", f"reading checkpoints failed: {exc}")
            rows = []
        largest = -1
        for number, (row_size, note) in enumerate(rows):
            self.checkpoints_checked += 1
            body = _unverified_body(note)
            size = body.size if body is not None else row_size
            try:
                cp = open_checkpoint(note, self.verifiers)
            except VerificationError as exc:
                self.f.add(
                    "checkpoint_signature",
                    f"checkpoint #{number} (size {size}) is not trusted: {exc}",
                    checkpoint_size=size,
                )
                continue
            except MalformedInputError as exc:
                self.f.add(
                    "checkpoint_malformed",
                    f"checkpoint #{number} (row size {row_size}) is malformed: {exc}",
                    checkpoint_size=row_size if type(row_size) is int else None,
                )
                continue
            if cp.size != row_size:
                self.f.add(
                    "checkpoint_malformed",
                    f"checkpoint #{number}: its row says size {row_size!r} but the signed note "
                    f"says {cp.size} (the note is used)",
                    checkpoint_size=cp.size,
                )
            if cp.origin != self.origin:
                self.f.add(
                    "checkpoint_origin",
                    f"checkpoint #{number} (size {cp.size}) is signed for origin "
                    f"{cp.origin!r}, not this log",
                    checkpoint_size=cp.size,
                )
                continue
            if cp.size < largest:
                self.f.add(
                    "checkpoint_order",
                    f"checkpoint #{number} has size {cp.size}, after one of size {largest}",
                    checkpoint_size=cp.size,
                )
            largest = max(largest, cp.size)
            self.signed.append(_Signed(size=cp.size, root=cp.root_hash))
        self.signed.sort(key=lambda c: c.size)
        while self.cp_next < len(self.signed) and self.signed[self.cp_next].size == 0:
            self._judge(self.signed[self.cp_next], EMPTY_ROOT)
            self.cp_next += 1

    def _judge(self, cp: _Signed, root: bytes | None) -> None:
        if root is not None and root == cp.root:
            self.checkpoints_verified += 1
            self.verified_size = max(self.verified_size, cp.size)
            return
        self.failed.append(
            _Failed(
                size=cp.size,
                since=self.verified_size,
                unverifiable_at=self.poisoned if root is None else None,
            )
        )

    def _root_at(self, size: int, partial: list[bytes]) -> bytes | None:
        """Root of the first ``size`` leaves: the block tree so far plus ``partial``."""
        if self.poisoned is not None and self.poisoned < size:
            return None
        rest = TreeBuilder()
        rest.extend(partial)
        return TreeBuilder.from_state(size=size, hashes=self.tree.hashes + rest.hashes).root()

    # ---------------------------------------------------------------- entries

    def stream(self) -> None:
        source = self.source
        batches: Iterator[list[tuple[int, bytes]]]
        if isinstance(source, BatchedLogSource):
            batches = self._guard(source.iter_entry_batches, "entries")
        else:
            batches = _batched(self._guard(source.iter_entries, "entries"), BATCH)
        pending = self.pending
        clean = self._clean
        if self.progress is not None:
            self.progress(self.origin, 0, self.claimed)
        for batch in batches:
            if not batch:
                continue
            expected = self.expected
            if (
                not pending
                and batch[0][0] == expected
                and [e[0] for e in batch] == list(range(expected, expected + len(batch)))
            ):
                self.expected = expected + len(batch)
                clean(batch)
                continue
            for index, leaf in batch:
                self._accept(index, leaf)
            self._drain(final=False)
        self._drain(final=True)
        self._finish_entries()

    def _accept(self, index: int, leaf: bytes) -> None:
        expected = self.expected
        if type(index) is not int or index < 0:
            self.f.add("source_error", f"entry with invalid leaf index {index!r} ignored")
            return
        if index < expected:
            if self._was_gap(index):
                self.f.add(
                    "leaf_disorder",
                    f"entry for leaf {index} came too late to verify in sequence "
                    "(its index was already reported missing)",
                    leaf_index=index,
                )
            else:
                self.f.add(
                    "leaf_duplicate",
                    f"a second entry for leaf {index} (ignored; the first one is verified)",
                    leaf_index=index,
                )
            return
        if index in self.pending:
            same = "identical" if self.pending[index] == leaf else "different"
            self.f.add(
                "leaf_duplicate",
                f"a second entry for leaf {index} with {same} bytes (the first one is verified)",
                leaf_index=index,
            )
            return
        if index - expected >= MAX_GAP:
            self.f.add(
                "leaf_out_of_range",
                f"entry for leaf {index} is {index - expected} indexes beyond the next "
                f"expected leaf {expected}; not verified",
                leaf_index=index,
            )
            return
        seen = max(self.max_seen, expected - 1)
        if index < seen:
            self.f.add(
                "leaf_disorder",
                f"entry for leaf {index} is stored after the entry for leaf {seen}",
                leaf_index=index,
            )
        self.max_seen = max(seen, index)
        self.pending[index] = leaf
        heapq.heappush(self.pending_keys, index)

    def _was_gap(self, index: int) -> bool:
        k = bisect.bisect_right(self.gaps, (index, MAX_GAP << 40)) - 1
        return k >= 0 and self.gaps[k][0] <= index < self.gaps[k][1]

    def _drain(self, *, final: bool) -> None:
        pending = self.pending
        out: list[tuple[int, bytes]] = []
        while pending:
            expected = self.expected
            leaf = pending.pop(expected, None)
            if leaf is not None:
                out.append((expected, leaf))
                self.expected = expected + 1
                if len(out) >= TILE_WIDTH:
                    self._clean(out)
                    out = []
                continue
            if not final and len(pending) <= ENTRY_WINDOW:
                break
            if out:
                self._clean(out)
                out = []
            keys = self.pending_keys
            while keys[0] not in pending:
                heapq.heappop(keys)
            self._gap(expected, keys[0])
        if out:
            self._clean(out)
        if not pending:
            self.pending_keys.clear()
        elif len(self.pending_keys) > 4 * len(pending) + ENTRY_WINDOW:
            self.pending_keys = list(pending)
            heapq.heapify(self.pending_keys)

    def _gap(self, start: int, end: int) -> None:
        self.f.add("leaf_missing", f"{_range_text(start, end, 'leaf')} missing", leaf_index=start)
        self.gaps.append((start, end))
        self.holes.append((start, end))
        self.expected = end
        position = start
        while position < end:
            stop = min(end, (position | _MASK) + 1)
            if self.rows is not None:
                for index in range(position, stop):
                    self._orphan_rows(index, self.rows.take(index))
            self._add_hashes([_ZERO] * (stop - position))
            position = stop

    def _clean(self, run: list[tuple[int, bytes]]) -> None:
        """Consecutive present leaves, starting at the next position (the hot path)."""
        hashes: list[bytes] = []
        add = hashes.append
        seed = _LEAF_SEED
        prefix = self.prefix
        if self.rows is None and prefix is not None:
            shortest = self.min_leaf
            odd: list[tuple[int, bytes]] = []
            for entry in run:
                leaf = entry[1]
                h = seed.copy()
                h.update(leaf)
                add(h.digest())
                if len(leaf) < shortest or not leaf.startswith(prefix):
                    odd.append(entry)
            for index, leaf in odd:
                self._leaf_shape(index, leaf)
        else:
            for _, leaf in run:
                h = seed.copy()
                h.update(leaf)
                add(h.digest())
            if self.rows is not None:
                rows = self.rows
                for index, leaf in run:
                    self._deep_check(rows, index, leaf)
            else:
                for index, leaf in run:
                    self._leaf_shape(index, leaf)
        self.leaves_checked += len(run)
        self._add_hashes(hashes)

    def _add_hashes(self, hashes: list[bytes]) -> None:
        """Append leaf hashes at the next positions; complete 256-leaf blocks as they fill."""
        start = 0
        count = len(hashes)
        cur = self.cur
        if cur:
            start = min(TILE_WIDTH - len(cur), count)
            cur.extend(hashes[:start])
            if len(cur) == TILE_WIDTH:
                self.cur = []
                self._finish_block(cur)
        while count - start >= TILE_WIDTH:
            self._finish_block(hashes[start : start + TILE_WIDTH])
            start += TILE_WIDTH
        if start < count:
            self.cur.extend(hashes[start:])
        if self.progress is not None:
            done = self.block * TILE_WIDTH + len(self.cur)
            if done >= self.next_progress:
                self.next_progress = done + PROGRESS_EVERY
                self.progress(self.origin, done, self.claimed)

    def _block_tile(self, t: int, block: list[bytes], width: int) -> bool:
        """Compare ``block`` (its first ``width`` entries) with level-0 tile ``t``; fill the
        holes from it.  Returns whether the block's leaf hashes are all known."""
        base = t << TILE_HEIGHT
        stored = self.tiles.take(t)
        if self.tiles.late:
            self._late_tiles()
        tile = stored[0] if stored else None
        for extra in stored[1:]:
            same = "identical" if extra == tile else "different"
            self.f.add(
                "tile_duplicate",
                f"tile 0/{t} is stored twice ({same} contents; the first is used)",
                tile=(0, t),
            )
        holes = self.holes
        here: list[int] = []
        stop = base + width
        while holes and holes[0][0] < stop:
            lo, hi = holes[0]
            here.extend(range(max(lo, base) - base, min(hi, stop) - base))
            if hi <= stop:
                holes.popleft()
            else:
                holes[0] = (stop, hi)
        if tile is not None:
            for j in here:
                block[j] = tile[j * _HASH : (j + 1) * _HASH]
            if width == TILE_WIDTH:
                equal = b"".join(block) == tile
            else:
                equal = b"".join(block[:width]) == tile[: width * _HASH]
            if not equal:
                self._locate(t, block, tile, width)
        elif here:
            if self.poisoned is None:
                self.poisoned = base + here[0]
            return False
        if width == TILE_WIDTH:
            self.l0_present.append(tile is not None)
        elif tile is not None and (t + 1) * TILE_WIDTH > max(self.expected, self.claimed):
            self._beyond(0, [t])
        return True

    def _locate(self, t: int, block: list[bytes], tile: bytes, width: int) -> None:
        base = t << TILE_HEIGHT
        for j in range(width):
            if block[j] != tile[j * _HASH : (j + 1) * _HASH]:
                if len(self.l0_mismatch) < self.max_pending:
                    self.l0_mismatch.append(base + j)
                else:
                    self.f.count("leaf_hash_mismatch", 1)

    def _late_tiles(self) -> None:
        for t, data in self.tiles.late:
            if t >= len(self.l0_present):
                continue  # a tile for the final partial block, already compared
            if self.l0_present[t]:
                self.f.add(
                    "tile_duplicate",
                    f"tile 0/{t} is stored twice (the first is used)",
                    tile=(0, t),
                )
                continue
            self.l0_present[t] = 1
            if t in self.unknown8:
                continue
            if _perfect_root(_split(data)) != bytes(self.level8[t * _HASH : (t + 1) * _HASH]):
                self.l0_unlocated.append(t)
        self.tiles.late.clear()

    def _finish_block(self, block: list[bytes]) -> None:
        t = self.block
        base = t << TILE_HEIGHT
        complete = self._block_tile(t, block, TILE_WIDTH)
        signed = self.signed
        k = self.cp_next
        end = base + TILE_WIDTH
        while k < len(signed) and signed[k].size < end:
            size = signed[k].size
            self._judge(signed[k], self._root_at(size, block[: size - base]))
            k += 1
        root = _perfect_root(block) if complete else _ZERO
        if not complete:
            self.unknown8.add(t)
        self.tree.append(root)
        self.level8 += root
        self.block = t + 1
        while k < len(signed) and signed[k].size == end:
            whole = None if self.poisoned is not None and self.poisoned < end else self.tree.root()
            self._judge(signed[k], whole)
            k += 1
        self.cp_next = k

    def _finish_entries(self) -> None:
        """The final partial block, the checkpoints beyond it, and the claimed size."""
        n = self.expected
        cur = self.cur
        if cur:
            t = self.block
            base = t << TILE_HEIGHT
            self._block_tile(t, cur, len(cur))
            signed, k = self.signed, self.cp_next
            while k < len(signed) and signed[k].size <= n:
                size = signed[k].size
                self._judge(signed[k], self._root_at(size, cur[: size - base]))
                k += 1
            self.cp_next = k
        for cp in self.signed[self.cp_next :]:
            self.f.add(
                "checkpoint_beyond_log",
                f"checkpoint of size {cp.size} covers more than the {n} leaves present",
                checkpoint_size=cp.size,
            )
        self.cp_next = len(self.signed)
        if self.claimed > n:
            self.f.add(
                "leaf_missing",
                f"{_range_text(n, self.claimed, 'leaf')} missing: the source claims "
                f"{self.claimed} leaves but entries end at {n}",
                leaf_index=n,
            )
        elif self.claimed < n:
            self.f.add(
                "log_size_mismatch",
                f"{n} leaves are present but the source claims only {self.claimed}",
                leaf_index=self.claimed,
            )
        if self.progress is not None:
            self.progress(self.origin, n, self.claimed)

    def _leaf_shape(self, index: int, leaf: bytes) -> None:
        """A leaf that failed the cheap prefix test: say precisely what is wrong."""
        try:
            record = decode_leaf(leaf)
        except MalformedInputError as exc:
            self.f.add("leaf_malformed", f"leaf {index}: {exc}", leaf_index=index)
            return
        if self.position is not None and (record.topic, record.partition) != self.position:
            self.f.add(
                "leaf_misplaced",
                f"leaf {index} records {record.topic!r} partition {record.partition}, "
                f"not this log's {self.position[0]!r} partition {self.position[1]}",
                leaf_index=index,
            )

    # ---------------------------------------------------------------- events

    def _orphan_rows(self, index: int, rows: list[Mapping[str, object]]) -> None:
        for _ in rows:
            self.f.add(
                "index_orphan",
                f"index row for leaf {index}, which is not present",
                leaf_index=index,
            )
        self._late_rows()

    def _late_rows(self) -> None:
        if self.rows is None or not self.rows.late:
            return
        for key, _ in self.rows.late:
            self.f.add(
                "index_disorder",
                f"index row for leaf {key} is out of order and was not compared",
                leaf_index=key,
            )
        self.rows.late.clear()

    def _deep_check(self, merge: _Merge[Mapping[str, object]], index: int, leaf: bytes) -> None:
        rows = merge.take(index)
        if merge.late:
            self._late_rows()
        try:
            record = decode_leaf(leaf)
        except MalformedInputError as exc:
            self.f.add("leaf_malformed", f"leaf {index}: {exc}", leaf_index=index)
            self._extra_rows(index, rows[1:])
            return
        if self.position is not None and (record.topic, record.partition) != self.position:
            self.f.add(
                "leaf_misplaced",
                f"leaf {index} records {record.topic!r} partition {record.partition}, "
                f"not this log's {self.position[0]!r} partition {self.position[1]}",
                leaf_index=index,
            )
        if self.last_offset is not None and record.offset <= self.last_offset:
            self.f.add(
                "leaf_offset_order",
                f"leaf {index} has Kafka offset {record.offset}, not above the previous "
                f"leaf's {self.last_offset}",
                leaf_index=index,
            )
        self.last_offset = record.offset
        try:
            name, event = self.schemas.decode(record.value)
            expected = project_event(name, event)
        except LedgerError as exc:
            self.f.add("event_undecodable", f"leaf {index}: {exc}", leaf_index=index)
            self._extra_rows(index, rows[1:])
            return
        if not rows:
            self.f.add("index_missing", f"no index row for leaf {index}", leaf_index=index)
            return
        self.events_checked += 1
        row = rows[0]
        for column, want in expected.items():
            if column not in row:
                self.f.add(
                    "index_mismatch",
                    f"index row for leaf {index} has no {column} column",
                    leaf_index=index,
                )
            elif not _cell_equal(column, want, row[column]):
                self.f.add(
                    "index_mismatch",
                    f"index row for leaf {index} disagrees with the leaf on {column}",
                    leaf_index=index,
                )
        problem = disclosure.check(name, event, row)  # hook: read attribution (attr)
        if problem is not None:
            self.f.add("disclosure_mismatch", f"leaf {index}: {problem}", leaf_index=index)
        self._extra_rows(index, rows[1:])

    def _extra_rows(self, index: int, extra: list[Mapping[str, object]]) -> None:
        for _ in extra:
            self.f.add(
                "index_duplicate",
                f"a second index row for leaf {index}",
                leaf_index=index,
            )

    # ---------------------------------------------------------------- wrap-up

    def _beyond(self, level: int, indexes: list[int]) -> None:
        for a, b in _ranges(sorted(indexes)):
            self.f.add(
                "tile_beyond_log",
                f"{_tiles_text(level, a, b)} cover leaves beyond the "
                f"{self.expected} present and the {self.claimed} claimed",
                tile=(level, a),
            )

    def _missing_tiles(self, level: int, indexes: Iterable[int]) -> None:
        for a, b in _ranges(indexes):
            self.f.add(
                "tile_missing",
                f"full {_tiles_text(level, a, b)} missing",
                leaf_index=a << (TILE_HEIGHT * (level + 1)),
                tile=(level, a),
            )

    def finish(self) -> LogReport:
        n = self.expected
        limit = max(n, self.claimed)
        # level-0 leftovers, then the missing level-0 tiles
        if self.tiles.late:
            self._late_tiles()
        beyond: list[int] = []
        for t, data, late in self.tiles.rest():
            if late:
                self.tiles.late.append((t, data))
                self._late_tiles()
            elif (t + 1) * TILE_WIDTH > limit:
                beyond.append(t)
        self._beyond(0, beyond)
        self._missing_tiles(0, (t for t, here in enumerate(self.l0_present) if not here))
        self._check_upper(limit)
        self._report_level0()
        self._report_failed()
        if self.rows is not None:
            self._late_rows()
            for key, _, late in self.rows.rest():
                if late:
                    self.f.add(
                        "index_disorder",
                        f"index row for leaf {key} is out of order and was not compared",
                        leaf_index=key,
                    )
                else:
                    self.f.add(
                        "index_orphan",
                        f"index row for leaf {key}, beyond the {n} leaves present",
                        leaf_index=key,
                    )
        return LogReport(
            origin=self.origin,
            leaves_checked=self.leaves_checked,
            checkpoints_checked=self.checkpoints_checked,
            findings=self.f.result(),
            checkpoints_verified=self.checkpoints_verified,
            verified_size=self.verified_size,
            events_checked=self.events_checked,
        )

    def _check_upper(self, limit: int) -> None:
        nodes = bytes(self.level8)
        unknown = set(self.unknown8)
        by_level: dict[int, list[int]] = {}
        for level, index in self.upper:
            by_level.setdefault(level, []).append(index)
        level = 1
        while level <= _MAX_TILE_LEVEL:
            count = len(nodes) // _HASH
            full = count // TILE_WIDTH
            present = sorted(by_level.get(level, ()))
            have = set(present)
            self._missing_tiles(level, (t for t in range(full) if t not in have))
            beyond: list[int] = []
            for t in present:
                if t >= full:
                    if (t + 1) << (TILE_HEIGHT * (level + 1)) > limit:
                        beyond.append(t)
                    continue
                self._compare_upper(level, t, nodes, unknown)
            self._beyond(level, beyond)
            if full == 0 and not any(lv > level for lv in by_level):
                break
            parents = bytearray()
            parent_unknown: set[int] = set()
            for k in range(full):
                lo = k * TILE_WIDTH
                if any(lo <= u < lo + TILE_WIDTH for u in unknown):
                    parent_unknown.add(k)
                    parents += _ZERO
                else:
                    parents += _perfect_root(_split(nodes[lo * _HASH : (lo + TILE_WIDTH) * _HASH]))
            nodes, unknown = bytes(parents), parent_unknown
            level += 1

    def _compare_upper(self, level: int, t: int, nodes: bytes, unknown: set[int]) -> None:
        data = self.upper[(level, t)]
        lo = t * TILE_WIDTH
        if nodes[lo * _HASH : (lo + TILE_WIDTH) * _HASH] == data:
            return
        wrong = [
            j
            for j in range(TILE_WIDTH)
            if lo + j not in unknown
            and nodes[(lo + j) * _HASH : (lo + j + 1) * _HASH] != data[j * _HASH : (j + 1) * _HASH]
        ]
        if not wrong:
            return
        shift = TILE_HEIGHT * level
        first = (lo + wrong[0]) << shift
        last = ((lo + wrong[-1] + 1) << shift) - 1
        if last < self.verified_size:
            blame = "the leaves are proven by a verified checkpoint, so the stored tile is wrong"
        else:
            blame = "the leaves under it (or the tile) were altered"
            self.tile_ranges.append((first, last + 1, (level, t)))
        self.f.add(
            "tile_mismatch",
            f"tile {level}/{t}: {len(wrong)} entr{'y' if len(wrong) == 1 else 'ies'} "
            f"(first: entry {wrong[0]}, leaves {first}..{((lo + wrong[0] + 1) << shift) - 1}) "
            f"differ from the nodes recomputed from the leaves; {blame}",
            leaf_index=first,
            tile=(level, t),
        )

    def _report_level0(self) -> None:
        failed_sizes = [f.size for f in self.failed]
        for index in self.l0_mismatch:
            t, j = index >> TILE_HEIGHT, index & _MASK
            if index < self.verified_size:
                self.f.add(
                    "tile_mismatch",
                    f"tile 0/{t} entry {j} differs from the hash of leaf {index}, which a "
                    "verified checkpoint proves: the stored tile is wrong",
                    leaf_index=index,
                    tile=(0, t),
                )
                continue
            k = bisect.bisect_right(failed_sizes, index)
            after = failed_sizes[k] if k < len(failed_sizes) else None
            tail = (
                f"checkpoint {after} does not verify"
                if after is not None
                else "no checkpoint covers it, so either the leaf or the tile was altered"
            )
            self.f.add(
                "leaf_hash_mismatch",
                f"leaf {index} does not hash to entry {j} of tile 0/{t}; {tail}",
                leaf_index=index,
                checkpoint_size=after,
                tile=(0, t),
            )
        for t in self.l0_unlocated:
            first = t << TILE_HEIGHT
            proven = first + TILE_WIDTH <= self.verified_size
            self.f.add(
                "tile_mismatch",
                f"tile 0/{t} (stored out of order) differs from leaves {first}..{first + 255}; "
                + ("the stored tile is wrong" if proven else "the leaves or the tile were altered"),
                leaf_index=first,
                tile=(0, t),
            )
            if not proven:
                self.tile_ranges.append((first, first + TILE_WIDTH, (0, t)))

    def _report_failed(self) -> None:
        altered = sorted(i for i in self.l0_mismatch if i >= self.verified_size)
        ranges = sorted(self.tile_ranges)
        for cp in self.failed:
            if cp.unverifiable_at is not None:
                self.f.add(
                    "checkpoint_unverifiable",
                    f"checkpoint of size {cp.size} cannot be recomputed: leaf "
                    f"{cp.unverifiable_at} is missing and no stored tile holds its hash",
                    leaf_index=cp.unverifiable_at,
                    checkpoint_size=cp.size,
                )
                continue
            k = bisect.bisect_left(altered, cp.since)
            if k < len(altered) and altered[k] < cp.size:
                where = altered[k]
                text = f"first altered leaf: {where} (its hash differs from tile 0/{where >> 8})"
            else:
                hit = next((r for r in ranges if r[1] > cp.since and r[0] < cp.size), None)
                gap = next((g for g in self.gaps if g[1] > cp.since and g[0] < cp.size), None)
                if hit is not None:
                    where = max(hit[0], cp.since)
                    text = (
                        f"the difference is in leaves {where}..{min(hit[1], cp.size) - 1} "
                        f"(tile {hit[2][0]}/{hit[2][1]} disagrees with them)"
                    )
                elif gap is not None:
                    where = max(gap[0], cp.since)
                    text = (
                        f"leaf {where} is missing and its stored tile hash did not reproduce "
                        f"the root; the difference is in leaves {cp.since}..{cp.size - 1}"
                    )
                else:
                    where = cp.since
                    text = (
                        f"the difference is within leaves {cp.since}..{cp.size - 1} "
                        "(no stored tile locates it)"
                    )
            self.f.add(
                "checkpoint_root_mismatch",
                f"checkpoint of size {cp.size}: the root recomputed from the leaves differs "
                f"from the signed root; {text}",
                leaf_index=where,
                checkpoint_size=cp.size,
            )


def _unverified_body(note: str) -> Checkpoint | None:
    """The checkpoint body of a note without checking signatures (for locating findings)."""
    split = note.rfind("\n\n")
    if split < 0:
        return None
    try:
        return parse_checkpoint(note[: split + 1])
    except MalformedInputError:
        return None


def verify_log(
    source: LogSource,
    schemas: SchemaSet,
    verifiers: Sequence[Verifier],
    *,
    check_index: bool = True,
    progress: ProgressCallback | None = None,
    max_findings_per_kind: int = 10_000,
) -> LogReport:
    """Verify one log completely and report every inconsistency (module docstring).

    ``verifiers`` are the trusted checkpoint keys (several during a key rotation).  Raises
    ``MalformedInputError`` only for a bad call (no verifiers); bad data never raises.
    """
    if not verifiers:
        raise MalformedInputError("at least one trusted verifier key is required")
    if type(max_findings_per_kind) is not int or max_findings_per_kind < 1:
        raise MalformedInputError("max_findings_per_kind must be a positive int")
    run = _LogVerifier(
        source,
        schemas,
        verifiers,
        check_index=check_index,
        progress=progress,
        max_findings=max_findings_per_kind,
    )
    run.load_checkpoints()
    run.stream()
    return run.finish()


# --------------------------------------------------------------------------------------------
# Bundles
# --------------------------------------------------------------------------------------------


class BundleLogSource:
    """``LogSource`` for one log of an export bundle (``ledger.bundle``)."""

    __slots__ = ("_log", "_reader")

    def __init__(self, reader: BundleReader, log: BundleLog) -> None:
        self._reader = reader
        self._log = log

    @property
    def origin(self) -> str:
        return self._log.origin

    @property
    def size(self) -> int:
        return self._log.size

    @property
    def log_id(self) -> int:
        return self._log.log_id

    def iter_entries(self) -> Iterator[tuple[int, bytes]]:
        return self._reader.iter_entries(self._log.log_id)

    def iter_entry_batches(self) -> Iterator[list[tuple[int, bytes]]]:
        return self._reader.iter_entry_batches(self._log.log_id)

    def iter_tiles(self) -> Iterator[tuple[int, int, bytes]]:
        return self._reader.iter_tiles(self._log.log_id)

    def checkpoints(self) -> Sequence[tuple[int, str]]:
        return self._reader.checkpoints(self._log.log_id)

    def iter_index_rows(self) -> Iterator[Mapping[str, object]]:
        return self._reader.iter_index_rows(self._log.log_id)


def _bundle_schemas(reader: BundleReader) -> tuple[SchemaSet, list[str]]:
    """The bundle's schemas that match their fingerprints, and why the others were dropped."""
    problems: list[str] = []
    good: list[StoredSchema] = []
    try:
        stored = reader.schemas()
    except LedgerError as exc:
        return SchemaSet(()), [f"schemas.json is unusable: {exc}"]
    for schema in stored:
        try:
            SchemaSet((schema,))
        except LedgerError as exc:
            problems.append(f"schema {schema.full_name} ({schema.fingerprint.hex()}): {exc}")
            continue
        good.append(schema)
    return SchemaSet(good), problems


def verify_bundle(
    path: str | Path,
    verifiers: Sequence[Verifier],
    *,
    check_index: bool = True,
    progress: ProgressCallback | None = None,
    log_ids: Collection[int] | None = None,
) -> list[LogReport]:
    """Verify every log of an export bundle (or those in ``log_ids``); one report per log, in
    manifest order.

    Raises ``MalformedInputError`` if the manifest itself is unusable; everything else is
    reported.  With ``check_index``, a schema that does not match its fingerprint becomes a
    ``schema_invalid`` finding in every log's report (its events are then undecodable).
    """
    reader = BundleReader(path)
    schemas, problems = _bundle_schemas(reader) if check_index else (SchemaSet(()), [])
    reports: list[LogReport] = []
    for log in reader.logs:
        if log_ids is not None and log.log_id not in log_ids:
            continue
        report = verify_log(
            BundleLogSource(reader, log),
            schemas,
            verifiers,
            check_index=check_index,
            progress=progress,
        )
        if problems:
            extra = tuple(
                Finding(
                    kind="schema_invalid",
                    log=log.origin,
                    leaf_index=None,
                    checkpoint_size=None,
                    detail=problem,
                )
                for problem in problems
            )
            report = replace(report, findings=extra + report.findings)
        reports.append(report)
    return reports
