"""How the CLI reaches the API: base URL, bearer token, trusted CA.

Invariant: the token travels only in the Authorization header of requests to the
configured API, is never printed, and https URLs are verified (system CAs, or
LEDGER_API_CA_FILE for a private CA).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import aiohttp


@dataclass(frozen=True, slots=True, kw_only=True)
class Api:
    url: str
    token: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    def session(self, timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientSession:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        connector = None
        if self.url.startswith("https://") and self.ca_file:
            connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=self.ca_file))
        return aiohttp.ClientSession(
            headers=headers,
            connector=connector,
            timeout=timeout or aiohttp.ClientTimeout(total=300),
        )
