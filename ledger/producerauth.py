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

    def authenticate_many(
        self, records: Sequence[tuple[str, bytes, bytes | None]]
    ) -> list[RegisteredKey | AuthFailure]:
        """``authenticate`` of each (topic, value, envelope), as a verdict per record.

        Where every record of a signed batch is present (a consumer's poll usually holds
        whole batches), the batch root is rebuilt once from all its leaves (one SHA-256
        per record instead of one per path step) and each record's path is compared with
        the rebuilt tree's; anything else goes through ``authenticate`` one by one.
        """
        verdicts: list[RegisteredKey | AuthFailure | None] = [None] * len(records)
        batches: dict[bytes, list[int]] = {}
        for j, (_, _, envelope) in enumerate(records):
            if envelope is not None and len(envelope) >= _HEAD.size + 64:
                batches.setdefault(envelope[-64:] + envelope[:13], []).append(j)
        for members in batches.values():
            key = self._whole_batch(records, members)
            if key is not None:
                for j in members:
                    verdicts[j] = key
        out: list[RegisteredKey | AuthFailure] = []
        for j, verdict in enumerate(verdicts):
            if verdict is None:
                topic, value, envelope = records[j]
                try:
                    verdict = self.authenticate(topic=topic, value=value, envelope=envelope)
                except AuthFailure as exc:
                    verdict = exc
            out.append(verdict)
        return out

    def _whole_batch(
        self, records: Sequence[tuple[str, bytes, bytes | None]], members: list[int]
    ) -> RegisteredKey | None:
        """The signing key if ``members`` are exactly one whole, valid batch; else None."""
        batch: list[tuple[str, bytes, bytes] | None] = [None] * len(members)
        version, kid, size, _, _ = 0, b"", 0, 0, 0
        for j in members:
            topic, value, envelope = records[j]
            if envelope is None:
                return None
            version, kid, size, index, _ = _HEAD.unpack_from(envelope)
            if size != len(members) or index >= size or batch[index] is not None:
                return None
            batch[index] = (topic, value, envelope)
        whole = [b for b in batch if b is not None]
        key = self._keys.get(kid.hex())
        if version != ENVELOPE_VERSION or key is None or key.revoked_at is not None:
            return None
        if len(whole) != size or size > MAX_BATCH:
            return None
        pid = _text16(key.producer_id)
        sha = hashlib.sha256
        level = [sha(b"\x00" + LEAF_DOMAIN + pid + _text16(t) + v).digest() for t, v, _ in whole]
        levels = [level]
        while len(level) > 1:
            pairs = range(0, len(level) - 1, 2)
            nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in pairs]
            if len(level) % 2:
                nxt.append(level[-1])
            levels.append(nxt)
            level = nxt
        signature = whole[0][2][-64:]
        cache_key = (key.key_id, size, level[0], signature)
        if cache_key not in self._verified:
            try:
                self._verifiers[key.key_id].verify(
                    signed_message(key.producer_id, key.key_id, size, level[0]), signature
                )
            except BadSignatureError:
                return None  # one by one: each record gets its own verdict
            self._remember(cache_key)
        below = levels[:-1]
        for index, (_, _, envelope) in enumerate(whole):
            path = b"".join(
                lv[(index >> h) ^ 1] for h, lv in enumerate(below) if (index >> h) ^ 1 < len(lv)
            )
            if envelope[_HEAD.size - 1] * 32 != len(path) or envelope[_HEAD.size : -64] != path:
                return None
        return key

    def _remember(self, cache_key: tuple[str, int, bytes, bytes]) -> None:
        self._verified[cache_key] = None
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)

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
        self._remember(cache_key)
        return key


def check_producer(key: RegisteredKey, producer_id: str) -> None:
    """The event's own producer id must be the signing key's."""
    if producer_id != key.producer_id:
        raise AuthFailure(
            REASON_PRODUCER_MISMATCH,
            f"event names producer {producer_id!r} but is signed by key {key.key_id} of "
            f"producer {key.producer_id!r}",
        )
