"""Unit tests for ledger.log.checkpoint: checkpoint bodies, signed checkpoints and tlog-proofs."""

from __future__ import annotations

import base64

import pytest

from ledger.errors import MalformedInputError, VerificationError
from ledger.log import merkle
from ledger.log import note as N
from ledger.log.checkpoint import (
    TLOG_PROOF_HEADER,
    Checkpoint,
    format_checkpoint,
    format_tlog_proof,
    open_checkpoint,
    parse_checkpoint,
    parse_tlog_proof,
    sign_checkpoint,
    verify_tlog_proof,
)
from ledger.log.types import RootHash

ORIGIN = "example.com/audit-ledger"
ROOT = RootHash(bytes(range(32)))
ROOT_B64 = base64.b64encode(ROOT).decode()


def _keys(name: str = ORIGIN) -> tuple[N.Signer, N.Verifier]:
    skey, vkey = N.generate_signer(name)
    return N.parse_signer_key(skey), N.parse_verifier_key(vkey)


# --------------------------------------------------------------------------------------------
# Bodies
# --------------------------------------------------------------------------------------------


def test_format_and_parse_round_trip() -> None:
    cp = Checkpoint(origin=ORIGIN, size=20852163, root_hash=ROOT)
    text = format_checkpoint(cp)
    assert text == f"{ORIGIN}\n20852163\n{ROOT_B64}\n"
    assert parse_checkpoint(text) == cp
    with_ext = Checkpoint(origin=ORIGIN, size=0, root_hash=ROOT, extensions=("a b c", "\u00e9"))
    assert format_checkpoint(with_ext) == f"{ORIGIN}\n0\n{ROOT_B64}\na b c\n\u00e9\n"
    assert parse_checkpoint(format_checkpoint(with_ext)) == with_ext


def test_c2sp_example_body_parses() -> None:
    text = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = parse_checkpoint(text)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert format_checkpoint(cp) == text


@pytest.mark.parametrize(
    "text",
    [
        f"{ORIGIN}\n01\n{ROOT_B64}\n",  # leading zero
        f"{ORIGIN}\n00\n{ROOT_B64}\n",
        f"{ORIGIN}\n-1\n{ROOT_B64}\n",
        f"{ORIGIN}\n+1\n{ROOT_B64}\n",
        f"{ORIGIN}\n 1\n{ROOT_B64}\n",
        f"{ORIGIN}\n1_000\n{ROOT_B64}\n",
        f"{ORIGIN}\n\u0661\n{ROOT_B64}\n",  # Arabic-Indic digit one
        f"{ORIGIN}\n0x10\n{ROOT_B64}\n",
        f"{ORIGIN}\n\n{ROOT_B64}\n",
        f"{ORIGIN}\n{2**64}\n{ROOT_B64}\n",  # does not fit in uint64
        f"example.com/audit ledger\n1\n{ROOT_B64}\n",  # space in origin
        f"example.com/a+b\n1\n{ROOT_B64}\n",  # plus in origin
        f"example.com/a\u00a0b\n1\n{ROOT_B64}\n",  # Unicode space in origin
        f"\n1\n{ROOT_B64}\n",  # empty origin
        f"{ORIGIN}\n1\n{ROOT_B64}",  # missing trailing newline
        f"{ORIGIN}\n1\n",  # missing root line
        f"{ORIGIN}\n1\n{ROOT_B64[:-1]}\n",  # bad base64 (length)
        f"{ORIGIN}\n1\n{ROOT_B64[:-1]}*\n",  # bad base64 (alphabet)
        f"{ORIGIN}\n1\n{ROOT_B64.rstrip('=')}\n",  # missing padding
        f"{ORIGIN}\n1\n{ROOT_B64[:-2]}9=\n",  # non-canonical: '8' with a discarded bit set
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(31)).decode()}\n",  # 31-byte root
        f"{ORIGIN}\n1\n{base64.b64encode(bytes(33)).decode()}\n",  # 33-byte root
        f"{ORIGIN}\n1\n{ROOT_B64}\n\n",  # empty extension line
        f"{ORIGIN}\n1\n{ROOT_B64}\next\tension\n",  # control character
        f"{ORIGIN}\r\n1\n{ROOT_B64}\n",
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(MalformedInputError):
        parse_checkpoint(text)


def test_non_canonical_root_fixture() -> None:
    """'...8=' ends the root; '...9=' differs only in bits a lax decoder discards."""
    assert ROOT_B64.endswith("8=")
    assert base64.b64decode(ROOT_B64[:-2] + "9=") == ROOT


def test_largest_size_parses() -> None:
    text = f"{ORIGIN}\n{2**64 - 1}\n{ROOT_B64}\n"
    assert parse_checkpoint(text).size == 2**64 - 1


