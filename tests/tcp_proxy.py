"""A cuttable asyncio TCP proxy in front of the real Kafka broker, for fault tests.

Invariant: while it is ``restore()``-d the proxy forwards bytes unchanged in both
directions, except that it rewrites the broker port in Metadata responses to its own
port, so a Kafka client bootstrapped through it keeps talking through it (the broker
advertises its real address, which the client would otherwise dial directly). After
``cut()`` every connection is closed and new ones are refused (nothing listens); after
``stall()`` connections stay open but no byte moves until ``resume()``: a slow Kafka.

In front of a TLS listener the proxy must see the Kafka frames to rewrite them, so it
terminates TLS (``server_tls``: a context with the broker's own certificate, which only a
test harness holding the local stack's secrets has) and speaks TLS to the broker
(``client_tls``); SASL authentication passes through it unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from collections.abc import Coroutine
from types import TracebackType
from typing import Self

_METADATA = 3  # Kafka API key of Metadata requests
_FLEXIBLE_METADATA = 9  # first Metadata version with compact (flexible) encoding


def _uvarint(buf: bytearray, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[at]
        at += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, at
        shift += 7


def rewrite_metadata_ports(payload: bytearray, version: int, port: int) -> int:
    """Point every broker of a Metadata response (after its length prefix) at ``port``.

    Returns how many brokers were rewritten. Only the port changes, so the response
    keeps its size.
    """
    at = 4  # correlation id
    flexible = version >= _FLEXIBLE_METADATA
    if flexible:
        tags, at = _uvarint(payload, at)  # response header tagged fields
        for _ in range(tags):
            _tag, at = _uvarint(payload, at)
            size, at = _uvarint(payload, at)
            at += size
    if version >= 3:
        at += 4  # throttle_time_ms
    if flexible:
        count, at = _uvarint(payload, at)
        count -= 1
    else:
        (count,) = struct.unpack_from(">i", payload, at)
        at += 4
    for _ in range(count):
        at += 4  # node_id
        if flexible:
            size, at = _uvarint(payload, at)
            at += size - 1
        else:
            (size,) = struct.unpack_from(">h", payload, at)
            at += 2 + size
        struct.pack_into(">i", payload, at, port)
        at += 4
        if version >= 1:  # rack (nullable string)
            if flexible:
                size, at = _uvarint(payload, at)
                at += max(size - 1, 0)
            else:
                (size,) = struct.unpack_from(">h", payload, at)
                at += 2 + max(size, 0)
        if flexible:
            tags, at = _uvarint(payload, at)
            for _ in range(tags):
                _tag, at = _uvarint(payload, at)
                size, at = _uvarint(payload, at)
                at += size
    return count


class KafkaProxy:
    """``async with KafkaProxy("127.0.0.1", 59092) as proxy: ... proxy.bootstrap ...``."""

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        server_tls: ssl.SSLContext | None = None,
        client_tls: ssl.SSLContext | None = None,
    ) -> None:
        self._upstream = (upstream_host, upstream_port)
        self._server_tls = server_tls
        self._client_tls = client_tls
        self._port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self.connections = 0
        self.rewritten = 0

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self._port}"

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self._port, ssl=self._server_tls
            )
            self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        await self.cut()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def cut(self) -> None:
        """Close every connection and stop listening: Kafka is unreachable."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            await server.wait_closed()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def restore(self) -> None:
        """Listen again on the same port and let bytes flow."""
        self._flowing.set()
        await self.start()

    def stall(self) -> None:
        """Keep connections open but move no bytes: Kafka is slow, not gone."""
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(
                *self._upstream, ssl=self._client_tls
            )
        except OSError:
            writer.transport.abort()
            return
        if self._server is None:  # cut while we were connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        self.connections += 1
        self._writers.update((writer, up_writer))
        requests: dict[int, tuple[int, int]] = {}  # correlation id -> (api key, version)
        self._spawn(self._pump(reader, up_writer, requests, to_broker=True))
        self._spawn(self._pump(up_reader, writer, requests, to_broker=False))

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        requests: dict[int, tuple[int, int]],
        *,
        to_broker: bool,
    ) -> None:
        try:
            while True:
                size_bytes = await reader.readexactly(4)
                (size,) = struct.unpack(">i", size_bytes)
                payload = bytearray(await reader.readexactly(size))
                await self._flowing.wait()
                if to_broker:
                    api_key, version, correlation = struct.unpack_from(">hhi", payload, 0)
                    requests[correlation] = (api_key, version)
                else:
                    (correlation,) = struct.unpack_from(">i", payload, 0)
                    api_key, version = requests.pop(correlation, (-1, -1))
                    if api_key == _METADATA:
                        self.rewritten += rewrite_metadata_ports(payload, version, self._port)
                writer.write(size_bytes + payload)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)
