"""``AtnaReceiver``: starts, stops and counts the collaborators that do the work.

Invariant: construction does no I/O; ``start()`` opens the kept store and the stamps,
starts the parse workers and the pipeline, then binds the listeners (a failure stops
what started and re-raises); ``stop()`` is idempotent and keeps everything it could not
hand to the emitter within ``stop_timeout_seconds`` (reason ``shutdown``). The emitter
belongs to the caller: the receiver never starts or stops it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import MappingProxyType

from integrations.atna.kept import KeptStore
from integrations.atna.receiver.config import AtnaReceiverConfig
from integrations.atna.receiver.emitting import StampedEmitter
from integrations.atna.receiver.intake import Intake, Received
from integrations.atna.receiver.keeper import KeptWriter
from integrations.atna.receiver.parsepool import ParsePool
from integrations.atna.receiver.pipeline import Pipeline
from integrations.atna.receiver.stats import AtnaStats, Counters
from integrations.atna.receiver.tcp import TcpListener
from integrations.atna.receiver.tls import TlsListener
from integrations.atna.receiver.udp import UdpListener
from producers import AsyncLifecycle, Codec, Emitter

__all__ = ["AtnaReceiver"]

# One logger name for all the receiver's log lines.
logger = logging.getLogger("integrations.atna.receiver")


@dataclass(frozen=True, slots=True, kw_only=True)
class _Parts:
    """The collaborators of one run (``start`` to ``stop``)."""

    io: ThreadPoolExecutor  # the one thread of the kept store and the stamps
    intake: Intake
    keeper: KeptWriter
    emitting: StampedEmitter
    parser: ParsePool
    pipeline: Pipeline
    tls: TlsListener | None
    udp: UdpListener | None
    tcp: TcpListener | None


class AtnaReceiver(AsyncLifecycle):
    """``async with AtnaReceiver(config, emitter) as receiver: ...``"""

    def __init__(self, config: AtnaReceiverConfig, emitter: Emitter) -> None:
        self._config = config
        self._emitter = emitter
        self._running = False
        self._stopping = False
        self._stop_lock: asyncio.Lock | None = None
        self._counters = Counters()
        self._parts: _Parts | None = None

    @property
    def running(self) -> bool:
        return self._running

    @property
    def tls_port(self) -> int | None:
        """The bound TLS port (after ``start``)."""
        parts = self._parts
        return None if parts is None or parts.tls is None else parts.tls.port

    @property
    def tcp_port(self) -> int | None:
        """The bound plain TCP port (after ``start``)."""
        parts = self._parts
        return None if parts is None or parts.tcp is None else parts.tcp.port

    @property
    def udp_port(self) -> int | None:
        """The bound UDP port (after ``start``)."""
        parts = self._parts
        return None if parts is None or parts.udp is None else parts.udp.port

    def _assemble(self) -> _Parts:
        cfg, counters = self._config, self._counters
        codec = Codec()  # reads the shipped schemas: in start, not __init__
        intake = Intake(cfg.queue_max)
        io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atna-kept")
        store = KeptStore(
            cfg.kept_dir, max_bytes=cfg.kept_max_bytes, segment_bytes=cfg.kept_segment_bytes
        )
        keeper = KeptWriter(store, io, counters)
        emitting = StampedEmitter(
            self._emitter,
            io,
            counters,
            recent_events=cfg.recent_events,
            retry_max_seconds=cfg.emit_retry_max_seconds,
        )
        parser = ParsePool(codec, cfg.policy, cfg.default_facility, cfg.parse_workers)
        stopping = self._is_stopping
        return _Parts(
            io=io,
            intake=intake,
            keeper=keeper,
            emitting=emitting,
            parser=parser,
            pipeline=Pipeline(intake, parser, emitting, keeper, counters, queue_max=cfg.queue_max),
            tls=None
            if cfg.tls_port is None
            else TlsListener(cfg, intake, keeper, counters, stopping),
            udp=None
            if cfg.udp_port is None
            else UdpListener(cfg, cfg.udp_port, intake, counters, stopping),
            tcp=None
            if cfg.tcp_port is None
            else TcpListener(cfg, cfg.tcp_port, intake, keeper, counters, stopping),
        )

    def _is_stopping(self) -> bool:
        return self._stopping

    async def start(self) -> None:
        """Open the kept store, bind the listeners and start handling messages."""
        if self._running:
            return
        if self._stopping:
            raise RuntimeError("the ATNA receiver is stopping")
        cfg = self._config
        self._counters = Counters()
        self._stop_lock = asyncio.Lock()
        self._parts = parts = self._assemble()
        try:
            await parts.keeper.open()
            await parts.emitting.open(cfg.kept_dir)
            await parts.parser.start()
            parts.keeper.start()
            parts.pipeline.start()
            if parts.tls is not None:
                await parts.tls.start()
            if parts.udp is not None:
                await parts.udp.start()
            if parts.tcp is not None:
                await parts.tcp.start()
        except BaseException:
            self._running = True
            await self.stop()
            raise
        self._running = True
        logger.info(
            "ATNA receiver listening on %s: TLS %s, TCP %s, UDP %s; kept messages in %s",
            cfg.host,
            self.tls_port if self.tls_port is not None else "off",
            self.tcp_port if self.tcp_port is not None else "off",
            self.udp_port if self.udp_port is not None else "off",
            cfg.kept_dir,
        )

    async def stop(self) -> None:
        """Stop listening, emit or keep what is queued, close the kept store; idempotent."""
        if not self._running or self._stop_lock is None:
            return
        async with self._stop_lock:
            if not self.running:  # another stop() finished while this one waited
                return
            self._stopping = True
            try:
                if self._parts is not None:
                    await self._shutdown(self._parts)
            finally:
                self._running = False
                self._stopping = False

    async def _shutdown(self, parts: _Parts) -> None:
        timeout = self._config.stop_timeout_seconds
        if parts.tls is not None:
            parts.tls.close()
        if parts.udp is not None:
            parts.udp.close()
        if parts.tcp is not None:
            parts.tcp.close()
        if parts.tls is not None:
            await parts.tls.end_connections()
        if parts.tcp is not None:
            await parts.tcp.end_connections()
        intake, pipeline = parts.intake, parts.pipeline
        if pipeline.working:
            await intake.join(timeout)
        await pipeline.stop_worker()  # and writes the stamps it had not written yet
        await pipeline.stop_feeder()
        leftovers: list[Received] = intake.take_inflight()
        pipeline.cancel_waiting()
        await parts.parser.stop()
        leftovers.extend(intake.take_queued())
        for item in leftovers:
            if item.reason is None:
                item.reason, item.detail = "shutdown", "not emitted before the receiver stopped"
        await parts.keeper.stop(leftovers, timeout)
        await parts.emitting.close()
        parts.io.shutdown(wait=False)
        logger.info("ATNA receiver stopped: %s", self.stats())

    def stats(self) -> AtnaStats:
        c, parts = self._counters, self._parts
        tls = None if parts is None else parts.tls
        tcp = None if parts is None else parts.tcp
        return AtnaStats(
            running=self._running,
            received_tls=c.received_tls,
            received_udp=c.received_udp,
            received_tcp=c.received_tcp,
            mapped=c.mapped,
            events=c.events,
            resent=c.resent,
            kept=MappingProxyType(dict(c.kept)),
            kept_bytes=0 if parts is None else parts.keeper.bytes,
            kept_full=parts is not None and parts.keeper.full,
            lost_at_stop=c.lost_at_stop,
            udp_dropped_overload=c.udp_dropped_overload,
            queue_depth=0 if parts is None else parts.intake.held(),
            queue_max=self._config.queue_max,
            connections=(0 if tls is None else tls.connections)
            + (0 if tcp is None else tcp.connections),
            connections_refused=c.connections_refused,
            handshakes_refused=c.handshakes_refused,
            tcp_refused_sources=c.tcp_refused_sources,
            refused_senders=c.refused_senders,
            emit_retries=c.emit_retries,
        )
