"""Producer authentication, pure parts: the signer (producers.signing) against the
independent verifier (ledger.producerauth), fixed vectors, and every refusal."""

from __future__ import annotations

import hashlib
import os
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nacl.signing import SigningKey

from ledger import merkle
from ledger.producerauth import (
    REASON_BAD_ENVELOPE,
    REASON_BAD_SIGNATURE,
    REASON_PRODUCER_MISMATCH,
    REASON_REVOKED_KEY,
    REASON_UNAUTHENTICATED,
    REASON_UNKNOWN_KEY,
    AuthFailure,
    ProducerAuthenticator,
    RegisteredKey,
    check_producer,
    parse_envelope,
)
from ledger.producerauth import key_id_of as ledger_key_id_of
from producers.signing import (
    ProducerKey,
    ProducerKeyError,
    generate_producer_key,
    key_id_of,
    leaf_hash,
    load_producer_key,
    merkle_paths,
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
    root, _ = merkle_paths([leaf_hash(PID, t, v) for t, v in RECORDS])
    assert root.hex() == "6eb753e664b5c38440910f5255c6b793a043fdfc7ceddc838b8bf304fd65552f"
    envelope = key.signer().envelopes(RECORDS)[2]
    assert envelope.hex() == (
        "012baf8d2986cfe136000000030000000201cd8ad5db4868c9d32b010db54628b1f648d0f79ec19a2d"
        "1d7dd5d75961557c9bc7759b1b0ed437bec5b3ea7dac978ad9596bcb71da7ff581451c9afc1bd13173"
        "d9c6014c41a499c8bf0d98bba90c15d7f6d3025538313527b025d47cc68cf604"
    )
    signed = (
        b"philedger/producer-batch/v1\x00" + struct.pack(">H", 15) + PID.encode()
        + expected_kid + struct.pack(">I", 3) + root
    )  # fmt: skip
    SigningKey(SEED).verify_key.verify(signed, envelope[-64:])


@pytest.mark.parametrize("n", [*range(1, 34), 255, 256, 257, 1024])
def test_batch_tree_is_rfc6962(n: int) -> None:
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    root, paths = merkle_paths(hashes)
    assert root == merkle.root_from_leaf_hashes(hashes)
    for i, path in enumerate(paths):
        assert (
            merkle.root_from_inclusion_proof(leaf_hash=hashes[i], index=i, size=n, proof=path)
            == root
        )


def test_every_record_of_a_batch_authenticates_with_one_verification() -> None:
    key = generate_producer_key("pacs-1")
    records = [("phi-access", os.urandom(40)) for _ in range(100)]
    auth = ProducerAuthenticator([registered(key)])
    for (topic, value), env in zip(records, key.signer().envelopes(records), strict=True):
        assert auth.authenticate(topic=topic, value=value, envelope=env).producer_id == "pacs-1"
    assert len(auth._batches) == 1  # one root, verified once


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
    assert refusal(auth, "phi-access", b"one", b"\x01short") == REASON_BAD_ENVELOPE
    assert refusal(auth, "phi-access", b"one", b"\x02" + env[0][1:]) == REASON_BAD_ENVELOPE
    # tampered value, other topic, other record's envelope, flipped path or signature bit
    assert refusal(auth, "phi-access", b"onE", env[0]) == REASON_BAD_SIGNATURE
    assert refusal(auth, "critical-result-relay", b"one", env[0]) == REASON_BAD_SIGNATURE
    assert refusal(auth, "phi-access", b"one", env[1]) == REASON_BAD_SIGNATURE
    flipped = bytearray(env[0])
    flipped[-1] ^= 1
    assert refusal(auth, "phi-access", b"one", bytes(flipped)) == REASON_BAD_SIGNATURE
    # forged: a key nobody registered, signing in pacs-1's name
    forger = ProducerKey(producer_id="pacs-1", key_id=other.key_id, seed=os.urandom(32))
    forged = forger.signer().envelopes(records)[0]
    assert refusal(auth, "phi-access", b"one", forged) == REASON_BAD_SIGNATURE
    unknown = generate_producer_key("pacs-1").signer().envelopes(records)[0]
    assert refusal(auth, "phi-access", b"one", unknown) == REASON_UNKNOWN_KEY
    auth.replace_keys([registered(key, revoked=True)])
    assert refusal(auth, "phi-access", b"one", env[0]) == REASON_REVOKED_KEY


def test_a_cached_root_does_not_outlive_revocation() -> None:
    key = generate_producer_key("pacs-1")
    records = [("t", b"x")]
    env = key.signer().envelopes(records)[0]
    auth = ProducerAuthenticator([registered(key)])
    auth.authenticate(topic="t", value=b"x", envelope=env)
    auth.replace_keys([registered(key, revoked=True)])
    assert refusal(auth, "t", b"x", env) == REASON_REVOKED_KEY


def test_event_must_name_the_signing_producer() -> None:
    key = registered(generate_producer_key("pacs-1"))
    check_producer(key, "pacs-1")
    with pytest.raises(AuthFailure) as caught:
        check_producer(key, "ledger-api")
    assert caught.value.reason == REASON_PRODUCER_MISMATCH


def test_envelope_parses_back() -> None:
    key = vector_key()
    env = parse_envelope(key.signer().envelopes(RECORDS)[1])
    assert (env.key_id, env.size, env.index, len(env.path)) == (key.key_id, 3, 1, 2)


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


def verdicts(auth: ProducerAuthenticator, records: list[tuple[str, bytes, bytes | None]]) -> list:
    out = []
    for v in auth.authenticate_many(records):
        out.append(v.reason if isinstance(v, AuthFailure) else v.key_id)
    return out


def one_by_one(auth: ProducerAuthenticator, records: list[tuple[str, bytes, bytes | None]]) -> list:
    out = []
    for topic, value, env in records:
        try:
            out.append(auth.authenticate(topic=topic, value=value, envelope=env).key_id)
        except AuthFailure as exc:
            out.append(exc.reason)
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 7, 64, 100])
def test_whole_batches_give_the_same_verdicts_as_one_by_one(n: int) -> None:
    key = generate_producer_key("pacs-1")
    records = [("phi-access", os.urandom(30)) for _ in range(n)]
    envs = key.signer().envelopes(records)
    rows = [(t, v, e) for (t, v), e in zip(records, envs, strict=True)]
    other = [("phi-access", b"x", None)]
    for batch in (rows, rows[::-1], other + rows, rows[: max(1, n - 1)], rows + rows[:1]):
        fresh = ProducerAuthenticator([registered(key)])
        assert verdicts(fresh, batch) == one_by_one(ProducerAuthenticator([registered(key)]), batch)


def test_a_whole_batch_with_one_bad_record_fails_only_that_record() -> None:
    key = generate_producer_key("pacs-1")
    records = [("phi-access", os.urandom(30)) for _ in range(16)]
    envs = key.signer().envelopes(records)
    rows = [(t, v, e) for (t, v), e in zip(records, envs, strict=True)]
    tampered = list(rows)
    tampered[5] = (rows[5][0], rows[5][1] + b"!", rows[5][2])  # value changed
    bad_path = bytearray(rows[9][2] or b"")
    bad_path[20] ^= 1  # a path byte changed: the signature still verifies for the others
    tampered[9] = (rows[9][0], rows[9][1], bytes(bad_path))
    auth = ProducerAuthenticator([registered(key)])
    got = verdicts(auth, tampered)
    assert got[5] == REASON_BAD_SIGNATURE
    assert got[9] == REASON_BAD_SIGNATURE
    assert all(g == key.key_id for i, g in enumerate(got) if i not in (5, 9))
    auth.replace_keys([registered(key, revoked=True)])
    assert set(verdicts(auth, rows)) == {REASON_REVOKED_KEY}
