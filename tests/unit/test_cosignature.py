"""The pure cosignature core: keys, lines, the k-of-n policy, and every refusal."""

from __future__ import annotations

import os

import pytest

from ledger.errors import MalformedInputError
from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.cosignature import (
    WitnessKey,
    WitnessPolicy,
    append_cosignatures,
    check_cosignatures,
    cosignature_message,
    parse_cosignature_line,
    parse_witness_key,
    sign_cosignature,
    split_note,
)
from ledger.log.note import Signer, generate_signer, parse_signer_key
from ledger.log.types import RootHash

LOG = parse_signer_key(generate_signer("log.example")[0])
NOTE = sign_checkpoint(
    Checkpoint(origin="log.example/0", size=5, root_hash=RootHash(b"\1" * 32)), [LOG]
)
TEXT = split_note(NOTE)[0]


def witness(name: str) -> tuple[bytes, WitnessKey]:
    seed = os.urandom(32)
    signer = Signer.from_seed("x", seed)
    return seed, WitnessKey.from_public_key(name, signer.public_key)


def cosign(seed: bytes, name: str, text: str = TEXT, ts: int = 1_700_000_000) -> str:
    return sign_cosignature(text, name=name, seed=seed, timestamp=ts)


def test_message_format() -> None:
    assert cosignature_message(TEXT, 7) == b"cosignature/v1\ntime 7\n" + TEXT.encode()
    with pytest.raises(MalformedInputError):
        cosignature_message("not a checkpoint\n", 7)
    with pytest.raises(MalformedInputError):
        cosignature_message(TEXT, -1)


def test_key_parsing_refuses_other_algorithms_and_bad_ids() -> None:
    _, key = witness("w.example")
    assert parse_witness_key(key.key) == key
    name, _kid, b64 = key.key.split("+", 2)
    with pytest.raises(MalformedInputError):
        parse_witness_key(f"{name}+00000000+{b64}")
    with pytest.raises(MalformedInputError):
        parse_witness_key(generate_signer("w.example")[1])  # an ordinary 0x01 note key
    with pytest.raises(MalformedInputError):
        parse_witness_key("nonsense")


def test_k_of_n() -> None:
    (s1, k1), (s2, k2), (_s3, k3) = witness("w1"), witness("w2"), witness("w3")
    note = append_cosignatures(NOTE, [cosign(s1, "w1"), cosign(s2, "w2")])
    two = WitnessPolicy(witnesses=(k1, k2, k3), threshold=2)
    three = WitnessPolicy(witnesses=(k1, k2, k3), threshold=3)
    assert check_cosignatures(note, two).satisfied
    check = check_cosignatures(note, three)
    assert not check.satisfied
    assert set(check.witnessed_by) == {"w1", "w2"}


def test_forged_and_unknown_cosignatures_do_not_count() -> None:
    (s1, k1), (s2, k2) = witness("w1"), witness("w2")
    stranger, _ = witness("w3")
    forged_sig = cosign(stranger, "w2")  # w2's name, another key: unknown key ID
    # A line with w1's key ID whose signature is not w1's: forged.
    good = parse_cosignature_line(cosign(s1, "w1"))
    other = parse_cosignature_line(cosign(s2, "w1"))
    assert good is not None
    assert other is not None
    forged = type(good)(name="w1", key_id=good.key_id, timestamp=good.timestamp,
                        signature=other.signature).line  # fmt: skip
    note = append_cosignatures(NOTE, [forged, forged_sig])
    check = check_cosignatures(note, WitnessPolicy(witnesses=(k1, k2), threshold=1))
    assert not check.satisfied
    assert check.invalid == (f"w1+{k1.key_id.hex()}",)
    assert check.unknown == 1


def test_a_cosignature_of_another_checkpoint_is_invalid() -> None:
    s1, k1 = witness("w1")
    other = Checkpoint(origin="log.example/0", size=6, root_hash=RootHash(b"\2" * 32))
    line = cosign(s1, "w1", text=split_note(sign_checkpoint(other, [LOG]))[0])
    check = check_cosignatures(
        append_cosignatures(NOTE, [line]), WitnessPolicy(witnesses=(k1,), threshold=1)
    )
    assert not check.satisfied
    assert len(check.invalid) == 1


def test_duplicate_lines_count_once() -> None:
    s1, k1 = witness("w1")
    _, k2 = witness("w2")
    line = cosign(s1, "w1")
    note = append_cosignatures(NOTE, [line, line])
    assert note.count(line) == 1
    assert append_cosignatures(note, [line]) == note
    check = check_cosignatures(note + line, WitnessPolicy(witnesses=(k1, k2), threshold=2))
    assert check.witnessed_by == ("w1",)
    assert not check.satisfied


def test_policy_threshold_bounds() -> None:
    _, k1 = witness("w1")
    for bad in (0, 2):
        with pytest.raises(MalformedInputError):
            WitnessPolicy(witnesses=(k1,), threshold=bad)


def test_malformed_notes_and_lines() -> None:
    with pytest.raises(MalformedInputError):
        split_note("no signatures\n")
    with pytest.raises(MalformedInputError):
        parse_cosignature_line("- w1 AAAA\n")
    with pytest.raises(MalformedInputError):
        parse_cosignature_line("\u2014 w1 !!!\n")
