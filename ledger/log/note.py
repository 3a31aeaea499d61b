"""C2SP signed notes (Go's golang.org/x/mod/sumdb/note), Ed25519 only.

Invariant: this module is pure apart from ``generate_signer``'s use of ``os.urandom``.  A
``Signer`` or ``Verifier`` that exists has a valid key name and a key ID that matches its
public key; ``sign_note`` only emits notes that ``open_note`` (and Go's ``note.Open``) accept;
and ``open_note`` returns a ``Note`` only when at least one trusted key verified the text and
no trusted key's signature failed.  Malformed input raises ``MalformedInputError``; a note
that is well formed but not trustworthy raises ``VerificationError``.

Formats (byte-compatible with Go):

* verifier key ``<name>+<8 hex key ID>+<base64(0x01 || public key)>``;
* signer key ``PRIVATE+KEY+<name>+<8 hex key ID>+<base64(0x01 || seed)>``;
* key ID ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``;
* note ``text`` (ending in ``\\n``), a blank line, then one or more lines
  ``U+2014 U+0020 <name> U+0020 <base64(key ID || signature)> \\n``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import nacl.exceptions
import nacl.signing

from ledger.errors import MalformedInputError, VerificationError
from ledger.log.types import KEY_ID_SIZE, KeyID

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_SIZE",
    "MAX_SIGNATURES",
    "Note",
    "Signature",
    "Signer",
    "Verifier",
    "format_verifier_key",
    "generate_signer",
    "is_valid_key_name",
    "key_id_for",
    "open_note",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
]

ALG_ED25519: Final = 0x01
"""Signature-type byte of Ed25519 note keys."""

MAX_NOTE_SIZE: Final = 1 << 20
"""Default cap on an encoded note (1 MiB); checkpoints are a few hundred bytes."""

MAX_SIGNATURES: Final = 100
"""Go's cap on signature lines in one note."""

_SIG_PREFIX: Final = "\u2014 "  # em dash, space
_ED25519_KEY_SIZE: Final = 32
_ED25519_SIG_SIZE: Final = 64
_HEX8: Final = re.compile(r"[0-9a-fA-F]{8}")
# ASCII control characters other than newline: forbidden anywhere in a note.
_CONTROL: Final = re.compile(r"[\x00-\x09\x0b-\x1f]")
# Go's unicode.IsSpace: Latin-1 spaces plus the Unicode White_Space property above Latin-1.
_GO_SPACES: Final = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009"
    "\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: padded, alphabet only, and canonical (re-encodes identically)."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise MalformedInputError(f"{what} is not valid standard base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedInputError(f"{what} is not canonical standard base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def is_valid_key_name(name: str) -> bool:
    """Go's rule: non-empty, valid UTF-8, no Unicode space and no ``+``.

    Slightly stricter than Go in one harmless way: ASCII control characters are rejected too
    (Go accepts them in a name, but no note containing one can ever be opened).
    """
    if not isinstance(name, str) or not name or "+" in name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return not any(c in _GO_SPACES or c.isspace() or c < " " for c in name)


def key_id_for(name: str, key: bytes) -> KeyID:
    """Key ID of ``key`` (algorithm byte included) under ``name``."""
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + key).digest()
    return KeyID(digest[:KEY_ID_SIZE])


def _ed25519_key_id(name: str, public_key: bytes) -> KeyID:
    return key_id_for(name, bytes([ALG_ED25519]) + public_key)


def _check_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise MalformedInputError(f"invalid key name {name!r}")


def _parse_key_id(hex8: str) -> KeyID:
    if not _HEX8.fullmatch(hex8):
        raise MalformedInputError("key ID must be 8 hexadecimal digits")
    return KeyID(bytes.fromhex(hex8))


