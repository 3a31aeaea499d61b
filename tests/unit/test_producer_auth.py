"""Producer authentication, pure parts: the signer (producers.signing) against the
independent verifier (ledger.audit.producerauth), fixed vectors, and every refusal."""

from __future__ import annotations

import hashlib
import os
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from ledger.audit.producerauth import (
    REASON_BAD_ENVELOPE,
    REASON_BAD_SIGNATURE,
    REASON_PRODUCER_MISMATCH,
    REASON_REVOKED_KEY,
    REASON_UNAUTHENTICATED,
    REASON_UNKNOWN_KEY,
    REASON_UNKNOWN_SEAL,
    AuthFailure,
    ProducerAuthenticator,
    RegisteredKey,
    Seal,
    check_producer,
    envelope_ref,
)
from ledger.audit.producerauth import key_id_of as ledger_key_id_of
from producers.signing import (
    ProducerKey,
    ProducerKeyError,
    generate_producer_key,
    key_id_of,
    leaf_hash,
    load_producer_key,
    write_producer_key,
)

SEED = bytes(range(32))
PID = "vector-producer"
RECORDS = [("phi-access", b"a"), ("phi-access", b"b"), ("phi-access", b"c")]


def vector_key() -> ProducerKey:
    public = bytes(SigningKey(SEED).verify_key)
    return ProducerKey(producer_id=PID, key_id=key_id_of(public), seed=SEED)


def registered(key: ProducerKey, revoked: bool = False) -> RegisteredKey:
    now = datetime.now(UTC)
    return RegisteredKey(
        key_id=ledger_key_id_of(key.public_key),
        producer_id=key.producer_id,
        public_key=key.public_key,
        created_at=now,
        revoked_at=now if revoked else None,
        revoked_reason="test" if revoked else None,
    )


def test_vectors_pin_the_byte_format() -> None:
    key = vector_key()
    assert key.public_key.hex() == (
        "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
    )
    expected_kid = hashlib.sha256(b"philedger/producer-key/v1\x00" + key.public_key).digest()[:8]
    assert key.key_id == expected_kid.hex() == "2baf8d2986cfe136"
    # The leaf, written out by hand from docs/producer-auth.md.
    leaf = hashlib.sha256(
        b"\x00philedger/producer-leaf/v1\x00"
        + struct.pack(">H", 15) + PID.encode()
        + struct.pack(">H", 10) + b"phi-access"
        + b"a"
    ).digest()  # fmt: skip
    assert leaf == leaf_hash(PID, "phi-access", b"a")
    hashes = b"".join(leaf_hash(PID, t, v) for t, v in RECORDS)
    seal_id = hashlib.sha256(
        b"philedger/producer-seal-id/v2\x00" + expected_kid + struct.pack(">H", 3) + hashes
    ).digest()[:16]
    assert seal_id.hex() == SEAL_ID_HEX
    envelopes = key.signer().envelopes(RECORDS)
    # Every record: version 2, key id, seal id, its index.
    assert envelopes[2] == b"\x02" + expected_kid + seal_id + struct.pack(">H", 2)
    assert envelopes[1].hex() == "022baf8d2986cfe136" + SEAL_ID_HEX + "0001"
    # The first also carries the seal: m, the leaf hashes, the signature.
    head = b"\x02" + expected_kid + seal_id + struct.pack(">H", 0)
    assert envelopes[0][:27] == head
    assert envelopes[0][27:29] == struct.pack(">H", 3)
    assert envelopes[0][29:-64] == hashes
    signed = (
        b"philedger/producer-seal/v2\x00" + struct.pack(">H", 15) + PID.encode()
        + expected_kid + seal_id + struct.pack(">H", 3) + hashes
    )  # fmt: skip
    SigningKey(SEED).verify_key.verify(signed, envelopes[0][-64:])
    assert envelopes[0][-64:].hex() == SIGNATURE_HEX
    assert envelope_ref(envelopes[2]) == (seal_id, 2)


SEAL_ID_HEX = "b8fe8ac140cf1fc3a2b1361153aa49d7"
SIGNATURE_HEX = (
    "a60043340aa29d0a35b14598a9cd41fa0545b0cdb0aa1678278cc9b7d6a334fa"
    "54bbb129a5c978fe2d043e4ac52592c3489a3835124d4a2ecf0af845d2cf1904"
)


