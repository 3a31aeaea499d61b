"""Property tests for ledger.log.merkle: produced proofs verify, and every mutation is caught.

One subtlety is asserted rather than glossed over: an RFC 6962 proof does not pin the tree
size by itself.  A proof still verifies under another size exactly when that size gives the
proof the same *shape* (same number of hashes, each combined on the same side), because the
proof hashes are opaque.  The shapes below are derived from the producer's ranges
(``inclusion_path_nodes`` / ``consistency_path_nodes``), an independent code path from the
verifier's bit arithmetic, so "verifies iff same shape" cross-checks the two.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import MalformedInputError, VerificationError
from ledger.log import merkle
from ledger.log.merkle import NodeID, NodeRef

MAX_SIZE = 300


def leaves_for(size: int, seed: int) -> list[bytes]:
    """Distinct, deterministic leaf hashes."""
    return [merkle.leaf_hash(f"{seed}:{i}".encode()) for i in range(size)]


def naive_mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH, written directly from the recursive definition."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + naive_mth(hashes[:k]) + naive_mth(hashes[k:])).digest()


def all_perfect_nodes(hashes: list[bytes]) -> dict[NodeID, bytes]:
    """Every stored node of the tree, as a storage layer would have them."""
    table = {NodeID(level=0, index=i): h for i, h in enumerate(hashes)}
    level, row = 0, list(hashes)
    while len(row) > 1:
        row = [merkle.node_hash(row[i], row[i + 1]) for i in range(0, len(row) - 1, 2)]
        level += 1
        table.update({NodeID(level=level, index=i): h for i, h in enumerate(row)})
    return table


def inclusion_shape(index: int, size: int) -> tuple[bool, ...]:
    """For each proof hash: is it the left sibling?"""
    return tuple(ref.end <= index for ref in merkle.inclusion_path_nodes(index, size))


def consistency_shape(size1: int, size2: int) -> tuple[bool, tuple[bool, ...]]:
    """(size1 is a power of two, and for each later proof hash: is it a left sibling?)."""
    refs = merkle.consistency_path_nodes(size1, size2)
    power_of_two = size1 & (size1 - 1) == 0
    left_edge = 0 if power_of_two else refs[0].begin
    sides = []
    for ref in refs if power_of_two else refs[1:]:
        is_left = ref.end <= left_edge
        if is_left:
            left_edge = ref.begin
        sides.append(is_left)
    return power_of_two, tuple(sides)


def flip(proof: tuple[bytes, ...], element: int, bit: int) -> list[bytes]:
    out = list(proof)
    byte, mask = divmod(bit, 8)
    h = bytearray(out[element])
    h[byte] ^= 1 << mask
    out[element] = bytes(h)
    return out


sizes = st.integers(min_value=1, max_value=MAX_SIZE)
seeds = st.integers(min_value=0, max_value=2**32)


@st.composite
def tree_and_index(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(sizes)
    return leaves_for(size, draw(seeds)), draw(st.integers(min_value=0, max_value=size - 1))


@st.composite
def tree_and_size1(draw: st.DrawFn) -> tuple[list[bytes], int]:
    size = draw(st.integers(min_value=2, max_value=MAX_SIZE))
    return leaves_for(size, draw(seeds)), draw(st.integers(min_value=1, max_value=size - 1))


# --------------------------------------------------------------------------------------------
# Roots
# --------------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=MAX_SIZE), seeds)
def test_roots_agree(size: int, seed: int) -> None:
    hashes = leaves_for(size, seed)
    expected = naive_mth(hashes)
    assert merkle.root_from_leaf_hashes(hashes) == expected
    builder = merkle.TreeBuilder()
    for h in hashes:
        builder.append(h)
    assert builder.root() == expected
    assert len(builder.hashes) == size.bit_count()
    resumed = merkle.TreeBuilder.from_state(size=builder.size, hashes=builder.hashes)
    assert resumed.root() == expected
    assert merkle.root_from_subtrees(size, all_perfect_nodes(hashes).__getitem__) == expected


@given(st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=4), seeds)
@settings(max_examples=25, deadline=None)
def test_tree_builder_extend_in_pieces(pieces: list[int], seed: int) -> None:
    """extend() over chunk boundaries (4096) agrees with append() and the naive MTH."""
    hashes = leaves_for(sum(pieces), seed)
    builder = merkle.TreeBuilder()
    start = 0
    for n in pieces:
        builder.extend(iter(hashes[start : start + n]))
        start += n
        assert builder.size == start
        assert builder.root() == merkle.root_from_leaf_hashes(hashes[:start])
    assert builder.root() == naive_mth(hashes)


def test_tree_builder_rejects_bad_state() -> None:
    with pytest.raises(MalformedInputError):
        merkle.TreeBuilder.from_state(size=3, hashes=[b"\x00" * 32])
    with pytest.raises(MalformedInputError):
        merkle.TreeBuilder.from_state(size=1, hashes=[b"\x00" * 31])
    with pytest.raises(MalformedInputError):
        merkle.TreeBuilder().append(b"short")
    with pytest.raises(MalformedInputError):
        merkle.TreeBuilder().extend([b"\x00" * 32] * 4095 + [b"x"])
    with pytest.raises(MalformedInputError):
        merkle.TreeBuilder().extend([b"\x00" * 32] * 4096 + [b"x"] * 4096)


# --------------------------------------------------------------------------------------------
# Node addressing
# --------------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=2**40), st.integers(min_value=0, max_value=2**40))
def test_range_decomposition_is_an_exact_cover(a: int, b: int) -> None:
    begin, end = min(a, b), max(a, b)
    nodes = merkle.range_decomposition(begin, end)
    position = begin
    for node in nodes:
        assert node.begin == position
        assert node.begin % (1 << node.level) == 0
        position = node.end
    assert position == end
    assert len(nodes) <= 2 * max(1, (end - begin).bit_length())
    levels = [n.level for n in nodes]

    def monotone(xs: list[int], step: int) -> bool:
        return all((y - x) * step > 0 for x, y in itertools.pairwise(xs))

    # The compact range: levels strictly grow, then strictly shrink.
    assert any(monotone(levels[:p], 1) and monotone(levels[p:], -1) for p in range(len(levels) + 1))


@given(tree_and_index())
def test_inclusion_refs_partition_the_other_leaves(case: tuple[list[bytes], int]) -> None:
    hashes, index = case
    refs = merkle.inclusion_path_nodes(index, len(hashes))
    covered = sorted(i for ref in refs for i in range(ref.begin, ref.end))
    assert covered == [i for i in range(len(hashes)) if i != index]
    assert len(refs) <= len(hashes).bit_length()


def test_node_ref_rejects_ranges_that_are_not_tree_nodes() -> None:
    with pytest.raises(MalformedInputError):
        NodeRef(begin=1, end=3)  # begin not aligned to bit_ceil(2)
    with pytest.raises(MalformedInputError):
        NodeRef(begin=2, end=2)
    assert NodeRef(begin=4, end=7).nodes() == (
        NodeID(level=1, index=2),
        NodeID(level=0, index=6),
    )
    assert not NodeRef(begin=4, end=7).is_perfect
    assert NodeRef(begin=4, end=8).is_perfect


# --------------------------------------------------------------------------------------------
# Inclusion proofs
# --------------------------------------------------------------------------------------------


@given(tree_and_index())
def test_inclusion_proofs_verify(case: tuple[list[bytes], int]) -> None:
    hashes, index = case
    root = naive_mth(hashes)
    proof = merkle.inclusion_proof_from_leaves(index, hashes)
    proof.verify(leaf_hash=hashes[index], root=root)
    stored = merkle.inclusion_proof(
        index=index, size=len(hashes), subtree_hash=all_perfect_nodes(hashes).__getitem__
    )
    assert stored == proof


@given(tree_and_index(), st.data())
def test_inclusion_mutations_are_rejected(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    hashes, index = case
    size = len(hashes)
    root = naive_mth(hashes)
    proof = merkle.inclusion_proof_from_leaves(index, hashes).hashes
    leaf = hashes[index]

    def rejected(**changes: object) -> bool:
        args: dict[str, object] = {
            "leaf_hash": leaf,
            "index": index,
            "size": size,
            "proof": proof,
            "root": root,
        }
        args.update(changes)
        try:
            merkle.verify_inclusion(**args)  # type: ignore[arg-type]
        except VerificationError:
            return True
        return False

    if proof:
        element = data.draw(st.integers(0, len(proof) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        assert rejected(proof=flip(proof, element, bit))
        assert rejected(proof=list(proof[:-1]))
        assert rejected(proof=[h for i, h in enumerate(proof) if i != element])
    extra = data.draw(st.binary(min_size=32, max_size=32), label="extra")
    position = data.draw(st.integers(0, len(proof)), label="position")
    assert rejected(proof=[*proof[:position], extra, *proof[position:]])
    assert rejected(root=flip((root,), 0, data.draw(st.integers(0, 255)))[0])
    assert rejected(leaf_hash=merkle.leaf_hash(b"not in the tree"))

    other_index = data.draw(st.integers(-3, size + 3).filter(lambda i: i != index), label="i")
    assert rejected(index=other_index)

    other_size = data.draw(
        st.integers(0, 2 * MAX_SIZE + 3).filter(lambda s: s != size), label="size"
    )
    same_shape = index < other_size and inclusion_shape(index, other_size) == inclusion_shape(
        index, size
    )
    assert rejected(size=other_size) is not same_shape


def test_inclusion_proof_does_not_pin_the_size_by_itself() -> None:
    """Concrete instance: the proof for leaf 0 of 3 leaves also 'verifies' as size 4."""
    hashes = leaves_for(3, 0)
    proof = merkle.inclusion_proof_from_leaves(0, hashes)
    root = naive_mth(hashes)
    merkle.verify_inclusion(leaf_hash=hashes[0], index=0, size=4, proof=proof.hashes, root=root)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(leaf_hash=hashes[0], index=0, size=5, proof=proof.hashes, root=root)


# --------------------------------------------------------------------------------------------
# Consistency proofs
# --------------------------------------------------------------------------------------------


@given(tree_and_size1())
def test_consistency_proofs_verify(case: tuple[list[bytes], int]) -> None:
    hashes, size1 = case
    root1, root2 = naive_mth(hashes[:size1]), naive_mth(hashes)
    proof = merkle.consistency_proof_from_leaves(size1, hashes)
    proof.verify(root1=root1, root2=root2)
    stored = merkle.consistency_proof(
        size1=size1, size2=len(hashes), subtree_hash=all_perfect_nodes(hashes).__getitem__
    )
    assert stored == proof
    assert len(proof.hashes) <= len(hashes).bit_length() + 1


@given(st.integers(min_value=0, max_value=MAX_SIZE), seeds)
def test_equal_sizes_need_an_empty_proof_and_equal_roots(size: int, seed: int) -> None:
    root = naive_mth(leaves_for(size, seed))
    merkle.verify_consistency(size1=size, size2=size, proof=[], root1=root, root2=root)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(size1=size, size2=size, proof=[root], root1=root, root2=root)
    with pytest.raises(VerificationError):
        merkle.verify_consistency(
            size1=size, size2=size, proof=[], root1=root, root2=merkle.node_hash(root, root)
        )


@given(st.integers(min_value=1, max_value=MAX_SIZE), seeds)
def test_consistency_from_empty_tree_is_rejected(size: int, seed: int) -> None:
    root = naive_mth(leaves_for(size, seed))
    for proof in ([], [root]):
        with pytest.raises(VerificationError):
            merkle.verify_consistency(
                size1=0, size2=size, proof=proof, root1=merkle.EMPTY_ROOT, root2=root
            )
    with pytest.raises(MalformedInputError):
        merkle.consistency_path_nodes(0, size)


@given(tree_and_size1(), st.data())
def test_consistency_mutations_are_rejected(
    case: tuple[list[bytes], int], data: st.DataObject
) -> None:
    hashes, size1 = case
    size2 = len(hashes)
    root1, root2 = naive_mth(hashes[:size1]), naive_mth(hashes)
    proof = merkle.consistency_proof_from_leaves(size1, hashes).hashes

    def rejected(**changes: object) -> bool:
        args: dict[str, object] = {
            "size1": size1,
            "size2": size2,
            "proof": proof,
            "root1": root1,
            "root2": root2,
        }
        args.update(changes)
        try:
            merkle.verify_consistency(**args)  # type: ignore[arg-type]
        except VerificationError:
            return True
        return False

    element = data.draw(st.integers(0, len(proof) - 1), label="element")
    bit = data.draw(st.integers(0, 255), label="bit")
    assert rejected(proof=flip(proof, element, bit))
    assert rejected(proof=list(proof[:-1]))
    assert rejected(proof=[h for i, h in enumerate(proof) if i != element])
    extra = data.draw(st.binary(min_size=32, max_size=32), label="extra")
    position = data.draw(st.integers(0, len(proof)), label="position")
    assert rejected(proof=[*proof[:position], extra, *proof[position:]])
    assert rejected(root1=flip((root1,), 0, data.draw(st.integers(0, 255)))[0])
    assert rejected(root2=flip((root2,), 0, data.draw(st.integers(0, 255)))[0])
    assert rejected(root1=root2, root2=root1)

    shape = consistency_shape(size1, size2)
    new1 = data.draw(st.integers(-2, size2 + 2).filter(lambda s: s != size1), label="size1")
    expected_ok = 0 < new1 < size2 and consistency_shape(new1, size2) == shape
    assert rejected(size1=new1) is not expected_ok
    new2 = data.draw(st.integers(0, 2 * MAX_SIZE).filter(lambda s: s != size2), label="size2")
    expected_ok = size1 < new2 and consistency_shape(size1, new2) == shape
    assert rejected(size2=new2) is not expected_ok


def test_consistency_proof_does_not_pin_size2_by_itself() -> None:
    """Concrete instance: the 1 -> 3 proof also 'verifies' as 1 -> 4 with the same roots."""
    hashes = leaves_for(3, 0)
    proof = merkle.consistency_proof_from_leaves(1, hashes).hashes
    args = {"size1": 1, "proof": proof, "root1": hashes[0], "root2": naive_mth(hashes)}
    merkle.verify_consistency(size2=4, **args)  # type: ignore[arg-type]
    with pytest.raises(VerificationError):
        merkle.verify_consistency(size2=5, **args)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------------------------


def test_invalid_arguments() -> None:
    h = merkle.leaf_hash(b"x")
    with pytest.raises(MalformedInputError):
        merkle.inclusion_path_nodes(3, 3)
    with pytest.raises(MalformedInputError):
        merkle.inclusion_path_nodes(-1, 3)
    with pytest.raises(MalformedInputError):
        merkle.consistency_path_nodes(4, 3)
    with pytest.raises(MalformedInputError):
        merkle.InclusionProof(index=1, size=1, hashes=())
    with pytest.raises(MalformedInputError):
        merkle.InclusionProof(index=0, size=2, hashes=(b"short",))
    with pytest.raises(MalformedInputError):
        merkle.ConsistencyProof(size1=3, size2=2, hashes=())
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(leaf_hash=h, index=0, size=True, proof=[], root=h)
    with pytest.raises(VerificationError):
        merkle.verify_inclusion(leaf_hash=h, index=0, size=2**64, proof=[h] * 65, root=h)
    with pytest.raises(VerificationError):
        merkle.root_from_inclusion_proof(leaf_hash=h[:31], index=0, size=1, proof=[])
    assert bytes(merkle.root_from_inclusion_proof(leaf_hash=h, index=0, size=1, proof=[])) == h
