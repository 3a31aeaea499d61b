"""The verifiable audit ledger, in layers; each layer imports only the ones below it.

* ``ledger.log``: the pure transparency-log core (RFC 6962 Merkle trees, tiles, signed
  notes and checkpoints, the leaf format, signer keys);
* ``ledger.audit``: the pure audit domain on top of it (event records and their index
  projection, API tokens and roles, read attribution, producer authentication, reports,
  FHIR);
* ``ledger.verify``: the offline verifier and the export bundle format it reads;
* ``ledger.pg`` and ``ledger.http``: the adapters (PostgreSQL, the aiohttp API), which
  never import each other; the composition root (``ledgerctl``) wires them.

``ledger.errors`` holds the package's one error root, ``LedgerError``, which every layer
may import. The contracts are in ``pyproject.toml`` (``lint-imports``); the picture and
the reasons are in ``docs/architecture.md``.
"""
