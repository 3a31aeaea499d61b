"""The offline export bundle (``phi-ledger-export/v1``): pure, streaming file I/O.

Invariant: the bundle is a faithful, unjudged copy of what was stored.  ``BundleWriter``
writes every entry, tile, checkpoint and index row exactly as given and in the order given
(a tampered database may yield gaps, duplicates or disorder: the bundle must preserve that
evidence, not repair it), and writes ``manifest.json`` last, only when the ``with`` block
exits cleanly, so a directory without a manifest is an incomplete export.  ``BundleReader``
yields the same records back in file order, in bounded memory, and raises
``MalformedInputError`` (after yielding every complete record before the damage) when a file
is missing, truncated or not in this format.  Neither side opens a database or a socket.
A bundle holds every patient's PHI: the writer creates its directories 0700 and its files
0600 whatever the umask, and refuses a target directory that others can open.

The layout of a bundle directory and of each file: docs/bundle-format.md (``size`` in the
manifest is the size the exporting database *claimed*; the verifier checks it).
"""

from __future__ import annotations

import json
import mmap
import os
import stat
import struct
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Final, Protocol, Self

from ledger.audit.records import StoredSchema
from ledger.errors import MalformedInputError

__all__ = [
    "BUNDLE_FORMAT",
    "INDEX_COLUMNS",
    "TILE_BYTES",
    "BundleLog",
    "BundleReader",
    "BundleWriter",
    "LogWriter",
    "SchemaRecord",
    "check_target",
    "index_row",
]

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
)
"""The ``events``-table columns carried by each ``index.jsonl`` row, in file order, and the
leaf's ``read_disclosures`` rows as one ``disclosed`` cell (a bundle written before that
column existed has rows without it: they read as disclosing nothing)."""

MANIFEST: Final = "manifest.json"
SCHEMAS: Final = "schemas.json"
ENTRIES: Final = "entries.bin"
TILES: Final = "tiles.bin"
CHECKPOINTS: Final = "checkpoints.jsonl"
INDEX: Final = "index.jsonl"

_ENTRY_HEAD: Final = struct.Struct(">QH")
_TILE_HEAD: Final = struct.Struct(">BQ")
_MAX_U64: Final = (1 << 64) - 1
_MAX_LEAF: Final = 0xFFFF
_READ_BLOCK: Final = 1 << 22  # 4 MiB reads
_WRITE_BUFFER: Final = 1 << 20
_COLUMN_SET: Final = frozenset(INDEX_COLUMNS)
#: Owner-only: a bundle is PHI at rest.
DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600
_NEW_FILE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def check_target(path: str | Path) -> None:
    """Refuse a bundle target that exists and is not an empty, owner-only directory of ours.

    A missing target is fine (the writer creates it 0700). Checked before anything is
    read, so a refused export reads nothing.
    """
    target = Path(path)
    try:
        st = target.lstat()
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        raise MalformedInputError(f"{target} exists and is not a directory")
    if st.st_uid != os.geteuid():
        raise MalformedInputError(f"{target} belongs to another user; name a new directory")
    if any(target.iterdir()):
        raise MalformedInputError(f"{target} exists and is not an empty directory")
    if st.st_mode & 0o077:
        raise MalformedInputError(
            f"{target} can be opened by other users (mode {stat.S_IMODE(st.st_mode):o}); "
            "chmod 700 it or name a new directory"
        )


def new_file(path: Path) -> int:
    """A new owner-only file (never an existing one, never through a symlink)."""
    return os.open(path, _NEW_FILE, FILE_MODE)


def _write_new(path: Path, text: str) -> None:
    with open(new_file(path), "w", encoding="utf-8") as out:
        out.write(text)


def new_dir(path: Path) -> None:
    path.mkdir(mode=DIR_MODE)
    os.chmod(path, DIR_MODE)  # mkdir's mode is masked by the umask: make it exactly 0700


class SchemaRecord(Protocol):
    """Anything that carries a writer schema (``ledger.audit.records.StoredSchema`` and alike)."""

    @property
    def fingerprint(self) -> bytes: ...

    @property
    def full_name(self) -> str: ...

    @property
    def schema_json(self) -> str: ...


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
        if type(self.size) is not int or not 0 <= self.size <= _MAX_U64:
            raise MalformedInputError(f"log size must be a uint64, got {self.size!r}")


