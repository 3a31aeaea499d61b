"""The real client behind a trusted reverse proxy: ``X-Forwarded-For``/``-Proto``/``-Host``
are honoured only on connections from a configured proxy address.

Invariant: a request whose TCP peer is not a trusted proxy keeps its peer as its client,
whatever headers it sends (a client cannot name another address in the self-audit); from
a trusted proxy, aiohttp-remotes walks ``X-Forwarded-For`` from the right past trusted
hops to the first untrusted address. A malformed header from a trusted proxy is refused
(400) by the read-audit middleware, so the refusal is recorded like any other answer,
with the proxy's address. docs/api.md ("Behind a reverse proxy").
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from aiohttp_remotes import XForwardedFiltered
from aiohttp_remotes.exceptions import RemoteError

from ledger.errors import MalformedInputError
from ledger.http.common import FORWARDING_REFUSED

Network = IPv4Network | IPv6Network
#: Why a trusted proxy's request is refused (the read-audit middleware answers 400).
MALFORMED: Final = "the trusted proxy sent malformed or repeated X-Forwarded-* headers"


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustedProxies:
    """The addresses (or networks) of the reverse proxies in front of the API."""

    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> TrustedProxies:
        """``"10.0.0.5, 10.1.0.0/16, ::1"``; empty or None trusts nobody."""
        found: list[Network] = []
        for item in (text or "").replace(",", " ").split():
            try:
                found.append(ip_network(item, strict=False))
            except ValueError as exc:
                raise MalformedInputError(
                    f"LEDGER_TRUSTED_PROXIES: {item!r} is not an IP address or network"
                ) from exc
        return cls(networks=tuple(found))

    def trusts(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip: IPv4Address | IPv6Address = ip_address(address)
        except ValueError:
            return False  # a Unix socket peer, or no address at all
        return any(ip in n for n in self.networks)


def proxy_middleware(trusted: TrustedProxies) -> Middleware:
    """The outermost middleware: the request as the trusted proxy's client made it."""
    walker = XForwardedFiltered(set(trusted.networks))

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not trusted.trusts(request.remote):
            return await handler(request)
        reached = False

        async def inner(forwarded: web.Request) -> web.StreamResponse:
            nonlocal reached
            reached = True
            return await handler(forwarded)

        try:
            answer: web.StreamResponse = await walker.middleware(request, inner)
            return answer
        except (web.HTTPBadRequest, RemoteError):
            if reached:  # the handler's own 400, not the forwarding headers'
                raise
            request[FORWARDING_REFUSED] = MALFORMED
            return await handler(request)

    return middleware
