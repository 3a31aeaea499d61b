"""C2SP tlog-checkpoint bodies and C2SP tlog-proof bundles.

Invariant: this module is pure.  A ``Checkpoint`` that exists is well formed (origin, uint64
size, 32-byte root, non-empty extension lines), ``format_checkpoint`` and
``parse_checkpoint`` are exact inverses on well-formed text, and ``open_checkpoint`` /
``verify_tlog_proof`` return a checkpoint only after its note signature (and, for a proof,
the Merkle inclusion) verified.  Malformed input raises ``MalformedInputError``; well-formed
input that fails a check raises ``VerificationError``.  ``open_checkpoint(..., origin=...)``
requires every trusted verifier to be named after that origin.  The formats and the origin
policy: docs/design/checkpoints.md.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from ledger.errors import MalformedInputError, VerificationError
from ledger.log import merkle
from ledger.log.note import MAX_NOTE_SIZE, Signer, Verifier, is_valid_key_name, open_note, sign_note
from ledger.log.types import HASH_SIZE, RootHash

__all__ = [
    "TLOG_PROOF_HEADER",
    "Checkpoint",
    "TlogProof",
    "format_checkpoint",
    "format_tlog_proof",
    "open_checkpoint",
    "parse_checkpoint",
    "parse_tlog_proof",
    "sign_checkpoint",
    "verify_tlog_proof",
]

TLOG_PROOF_HEADER: Final = "c2sp.org/tlog-proof@v1"
_MAX_PROOF_HASHES: Final = 64  # a uint64-sized tree never needs more
_DECIMAL: Final = re.compile(r"0|[1-9][0-9]*")
_CONTROL: Final = re.compile(r"[\x00-\x1f]")


def _b64decode(text: str, what: str) -> bytes:
    """Strict standard base64: padded, alphabet only, and canonical."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error, ValueError) as exc:
        raise MalformedInputError(f"{what} is not valid standard base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        raise MalformedInputError(f"{what} is not canonical standard base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _parse_uint64(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise MalformedInputError(f"{what} must be ASCII decimal without leading zeros")
    value = int(text)
    if value > merkle.MAX_TREE_SIZE:
        raise MalformedInputError(f"{what} does not fit in 64 bits")
    return value


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A transparency-log tree head: ``size`` leaves with MTH ``root_hash``, issued by ``origin``.

    Invariant: ``origin`` is non-empty without spaces, ``+`` or control characters; ``size``
    is a uint64; ``root_hash`` is 32 bytes; every extension line is non-empty and free of
    control characters (so of newlines).
    """

    origin: str
    size: int
    root_hash: RootHash
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not is_valid_key_name(self.origin):
            raise MalformedInputError(f"invalid checkpoint origin {self.origin!r}")
        if type(self.size) is not int or not 0 <= self.size <= merkle.MAX_TREE_SIZE:
            raise MalformedInputError(f"checkpoint size must be a uint64, got {self.size!r}")
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise MalformedInputError(f"checkpoint root hash must be {HASH_SIZE} bytes")
        if not isinstance(self.extensions, tuple):
            raise MalformedInputError("checkpoint extensions must be a tuple of lines")
        for line in self.extensions:
            if not isinstance(line, str) or not line or _CONTROL.search(line):
                raise MalformedInputError(f"invalid checkpoint extension line {line!r}")
            try:
                line.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise MalformedInputError("checkpoint extension line is not UTF-8") from exc


def format_checkpoint(cp: Checkpoint) -> str:
    """The checkpoint note text (every line ends with ``\\n``)."""
    lines = [cp.origin, str(cp.size), _b64encode(cp.root_hash), *cp.extensions]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Strictly parse a checkpoint note text (the part before the signatures)."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise MalformedInputError("checkpoint text must end with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedInputError("checkpoint needs origin, size and root hash lines")
    origin, size_text, root_text, *extensions = lines
    size = _parse_uint64(size_text, "checkpoint size")
    root = _b64decode(root_text, "checkpoint root hash")
    if len(root) != HASH_SIZE:
        raise MalformedInputError(f"checkpoint root hash must be {HASH_SIZE} bytes")
    return Checkpoint(
        origin=origin, size=size, root_hash=RootHash(root), extensions=tuple(extensions)
    )


def sign_checkpoint(cp: Checkpoint, signers: Sequence[Signer]) -> str:
    """The signed checkpoint note (several signers: key rotation or co-signing)."""
    return sign_note(format_checkpoint(cp), signers)


def open_checkpoint(
    note: bytes | str, verifiers: Sequence[Verifier], *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint note and parse its body.

    With ``origin``, every verifier must be named ``origin`` (else ``MalformedInputError``:
    the trust configuration is wrong) and the checkpoint must carry that origin (else
    ``VerificationError``).
    """
    if origin is not None:
        if not verifiers:
            raise MalformedInputError("no verifier given for the checkpoint origin")
        stray = sorted({v.name for v in verifiers if v.name != origin})
        if stray:
            raise MalformedInputError(f"verifiers {stray} are not named after origin {origin!r}")
    opened = open_note(note, verifiers)
    cp = parse_checkpoint(opened.text)
    if origin is not None and cp.origin != origin:
        raise VerificationError(f"checkpoint origin {cp.origin!r} is not {origin!r}")
    return cp


# --------------------------------------------------------------------------------------------
# tlog-proof
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TlogProof:
    """A parsed ``c2sp.org/tlog-proof@v1`` bundle (nothing in it is verified yet).

    Invariant: ``index`` is a uint64, every hash is 32 bytes (at most 64 of them) and
    ``checkpoint_note`` is non-empty.
    """

    index: int
    hashes: tuple[bytes, ...]
    checkpoint_note: str
    extra: bytes | None = None

    def __post_init__(self) -> None:
        if type(self.index) is not int or not 0 <= self.index <= merkle.MAX_TREE_SIZE:
            raise MalformedInputError(f"proof index must be a uint64, got {self.index!r}")
        if not isinstance(self.hashes, tuple) or len(self.hashes) > _MAX_PROOF_HASHES:
            raise MalformedInputError(f"a proof holds a tuple of at most {_MAX_PROOF_HASHES}")
        for h in self.hashes:
            if not isinstance(h, bytes) or len(h) != HASH_SIZE:
                raise MalformedInputError(f"every proof hash must be {HASH_SIZE} bytes")
        if not isinstance(self.checkpoint_note, str) or not self.checkpoint_note:
            raise MalformedInputError("tlog-proof has no checkpoint")
        if self.extra is not None and not isinstance(self.extra, bytes):
            raise MalformedInputError("tlog-proof extra data must be bytes")


def format_tlog_proof(
    index: int, hashes: Sequence[bytes], checkpoint_note: str, extra: bytes | None = None
) -> str:
    """Encode a tlog-proof; ``checkpoint_note`` is the signed note, verbatim."""
    proof = TlogProof(
        index=index, hashes=tuple(hashes), checkpoint_note=checkpoint_note, extra=extra
    )
    out = [TLOG_PROOF_HEADER + "\n"]
    if proof.extra is not None:
        out.append(f"extra {_b64encode(proof.extra)}\n")
    out.append(f"index {proof.index}\n")
    out.extend(_b64encode(h) + "\n" for h in proof.hashes)
    out.append("\n")
    out.append(proof.checkpoint_note)
    return "".join(out)


def parse_tlog_proof(text: bytes | str) -> TlogProof:
    """Strictly parse a tlog-proof (header, optional extra, index, hashes, blank, note)."""
    if isinstance(text, bytes | bytearray | memoryview):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedInputError("tlog-proof is not valid UTF-8") from exc
    if not isinstance(text, str):
        raise MalformedInputError("tlog-proof must be bytes or str")
    if len(text) > MAX_NOTE_SIZE + 16 * 1024:
        raise MalformedInputError("tlog-proof is too large")

    pos = 0

    def next_line() -> str:
        nonlocal pos
        end = text.find("\n", pos)
        if end < 0:
            raise MalformedInputError("tlog-proof is truncated")
        line = text[pos:end]
        pos = end + 1
        return line

    if next_line() != TLOG_PROOF_HEADER:
        raise MalformedInputError(f"tlog-proof must start with {TLOG_PROOF_HEADER}")
    line = next_line()
    extra: bytes | None = None
    if line.startswith("extra "):
        extra = _b64decode(line[len("extra ") :], "tlog-proof extra data")
        line = next_line()
    if not line.startswith("index "):
        raise MalformedInputError("tlog-proof is missing its index line")
    index = _parse_uint64(line[len("index ") :], "tlog-proof index")
    hashes: list[bytes] = []
    while (line := next_line()) != "":
        if len(hashes) == _MAX_PROOF_HASHES:
            raise MalformedInputError("tlog-proof has too many hashes")
        raw = _b64decode(line, "tlog-proof hash")
        if len(raw) != HASH_SIZE:
            raise MalformedInputError(f"tlog-proof hash must be {HASH_SIZE} bytes")
        hashes.append(raw)
    return TlogProof(index=index, hashes=tuple(hashes), checkpoint_note=text[pos:], extra=extra)


def verify_tlog_proof(
    proof_text: bytes | str,
    leaf_bytes: bytes,
    verifiers: Sequence[Verifier],
    *,
    origin: str | None = None,
) -> Checkpoint:
    """Check a tlog-proof for the raw entry ``leaf_bytes``; return the checkpoint it is under.

    Verifies the checkpoint signature (see ``open_checkpoint``) and that
    ``leaf_hash(leaf_bytes)`` is at the proof's index in that checkpoint's tree.
    """
    proof = parse_tlog_proof(proof_text)
    cp = open_checkpoint(proof.checkpoint_note, verifiers, origin=origin)
    merkle.verify_inclusion(
        leaf_hash=merkle.leaf_hash(leaf_bytes),
        index=proof.index,
        size=cp.size,
        proof=proof.hashes,
        root=cp.root_hash,
    )
    return cp