def _check_u64(value: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= _MAX_U64:
        raise MalformedInputError(f"{what} must be a uint64, got {value!r}")


def _iso_utc(moment: datetime) -> str:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise MalformedInputError("timestamps in a bundle must carry a time zone")
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _json_cell(column: str, value: object) -> object:
    """An index cell rendered JSON-safe: datetimes as ISO-8601 UTC, UUIDs as strings."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        raise MalformedInputError(f"index column {column} cannot hold a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        return _iso_utc(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple) and all(_range_cell(item) for item in value):
        return [list(item) for item in value]
    raise MalformedInputError(f"index column {column} cannot hold a {type(value).__name__}")


def _range_cell(item: object) -> bool:
    """One ``[origin, first leaf, end leaf]`` of a ``disclosed`` cell, copied as given."""
    return (
        isinstance(item, list | tuple)
        and len(item) == 3
        and isinstance(item[0], str)
        and all(type(x) is int for x in item[1:])
    )


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------


class LogWriter:
    """Streams one log's four files.  Obtain it from ``BundleWriter.add_log``.

    Records are written as given, in the order given; nothing is sorted or deduplicated.
    """

    __slots__ = (
        "_checkpoints",
        "_closed",
        "_count",
        "_entries",
        "_index",
        "_owner",
        "_tiles",
        "log_id",
        "origin",
        "size",
    )

    def __init__(
        self, *, owner: BundleWriter, directory: Path, log_id: int, origin: str, size: int | None
    ) -> None:
        if not directory.parent.is_dir():
            new_dir(directory.parent)
        new_dir(directory)
        self._owner = owner
        self.log_id = log_id
        self.origin = origin
        self.size = size
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
        _check_u64(leaf_index, "leaf index")
        if not isinstance(leaf, bytes | bytearray | memoryview) or len(leaf) > _MAX_LEAF:
            raise MalformedInputError(f"leaf {leaf_index} must be at most {_MAX_LEAF} bytes")
        self._entries.write(_ENTRY_HEAD.pack(leaf_index, len(leaf)) + bytes(leaf))
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
        _check_u64(tile_index, "tile index")
        if not isinstance(hashes, bytes | bytearray | memoryview) or len(hashes) != TILE_BYTES:
            raise MalformedInputError(f"a stored tile is exactly {TILE_BYTES} bytes")
        self._tiles.write(_TILE_HEAD.pack(level, tile_index) + bytes(hashes))

    def add_tiles(self, tiles: Iterable[tuple[int, int, bytes]]) -> None:
        for level, tile_index, hashes in tiles:
            self.add_tile(level, tile_index, hashes)

    def add_checkpoint(self, size: int, note: str) -> None:
        """Append one signed checkpoint note, verbatim, with the size its row claims."""
        self._check_open()
        _check_u64(size, "checkpoint size")
        if not isinstance(note, str):
            raise MalformedInputError("a checkpoint note must be a string")
        self._checkpoints.write(json.dumps({"size": size, "note": note}) + "\n")

    def add_checkpoints(self, checkpoints: Iterable[tuple[int, str]]) -> None:
        for size, note in checkpoints:
            self.add_checkpoint(size, note)

    def add_index_row(self, row: Mapping[str, object]) -> None:
        """Append one events-table row; its keys must be exactly ``INDEX_COLUMNS``."""
        self._check_open()
        keys = set(row)
        if keys != _COLUMN_SET:
            missing = sorted(_COLUMN_SET - keys)
            extra = sorted(keys - _COLUMN_SET)
            raise MalformedInputError(f"index row columns differ: missing {missing}, extra {extra}")
        cells = {column: _json_cell(column, row[column]) for column in INDEX_COLUMNS}
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

    __slots__ = ("_closed", "_exported_at", "_ledger_name", "_logs", "_open", "_path", "_schemas")

    def __init__(
        self, path: str | Path, *, ledger_name: str, exported_at: datetime | None = None
    ) -> None:
        if not isinstance(ledger_name, str) or not ledger_name:
            raise MalformedInputError("ledger_name must be a non-empty string")
        self._path = Path(path)
        check_target(self._path)
        if not self._path.exists():
            self._path.parent.mkdir(parents=True, exist_ok=True)
            new_dir(self._path)
        self._ledger_name = ledger_name
        self._exported_at = _iso_utc(exported_at or datetime.now(UTC))
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
        _write_new(self._path / SCHEMAS, json.dumps(out, indent=1) + "\n")
        self._schemas = True

    def add_log(self, *, log_id: int, origin: str, size: int | None = None) -> LogWriter:
        """Start one log's files.  ``size`` is the size the source claims; when omitted, the
        number of entries written is recorded instead."""
        if self._closed:
            raise MalformedInputError("the bundle is already closed")
        if type(log_id) is not int or log_id < 0:
            raise MalformedInputError(f"log_id must be a non-negative int, got {log_id!r}")
        if log_id in self._logs or log_id in self._open:
            raise MalformedInputError(f"log {log_id} is already in the bundle")
        if not isinstance(origin, str) or not origin:
            raise MalformedInputError("log origin must be a non-empty string")
        if size is not None:
            _check_u64(size, "log size")
        writer = LogWriter(
            owner=self,
            directory=self._path / "logs" / str(log_id),
            log_id=log_id,
            origin=origin,
            size=size,
        )
        self._open[log_id] = writer
        return writer

    def _log_closed(self, writer: LogWriter) -> None:
        self._open.pop(writer.log_id, None)
        size = writer.entries_written if writer.size is None else writer.size
        self._logs[writer.log_id] = BundleLog(log_id=writer.log_id, origin=writer.origin, size=size)

    def close(self) -> None:
        """Close open logs, then write ``schemas.json`` (if not yet) and ``manifest.json``."""
        if self._closed:
            return
        for writer in list(self._open.values()):
            writer.close()
        if not self._schemas:
            self.write_schemas(())
        manifest = {
            "format": BUNDLE_FORMAT,
            "ledger_name": self._ledger_name,
            "exported_at": self._exported_at,
            "logs": [
                {"log_id": log.log_id, "origin": log.origin, "size": log.size}
                for log in sorted(self._logs.values(), key=lambda g: g.log_id)
            ],
        }
        tmp = self._path / (MANIFEST + ".tmp")
        _write_new(tmp, json.dumps(manifest, indent=1) + "\n")
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


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------


def _load_json(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise MalformedInputError(f"bundle file {path.name} is missing") from exc
    except UnicodeDecodeError as exc:
        raise MalformedInputError(f"{path.name} is not UTF-8") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise MalformedInputError(f"{path.name} is not valid JSON: {exc}") from exc


def _open_binary(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")  # closed by the caller's with-statement
    except FileNotFoundError as exc:
        raise MalformedInputError(f"bundle file {path.parent.name}/{path.name} is missing") from exc


def _open_text(path: Path) -> IO[str]:
    try:
        return open(path, encoding="utf-8")  # closed by the caller
    except FileNotFoundError as exc:
        raise MalformedInputError(f"bundle file {path.parent.name}/{path.name} is missing") from exc


def _iter_json_lines(path: Path) -> Iterator[tuple[int, dict[str, object]]]:
    with _open_text(path) as handle:
        try:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except ValueError as exc:
                    raise MalformedInputError(
                        f"{path.parent.name}/{path.name} line {number} is not JSON"
                    ) from exc
                if not isinstance(value, dict):
                    raise MalformedInputError(
                        f"{path.parent.name}/{path.name} line {number} is not a JSON object"
                    )
                yield number, value
        except UnicodeDecodeError as exc:
            raise MalformedInputError(f"{path.parent.name}/{path.name} is not UTF-8") from exc


def _parse_time(text: object, what: str) -> datetime:
    if not isinstance(text, str):
        raise MalformedInputError(f"{what} must be an ISO-8601 string")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MalformedInputError(f"{what} is not ISO-8601") from exc
    if moment.tzinfo is None:
        raise MalformedInputError(f"{what} has no time zone")
    return moment.astimezone(UTC)


class BundleReader:
    """Reads a bundle directory; every iterator streams its file in bounded memory."""

    __slots__ = ("_path", "exported_at", "ledger_name", "logs")

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        manifest = _load_json(self._path / MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
            raise MalformedInputError(f"{MANIFEST} is not a {BUNDLE_FORMAT} manifest")
        name = manifest.get("ledger_name")
        if not isinstance(name, str) or not name:
            raise MalformedInputError("the manifest has no ledger_name")
        self.ledger_name: str = name
        self.exported_at: datetime = _parse_time(manifest.get("exported_at"), "exported_at")
        raw_logs = manifest.get("logs")
        if not isinstance(raw_logs, list):
            raise MalformedInputError("the manifest has no logs list")
        logs: list[BundleLog] = []
        for item in raw_logs:
            if not isinstance(item, dict):
                raise MalformedInputError("a manifest log entry is not an object")
            log_id, origin, size = item.get("log_id"), item.get("origin"), item.get("size")
            if type(log_id) is not int or not isinstance(origin, str) or type(size) is not int:
                raise MalformedInputError("a manifest log needs int log_id, str origin, int size")
            logs.append(BundleLog(log_id=log_id, origin=origin, size=size))
        if len({g.log_id for g in logs}) != len(logs):
            raise MalformedInputError("the manifest lists a log_id twice")
        self.logs: tuple[BundleLog, ...] = tuple(logs)

    @property
    def path(self) -> Path:
        return self._path

    def log(self, log_id: int) -> BundleLog:
        for g in self.logs:
            if g.log_id == log_id:
                return g
        raise MalformedInputError(f"log {log_id} is not in the bundle")

    def _log_dir(self, log_id: int) -> Path:
        return self._path / "logs" / str(self.log(log_id).log_id)

    def schemas(self) -> list[StoredSchema]:
        """The stored writer schemas (fingerprints are not checked here: see ``SchemaSet``)."""
        raw = _load_json(self._path / SCHEMAS)
        if not isinstance(raw, list):
            raise MalformedInputError(f"{SCHEMAS} is not a list")
        out: list[StoredSchema] = []
        for item in raw:
            if not isinstance(item, dict):
                raise MalformedInputError(f"a {SCHEMAS} item is not an object")
            fp, name, text = item.get("fingerprint"), item.get("full_name"), item.get("schema_json")
            if not isinstance(fp, str) or not isinstance(name, str) or not isinstance(text, str):
                raise MalformedInputError(f"a {SCHEMAS} item needs fingerprint, full_name, json")
            try:
                fingerprint = bytes.fromhex(fp)
            except ValueError as exc:
                raise MalformedInputError(f"schema {name!r} fingerprint is not hex") from exc
            if len(fingerprint) != 8:
                raise MalformedInputError(f"schema {name!r} fingerprint is not 8 bytes")
            out.append(StoredSchema(fingerprint=fingerprint, full_name=name, schema_json=text))
        return out

    def iter_entries(self, log_id: int) -> Iterator[tuple[int, bytes]]:
        """``(leaf_index, leaf)`` records in file order."""
        for batch in self.iter_entry_batches(log_id):
            yield from batch

    def iter_entry_batches(self, log_id: int) -> Iterator[list[tuple[int, bytes]]]:
        """The same records as ``iter_entries``, a list per ~4 MiB of file (the fast path).

        The file is memory-mapped read-only, so pages stream through the page cache and
        each leaf is copied exactly once.
        """
        path = self._log_dir(log_id) / ENTRIES
        head_size = _ENTRY_HEAD.size
        unpack = _ENTRY_HEAD.unpack_from
        with _open_binary(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            if size == 0:
                return
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                limit = size - head_size
                pos = 0
                while pos <= limit:
                    stop = min(limit, pos + _READ_BLOCK)
                    batch: list[tuple[int, bytes]] = []
                    add = batch.append
                    while pos <= stop:
                        index, length = unpack(data, pos)
                        end = pos + head_size + length
                        if end > size:
                            break
                        add((index, data[pos + head_size : end]))
                        pos = end
                    if not batch:
                        break
                    yield batch
        if pos != size:
            raise MalformedInputError(f"log {log_id} {ENTRIES} ends inside a record")

    def iter_tiles(self, log_id: int) -> Iterator[tuple[int, int, bytes]]:
        """``(level, tile_index, 8192 hash bytes)`` records in file order."""
        path = self._log_dir(log_id) / TILES
        record = _TILE_HEAD.size + TILE_BYTES
        unpack = _TILE_HEAD.unpack_from
        with _open_binary(path) as handle:
            while True:
                data = handle.read(record)
                if not data:
                    return
                if len(data) != record:
                    raise MalformedInputError(f"log {log_id} {TILES} ends inside a record")
                level, index = unpack(data, 0)
                yield level, index, data[_TILE_HEAD.size :]

    def checkpoints(self, log_id: int) -> list[tuple[int, str]]:
        """``(size, note)`` pairs in file order (a log has few checkpoints: read at once)."""
        path = self._log_dir(log_id) / CHECKPOINTS
        out: list[tuple[int, str]] = []
        for number, obj in _iter_json_lines(path):
            size, note = obj.get("size"), obj.get("note")
            if type(size) is not int or not isinstance(note, str):
                raise MalformedInputError(
                    f"log {log_id} {CHECKPOINTS} line {number} needs int size and str note"
                )
            out.append((size, note))
        return out

    def iter_index_rows(self, log_id: int) -> Iterator[dict[str, object]]:
        """Index rows (JSON objects, values as written) in file order."""
        path = self._log_dir(log_id) / INDEX
        for _, obj in _iter_json_lines(path):
            yield obj


def index_row(values: Mapping[str, object]) -> dict[str, object]:
    """A row with exactly ``INDEX_COLUMNS`` from a mapping that has at least those keys."""
    try:
        return {column: values[column] for column in INDEX_COLUMNS}
    except KeyError as exc:
        raise MalformedInputError(f"index row lacks column {exc.args[0]}") from exc
