"""C2SP tlog-cosignature (timestamped Ed25519 witness cosignatures) and a k-of-n policy.

Invariant: this module is pure.  A ``WitnessKey`` that exists has a valid name and the key
ID ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``; ``check_cosignatures`` counts a
witness only when its line verifies over ``cosignature/v1\\ntime <t>\\n<checkpoint>`` with
that witness's key, reports every line that names a policy key and does not verify, and
never counts a key the policy does not name.  Malformed input raises
``MalformedInputError``.  Format and policy: docs/design/witnesses.md.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import nacl.exceptions
import nacl.signing

from ledger.errors import MalformedInputError
from ledger.log.checkpoint import format_checkpoint, parse_checkpoint
from ledger.log.note import is_valid_key_name, key_id_for
from ledger.log.types import KEY_ID_SIZE, KeyID

__all__ = [
    "ALG_COSIGNATURE_V1",
    "Cosignature",
    "CosignatureCheck",
    "WitnessKey",
    "WitnessPolicy",
    "append_cosignatures",
    "check_cosignatures",
    "cosignature_message",
    "parse_cosignature_line",
    "parse_witness_key",
    "sign_cosignature",
    "split_note",
]

ALG_COSIGNATURE_V1: Final = 0x04
"""Signature-type byte of C2SP tlog-cosignature/v1 (Ed25519, timestamped) keys."""

_SIG_PREFIX: Final = "\u2014 "
_KEY_SIZE: Final = 32
_SIG_SIZE: Final = 64
_RAW_SIZE: Final = KEY_ID_SIZE + 8 + _SIG_SIZE


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, ValueError) as exc:
        raise MalformedInputError(f"{what} is not valid standard base64") from exc
    if _b64(raw) != text:
        raise MalformedInputError(f"{what} is not canonical standard base64")
    return raw


def _witness_key_id(name: str, public_key: bytes) -> KeyID:
    return key_id_for(name, bytes([ALG_COSIGNATURE_V1]) + public_key)


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessKey:
    """A witness's cosignature verifier key ``<name>+<hex key ID>+<base64(0x04 || key)>``."""

    name: str
    key_id: KeyID
    public_key: bytes

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.name):
            raise MalformedInputError(f"invalid witness name {self.name!r}")
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _KEY_SIZE:
            raise MalformedInputError(f"a witness key must be a {_KEY_SIZE}-byte Ed25519 key")
        if self.key_id != _witness_key_id(self.name, self.public_key):
            raise MalformedInputError(f"key ID does not match the witness key of {self.name!r}")

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> WitnessKey:
        if not is_valid_key_name(name):
            raise MalformedInputError(f"invalid witness name {name!r}")
        return cls(name=name, key_id=_witness_key_id(name, public_key), public_key=public_key)

    @property
    def key(self) -> str:
        encoded = _b64(bytes([ALG_COSIGNATURE_V1]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, text: str, timestamp: int, signature: bytes) -> bool:
        """True iff ``signature`` is this witness's cosignature of checkpoint ``text`` at
        ``timestamp`` (False also when ``text`` is not a canonical checkpoint)."""
        try:
            message = cosignature_message(text, timestamp)
            nacl.signing.VerifyKey(self.public_key).verify(message, signature)
        except (MalformedInputError, nacl.exceptions.CryptoError, ValueError):
            return False
        return True


def parse_witness_key(vkey: str) -> WitnessKey:
    """Parse a cosignature/v1 verifier key (the base64 part may itself contain ``+``)."""
    if not isinstance(vkey, str):
        raise MalformedInputError("witness key must be a string")
    parts = vkey.strip().split("+", 2)
    if len(parts) != 3 or len(parts[1]) != 8:
        raise MalformedInputError("witness key must be <name>+<8 hex key ID>+<key>")
    name, hex8, b64 = parts
    try:
        key_id = KeyID(bytes.fromhex(hex8))
    except ValueError as exc:
        raise MalformedInputError("witness key ID must be 8 hexadecimal digits") from exc
    raw = _unb64(b64, "witness key")
    if len(raw) != 1 + _KEY_SIZE or raw[0] != ALG_COSIGNATURE_V1:
        raise MalformedInputError(
            "witness key must be 0x04 (cosignature/v1) followed by a 32-byte Ed25519 key"
        )
    return WitnessKey(name=name, key_id=key_id, public_key=raw[1:])


def cosignature_message(text: str, timestamp: int) -> bytes:
    """The signed message: ``cosignature/v1\\ntime <t>\\n`` and the checkpoint text, which
    must be a canonical checkpoint body (as torchwood requires)."""
    if type(timestamp) is not int or not 0 <= timestamp < 1 << 63:
        raise MalformedInputError("cosignature timestamp must be a non-negative int64")
    if format_checkpoint(parse_checkpoint(text)) != text:
        raise MalformedInputError("cosigned text is not a canonical checkpoint")
    return f"cosignature/v1\ntime {timestamp}\n{text}".encode()


@dataclass(frozen=True, slots=True, kw_only=True)
class Cosignature:
    """One parsed cosignature line (nothing verified yet)."""

    name: str
    key_id: KeyID
    timestamp: int
    signature: bytes

    @property
    def line(self) -> str:
        raw = self.key_id + struct.pack(">Q", self.timestamp) + self.signature
        return f"{_SIG_PREFIX}{self.name} {_b64(raw)}\n"


def parse_cosignature_line(line: str) -> Cosignature | None:
    """A signature line as a cosignature; None when it cannot be one (wrong length: a log's
    own signature, or another algorithm).  Raises ``MalformedInputError`` for a line that
    is not a signature line at all."""
    text = line.removesuffix("\n")
    if not text.startswith(_SIG_PREFIX):
        raise MalformedInputError("signature line does not start with an em dash")
    name, _, b64 = text[len(_SIG_PREFIX) :].partition(" ")
    if not is_valid_key_name(name) or not b64:
        raise MalformedInputError("malformed signature line")
    raw = _unb64(b64, "signature")
    if len(raw) != _RAW_SIZE:
        return None
    (timestamp,) = struct.unpack(">Q", raw[KEY_ID_SIZE : KEY_ID_SIZE + 8])
    if timestamp >= 1 << 63:
        return None
    return Cosignature(
        name=name, key_id=KeyID(raw[:KEY_ID_SIZE]), timestamp=timestamp, signature=raw[12:]
    )


def split_note(note: str) -> tuple[str, list[str]]:
    """A signed note's text and its signature lines (each with its newline)."""
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise MalformedInputError("note has no signature block")
    return note[: split + 1], [line + "\n" for line in note[split + 2 : -1].split("\n")]


def append_cosignatures(note: str, lines: Sequence[str]) -> str:
    """``note`` with the cosignature ``lines`` appended (those it already has are skipped)."""
    _, present = split_note(note)
    extra = [line if line.endswith("\n") else line + "\n" for line in lines]
    return note + "".join(line for line in dict.fromkeys(extra) if line not in present)


def sign_cosignature(text: str, *, name: str, seed: bytes, timestamp: int) -> str:
    """The cosignature line a witness with Ed25519 ``seed`` would return (tests, tools)."""
    key = nacl.signing.SigningKey(seed)
    witness = WitnessKey.from_public_key(name, bytes(key.verify_key))
    signature = key.sign(cosignature_message(text, timestamp)).signature
    return Cosignature(
        name=name, key_id=witness.key_id, timestamp=timestamp, signature=bytes(signature)
    ).line


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessPolicy:
    """At least ``threshold`` of the named ``witnesses`` must cosign (k of n)."""

    witnesses: tuple[WitnessKey, ...]
    threshold: int

    def __post_init__(self) -> None:
        names = {w.name for w in self.witnesses}
        if type(self.threshold) is not int or not 1 <= self.threshold <= len(names):
            raise MalformedInputError(
                f"witness threshold must be between 1 and the {len(names)} witnesses named"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class CosignatureCheck:
    """What a checkpoint's cosignatures show under a policy."""

    witnessed_by: tuple[str, ...]  # witness names with a valid cosignature
    invalid: tuple[str, ...]  # lines naming a policy key whose cosignature does not verify
    unknown: int  # cosignature-shaped lines by keys the policy does not name
    threshold: int

    @property
    def satisfied(self) -> bool:
        return len(self.witnessed_by) >= self.threshold


def check_cosignatures(note: str, policy: WitnessPolicy) -> CosignatureCheck:
    """Count the witnesses of ``policy`` whose cosignature on ``note``'s checkpoint verifies."""
    text, lines = split_note(note)
    keys = {(w.name, w.key_id): w for w in policy.witnesses}
    witnessed: dict[str, None] = {}
    invalid: list[str] = []
    unknown = 0
    for line in lines:
        cosig = parse_cosignature_line(line)
        if cosig is None:
            continue
        key = keys.get((cosig.name, cosig.key_id))
        if key is None:
            unknown += 1
        elif key.verify(text, cosig.timestamp, cosig.signature):
            witnessed.setdefault(key.name, None)
        else:
            invalid.append(f"{cosig.name}+{cosig.key_id.hex()}")
    return CosignatureCheck(
        witnessed_by=tuple(witnessed),
        invalid=tuple(invalid),
        unknown=unknown,
        threshold=policy.threshold,
    )
