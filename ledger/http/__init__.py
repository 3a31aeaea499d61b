"""The ledger's HTTP API (aiohttp), an adapter over the ports of ``ledger.audit``.

Owns the route table and each route's permission (``app``), the handlers per resource
(``history``, ``proofs``, ``reports``, ``fhir``, ``ops``), the middleware chain that
authenticates and records every read (``middleware``), the request boundary (``boundary``,
``body``, ``common``), the OpenAPI document (``openapi``) and the serving loop
(``server``). It may import ``ledger.verify``, ``ledger.audit``, ``ledger.log``,
``ledger.errors`` and aiohttp; never ``ledger.pg`` (the composition root,
``ledgerctl.serve``, passes the PostgreSQL adapters in). Invariants: ``ledger.http.app``.
"""

from ledger.http.app import Route, create_app, routes

__all__ = ["Route", "create_app", "routes"]
