"""The pure core: an RFC 6962 Merkle log with tiles and Ed25519-signed C2SP checkpoints.

Owns the tree hashing and proofs (``merkle``), tile addressing (``tiles``), signed notes
and checkpoints (``note``, ``checkpoint``), the leaf format (``leaf``), signer key files
(``keys``) and the hash/key-id types (``types``). It imports the standard library, the
crypto binding and ``ledger.errors`` only: nothing else of this product, no database, no
HTTP. Everything about audit events lives one layer up, in ``ledger.audit``.
"""
