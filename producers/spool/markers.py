"""The small files beside the segments: the cursor and the sequence high-water marks.

Invariant: both are replaced atomically (``atomic_write``), so a crash leaves the old or
the new value. An unreadable cursor reads as "none" (re-sending everything only makes
duplicates the ledger recognises); an unreadable sequence file raises ``SpoolError``
(guessing could hand out a sequence number twice).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Final

from producers.errors import SpoolError
from producers.files import atomic_write
from producers.spool.format import HEADER_LEN, SpoolPosition

logger = logging.getLogger("producers.spool")

CURSOR: Final = "cursor"


def load_cursor(directory: Path) -> SpoolPosition | None:
    """The persisted cursor, or None when there is none or it is unreadable (logged)."""
    path = directory / CURSOR
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


def store_cursor(directory: Path, cursor: SpoolPosition) -> None:
    """Durably replace the cursor (``OSError`` on failure)."""
    atomic_write(
        directory / CURSOR,
        json.dumps({"segment": cursor.segment, "offset": cursor.offset}).encode("utf-8"),
    )


def _sequence_path(directory: Path, producer_id: str) -> Path:
    digest = hashlib.sha256(producer_id.encode("utf-8")).hexdigest()[:16]
    return directory / f"sequence-{digest}.json"


def load_sequence_floor(directory: Path, producer_id: str) -> int:
    """The persisted high-water mark of ``producer_id``, 0 when none was stored."""
    path = _sequence_path(directory, producer_id)
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


def store_sequence_floor(directory: Path, producer_id: str, value: int) -> None:
    """Durably record ``value`` as ``producer_id``'s high-water mark."""
    data = json.dumps({"producer_id": producer_id, "next": value}).encode("utf-8")
    try:
        atomic_write(_sequence_path(directory, producer_id), data)
    except OSError as exc:
        raise SpoolError(f"cannot persist the sequence high-water mark: {exc}") from exc
