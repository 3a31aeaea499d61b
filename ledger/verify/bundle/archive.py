"""The archive bundle (``phi-ledger-archive/v1``): one sealed period, every file digested.

Invariant: an archive is an export-layout bundle (``BundleWriter``) whose manifest also
names the period and lists every other file of the directory with its SHA-256, computed
from the bytes on disk after they were closed (streamed, bounded memory); the manifest is
written last, and the SHA-256 of its own bytes (``manifest_digest``) is what stands for
the whole archive. It carries, besides the logs (each with its ``seal.json``), the seals
of the previous period's logs that lead into these logs (``previous-seals.jsonl``) and
the public keys the exporting ledger used (``keys.json``, informational: a verifier trusts
only the keys it brings). Pure file I/O. docs/archive.md.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from ledger.errors import MalformedInputError
from ledger.verify.bundle.files import write_new
from ledger.verify.bundle.layout import ARCHIVE_FORMAT, MANIFEST, StoredSeal
from ledger.verify.bundle.reader import BundleReader
from ledger.verify.bundle.writer import BundleWriter

__all__ = [
    "KEYS",
    "PREVIOUS_SEALS",
    "ArchiveWriter",
    "PreviousSeal",
    "archive_period",
    "file_digests",
    "listed_files",
    "manifest_digest",
    "previous_seals",
]

PREVIOUS_SEALS: Final = "previous-seals.jsonl"
KEYS: Final = "keys.json"
_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PreviousSeal:
    """The seal of a log of the period before: ``origin`` (log ``log_id``) ended at
    ``seal.size`` and its partition went on in ``seal.next_origin``."""

    log_id: int
    origin: str
    seal: StoredSeal


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_digests(root: Path) -> dict[str, str]:
    """Every regular file under ``root`` but the manifest: relative POSIX path -> SHA-256
    hex, sorted by path.  A symlink or other special file is refused."""
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise MalformedInputError(f"{relative} is not a regular file or directory")
        if path.is_file() and relative != MANIFEST:
            out[relative] = sha256_file(path)
    return out


def manifest_digest(root: Path) -> str:
    """SHA-256 hex of ``manifest.json``'s bytes: the archive's one digest."""
    return sha256_file(root / MANIFEST)


class ArchiveWriter(BundleWriter):
    """``with ArchiveWriter(path, ledger_name=..., period=...) as w:`` writes one archive.

    Use it like ``BundleWriter`` (logs with their seals, schemas, producer files), plus
    ``write_previous_seals`` and ``write_keys``; on a clean exit every file is digested
    and the manifest written, after which ``digest`` is the manifest's SHA-256.
    """

    __slots__ = ("_digest", "_period")

    def __init__(
        self,
        path: str | Path,
        *,
        ledger_name: str,
        period: Mapping[str, str],
        exported_at: datetime | None = None,
    ) -> None:
        if set(period) != {"label", "start", "end"}:
            raise MalformedInputError("an archive's period needs label, start and end")
        super().__init__(
            path, ledger_name=ledger_name, exported_at=exported_at, bundle_format=ARCHIVE_FORMAT
        )
        self._period = dict(period)
        self._digest: str | None = None

    def write_previous_seals(self, seals: Iterable[PreviousSeal]) -> None:
        lines = []
        for p in seals:
            s = p.seal
            line = {
                "log_id": p.log_id,
                "origin": p.origin,
                "size": s.size,
                "next_log_id": s.next_log_id,
                "next_origin": s.next_origin,
                "next_first_offset": s.next_first_offset,
                "note": s.note,
            }
            lines.append(json.dumps(line) + "\n")
        write_new(self.path / PREVIOUS_SEALS, "".join(lines))

    def write_keys(self, *, verifier_keys: Sequence[str], witness_keys: Sequence[str]) -> None:
        """The public keys the ledger signed and was cosigned with (for the auditor to
        compare with the keys they keep: never trusted from here)."""
        keys = {"verifier_keys": list(verifier_keys), "witness_keys": list(witness_keys)}
        write_new(self.path / KEYS, json.dumps(keys, indent=1) + "\n")

    def manifest(self) -> dict[str, object]:
        out = super().manifest()
        out["period"] = self._period
        out["files"] = file_digests(self.path)
        return out

    def close(self) -> None:
        super().close()
        self._digest = manifest_digest(self.path)

    @property
    def digest(self) -> str:
        if self._digest is None:
            raise MalformedInputError("the archive is not closed yet")
        return self._digest


def archive_period(reader: BundleReader) -> dict[str, str]:
    """The manifest's ``period`` (label, start, end) of an archive."""
    period = reader.manifest.get("period")
    if (
        not isinstance(period, dict)
        or set(period) != {"label", "start", "end"}
        or not all(isinstance(v, str) for v in period.values())
    ):
        raise MalformedInputError("the archive manifest has no usable period")
    return {str(k): str(v) for k, v in period.items()}


def listed_files(reader: BundleReader) -> dict[str, str]:
    """The manifest's ``files``: relative path -> SHA-256 hex."""
    files = reader.manifest.get("files")
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in files.items()
    ):
        raise MalformedInputError("the archive manifest has no usable files list")
    return {str(k): str(v) for k, v in files.items()}


def previous_seals(reader: BundleReader) -> list[PreviousSeal]:
    """``previous-seals.jsonl`` in file order (a missing file reads as none: the manifest's
    file list decides whether it should be there)."""
    path = reader.path / PREVIOUS_SEALS
    if not path.exists():
        return []
    out: list[PreviousSeal] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        what = f"{PREVIOUS_SEALS} line {number}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise MalformedInputError(f"{what} is not JSON") from exc
        if not isinstance(obj, dict):
            raise MalformedInputError(f"{what} is not a JSON object")
        log_id, origin = obj.get("log_id"), obj.get("origin")
        if type(log_id) is not int or not isinstance(origin, str):
            raise MalformedInputError(f"{what} needs an int log_id and a str origin")
        out.append(PreviousSeal(log_id=log_id, origin=origin, seal=StoredSeal.from_json(obj, what)))
    return out
