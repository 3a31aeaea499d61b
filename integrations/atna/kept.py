"""The ATNA receiver's kept-messages store: what could not become an event, never dropped.

Invariant: a message the receiver could not frame, parse or map is appended here with its
raw bytes, the time it arrived, the transport and peer it came from, the sender identity
(``tls:<certificate CN>`` or ``udp``, see ``senders``), and a stable reason code; an
``append`` returns only once its records are fsynced. The store is bounded: ``append``
writes the records that fit under ``max_bytes`` and raises ``KeptStoreFullError`` for the
first that does not, so the caller can hold it (and push back on its senders) instead of
losing it.

Format: a directory (mode 0700) of append-only JSON-lines segments
``kept-<first id, 12 digits>.jsonl`` (mode 0600: they hold PHI), one object per line::

    {"id": 17, "received_at": "2026-01-02T03:04:05.123456Z", "transport": "tls",
     "peer": "10.1.2.3:52344", "sender": "tls:pacs01.example", "reason": "no_patient",
     "detail": "...",
     "field": null, "size": 1834, "raw": "<base64 of the bytes received>"}

Ids are dense and increasing. A torn last line (a crash mid-write) is cut off when the
store is opened. One process at a time (``flock`` on ``LOCK``); readers (``read_kept``)
need no lock and read complete lines only. To empty a full store, move or delete whole
segment files while the receiver is stopped.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from integrations.errors import KeptStoreError, KeptStoreFullError
from producers import (
    DirectoryInUseError,
    DirectoryLock,
    fsync_directory,
    truncate_durably,
    write_all,
)

__all__ = ["KeptMessage", "KeptRecord", "KeptStore", "read_kept"]

DEFAULT_MAX_BYTES: Final = 256 * 1024 * 1024
DEFAULT_SEGMENT_BYTES: Final = 16 * 1024 * 1024
_PREFIX: Final = "kept-"
_SUFFIX: Final = ".jsonl"


@dataclass(frozen=True, slots=True, kw_only=True)
class KeptRecord:
    """What the receiver asks the store to keep."""

    raw: bytes
    received_at: datetime
    transport: str
    peer: str | None
    reason: str
    detail: str
    field: str | None = None
    sender: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeptMessage:
    """One kept message as stored (``raw`` is the exact bytes received)."""

    id: int
    received_at: datetime
    transport: str
    peer: str | None
    reason: str
    detail: str
    field: str | None
    raw: bytes
    sender: str | None = None


def _line(ident: int, record: KeptRecord) -> bytes:
    at = record.received_at.astimezone(UTC).isoformat(timespec="microseconds")
    obj = {
        "id": ident,
        "received_at": at.replace("+00:00", "Z"),
        "transport": record.transport,
        "peer": record.peer,
        "sender": record.sender,
        "reason": record.reason,
        "detail": record.detail,
        "field": record.field,
        "size": len(record.raw),
        "raw": base64.b64encode(record.raw).decode("ascii"),
    }
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"


def _segments(directory: Path) -> list[Path]:
    found = [
        p
        for p in directory.iterdir()
        if p.name.startswith(_PREFIX) and p.name.endswith(_SUFFIX) and p.is_file()
    ]
    return sorted(found)


def _decode(line: bytes) -> KeptMessage | None:
    try:
        obj = json.loads(line)
        return KeptMessage(
            id=int(obj["id"]),
            received_at=datetime.fromisoformat(str(obj["received_at"]).replace("Z", "+00:00")),
            transport=str(obj["transport"]),
            peer=None if obj.get("peer") is None else str(obj["peer"]),
            reason=str(obj["reason"]),
            detail=str(obj.get("detail") or ""),
            field=None if obj.get("field") is None else str(obj["field"]),
            raw=base64.b64decode(str(obj["raw"]), validate=True),
            sender=None if obj.get("sender") is None else str(obj["sender"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error):
        return None


class KeptStore:
    """``store.open()``, ``store.append(records)`` (blocking: call it off the event loop),
    ``store.close()``."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        segment_bytes: int = DEFAULT_SEGMENT_BYTES,
    ) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be positive")
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = DirectoryLock(self.directory / "LOCK")
        self._file: int | None = None
        self._file_bytes = 0
        self._next_id = 1
        self._bytes = 0
        self._count = 0

    @property
    def bytes(self) -> int:
        """Bytes held in all segments."""
        return self._bytes

    @property
    def count(self) -> int:
        """Records appended since ``open`` (not the total held)."""
        return self._count

    @property
    def next_id(self) -> int:
        return self._next_id

    def open(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(self.directory, 0o700)
            self._lock.acquire()
        except DirectoryInUseError as exc:
            raise KeptStoreError(
                f"the kept store {self.directory} is in use by another receiver"
            ) from exc
        except OSError as exc:
            raise KeptStoreError(f"cannot open the kept store {self.directory}: {exc}") from exc
        try:
            self._recover()
        except OSError as exc:
            self.close()
            raise KeptStoreError(f"cannot read the kept store {self.directory}: {exc}") from exc

    def _recover(self) -> None:
        segments = _segments(self.directory)
        self._bytes = sum(p.stat().st_size for p in segments)
        if not segments:
            return
        last = segments[-1]
        data = last.read_bytes()
        end = data.rfind(b"\n") + 1
        if end < len(data):  # a torn last line: cut it off
            truncate_durably(last, end)
            self._bytes -= len(data) - end
            data = data[:end]
        for line in reversed(data.splitlines()):
            kept = _decode(line)
            if kept is not None:
                self._next_id = kept.id + 1
                break
        else:
            first = last.name.removeprefix(_PREFIX).removesuffix(_SUFFIX)
            if first.isdigit():
                self._next_id = int(first)
        self._file = os.open(last, os.O_WRONLY | os.O_APPEND)
        self._file_bytes = len(data)

    def append(self, records: Sequence[KeptRecord]) -> list[int]:
        """Write and fsync records; return their ids. Raises ``KeptStoreFullError`` (after
        writing and fsyncing those before it) for the first record that does not fit."""
        if not self._lock.held:
            raise KeptStoreError("the kept store is not open")
        ids: list[int] = []
        full: KeptStoreFullError | None = None
        try:
            for record in records:
                line = _line(self._next_id, record)
                if self._bytes + len(line) > self.max_bytes:
                    full = KeptStoreFullError(
                        f"the kept store {self.directory} holds {self._bytes} bytes; "
                        f"a {len(line)}-byte record would pass its limit of {self.max_bytes}"
                    )
                    break
                fd = self._file
                if fd is None or self._file_bytes + len(line) > self.segment_bytes:
                    fd = self._roll()
                write_all(fd, line)
                self._file_bytes += len(line)
                self._bytes += len(line)
                ids.append(self._next_id)
                self._next_id += 1
            if ids and self._file is not None:
                os.fsync(self._file)
        except OSError as exc:
            raise KeptStoreError(f"cannot write to the kept store: {exc}") from exc
        self._count += len(ids)
        if full is not None:
            raise KeptStoreFullError(str(full), written=tuple(ids))
        return ids

    def _roll(self) -> int:
        if self._file is not None:
            os.fsync(self._file)
            os.close(self._file)
            self._file = None
        path = self.directory / f"{_PREFIX}{self._next_id:012d}{_SUFFIX}"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = fd
        self._file_bytes = 0
        fsync_directory(self.directory)
        return fd

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                os.fsync(self._file)
            os.close(self._file)
            self._file = None
        self._lock.release()


def read_kept(
    directory: str | os.PathLike[str],
    *,
    reason: str | None = None,
    after_id: int = 0,
    limit: int | None = None,
) -> Iterator[KeptMessage]:
    """Kept messages in id order (``reason`` filters; ``after_id`` pages on)."""
    root = Path(directory)
    if not root.is_dir():
        return
    produced = 0
    segments = _segments(root)
    for i, path in enumerate(segments):
        if i + 1 < len(segments):
            following = segments[i + 1].name.removeprefix(_PREFIX).removesuffix(_SUFFIX)
            if following.isdigit() and int(following) <= after_id + 1:
                continue  # every id in this segment is <= after_id
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    break  # being written
                kept = _decode(line)
                if kept is None or kept.id <= after_id:
                    continue
                if reason is not None and kept.reason != reason:
                    continue
                yield kept
                produced += 1
                if limit is not None and produced >= limit:
                    return
