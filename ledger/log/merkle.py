"""RFC 6962 / RFC 9162 Merkle trees: hashing, proof construction and proof verification.

Invariant: everything here is pure.  No function performs I/O or keeps module-level mutable
state; every hash returned is 32 bytes of SHA-256 with RFC 6962 domain separation
(``0x00`` for leaves, ``0x01`` for interior nodes); proofs are produced in RFC 9162 order
(lowest level first, leaf sibling first); and the verifiers either return normally or raise
``VerificationError`` -- they never assert and never return a boolean that could be ignored.

Terms used below:

* a *perfect subtree* (``NodeID``) is ``2**level`` leaves starting at ``index * 2**level``;
  storage layers persist exactly these hashes;
* a *node reference* (``NodeRef``) is a leaf range ``[begin, end)`` whose hash appears in a
  proof.  It is either a perfect subtree or, at the right edge of the tree, a non-perfect
  subtree whose hash is folded from the perfect subtrees returned by ``range_decomposition``
  (the "ephemeral" node of transparency-dev/merkle).

Caution for callers: as in every RFC 6962 implementation, a proof does not pin the tree size
by itself -- e.g. the proof for leaf 0 of a 3-leaf tree also verifies as "leaf 0 of 4 leaves"
against the same root, because proof hashes are opaque.  Always take ``size``/``size1``/
``size2`` and the roots from signed checkpoints, never from whoever supplies the proof.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Final

from ledger.errors import MalformedInputError, VerificationError
from ledger.log.types import HASH_SIZE, LeafHash, RootHash

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

_sha256: Final = hashlib.sha256
_LEAF: Final = b"\x00"
_NODE: Final = b"\x01"

MAX_TREE_SIZE: Final = (1 << 64) - 1
"""Largest tree size accepted: sizes and indexes are uint64 in every interoperable format."""

EMPTY_ROOT: Final = RootHash(_sha256(b"").digest())
"""MTH of the empty tree: ``SHA-256("")`` (e3b0c442...b855)."""

# root_from_leaf_hashes / TreeBuilder.extend hash aligned chunks of 2**_CHUNK_LEVEL leaf hashes
# level by level with one list comprehension per level; memory stays O(chunk + log n).
_CHUNK_LEVEL: Final = 12
_CHUNK: Final = 1 << _CHUNK_LEVEL


# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------


def leaf_hash(leaf: bytes) -> LeafHash:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || leaf)``."""
    return LeafHash(_sha256(_LEAF + leaf).digest())


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``."""
    return _sha256(_NODE + left + right).digest()


def _perfect_root(level: list[bytes]) -> bytes:
    """MTH of a list whose length is a power of two (>= 1), computed level by level."""
    sha = _sha256
    prefix = _NODE
    while len(level) > 1:
        level = [
            sha(prefix + a + b).digest() for a, b in zip(level[0::2], level[1::2], strict=True)
        ]
    return level[0]


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise MalformedInputError(f"{what} must be {HASH_SIZE} bytes")


def _check_hashes(values: Sequence[bytes], what: str) -> None:
    # One C-level pass; a set of lengths other than {32} means a malformed element.
    if values and {*map(len, values)} != {HASH_SIZE}:
        raise MalformedInputError(f"every {what} must be {HASH_SIZE} bytes")


# --------------------------------------------------------------------------------------------
# Streaming root computation
# --------------------------------------------------------------------------------------------


class TreeBuilder:
    """Incremental RFC 6962 tree head: the compact range ``[0, size)``.

    Keeps only the right-edge stack, one perfect-subtree hash per set bit of ``size``
    (largest subtree first), so a verifier can stream any number of leaves in O(log n)
    memory.  ``root()`` is always the MTH of the leaves appended so far.
    """

    __slots__ = ("_size", "_stack")

    def __init__(self) -> None:
        self._size = 0
        self._stack: list[bytes] = []

    @classmethod
    def from_state(cls, *, size: int, hashes: Sequence[bytes]) -> TreeBuilder:
        """Resume from a saved ``(size, hashes)`` state (see ``hashes``)."""
        _check_size(size, MalformedInputError)
        if len(hashes) != size.bit_count():
            raise MalformedInputError(
                f"a tree of size {size} has {size.bit_count()} compact-range hashes, "
                f"got {len(hashes)}"
            )
        _check_hashes(hashes, "compact-range hash")
        builder = cls()
        builder._size = size
        builder._stack = [bytes(h) for h in hashes]
        return builder

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Perfect-subtree hashes covering ``[0, size)``, leftmost (largest) first."""
        return tuple(self._stack)

    def append(self, leaf_hash: bytes) -> None:
        """Append one leaf given by its leaf hash (not the raw leaf bytes)."""
        _check_hash(leaf_hash, "leaf hash")
        self._push(bytes(leaf_hash), 0)

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes; aligned chunks are hashed level by level (fast path)."""
        it: Iterator[bytes] = iter(leaf_hashes)
        # Align the size to a chunk boundary with single appends.
        while self._size & (_CHUNK - 1):
            head = list(islice(it, 1))
            if not head:
                return
            self.append(head[0])
        while True:
            chunk = list(islice(it, _CHUNK))
            if len(chunk) == _CHUNK:
                _check_hashes(chunk, "leaf hash")
                self._push(_perfect_root(chunk), _CHUNK_LEVEL)
                continue
            for h in chunk:
                self.append(h)
            return

    def _push(self, subtree: bytes, level: int) -> None:
        """Add a perfect subtree of ``2**level`` leaves; requires ``size % 2**level == 0``."""
        stack = self._stack
        carry = self._size >> level
        h = subtree
        while carry & 1:
            h = _sha256(_NODE + stack.pop() + h).digest()
            carry >>= 1
        stack.append(h)
        self._size += 1 << level

    def root(self) -> RootHash:
        """MTH of the leaves appended so far (``EMPTY_ROOT`` when there are none)."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        h = stack[-1]
        for left in reversed(stack[:-1]):
            h = _sha256(_NODE + left + h).digest()
        return RootHash(h)

    def __repr__(self) -> str:
        return f"TreeBuilder(size={self._size})"


