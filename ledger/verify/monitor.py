"""`ledger monitor`'s judgement: what one round's answers mean against what it remembers.

Invariant: nothing is believed unless a configured verifier key signed it; a remembered
checkpoint is kept with the compact range of its tree (one hash per set bit of its size)
and replaced only by a larger checkpoint whose root the served leaves reproduce from that
range, so the state only ever moves along one append-only history.  Every problem is one
``MonitorFinding`` with a stable ``kind`` (``MONITOR_KINDS``); the module is pure (the
answers come in as values, "now" is an argument).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ledger.errors import LedgerError, MalformedInputError, VerificationError
from ledger.log.checkpoint import Checkpoint, open_checkpoint
from ledger.log.merkle import EMPTY_ROOT, TreeBuilder, verify_consistency
from ledger.log.note import Verifier

__all__ = [
    "MONITOR_KINDS",
    "MonitorFinding",
    "Remembered",
    "Served",
    "check_consistency",
    "judge_heads",
    "judge_listing",
    "open_heads",
    "open_history",
    "restore",
    "stall",
    "target",
]

#: Every kind of finding, with what it means (docs/monitor.md has the same list).
MONITOR_KINDS = {
    "checkpoint_signature": "a served checkpoint is not signed by a configured verifier key",
    "checkpoint_malformed": "a served checkpoint does not parse",
    "checkpoint_origin": "a served checkpoint names another log than the one it is served for",
    "fork": "a signed checkpoint the remembered or grown tree does not give at its size",
    "rollback": "a checkpoint smaller than the remembered one (truncation or rollback)",
    "log_missing": "a remembered log is no longer listed",
    "consistency_proof_invalid": "the consistency proof from the remembered checkpoint fails",
    "leaves_missing": "leaves a signed checkpoint covers are not served",
    "entries_mismatch": "the served leaves do not reproduce a signed root",
    "split_view": "two endpoints serve views of one log that cannot both be true",
    "tile_mismatch": "a level-0 hash tile of the new leaves is not their leaf hashes",
    "stall": "the checkpoint has not advanced while the API reports unsigned leaves",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorFinding:
    kind: str
    log: str
    detail: str
    endpoint: str | None = None
    checkpoint_size: int | None = None

    @property
    def key(self) -> str:
        """Stable across rounds (no free text): one alert per problem, not per round."""
        text = f"{self.kind}|{self.log}|{self.endpoint or ''}|{self.checkpoint_size}"
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def line(self) -> str:
        where = f" at {self.endpoint}" if self.endpoint else ""
        return f"FINDING {self.kind} log {self.log}{where}: {self.detail}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Remembered:
    """The last verified checkpoint of one log (size 0, no note: nothing verified yet) and
    the stall watch: the checkpoint size first seen with unsigned leaves, and when."""

    origin: str
    note: str = ""
    size: int = 0
    root: bytes = EMPTY_ROOT
    compact: tuple[bytes, ...] = ()
    stalled_size: int | None = None
    stalled_since: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Served:
    """What one endpoint says of one log: its listing and its latest checkpoint note."""

    endpoint: str
    log_id: int
    size: int
    checkpoint_size: int
    unsigned: int
    note: str | None
    #: The archive (SHA-256 hex) holding the log's entries once its month left the
    #: database: its head is still judged, its leaves are verified from the archive.
    archive: str | None = None


def restore(
    *, origin: str, note: str, compact: Sequence[bytes], verifiers: Sequence[Verifier]
) -> Remembered:
    """A remembered checkpoint read back from the state file, re-verified: its signature,
    its origin, and its compact range against its root (raises ``LedgerError``)."""
    cp = open_checkpoint(note, verifiers)
    if cp.origin != origin:
        raise VerificationError(f"the kept checkpoint of {origin!r} names {cp.origin!r}")
    builder = TreeBuilder.from_state(size=cp.size, hashes=compact)
    if builder.root() != cp.root_hash:
        raise VerificationError(f"the kept tree state of {origin!r} does not give its root")
    return Remembered(
        origin=origin, note=note, size=cp.size, root=cp.root_hash, compact=builder.hashes
    )


def open_heads(
    origin: str, views: Iterable[Served], verifiers: Sequence[Verifier]
) -> tuple[dict[str, Checkpoint], list[MonitorFinding]]:
    """Each endpoint's checkpoint of ``origin`` that a configured key signed, by endpoint."""
    heads: dict[str, Checkpoint] = {}
    found: list[MonitorFinding] = []
    for view in views:
        if view.note is None:
            continue
        try:
            cp = open_checkpoint(view.note, verifiers)
        except VerificationError as exc:
            found.append(
                _at(origin, view, "checkpoint_signature", f"its checkpoint is not trusted: {exc}")
            )
            continue
        except MalformedInputError as exc:
            found.append(
                _at(origin, view, "checkpoint_malformed", f"its checkpoint is malformed: {exc}")
            )
            continue
        if cp.origin != origin:
            found.append(
                _at(origin, view, "checkpoint_origin", f"its checkpoint names {cp.origin!r}")
            )
            continue
        heads[view.endpoint] = cp
    return heads, found