def _parse_ed25519_key(b64: str, what: str) -> bytes:
    raw = _b64decode(b64, what)
    if not raw:
        raise MalformedInputError(f"{what} is empty")
    if raw[0] != ALG_ED25519:
        raise MalformedInputError(f"{what} has unknown algorithm byte 0x{raw[0]:02x}")
    if len(raw) != 1 + _ED25519_KEY_SIZE:
        raise MalformedInputError(f"{what} must hold a {_ED25519_KEY_SIZE}-byte Ed25519 key")
    return raw[1:]


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Verifier:
    """An Ed25519 note verifier key.

    Invariant: ``name`` is a valid key name, ``public_key`` is 32 bytes and ``key_id`` is the
    key ID of that public key under that name.
    """

    name: str
    key_id: KeyID
    public_key: bytes

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.public_key, bytes) or len(self.public_key) != _ED25519_KEY_SIZE:
            raise MalformedInputError(f"Ed25519 public key must be {_ED25519_KEY_SIZE} bytes")
        if self.key_id != _ed25519_key_id(self.name, self.public_key):
            raise MalformedInputError(f"key ID does not match the public key of {self.name!r}")

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        """Verifier for a raw 32-byte Ed25519 public key (the key ID is computed)."""
        _check_name(name)
        if not isinstance(public_key, bytes) or len(public_key) != _ED25519_KEY_SIZE:
            raise MalformedInputError(f"Ed25519 public key must be {_ED25519_KEY_SIZE} bytes")
        return cls(name=name, key_id=_ed25519_key_id(name, public_key), public_key=public_key)

    @property
    def key(self) -> str:
        """The verifier-key string ``<name>+<hex key ID>+<base64(0x01 || key)>``."""
        encoded = _b64encode(bytes([ALG_ED25519]) + self.public_key)
        return f"{self.name}+{self.key_id.hex()}+{encoded}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True iff ``signature`` is this key's Ed25519 signature of ``message``."""
        if len(signature) != _ED25519_SIG_SIZE:
            return False
        try:
            nacl.signing.VerifyKey(self.public_key).verify(message, signature)
        except nacl.exceptions.CryptoError:
            return False
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """An Ed25519 note signer key.  Secret: ``seed`` is excluded from ``repr``.

    Invariant: ``name`` is a valid key name, ``seed`` is 32 bytes and ``key_id`` is the key ID
    of the public key derived from ``seed``.
    """

    name: str
    key_id: KeyID
    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.seed, bytes) or len(self.seed) != _ED25519_KEY_SIZE:
            raise MalformedInputError(f"Ed25519 seed must be {_ED25519_KEY_SIZE} bytes")
        if self.key_id != _ed25519_key_id(self.name, self.public_key):
            raise MalformedInputError(f"key ID does not match the key of {self.name!r}")

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        """Signer for a raw 32-byte Ed25519 seed (the key ID is computed)."""
        _check_name(name)
        if not isinstance(seed, bytes) or len(seed) != _ED25519_KEY_SIZE:
            raise MalformedInputError(f"Ed25519 seed must be {_ED25519_KEY_SIZE} bytes")
        public_key = bytes(nacl.signing.SigningKey(seed).verify_key)
        return cls(name=name, key_id=_ed25519_key_id(name, public_key), seed=seed)

    @property
    def public_key(self) -> bytes:
        """The 32-byte Ed25519 public key."""
        return bytes(nacl.signing.SigningKey(self.seed).verify_key)

    @property
    def verifier(self) -> Verifier:
        """The matching verifier."""
        return Verifier(name=self.name, key_id=self.key_id, public_key=self.public_key)

    def signer_key(self) -> str:
        """The secret signer-key string ``PRIVATE+KEY+<name>+<hex key ID>+<base64>``."""
        encoded = _b64encode(bytes([ALG_ED25519]) + self.seed)
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{encoded}"

    def sign(self, message: bytes) -> bytes:
        """Deterministic Ed25519 signature (64 bytes) of ``message``."""
        return bytes(nacl.signing.SigningKey(self.seed).sign(message).signature)


