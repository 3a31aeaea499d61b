"""Producer authentication, signing side: per-producer Ed25519 keys over Merkle batches.

Invariant: every record a ``ProducerKey`` signs carries an envelope from which anyone
holding the producer's public key recomputes one RFC 6962 Merkle root over the batch it
was sent in and checks one Ed25519 signature over (producer id, key id, batch size,
root); a leaf binds the producer id, the Kafka topic and the exact value bytes, so no
value, topic or producer can be changed, and no record moved to another batch or
producer, without the check failing.  The record value itself is never changed, so a
re-send of the same event under another envelope is still a byte-identical duplicate.
Pure (hashing, encoding) apart from the key-file helpers; the verifier side lives in
``ledger.producerauth`` (``producers`` may not import ``ledger``; docs/producer-auth.md).

Envelope, version 1 (the ``philedger-auth`` Kafka header; integers big-endian)::

    u8   version = 0x01
    8    key id  = SHA-256("philedger/producer-key/v1" || 0x00 || public key)[:8]
    u32  batch size n (1..MAX_BATCH)
    u32  leaf index i (< n)
    u8   path length k, then k * 32 bytes: the RFC 6962 inclusion path of leaf i
    64   Ed25519 signature over SIGNED_DOMAIN || u16 len || producer id || key id
                                 || u32 n || root
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
ENVELOPE_VERSION: Final = 1
LEAF_DOMAIN: Final = b"philedger/producer-leaf/v1\x00"
SIGNED_DOMAIN: Final = b"philedger/producer-batch/v1\x00"
KEY_ID_DOMAIN: Final = b"philedger/producer-key/v1\x00"
KEY_ID_BYTES: Final = 8
#: Largest batch one signature may cover (so an inclusion path has at most 10 hashes).
MAX_BATCH: Final = 1024
#: The batch size the emitter signs: each record carries (and the ledger stores) its
#: path, log2(n) * 32 bytes, so smaller batches store less; one Ed25519 signature per
#: 256 records still costs < 0.1 µs (producer) and < 0.2 µs (consumer) per record.
SIGN_BATCH: Final = 256
KEY_FILE_FORMAT: Final = "philedger-producer-key/v1"

_HEAD: Final = struct.Struct(">B8sIIB")
_U16: Final = struct.Struct(">H")
_U32: Final = struct.Struct(">I")


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


def signed_message(producer_id: str, key_id: ProducerKeyId, size: int, root: bytes) -> bytes:
    """The bytes an envelope's signature covers."""
    return SIGNED_DOMAIN + _text16(producer_id) + bytes.fromhex(key_id) + _U32.pack(size) + root


def merkle_paths(leaf_hashes: Sequence[bytes]) -> tuple[bytes, list[list[bytes]]]:
    """The RFC 6962 root of ``leaf_hashes`` and each leaf's inclusion path.

    Pairing each level left to right and carrying an odd last node up unchanged builds
    exactly RFC 6962's tree (split at the largest power of two below n).
    """
    if not leaf_hashes:
        raise ValueError("an empty batch has no root")
    paths: list[list[bytes]] = [[] for _ in leaf_hashes]
    level = list(leaf_hashes)
    # positions[j] = index of leaf j's ancestor in the current level
    positions = list(range(len(level)))
    while len(level) > 1:
        for j, pos in enumerate(positions):
            sibling = pos ^ 1
            if sibling < len(level):
                paths[j].append(level[sibling])
            positions[j] = pos >> 1
        sha = hashlib.sha256
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0], paths


def encode_envelope(
    *, key_id: ProducerKeyId, size: int, index: int, path: Sequence[bytes], signature: bytes
) -> bytes:
    if not 0 <= index < size <= MAX_BATCH or len(signature) != 64 or len(path) > 255:
        raise ValueError("envelope fields out of range")
    return (
        _HEAD.pack(ENVELOPE_VERSION, bytes.fromhex(key_id), size, index, len(path))
        + b"".join(path)
        + signature
    )


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
        """One envelope per (topic, value), all under one signature (<= MAX_BATCH)."""
        n = len(records)
        if not 0 < n <= MAX_BATCH:
            raise ValueError(f"a signed batch holds 1..{MAX_BATCH} records, not {n}")
        pid = self._pid
        root, paths = merkle_paths([leaf_hash(pid, topic, value) for topic, value in records])
        signature = self._sk.sign(signed_message(pid, self._key_id, n, root)).signature
        kid = bytes.fromhex(self._key_id)
        return [
            _HEAD.pack(ENVELOPE_VERSION, kid, n, i, len(path)) + b"".join(path) + signature
            for i, path in enumerate(paths)
        ]


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
