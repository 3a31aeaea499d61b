"""Producer authentication, signing side: per-producer Ed25519 keys over sealed batches.

Invariant: every record a ``ProducerKey`` signs carries a reference (key id, seal id,
index i) to a seal: the list of leaf hashes of the batch it was sent in, signed once
with Ed25519 over (producer id, key id, seal id, m, leaf hashes); the batch's first
record carries the seal itself. A leaf binds the producer id, the Kafka topic and the
exact value bytes, so no value, topic or producer can be changed, and no record moved
to another batch or producer, without the check failing. The record value itself is
never changed, so a re-send of the same event under another envelope is still a
byte-identical duplicate. Pure (hashing, encoding) apart from the key-file helpers;
the verifier side lives in ``ledger.audit.producerauth`` (``producers`` may not import
``ledger``; docs/producer-auth.md).

Envelope, version 2 (the ``philedger-auth`` Kafka header; integers big-endian)::

    u8   version = 0x02
    8    key id  = SHA-256("philedger/producer-key/v1" || 0x00 || public key)[:8]
    16   seal id = SHA-256(SEAL_ID_DOMAIN || key id || u16 m || leaf hashes)[:16]
    u16  leaf index i (< m)
    and on the record that carries the seal (the batch's first), then:
    u16  m (1..MAX_BATCH), m * 32 bytes of leaf hashes, in send order
    64   Ed25519 signature over SEAL_DOMAIN || u16 len || producer id || key id
                                 || seal id || u16 m || leaf hashes
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, NewType

from nacl.signing import SigningKey

from producers.errors import ProducerError

ProducerKeyId = NewType("ProducerKeyId", str)
"""16 lower-case hex digits: the first 8 bytes of the key's domain-separated SHA-256."""

ENVELOPE_HEADER: Final = "philedger-auth"
ENVELOPE_VERSION: Final = 2
LEAF_DOMAIN: Final = b"philedger/producer-leaf/v1\x00"
SEAL_DOMAIN: Final = b"philedger/producer-seal/v2\x00"
SEAL_ID_DOMAIN: Final = b"philedger/producer-seal-id/v2\x00"
KEY_ID_DOMAIN: Final = b"philedger/producer-key/v1\x00"
KEY_ID_BYTES: Final = 8
#: Largest batch one seal may cover (a seal of 1,024 leaves is 32 KiB in one header).
MAX_BATCH: Final = 1024
#: The most records the emitter signs at once (then split per destination partition,
#: one seal each): one Ed25519 signature per batch costs < 0.1 µs per record.
SIGN_BATCH: Final = 512
KEY_FILE_FORMAT: Final = "philedger-producer-key/v1"

SEAL_ID_BYTES: Final = 16
_REF: Final = struct.Struct(">B8s16sH")
_U16: Final = struct.Struct(">H")


class ProducerKeyError(ProducerError):
    """A producer key file is missing, unreadable, malformed or too widely readable."""


def key_id_of(public_key: bytes) -> ProducerKeyId:
    """The key id of an Ed25519 public key (32 bytes)."""
    digest = hashlib.sha256(KEY_ID_DOMAIN + public_key).digest()
    return ProducerKeyId(digest[:KEY_ID_BYTES].hex())


def _text16(text: str) -> bytes:
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("text too long for a u16 length prefix")
    return _U16.pack(len(raw)) + raw


def leaf_hash(producer_id: str, topic: str, value: bytes) -> bytes:
    """RFC 6962 leaf hash of one record: SHA-256(0x00 || LEAF_DOMAIN || id || topic || value)."""
    return hashlib.sha256(
        b"\x00" + LEAF_DOMAIN + _text16(producer_id) + _text16(topic) + value
    ).digest()


def seal_id_of(key_id: bytes, leaf_hashes: bytes) -> bytes:
    """The seal id: a hash of the key id and the seal's leaf hashes (16 bytes)."""
    m = len(leaf_hashes) // 32
    return hashlib.sha256(SEAL_ID_DOMAIN + key_id + _U16.pack(m) + leaf_hashes).digest()[
        :SEAL_ID_BYTES
    ]


