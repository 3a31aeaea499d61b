"""Producer authentication, verifying side: is this record from the producer it names?

Invariant: ``ProducerAuthenticator.authenticate`` returns the registered key only when
the record's envelope parses, names a registered key that is not revoked, and refers to
a seal that key signed (verified here, from this record's envelope, an earlier one, or
the database) whose entry i equals the record's leaf hash (that key's producer id, the
topic, the exact value bytes); otherwise it raises ``AuthFailure`` with one of
``AUTH_REASONS``.  Pure: no I/O (the consumer feeds it the key registry and stored
seals; the offline verifier feeds it the exported ones).  One Ed25519 verification per
seal, cached by seal id, so a record costs one SHA-256 and a compare.  The byte format
is defined in docs/producer-auth.md (and, for producers, in ``producers.signing``,
which this module may not import).
"""

from __future__ import annotations

import hashlib
import struct
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, NamedTuple, NewType, Protocol

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from ledger.errors import LedgerError

ProducerKeyId = NewType("ProducerKeyId", str)

ENVELOPE_HEADER: Final = "philedger-auth"
ENVELOPE_VERSION: Final = 2
LEAF_DOMAIN: Final = b"philedger/producer-leaf/v1\x00"
SEAL_DOMAIN: Final = b"philedger/producer-seal/v2\x00"
SEAL_ID_DOMAIN: Final = b"philedger/producer-seal-id/v2\x00"
KEY_ID_DOMAIN: Final = b"philedger/producer-key/v1\x00"
MAX_BATCH: Final = 1024
SEAL_ID_BYTES: Final = 16

REASON_UNAUTHENTICATED: Final = "unauthenticated"
REASON_BAD_ENVELOPE: Final = "bad_envelope"
REASON_UNKNOWN_KEY: Final = "unknown_key"
REASON_REVOKED_KEY: Final = "revoked_key"
REASON_BAD_SIGNATURE: Final = "bad_signature"
REASON_PRODUCER_MISMATCH: Final = "producer_mismatch"
REASON_UNKNOWN_SEAL: Final = "unknown_seal"
AUTH_REASONS: Final = frozenset(
    {
        REASON_UNAUTHENTICATED,
        REASON_BAD_ENVELOPE,
        REASON_UNKNOWN_KEY,
        REASON_REVOKED_KEY,
        REASON_BAD_SIGNATURE,
        REASON_PRODUCER_MISMATCH,
        REASON_UNKNOWN_SEAL,
    }
)

#: version, key id, seal id, leaf index: every record's reference to its seal.
_REF: Final = struct.Struct(">B8s16sH")
REF_BYTES: Final = _REF.size
_U16: Final = struct.Struct(">H")


