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

from ledger.errors import LedgerError

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
    """Checks envelopes against a key registry; remembers the trees of the last
    ``cache_size`` batches it verified (LRU)."""

    def __init__(self, keys: Iterable[RegisteredKey] = (), *, cache_size: int = 64) -> None:
        self._keys: dict[str, RegisteredKey] = {}
        self._verifiers: dict[str, VerifyKey] = {}
        #: Verified batches: (key id, size, signature) -> {(level, position): node hash}.
        self._batches: OrderedDict[tuple[str, int, bytes], dict[tuple[int, int], bytes]] = (
            OrderedDict()
        )
        self._cache_size = cache_size
        self.replace_keys(keys)

    def replace_keys(self, keys: Iterable[RegisteredKey]) -> None:
        """Take a fresh copy of the registry (revocations apply to every later check)."""
        self._keys = {k.key_id: k for k in keys}
        self._verifiers = {k: VerifyKey(v.public_key) for k, v in self._keys.items()}

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def authenticate_many(
        self, records: Sequence[tuple[str, bytes, bytes | None]]
    ) -> list[RegisteredKey | AuthFailure]:
        """``authenticate`` of each (topic, value, envelope), as a verdict per record."""
        out: list[RegisteredKey | AuthFailure] = []
        for topic, value, envelope in records:
            try:
                out.append(self.authenticate(topic=topic, value=value, envelope=envelope))
            except AuthFailure as exc:
                out.append(exc)
        return out

    def authenticate(self, *, topic: str, value: bytes, envelope: bytes | None) -> RegisteredKey:
        """The key that signed this record, or ``AuthFailure``.

        Walks the record's inclusion path up from its leaf. Every node of a batch whose
        root was verified is remembered (the path's siblings too), so the next record of
        that batch usually stops one level up: a record costs its leaf hash and a lookup;
        a batch costs one signature verification.
        """
        if envelope is None:
            raise AuthFailure(REASON_UNAUTHENTICATED, f"record has no {ENVELOPE_HEADER} header")
        if len(envelope) < _HEAD.size + 64:
            parse_envelope(envelope)  # raises with the reason
        version, kid_raw, size, index, k = _HEAD.unpack_from(envelope)
        end = len(envelope) - 64
        if version != ENVELOPE_VERSION or end != _HEAD.size + 32 * k or not index < size:
            parse_envelope(envelope)
        if size > MAX_BATCH:
            parse_envelope(envelope)
        kid = kid_raw.hex()
        key = self._keys.get(kid)
        if key is None:
            raise AuthFailure(REASON_UNKNOWN_KEY, f"key {kid} is not registered")
        if key.revoked_at is not None:
            raise AuthFailure(
                REASON_REVOKED_KEY,
                f"key {kid} of producer {key.producer_id!r} was revoked at "
                f"{key.revoked_at.isoformat()}",
            )
        signature = envelope[end:]
        batch = (kid, size, signature)
        known = self._batches.get(batch)
        node = record_leaf_hash(key.producer_id, topic, value)
        seen: list[tuple[tuple[int, int], bytes]] = []
        pos, width, level, p = index, size, 0, _HEAD.size
        while width > 1:
            if known is not None and known.get((level, pos)) == node:
                # In a verified tree: the rest of the path must be that tree's own nodes
                # (so the stored envelope checks offline too).
                rest = _siblings(known, level, pos, width)
                if rest is not None:
                    if envelope[p:end] != rest:
                        raise AuthFailure(
                            REASON_BAD_SIGNATURE,
                            f"the inclusion path is not that of the batch key {kid} signed",
                        )
                    self._batches.move_to_end(batch)
                    self._learn(batch, seen)
                    return key
            seen.append(((level, pos), node))
            if pos ^ 1 < width:
                if p >= end:
                    raise AuthFailure(REASON_BAD_ENVELOPE, "inclusion path too short")
                sibling = envelope[p : p + 32]
                p += 32
                seen.append(((level, pos ^ 1), sibling))
                pair = sibling + node if pos & 1 else node + sibling
                node = hashlib.sha256(b"\x01" + pair).digest()
            pos, width, level = pos >> 1, (width + 1) >> 1, level + 1
        if p != end:
            raise AuthFailure(REASON_BAD_ENVELOPE, "inclusion path too long")
        if known is None:
            message = signed_message(key.producer_id, key.key_id, size, node)
            try:
                self._verifiers[kid].verify(message, signature)
            except BadSignatureError as exc:
                raise AuthFailure(
                    REASON_BAD_SIGNATURE,
                    f"signature of key {kid} ({key.producer_id!r}) does not cover this "
                    "record (forged, or the record was changed)",
                ) from exc
            known = self._batches[batch] = {}
            if len(self._batches) > self._cache_size:
                self._batches.popitem(last=False)
        elif known.get((level, 0)) != node:
            raise AuthFailure(
                REASON_BAD_SIGNATURE,
                f"the record is not in the batch key {kid} ({key.producer_id!r}) signed "
                "(forged, or the record was changed)",
            )
        seen.append(((level, 0), node))
        self._learn(batch, seen)
        return key

    def _learn(
        self, batch: tuple[str, int, bytes], seen: list[tuple[tuple[int, int], bytes]]
    ) -> None:
        """Remember nodes now proven to belong to a verified batch's tree."""
        known = self._batches.get(batch)
        if known is not None:
            known.update(seen)


def _siblings(
    known: dict[tuple[int, int], bytes], level: int, pos: int, width: int
) -> bytes | None:
    """The inclusion path from (level, pos) up, from a verified tree's known nodes;
    memoised in the same dict under (-1 - level, pos)."""
    memo = known.get((-1 - level, pos))
    if memo is not None:
        return memo
    if width <= 1:
        return b""
    above = _siblings(known, level + 1, pos >> 1, (width + 1) >> 1)
    if above is None:
        return None
    if pos ^ 1 < width:
        sibling = known.get((level, pos ^ 1))
        if sibling is None:
            return None
        above = sibling + above
    known[(-1 - level, pos)] = above
    return above


def check_producer(key: RegisteredKey, producer_id: str) -> None:
    """The event's own producer id must be the signing key's."""
    if producer_id != key.producer_id:
        raise AuthFailure(
            REASON_PRODUCER_MISMATCH,
            f"event names producer {producer_id!r} but is signed by key {key.key_id} of "
            f"producer {key.producer_id!r}",
        )
