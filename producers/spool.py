"""A bounded, fsynced, append-only local spool for events Kafka cannot take right now.

Invariant: once ``append`` has returned, each appended record is on disk (its segment
file fsynced, and the directory fsynced when the segment was created) and ``read``
returns it, in append order and across any number of restarts, until ``ack`` has
persisted a cursor past it. The spool never re-encodes a record: it stores the topic,
key and value bytes it was given, each record framed with its length and a CRC32.
Pending (unacknowledged) record bytes never exceed ``max_bytes`` except through
``reserve(force=True)``; a refused record raises ``SpoolFullError`` and is not stored.

On-disk layout of a spool directory (mode 0700; every file 0600, since records hold PHI):

``<id:016d>.seg``
    A segment: a 20-byte header (``b"PHISPOOL"``, u32 format version, u64 segment
    id; big-endian) followed by records. A record is ``u32 body length``,
    ``u32 zlib.crc32(body)``, then the body: ``u8 kind (1)``, ``u64 created_ms``
    (wall clock, for the age of the oldest undelivered event), ``u16 topic length``,
    topic (UTF-8), ``i32 key length`` (-1 for no key), key, and the value up to the end.
    Segments are only ever appended to; a new one starts when the current one would
    exceed ``segment_bytes`` and after every reopen.
``cursor``
    JSON ``{"segment": s, "offset": o}``: the first record Kafka has not acknowledged.
    Written to a temporary file, fsynced, renamed over the old one and the directory
    fsynced, so it is always either the old or the new cursor. Segments wholly before
    the cursor are deleted; a crash between the two only leaves files the next open
    deletes.
``sequence-<hash>.json``
    A producer's sequence-number high-water mark (see ``load_sequence_floor``).
``lock``
    ``flock``-ed while a process has the spool open, so two hosts never share one.
``*.corrupt-<offset>``
    Bytes that failed their CRC in the middle of a segment, kept for forensics.

Recovery on ``open``: a record that fails its length or CRC check at the very end of
the newest segment is a torn write from a crash (its ``append`` never returned); it
is truncated and logged as a warning. A bad record anywhere else is corruption: the
rest of that segment is moved aside to a ``.corrupt-<offset>`` file, logged as an
error and reported, and the spool carries on with everything else. Neither case
raises, so a damaged spool never stops the host.

Delivery is at least once: a record that Kafka stored just before a crash, but whose
acknowledgement did not reach the cursor, is sent again after the restart. The bytes
are identical, so the ledger counts it as a duplicate of the same event id.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
import struct
import threading
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from producers.errors import SpoolError, SpoolFullError
from producers.files import (
    DirectoryInUseError,
    DirectoryLock,
    atomic_write,
    fsync_directory,
    truncate_durably,
    write_all,
)

logger = logging.getLogger(__name__)

#: Default bound on pending (unacknowledged) record bytes.
DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
#: Default size at which a new segment file is started.
DEFAULT_SEGMENT_BYTES: Final = 16 * 1024 * 1024

MAGIC: Final = b"PHISPOOL"
FORMAT_VERSION: Final = 1
_HEADER = struct.Struct(">8sIQ")
HEADER_LEN: Final = _HEADER.size
_FRAME = struct.Struct(">II")
FRAME_LEN: Final = _FRAME.size
_BODY_FIXED = struct.Struct(">BQH")
_KEY_LEN = struct.Struct(">i")
_RECORD_KIND: Final = 1
#: Largest record body accepted; anything larger in a length field is damage, not data.
MAX_BODY_BYTES: Final = 16 * 1024 * 1024

_SEGMENT_SUFFIX: Final = ".seg"
_CURSOR: Final = "cursor"
_LOCK: Final = "lock"
_READ_CHUNK: Final = 1024 * 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolEntry:
    """One already-encoded Kafka record: where it goes, its key and value bytes."""

    topic: str
    key: bytes | None
    value: bytes
    created_ms: int


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class SpoolPosition:
    """A byte position in the spool: segment id, then offset within that segment."""

    segment: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SpoolRecord:
    """A record read back from the spool, with where it starts and where the next starts."""

    entry: SpoolEntry
    position: SpoolPosition
    end: SpoolPosition
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryReport:
    """What ``Spool.open`` found: pending records, and any damage it repaired."""

    segments: int
    pending_records: int
    pending_bytes: int
    truncated_bytes: int
    quarantined: tuple[str, ...]
    deleted_segments: int


def record_size(entry: SpoolEntry) -> int:
    """Bytes one entry takes in a segment (frame included): what counts against the bound."""
    key_len = 0 if entry.key is None else len(entry.key)
    return (
        FRAME_LEN
        + _BODY_FIXED.size
        + len(entry.topic.encode("utf-8"))
        + _KEY_LEN.size
        + key_len
        + len(entry.value)
    )


def encode_record(entry: SpoolEntry) -> bytes:
    """The framed bytes of one record (length, CRC32, body)."""
    topic = entry.topic.encode("utf-8")
    if len(topic) > 0xFFFF:
        raise ValueError(f"topic name is {len(topic)} bytes; at most 65535 fit a spool record")
    key = entry.key
    body = b"".join(
        (
            _BODY_FIXED.pack(_RECORD_KIND, entry.created_ms, len(topic)),
            topic,
            _KEY_LEN.pack(-1 if key is None else len(key)),
            key or b"",
            entry.value,
        )
    )
    if len(body) > MAX_BODY_BYTES:
        raise ValueError(f"record is {len(body)} bytes; at most {MAX_BODY_BYTES} fit the spool")
    return _FRAME.pack(len(body), zlib.crc32(body)) + body


class _BadRecord(Exception):
    """A record that does not parse; ``torn`` when it runs past the end of the data."""

    def __init__(self, reason: str, *, declared_end: int) -> None:
        super().__init__(reason)
        self.declared_end = declared_end


def _parse_record(buf: memoryview, offset: int) -> tuple[SpoolEntry, int]:
    """Parse the record at ``offset``; return it and its framed size, or raise _BadRecord."""
    available = len(buf) - offset
    if available < FRAME_LEN:
        raise _BadRecord(f"{available} bytes left, less than a frame", declared_end=len(buf) + 1)
    length, crc = _FRAME.unpack_from(buf, offset)
    end = offset + FRAME_LEN + length
    if length > MAX_BODY_BYTES or length < _BODY_FIXED.size + _KEY_LEN.size:
        raise _BadRecord(f"implausible record length {length}", declared_end=end)
    if end > len(buf):
        raise _BadRecord(f"record of {length} bytes runs past the end", declared_end=end)
    body = buf[offset + FRAME_LEN : end]
    if zlib.crc32(body) != crc:
        raise _BadRecord("CRC32 mismatch", declared_end=end)
    kind, created_ms, topic_len = _BODY_FIXED.unpack_from(body, 0)
    at = _BODY_FIXED.size
    if kind != _RECORD_KIND or at + topic_len + _KEY_LEN.size > length:
        raise _BadRecord(f"malformed body (kind {kind})", declared_end=end)
    try:
        topic = bytes(body[at : at + topic_len]).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRecord(f"topic is not UTF-8: {exc}", declared_end=end) from exc
    at += topic_len
    (key_len,) = _KEY_LEN.unpack_from(body, at)
    at += _KEY_LEN.size
    if key_len < -1 or at + max(key_len, 0) > length:
        raise _BadRecord(f"implausible key length {key_len}", declared_end=end)
    key = None if key_len == -1 else bytes(body[at : at + key_len])
    at += max(key_len, 0)
    entry = SpoolEntry(topic=topic, key=key, value=bytes(body[at:]), created_ms=created_ms)
    return entry, FRAME_LEN + length


@dataclass(slots=True)
class _Segment:
    id: int
    path: Path
    size: int


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
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._io = threading.RLock()
        self._acct = threading.Lock()
        self._lock = DirectoryLock(self._dir / _LOCK)
        self._segments: dict[int, _Segment] = {}
        self._active: _Segment | None = None
        self._active_fd: int | None = None
        self._next_id = 1
        self._cursor = SpoolPosition(segment=1, offset=HEADER_LEN)
        self._pending_records = 0
        self._pending_bytes = 0
        self._reserved = 0
        self._oldest_created_ms: int | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def directory(self) -> Path:
        return self._dir

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def is_open(self) -> bool:
        return self._lock.held

    @property
    def pending_records(self) -> int:
        """Records appended and not yet acknowledged."""
        return self._pending_records

    @property
    def pending_bytes(self) -> int:
        """Framed bytes of the records appended and not yet acknowledged."""
        return self._pending_bytes

    @property
    def reserved_bytes(self) -> int:
        return self._reserved

    @property
    def oldest_created_ms(self) -> int | None:
        """``created_ms`` of the oldest unacknowledged record, or None when there is none."""
        return self._oldest_created_ms

    @property
    def segment_count(self) -> int:
        return len(self._segments)

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
            if self._active_fd is not None:
                os.close(self._active_fd)
                self._active_fd = None
            self._active = None
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

    # ------------------------------------------------------------------ recovery

    def _segment_files(self) -> list[tuple[int, Path]]:
        found = []
        for path in self._dir.iterdir():
            if path.suffix == _SEGMENT_SUFFIX and path.stem.isdigit():
                found.append((int(path.stem), path))
        return sorted(found)

    def _load_cursor(self) -> SpoolPosition | None:
        path = self._dir / _CURSOR
        try:
            raw = json.loads(path.read_bytes())
            segment, offset = raw["segment"], raw["offset"]
            if not isinstance(segment, int) or not isinstance(offset, int):
                raise TypeError("cursor fields are not integers")
        except FileNotFoundError:
            return None
        except (ValueError, TypeError, KeyError) as exc:
            # Replaying from the start only re-sends; the ledger deduplicates identical bytes.
            logger.error("spool cursor %s is unreadable (%s); re-sending every segment", path, exc)
            return None
        return SpoolPosition(segment=segment, offset=max(offset, HEADER_LEN))

    def _recover(self) -> RecoveryReport:
        cursor = self._load_cursor()
        files = self._segment_files()
        deleted = 0
        if cursor is None:
            cursor = SpoolPosition(segment=files[0][0] if files else 1, offset=HEADER_LEN)
        for seg_id, path in files:
            if seg_id < cursor.segment:
                path.unlink()
                deleted += 1
        files = [(i, p) for i, p in files if i >= cursor.segment]
        if files and files[0][0] > cursor.segment:
            cursor = SpoolPosition(segment=files[0][0], offset=HEADER_LEN)
        truncated = 0
        quarantined: list[str] = []
        self._segments = {}
        self._pending_records = 0
        self._pending_bytes = 0
        oldest: int | None = None
        for n, (seg_id, path) in enumerate(files):
            last = n == len(files) - 1
            data = path.read_bytes()
            if len(data) < HEADER_LEN or _HEADER.unpack_from(data, 0) != (
                MAGIC,
                FORMAT_VERSION,
                seg_id,
            ):
                if last and len(data) < HEADER_LEN:
                    # Created but its header never reached the disk: a torn segment, no records.
                    logger.warning("spool segment %s has no complete header; removed", path)
                    truncated += len(data)
                    path.unlink()
                else:
                    target = path.with_name(f"{path.name}.corrupt-0")
                    path.rename(target)
                    quarantined.append(target.name)
                    logger.error("spool segment %s has a bad header; moved to %s", path, target)
                continue
            start = cursor.offset if seg_id == cursor.segment else HEADER_LEN
            start = min(start, len(data))
            view = memoryview(data)
            at = start
            while at < len(data):
                try:
                    entry, size = _parse_record(view, at)
                except _BadRecord as bad:
                    if last and bad.declared_end >= len(data):
                        logger.warning(
                            "spool segment %s: torn last record at offset %d (%s); "
                            "truncated %d bytes (its emit never returned)",
                            path,
                            at,
                            bad,
                            len(data) - at,
                        )
                        truncated += len(data) - at
                        truncate_durably(path, at)
                    else:
                        quarantined.append(self._quarantine(path, data, at, str(bad)))
                    break
                if oldest is None:
                    oldest = entry.created_ms
                self._pending_records += 1
                self._pending_bytes += size
                at += size
            view.release()
            self._segments[seg_id] = _Segment(id=seg_id, path=path, size=at)
        if self._segments:
            self._next_id = max(self._segments) + 1
        else:
            self._next_id = max(cursor.segment, 1)
        self._next_id = max(self._next_id, cursor.segment)
        if cursor.segment not in self._segments:
            cursor = SpoolPosition(
                segment=min(self._segments) if self._segments else self._next_id,
                offset=HEADER_LEN,
            )
        self._cursor = cursor
        self._oldest_created_ms = oldest
        self._active = None
        fsync_directory(self._dir)
        report = self._report(truncated, tuple(quarantined), deleted)
        if report.pending_records or truncated or quarantined:
            logger.info("spool %s recovered: %s", self._dir, report)
        return report

    def _report(self, truncated: int, quarantined: tuple[str, ...], deleted: int) -> RecoveryReport:
        return RecoveryReport(
            segments=len(self._segments),
            pending_records=self._pending_records,
            pending_bytes=self._pending_bytes,
            truncated_bytes=truncated,
            quarantined=quarantined,
            deleted_segments=deleted,
        )

    def _quarantine(self, path: Path, data: bytes, offset: int, reason: str) -> str:
        """Move ``data[offset:]`` of a segment aside and truncate the segment there."""
        target = path.with_name(f"{path.name}.corrupt-{offset}")
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            write_all(fd, data[offset:])
            os.fsync(fd)
        finally:
            os.close(fd)
        truncate_durably(path, offset)
        fsync_directory(self._dir)
        logger.error(
            "spool segment %s is corrupt at offset %d (%s): %d bytes moved to %s; "
            "records there cannot be sent",
            path,
            offset,
            reason,
            len(data) - offset,
            target,
        )
        return target.name

    # ------------------------------------------------------------------ writing

    def _require_open(self) -> None:
        if not self._lock.held:
            raise SpoolError(f"spool {self._dir} is not open")

    def reserve(self, nbytes: int, *, force: bool = False) -> None:
        """Claim room for ``nbytes`` of records, or raise ``SpoolFullError``. No I/O.

        ``force`` claims it even past the bound: for records that are already owed to
        Kafka (in flight when the emitter started spooling), which must never be refused.
        """
        with self._acct:
            used = self._pending_bytes + self._reserved
            if not force and used + nbytes > self._max_bytes:
                raise SpoolFullError(
                    f"the spool at {self._dir} is full: {used} of {self._max_bytes} bytes "
                    f"hold events Kafka has not acknowledged; the event was not accepted"
                )
            self._reserved += nbytes

    def release(self, nbytes: int) -> None:
        """Give back a reservation that will not be appended."""
        with self._acct:
            self._reserved = max(0, self._reserved - nbytes)

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
                positions = self._append_locked(entries, frames)
        except OSError as exc:
            raise SpoolError(f"cannot write to the spool at {self._dir}: {exc}") from exc
        finally:
            self.release(total)
        return positions

    def _append_locked(
        self, entries: Sequence[SpoolEntry], frames: list[bytes]
    ) -> list[SpoolPosition]:
        touched: dict[int, int] = {}  # segment id -> its size before this call
        created: list[_Segment] = []
        positions: list[SpoolPosition] = []
        pending: list[bytes] = []
        try:
            for frame in frames:
                active = self._active
                if active is None or (
                    active.size + len(frame) > self._segment_bytes and active.size > HEADER_LEN
                ):
                    self._flush_pending(pending)
                    active = self._roll()
                    created.append(active)
                touched.setdefault(active.id, active.size)
                positions.append(SpoolPosition(segment=active.id, offset=active.size))
                pending.append(frame)
                active.size += len(frame)
            self._flush_pending(pending)
            if self._active_fd is not None:
                os.fsync(self._active_fd)
        except OSError:
            self._undo(touched, created)
            raise
        with self._acct:
            self._pending_bytes += sum(len(f) for f in frames)
            self._pending_records += len(frames)
            if self._oldest_created_ms is None and entries:
                self._oldest_created_ms = entries[0].created_ms
        return positions

    def _flush_pending(self, pending: list[bytes]) -> None:
        if not pending:
            return
        if self._active_fd is None:
            raise OSError("no active spool segment to write to")
        write_all(self._active_fd, b"".join(pending))
        pending.clear()

    def _roll(self) -> _Segment:
        """Seal the active segment (fsync) and start a new one (file and directory fsynced)."""
        if self._active_fd is not None:
            os.fsync(self._active_fd)
            os.close(self._active_fd)
            self._active_fd = None
        self._active = None
        seg_id = self._next_id
        path = self._dir / f"{seg_id:016d}{_SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            write_all(fd, _HEADER.pack(MAGIC, FORMAT_VERSION, seg_id))
            os.fsync(fd)
            fsync_directory(self._dir)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self._next_id = seg_id + 1
        segment = _Segment(id=seg_id, path=path, size=HEADER_LEN)
        self._segments[seg_id] = segment
        self._active = segment
        self._active_fd = fd
        return segment

    def _undo(self, touched: dict[int, int], created: list[_Segment]) -> None:
        """Best effort: cut every segment this call wrote to back to its earlier size."""
        for seg_id, size in touched.items():
            segment = self._segments.get(seg_id)
            if segment is None:
                continue
            with contextlib.suppress(OSError):
                truncate_durably(segment.path, size)
            segment.size = size
        for segment in created:
            if segment.size == HEADER_LEN and segment is not self._active:
                with contextlib.suppress(OSError):
                    segment.path.unlink()
                self._segments.pop(segment.id, None)

    # ------------------------------------------------------------------ reading

    def _normalize(self, pos: SpoolPosition) -> SpoolPosition:
        """Move a position at the end of a sealed segment to the start of the next one."""
        while True:
            segment = self._segments.get(pos.segment)
            if segment is None or pos.offset < segment.size or segment is self._active:
                return pos
            later = [i for i in self._segments if i > pos.segment]
            pos = SpoolPosition(segment=min(later) if later else pos.segment + 1, offset=HEADER_LEN)

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
        pos = self._normalize(self._cursor)
        for seg_id in sorted(i for i in self._segments if i >= pos.segment):
            at = pos.offset if seg_id == pos.segment else HEADER_LEN
            if self._read_segment(self._segments[seg_id], at, out, max_records, max_bytes):
                break
        return out

    def _read_segment(
        self,
        segment: _Segment,
        start: int,
        out: list[SpoolRecord],
        max_records: int,
        max_bytes: int,
    ) -> bool:
        """Append the segment's records from ``start`` to ``out``; True when a limit is hit."""
        total = sum(r.size for r in out)
        fd = os.open(segment.path, os.O_RDONLY)
        try:
            at = start
            while at < segment.size:
                chunk = os.pread(fd, min(_READ_CHUNK, segment.size - at), at)
                view = memoryview(chunk)
                used = 0
                while used < len(chunk):
                    try:
                        entry, size = _parse_record(view, used)
                    except _BadRecord as bad:
                        fits = at + bad.declared_end <= segment.size
                        if bad.declared_end > len(chunk) and fits and used > 0:
                            break  # the record continues past this chunk: read on from it
                        if bad.declared_end > len(chunk) and fits:
                            bigger = os.pread(fd, bad.declared_end, at)
                            if len(bigger) == bad.declared_end:
                                chunk, view = bigger, memoryview(bigger)
                                continue  # one record larger than a chunk
                        self._salvage(segment, at + used, str(bad))
                        return True
                    if out and (len(out) >= max_records or total + size > max_bytes):
                        return True
                    out.append(
                        SpoolRecord(
                            entry=entry,
                            position=SpoolPosition(segment=segment.id, offset=at + used),
                            end=SpoolPosition(segment=segment.id, offset=at + used + size),
                            size=size,
                        )
                    )
                    total += size
                    used += size
                at += used
            return len(out) >= max_records
        finally:
            os.close(fd)

    def _salvage(self, segment: _Segment, offset: int, reason: str) -> None:
        """Damage found after open: quarantine the rest of the segment and recount."""
        data = segment.path.read_bytes()[: segment.size]
        self._quarantine(segment.path, data, offset, reason)
        segment.size = offset
        self._recount()

    def _recount(self) -> None:
        records = 0
        nbytes = 0
        oldest: int | None = None
        pos = self._normalize(self._cursor)
        for seg_id in sorted(i for i in self._segments if i >= pos.segment):
            segment = self._segments[seg_id]
            data = memoryview(segment.path.read_bytes()[: segment.size])
            at = pos.offset if seg_id == pos.segment else HEADER_LEN
            while at < len(data):
                try:
                    entry, size = _parse_record(data, at)
                except _BadRecord:
                    break
                if oldest is None:
                    oldest = entry.created_ms
                records += 1
                nbytes += size
                at += size
        with self._acct:
            self._pending_records = records
            self._pending_bytes = nbytes
            self._oldest_created_ms = oldest

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
            cursor = self._normalize(self._cursor)
            if self._normalize(records[0].position) != cursor:
                raise ValueError(
                    f"ack must start at the cursor {cursor}, not {records[0].position}"
                )
            if any(b.position <= a.position for a, b in itertools.pairwise(records)):
                raise ValueError("acknowledged records must be in spool order")
            remaining = self._pending_records - len(records)
            new_cursor = self._normalize(records[-1].end)
            active = self._active
            drained = (
                remaining == 0
                and active is not None
                and new_cursor == SpoolPosition(segment=active.id, offset=active.size)
            )
            if drained or (remaining == 0 and new_cursor.segment not in self._segments):
                new_cursor = SpoolPosition(segment=self._next_id, offset=HEADER_LEN)
            try:
                atomic_write(
                    self._dir / _CURSOR,
                    json.dumps({"segment": new_cursor.segment, "offset": new_cursor.offset}).encode(
                        "utf-8"
                    ),
                )
            except OSError as exc:
                raise SpoolError(f"cannot persist the spool cursor in {self._dir}: {exc}") from exc
            self._cursor = new_cursor
            with self._acct:
                self._pending_records = remaining
                self._pending_bytes -= sum(r.size for r in records)
            self._delete_before(new_cursor.segment)
            self._oldest_created_ms = self._created_at_cursor() if remaining else None

    def _delete_before(self, segment_id: int) -> None:
        doomed = [s for i, s in self._segments.items() if i < segment_id]
        if not doomed:
            return
        for segment in doomed:
            if segment is self._active:
                if self._active_fd is not None:
                    os.close(self._active_fd)
                    self._active_fd = None
                self._active = None
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
            del self._segments[segment.id]
        with contextlib.suppress(OSError):
            fsync_directory(self._dir)

    def _created_at_cursor(self) -> int | None:
        pos = self._normalize(self._cursor)
        segment = self._segments.get(pos.segment)
        if segment is None or pos.offset >= segment.size:
            return None
        try:
            fd = os.open(segment.path, os.O_RDONLY)
            try:
                head = os.pread(fd, FRAME_LEN + _BODY_FIXED.size, pos.offset)
            finally:
                os.close(fd)
        except OSError:
            return self._oldest_created_ms
        if len(head) < FRAME_LEN + _BODY_FIXED.size:
            return self._oldest_created_ms
        _kind, created_ms, _topic_len = _BODY_FIXED.unpack_from(head, FRAME_LEN)
        return int(created_ms)

    # ------------------------------------------------------------------ sequence numbers

    def _sequence_path(self, producer_id: str) -> Path:
        digest = hashlib.sha256(producer_id.encode("utf-8")).hexdigest()[:16]
        return self._dir / f"sequence-{digest}.json"

    def load_sequence_floor(self, producer_id: str) -> int:
        """The persisted high-water mark: above every sequence number ever handed out.

        0 when none was stored. An unreadable file raises ``SpoolError`` rather than risk
        handing out a number twice.
        """
        self._require_open()
        path = self._sequence_path(producer_id)
        try:
            raw = json.loads(path.read_bytes())
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            raise SpoolError(f"sequence file {path} is unreadable: {exc}") from exc
        value = raw.get("next") if isinstance(raw, dict) else None
        if not isinstance(value, int) or value < 0 or raw.get("producer_id") != producer_id:
            raise SpoolError(f"sequence file {path} is malformed")
        return value

    def store_sequence_floor(self, producer_id: str, value: int) -> None:
        """Durably record that no sequence number at or above ``value`` was handed out yet."""
        self._require_open()
        data = json.dumps({"producer_id": producer_id, "next": value}).encode("utf-8")
        try:
            atomic_write(self._sequence_path(producer_id), data)
        except OSError as exc:
            raise SpoolError(f"cannot persist the sequence high-water mark: {exc}") from exc
