"""C2SP tlog-cosignature against a cosignature made by litewitness v0.6.1 (torchwood)."""

from __future__ import annotations

from ledger.log.cosignature import (
    WitnessPolicy,
    check_cosignatures,
    parse_cosignature_line,
    parse_witness_key,
    split_note,
)
from ledger.log.note import format_verifier_key
from tests.vectors._load import DATA_DIR, load_json

VECTOR = load_json(DATA_DIR / "torchwood" / "litewitness_cosignature.json")


def _cosigned() -> str:
    return str(VECTOR["checkpoint_note"]) + "".join(VECTOR["cosignature_lines"])


def test_witness_key_round_trips_and_has_the_cosignature_key_id() -> None:
    key = parse_witness_key(VECTOR["witness_vkey"])
    assert key.key == VECTOR["witness_vkey"]
    assert key.name == "example.com/witness"
    # The same public key as an ordinary note key (alg 0x01) has another key ID.
    assert format_verifier_key(key.name, key.public_key).split("+")[1] != key.key_id.hex()


def test_litewitness_cosignature_verifies() -> None:
    key = parse_witness_key(VECTOR["witness_vkey"])
    text, _ = split_note(VECTOR["checkpoint_note"])
    cosig = parse_cosignature_line(VECTOR["cosignature_lines"][0])
    assert cosig is not None
    assert cosig.line == VECTOR["cosignature_lines"][0]
    assert key.verify(text, cosig.timestamp, cosig.signature)
    assert not key.verify(text, cosig.timestamp + 1, cosig.signature)
    check = check_cosignatures(_cosigned(), WitnessPolicy(witnesses=(key,), threshold=1))
    assert check.satisfied
    assert check.witnessed_by == ("example.com/witness",)
    assert check.invalid == ()
    assert check.unknown == 0


def test_the_logs_own_signature_is_not_a_cosignature() -> None:
    _, lines = split_note(VECTOR["checkpoint_note"])
    assert parse_cosignature_line(lines[0]) is None


def test_litewitness_cosignature_does_not_cover_another_checkpoint() -> None:
    key = parse_witness_key(VECTOR["witness_vkey"])
    altered = _cosigned().replace("\n1\n", "\n2\n", 1)
    check = check_cosignatures(altered, WitnessPolicy(witnesses=(key,), threshold=1))
    assert not check.satisfied
    assert check.invalid == (f"example.com/witness+{key.key_id.hex()}",)
