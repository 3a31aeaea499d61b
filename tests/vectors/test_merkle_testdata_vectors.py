"""transparency-dev/merkle testdata/inclusion/**.json and testdata/consistency/**.json.

File format (it changed over upstream history, so both spellings are accepted): Go's
``encoding/json`` of the probe struct, either compact or indented; ``[]byte`` fields are
standard base64 (``""`` is an empty slice); ``proof`` may be ``null``; the inclusion leaf
index is ``leafIdx`` in older files and ``leafIndex`` in newer ones; sizes and indexes are
uint64, so "leafIdx - 1" at index 0 is 18446744073709551615.  Every probe with
``wantErr: true`` must raise ``VerificationError``; every other one must verify, and the
happy paths must also equal the proofs this library produces from the same leaves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ledger.errors import VerificationError
from ledger.log import merkle
from tests.vectors._load import MERKLE_DIR, go_bytes, go_proof, load_json

TESTDATA = MERKLE_DIR / "testdata"
INCLUSION_FILES = sorted((TESTDATA / "inclusion").rglob("*.json"))
CONSISTENCY_FILES = sorted((TESTDATA / "consistency").rglob("*.json"))
LEAF_HASHES = [
    merkle.leaf_hash(bytes.fromhex(x))
    for x in load_json(MERKLE_DIR / "testonly_constants.json")["leaf_inputs_hex"]
]


def _id(path: Path) -> str:
    return str(path.relative_to(TESTDATA))


def test_all_vector_files_are_present() -> None:
    # 5 proof directories per kind, plus the "additional" and "single-entry" probes.
    assert len(INCLUSION_FILES) >= 90
    assert len(CONSISTENCY_FILES) >= 60
    wanted = {load_json(p)["wantErr"] for p in INCLUSION_FILES + CONSISTENCY_FILES}
    assert wanted == {True, False}


def _inclusion_args(vec: dict[str, Any]) -> dict[str, Any]:
    index = vec["leafIndex"] if "leafIndex" in vec else vec["leafIdx"]
    return {
        "leaf_hash": go_bytes(vec["leafHash"]),
        "index": index,
        "size": vec["treeSize"],
        "proof": go_proof(vec["proof"]),
        "root": go_bytes(vec["root"]),
    }


@pytest.mark.parametrize("path", INCLUSION_FILES, ids=_id)
def test_inclusion_vector(path: Path) -> None:
    vec = load_json(path)
    args = _inclusion_args(vec)
    if vec["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_inclusion(**args)
        return
    merkle.verify_inclusion(**args)
    root = args.pop("root")
    assert merkle.root_from_inclusion_proof(**args) == root


@pytest.mark.parametrize("path", CONSISTENCY_FILES, ids=_id)
def test_consistency_vector(path: Path) -> None:
    vec = load_json(path)
    args = {
        "size1": vec["size1"],
        "size2": vec["size2"],
        "proof": go_proof(vec["proof"]),
        "root1": go_bytes(vec["root1"]),
        "root2": go_bytes(vec["root2"]),
    }
    if vec["wantErr"]:
        with pytest.raises(VerificationError):
            merkle.verify_consistency(**args)
        return
    merkle.verify_consistency(**args)
    root2 = args.pop("root2")
    assert merkle.root_from_consistency_proof(**args) == root2


@pytest.mark.parametrize(
    "path", [p for p in INCLUSION_FILES if p.name == "happy-path.json"], ids=_id
)
def test_inclusion_happy_path_is_what_we_produce(path: Path) -> None:
    args = _inclusion_args(load_json(path))
    leaves = LEAF_HASHES[: args["size"]]
    if args["leaf_hash"] not in leaves:
        pytest.skip("probe leaf is not one of the testonly leaves")
    produced = merkle.inclusion_proof_from_leaves(args["index"], leaves)
    assert list(produced.hashes) == args["proof"]
    assert merkle.root_from_leaf_hashes(leaves) == args["root"]


@pytest.mark.parametrize(
    "path", [p for p in CONSISTENCY_FILES if p.name == "happy-path.json"], ids=_id
)
def test_consistency_happy_path_is_what_we_produce(path: Path) -> None:
    vec = load_json(path)
    leaves = LEAF_HASHES[: vec["size2"]]
    produced = merkle.consistency_proof_from_leaves(vec["size1"], leaves)
    assert list(produced.hashes) == go_proof(vec["proof"])
    assert merkle.root_from_leaf_hashes(leaves[: vec["size1"]]) == go_bytes(vec["root1"])
    assert merkle.root_from_leaf_hashes(leaves) == go_bytes(vec["root2"])