def open_history(
    origin: str, endpoint: str, notes: Iterable[str], verifiers: Sequence[Verifier]
) -> tuple[list[Checkpoint], list[MonitorFinding]]:
    """The signed checkpoints of a log's served history (``/v1/logs/{id}/checkpoints``)."""
    cps: list[Checkpoint] = []
    found: list[MonitorFinding] = []
    for note in notes:
        try:
            cp = open_checkpoint(note, verifiers)
        except LedgerError as exc:
            detail = f"a checkpoint in its history is not trusted: {exc}"
            found.append(MonitorFinding(kind="checkpoint_signature", log=origin,
                                        endpoint=endpoint, detail=detail))  # fmt: skip
            continue
        if cp.origin == origin:
            cps.append(cp)
    return cps, found


def _at(origin: str, view: Served, kind: str, detail: str) -> MonitorFinding:
    return MonitorFinding(
        kind=kind, log=origin, endpoint=view.endpoint, detail=detail,
        checkpoint_size=view.checkpoint_size,
    )  # fmt: skip


def judge_heads(mem: Remembered, heads: Mapping[str, Checkpoint]) -> list[MonitorFinding]:
    """Rollback and fork against the remembered checkpoint; split views between endpoints
    serving the same size with different roots."""
    found: list[MonitorFinding] = []
    for endpoint, cp in heads.items():
        if cp.size < mem.size:
            found.append(MonitorFinding(
                kind="rollback", log=mem.origin, endpoint=endpoint, checkpoint_size=cp.size,
                detail=f"serves a signed checkpoint of size {cp.size}, smaller than the "
                f"{mem.size} verified earlier: the log was truncated or rolled back",
            ))  # fmt: skip
        elif cp.size == mem.size and cp.root_hash != mem.root:
            found.append(MonitorFinding(
                kind="fork", log=mem.origin, endpoint=endpoint, checkpoint_size=cp.size,
                detail=f"serves a signed checkpoint of size {cp.size} whose root differs from "
                "the one verified earlier at that size: two histories are signed",
            ))  # fmt: skip
    by_size: dict[int, tuple[str, Checkpoint]] = {}
    for endpoint, cp in heads.items():
        first = by_size.setdefault(cp.size, (endpoint, cp))
        if first[1].root_hash != cp.root_hash:
            found.append(MonitorFinding(
                kind="split_view", log=mem.origin, endpoint=endpoint, checkpoint_size=cp.size,
                detail=f"its signed checkpoint of size {cp.size} has another root than "
                f"{first[0]}'s of the same size",
            ))  # fmt: skip
    return found


def judge_listing(mem: Remembered, views: Iterable[Served]) -> list[MonitorFinding]:
    """An endpoint that serves no signed checkpoint, or reports fewer leaves, for a log of
    which ``mem.size`` leaves were verified: the log was rolled back or truncated."""
    found: list[MonitorFinding] = []
    for view in views if mem.size else ():
        if view.note is None:
            detail = f"serves no signed checkpoint, yet {mem.size} leaves were verified earlier"
        elif view.size < mem.size:
            detail = f"reports {view.size} leaves, fewer than the {mem.size} verified earlier"
        else:
            continue
        found.append(MonitorFinding(
            kind="rollback", log=mem.origin, endpoint=view.endpoint, checkpoint_size=mem.size,
            detail=f"{detail}: the log was truncated or rolled back",
        ))  # fmt: skip
    return found


def target(mem: Remembered, heads: Mapping[str, Checkpoint]) -> tuple[str, Checkpoint] | None:
    """The largest served checkpoint beyond the remembered one (first endpoint on ties)."""
    best: tuple[str, Checkpoint] | None = None
    for endpoint, cp in heads.items():
        if cp.size > mem.size and (best is None or cp.size > best[1].size):
            best = (endpoint, cp)
    return best


def stall(
    mem: Remembered, views: Sequence[Served], *, now: datetime, after: timedelta
) -> tuple[Remembered, MonitorFinding | None]:
    """Watch the checkpoint while the API reports unsigned leaves: a stall once the same
    checkpoint size has been seen with unsigned leaves for ``after`` or longer (never on
    the first sighting: the signer gets one round)."""
    pending = [v for v in views if v.unsigned > 0]
    if not pending:
        return replace(mem, stalled_size=None, stalled_since=None), None
    size = max(v.checkpoint_size for v in views)
    if mem.stalled_size != size or mem.stalled_since is None:
        return replace(mem, stalled_size=size, stalled_since=now), None
    age = now - mem.stalled_since
    if age < after:
        return mem, None
    view = max(pending, key=lambda v: v.unsigned)
    return mem, MonitorFinding(
        kind="stall", log=mem.origin, endpoint=view.endpoint, checkpoint_size=size,
        detail=f"the signed checkpoint has stayed at size {size} for "
        f"{int(age.total_seconds())} s while the API reports {view.unsigned} unsigned "
        "leaves: the checkpointer is stalled or withholding them",
    )  # fmt: skip


def check_consistency(
    mem: Remembered, goal: tuple[str, Checkpoint], proof: Sequence[bytes] | None
) -> MonitorFinding | None:
    """The served consistency proof from the remembered checkpoint to the goal (None: none
    was served), verified against both signed roots."""
    endpoint, cp = goal
    if mem.size == 0:
        return None
    try:
        if proof is None:
            raise VerificationError("no consistency proof was served")
        verify_consistency(
            size1=mem.size, size2=cp.size, proof=proof, root1=mem.root, root2=cp.root_hash
        )
    except LedgerError as exc:
        return MonitorFinding(
            kind="consistency_proof_invalid", log=mem.origin, endpoint=endpoint,
            checkpoint_size=cp.size,
            detail=f"the consistency proof from the verified size {mem.size} to the signed "
            f"size {cp.size} fails ({exc})",
        )  # fmt: skip
    return None
