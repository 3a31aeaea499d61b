"""The HTTP transport of the witness protocol (the ``WitnessTransport`` port of
``ledger.log.witness``).

Invariant: no redirect is followed, each request has a total timeout, the answer body is
capped, and a transport failure becomes status 0 with an error class (``timeout``,
``connect``, ``error``), never an exception.
"""

from __future__ import annotations

from types import TracebackType
from typing import Final, Self

import aiohttp

from ledger.log.witness import WitnessAnswer

_MAX_ANSWER: Final = 64 * 1024


class HttpWitnessTransport:
    """One client session, opened on first use; ``close()`` (or ``async with``) closes it."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def post(self, url: str, body: bytes, *, timeout: float) -> WitnessAnswer:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                url, data=body, timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False, headers={"Content-Type": "text/plain"},
            ) as response:  # fmt: skip
                data = await response.content.read(_MAX_ANSWER)
                return WitnessAnswer(status=response.status, body=data)
        except TimeoutError:
            return WitnessAnswer(status=0, body=b"timeout")
        except (aiohttp.ClientConnectorError, aiohttp.ServerDisconnectedError, OSError):
            return WitnessAnswer(status=0, body=b"connect")
        except aiohttp.ClientError:
            return WitnessAnswer(status=0, body=b"error")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
