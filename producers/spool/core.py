"""``Spool``: the bounded, fsynced, append-only local spool for events Kafka cannot take.

Invariant: once ``append`` has returned, each appended record is on disk and ``read``
returns it, in append order and across any number of restarts, until ``ack`` has
persisted a cursor past it. The spool never re-encodes a record. Pending record bytes
never exceed ``max_bytes`` except through ``reserve(force=True)``. The on-disk layout
and recovery: docs/design/spool.md.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from producers.errors import SpoolError
from producers.files import DirectoryInUseError, DirectoryLock, fsync_directory
from producers.spool import markers
from producers.spool.budget import Budget
from producers.spool.format import (
    HEAD_LEN,
    HEADER_LEN,
    BadRecord,
    SpoolEntry,
    SpoolPosition,
    SpoolRecord,
    created_ms_of,
    encode_record,
    parse_record,
    record_size,
)
from producers.spool.recovery import RecoveryReport, recover
from producers.spool.segments import Damaged, Segment, Segments, quarantine, read_segment

logger = logging.getLogger("producers.spool")

#: Default bound on pending (unacknowledged) record bytes.
DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
#: Default size at which a new segment file is started.
DEFAULT_SEGMENT_BYTES: Final = 16 * 1024 * 1024

_LOCK: Final = "lock"


class Spool:
    """``with Spool(path) as spool: spool.append([...]); spool.ack(spool.read())``.

    Thread-safe: file operations are serialized by one lock, and ``reserve`` (the only
    call meant for an event loop thread) takes only a short accounting lock, never
    waiting on I/O. ``pending_records``, ``pending_bytes`` and ``oldest_created_ms``
    may be read from any thread.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= HEADER_LEN:
            raise ValueError("max_bytes and segment_bytes must be positive")
        self._dir = Path(directory)
        self._io = threading.RLock()
        self._lock = DirectoryLock(self._dir / _LOCK)
        self._budget = Budget(self._dir, max_bytes)
        self._segments = Segments(self._dir, segment_bytes)
        self._cursor = SpoolPosition(segment=1, offset=HEADER_LEN)

    # ------------------------------------------------------------------ lifecycle

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def max_bytes(self) -> int:
        return self._budget.max_bytes

    @property
    def is_open(self) -> bool:
        return self._lock.held

    @property
    def pending_records(self) -> int:
        """Records appended and not yet acknowledged."""
        return self._budget.records

    @property
    def pending_bytes(self) -> int:
        """Framed bytes of the records appended and not yet acknowledged."""
        return self._budget.bytes

    @property
    def reserved_bytes(self) -> int:
        return self._budget.reserved

    @property
    def oldest_created_ms(self) -> int | None:
        """``created_ms`` of the oldest unacknowledged record, or None when there is none."""
        return self._budget.oldest_created_ms

    @property
    def segment_count(self) -> int:
        return len(self._segments.by_id)

    def open(self) -> RecoveryReport:
        """Lock the directory, recover its segments and cursor; idempotent."""
        with self._io:
            if self._lock.held:
                return self._report(0, (), 0)
            try:
                self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._lock.acquire()
            except DirectoryInUseError as exc:
                raise SpoolError(
                    f"spool directory {self._dir} is in use by another process; "
                    "every emitter needs its own spool_dir"
                ) from exc
            except OSError as exc:
                raise SpoolError(f"cannot open spool directory {self._dir}: {exc}") from exc
            try:
                return self._recover()
            except OSError as exc:
                self.close()
                raise SpoolError(f"cannot recover spool {self._dir}: {exc}") from exc

    def close(self) -> None:
        """Close files and release the directory lock; idempotent. Everything is already durable."""
        with self._io:
            self._segments.close_active()
            self._lock.release()

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _recover(self) -> RecoveryReport:
        found = recover(self._dir)
        self._segments.reset(found.segments, found.next_id)
        self._budget.recount(found.pending_records, found.pending_bytes, found.oldest_created_ms)
        self._cursor = found.cursor
        fsync_directory(self._dir)
        report = self._report(found.truncated, tuple(found.quarantined), found.deleted)
        if report.pending_records or found.truncated or found.quarantined:
            logger.info("spool %s recovered: %s", self._dir, report)
        return report

    def _report(self, truncated: int, quarantined: tuple[str, ...], deleted: int) -> RecoveryReport:
        return RecoveryReport(
            segments=len(self._segments.by_id),
            pending_records=self._budget.records,
            pending_bytes=self._budget.bytes,
            truncated_bytes=truncated,
            quarantined=quarantined,
            deleted_segments=deleted,
        )

    def _require_open(self) -> None:
        if not self._lock.held:
            raise SpoolError(f"spool {self._dir} is not open")

    # ------------------------------------------------------------------ writing

    def reserve(self, nbytes: int, *, force: bool = False) -> None:
        """Claim room for ``nbytes`` of records, or raise ``SpoolFullError``. No I/O.

        ``force`` claims it even past the bound: for records that are already owed to
        Kafka (in flight when the emitter started spooling), which must never be refused.
        """
        self._budget.reserve(nbytes, force=force)

    def release(self, nbytes: int) -> None:
        """Give back a reservation that will not be appended."""
        self._budget.release(nbytes)

    def append(
        self, entries: Sequence[SpoolEntry], *, reserved: bool = False
    ) -> list[SpoolPosition]:
        """Write the entries in order and fsync; return where each one starts.

        With ``reserved`` the caller has already reserved ``record_size`` of each entry
        (and the reservation is consumed either way); otherwise this reserves, and may
        raise ``SpoolFullError`` before writing anything. On an I/O error nothing of
        this call stays in the spool and ``SpoolError`` is raised.
        """
        total = sum(record_size(e) for e in entries)
        if not reserved:
            self.reserve(total)
        try:
            frames = [encode_record(e) for e in entries]
            with self._io:
                self._require_open()
                positions = self._segments.append(frames)
                first = entries[0].created_ms if entries else None
                self._budget.appended(sum(len(f) for f in frames), len(frames), first)
        except OSError as exc:
            raise SpoolError(f"cannot write to the spool at {self._dir}: {exc}") from exc
        finally:
            self.release(total)
        return positions

    # ------------------------------------------------------------------ reading

    def read(self, *, max_records: int = 1000, max_bytes: int = 1024 * 1024) -> list[SpoolRecord]:
        """The oldest unacknowledged records, in order (at least one if any is pending)."""
        with self._io:
            self._require_open()
            try:
                return self._read_locked(max_records, max_bytes)
            except OSError as exc:
                raise SpoolError(f"cannot read the spool at {self._dir}: {exc}") from exc

    def _read_locked(self, max_records: int, max_bytes: int) -> list[SpoolRecord]:
        out: list[SpoolRecord] = []
        segments = self._segments.by_id
        pos = self._segments.normalize(self._cursor)
        for seg_id in sorted(i for i in segments if i >= pos.segment):
            segment = segments[seg_id]
            at = pos.offset if seg_id == pos.segment else HEADER_LEN
            try:
                if read_segment(segment, at, out, max_records, max_bytes):
                    break
            except Damaged as damage:
                self._salvage(segment, damage.offset, damage.reason)
                break
        return out

    def _salvage(self, segment: Segment, offset: int, reason: str) -> None:
        """Damage found after open: quarantine the rest of the segment and recount."""
        data = segment.path.read_bytes()[: segment.size]
        quarantine(segment.path, data, offset, reason)
        segment.size = offset
        self._recount()

    def _recount(self) -> None:
        records = 0
        nbytes = 0
        oldest: int | None = None
        segments = self._segments.by_id
        pos = self._segments.normalize(self._cursor)
        for seg_id in sorted(i for i in segments if i >= pos.segment):
            segment = segments[seg_id]
            data = memoryview(segment.path.read_bytes()[: segment.size])
            at = pos.offset if seg_id == pos.segment else HEADER_LEN
            while at < len(data):
                try:
                    entry, size = parse_record(data, at)
                except BadRecord:
                    break
                if oldest is None:
                    oldest = entry.created_ms
                records += 1
                nbytes += size
                at += size
        self._budget.recount(records, nbytes, oldest)

    # ------------------------------------------------------------------ acknowledging

    def ack(self, records: Sequence[SpoolRecord]) -> None:
        """Mark a prefix of the pending records delivered: persist the cursor past them.

        ``records`` must start at the cursor (as ``read`` returns them). Segments wholly
        before the new cursor are deleted, after the cursor is durable.
        """
        if not records:
            return
        with self._io:
            self._require_open()
            self._check_prefix(records)
            remaining = self._budget.records - len(records)
            new_cursor = self._segments.normalize(records[-1].end)
            drained = remaining == 0 and new_cursor == self._segments.end_of_active()
            if drained or (remaining == 0 and new_cursor.segment not in self._segments.by_id):
                new_cursor = SpoolPosition(segment=self._segments.next_id, offset=HEADER_LEN)
            try:
                markers.store_cursor(self._dir, new_cursor)
            except OSError as exc:
                raise SpoolError(f"cannot persist the spool cursor in {self._dir}: {exc}") from exc
            self._cursor = new_cursor
            self._budget.acknowledged(len(records), sum(r.size for r in records))
            self._segments.delete_before(new_cursor.segment)
            self._budget.oldest_created_ms = self._created_at_cursor() if remaining else None

    def _check_prefix(self, records: Sequence[SpoolRecord]) -> None:
        cursor = self._segments.normalize(self._cursor)
        if self._segments.normalize(records[0].position) != cursor:
            raise ValueError(f"ack must start at the cursor {cursor}, not {records[0].position}")
        if any(b.position <= a.position for a, b in itertools.pairwise(records)):
            raise ValueError("acknowledged records must be in spool order")

    def _created_at_cursor(self) -> int | None:
        pos = self._segments.normalize(self._cursor)
        segment = self._segments.by_id.get(pos.segment)
        if segment is None or pos.offset >= segment.size:
            return None
        try:
            fd = os.open(segment.path, os.O_RDONLY)
            try:
                head = os.pread(fd, HEAD_LEN, pos.offset)
            finally:
                os.close(fd)
        except OSError:
            return self._budget.oldest_created_ms
        if len(head) < HEAD_LEN:
            return self._budget.oldest_created_ms
        return created_ms_of(head)

    # ------------------------------------------------------------------ sequence numbers

    def load_sequence_floor(self, producer_id: str) -> int:
        """The persisted high-water mark: above every sequence number ever handed out.

        0 when none was stored. An unreadable file raises ``SpoolError`` rather than risk
        handing out a number twice.
        """
        self._require_open()
        return markers.load_sequence_floor(self._dir, producer_id)

    def store_sequence_floor(self, producer_id: str, value: int) -> None:
        """Durably record that no sequence number at or above ``value`` was handed out yet."""
        self._require_open()
        markers.store_sequence_floor(self._dir, producer_id, value)
