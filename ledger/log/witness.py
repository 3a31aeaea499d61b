"""The C2SP tlog-witness protocol as data: the add-checkpoint request and what each answer
means, for any transport (``WitnessTransport``).

Invariant: this module is pure.  ``read_answer`` turns a witness's HTTP answer into exactly
one of ``Cosigned`` (only lines that verify with that witness's key over the submitted
checkpoint), ``Conflict`` (409: the size the witness holds for the log) or ``Refused``
(anything else, with a reason for the operator); it never raises on what a witness sends.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol

from ledger.errors import MalformedInputError
from ledger.log.cosignature import (
    Cosignature,
    WitnessKey,
    parse_cosignature_line,
    parse_witness_key,
    split_note,
)
from ledger.log.types import HASH_SIZE

__all__ = [
    "ADD_CHECKPOINT_PATH",
    "Conflict",
    "Cosigned",
    "Refused",
    "Witness",
    "WitnessAnswer",
    "WitnessTransport",
    "add_checkpoint_body",
    "parse_witness",
    "read_answer",
]

ADD_CHECKPOINT_PATH: Final = "/add-checkpoint"
_MAX_REASON: Final = 200


@dataclass(frozen=True, slots=True, kw_only=True)
class Witness:
    """A configured witness: where to submit (``url``, no trailing slash) and its key."""

    url: str
    key: WitnessKey

    @property
    def name(self) -> str:
        return self.key.name


def parse_witness(spec: str) -> Witness:
    """``<url> <cosignature verifier key>`` (one configured witness)."""
    parts = spec.split()
    if len(parts) != 2 or not parts[0].startswith(("http://", "https://")):
        raise MalformedInputError("a witness is '<http(s) URL> <witness verifier key>'")
    return Witness(url=parts[0].rstrip("/"), key=parse_witness_key(parts[1]))


def add_checkpoint_body(old_size: int, proof: Sequence[bytes], note: str) -> bytes:
    """``old <size>``, the consistency proof (one base64 hash a line), a blank line, and the
    signed checkpoint note."""
    if type(old_size) is not int or old_size < 0:
        raise MalformedInputError("old size must be a non-negative int")
    if any(len(h) != HASH_SIZE for h in proof):
        raise MalformedInputError(f"consistency proof hashes must be {HASH_SIZE} bytes")
    lines = [f"old {old_size}", *(base64.b64encode(h).decode("ascii") for h in proof)]
    return ("\n".join(lines) + "\n\n" + note).encode("utf-8")


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessAnswer:
    """What came back over HTTP."""

    status: int
    body: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Cosigned:
    cosignatures: tuple[Cosignature, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Conflict:
    known_size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Refused:
    status: int
    reason: str


class WitnessTransport(Protocol):
    """Posts a body to a URL within ``timeout`` seconds; a transport failure (connect,
    timeout, TLS) is a ``WitnessAnswer`` with status 0 and the error class as body."""

    async def post(self, url: str, body: bytes, *, timeout: float) -> WitnessAnswer: ...


def _reason(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip().replace("\n", " ")
    return "".join(c for c in text[:_MAX_REASON] if c.isprintable())


def read_answer(
    answer: WitnessAnswer, note: str, witness: WitnessKey
) -> Cosigned | Conflict | Refused:
    """Interpret a witness's answer to the submission of ``note``."""
    if answer.status == 409:
        text = answer.body.decode("ascii", "replace").strip()
        if text.isdigit():
            return Conflict(known_size=int(text))
        return Refused(status=409, reason=f"conflict without a size: {_reason(answer.body)}")
    if answer.status != 200:
        return Refused(status=answer.status, reason=_reason(answer.body) or "no answer")
    try:
        text = answer.body.decode("utf-8")
        checkpoint, _ = split_note(note)
        lines = [line + "\n" for line in text.removesuffix("\n").split("\n") if line]
        found = []
        for line in lines:
            cosig = parse_cosignature_line(line)
            if (
                cosig is not None
                and (cosig.name, cosig.key_id) == (witness.name, witness.key_id)
                and witness.verify(checkpoint, cosig.timestamp, cosig.signature)
            ):
                found.append(cosig)
    except (UnicodeDecodeError, MalformedInputError) as exc:
        return Refused(status=200, reason=f"unreadable cosignature: {exc}")
    if not found:
        return Refused(status=200, reason="no valid cosignature by the configured witness key")
    return Cosigned(cosignatures=tuple(found))