def parse_verifier_key(vkey: str) -> Verifier:
    """Parse ``<name>+<hex key ID>+<base64(0x01 || key)>`` (base64 may itself contain ``+``)."""
    if not isinstance(vkey, str):
        raise MalformedInputError("verifier key must be a string")
    parts = vkey.split("+", 2)
    if len(parts) != 3:
        raise MalformedInputError("verifier key must be <name>+<key ID>+<key>")
    name, hex8, b64 = parts
    _check_name(name)
    key_id = _parse_key_id(hex8)
    public_key = _parse_ed25519_key(b64, "verifier key")
    if key_id != _ed25519_key_id(name, public_key):
        raise MalformedInputError("verifier key ID does not match its key")
    return Verifier(name=name, key_id=key_id, public_key=public_key)


def parse_signer_key(skey: str) -> Signer:
    """Parse ``PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || seed)>``."""
    if not isinstance(skey, str):
        raise MalformedInputError("signer key must be a string")
    parts = skey.split("+", 4)
    if len(parts) != 5 or parts[0] != "PRIVATE" or parts[1] != "KEY":
        raise MalformedInputError("signer key must be PRIVATE+KEY+<name>+<key ID>+<key>")
    _, _, name, hex8, b64 = parts
    _check_name(name)
    key_id = _parse_key_id(hex8)
    seed = _parse_ed25519_key(b64, "signer key")
    public_key = bytes(nacl.signing.SigningKey(seed).verify_key)
    if key_id != _ed25519_key_id(name, public_key):
        raise MalformedInputError("signer key ID does not match its key")
    return Signer(name=name, key_id=key_id, seed=seed)


def format_verifier_key(name: str, public_key: bytes) -> str:
    """Verifier-key string for a raw Ed25519 public key (Go's NewEd25519VerifierKey)."""
    return Verifier.from_public_key(name, public_key).key


def generate_signer(name: str) -> tuple[str, str]:
    """A fresh Ed25519 key pair as ``(signer_key, verifier_key)`` strings.

    The seed comes from ``os.urandom``.  The signer key is a secret.
    """
    signer = Signer.from_seed(name, os.urandom(_ED25519_KEY_SIZE))
    return signer.signer_key(), signer.verifier.key


