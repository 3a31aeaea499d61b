"""Producer authentication, verifying side: is this record from the producer it names?

Invariant: ``ProducerAuthenticator.authenticate`` returns the registered key only when
the record's envelope parses, names a registered key that is not revoked, and its
inclusion path leads from the record's leaf (that key's producer id, the topic, the
exact value bytes) to a batch root that key signed; otherwise it raises ``AuthFailure``
with one of ``AUTH_REASONS``.  Pure: no I/O (the consumer feeds it the key registry;
the offline verifier feeds it the exported one).  One Ed25519 verification per batch
root, cached, so a record costs a few SHA-256s.  The byte format is defined in
docs/producer-auth.md (and, for producers, in ``producers.signing``, which this module
may not import: the RFC 6962 hashing here is ``ledger.merkle``'s).
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, NewType, Protocol

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ledger.errors import LedgerError, VerificationError
from ledger.merkle import root_from_inclusion_proof

ProducerKeyId = NewType("ProducerKeyId", str)

ENVELOPE_HEADER: Final = "philedger-auth"
ENVELOPE_VERSION: Final = 1
LEAF_DOMAIN: Final = b"philedger/producer-leaf/v1\x00"
SIGNED_DOMAIN: Final = b"philedger/producer-batch/v1\x00"
KEY_ID_DOMAIN: Final = b"philedger/producer-key/v1\x00"
MAX_BATCH: Final = 1024

REASON_UNAUTHENTICATED: Final = "unauthenticated"
REASON_BAD_ENVELOPE: Final = "bad_envelope"
REASON_UNKNOWN_KEY: Final = "unknown_key"
REASON_REVOKED_KEY: Final = "revoked_key"
REASON_BAD_SIGNATURE: Final = "bad_signature"
REASON_PRODUCER_MISMATCH: Final = "producer_mismatch"
AUTH_REASONS: Final = frozenset(
    {
        REASON_UNAUTHENTICATED,
        REASON_BAD_ENVELOPE,
        REASON_UNKNOWN_KEY,
        REASON_REVOKED_KEY,
        REASON_BAD_SIGNATURE,
        REASON_PRODUCER_MISMATCH,
    }
)

_HEAD: Final = struct.Struct(">B8sIIB")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")


class AuthFailure(LedgerError):
    """A record is not authenticated as its producer's; ``reason`` is in AUTH_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def key_id_of(public_key: bytes) -> ProducerKeyId:
    return ProducerKeyId(hashlib.sha256(KEY_ID_DOMAIN + public_key).digest()[:8].hex())


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisteredKey:
    """One row of the producer key registry (``producer_keys``)."""

    key_id: ProducerKeyId
    producer_id: str
    public_key: bytes
    created_at: datetime
    revoked_at: datetime | None = None
    revoked_reason: str | None = None


class ProducerKeySource(Protocol):
    """Where a consumer reads the registry from (the appender's database)."""

    async def producer_keys(self) -> Sequence[RegisteredKey]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    key_id: ProducerKeyId
    size: int
    index: int
    path: tuple[bytes, ...]
    signature: bytes


def parse_envelope(raw: bytes) -> Envelope:
    """Decode an envelope (docs/producer-auth.md); raises ``AuthFailure(bad_envelope)``."""
    if len(raw) < _HEAD.size + 64:
        raise AuthFailure(REASON_BAD_ENVELOPE, f"envelope is {len(raw)} bytes; too short")
    version, kid, size, index, k = _HEAD.unpack_from(raw)
    if version != ENVELOPE_VERSION:
        raise AuthFailure(REASON_BAD_ENVELOPE, f"unknown envelope version {version}")
    if len(raw) != _HEAD.size + 32 * k + 64:
        raise AuthFailure(REASON_BAD_ENVELOPE, "envelope length does not match its path")
    if not 0 <= index < size <= MAX_BATCH:
        raise AuthFailure(REASON_BAD_ENVELOPE, f"leaf {index} of a batch of {size}")
    body = raw[_HEAD.size : _HEAD.size + 32 * k]
    return Envelope(
        key_id=ProducerKeyId(kid.hex()),
        size=size,
        index=index,
        path=tuple(body[j : j + 32] for j in range(0, len(body), 32)),
        signature=raw[-64:],
    )


