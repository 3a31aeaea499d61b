"""What a report is computed against: a set of signed checkpoints, one per log.

Invariant: pure. ``parse_as_of`` accepts only ``<origin>:<size>`` references, at most
``MAX_AS_OF`` of them and one per origin, and raises ``MalformedInputError`` (code
``bad_checkpoint``) naming the first bad one; ``checkpoint_facts`` reads the root hash and
the signers' key ids out of a stored note without trusting it (the adapter verifies the
signatures). Design: docs/design/reports.md, "Reports as of checkpoints".
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ledger.errors import MalformedInputError
from ledger.log.checkpoint import parse_checkpoint

#: The most checkpoints one request may name (a ledger has one log per topic partition).
MAX_AS_OF: Final = 256
#: The longest origin a reference may name.
MAX_ORIGIN_CHARS: Final = 255
#: The error code of a refused checkpoint reference (the API's 400 ``error.code``).
BAD_CHECKPOINT: Final = "bad_checkpoint"
_SIZE: Final = re.compile(r"0|[1-9][0-9]{0,19}")
_ORIGIN: Final = re.compile(r"[^\s+]+")
_SIG_PREFIX: Final = "\u2014 "


def refused(message: str) -> MalformedInputError:
    """The error of a checkpoint reference the ledger will not compute a report against."""
    return MalformedInputError(message, code=BAD_CHECKPOINT)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckpointRef:
    """A reference to one signed checkpoint: the log's origin and the tree size, and
    optionally the signed note itself (as a report printed it), which lets a copy of the
    ledger that never stored that checkpoint (a replay) check it against its own leaves."""

    origin: str
    size: int
    note: str | None = None

    def __str__(self) -> str:
        return f"{self.origin}:{self.size}"


def parse_checkpoint_ref(text: str) -> CheckpointRef:
    """``<origin>:<size>`` (the origin may itself contain colons; the size is the part
    after the last one)."""
    if not isinstance(text, str):
        raise refused("as_of must be <origin>:<size>")
    origin, sep, size = text.rpartition(":")
    if not sep or not origin or not _SIZE.fullmatch(size):
        raise refused(f"as_of {text[:80]!r} is not <origin>:<size> (size in decimal)")
    if len(origin) > MAX_ORIGIN_CHARS or not _ORIGIN.fullmatch(origin):
        raise refused(f"as_of {text[:80]!r}: the origin is not a log origin")
    value = int(size)
    if value < 1 or value >= 2**63:
        raise refused(f"as_of {text[:80]!r}: the size must be between 1 and 2^63-1")
    return CheckpointRef(origin=origin, size=value)


def parse_as_of(values: Iterable[str]) -> tuple[CheckpointRef, ...]:
    """The references, sorted by origin; none means "the latest of each log"."""
    refs: dict[str, CheckpointRef] = {}
    for i, text in enumerate(values):
        if i >= MAX_AS_OF:
            raise refused(f"at most {MAX_AS_OF} checkpoints may be named")
        ref = parse_checkpoint_ref(text)
        if ref.origin in refs:
            raise refused(f"two checkpoints named for log {ref.origin}")
        refs[ref.origin] = ref
    return tuple(refs[o] for o in sorted(refs))


def parse_as_of_notes(
    values: Iterable[str], named: Iterable[CheckpointRef] = ()
) -> tuple[CheckpointRef, ...]:
    """``named`` plus the checkpoints given as signed notes (each standard base64 of the
    note, as a report's ``as_of_checkpoints[].note`` holds it), sorted by origin."""
    refs = {r.origin: r for r in named}
    for i, text in enumerate(values):
        if len(refs) >= MAX_AS_OF or i >= MAX_AS_OF:
            raise refused(f"at most {MAX_AS_OF} checkpoints may be named")
        if not isinstance(text, str) or len(text) > 8 * 1024:
            raise refused("as_of_note must be the base64 of a signed checkpoint note")
        try:
            note = base64.b64decode(text, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise refused("as_of_note must be the base64 of a signed checkpoint note") from exc
        split = note.rfind("\n\n")
        try:
            cp = parse_checkpoint(note[: split + 1]) if split > 0 else None
        except MalformedInputError as exc:
            raise refused(f"as_of_note is not a signed checkpoint note: {exc}") from exc
        if cp is None:
            raise refused("as_of_note is not a signed checkpoint note (no signature block)")
        ref = parse_checkpoint_ref(f"{cp.origin}:{cp.size}")
        if ref.origin in refs:
            raise refused(f"two checkpoints named for log {ref.origin}")
        refs[ref.origin] = CheckpointRef(origin=ref.origin, size=ref.size, note=note)
    return tuple(refs[o] for o in sorted(refs))


def refs_from_report(body: Mapping[str, object]) -> tuple[CheckpointRef, ...]:
    """The checkpoints a report's JSON names (``as_of_checkpoints``), notes included: what
    re-runs it as of the same checkpoints, on this ledger or on a copy of it."""
    raw = body.get("as_of_checkpoints")
    if not isinstance(raw, list) or not raw or len(raw) > MAX_AS_OF:
        raise refused("the report names no checkpoints (as_of_checkpoints)")
    refs: dict[str, CheckpointRef] = {}
    for item in raw:
        if not isinstance(item, dict):
            raise refused("as_of_checkpoints holds something that is not a checkpoint")
        origin, size, note = item.get("origin"), item.get("size"), item.get("note")
        if not isinstance(size, int) or not isinstance(note, str):
            raise refused("a checkpoint of as_of_checkpoints has no size or note")
        ref = parse_checkpoint_ref(f"{origin}:{size}")
        if ref.origin in refs:
            raise refused(f"two checkpoints named for log {ref.origin}")
        refs[ref.origin] = CheckpointRef(origin=ref.origin, size=ref.size, note=note)
    return tuple(refs[o] for o in sorted(refs))


def checkpoint_facts(note: str) -> tuple[str, tuple[str, ...]]:
    """The root hash (hex) of a signed checkpoint note and the key ids (``name+hash``,
    the hash being the key id's 4 bytes in hex) of its signature lines, in order."""
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedInputError("checkpoint note has no signature block")
    root = parse_checkpoint(note[: split + 1]).root_hash.hex()
    key_ids: list[str] = []
    for line in note[split + 2 :].splitlines():
        if not line.startswith(_SIG_PREFIX):
            raise MalformedInputError("checkpoint note has a malformed signature line")
        name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise MalformedInputError("checkpoint note signature is not base64") from exc
        key_ids.append(f"{name}+{raw[:4].hex()}")
    return root, tuple(key_ids)