# --------------------------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    """One signature line of a note: ``— <name> <base64(key ID || signature)>``.

    Invariant: ``base64`` is canonical standard base64 of at least 5 bytes whose first four
    bytes equal ``key_id``.
    """

    name: str
    key_id: KeyID
    base64: str

    def __post_init__(self) -> None:
        _check_name(self.name)
        raw = _b64decode(self.base64, "signature")
        if len(raw) <= KEY_ID_SIZE:
            raise MalformedInputError("signature is too short")
        if raw[:KEY_ID_SIZE] != self.key_id:
            raise MalformedInputError("signature key ID prefix does not match")

    @property
    def signature(self) -> bytes:
        """The raw signature bytes (without the key ID prefix)."""
        return base64.b64decode(self.base64)[KEY_ID_SIZE:]

    @property
    def line(self) -> str:
        """The encoded signature line, including its newline."""
        return f"{_SIG_PREFIX}{self.name} {self.base64}\n"


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """An opened note: its text and its signatures, verified or from unknown keys."""

    text: str
    verified_signatures: tuple[Signature, ...]
    unverified_signatures: tuple[Signature, ...] = ()


def _check_text(text: str) -> None:
    if not isinstance(text, str) or not text.endswith("\n"):
        raise MalformedInputError("note text must be a string ending in a newline")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise MalformedInputError("note text is not valid UTF-8") from exc
    if _CONTROL.search(text):
        raise MalformedInputError("note text contains an ASCII control character")


def sign_note(
    text: str,
    signers: Sequence[Signer],
    *,
    existing: Sequence[Signature] = (),
    max_size: int = MAX_NOTE_SIZE,
) -> str:
    """Sign ``text`` with every signer (e.g. old and new key during a rotation).

    ``existing`` signatures (for example a log's signature being cosigned) are kept first,
    except those by a key that is signing again, as in Go's ``note.Sign``.
    """
    _check_text(text)
    if not signers:
        raise MalformedInputError("sign_note needs at least one signer")
    new_keys = {(s.name, s.key_id) for s in signers}
    if len(new_keys) != len(signers):
        raise MalformedInputError("the same key is given twice")
    message = text.encode("utf-8")
    lines = [sig.line for sig in existing if (sig.name, sig.key_id) not in new_keys]
    for signer in signers:
        encoded = _b64encode(signer.key_id + signer.sign(message))
        lines.append(f"{_SIG_PREFIX}{signer.name} {encoded}\n")
    note = text + "\n" + "".join(lines)
    if len(lines) > MAX_SIGNATURES or len(note.encode("utf-8")) > max_size:
        raise MalformedInputError("signed note would exceed the size or signature limits")
    return note


def _parse_signature_line(line: str) -> Signature:
    if not line.startswith(_SIG_PREFIX):
        raise MalformedInputError("note signature line does not start with an em dash")
    name, _, b64 = line[len(_SIG_PREFIX) :].partition(" ")
    if not b64:
        raise MalformedInputError("note signature line has no signature")
    raw = _b64decode(b64, "note signature")
    if not is_valid_key_name(name) or len(raw) <= KEY_ID_SIZE:
        raise MalformedInputError("malformed note signature line")
    return Signature(name=name, key_id=KeyID(raw[:KEY_ID_SIZE]), base64=b64)


def open_note(
    note: bytes | str, verifiers: Sequence[Verifier], *, max_size: int = MAX_NOTE_SIZE
) -> Note:
    """Parse ``note`` and check its signatures against the trusted ``verifiers``.

    Signatures by unknown keys are kept in ``unverified_signatures`` and otherwise ignored.
    Raises ``MalformedInputError`` for a malformed note (bad UTF-8, control characters, no
    signature block, bad signature line, more than ``MAX_SIGNATURES`` lines, over
    ``max_size`` bytes) and ``VerificationError`` if a trusted key's signature is invalid, if
    the trusted keys are ambiguous, or if no trusted key signed the note.
    """
    if isinstance(note, str):
        try:
            data = note.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise MalformedInputError("note is not valid UTF-8") from exc
    elif isinstance(note, bytes | bytearray | memoryview):
        data = bytes(note)
    else:
        raise MalformedInputError("note must be bytes or str")
    if len(data) > max_size:
        raise MalformedInputError(f"note is larger than {max_size} bytes")
    try:
        decoded = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedInputError("note is not valid UTF-8") from exc
    if _CONTROL.search(decoded):
        raise MalformedInputError("note contains an ASCII control character")

    split = decoded.rfind("\n\n")
    if split < 0:
        raise MalformedInputError("note has no signature block")
    text, block = decoded[: split + 1], decoded[split + 2 :]
    if not block.endswith("\n"):
        raise MalformedInputError("note signature block must end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedInputError(f"note has more than {MAX_SIGNATURES} signatures")
    signatures = [_parse_signature_line(line) for line in lines]

    known: dict[tuple[str, bytes], list[Verifier]] = {}
    for v in verifiers:
        if not isinstance(v, Verifier):
            raise MalformedInputError("verifiers must be Verifier instances")
        same = known.setdefault((v.name, v.key_id), [])
        if v not in same:
            same.append(v)

    message = text.encode("utf-8")
    verified: list[Signature] = []
    verified_keys: set[tuple[str, bytes]] = set()
    unverified: list[Signature] = []
    for sig in signatures:
        key = (sig.name, sig.key_id)
        candidates = known.get(key)
        if candidates is None:
            if sig not in unverified:
                unverified.append(sig)
            continue
        if len(candidates) > 1:
            raise VerificationError(f"ambiguous key {sig.name}+{sig.key_id.hex()}")
        # Every signature by a trusted key is checked, repeated ones included.
        if not candidates[0].verify(message, sig.signature):
            raise VerificationError(f"invalid signature for key {sig.name}+{sig.key_id.hex()}")
        if key not in verified_keys:
            verified_keys.add(key)
            verified.append(sig)
    if not verified:
        raise VerificationError("note has no signature from a trusted key")
    return Note(
        text=text, verified_signatures=tuple(verified), unverified_signatures=tuple(unverified)
    )
