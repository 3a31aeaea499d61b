"""Reading syslog frames off one stream connection (TLS or plain TCP) into the intake.

Invariant: frames are taken in the framing the stream starts with (RFC 6587 3.4,
``framing.StreamDecoder``); each is queued (``Intake.put``, so a full intake stops the
reading and TCP pushes back on the sender). A frame that cannot be framed, a frame not
completed within ``frame_timeout_seconds`` of its first byte (a slow sender holding a
connection), and a partial frame when the connection ends, are queued to be kept and the
connection ends. A connection with nothing pending that stays idle for
``idle_timeout_seconds`` ends.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable
from typing import Final

from integrations.atna.framing import StreamDecoder
from integrations.atna.receiver.config import AtnaReceiverConfig
from integrations.atna.receiver.intake import Intake, Received
from integrations.atna.receiver.keeper import KeptWriter
from integrations.atna.receiver.stats import Counters
from integrations.atna.rfc5424 import Frame, FrameError

__all__ = ["READ_CHUNK", "StreamReader"]

# One logger name for all the receiver's log lines.
logger = logging.getLogger("integrations.atna.receiver")

READ_CHUNK: Final = 64 * 1024


class StreamReader:
    """Reads the frames of the connections of one listener (``transport``: tls or tcp)."""

    def __init__(
        self,
        config: AtnaReceiverConfig,
        intake: Intake,
        keeper: KeptWriter,
        counters: Counters,
        transport: str,
        count: Callable[[], None],
    ) -> None:
        self._config = config
        self._intake = intake
        self._keeper = keeper
        self._counters = counters
        self._transport = transport
        self._count = count

    def _received(self, data: bytes, peer: str | None, sender: str) -> Received:
        return Received(data, self._transport, peer, time.time(), sender)

    async def read(self, reader: asyncio.StreamReader, peer: str | None, sender: str) -> None:
        """Read frames off an authenticated connection until it ends, breaks or idles."""
        decoder = StreamDecoder(self._config.max_message_bytes)
        try:
            clean = await self._frames(reader, decoder, peer, sender)
        except asyncio.CancelledError:
            self._keep_tail(decoder, peer, sender)
            raise
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            logger.info("ATNA: %s connection from %s failed: %r", self._transport, peer, exc)
            self._keep_tail(decoder, peer, sender)
        else:
            await self._put(decoder.finish(clean=clean), peer, sender)

    async def _put(self, frame: Frame | FrameError | None, peer: str | None, sender: str) -> None:
        if frame is None:
            return
        self._count()
        item = self._received(frame.data, peer, sender)
        if isinstance(frame, FrameError):
            item.reason, item.detail = frame.reason, frame.detail
        await self._intake.put(item)

    async def _frames(
        self, reader: asyncio.StreamReader, decoder: StreamDecoder, peer: str | None, sender: str
    ) -> bool:
        """Read until the stream ends (True: cleanly), breaks or idles (False)."""
        cfg = self._config
        frame_started: float | None = None
        while True:
            timeout = cfg.idle_timeout_seconds
            if frame_started is not None:
                timeout = min(timeout, frame_started + cfg.frame_timeout_seconds - time.monotonic())
            try:
                async with asyncio.timeout(max(timeout, 0.0)):
                    data = await reader.read(READ_CHUNK)
            except TimeoutError:
                if decoder.pending:
                    await self._slow(decoder, peer, sender)
                else:
                    logger.info("ATNA: closing idle %s connection from %s", self._transport, peer)
                return False
            if not data:
                return True
            frames = decoder.feed(data)
            for frame in frames:
                if isinstance(frame, FrameError):
                    logger.warning(
                        "ATNA: closing %s connection from %s: %s",
                        self._transport,
                        peer,
                        frame.detail,
                    )
                await self._put(frame, peer, sender)
            if decoder.broken:
                return False
            # The deadline runs from the first byte of the frame now pending.
            if not decoder.pending:
                frame_started = None
            elif frames or frame_started is None:
                frame_started = time.monotonic()

    async def _slow(self, decoder: StreamDecoder, peer: str | None, sender: str) -> None:
        tail = decoder.finish(clean=False)
        limit = self._config.frame_timeout_seconds
        logger.warning(
            "ATNA: closing %s connection from %s: a frame not completed within %g s",
            self._transport,
            peer,
            limit,
        )
        if tail is not None:
            error = FrameError(
                "truncated", f"a frame not completed within {limit:g} s (slow sender)", tail.data
            )
            await self._put(error, peer, sender)

    def _keep_tail(self, decoder: StreamDecoder, peer: str | None, sender: str) -> None:
        """A connection ends abnormally: keep a partial frame without waiting for room."""
        tail = decoder.finish(clean=False)
        if tail is None:
            return
        self._count()
        item = self._received(tail.data, peer, sender)
        if isinstance(tail, FrameError):
            item.reason, item.detail = tail.reason, tail.detail
        if self._intake.offer(item) or self._keeper.offer(item):
            return
        self._counters.lost_at_stop += 1
        logger.error("ATNA: a partial frame from %s could not be kept (queues full)", peer)
