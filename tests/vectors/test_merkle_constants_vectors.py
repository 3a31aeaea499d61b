"""Known answers from transparency-dev/merkle testonly/constants.go (sizes 0..8)."""

from __future__ import annotations

import pytest

from ledger.log import merkle
from ledger.log.merkle import NodeID
from tests.vectors._load import MERKLE_DIR, load_json

VEC = load_json(MERKLE_DIR / "testonly_constants.json")
LEAVES = [bytes.fromhex(x) for x in VEC["leaf_inputs_hex"]]
LEAF_HASHES = [merkle.leaf_hash(leaf) for leaf in LEAVES]
ROOTS = [bytes.fromhex(x) for x in VEC["root_hashes_hex"]]
NODES = {
    NodeID(level=level, index=index): bytes.fromhex(h)
    for level, row in enumerate(VEC["node_hashes_hex"])
    for index, h in enumerate(row)
}


def test_empty_root() -> None:
    assert ROOTS[0] == merkle.EMPTY_ROOT
    assert merkle.root_from_leaf_hashes([]) == ROOTS[0]
    assert merkle.TreeBuilder().root() == ROOTS[0]


def test_leaf_hashes_are_level_zero_node_hashes() -> None:
    assert [NODES[NodeID(level=0, index=i)] for i in range(8)] == LEAF_HASHES


def test_interior_node_hashes() -> None:
    for node, expected in NODES.items():
        if node.level == 0:
            continue
        left = NODES[NodeID(level=node.level - 1, index=2 * node.index)]
        right = NODES[NodeID(level=node.level - 1, index=2 * node.index + 1)]
        assert merkle.node_hash(left, right) == expected


@pytest.mark.parametrize("size", range(9))
def test_roots(size: int) -> None:
    assert merkle.root_from_leaf_hashes(LEAF_HASHES[:size]) == ROOTS[size]
    assert merkle.root_from_leaves(LEAVES[:size]) == ROOTS[size]
    builder = merkle.TreeBuilder()
    for h in LEAF_HASHES[:size]:
        builder.append(h)
    assert builder.size == size
    assert builder.root() == ROOTS[size]
    assert merkle.root_from_subtrees(size, NODES.__getitem__) == ROOTS[size]


@pytest.mark.parametrize("size", range(9))
def test_compact_trees(size: int) -> None:
    """CompactTrees(): the right-edge stack of TreeBuilder and the range decomposition."""
    expected_nodes = [NodeID(level=lv, index=ix) for lv, ix in VEC["compact_trees_nodes"][size]]
    assert merkle.range_decomposition(0, size) == expected_nodes
    builder = merkle.TreeBuilder()
    builder.extend(LEAF_HASHES[:size])
    assert builder.hashes == tuple(NODES[n] for n in expected_nodes)
    resumed = merkle.TreeBuilder.from_state(size=size, hashes=builder.hashes)
    assert resumed.root() == ROOTS[size]


@pytest.mark.parametrize("size", range(1, 9))
def test_proofs_from_stored_nodes_match_proofs_from_leaves(size: int) -> None:
    """Storage-style production (perfect nodes only) equals direct production and verifies."""
    for index in range(size):
        stored = merkle.inclusion_proof(index=index, size=size, subtree_hash=NODES.__getitem__)
        direct = merkle.inclusion_proof_from_leaves(index, LEAF_HASHES[:size])
        assert stored == direct
        stored.verify(leaf_hash=LEAF_HASHES[index], root=ROOTS[size])
    for size1 in range(1, size + 1):
        refs = merkle.consistency_path_nodes(size1, size)
        batch = {n: NODES[n] for n in merkle.perfect_nodes(refs)}
        hashes = merkle.proof_hashes(refs, batch)
        direct_c = merkle.consistency_proof_from_leaves(size1, LEAF_HASHES[:size])
        assert hashes == direct_c.hashes
        direct_c.verify(root1=ROOTS[size1], root2=ROOTS[size])