def rows_of(key: ProducerKey, records: list[tuple[str, bytes]]) -> list[tuple[str, bytes, bytes]]:
    envs = key.signer().envelopes(records)
    return [(t, v, e) for (t, v), e in zip(records, envs, strict=True)]


def test_every_record_of_a_batch_authenticates_with_one_verification() -> None:
    key = generate_producer_key("pacs-1")
    records = [("phi-access", os.urandom(40)) for _ in range(100)]
    auth = ProducerAuthenticator([registered(key)])
    rows = rows_of(key, records)
    assert len(rows[0][2]) == 27 + 2 + 100 * 32 + 64, "the first carries the seal"
    assert {len(e) for _, _, e in rows[1:]} == {27}, "the others a 27-byte reference"
    for topic, value, env in rows:
        verdict = auth.authenticate(topic=topic, value=value, envelope=env)
        assert verdict.key.producer_id == "pacs-1"
    assert len(auth._seals) == 1  # one seal, verified once


def refusal(auth: ProducerAuthenticator, topic: str, value: bytes, env: bytes | None) -> str:
    with pytest.raises(AuthFailure) as caught:
        auth.authenticate(topic=topic, value=value, envelope=env)
    return caught.value.reason


def test_refusals() -> None:
    key, other = generate_producer_key("pacs-1"), generate_producer_key("pacs-2")
    records = [("phi-access", b"one"), ("phi-access", b"two")]
    env = key.signer().envelopes(records)
    auth = ProducerAuthenticator([registered(key), registered(other)])
    assert refusal(auth, "phi-access", b"one", None) == REASON_UNAUTHENTICATED
    assert refusal(auth, "phi-access", b"one", b"\x02short") == REASON_BAD_ENVELOPE
    assert refusal(auth, "phi-access", b"one", b"\x01" + env[0][1:]) == REASON_BAD_ENVELOPE
    assert refusal(auth, "phi-access", b"one", env[0][:-1]) == REASON_BAD_ENVELOPE  # seal cut
    seal_id_changed = bytearray(env[0])
    seal_id_changed[9] ^= 1
    assert refusal(auth, "phi-access", b"one", bytes(seal_id_changed)) == REASON_BAD_ENVELOPE
    # a reference before its seal: unknown (never received, or forged)
    assert refusal(auth, "phi-access", b"two", env[1]) == REASON_UNKNOWN_SEAL
    # a seal whose signature does not verify: flipped bit, or forged
    flipped = bytearray(env[0])
    flipped[-1] ^= 1
    assert refusal(auth, "phi-access", b"one", bytes(flipped)) == REASON_BAD_SIGNATURE
    forger = ProducerKey(producer_id="pacs-1", key_id=other.key_id, seed=os.urandom(32))
    forged = forger.signer().envelopes(records)[0]
    assert refusal(auth, "phi-access", b"one", forged) == REASON_BAD_SIGNATURE
    assert refusal(auth, "phi-access", b"two", env[1]) == REASON_UNKNOWN_SEAL, "not learnt"
    # tampered value, other topic, other record's reference (the seal itself is good)
    assert refusal(auth, "phi-access", b"onE", env[0]) == REASON_BAD_SIGNATURE
    assert refusal(auth, "critical-result-relay", b"one", env[0]) == REASON_BAD_SIGNATURE
    assert refusal(auth, "phi-access", b"one", env[1]) == REASON_BAD_SIGNATURE
    assert refusal(auth, "phi-access", b"two", env[1][:25] + b"\x00\x07") == REASON_BAD_ENVELOPE
    # another registered key's id on a reference to pacs-1's seal
    other_kid = bytes.fromhex(other.key_id)
    assert refusal(auth, "phi-access", b"two", env[1][:1] + other_kid + env[1][9:]) == (
        REASON_BAD_SIGNATURE
    )
    unknown = generate_producer_key("pacs-1").signer().envelopes(records)[0]
    assert refusal(auth, "phi-access", b"one", unknown) == REASON_UNKNOWN_KEY
    auth.replace_keys([registered(key, revoked=True)])
    assert refusal(auth, "phi-access", b"one", env[0]) == REASON_REVOKED_KEY
    assert refusal(auth, "phi-access", b"two", env[1]) == REASON_REVOKED_KEY