def root_from_leaf_hashes(hashes: Iterable[bytes]) -> RootHash:
    """MTH of a list of leaf hashes: O(n) hashes, O(log n) extra memory (plus one chunk)."""
    builder = TreeBuilder()
    builder.extend(hashes)
    return builder.root()


def root_from_leaves(leaves: Iterable[bytes]) -> RootHash:
    """MTH of raw leaves (each is leaf-hashed first)."""
    sha = _sha256
    prefix = _LEAF
    return root_from_leaf_hashes(sha(prefix + leaf).digest() for leaf in leaves)


# --------------------------------------------------------------------------------------------
# Node addressing for proof production
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeID:
    """A perfect subtree: ``2**level`` leaves starting at leaf ``index * 2**level``."""

    level: int
    index: int

    def __post_init__(self) -> None:
        if type(self.level) is not int or not 0 <= self.level <= 64:
            raise MalformedInputError(f"node level must be an int in [0, 64], got {self.level!r}")
        if type(self.index) is not int or self.index < 0:
            raise MalformedInputError(f"node index must be a non-negative int, got {self.index!r}")

    @property
    def begin(self) -> int:
        """First leaf covered (inclusive)."""
        return self.index << self.level

    @property
    def end(self) -> int:
        """Last leaf covered (exclusive)."""
        return (self.index + 1) << self.level