def seal_message(producer_id: str, key_id: bytes, seal_id: bytes, leaf_hashes: bytes) -> bytes:
    """The bytes a seal's signature covers."""
    m = len(leaf_hashes) // 32
    return SEAL_DOMAIN + _text16(producer_id) + key_id + seal_id + _U16.pack(m) + leaf_hashes


@dataclass(frozen=True, slots=True, kw_only=True)
class ProducerKey:
    """One producer's Ed25519 signing key (the private half never leaves its file)."""

    producer_id: str
    key_id: ProducerKeyId
    seed: bytes

    def __repr__(self) -> str:  # never print the private key
        return f"ProducerKey(producer_id={self.producer_id!r}, key_id={self.key_id!r})"

    @property
    def public_key(self) -> bytes:
        return bytes(SigningKey(self.seed).verify_key)

    def signer(self) -> BatchSigner:
        return BatchSigner(self)


class BatchSigner:
    """Signs batches of (topic, value) records with one ``ProducerKey``."""

    __slots__ = ("_key", "_key_id", "_pid", "_sk")

    def __init__(self, key: ProducerKey) -> None:
        self._key = key
        self._pid = key.producer_id
        self._key_id = key.key_id
        self._sk = SigningKey(key.seed)

    @property
    def producer_id(self) -> str:
        return self._pid

    def envelopes(self, records: Sequence[tuple[str, bytes]]) -> list[bytes]:
        """One envelope per (topic, value), all under one seal (<= MAX_BATCH records);
        the first envelope carries the seal. The records must reach one partition of
        one topic, in this order, for a consumer to meet the seal first."""
        m = len(records)
        if not 0 < m <= MAX_BATCH:
            raise ValueError(f"a signed batch holds 1..{MAX_BATCH} records, not {m}")
        pid = self._pid
        hashes = b"".join(leaf_hash(pid, topic, value) for topic, value in records)
        kid = bytes.fromhex(self._key_id)
        sid = seal_id_of(kid, hashes)
        signature = self._sk.sign(seal_message(pid, kid, sid, hashes)).signature
        pack = _REF.pack
        out = [pack(ENVELOPE_VERSION, kid, sid, i) for i in range(m)]
        out[0] += _U16.pack(m) + hashes + signature
        return out


def generate_producer_key(producer_id: str) -> ProducerKey:
    sk = SigningKey.generate()
    return ProducerKey(
        producer_id=producer_id, key_id=key_id_of(bytes(sk.verify_key)), seed=bytes(sk)
    )


def write_producer_key(path: str | Path, key: ProducerKey) -> None:
    """Write a new key file, mode 600; never overwrites an existing file."""
    text = json.dumps(
        {
            "format": KEY_FILE_FORMAT,
            "producer_id": key.producer_id,
            "key_id": key.key_id,
            "private_key": base64.b64encode(key.seed).decode("ascii"),
        }
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise ProducerKeyError(f"cannot create the key file {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "w") as out:
        out.write(text + "\n")


def load_producer_key(path: str | Path) -> ProducerKey:
    """Read a key file; refuses one that group or others may read."""
    try:
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise ProducerKeyError(
                f"the producer key file {path} is accessible to group or others "
                f"(mode {stat.S_IMODE(mode):o}); chmod 600 it"
            )
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProducerKeyError(f"cannot read the producer key file {path}: {exc}") from exc
    try:
        if data["format"] != KEY_FILE_FORMAT:
            raise ValueError(f"format is {data['format']!r}, not {KEY_FILE_FORMAT!r}")
        seed = base64.b64decode(data["private_key"], validate=True)
        if len(seed) != 32:
            raise ValueError("the private key is not 32 bytes")
        producer_id = str(data["producer_id"])
        key_id = key_id_of(bytes(SigningKey(seed).verify_key))
        if data["key_id"] != key_id:
            raise ValueError("key_id does not match the private key")
    except (KeyError, TypeError, ValueError) as exc:
        raise ProducerKeyError(f"{path} is not a producer key file: {exc}") from exc
    return ProducerKey(producer_id=producer_id, key_id=key_id, seed=seed)