def test_checkpoint_validates_itself() -> None:
    with pytest.raises(MalformedInputError):
        Checkpoint(origin="bad origin", size=1, root_hash=ROOT)
    with pytest.raises(MalformedInputError):
        Checkpoint(origin=ORIGIN, size=-1, root_hash=ROOT)
    with pytest.raises(MalformedInputError):
        Checkpoint(origin=ORIGIN, size=1, root_hash=RootHash(ROOT[:31]))
    with pytest.raises(MalformedInputError):
        Checkpoint(origin=ORIGIN, size=1, root_hash=ROOT, extensions=("two\nlines",))
    with pytest.raises(MalformedInputError):
        Checkpoint(origin=ORIGIN, size=True, root_hash=ROOT)


# --------------------------------------------------------------------------------------------
# Signed checkpoints
# --------------------------------------------------------------------------------------------


def test_sign_and_open_checkpoint() -> None:
    signer, verifier = _keys()
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=ROOT, extensions=("ext",))
    signed = sign_checkpoint(cp, [signer])
    assert signed.startswith(format_checkpoint(cp) + "\n\u2014 " + ORIGIN + " ")
    assert open_checkpoint(signed, [verifier]) == cp
    assert open_checkpoint(signed.encode(), [verifier], origin=ORIGIN) == cp


def test_open_checkpoint_origin_policy() -> None:
    signer, verifier = _keys()
    other_signer, other_verifier = _keys("other.example/log")
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=ROOT)
    # A verifier named differently from the expected origin is a configuration error.
    with pytest.raises(MalformedInputError):
        open_checkpoint(sign_checkpoint(cp, [signer]), [verifier, other_verifier], origin=ORIGIN)
    with pytest.raises(MalformedInputError):
        open_checkpoint(sign_checkpoint(cp, [signer]), [], origin=ORIGIN)
    # A checkpoint for another origin, signed by a key we trust for that other origin, is
    # not accepted as ours.
    foreign = Checkpoint(origin="other.example/log", size=7, root_hash=ROOT)
    signed_foreign = sign_checkpoint(foreign, [other_signer])
    with pytest.raises(MalformedInputError):
        open_checkpoint(signed_foreign, [other_verifier], origin=ORIGIN)
    # A key named after our origin signing another origin's body: rejected by origin.
    spoof = sign_checkpoint(foreign, [signer])
    with pytest.raises(VerificationError):
        open_checkpoint(spoof, [verifier], origin=ORIGIN)
    assert open_checkpoint(spoof, [verifier]) == foreign  # no origin given: signature only


def test_open_checkpoint_rejects_untrusted_and_tampered() -> None:
    signer, verifier = _keys()
    _, stranger = _keys()
    cp = Checkpoint(origin=ORIGIN, size=7, root_hash=ROOT)
    signed = sign_checkpoint(cp, [signer])
    with pytest.raises(VerificationError):
        open_checkpoint(signed, [stranger])
    with pytest.raises(VerificationError):
        open_checkpoint(signed.replace("\n7\n", "\n8\n", 1), [verifier])
    other_root = base64.b64encode(bytes(32)).decode()
    with pytest.raises(VerificationError):
        open_checkpoint(signed.replace(ROOT_B64, other_root, 1), [verifier])


def test_signed_but_malformed_body_is_malformed() -> None:
    signer, verifier = _keys()
    note = N.sign_note(f"{ORIGIN}\n007\n{ROOT_B64}\n", [signer])
    with pytest.raises(MalformedInputError):
        open_checkpoint(note, [verifier])


def test_rotation_checkpoint_opens_with_either_key() -> None:
    old_signer, old_verifier = _keys()
    new_signer, new_verifier = _keys()
    cp = Checkpoint(origin=ORIGIN, size=3, root_hash=ROOT)
    signed = sign_checkpoint(cp, [old_signer, new_signer])
    assert open_checkpoint(signed, [old_verifier], origin=ORIGIN) == cp
    assert open_checkpoint(signed, [new_verifier], origin=ORIGIN) == cp


# --------------------------------------------------------------------------------------------
# tlog-proof
# --------------------------------------------------------------------------------------------


def _log(n: int) -> tuple[list[bytes], Checkpoint]:
    entries = [f"event {i}".encode() for i in range(n)]
    cp = Checkpoint(origin=ORIGIN, size=n, root_hash=merkle.root_from_leaves(entries))
    return entries, cp


def _proof_for(index: int, entries: list[bytes], signed: str, extra: bytes | None = None) -> str:
    hashes = [merkle.leaf_hash(e) for e in entries]
    proof = merkle.inclusion_proof_from_leaves(index, hashes)
    return format_tlog_proof(index, proof.hashes, signed, extra)


