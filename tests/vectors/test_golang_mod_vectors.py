"""golang/mod sumdb/tlog vectors: real Certificate Transparency proofs and a record hash."""

from __future__ import annotations

import base64

import pytest

from ledger.errors import MalformedInputError, VerificationError
from ledger.log import merkle
from ledger.log.checkpoint import parse_checkpoint
from tests.vectors._load import GOLANG_MOD_DIR, load_json

ARGON = GOLANG_MOD_DIR / "argon2020"
CT = load_json(ARGON / "ct_test.json")
STH = load_json(ARGON / "sth.json")
ENTRY = base64.b64decode(load_json(ARGON / "entries.json")["entries"][0]["leaf_input"])
AUDIT_PATH = [base64.b64decode(h) for h in load_json(ARGON / "proof.json")["audit_path"]]
CONSISTENCY = [base64.b64decode(h) for h in load_json(ARGON / "consistency.json")["consistency"]]
SIZE = STH["tree_size"]
ROOT = base64.b64decode(STH["sha256_root_hash"])
OLD_SIZE = CT["old_size"]
OLD_ROOT = base64.b64decode(CT["old_root_base64"])
TLOG_NOTE = load_json(GOLANG_MOD_DIR / "tlog_note_test.json")


def _flip(proof: list[bytes], i: int) -> list[bytes]:
    out = list(proof)
    out[i] = bytes([out[i][0] ^ 1]) + out[i][1:]
    return out


def test_ct_inclusion_proof_verifies() -> None:
    assert load_json(ARGON / "proof.json")["leaf_index"] == CT["leaf_index"]
    merkle.verify_inclusion(
        leaf_hash=merkle.leaf_hash(ENTRY),
        index=CT["leaf_index"],
        size=SIZE,
        proof=AUDIT_PATH,
        root=ROOT,
    )


def test_ct_inclusion_proof_rejects_tampering() -> None:
    leaf = merkle.leaf_hash(ENTRY)
    for i in range(len(AUDIT_PATH)):
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(
                leaf_hash=leaf,
                index=CT["leaf_index"],
                size=SIZE,
                proof=_flip(AUDIT_PATH, i),
                root=ROOT,
            )
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(
            leaf_hash=merkle.leaf_hash(ENTRY + b"\x00"),
            index=CT["leaf_index"],
            size=SIZE,
            proof=AUDIT_PATH,
            root=ROOT,
        )
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(
            leaf_hash=leaf, index=CT["leaf_index"] + 1, size=SIZE, proof=AUDIT_PATH, root=ROOT
        )


def test_ct_consistency_proof_verifies() -> None:
    merkle.verify_consistency(
        size1=OLD_SIZE, size2=SIZE, proof=CONSISTENCY, root1=OLD_ROOT, root2=ROOT
    )
    assert (
        merkle.root_from_consistency_proof(
            size1=OLD_SIZE, size2=SIZE, proof=CONSISTENCY, root1=OLD_ROOT
        )
        == ROOT
    )


def test_ct_consistency_proof_rejects_tampering() -> None:
    for i in range(len(CONSISTENCY)):
        with pytest.raises(VerificationError):
            merkle.verify_consistency(
                size1=OLD_SIZE,
                size2=SIZE,
                proof=_flip(CONSISTENCY, i),
                root1=OLD_ROOT,
                root2=ROOT,
            )
    for size1, size2 in [
        (OLD_SIZE - 1, SIZE),
        (OLD_SIZE + 1, SIZE),
        (OLD_SIZE ^ 2, SIZE),
        (OLD_SIZE, SIZE * 2),
        (OLD_SIZE, SIZE // 2),
    ]:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(
                size1=size1, size2=size2, proof=CONSISTENCY, root1=OLD_ROOT, root2=ROOT
            )


def test_ct_consistency_proof_alone_does_not_pin_size2() -> None:
    """RFC 6962 proofs do not bind the tree size by themselves: sizes whose proof has the
    same shape (here SIZE - 1 and SIZE + 1) verify with the same hashes.  This is why the
    ledger takes both sizes from signed checkpoints, never from whoever sends the proof."""
    for size2 in (SIZE - 1, SIZE + 1):
        assert len(merkle.consistency_path_nodes(OLD_SIZE, size2)) == len(CONSISTENCY)
        merkle.verify_consistency(
            size1=OLD_SIZE, size2=size2, proof=CONSISTENCY, root1=OLD_ROOT, root2=ROOT
        )


def test_ct_proof_shapes_match_our_producer() -> None:
    assert len(merkle.inclusion_path_nodes(CT["leaf_index"], SIZE)) == len(AUDIT_PATH)
    assert len(merkle.consistency_path_nodes(OLD_SIZE, SIZE)) == len(CONSISTENCY)


def test_record_hash_golden() -> None:
    """sumdb/tlog TestFormatTree: RecordHash("hello world") is the RFC 6962 leaf hash."""
    h = merkle.leaf_hash(TLOG_NOTE["record_utf8"].encode())
    assert base64.b64encode(h).decode() == TLOG_NOTE["leaf_hash_base64"]
    assert TLOG_NOTE["formatted_tree"].split("\n")[2] == TLOG_NOTE["leaf_hash_base64"]


def test_bad_tree_bodies_are_rejected_as_checkpoints() -> None:
    """sumdb/tlog TestParseTree bad trees, with the (space-containing) origin made valid."""
    for bad in TLOG_NOTE["bad_trees"]:
        body = bad.replace("go.sum database tree", "go.sum/database/tree", 1)
        with pytest.raises(MalformedInputError):
            parse_checkpoint(body)
    good = TLOG_NOTE["formatted_tree"].replace("go.sum database tree", "go.sum/database/tree")
    assert parse_checkpoint(good).size == TLOG_NOTE["tree_size"]