def envelope_key_id(raw: bytes) -> ProducerKeyId | None:
    """The key id an envelope names, without checking anything else (cache refreshes)."""
    if len(raw) < _HEAD.size:
        return None
    return ProducerKeyId(raw[1:9].hex())


def _text16(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _U16.pack(len(raw)) + raw


def record_leaf_hash(producer_id: str, topic: str, value: bytes) -> bytes:
    return hashlib.sha256(
        b"\x00" + LEAF_DOMAIN + _text16(producer_id) + _text16(topic) + value
    ).digest()


def signed_message(producer_id: str, key_id: ProducerKeyId, size: int, root: bytes) -> bytes:
    return SIGNED_DOMAIN + _text16(producer_id) + bytes.fromhex(key_id) + _U32.pack(size) + root


class ProducerAuthenticator:
    """Checks envelopes against a key registry; caches roots it verified (LRU)."""

    def __init__(self, keys: Iterable[RegisteredKey] = (), *, cache_size: int = 4096) -> None:
        self._keys: dict[str, RegisteredKey] = {}
        self._verifiers: dict[str, VerifyKey] = {}
        self._verified: OrderedDict[tuple[str, int, bytes, bytes], None] = OrderedDict()
        self._cache_size = cache_size
        self.replace_keys(keys)

    def replace_keys(self, keys: Iterable[RegisteredKey]) -> None:
        """Take a fresh copy of the registry (revocations apply to every later check)."""
        self._keys = {k.key_id: k for k in keys}
        self._verifiers = {k: VerifyKey(v.public_key) for k, v in self._keys.items()}

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def authenticate(self, *, topic: str, value: bytes, envelope: bytes | None) -> RegisteredKey:
        """The key that signed this record, or ``AuthFailure``."""
        if envelope is None:
            raise AuthFailure(REASON_UNAUTHENTICATED, f"record has no {ENVELOPE_HEADER} header")
        env = parse_envelope(envelope)
        key = self._keys.get(env.key_id)
        if key is None:
            raise AuthFailure(REASON_UNKNOWN_KEY, f"key {env.key_id} is not registered")
        if key.revoked_at is not None:
            raise AuthFailure(
                REASON_REVOKED_KEY,
                f"key {env.key_id} of producer {key.producer_id!r} was revoked at "
                f"{key.revoked_at.isoformat()}",
            )
        leaf = record_leaf_hash(key.producer_id, topic, value)
        try:
            root = root_from_inclusion_proof(
                leaf_hash=leaf, index=env.index, size=env.size, proof=env.path
            )
        except VerificationError as exc:
            raise AuthFailure(REASON_BAD_ENVELOPE, f"inclusion path: {exc}") from exc
        cache_key = (env.key_id, env.size, root, env.signature)
        if cache_key in self._verified:
            self._verified.move_to_end(cache_key)
            return key
        message = signed_message(key.producer_id, env.key_id, env.size, root)
        try:
            self._verifiers[env.key_id].verify(message, env.signature)
        except BadSignatureError as exc:
            raise AuthFailure(
                REASON_BAD_SIGNATURE,
                f"signature of key {env.key_id} ({key.producer_id!r}) does not cover this "
                "record (forged, or the record was changed)",
            ) from exc
        self._verified[cache_key] = None
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)
        return key


def check_producer(key: RegisteredKey, producer_id: str) -> None:
    """The event's own producer id must be the signing key's."""
    if producer_id != key.producer_id:
        raise AuthFailure(
            REASON_PRODUCER_MISMATCH,
            f"event names producer {producer_id!r} but is signed by key {key.key_id} of "
            f"producer {key.producer_id!r}",
        )
