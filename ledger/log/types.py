"""Distinct byte types for the verifiable-log core.

Invariant: a ``LeafHash`` or a ``RootHash`` is always exactly 32 bytes of SHA-256 output
computed with RFC 6962 domain separation (0x00 for leaves, 0x01 for interior nodes), and a
``KeyID`` is always exactly the first 4 bytes of the SHA-256 key hash defined by C2SP
signed-note.  These are ``NewType``s: they cost nothing at run time and only the functions
that compute or validate such values (in ``ledger.log.merkle`` and ``ledger.log.note``) create them.
"""

from __future__ import annotations

from typing import Final, NewType

LeafHash = NewType("LeafHash", bytes)
"""RFC 6962 leaf hash: ``SHA-256(0x00 || leaf_bytes)``, 32 bytes."""

RootHash = NewType("RootHash", bytes)
"""RFC 6962 Merkle tree hash (MTH) of a whole tree, 32 bytes."""

KeyID = NewType("KeyID", bytes)
"""C2SP signed-note key ID: ``SHA-256(name || 0x0A || alg || key)[:4]``, 4 bytes."""

HASH_SIZE: Final = 32
"""Size in bytes of every Merkle hash (SHA-256)."""

KEY_ID_SIZE: Final = 4
"""Size in bytes of a signed-note key ID."""

__all__ = ["HASH_SIZE", "KEY_ID_SIZE", "KeyID", "LeafHash", "RootHash"]
