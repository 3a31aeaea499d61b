"""`ledger monitor`'s memory: the last verified checkpoint of every log, in one file.

Invariant: the file is replaced atomically (written beside it, fsynced, renamed), readable
by its owner only (0600), and every checkpoint in it is re-verified when it is read (its
signature by a configured key and its compact range against its root): a file that fails
is refused, never half-trusted.  It holds checkpoints and tree hashes only, no PHI.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.errors import LedgerError, MalformedInputError
from ledger.log.note import Verifier
from ledger.verify.monitor import Remembered, restore

VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorState:
    logs: Mapping[str, Remembered] = field(default_factory=dict)
    #: Keys of the findings already alerted (an alert per problem, not per round).
    alerted: frozenset[str] = frozenset()


def load_state(path: Path, verifiers: Sequence[Verifier]) -> MonitorState:
    """The state kept at ``path`` (an empty one when there is no file yet)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return MonitorState()
    try:
        doc = json.loads(text)
        if doc.get("version") != VERSION:
            raise MalformedInputError(f"unknown state version {doc.get('version')!r}")
        logs = {origin: _log(origin, entry, verifiers) for origin, entry in doc["logs"].items()}
        return MonitorState(logs=logs, alerted=frozenset(map(str, doc.get("alerted", []))))
    except (ValueError, KeyError, TypeError, AttributeError, LedgerError) as exc:
        raise MalformedInputError(f"the monitor state {path} is unusable: {exc}") from exc


def _log(origin: str, entry: Mapping[str, Any], verifiers: Sequence[Verifier]) -> Remembered:
    note = str(entry.get("note") or "")
    mem = (
        restore(
            origin=origin,
            note=note,
            compact=[base64.b64decode(h, validate=True) for h in entry["compact"]],
            verifiers=verifiers,
        )
        if note
        else Remembered(origin=origin)
    )
    since = entry.get("stalled_since")
    return Remembered(
        origin=mem.origin, note=mem.note, size=mem.size, root=mem.root, compact=mem.compact,
        stalled_size=None if entry.get("stalled_size") is None else int(entry["stalled_size"]),
        stalled_since=None if since is None else datetime.fromisoformat(since),
    )  # fmt: skip


def dump_state(state: MonitorState) -> str:
    logs = {
        origin: {
            "note": m.note,
            "size": m.size,
            "compact": [base64.b64encode(h).decode() for h in m.compact],
            "stalled_size": m.stalled_size,
            "stalled_since": None if m.stalled_since is None else m.stalled_since.isoformat(),
        }
        for origin, m in sorted(state.logs.items())
    }
    doc = {"version": VERSION, "logs": logs, "alerted": sorted(state.alerted)}
    return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def save_state(path: Path, state: MonitorState) -> None:
    """Replace ``path`` atomically with ``state``, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(dump_state(state))
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
