"""RFC 9162 consistency proofs: the proof value, its production and its verification.

Invariant: the verifiers either return normally or raise ``VerificationError`` -- they
never assert and never return a boolean that could be ignored (RFC 9162 2.1.4.2).

Caution for callers: as in every RFC 6962 implementation, a proof does not pin the tree size
by itself -- e.g. the proof for leaf 0 of a 3-leaf tree also verifies as "leaf 0 of 4 leaves"
against the same root, because proof hashes are opaque.  Always take ``size``/``size1``/
``size2`` and the roots from signed checkpoints, never from whoever supplies the proof.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ledger.errors import MalformedInputError, VerificationError
from ledger.log.merkle.hashing import check_hashes, check_proof, check_size, node_hash
from ledger.log.merkle.nodes import NodeID, consistency_path_nodes, proof_hashes, range_hash
from ledger.log.types import HASH_SIZE, RootHash


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyProof:
    """RFC 9162 consistency proof between tree sizes ``size1 <= size2``.

    Invariant: ``0 <= size1 <= size2 <= MAX_TREE_SIZE`` and every hash is 32 bytes.
    """

    size1: int
    size2: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        check_size(self.size1, MalformedInputError)
        check_size(self.size2, MalformedInputError)
        if self.size1 > self.size2:
            raise MalformedInputError(f"size1 {self.size1} > size2 {self.size2}")
        if not isinstance(self.hashes, tuple):
            raise MalformedInputError("proof hashes must be a tuple")
        check_hashes(self.hashes, "proof hash")

    def verify(self, *, root1: bytes, root2: bytes) -> None:
        """Raise ``VerificationError`` unless ``root2`` extends ``root1`` append-only."""
        verify_consistency(
            size1=self.size1, size2=self.size2, proof=self.hashes, root1=root1, root2=root2
        )


def consistency_proof(
    *, size1: int, size2: int, subtree_hash: Callable[[NodeID], bytes]
) -> ConsistencyProof:
    """Build a consistency proof from a lookup of stored perfect-subtree hashes."""
    refs = consistency_path_nodes(size1, size2)
    return ConsistencyProof(size1=size1, size2=size2, hashes=proof_hashes(refs, subtree_hash))


def consistency_proof_from_leaves(size1: int, leaf_hashes: Sequence[bytes]) -> ConsistencyProof:
    """Consistency proof from ``size1`` to ``len(leaf_hashes)`` computed from all leaves."""
    size2 = len(leaf_hashes)
    refs = consistency_path_nodes(size1, size2)
    hashes = tuple(range_hash(leaf_hashes, ref) for ref in refs)
    return ConsistencyProof(size1=size1, size2=size2, hashes=hashes)


def root_from_consistency_proof(
    *, size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> RootHash:
    """The size2 root implied by ``proof`` and ``root1`` (RFC 9162 2.1.4.2).

    Checks that ``proof`` also reproduces ``root1``.  Edge cases follow
    transparency-dev/merkle ``proof/verify.go``: ``size1 == size2`` needs an empty proof and
    yields ``root1``; any other proof from size 0 is meaningless and rejected.
    """
    check_size(size1, VerificationError)
    check_size(size2, VerificationError)
    if size2 < size1:
        raise VerificationError(f"size2 {size2} < size1 {size1}")
    if size1 == size2:
        if proof:
            raise VerificationError("size1 == size2 but the consistency proof is not empty")
        return RootHash(bytes(root1))
    if size1 == 0:
        raise VerificationError("a consistency proof from the empty tree is meaningless")
    if not proof:
        raise VerificationError("empty consistency proof")
    if not isinstance(root1, bytes | bytearray) or len(root1) != HASH_SIZE:
        raise VerificationError(f"root1 must be {HASH_SIZE} bytes")
    check_proof(proof)

    path: list[bytes] = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is the seed
        path.insert(0, bytes(root1))
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise VerificationError("consistency proof has too many hashes")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("consistency proof has too few hashes")
    if fr != root1:
        raise VerificationError("consistency proof does not reproduce root1")
    return RootHash(sr)


def verify_consistency(
    *, size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Return if ``proof`` shows the size2 tree extends the size1 tree; else raise."""
    computed = root_from_consistency_proof(size1=size1, size2=size2, proof=proof, root1=root1)
    if computed != root2:
        raise VerificationError("consistency proof does not lead to root2")
