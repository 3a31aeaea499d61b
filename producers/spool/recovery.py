"""Recovery of a spool directory on ``open``, after a clean stop or a crash.

Invariant: a record that fails its length or CRC check at the very end of the newest
segment is a torn write (its ``append`` never returned): it is truncated and logged as a
warning. A bad record anywhere else is corruption: the rest of that segment is moved
aside to ``.corrupt-<offset>``, logged as an error and reported, and recovery carries on
with everything else. Neither case raises, so a damaged spool never stops its host.
Segments wholly before the cursor are deleted (a crash between persisting the cursor
and deleting them only leaves files to delete here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from producers.files import truncate_durably
from producers.spool.format import HEADER_LEN, BadRecord, SpoolPosition, header_ok, parse_record
from producers.spool.markers import load_cursor
from producers.spool.segments import Segment, quarantine, segment_files

logger = logging.getLogger("producers.spool")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryReport:
    """What ``Spool.open`` found: pending records, and any damage it repaired."""

    segments: int
    pending_records: int
    pending_bytes: int
    truncated_bytes: int
    quarantined: tuple[str, ...]
    deleted_segments: int


@dataclass(slots=True, kw_only=True)
class Recovered:
    """The state of a recovered directory, for the ``Spool`` to take over."""

    segments: dict[int, Segment] = field(default_factory=dict)
    cursor: SpoolPosition
    next_id: int = 1
    pending_records: int = 0
    pending_bytes: int = 0
    oldest_created_ms: int | None = None
    truncated: int = 0
    quarantined: list[str] = field(default_factory=list)
    deleted: int = 0


def recover(directory: Path) -> Recovered:
    """Read the cursor and every segment from it on; repair and report damage."""
    files, found = _live_segments(directory)
    for n, (seg_id, path) in enumerate(files):
        _scan(found, seg_id, path, last=n == len(files) - 1)
    cursor = found.cursor
    if found.segments:
        found.next_id = max(found.segments) + 1
    else:
        found.next_id = max(cursor.segment, 1)
    found.next_id = max(found.next_id, cursor.segment)
    if cursor.segment not in found.segments:
        found.cursor = SpoolPosition(
            segment=min(found.segments) if found.segments else found.next_id,
            offset=HEADER_LEN,
        )
    return found


def _live_segments(directory: Path) -> tuple[list[tuple[int, Path]], Recovered]:
    """The segments from the cursor on; those wholly before it are deleted."""
    cursor = load_cursor(directory)
    files = segment_files(directory)
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
    return files, Recovered(cursor=cursor, deleted=deleted)


def _scan(found: Recovered, seg_id: int, path: Path, *, last: bool) -> None:
    """Count one segment's pending records; truncate a torn tail, quarantine damage."""
    data = path.read_bytes()
    if not header_ok(data, seg_id):
        _set_aside(found, path, len(data), last=last)
        return
    start = found.cursor.offset if seg_id == found.cursor.segment else HEADER_LEN
    at = min(start, len(data))
    view = memoryview(data)
    while at < len(data):
        try:
            entry, size = parse_record(view, at)
        except BadRecord as bad:
            if last and bad.declared_end >= len(data):
                logger.warning(
                    "spool segment %s: torn last record at offset %d (%s); "
                    "truncated %d bytes (its emit never returned)",
                    path,
                    at,
                    bad,
                    len(data) - at,
                )
                found.truncated += len(data) - at
                truncate_durably(path, at)
            else:
                found.quarantined.append(quarantine(path, data, at, str(bad)))
            break
        if found.oldest_created_ms is None:
            found.oldest_created_ms = entry.created_ms
        found.pending_records += 1
        found.pending_bytes += size
        at += size
    view.release()
    found.segments[seg_id] = Segment(id=seg_id, path=path, size=at)


def _set_aside(found: Recovered, path: Path, size: int, *, last: bool) -> None:
    """A segment without a valid header: removed when torn, else quarantined whole."""
    if last and size < HEADER_LEN:
        # Created but its header never reached the disk: a torn segment, no records.
        logger.warning("spool segment %s has no complete header; removed", path)
        found.truncated += size
        path.unlink()
    else:
        target = path.with_name(f"{path.name}.corrupt-0")
        path.rename(target)
        found.quarantined.append(target.name)
        logger.error("spool segment %s has a bad header; moved to %s", path, target)
