"""Sending alerts to syslog receivers over TLS (RFC 5425): the syslog side of the
``Sender`` port.

Invariant: one TLS connection per destination, verified against its CA file and host
name, reopened when the receiver closed it; a message counts as sent once written and
flushed within the timeout (syslog has no acknowledgement: see docs/design/compliance.md,
"Delivery"); a failure closes the connection and is reduced to an error class, never
logged with the message (which may name a patient).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from ledger.audit.delivery import Outcome, SyslogDestination


class SyslogSender:
    def __init__(self) -> None:
        self._streams: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    async def send(self, d: SyslogDestination, frame: bytes) -> Outcome:
        try:
            async with asyncio.timeout(d.timeout_seconds):
                writer = await self._writer(d)
                writer.write(frame)
                await writer.drain()
        except ssl.SSLError:
            await self._drop(d.name)
            return Outcome(error_class="tls")
        except TimeoutError:
            await self._drop(d.name)
            return Outcome(error_class="timeout")
        except OSError:
            await self._drop(d.name)
            return Outcome(error_class="connect")
        return Outcome()

    async def _writer(self, d: SyslogDestination) -> asyncio.StreamWriter:
        open_ = self._streams.get(d.name)
        if open_ is not None:
            reader, writer = open_
            if not reader.at_eof() and not writer.is_closing():
                return writer
            await self._drop(d.name)
        context = ssl.create_default_context(cafile=str(d.ca_file))
        reader, writer = await asyncio.open_connection(
            d.host, d.port, ssl=context, server_hostname=d.host
        )
        self._streams[d.name] = (reader, writer)
        return writer

    async def _drop(self, name: str) -> None:
        open_ = self._streams.pop(name, None)
        if open_ is not None:
            open_[1].close()
            with contextlib.suppress(OSError, ssl.SSLError):
                await open_[1].wait_closed()

    async def close(self) -> None:
        for name in list(self._streams):
            await self._drop(name)
