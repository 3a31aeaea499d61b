"""RFC 6962 / RFC 9162 Merkle trees: hashing, proof construction and proof verification.

Owns the tree algorithms, pure: ``hashing`` (leaf and node hashes, ``TreeBuilder``, tree
roots), ``nodes`` (which perfect subtrees a proof needs), ``inclusion`` and
``consistency`` (each proof's value, production and verification; verifiers raise
``VerificationError``, never return a boolean). Proofs are in RFC 9162 order (lowest
level first, leaf sibling first); tests/vectors pin them. May import the standard
library, ``ledger.log.types`` and ``ledger.errors`` only. Import the package
(``from ledger.log import merkle``; ``merkle.leaf_hash``): it re-exports every name.
"""

from ledger.log.merkle.consistency import (
    ConsistencyProof,
    consistency_proof,
    consistency_proof_from_leaves,
    root_from_consistency_proof,
    verify_consistency,
)
from ledger.log.merkle.hashing import (
    EMPTY_ROOT,
    MAX_TREE_SIZE,
    TreeBuilder,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    root_from_leaves,
)
from ledger.log.merkle.inclusion import (
    InclusionProof,
    inclusion_proof,
    inclusion_proof_from_leaves,
    root_from_inclusion_proof,
    verify_inclusion,
)
from ledger.log.merkle.nodes import (
    NodeID,
    NodeRef,
    consistency_path_nodes,
    hash_node_ref,
    inclusion_path_nodes,
    perfect_nodes,
    proof_hashes,
    range_decomposition,
    root_from_subtrees,
)

__all__ = [
    "EMPTY_ROOT",
    "MAX_TREE_SIZE",
    "ConsistencyProof",
    "InclusionProof",
    "NodeID",
    "NodeRef",
    "TreeBuilder",
    "consistency_path_nodes",
    "consistency_proof",
    "consistency_proof_from_leaves",
    "hash_node_ref",
    "inclusion_path_nodes",
    "inclusion_proof",
    "inclusion_proof_from_leaves",
    "leaf_hash",
    "node_hash",
    "perfect_nodes",
    "proof_hashes",
    "range_decomposition",
    "root_from_consistency_proof",
    "root_from_inclusion_proof",
    "root_from_leaf_hashes",
    "root_from_leaves",
    "root_from_subtrees",
    "verify_consistency",
    "verify_inclusion",
]
