"""The webhook sender: one HTTPS POST per attempt (the ``Sender`` port of
``ledger.audit.delivery``).

Invariant: TLS is verified against the destination's CA file (and its host name), no
redirect is followed, each request has a total timeout, and a failure is reduced to an
error class (``tls``, ``timeout``, ``connect``, ``error``): neither the response body nor
the request (signed, maybe naming a patient) is ever logged.
"""

from __future__ import annotations

import ssl
from types import TracebackType
from typing import Self

import aiohttp

from ledger.audit.delivery import Destination, Outcome


class WebhookSender:
    """Sessions per destination, opened on first use; ``close()`` (or ``async with``)
    closes them."""

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}

    async def send(self, destination: Destination, body: bytes, headers: dict[str, str]) -> Outcome:
        timeout = aiohttp.ClientTimeout(total=destination.timeout_seconds)
        try:
            session = self._session(destination)  # a CA file that is not PEM: tls
            async with session.post(
                destination.url, data=body, headers=headers, timeout=timeout,
                allow_redirects=False,
            ) as response:  # fmt: skip
                response.release()
                return Outcome(http_status=response.status)
        except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError):
            return Outcome(error_class="tls")
        except TimeoutError:
            return Outcome(error_class="timeout")
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, OSError):
            return Outcome(error_class="connect")
        except aiohttp.ClientError:
            return Outcome(error_class="error")

    def _session(self, d: Destination) -> aiohttp.ClientSession:
        session = self._sessions.get(d.name)
        if session is None:
            context = ssl.create_default_context(cafile=str(d.ca_file))
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=context), raise_for_status=False
            )
            self._sessions[d.name] = session
        return session

    async def close(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for s in sessions.values():
            await s.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
