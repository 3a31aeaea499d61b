"""The spool's segment files: creating, appending to, reading, quarantining, deleting.

Invariant: segments are only ever appended to; ``append`` returns once its frames are
written and fsynced, and on an I/O error cuts every segment it wrote to back to its
earlier size (best effort) before raising; a new segment's header and its directory
entry are fsynced before any record goes into it; bytes that fail their check are
moved aside to ``<segment>.corrupt-<offset>`` (fsynced), never silently dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from producers.files import fsync_directory, truncate_durably, write_all
from producers.spool.format import (
    HEADER_LEN,
    BadRecord,
    SpoolPosition,
    SpoolRecord,
    parse_record,
    segment_header,
)

logger = logging.getLogger("producers.spool")

SEGMENT_SUFFIX: Final = ".seg"
_READ_CHUNK: Final = 1024 * 1024


@dataclass(slots=True)
class Segment:
    id: int
    path: Path
    size: int


def segment_files(directory: Path) -> list[tuple[int, Path]]:
    """``(id, path)`` of the directory's segment files, by id."""
    found = []
    for path in directory.iterdir():
        if path.suffix == SEGMENT_SUFFIX and path.stem.isdigit():
            found.append((int(path.stem), path))
    return sorted(found)


def quarantine(path: Path, data: bytes, offset: int, reason: str) -> str:
    """Move ``data[offset:]`` of a segment aside and truncate the segment there."""
    target = path.with_name(f"{path.name}.corrupt-{offset}")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, data[offset:])
        os.fsync(fd)
    finally:
        os.close(fd)
    truncate_durably(path, offset)
    fsync_directory(path.parent)
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


class Damaged(Exception):
    """A record after ``open`` failed its check at ``offset`` of its segment."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(reason)
        self.offset = offset
        self.reason = reason


def read_segment(
    segment: Segment, start: int, out: list[SpoolRecord], max_records: int, max_bytes: int
) -> bool:
    """Append the segment's records from ``start`` to ``out``; True when a limit is hit.

    Raises ``Damaged`` at the first record that does not parse (``out`` keeps those before).
    """
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
                    entry, size = parse_record(view, used)
                except BadRecord as bad:
                    fits = at + bad.declared_end <= segment.size
                    if bad.declared_end > len(chunk) and fits and used > 0:
                        break  # the record continues past this chunk: read on from it
                    if bad.declared_end > len(chunk) and fits:
                        bigger = os.pread(fd, bad.declared_end, at)
                        if len(bigger) == bad.declared_end:
                            chunk, view = bigger, memoryview(bigger)
                            continue  # one record larger than a chunk
                    raise Damaged(at + used, str(bad)) from bad
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


class Segments:
    """The segments of one spool by id, and the active one new records are appended to."""

    def __init__(self, directory: Path, segment_bytes: int) -> None:
        self._dir = directory
        self._segment_bytes = segment_bytes
        self.by_id: dict[int, Segment] = {}
        self.active: Segment | None = None
        self._active_fd: int | None = None
        self.next_id = 1

    def reset(self, found: dict[int, Segment], next_id: int) -> None:
        """What recovery found; the next append starts a new segment."""
        self.by_id = found
        self.next_id = next_id
        self.active = None

    def close_active(self) -> None:
        if self._active_fd is not None:
            os.close(self._active_fd)
            self._active_fd = None
        self.active = None

    def end_of_active(self) -> SpoolPosition | None:
        active = self.active
        return None if active is None else SpoolPosition(segment=active.id, offset=active.size)

    def normalize(self, pos: SpoolPosition) -> SpoolPosition:
        """Move a position at the end of a sealed segment to the start of the next one."""
        while True:
            segment = self.by_id.get(pos.segment)
            if segment is None or pos.offset < segment.size or segment is self.active:
                return pos
            later = [i for i in self.by_id if i > pos.segment]
            pos = SpoolPosition(segment=min(later) if later else pos.segment + 1, offset=HEADER_LEN)

    def append(self, frames: list[bytes]) -> list[SpoolPosition]:
        """Write the frames in order and fsync; return where each one starts."""
        touched: dict[int, int] = {}  # segment id -> its size before this call
        created: list[Segment] = []
        positions: list[SpoolPosition] = []
        pending: list[bytes] = []
        try:
            for frame in frames:
                active = self.active
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
        return positions

    def _flush_pending(self, pending: list[bytes]) -> None:
        if not pending:
            return
        if self._active_fd is None:
            raise OSError("no active spool segment to write to")
        write_all(self._active_fd, b"".join(pending))
        pending.clear()

    def _roll(self) -> Segment:
        """Seal the active segment (fsync) and start a new one (file and directory fsynced)."""
        if self._active_fd is not None:
            os.fsync(self._active_fd)
            os.close(self._active_fd)
            self._active_fd = None
        self.active = None
        seg_id = self.next_id
        path = self._dir / f"{seg_id:016d}{SEGMENT_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        try:
            write_all(fd, segment_header(seg_id))
            os.fsync(fd)
            fsync_directory(self._dir)
        except OSError:
            os.close(fd)
            path.unlink(missing_ok=True)
            raise
        self.next_id = seg_id + 1
        segment = Segment(id=seg_id, path=path, size=HEADER_LEN)
        self.by_id[seg_id] = segment
        self.active = segment
        self._active_fd = fd
        return segment

    def _undo(self, touched: dict[int, int], created: list[Segment]) -> None:
        """Best effort: cut every segment this call wrote to back to its earlier size."""
        for seg_id, size in touched.items():
            segment = self.by_id.get(seg_id)
            if segment is None:
                continue
            with contextlib.suppress(OSError):
                truncate_durably(segment.path, size)
            segment.size = size
        for segment in created:
            if segment.size == HEADER_LEN and segment is not self.active:
                with contextlib.suppress(OSError):
                    segment.path.unlink()
                self.by_id.pop(segment.id, None)

    def delete_before(self, segment_id: int) -> None:
        """Delete every segment before ``segment_id`` (the cursor is past them, durably)."""
        doomed = [s for i, s in self.by_id.items() if i < segment_id]
        if not doomed:
            return
        for segment in doomed:
            if segment is self.active:
                self.close_active()
            with contextlib.suppress(FileNotFoundError):
                segment.path.unlink()
            del self.by_id[segment.id]
        with contextlib.suppress(OSError):
            fsync_directory(self._dir)
