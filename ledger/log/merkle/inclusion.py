"""RFC 9162 inclusion proofs: the proof value, its production and its verification.

Invariant: the verifiers either return normally or raise ``VerificationError`` -- they
never assert and never return a boolean that could be ignored (RFC 9162 2.1.3.2).

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
from ledger.log.merkle.nodes import NodeID, inclusion_path_nodes, proof_hashes, range_hash
from ledger.log.types import HASH_SIZE, RootHash


@dataclass(frozen=True, slots=True, kw_only=True)
class InclusionProof:
    """RFC 9162 inclusion proof for leaf ``index`` in the tree of ``size`` leaves.

    Invariant: ``0 <= index < size <= MAX_TREE_SIZE`` and every hash is 32 bytes.  Whether the
    proof is *valid* is decided only by ``verify``.
    """

    index: int
    size: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        check_size(self.size, MalformedInputError)
        if type(self.index) is not int or not 0 <= self.index < self.size:
            raise MalformedInputError(f"leaf index {self.index!r} not in tree of size {self.size}")
        if not isinstance(self.hashes, tuple):
            raise MalformedInputError("proof hashes must be a tuple")
        check_hashes(self.hashes, "proof hash")

    def verify(self, *, leaf_hash: bytes, root: bytes) -> None:
        """Raise ``VerificationError`` unless this proves ``leaf_hash`` is under ``root``."""
        verify_inclusion(
            leaf_hash=leaf_hash, index=self.index, size=self.size, proof=self.hashes, root=root
        )


def inclusion_proof(
    *, index: int, size: int, subtree_hash: Callable[[NodeID], bytes]
) -> InclusionProof:
    """Build an inclusion proof from a lookup of stored perfect-subtree hashes."""
    refs = inclusion_path_nodes(index, size)
    return InclusionProof(index=index, size=size, hashes=proof_hashes(refs, subtree_hash))


def inclusion_proof_from_leaves(index: int, leaf_hashes: Sequence[bytes]) -> InclusionProof:
    """Inclusion proof for ``index`` computed directly from all leaf hashes (O(n))."""
    size = len(leaf_hashes)
    refs = inclusion_path_nodes(index, size)
    hashes = tuple(range_hash(leaf_hashes, ref) for ref in refs)
    return InclusionProof(index=index, size=size, hashes=hashes)


def root_from_inclusion_proof(
    *, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> RootHash:
    """The root that ``proof`` implies for ``leaf_hash`` at ``index`` (RFC 9162 2.1.3.2).

    Raises ``VerificationError`` if the arguments cannot describe a valid proof (index out of
    range, wrong hash length, proof too long or too short).
    """
    check_size(size, VerificationError)
    if type(index) is not int or not 0 <= index < size:
        raise VerificationError(f"leaf index {index!r} is beyond tree size {size}")
    if not isinstance(leaf_hash, bytes | bytearray) or len(leaf_hash) != HASH_SIZE:
        raise VerificationError(f"leaf hash must be {HASH_SIZE} bytes")
    check_proof(proof)
    fn, sn = index, size - 1
    r = bytes(leaf_hash)
    for p in proof:
        if sn == 0:
            raise VerificationError("inclusion proof has too many hashes")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise VerificationError("inclusion proof has too few hashes")
    return RootHash(r)


def verify_inclusion(
    *, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Return if ``proof`` shows ``leaf_hash`` at ``index`` under ``root``; else raise."""
    computed = root_from_inclusion_proof(leaf_hash=leaf_hash, index=index, size=size, proof=proof)
    if computed != root:
        raise VerificationError("inclusion proof does not lead to the expected root")