def test_a_refused_record_still_hands_over_its_verified_seal() -> None:
    key = generate_producer_key("pacs-1")
    rows = rows_of(key, [("t", b"x"), ("t", b"y")])
    auth = ProducerAuthenticator([registered(key)])
    with pytest.raises(AuthFailure) as caught:
        auth.authenticate(topic="t", value=b"X", envelope=rows[0][2])
    assert caught.value.reason == REASON_BAD_SIGNATURE
    assert caught.value.seal is not None, "the seal is good: stored for the batch's others"
    assert auth.authenticate(topic="t", value=b"y", envelope=rows[1][2]).entry == 1
    flipped = bytearray(rows[0][2])
    flipped[-1] ^= 1
    fresh = ProducerAuthenticator([registered(key)])
    with pytest.raises(AuthFailure) as caught:
        fresh.authenticate(topic="t", value=b"x", envelope=bytes(flipped))
    assert caught.value.seal is None, "a seal that does not verify is never stored"


def test_a_restarted_consumer_finds_the_seal_in_storage() -> None:
    key = generate_producer_key("pacs-1")
    rows = rows_of(key, [("t", b"x"), ("t", b"y"), ("t", b"z")])
    first = ProducerAuthenticator([registered(key)])
    stored = first.authenticate(topic="t", value=b"x", envelope=rows[0][2]).seal
    assert stored is not None
    restarted = ProducerAuthenticator([registered(key)])
    assert refusal(restarted, "t", b"z", rows[2][2]) == REASON_UNKNOWN_SEAL
    assert envelope_ref(rows[2][2]) == (stored.seal_id, 2), "what the consumer looks up"
    restarted.add_seal(stored)
    assert restarted.authenticate(topic="t", value=b"z", envelope=rows[2][2]).entry == 2
    # a stored seal is verified like a received one
    forged = Seal(
        seal_id=stored.seal_id, key_id=stored.key_id, producer_id=stored.producer_id,
        leaf_hashes=stored.leaf_hashes, signature=bytes(64),
    )  # fmt: skip
    with pytest.raises(AuthFailure) as caught:
        ProducerAuthenticator([registered(key)]).add_seal(forged)
    assert caught.value.reason == REASON_BAD_SIGNATURE


def test_a_cached_seal_does_not_outlive_revocation() -> None:
    key = generate_producer_key("pacs-1")
    rows = rows_of(key, [("t", b"x"), ("t", b"y")])
    auth = ProducerAuthenticator([registered(key)])
    auth.authenticate(topic="t", value=b"x", envelope=rows[0][2])
    auth.replace_keys([registered(key, revoked=True)])
    assert refusal(auth, "t", b"y", rows[1][2]) == REASON_REVOKED_KEY


def test_event_must_name_the_signing_producer() -> None:
    key = registered(generate_producer_key("pacs-1"))
    check_producer(key, "pacs-1")
    with pytest.raises(AuthFailure) as caught:
        check_producer(key, "ledger-api")
    assert caught.value.reason == REASON_PRODUCER_MISMATCH


def test_key_file_round_trip_and_refusals(tmp_path: Path) -> None:
    key = generate_producer_key("atna-receiver")
    path = tmp_path / "k.key"
    write_producer_key(path, key)
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_producer_key(path) == key
    assert "seed" not in repr(key)
    assert key.seed.hex() not in repr(key)
    with pytest.raises(ProducerKeyError):
        write_producer_key(path, key)  # never overwrites
    path.chmod(0o640)
    with pytest.raises(ProducerKeyError, match="group or others"):
        load_producer_key(path)
    bad = tmp_path / "bad.key"
    bad.write_text('{"format": "philedger-producer-key/v1"}')
    bad.chmod(0o600)
    with pytest.raises(ProducerKeyError):
        load_producer_key(bad)


def test_a_batch_with_one_bad_record_fails_only_that_record() -> None:
    key = generate_producer_key("pacs-1")
    rows = rows_of(key, [("phi-access", os.urandom(30)) for _ in range(16)])
    tampered = list(rows)
    tampered[5] = (rows[5][0], rows[5][1] + b"!", rows[5][2])  # value changed
    tampered[9] = (rows[9][0], rows[9][1], rows[10][2])  # another record's reference
    auth = ProducerAuthenticator([registered(key)])
    got = [
        v.reason if isinstance(v, AuthFailure) else v.key.key_id
        for v in auth.authenticate_many(tampered)
    ]
    assert got[5] == got[9] == REASON_BAD_SIGNATURE
    assert all(g == key.key_id for i, g in enumerate(got) if i not in (5, 9))