class AuthFailure(LedgerError):
    """A record is not authenticated as its producer's; ``reason`` is in AUTH_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        #: The seal this record carried, when that seal itself verified (it is stored
        #: even though this record is refused: the batch's other records refer to it).
        self.seal: Seal | None = None


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


class ProducerSealSource(ProducerKeySource, Protocol):
    """Where a consumer looks up seals it has not seen (the appender's database)."""

    async def producer_seals(self, seal_ids: Sequence[bytes]) -> Sequence[Seal]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Seal:
    """One signed batch: the leaf hashes of m records, in send order, under one signature."""

    seal_id: bytes
    key_id: ProducerKeyId
    producer_id: str
    leaf_hashes: bytes
    signature: bytes


class Authenticated(NamedTuple):
    """A record's verdict: the key that signed it, and where in which seal it is.

    A NamedTuple, not a frozen dataclass: one is made per record on the consumer's hot
    path, and a frozen dataclass costs ~0.5 µs to build, a tenth of the whole check."""

    key: RegisteredKey
    seal_id: bytes
    entry: int
    #: The seal this record's envelope carried (verified), to be stored with the batch.
    seal: Seal | None = None


def _text16(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _U16.pack(len(raw)) + raw


def record_leaf_hash(producer_id: str, topic: str, value: bytes) -> bytes:
    return hashlib.sha256(
        b"\x00" + LEAF_DOMAIN + _text16(producer_id) + _text16(topic) + value
    ).digest()


def seal_id_of(key_id: bytes, leaf_hashes: bytes) -> bytes:
    m = len(leaf_hashes) // 32
    digest = hashlib.sha256(SEAL_ID_DOMAIN + key_id + _U16.pack(m) + leaf_hashes).digest()
    return digest[:SEAL_ID_BYTES]


def seal_message(producer_id: str, key_id: bytes, seal_id: bytes, leaf_hashes: bytes) -> bytes:
    m = len(leaf_hashes) // 32
    return SEAL_DOMAIN + _text16(producer_id) + key_id + seal_id + _U16.pack(m) + leaf_hashes


def envelope_key_id(raw: bytes) -> ProducerKeyId | None:
    """The key id an envelope names, without checking anything else (cache refreshes)."""
    if len(raw) < REF_BYTES:
        return None
    return ProducerKeyId(raw[1:9].hex())


def envelope_ref(raw: bytes | None) -> tuple[bytes, int] | None:
    """(seal id, leaf index) of a well-formed version-2 envelope, else None."""
    if raw is None or len(raw) < REF_BYTES or raw[0] != ENVELOPE_VERSION:
        return None
    _, _, sid, index = _REF.unpack_from(raw)
    return sid, index


class ProducerAuthenticator:
    """Checks envelopes against a key registry; remembers the last ``cache_size`` seals
    it verified (LRU, by seal id)."""

    def __init__(self, keys: Iterable[RegisteredKey] = (), *, cache_size: int = 4096) -> None:
        self._keys: dict[str, RegisteredKey] = {}
        self._live: dict[bytes, RegisteredKey] = {}
        self._verifiers: dict[str, VerifyKey] = {}
        self._seals: OrderedDict[bytes, Seal] = OrderedDict()
        self._cache_size = cache_size
        #: SHA-256 state after the leaf prefix (domain, producer id, topic), per pair.
        self._prefixes: dict[tuple[str, str], Any] = {}
        self.replace_keys(keys)

    def replace_keys(self, keys: Iterable[RegisteredKey]) -> None:
        """Take a fresh copy of the registry (revocations apply to every later check)."""
        self._keys = {k.key_id: k for k in keys}
        #: Unrevoked keys by their raw 8-byte id (the hot path's lookup).
        self._live = {bytes.fromhex(k): v for k, v in self._keys.items() if v.revoked_at is None}
        self._verifiers = {k: VerifyKey(v.public_key) for k, v in self._keys.items()}

    def knows(self, key_id: str) -> bool:
        return key_id in self._keys

    def add_seal(self, seal: Seal) -> Seal:
        """Verify a seal (stored or exported) and remember it; ``AuthFailure`` if it is
        not one the registered key signed."""
        kid = bytes.fromhex(seal.key_id)
        return self._verify_seal(kid, seal.seal_id, seal.leaf_hashes, seal.signature)

    def _verify_seal(self, kid: bytes, sid: bytes, hashes: bytes, signature: bytes) -> Seal:
        known = self._seals.get(sid)
        if known is not None and known.leaf_hashes == hashes and known.signature == signature:
            self._seals.move_to_end(sid)
            return known
        m = len(hashes) // 32
        if not 0 < m <= MAX_BATCH or len(hashes) != 32 * m or len(signature) != 64:
            raise AuthFailure(REASON_BAD_ENVELOPE, f"a seal of {len(hashes)} bytes of hashes")
        if seal_id_of(kid, hashes) != sid:
            raise AuthFailure(REASON_BAD_ENVELOPE, "the seal id is not the seal's hash")
        key_id = kid.hex()
        key = self._keys.get(key_id)
        if key is None:
            raise AuthFailure(REASON_UNKNOWN_KEY, f"key {key_id} is not registered")
        try:
            self._verifiers[key_id].verify(
                seal_message(key.producer_id, kid, sid, hashes), signature
            )
        except BadSignatureError as exc:
            raise AuthFailure(
                REASON_BAD_SIGNATURE,
                f"the seal's signature is not by key {key_id} ({key.producer_id!r}): forged, "
                "or the seal was changed",
            ) from exc
        seal = Seal(
            seal_id=sid,
            key_id=ProducerKeyId(key_id),
            producer_id=key.producer_id,
            leaf_hashes=hashes,
            signature=signature,
        )
        self._seals[sid] = seal
        if len(self._seals) > self._cache_size:
            self._seals.popitem(last=False)
        return seal

    def authenticate_many(
        self, records: Sequence[tuple[str, bytes, bytes | None]]
    ) -> list[Authenticated | AuthFailure]:
        """``authenticate`` of each (topic, value, envelope), in order, as a verdict each."""
        out: list[Authenticated | AuthFailure] = []
        for topic, value, envelope in records:
            try:
                out.append(self.authenticate(topic=topic, value=value, envelope=envelope))
            except AuthFailure as exc:
                out.append(exc)
        return out

    def authenticate(self, *, topic: str, value: bytes, envelope: bytes | None) -> Authenticated:
        """The key that signed this record, or ``AuthFailure``.

        A record whose envelope carries a seal has that seal verified first (once per
        seal id); every record is then one leaf hash compared with its seal's entry.
        """
        if envelope is None:
            raise AuthFailure(REASON_UNAUTHENTICATED, f"record has no {ENVELOPE_HEADER} header")
        if len(envelope) < REF_BYTES:
            raise AuthFailure(REASON_BAD_ENVELOPE, f"envelope is {len(envelope)} bytes; too short")
        version, kid, sid, index = _REF.unpack_from(envelope)
        if version != ENVELOPE_VERSION:
            raise AuthFailure(REASON_BAD_ENVELOPE, f"unknown envelope version {version}")
        key = self._live.get(kid)
        if key is None:
            key = self.check_key(kid.hex())  # raises: unknown or revoked
        carried = None
        if len(envelope) > REF_BYTES:
            rest = envelope[REF_BYTES:]
            if len(rest) < 2 + 64:
                raise AuthFailure(REASON_BAD_ENVELOPE, "the seal is too short")
            (m,) = _U16.unpack_from(rest)
            if len(rest) != 2 + 32 * m + 64:
                raise AuthFailure(REASON_BAD_ENVELOPE, "the seal's length does not match m")
            carried = self._verify_seal(kid, sid, rest[2:-64], rest[-64:])
        prefix = self._prefixes.get((key.producer_id, topic))
        if prefix is None:
            prefix = hashlib.sha256(
                b"\x00" + LEAF_DOMAIN + _text16(key.producer_id) + _text16(topic)
            )
            if len(self._prefixes) > 1024:
                self._prefixes.clear()
            self._prefixes[(key.producer_id, topic)] = prefix
        leaf = prefix.copy()
        leaf.update(value)
        seal = self._seals.get(sid)
        if (
            seal is None
            or seal.key_id != key.key_id
            or seal.leaf_hashes[32 * index : 32 * index + 32] != leaf.digest()
        ):
            try:  # the slow path names the reason
                self.check_entry(key, kid, sid, index, leaf.digest())
            except AuthFailure as exc:
                exc.seal = carried
                raise
        return Authenticated(key, sid, index, carried)

    def seal(self, seal_id: bytes) -> Seal | None:
        """A verified seal, if remembered."""
        return self._seals.get(seal_id)

    def check_key_any(self, key_id: str) -> RegisteredKey:
        """The registered key, revoked or not (the offline check: revocation is not held
        against what was accepted while the key was valid)."""
        key = self._keys.get(key_id)
        if key is None:
            raise AuthFailure(REASON_UNKNOWN_KEY, f"key {key_id} is not registered")
        return key

    def check_key(self, key_id: str) -> RegisteredKey:
        key = self._keys.get(key_id)
        if key is None:
            raise AuthFailure(REASON_UNKNOWN_KEY, f"key {key_id} is not registered")
        if key.revoked_at is not None:
            raise AuthFailure(
                REASON_REVOKED_KEY,
                f"key {key_id} of producer {key.producer_id!r} was revoked at "
                f"{key.revoked_at.isoformat()}",
            )
        return key

    def check_entry(
        self, key: RegisteredKey, kid: bytes, sid: bytes, index: int, leaf: bytes
    ) -> None:
        """The seal ``sid`` (verified, of key ``kid``) holds ``leaf`` at ``index``."""
        seal = self._seals.get(sid)
        if seal is None:
            raise AuthFailure(
                REASON_UNKNOWN_SEAL,
                f"seal {sid.hex()} of key {key.key_id} is unknown (never received, or forged)",
            )
        if seal.key_id != kid.hex():
            raise AuthFailure(REASON_BAD_SIGNATURE, "the seal was signed by another key")
        if not index < len(seal.leaf_hashes) // 32:
            raise AuthFailure(REASON_BAD_ENVELOPE, f"leaf {index} of a seal of fewer leaves")
        if seal.leaf_hashes[32 * index : 32 * index + 32] != leaf:
            raise AuthFailure(
                REASON_BAD_SIGNATURE,
                f"the record is not entry {index} of the seal key {key.key_id} "
                f"({key.producer_id!r}) signed (forged, or the record was changed)",
            )


def check_producer(key: RegisteredKey, producer_id: str) -> None:
    """The event's own producer id must be the signing key's."""
    if producer_id != key.producer_id:
        raise AuthFailure(
            REASON_PRODUCER_MISMATCH,
            f"event names producer {producer_id!r} but is signed by key {key.key_id} of "
            f"producer {key.producer_id!r}",
        )
