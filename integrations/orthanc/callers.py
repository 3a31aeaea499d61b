"""Who made a request: the user, the client address, the purpose of use.

Invariant: runs on Orthanc's request threads, so it never blocks and never raises; a user
name comes from HTTP Basic (Orthanc checked the password) or, behind a trusted proxy, from
the configured user header; a purpose of use is an HL7 code or the configured default.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from integrations.orthanc.config import PluginConfig
from integrations.orthanc.routes import Route
from integrations.orthanc.transport import http_transport
from producers import PURPOSES_OF_USE, Transport


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Who made a request, from where, when, and which route."""

    user: str
    address: str | None
    at: datetime
    route: Route
    purpose: str | None
    authenticated: bool = True
    started: float = field(default_factory=time.monotonic)
    #: How the request reached Orthanc (None: not over the network, e.g. a Lua script).
    transport: Transport | None = None


def basic_user(authorization: str | None) -> str | None:
    """The login of an HTTP Basic ``Authorization`` header (Orthanc checked the password)."""
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, _ = decoded.partition(":")
    return user if sep and user else None


class Callers:
    """Builds the ``Context`` of a request, caching the user of each Authorization header."""

    def __init__(self, config: PluginConfig) -> None:
        self._config = config
        self._users: dict[str, str | None] = {}

    def context(self, route: Route, ip: str | None, headers: Mapping[str, str]) -> Context:
        authorization = headers.get("authorization")
        user = self._users.get(authorization) if authorization else None
        if user is None and authorization:
            user = basic_user(authorization)
            if len(self._users) > 1000:
                self._users.clear()
            self._users[authorization] = user
        address = ip
        config = self._config
        if config.user_header and ip in config.trusted_proxies:
            forwarded = headers.get(config.user_header.lower())
            if forwarded:
                user = forwarded.strip()
            hops = headers.get("x-forwarded-for")
            if hops:
                address = hops.split(",")[0].strip() or ip
        return Context(
            user=user or "anonymous",
            address=address,
            at=datetime.now(UTC),
            route=route,
            purpose=self._purpose(headers),
            authenticated=user is not None,
            transport=http_transport(config, ip, headers),
        )

    def _purpose(self, headers: Mapping[str, str]) -> str | None:
        """The request's ``X-Purpose-Of-Use`` (break-glass: ``ETREAT``, ``BTG``) when it is
        an HL7 PurposeOfUse code, else the configured ``PurposeOfUse``."""
        purpose = headers.get("x-purpose-of-use")
        if purpose not in PURPOSES_OF_USE:
            purpose = self._config.purpose_of_use
        return purpose