def test_tlog_proof_round_trip() -> None:
    signer, verifier = _keys()
    entries, cp = _log(13)
    signed = sign_checkpoint(cp, [signer])
    for index in range(13):
        for extra in (None, b"", b"\x00opaque\xff"):
            text = _proof_for(index, entries, signed, extra)
            parsed = parse_tlog_proof(text)
            assert parsed.index == index
            assert parsed.extra == extra
            assert parsed.checkpoint_note == signed
            assert format_tlog_proof(parsed.index, parsed.hashes, signed, extra) == text
            assert verify_tlog_proof(text, entries[index], [verifier]) == cp
            assert verify_tlog_proof(text.encode(), entries[index], [verifier], origin=ORIGIN) == cp


def test_tlog_proof_layout() -> None:
    signer, _ = _keys()
    entries, cp = _log(5)
    signed = sign_checkpoint(cp, [signer])
    text = _proof_for(4, entries, signed, b"hi")
    lines = text.split("\n")
    assert lines[0] == TLOG_PROOF_HEADER
    assert lines[1] == "extra aGk="
    assert lines[2] == "index 4"
    assert lines[3] == base64.b64encode(merkle.root_from_leaves(entries[:4])).decode()
    assert lines[4] == ""
    assert "\n".join(lines[5:]) == signed


def test_tlog_proof_tampering_is_rejected() -> None:
    signer, verifier = _keys()
    _, stranger = _keys()
    entries, cp = _log(13)
    signed = sign_checkpoint(cp, [signer])
    good = _proof_for(6, entries, signed)
    verify_tlog_proof(good, entries[6], [verifier])

    with pytest.raises(VerificationError):  # another entry
        verify_tlog_proof(good, entries[5], [verifier])
    with pytest.raises(VerificationError):  # another index
        verify_tlog_proof(good.replace("index 6\n", "index 7\n"), entries[6], [verifier])
    with pytest.raises(VerificationError):  # index beyond the checkpoint
        verify_tlog_proof(good.replace("index 6\n", "index 13\n"), entries[6], [verifier])
    with pytest.raises(VerificationError):  # untrusted key
        verify_tlog_proof(good, entries[6], [stranger])
    other = sign_checkpoint(
        Checkpoint(origin="x.example/y", size=cp.size, root_hash=cp.root_hash), [signer]
    )
    with pytest.raises(VerificationError):  # body origin is not the expected origin
        verify_tlog_proof(_proof_for(6, entries, other), entries[6], [verifier], origin=ORIGIN)

    parsed = parse_tlog_proof(good)
    for i in range(len(parsed.hashes)):
        hashes = list(parsed.hashes)
        hashes[i] = bytes([hashes[i][0] ^ 0x40]) + hashes[i][1:]
        with pytest.raises(VerificationError):
            verify_tlog_proof(format_tlog_proof(6, hashes, signed), entries[6], [verifier])
    with pytest.raises(VerificationError):  # dropped hash
        verify_tlog_proof(format_tlog_proof(6, parsed.hashes[:-1], signed), entries[6], [verifier])
    with pytest.raises(VerificationError):  # checkpoint body edited (signature breaks)
        verify_tlog_proof(good.replace("\n13\n", "\n14\n"), entries[6], [verifier])
    # A different, validly signed checkpoint does not match this proof's hashes.
    entries2, cp2 = _log(14)
    with pytest.raises(VerificationError):
        verify_tlog_proof(
            _proof_for(6, entries, sign_checkpoint(cp2, [signer])), entries[6], [verifier]
        )
    assert entries2[6] == entries[6]


@pytest.mark.parametrize(
    "text",
    [
        "wrong-header\nindex 0\n\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\nextra !!notbase64!!\nindex 0\n\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\n\n\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\nindex notanumber\n\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\nindex -5\n\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\nindex 05\n\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\nindex {2**64}\n\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\nindex 0\n!!notbase64!!\n\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\nindex 0\n{base64.b64encode(bytes(64)).decode()}\n\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\nindex 0\n{ROOT_B64}\n",  # no blank line / checkpoint
        f"{TLOG_PROOF_HEADER}\nindex 0\n\n",  # empty checkpoint
        f"{TLOG_PROOF_HEADER}\nindex 0\n" + f"{ROOT_B64}\n" * 65 + "\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\r\nindex 0\n\ncheckpoint\n",
        f"{TLOG_PROOF_HEADER}\nextra aGk=\nextra aGk=\nindex 0\n\ncheckpoint\n",
    ],
)
def test_tlog_proof_parse_errors(text: str) -> None:
    """Includes transparency-dev/merkle TestVerifyTLogProofErrors inputs."""
    with pytest.raises(MalformedInputError):
        parse_tlog_proof(text)
    with pytest.raises(MalformedInputError):
        verify_tlog_proof(text, b"leaf", [])


def test_tlog_proof_rejects_bad_utf8() -> None:
    with pytest.raises(MalformedInputError):
        parse_tlog_proof(TLOG_PROOF_HEADER.encode() + b"\nindex 0\n\n\xff\n")
