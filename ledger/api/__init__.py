"""The ledger's HTTP API (aiohttp): see ``ledger.api.app`` for the invariants."""

from ledger.api.app import Route, create_app, routes

__all__ = ["Route", "create_app", "routes"]
