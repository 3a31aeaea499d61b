"""The pipe process: the child that ``pipe.PipeEmitter`` starts (``python -m
producers.pipe``) to validate, encode and emit its host's events with a real ``Emitter``.

Invariant: it acknowledges a frame only once that frame and every one before it are
durable (in Kafka, or fsynced in the spool), so a pipe process killed with events in
aiokafka's memory leaves them to its successor; a frame whose record is no event, or an
invalid event, is refused (logged and reported), never fatal, since a pipe process that
died on it would get it again. See docs/design/pipe.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator
from typing import IO

from producers.codec import from_record
from producers.emitter import Emitter, EmitterConfig
from producers.errors import EventValidationError, ProducerError
from producers.events import AuditEvent
from producers.pipe_protocol import (
    ACK_EVERY,
    BLOCK,
    IDLE_ENV,
    LOG_FORMAT_ENV,
    NICE_ENV,
    OPS_ENV,
    PIPE_BYTES,
    Frames,
    frame,
)

logger = logging.getLogger(__name__)


def main() -> None:  # pragma: no cover - runs in the child; tests/integration/test_pipe.py
    """``python -m producers.pipe_process``: read frames on stdin, emit, acknowledge on
    stdout."""
    # The protocol gets its own copy of stdout; anything printed goes to stderr instead.
    protocol = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    _configure_logging()
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    if os.environ.get(IDLE_ENV) == "1":  # before any thread: they inherit the policy
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError) as exc:  # AttributeError: not Linux
            logger.warning("cannot run at idle priority: %r", exc)
    nice = int(os.environ.get(NICE_ENV, "0"))
    if nice > 0:
        os.nice(nice)  # the host's own threads first when the cores are busy
    asyncio.run(serve(sys.stdin.buffer, protocol))


async def serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:  # pragma: no cover - child
    loop = asyncio.get_running_loop()
    # stdin is read in the event loop, whatever the pipe holds at once: one wake-up per
    # chunk the host wrote (it writes once per batch), not a thread hand-off per frame.
    pipe = asyncio.StreamReader(limit=PIPE_BYTES)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(pipe), stdin)
    server = _Server(pipe, stdout)
    first = await server.receive()
    if not first or first[0][0] != "config" or not isinstance(first[0][1], dict):
        raise SystemExit("pipe: the first frame must be the configuration")
    await server.run(EmitterConfig(**first[0][1]), first[1:])


class _Server:  # pragma: no cover - runs in the child
    """Frames in, events to the ``Emitter``, blocks and acknowledgements out."""

    def __init__(self, pipe: asyncio.StreamReader, stdout: IO[bytes]) -> None:
        self._pipe = pipe
        self._frames = Frames()
        self._stdout = stdout
        self._out_lock = asyncio.Lock()
        # (frame, done once the frame's event is durable), oldest first: a frame is
        # acknowledged once it and every frame before it are in Kafka or the spool.
        self._tracked: collections.deque[tuple[int, asyncio.Future[None] | None]] = (
            collections.deque()
        )
        self._block_end = 0

    async def receive(self) -> list[tuple[object, ...]] | None:
        """The next complete messages, oldest first; None at the end of the stream."""
        while True:
            messages = self._frames.take()
            if messages:
                return messages
            chunk = await self._pipe.read(PIPE_BYTES)
            if not chunk:
                return None  # end of stream (a partial frame is the host dying mid-write)
            self._frames.feed(chunk)

    async def send(self, message: tuple[object, ...]) -> None:
        async with self._out_lock:
            self._stdout.write(frame(message))
            self._stdout.flush()

    async def run(self, config: EmitterConfig, first: list[tuple[object, ...]]) -> None:
        async with Emitter(config) as emitter, _ops_listener(emitter, config):
            await self._reserve(emitter)
            acks = asyncio.create_task(self._acknowledging())
            batch: list[tuple[object, ...]] | None = first
            while batch is not None:
                for message in batch:
                    await self._handle(emitter, message)
                batch = await self.receive()
            await emitter.stop()  # flushes to Kafka, or spools: every event is durable now
            acks.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acks
            await self._acknowledge()

    async def _reserve(self, emitter: Emitter) -> None:
        first_number = await emitter.reserve_block(BLOCK)
        await self.send(("block", first_number, BLOCK))
        self._block_end = first_number + BLOCK

    async def _acknowledge(self) -> None:
        tracked = self._tracked
        upto = 0
        while tracked and (tracked[0][1] is None or tracked[0][1].done()):
            frame_no, durable = tracked.popleft()
            if durable is not None and durable.exception() is not None:
                tracked.appendleft((frame_no, durable))  # not kept: never acknowledged
                break
            upto = frame_no
        if upto:
            await self.send(("ack", upto))

    async def _acknowledging(self) -> None:
        while True:
            await asyncio.sleep(ACK_EVERY)
            await self._acknowledge()

    async def _handle(self, emitter: Emitter, message: tuple[object, ...]) -> None:
        if len(message) != 4 or message[0] != "event":
            raise SystemExit("pipe: malformed frame")
        _, frame_no, name, record = message
        if not (isinstance(frame_no, int) and isinstance(name, str)):
            raise SystemExit("pipe: malformed frame")
        try:
            event = from_record(name, record)  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError) as exc:
            # Refused, not fatal: a pipe process that died on it would get it again.
            logger.error("refused a record that is no event (%s)", type(exc).__name__)
            await self.send(("refused", frame_no, "<record>"))
            self._tracked.append((frame_no, None))
            return
        durable = await self._emit(emitter, frame_no, event)
        self._tracked.append((frame_no, durable))
        if (event.producer_seq or 0) >= self._block_end - BLOCK // 2:
            await self._reserve(emitter)

    async def _emit(
        self, emitter: Emitter, frame_no: int, event: AuditEvent
    ) -> asyncio.Future[None] | None:
        """The event handed to the emitter (retrying while it refuses), or None if invalid."""
        delay = 0.05
        while True:
            try:
                return await emitter.emit_tracked(event)
            except EventValidationError as exc:
                logger.error("refused an invalid event (field %s)", exc.field)
                await self.send(("refused", frame_no, exc.field))
                return None
            except (ProducerError, OSError) as exc:
                logger.warning("the emitter refused an event (%r); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)


def _configure_logging() -> None:  # pragma: no cover - runs in the child
    """Text lines prefixed "pipe", or JSON lines when LEDGER_LOG_FORMAT=json."""
    if os.environ.get(LOG_FORMAT_ENV, "").strip().lower() == "json":
        from producers.logformat import configure

        configure(level=logging.INFO, fmt="json", service="orthanc-pipe")
        return
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="pipe %(message)s")


def ops_address(value: str) -> tuple[str, int]:
    """``host:port`` or ``port`` (loopback) -> (host, port); ValueError when neither."""
    host, sep, port = value.strip().rpartition(":")
    if not sep:
        host = "127.0.0.1"
    number = int(port)
    if not 0 <= number <= 65535:
        raise ValueError(f"{OPS_ENV}: port out of range: {number}")
    return host.strip("[]") or "127.0.0.1", number


@contextlib.asynccontextmanager
async def _ops_listener(
    emitter: Emitter, config: EmitterConfig
) -> AsyncIterator[None]:  # pragma: no cover - runs in the child; tests/e2e/test_prometheus.py
    """The ops listener when PHI_LEDGER_PIPE_OPS is set; a listener that cannot start is
    logged, never fatal (the events matter more than their metrics)."""
    address = os.environ.get(OPS_ENV, "").strip()
    if not address:
        yield
        return
    try:
        from producers.ops import EmitterCollector, OpsConfig, OpsServer, OpsState, emitter_checks

        host, port = ops_address(address)
        state = OpsState()
        state.registry.register(EmitterCollector({"orthanc-pipe": emitter}))
        state.checks.update(emitter_checks(emitter, max_bytes=config.spool_max_bytes))
        # A successor started while this one drains binds the same port (SO_REUSEPORT).
        server = OpsServer(
            OpsConfig(host=host, port=port, service="orthanc-pipe", reuse_port=True), state
        )
        await server.__aenter__()
    except (ImportError, ValueError, OSError) as exc:
        logger.warning("no ops listener on %s (%s: %s)", address, OPS_ENV, exc)
        yield
        return
    try:
        yield
    finally:
        await server.__aexit__(None, None, None)


if __name__ == "__main__":  # pragma: no cover - PIPE_COMMAND
    main()
