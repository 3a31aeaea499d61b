"""The bundle reader: a bundle's records back, in file order, in bounded memory.

Invariant: ``BundleReader`` yields the records exactly as written, in file order, and
raises ``MalformedInputError`` (after yielding every complete record before the damage)
when a file is missing, truncated or not in this format. It opens no database or socket
and judges nothing: the verifier does (docs/bundle-format.md).
"""

from __future__ import annotations

import json
import mmap
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

from ledger.audit.records import StoredSchema
from ledger.errors import MalformedInputError
from ledger.verify.bundle.layout import (
    CHECKPOINTS,
    ENTRIES,
    ENTRY_HEAD,
    FORMATS,
    INDEX,
    MANIFEST,
    SCHEMAS,
    SEAL,
    TILE_BYTES,
    TILE_HEAD,
    TILES,
    BundleLog,
    StoredSeal,
)

_READ_BLOCK: Final = 1 << 22  # 4 MiB reads


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


def _manifest_log(item: dict[str, object], log_id: int, origin: str, size: int) -> BundleLog:
    topic, partition = item.get("topic"), item.get("partition")
    period, first_offset = item.get("period"), item.get("first_offset")
    if not all(v is None or isinstance(v, str) for v in (topic, period)):
        raise MalformedInputError("a manifest log's topic and period must be strings")
    if not all(v is None or type(v) is int for v in (partition, first_offset)):
        raise MalformedInputError("a manifest log's partition and first_offset must be ints")
    return BundleLog(
        log_id=log_id,
        origin=origin,
        size=size,
        topic=topic if isinstance(topic, str) else None,
        partition=partition if isinstance(partition, int) else None,
        period=period if isinstance(period, str) else None,
        first_offset=first_offset if isinstance(first_offset, int) else None,
    )


class BundleReader:
    """Reads a bundle directory; every iterator streams its file in bounded memory."""

    __slots__ = ("_path", "exported_at", "format", "ledger_name", "logs", "manifest")

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        manifest = _load_json(self._path / MANIFEST)
        if not isinstance(manifest, dict) or manifest.get("format") not in FORMATS:
            raise MalformedInputError(f"{MANIFEST} is not a manifest of {sorted(FORMATS)}")
        self.format: str = str(manifest["format"])
        #: The manifest as parsed (an archive's fields are read by ``bundle.archive``).
        self.manifest: dict[str, object] = manifest
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
            logs.append(_manifest_log(item, log_id, origin, size))
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
        head_size = ENTRY_HEAD.size
        unpack = ENTRY_HEAD.unpack_from
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
        record = TILE_HEAD.size + TILE_BYTES
        unpack = TILE_HEAD.unpack_from
        with _open_binary(path) as handle:
            while True:
                data = handle.read(record)
                if not data:
                    return
                if len(data) != record:
                    raise MalformedInputError(f"log {log_id} {TILES} ends inside a record")
                level, index = unpack(data, 0)
                yield level, index, data[TILE_HEAD.size :]

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

    def seal(self, log_id: int) -> StoredSeal | None:
        """The log's ``seal.json`` (None when the bundle holds no seal for it)."""
        path = self._log_dir(log_id) / SEAL
        if not path.exists():
            return None
        return StoredSeal.from_json(_load_json(path), f"log {log_id} {SEAL}")

    def iter_index_rows(self, log_id: int) -> Iterator[dict[str, object]]:
        """Index rows (JSON objects, values as written) in file order."""
        path = self._log_dir(log_id) / INDEX
        for _, obj in _iter_json_lines(path):
            yield obj
