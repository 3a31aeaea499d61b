"""Node addressing for proof production: which stored subtree hashes a proof needs.

Invariant: pure arithmetic over leaf ranges (RFC 9162 PATH and PROOF, in RFC 9162 order:
lowest level first, leaf sibling first). Terms:

* a *perfect subtree* (``NodeID``) is ``2**level`` leaves starting at ``index * 2**level``;
  storage layers persist exactly these hashes;
* a *node reference* (``NodeRef``) is a leaf range ``[begin, end)`` whose hash appears in a
  proof.  It is either a perfect subtree or, at the right edge of the tree, a non-perfect
  subtree whose hash is folded from the perfect subtrees returned by ``range_decomposition``
  (the "ephemeral" node of transparency-dev/merkle).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from ledger.errors import MalformedInputError
from ledger.log.merkle.hashing import (
    EMPTY_ROOT,
    check_hash,
    check_size,
    node_hash,
    root_from_leaf_hashes,
)
from ledger.log.types import RootHash


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
    check_size(size, MalformedInputError)
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
    check_size(size1, MalformedInputError)
    check_size(size2, MalformedInputError)
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
    check_hash(h, "subtree hash")
    for node in reversed(nodes[:-1]):
        left = subtree_hash(node)
        check_hash(left, "subtree hash")
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
    check_size(size, MalformedInputError)
    if size == 0:
        return EMPTY_ROOT
    return RootHash(hash_node_ref(NodeRef(begin=0, end=size), subtree_hash))


def range_hash(leaf_hashes: Sequence[bytes], ref: NodeRef) -> bytes:
    return root_from_leaf_hashes(leaf_hashes[ref.begin : ref.end])