def _bit_ceil(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << (n - 1).bit_length()


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRef:
    """The leaf range ``[begin, end)`` whose MTH is one element of a proof.

    Invariant: ``0 <= begin < end`` and ``begin`` is a multiple of the smallest power of two
    >= ``end - begin``; such a range is a node of the RFC 6962 recursion, so its hash is the
    right fold of the perfect subtrees of ``range_decomposition(begin, end)``.
    """

    begin: int
    end: int

    def __post_init__(self) -> None:
        if type(self.begin) is not int or type(self.end) is not int:
            raise MalformedInputError("node range bounds must be ints")
        if not 0 <= self.begin < self.end:
            raise MalformedInputError(f"invalid node range [{self.begin}, {self.end})")
        if self.begin % _bit_ceil(self.end - self.begin):
            raise MalformedInputError(
                f"[{self.begin}, {self.end}) is not a subtree of an RFC 6962 tree"
            )

    @property
    def is_perfect(self) -> bool:
        """True when the range is a single stored perfect subtree."""
        n = self.end - self.begin
        return n & (n - 1) == 0

    def nodes(self) -> tuple[NodeID, ...]:
        """The perfect subtrees whose hashes determine this node, left to right."""
        return tuple(range_decomposition(self.begin, self.end))


def range_decomposition(begin: int, end: int) -> list[NodeID]:
    """Split ``[begin, end)`` into the minimal list of perfect subtrees, left to right.

    This is the compact range of transparency-dev/merkle: sizes first grow (alignment of
    ``begin``) and then shrink (binary expansion of what remains).  ``[0, 0)`` and any other
    empty range decompose to ``[]``.
    """
    if type(begin) is not int or type(end) is not int or not 0 <= begin <= end:
        raise MalformedInputError(f"invalid leaf range [{begin!r}, {end!r})")
    out: list[NodeID] = []
    while begin < end:
        largest = 1 << ((end - begin).bit_length() - 1)  # largest power of two that fits
        size = min(begin & -begin, largest) if begin else largest
        level = size.bit_length() - 1
        out.append(NodeID(level=level, index=begin >> level))
        begin += size
    return out


def _largest_power_of_two_below(n: int) -> int:
    """The RFC 6962 split point k: the largest power of two strictly less than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_path_nodes(index: int, size: int) -> list[NodeRef]:
    """Ranges whose hashes form RFC 9162 PATH(index, D[0:size]), leaf sibling first."""
    _check_size(size, MalformedInputError)
    if type(index) is not int or not 0 <= index < size:
        raise MalformedInputError(f"leaf index {index!r} is not in a tree of size {size}")
    refs: list[NodeRef] = []
    begin, end = 0, size
    while end - begin > 1:
        mid = begin + _largest_power_of_two_below(end - begin)
        if index < mid:
            refs.append(NodeRef(begin=mid, end=end))
            end = mid
        else:
            refs.append(NodeRef(begin=begin, end=mid))
            begin = mid
    refs.reverse()
    return refs


def consistency_path_nodes(size1: int, size2: int) -> list[NodeRef]:
    """Ranges whose hashes form RFC 9162 PROOF(size1, D[0:size2]); ``[]`` when equal.

    Requires ``0 < size1 <= size2``: a consistency proof from the empty tree is meaningless
    (as in transparency-dev/merkle), so ``size1 == 0`` raises ``MalformedInputError``.
    """
    _check_size(size1, MalformedInputError)
    _check_size(size2, MalformedInputError)
    if size1 > size2:
        raise MalformedInputError(f"size1 {size1} > size2 {size2}")
    if size1 == 0:
        raise MalformedInputError("a consistency proof from the empty tree is meaningless")
    refs: list[NodeRef] = []
    m, begin, end, complete = size1, 0, size2, True
    while m != end - begin:  # SUBPROOF(m, D[begin:end], complete)
        mid = begin + _largest_power_of_two_below(end - begin)
        if m <= mid - begin:
            refs.append(NodeRef(begin=mid, end=end))
            end = mid
        else:
            refs.append(NodeRef(begin=begin, end=mid))
            m -= mid - begin
            begin = mid
            complete = False
    if not complete:
        refs.append(NodeRef(begin=begin, end=end))
    refs.reverse()
    return refs


def perfect_nodes(refs: Iterable[NodeRef]) -> list[NodeID]:
    """Every perfect subtree needed to compute ``refs``, deduplicated, in first-use order.

    A storage layer fetches exactly these (O(log n) of them) in one batch, then calls
    ``proof_hashes``.
    """
    seen: dict[NodeID, None] = {}
    for ref in refs:
        for node in range_decomposition(ref.begin, ref.end):
            seen.setdefault(node, None)
    return list(seen)


def hash_node_ref(ref: NodeRef, subtree_hash: Callable[[NodeID], bytes]) -> bytes:
    """Hash of ``ref`` from the hashes of its perfect subtrees (right fold)."""
    nodes = range_decomposition(ref.begin, ref.end)
    h = subtree_hash(nodes[-1])
    _check_hash(h, "subtree hash")
    for node in reversed(nodes[:-1]):
        left = subtree_hash(node)
        _check_hash(left, "subtree hash")
        h = node_hash(left, h)
    return h


def proof_hashes(
    refs: Sequence[NodeRef], hashes: Mapping[NodeID, bytes] | Callable[[NodeID], bytes]
) -> tuple[bytes, ...]:
    """Assemble proof hashes from perfect-subtree hashes (a mapping or a lookup callable)."""
    if isinstance(hashes, Mapping):
        table = hashes

        def lookup(node: NodeID) -> bytes:
            try:
                return table[node]
            except KeyError as exc:
                raise MalformedInputError(f"missing hash for {node}") from exc

        return tuple(hash_node_ref(ref, lookup) for ref in refs)
    return tuple(hash_node_ref(ref, hashes) for ref in refs)


def root_from_subtrees(size: int, subtree_hash: Callable[[NodeID], bytes]) -> RootHash:
    """MTH of the tree of ``size`` leaves from stored perfect-subtree hashes."""
    _check_size(size, MalformedInputError)
    if size == 0:
        return EMPTY_ROOT
    return RootHash(hash_node_ref(NodeRef(begin=0, end=size), subtree_hash))


# --------------------------------------------------------------------------------------------
# Proof values
# --------------------------------------------------------------------------------------------


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
        _check_size(self.size, MalformedInputError)
        if type(self.index) is not int or not 0 <= self.index < self.size:
            raise MalformedInputError(f"leaf index {self.index!r} not in tree of size {self.size}")
        if not isinstance(self.hashes, tuple):
            raise MalformedInputError("proof hashes must be a tuple")
        _check_hashes(self.hashes, "proof hash")

    def verify(self, *, leaf_hash: bytes, root: bytes) -> None:
        """Raise ``VerificationError`` unless this proves ``leaf_hash`` is under ``root``."""
        verify_inclusion(
            leaf_hash=leaf_hash, index=self.index, size=self.size, proof=self.hashes, root=root
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistencyProof:
    """RFC 9162 consistency proof between tree sizes ``size1 <= size2``.

    Invariant: ``0 <= size1 <= size2 <= MAX_TREE_SIZE`` and every hash is 32 bytes.
    """

    size1: int
    size2: int
    hashes: tuple[bytes, ...]

    def __post_init__(self) -> None:
        _check_size(self.size1, MalformedInputError)
        _check_size(self.size2, MalformedInputError)
        if self.size1 > self.size2:
            raise MalformedInputError(f"size1 {self.size1} > size2 {self.size2}")
        if not isinstance(self.hashes, tuple):
            raise MalformedInputError("proof hashes must be a tuple")
        _check_hashes(self.hashes, "proof hash")

    def verify(self, *, root1: bytes, root2: bytes) -> None:
        """Raise ``VerificationError`` unless ``root2`` extends ``root1`` append-only."""
        verify_consistency(
            size1=self.size1, size2=self.size2, proof=self.hashes, root1=root1, root2=root2
        )


# --------------------------------------------------------------------------------------------
# Proof production
# --------------------------------------------------------------------------------------------


def inclusion_proof(
    *, index: int, size: int, subtree_hash: Callable[[NodeID], bytes]
) -> InclusionProof:
    """Build an inclusion proof from a lookup of stored perfect-subtree hashes."""
    refs = inclusion_path_nodes(index, size)
    return InclusionProof(index=index, size=size, hashes=proof_hashes(refs, subtree_hash))


def consistency_proof(
    *, size1: int, size2: int, subtree_hash: Callable[[NodeID], bytes]
) -> ConsistencyProof:
    """Build a consistency proof from a lookup of stored perfect-subtree hashes."""
    refs = consistency_path_nodes(size1, size2)
    return ConsistencyProof(size1=size1, size2=size2, hashes=proof_hashes(refs, subtree_hash))


def _range_hash(leaf_hashes: Sequence[bytes], ref: NodeRef) -> bytes:
    return root_from_leaf_hashes(leaf_hashes[ref.begin : ref.end])


def inclusion_proof_from_leaves(index: int, leaf_hashes: Sequence[bytes]) -> InclusionProof:
    """Inclusion proof for ``index`` computed directly from all leaf hashes (O(n))."""
    size = len(leaf_hashes)
    refs = inclusion_path_nodes(index, size)
    hashes = tuple(_range_hash(leaf_hashes, ref) for ref in refs)
    return InclusionProof(index=index, size=size, hashes=hashes)


def consistency_proof_from_leaves(size1: int, leaf_hashes: Sequence[bytes]) -> ConsistencyProof:
    """Consistency proof from ``size1`` to ``len(leaf_hashes)`` computed from all leaves."""
    size2 = len(leaf_hashes)
    refs = consistency_path_nodes(size1, size2)
    hashes = tuple(_range_hash(leaf_hashes, ref) for ref in refs)
    return ConsistencyProof(size1=size1, size2=size2, hashes=hashes)


# --------------------------------------------------------------------------------------------
# Verification (RFC 9162 sections 2.1.3.2 and 2.1.4.2)
# --------------------------------------------------------------------------------------------


def _check_size(size: int, error: type[MalformedInputError] | type[VerificationError]) -> None:
    if type(size) is not int or not 0 <= size <= MAX_TREE_SIZE:
        raise error(f"tree size must be an int in [0, 2**64), got {size!r}")


def _check_proof(proof: Sequence[bytes]) -> None:
    for element in proof:
        if not isinstance(element, bytes | bytearray) or len(element) != HASH_SIZE:
            raise VerificationError(f"every proof hash must be {HASH_SIZE} bytes")


def root_from_inclusion_proof(
    *, leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> RootHash:
    """The root that ``proof`` implies for ``leaf_hash`` at ``index`` (RFC 9162 2.1.3.2).

    Raises ``VerificationError`` if the arguments cannot describe a valid proof (index out of
    range, wrong hash length, proof too long or too short).
    """
    _check_size(size, VerificationError)
    if type(index) is not int or not 0 <= index < size:
        raise VerificationError(f"leaf index {index!r} is beyond tree size {size}")
    if not isinstance(leaf_hash, bytes | bytearray) or len(leaf_hash) != HASH_SIZE:
        raise VerificationError(f"leaf hash must be {HASH_SIZE} bytes")
    _check_proof(proof)
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


def root_from_consistency_proof(
    *, size1: int, size2: int, proof: Sequence[bytes], root1: bytes
) -> RootHash:
    """The size2 root implied by ``proof`` and ``root1`` (RFC 9162 2.1.4.2).

    Checks that ``proof`` also reproduces ``root1``.  Edge cases follow
    transparency-dev/merkle ``proof/verify.go``: ``size1 == size2`` needs an empty proof and
    yields ``root1``; any other proof from size 0 is meaningless and rejected.
    """
    _check_size(size1, VerificationError)
    _check_size(size2, VerificationError)
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
    _check_proof(proof)

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
