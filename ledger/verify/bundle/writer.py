"""The bundle writer: a faithful, unjudged copy of what was stored, streamed to files.

Invariant: ``BundleWriter`` writes every entry, tile, checkpoint and index row exactly as
given and in the order given (a tampered database may yield gaps, duplicates or disorder:
the bundle must preserve that evidence, not repair it), and writes ``manifest.json``
last, only when the ``with`` block exits cleanly, so a directory without a manifest is
an incomplete export. It opens no database or socket; its files are owner-only
(``ledger.verify.bundle.files``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Protocol, Self

from ledger.errors import MalformedInputError
from ledger.verify.bundle.files import check_target, new_dir, new_file, write_new
from ledger.verify.bundle.layout import (
    BUNDLE_FORMAT,
    CHECKPOINTS,
    COLUMN_SET,
    ENTRIES,
    ENTRY_HEAD,
    INDEX,
    INDEX_COLUMNS,
    MANIFEST,
    MAX_LEAF,
    SCHEMAS,
    SEAL,
    TILE_BYTES,
    TILE_HEAD,
    TILES,
    BundleLog,
    check_u64,
    iso_utc,
    json_cell,
)

_WRITE_BUFFER: Final = 1 << 20


class SchemaRecord(Protocol):
    """Anything that carries a writer schema (``ledger.audit.records.StoredSchema`` and alike)."""

    @property
    def fingerprint(self) -> bytes: ...

    @property
    def full_name(self) -> str: ...

    @property
    def schema_json(self) -> str: ...


class LogWriter:
    """Streams one log's four files.  Obtain it from ``BundleWriter.add_log``.

    Records are written as given, in the order given; nothing is sorted or deduplicated.
    """

    __slots__ = (
        "_checkpoints",
        "_closed",
        "_count",
        "_directory",
        "_entries",
        "_index",
        "_owner",
        "_tiles",
        "chain",
        "log_id",
        "origin",
        "size",
    )

    def __init__(
        self,
        *,
        owner: BundleWriter,
        directory: Path,
        log_id: int,
        origin: str,
        size: int | None,
        chain: BundleLog | None = None,
    ) -> None:
        if not directory.parent.is_dir():
            new_dir(directory.parent)
        new_dir(directory)
        self._owner = owner
        self._directory = directory
        self.log_id = log_id
        self.origin = origin
        self.size = size
        self.chain = chain
        self._count = 0
        self._closed = False
        self._entries: IO[bytes] = open(  # noqa: SIM115
            new_file(directory / ENTRIES), "wb", buffering=_WRITE_BUFFER
        )
        self._tiles: IO[bytes] = open(new_file(directory / TILES), "wb", buffering=_WRITE_BUFFER)  # noqa: SIM115
        self._checkpoints: IO[str] = open(  # noqa: SIM115
            new_file(directory / CHECKPOINTS), "w", encoding="utf-8"
        )
        self._index: IO[str] = open(  # noqa: SIM115
            new_file(directory / INDEX), "w", encoding="utf-8", buffering=_WRITE_BUFFER
        )

    def _check_open(self) -> None:
        if self._closed:
            raise MalformedInputError(f"log {self.log_id} is already closed")

    def add_entry(self, leaf_index: int, leaf: bytes) -> None:
        """Append one ``(leaf_index, leaf)`` record."""
        self._check_open()
        check_u64(leaf_index, "leaf index")
        if not isinstance(leaf, bytes | bytearray | memoryview) or len(leaf) > MAX_LEAF:
            raise MalformedInputError(f"leaf {leaf_index} must be at most {MAX_LEAF} bytes")
        self._entries.write(ENTRY_HEAD.pack(leaf_index, len(leaf)) + bytes(leaf))
        self._count += 1

    def add_entries(self, entries: Iterable[tuple[int, bytes]]) -> None:
        """Append many records (streamed: the iterable is consumed lazily)."""
        for leaf_index, leaf in entries:
            self.add_entry(leaf_index, leaf)

    def add_tile(self, level: int, tile_index: int, hashes: bytes) -> None:
        """Append one full tile: ``level`` (u8), ``tile_index`` (u64) and 8,192 hash bytes."""
        self._check_open()
        if type(level) is not int or not 0 <= level <= 0xFF:
            raise MalformedInputError(f"tile level must be a u8, got {level!r}")
        check_u64(tile_index, "tile index")
        if not isinstance(hashes, bytes | bytearray | memoryview) or len(hashes) != TILE_BYTES:
            raise MalformedInputError(f"a stored tile is exactly {TILE_BYTES} bytes")
        self._tiles.write(TILE_HEAD.pack(level, tile_index) + bytes(hashes))

    def add_tiles(self, tiles: Iterable[tuple[int, int, bytes]]) -> None:
        for level, tile_index, hashes in tiles:
            self.add_tile(level, tile_index, hashes)

    def add_checkpoint(self, size: int, note: str) -> None:
        """Append one signed checkpoint note, verbatim, with the size its row claims."""
        self._check_open()
        check_u64(size, "checkpoint size")
        if not isinstance(note, str):
            raise MalformedInputError("a checkpoint note must be a string")
        self._checkpoints.write(json.dumps({"size": size, "note": note}) + "\n")

    def add_checkpoints(self, checkpoints: Iterable[tuple[int, str]]) -> None:
        for size, note in checkpoints:
            self.add_checkpoint(size, note)

    def add_seal(
        self, *, size: int, note: str, next_log_id: int, next_origin: str, next_first_offset: int
    ) -> None:
        """Write ``seal.json``: the log's ``log_seals`` row as stored (its signed note
        verbatim, the successor's id and origin, the offset the successor starts at)."""
        self._check_open()
        for value, what in ((size, "seal size"), (next_log_id, "next log id")):
            check_u64(value, what)
        check_u64(next_first_offset, "next first offset")
        if not isinstance(note, str) or not isinstance(next_origin, str):
            raise MalformedInputError("a seal's note and next origin must be strings")
        seal = {
            "size": size,
            "next_log_id": next_log_id,
            "next_origin": next_origin,
            "next_first_offset": next_first_offset,
            "note": note,
        }
        write_new(self._directory / SEAL, json.dumps(seal, indent=1) + "\n")

    def add_index_row(self, row: Mapping[str, object]) -> None:
        """Append one events-table row; its keys must be exactly ``INDEX_COLUMNS``."""
        self._check_open()
        keys = set(row)
        if keys != COLUMN_SET:
            missing = sorted(COLUMN_SET - keys)
            extra = sorted(keys - COLUMN_SET)
            raise MalformedInputError(f"index row columns differ: missing {missing}, extra {extra}")
        cells = {column: json_cell(column, row[column]) for column in INDEX_COLUMNS}
        self._index.write(json.dumps(cells, separators=(",", ":")) + "\n")

    def add_index_rows(self, rows: Iterable[Mapping[str, object]]) -> None:
        for row in rows:
            self.add_index_row(row)

    @property
    def entries_written(self) -> int:
        return self._count

    def close(self) -> None:
        """Flush and close the files; the manifest records ``size`` (or the entry count)."""
        if self._closed:
            return
        self._closed = True
        for handle in (self._entries, self._tiles, self._checkpoints, self._index):
            handle.close()
        self._owner._log_closed(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BundleWriter:
    """``with BundleWriter(path, ledger_name=...) as w:`` writes one bundle directory.

    ``path`` may exist only as an empty directory.  Add logs with ``add_log`` (each a
    ``LogWriter``, usable as a context manager), schemas with ``write_schemas``; the manifest
    is written when the ``with`` block exits without an exception.
    """

    __slots__ = (
        "_closed",
        "_exported_at",
        "_format",
        "_ledger_name",
        "_logs",
        "_open",
        "_path",
        "_schemas",
    )

    def __init__(
        self,
        path: str | Path,
        *,
        ledger_name: str,
        exported_at: datetime | None = None,
        bundle_format: str = BUNDLE_FORMAT,
    ) -> None:
        if not isinstance(ledger_name, str) or not ledger_name:
            raise MalformedInputError("ledger_name must be a non-empty string")
        self._path = Path(path)
        check_target(self._path)
        if not self._path.exists():
            self._path.parent.mkdir(parents=True, exist_ok=True)
            new_dir(self._path)
        self._ledger_name = ledger_name
        self._format = bundle_format
        self._exported_at = iso_utc(exported_at or datetime.now(UTC))
        self._logs: dict[int, BundleLog] = {}
        self._open: dict[int, LogWriter] = {}
        self._schemas = False
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    def write_schemas(self, schemas: Iterable[SchemaRecord]) -> None:
        """Write ``schemas.json`` (once) from writer schemas."""
        if self._schemas:
            raise MalformedInputError("schemas.json is already written")
        out = []
        for s in schemas:
            if not isinstance(s.fingerprint, bytes) or len(s.fingerprint) != 8:
                raise MalformedInputError(f"schema {s.full_name!r} needs an 8-byte fingerprint")
            out.append(
                {
                    "fingerprint": s.fingerprint.hex(),
                    "full_name": s.full_name,
                    "schema_json": s.schema_json,
                }
            )
        write_new(self._path / SCHEMAS, json.dumps(out, indent=1) + "\n")
        self._schemas = True

    def add_log(
        self, *, log_id: int, origin: str, size: int | None = None, chain: BundleLog | None = None
    ) -> LogWriter:
        """Start one log's files.  ``size`` is the size the source claims; when omitted, the
        number of entries written is recorded instead.  ``chain`` gives the log's topic,
        partition, period and first offset for the manifest (its log_id, origin and size
        are not used)."""
        if self._closed:
            raise MalformedInputError("the bundle is already closed")
        if type(log_id) is not int or log_id < 0:
            raise MalformedInputError(f"log_id must be a non-negative int, got {log_id!r}")
        if log_id in self._logs or log_id in self._open:
            raise MalformedInputError(f"log {log_id} is already in the bundle")
        if not isinstance(origin, str) or not origin:
            raise MalformedInputError("log origin must be a non-empty string")
        if size is not None:
            check_u64(size, "log size")
        writer = LogWriter(
            owner=self,
            directory=self._path / "logs" / str(log_id),
            log_id=log_id,
            origin=origin,
            size=size,
            chain=chain,
        )
        self._open[log_id] = writer
        return writer

    def _log_closed(self, writer: LogWriter) -> None:
        self._open.pop(writer.log_id, None)
        size = writer.entries_written if writer.size is None else writer.size
        chain = writer.chain
        self._logs[writer.log_id] = BundleLog(
            log_id=writer.log_id,
            origin=writer.origin,
            size=size,
            topic=None if chain is None else chain.topic,
            partition=None if chain is None else chain.partition,
            period=None if chain is None else chain.period,
            first_offset=None if chain is None else chain.first_offset,
        )

    def manifest(self) -> dict[str, object]:
        """The manifest's fields (a subclass adds its own before it is written)."""
        return {
            "format": self._format,
            "ledger_name": self._ledger_name,
            "exported_at": self._exported_at,
            "logs": [
                log.manifest_entry() for log in sorted(self._logs.values(), key=lambda g: g.log_id)
            ],
        }

    def close(self) -> None:
        """Close open logs, then write ``schemas.json`` (if not yet) and ``manifest.json``."""
        if self._closed:
            return
        for writer in list(self._open.values()):
            writer.close()
        if not self._schemas:
            self.write_schemas(())
        manifest = self.manifest()
        tmp = self._path / (MANIFEST + ".tmp")
        write_new(tmp, json.dumps(manifest, indent=1) + "\n")
        tmp.replace(self._path / MANIFEST)
        self._closed = True

    def abort(self) -> None:
        """Close every file without writing the manifest (the bundle stays incomplete)."""
        for writer in list(self._open.values()):
            for handle in (writer._entries, writer._tiles, writer._checkpoints, writer._index):
                handle.close()
            writer._closed = True
        self._open.clear()
        self._closed = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
