"""The ledger's HTTP API (aiohttp): see ``ledger.http.app`` for the invariants."""

from ledger.http.app import Route, create_app, routes

__all__ = ["Route", "create_app", "routes"]
