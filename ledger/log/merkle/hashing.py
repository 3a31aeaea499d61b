"""RFC 6962 hashing and tree roots: leaf and node hashes, the streaming tree head.

Invariant: everything here is pure.  No function performs I/O or keeps module-level mutable
state; every hash returned is 32 bytes of SHA-256 with RFC 6962 domain separation
(``0x00`` for leaves, ``0x01`` for interior nodes).  The argument checks shared by the
proof modules live here too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Final

from ledger.errors import MalformedInputError, VerificationError
from ledger.log.types import HASH_SIZE, LeafHash, RootHash

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


def check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes | bytearray) or len(value) != HASH_SIZE:
        raise MalformedInputError(f"{what} must be {HASH_SIZE} bytes")


def check_hashes(values: Sequence[bytes], what: str) -> None:
    # One C-level pass; a set of lengths other than {32} means a malformed element.
    if values and {*map(len, values)} != {HASH_SIZE}:
        raise MalformedInputError(f"every {what} must be {HASH_SIZE} bytes")


def check_size(size: int, error: type[MalformedInputError] | type[VerificationError]) -> None:
    if type(size) is not int or not 0 <= size <= MAX_TREE_SIZE:
        raise error(f"tree size must be an int in [0, 2**64), got {size!r}")


def check_proof(proof: Sequence[bytes]) -> None:
    for element in proof:
        if not isinstance(element, bytes | bytearray) or len(element) != HASH_SIZE:
            raise VerificationError(f"every proof hash must be {HASH_SIZE} bytes")


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
        check_size(size, MalformedInputError)
        if len(hashes) != size.bit_count():
            raise MalformedInputError(
                f"a tree of size {size} has {size.bit_count()} compact-range hashes, "
                f"got {len(hashes)}"
            )
        check_hashes(hashes, "compact-range hash")
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
        check_hash(leaf_hash, "leaf hash")
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
                check_hashes(chunk, "leaf hash")
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
