"""The seal of a time-sharded log: its final size and root, and the log that follows it.

Invariant: a ``Seal`` names a log's final tree head (``checkpoint``), the origin of the
partition's next log and the Kafka offset that log starts at. ``format_seal`` and
``parse_seal`` are exact inverses; the text's first line (``SEAL_HEADER``) keeps a seal
from ever parsing as a checkpoint, although the log's own key signs both. ``open_seal``
returns a seal only after a trusted signature verified. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ledger.errors import MalformedInputError
from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, format_checkpoint, parse_checkpoint
from ledger.log.note import Signer, Verifier, is_valid_key_name, open_note, sign_note

__all__ = ["SEAL_HEADER", "Seal", "format_seal", "open_seal", "parse_seal", "sign_seal"]

SEAL_HEADER: Final = "phi-ledger.seal/v1"
_DECIMAL: Final = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True, kw_only=True)
class Seal:
    """``checkpoint.origin`` stopped at ``checkpoint.size`` leaves; its partition goes on
    in ``next_origin`` from Kafka offset ``next_first_offset``."""

    checkpoint: Checkpoint
    next_origin: str
    next_first_offset: int

    def __post_init__(self) -> None:
        if self.checkpoint.extensions:
            raise MalformedInputError("a seal's tree head carries no extension lines")
        if not is_valid_key_name(self.next_origin) or self.next_origin == self.checkpoint.origin:
            raise MalformedInputError(f"invalid next origin {self.next_origin!r}")
        offset = self.next_first_offset
        if type(offset) is not int or not 0 <= offset <= merkle.MAX_TREE_SIZE:
            raise MalformedInputError(f"next first offset must be a uint64, got {offset!r}")


def format_seal(seal: Seal) -> str:
    """The seal's note text: header, origin, size, root, next origin, next offset."""
    head = format_checkpoint(seal.checkpoint)
    return f"{SEAL_HEADER}\n{head}{seal.next_origin}\n{seal.next_first_offset}\n"


def parse_seal(text: str) -> Seal:
    """Strictly parse a seal's note text (the part before the signatures)."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise MalformedInputError("seal text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) != 6 or lines[0] != SEAL_HEADER:
        raise MalformedInputError(f"a seal has six lines, the first {SEAL_HEADER!r}")
    checkpoint = parse_checkpoint("".join(line + "\n" for line in lines[1:4]))
    if not _DECIMAL.fullmatch(lines[5]):
        raise MalformedInputError("next first offset must be ASCII decimal")
    return Seal(checkpoint=checkpoint, next_origin=lines[4], next_first_offset=int(lines[5]))


def sign_seal(seal: Seal, signers: Sequence[Signer]) -> str:
    """The seal as a signed note, signed by the log's own keys."""
    return sign_note(format_seal(seal), signers)


def open_seal(note: str, verifiers: Sequence[Verifier]) -> Seal:
    """Verify the note's signature with the trusted ``verifiers``, then parse it."""
    return parse_seal(open_note(note, verifiers).text)
