"""The IHE ATNA Audit Record Repository receiver: syslog in, ledger events out.

``AtnaReceiver(config, emitter)`` listens for RFC 5424 syslog messages over mutual TLS
(RFC 5425, octet-counting framing ``MSG-LEN SP SYSLOG-MSG``) and, only when a UDP port is
configured, over UDP (RFC 5426, one message per datagram). Each message must have MSGID
``IHE+RFC-3881`` and a DICOM PS3.15 A.5 audit message as its MSG; it is mapped
(``dicom_audit``), checked against its sender (``senders``), every event validated and
encoded but for its producer stamp (``Codec.prepare``), and handed to the injected
``Emitter`` (``emit_prepared``: it stamps the event and sends it to Kafka, or fsyncs it to
its spool while Kafka is away). Construction does no I/O; ``start()`` binds; ``stop()`` is
idempotent; ``async with`` does both. The emitter belongs to the caller: the receiver never
starts or stops it.

Invariants:

* Node authentication (IHE ATNA): a TLS client must present a certificate that the
  configured client CA (``client_ca_file``, required with a TLS port) signed, with one
  subject CN; a client without one never gets a message in (the handshake is refused,
  counted in ``handshakes_refused``). There is no switch to accept anonymous TLS clients:
  a sender that cannot present a certificate can only use UDP, which is off unless a
  port is configured and is named as unauthenticated. Every message carries its sender
  (``tls:<CN>`` or ``udp``), and a message whose AuditSourceID its sender may not claim,
  or that claims to be the ledger itself, is kept (``source_not_allowed``,
  ``claims_ledger``; ``senders.SenderPolicy``), counted in ``refused_senders``, logged as
  a warning, and never emitted.
* Nothing received is dropped silently. A message that cannot be framed, parsed or
  mapped, or whose event the emitter refuses as invalid, is appended with its raw bytes
  to the kept-messages store (``kept.KeptStore``) with a reason code; UDP datagrams the
  receiver had no room for are counted in ``stats().udp_dropped_overload``.
* Memory is bounded. At most ``queue_max`` messages are held: waiting in the queue, or
  taken off it in a batch being parsed or emitted (see below). When that many are held
  (a slow Kafka with a full spool, a full kept store), TLS connections stop being read,
  so TCP flow control pushes back on the senders; UDP has no backpressure, so datagrams
  that find no room are dropped *and counted*. TLS is the reliable
  transport; UDP is for senders that can do nothing else.
* Limits: ``max_message_bytes`` per message (a larger TLS frame is kept as ``oversize``
  and its connection closed, since the stream cannot be re-synchronised; a larger
  datagram is kept as ``oversize``), ``max_connections`` concurrent TLS connections
  (more are closed at once and counted), ``idle_timeout_seconds`` without a byte closes a
  connection.
* Event ids are deterministic (UUIDv5 of the sender and of the id the message gives, see
  ``senders.sender_event_id``) and the events a pure function of the message and its
  sender, so a re-sent message makes the same events, and two senders never make the
  same event id. Messages
  are parsed and mapped (``parsing.parse_batch``, pure) in ``parse_workers`` worker
  processes, in batches taken off the queue in arrival order, at most ``_PARSE_AHEAD``
  batches ahead; one task in the event loop emits the results, in arrival order (a batch
  whose worker died is parsed again in the event loop). That task remembers the producer
  sequence number the emitter stamped on each of the last ``recent_events`` event ids, and a
  re-sent message is emitted again with that same number: byte-identical, so the ledger
  counts it as a duplicate instead of a conflicting event id. The numbers are kept in
  the kept directory (``stamps.StampLog``, written after each batch), so this holds
  across restarts too. (Beyond that window, or for a stamp an operating-system crash
  lost, a re-send gets a new number and the ledger keeps both versions in quarantine
  with a security alert; it never merges them.)
* RFC 5425 has no application-level acknowledgement: a message is the receiver's once it
  is read off the socket. What is still in the queue when the process is killed is lost;
  ``stop()`` keeps everything it could not hand to the emitter within
  ``stop_timeout_seconds`` (reason ``shutdown``), batches being parsed included, then
  ends the worker processes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import multiprocessing
import ssl
import time
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from integrations.atna.kept import DEFAULT_MAX_BYTES, DEFAULT_SEGMENT_BYTES, KeptRecord, KeptStore
from integrations.atna.parsing import Parsed, parse_batch, register_pickling, warm_up
from integrations.atna.rfc5424 import Frame, OctetCountingDecoder
from integrations.atna.senders import (
    REASON_CLAIMS_LEDGER,
    REASON_NOT_ALLOWED,
    UDP_SENDER,
    SenderPolicy,
    certificate_sender,
)
from integrations.atna.stamps import StampLog
from integrations.errors import KeptStoreError, KeptStoreFullError
from producers import (
    AsyncLifecycle,
    Codec,
    Emitter,
    EmitterPushbackError,
    EmitterUnavailableError,
    EventValidationError,
    PreparedEvent,
    SpoolError,
)

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_PARSE_WORKERS", "AtnaReceiver", "AtnaReceiverConfig", "AtnaStats"]

#: Largest message accepted by default (RFC 5425 receivers must take 2048 octets and
#: should take 8192; DICOM audit messages with many objects run to tens of KiB).
DEFAULT_MAX_MESSAGE_BYTES: Final = 64 * 1024
_READ_CHUNK: Final = 64 * 1024
_KEPT_QUEUE: Final = 1024
_KEPT_RETRY_SECONDS: Final = 1.0
#: Messages handed to a parse worker at once, at most, and batches parsed ahead of the
#: one being emitted: at most ``(_PARSE_AHEAD + 2) * _PARSE_BATCH`` messages are off the
#: queue and not yet emitted or kept.
_PARSE_BATCH: Final = 64
#: Two: on two cores the event loop (TLS, stamping, aiokafka) leaves about half a core,
#: which a second worker uses (benchmarks/atna.py: 4,700-5,200 messages/s with one
#: worker, 6,800-7,000 with two, 6,300 with three).
DEFAULT_PARSE_WORKERS: Final = 2
_PARSE_AHEAD: Final = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class AtnaReceiverConfig:
    #: Directory of the kept-messages store (mode 0700; it holds PHI).
    kept_dir: str
    host: str = "127.0.0.1"
    #: TLS (RFC 5425) port; None disables TLS; 0 binds any free port (see ``tls_port``).
    tls_port: int | None = None
    #: UDP (RFC 5426) port; None (the default) disables UDP; 0 binds any free port. UDP
    #: authenticates nothing: its messages may claim only ``policy.udp`` sources.
    udp_port: int | None = None
    #: PEM certificate chain and private key of the TLS listener.
    cert_file: str | None = None
    key_file: str | None = None
    #: PEM CA bundle, required with a TLS port: TLS clients must present a certificate it
    #: signed (mutual TLS: IHE ATNA node authentication). There is no anonymous TLS.
    client_ca_file: str | None = None
    #: Which sender may claim which AuditSourceID (default: none may claim any).
    policy: SenderPolicy = field(default_factory=SenderPolicy)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_connections: int = 256
    idle_timeout_seconds: float = 300.0
    handshake_timeout_seconds: float = 10.0
    #: Messages waiting to be mapped and emitted, at most.
    queue_max: int = 4096
    #: Worker processes that parse, map, validate and encode messages (spawned by
    #: ``start``, ended by ``stop``) while the event loop stamps and sends; 0 parses in
    #: the event loop.
    parse_workers: int = DEFAULT_PARSE_WORKERS
    kept_max_bytes: int = DEFAULT_MAX_BYTES
    kept_segment_bytes: int = DEFAULT_SEGMENT_BYTES
    #: ``facility.id`` of events from messages without AuditEnterpriseSiteID (default:
    #: their AuditSourceID).
    default_facility: str | None = None
    #: How many recent event ids are remembered so a re-send is byte-identical.
    recent_events: int = 65_536
    #: Longest pause between attempts to hand an event to an emitter that pushes back.
    emit_retry_max_seconds: float = 5.0
    #: Longest ``stop`` waits for queued messages to be emitted before keeping them.
    stop_timeout_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.tls_port is None and self.udp_port is None:
            raise ValueError("AtnaReceiverConfig needs a tls_port, a udp_port or both")
        if self.tls_port is not None and not (self.cert_file and self.key_file):
            raise ValueError("the TLS listener needs cert_file and key_file")
        if self.tls_port is not None and not self.client_ca_file:
            raise ValueError(
                "the TLS listener needs client_ca_file: senders must present a certificate "
                "(IHE ATNA node authentication); there is no anonymous TLS"
            )
        for name in ("max_message_bytes", "max_connections", "queue_max", "recent_events"):
            if getattr(self, name) < 1:
                raise ValueError(f"AtnaReceiverConfig.{name} must be at least 1")
        if self.parse_workers < 0:
            raise ValueError("AtnaReceiverConfig.parse_workers must not be negative")
        for name in (
            "idle_timeout_seconds",
            "handshake_timeout_seconds",
            "emit_retry_max_seconds",
            "stop_timeout_seconds",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"AtnaReceiverConfig.{name} must be positive")


@dataclass(frozen=True, slots=True, kw_only=True)
class AtnaStats:
    """A snapshot for health checks and metrics (counters since ``start``)."""

    running: bool
    received_tls: int
    received_udp: int
    #: Messages that became events, and the events emitted (re-sends included).
    mapped: int
    events: int
    #: Events of re-sent messages, emitted again with their first sequence number.
    resent: int
    #: Messages written to the kept store, by reason.
    kept: Mapping[str, int]
    kept_bytes: int
    #: The kept store is full: the receiver is holding messages and pushing back.
    kept_full: bool
    #: Messages that could not be kept even at ``stop`` (kept store failing); logged.
    lost_at_stop: int
    udp_dropped_overload: int
    queue_depth: int
    queue_max: int
    connections: int
    connections_refused: int
    #: TLS clients refused at the handshake (no certificate, or one the client CA did not
    #: sign, or one without a single subject CN).
    handshakes_refused: int
    #: Messages kept because their sender may not claim their AuditSourceID, or because
    #: they claim to come from the ledger itself (a security signal: alert on it).
    refused_senders: int
    #: Times the emitter pushed back (full spool, Kafka away without spool); retried.
    emit_retries: int

    @property
    def kept_total(self) -> int:
        return sum(self.kept.values())


@dataclass(slots=True)
class _Item:
    raw: bytes
    transport: str
    peer: str | None
    received_at: float
    sender: str
    reason: str | None = None
    detail: str = ""
    field: str | None = None


@dataclass(slots=True)
class _Batch:
    items: list[_Item]
    parsed: asyncio.Future[list[Parsed]]
    raws: list[bytes | None]
    senders: list[str]


@dataclass(slots=True)
class _Counters:
    received_tls: int = 0
    received_udp: int = 0
    mapped: int = 0
    events: int = 0
    resent: int = 0
    kept: collections.Counter[str] = field(default_factory=collections.Counter)
    lost_at_stop: int = 0
    udp_dropped_overload: int = 0
    connections_refused: int = 0
    handshakes_refused: int = 0
    refused_senders: int = 0
    emit_retries: int = 0


def _peer(address: object) -> str | None:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return None if address is None else str(address)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, receiver: AtnaReceiver) -> None:
        self._receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        self._receiver._on_datagram(data, addr)

    def error_received(self, exc: Exception) -> None:
        logger.debug("ATNA UDP socket error: %r", exc)


class AtnaReceiver(AsyncLifecycle):
    """``async with AtnaReceiver(config, emitter) as receiver: ...``"""

    def __init__(self, config: AtnaReceiverConfig, emitter: Emitter) -> None:
        self._config = config
        self._emitter = emitter
        self._running = False
        self._stopping = False
        self._counters = _Counters()
        self._queue: asyncio.Queue[_Item] | None = None
        self._kept_queue: asyncio.Queue[_Item] | None = None
        self._kept_full = False
        self._store: KeptStore | None = None
        self._io: ThreadPoolExecutor | None = None
        self._server: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._handshaking: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._feeder: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._pool: ProcessPoolExecutor | None = None
        self._pipeline: asyncio.Queue[_Batch] | None = None
        # Messages taken off the queue and not yet emitted or kept, oldest first.
        self._inflight: collections.deque[_Item] = collections.deque()
        self._room = asyncio.Event()  # set when _held() may be below queue_max
        self._recent: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._tls_port: int | None = None
        self._udp_port: int | None = None
        self._tls: ssl.SSLContext | None = None
        self._stop_lock: asyncio.Lock | None = None
        self._codec: Codec | None = None
        self._stamps: StampLog | None = None
        self._new_stamps: list[tuple[str, int]] = []

    # ------------------------------------------------------------------ lifecycle

    @property
    def running(self) -> bool:
        return self._running

    @property
    def tls_port(self) -> int | None:
        """The bound TLS port (after ``start``)."""
        return self._tls_port

    @property
    def udp_port(self) -> int | None:
        """The bound UDP port (after ``start``)."""
        return self._udp_port

    def _ssl_context(self) -> ssl.SSLContext:
        cfg = self._config
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cfg.cert_file is None or cfg.key_file is None:  # pragma: no cover - __post_init__
            raise ValueError("the TLS listener needs cert_file and key_file")
        ctx.load_cert_chain(cfg.cert_file, cfg.key_file)
        if not cfg.client_ca_file:  # pragma: no cover - __post_init__
            raise ValueError("the TLS listener needs client_ca_file")
        # Only the configured client CA: not the system's, whose CAs sign anyone's host.
        ctx.load_verify_locations(cfg.client_ca_file)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    async def start(self) -> None:
        """Open the kept store, bind the listeners and start handling messages."""
        if self._running:
            return
        if self._stopping:
            raise RuntimeError("the ATNA receiver is stopping")
        cfg = self._config
        loop = asyncio.get_running_loop()
        self._counters = _Counters()
        self._kept_full = False
        self._stop_lock = asyncio.Lock()
        self._codec = Codec()  # reads the shipped schemas: in start, not __init__
        self._queue = asyncio.Queue()  # bounded by _put: queued + in flight <= queue_max
        self._room = asyncio.Event()
        self._room.set()
        self._kept_queue = asyncio.Queue(_KEPT_QUEUE)
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="atna-kept")
        self._pipeline = asyncio.Queue(_PARSE_AHEAD)
        self._inflight = collections.deque()
        store = KeptStore(
            cfg.kept_dir, max_bytes=cfg.kept_max_bytes, segment_bytes=cfg.kept_segment_bytes
        )
        try:
            await loop.run_in_executor(self._io, store.open)
            self._store = store
            stamps = StampLog(cfg.kept_dir, self._emitter.config.producer_id, cfg.recent_events)
            self._recent = await loop.run_in_executor(self._io, stamps.open)
            self._stamps = stamps
            self._new_stamps = []
            await self._start_pool()
            self._keeper = asyncio.create_task(self._keep_loop(), name="atna-kept-writer")
            self._worker = asyncio.create_task(self._work_loop(), name="atna-worker")
            self._feeder = asyncio.create_task(self._feed_loop(), name="atna-parse-feeder")
            if cfg.tls_port is not None:
                self._tls = self._ssl_context()
                # Plain TCP, TLS started per connection (_handshake): a refused client
                # is then counted and logged with its address.
                self._server = await asyncio.start_server(
                    self._serve_tls,
                    cfg.host,
                    cfg.tls_port,
                    limit=_READ_CHUNK,
                    backlog=min(cfg.max_connections, 1024),
                )
                self._tls_port = int(self._server.sockets[0].getsockname()[1])
            if cfg.udp_port is not None:
                logger.warning(
                    "ATNA: listening on UDP %s:%s: datagrams are not authenticated and their "
                    "source address is spoofable; they may claim only the AuditSourceIDs "
                    "listed under [udp] (%d)",
                    cfg.host,
                    cfg.udp_port,
                    len(cfg.policy.udp),
                )
                transport, _ = await loop.create_datagram_endpoint(
                    lambda: _Udp(self), local_addr=(cfg.host, cfg.udp_port)
                )
                self._udp = transport
                self._udp_port = int(transport.get_extra_info("sockname")[1])
        except BaseException:
            self._running = True
            await self.stop()
            raise
        self._running = True
        logger.info(
            "ATNA receiver listening on %s: TLS %s, UDP %s; kept messages in %s",
            cfg.host,
            self._tls_port if self._tls_port is not None else "off",
            self._udp_port if self._udp_port is not None else "off",
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
                await self._shutdown()
            finally:
                self._running = False
                self._stopping = False

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        tasks = [*self._connections, *self._handshaking]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self._server.wait_closed()
            self._server = None
        queue = self._queue
        if queue is not None and self._worker is not None and not self._worker.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.stop_timeout_seconds):
                    await queue.join()
        await self._cancel(self._worker)
        self._worker = None
        await self._save_stamps()  # what the cancelled worker had not written yet
        await self._cancel(self._feeder)
        self._feeder = None
        leftovers: list[_Item] = list(self._inflight)
        self._inflight.clear()
        pipeline = self._pipeline
        while pipeline is not None and not pipeline.empty():
            pipeline.get_nowait().parsed.cancel()
        await self._stop_pool()
        while queue is not None and not queue.empty():
            leftovers.append(queue.get_nowait())
        for item in leftovers:
            if item.reason is None:
                item.reason, item.detail = "shutdown", "not emitted before the receiver stopped"
        kept_queue = self._kept_queue
        if kept_queue is not None and self._keeper is not None and not self._keeper.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.stop_timeout_seconds):
                    await kept_queue.join()
        await self._cancel(self._keeper)
        self._keeper = None
        while kept_queue is not None and not kept_queue.empty():
            leftovers.append(kept_queue.get_nowait())
        if leftovers:
            await self._write_kept(leftovers, final=True)
        store, self._store = self._store, None
        if store is not None and self._io is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, store.close)
        stamps, self._stamps = self._stamps, None
        if stamps is not None and self._io is not None:
            await asyncio.get_running_loop().run_in_executor(self._io, stamps.close)
        if self._io is not None:
            self._io.shutdown(wait=False)
            self._io = None
        logger.info("ATNA receiver stopped: %s", self.stats())

    @staticmethod
    async def _cancel(task: asyncio.Task[None] | None) -> None:
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def stats(self) -> AtnaStats:
        c = self._counters
        store = self._store
        return AtnaStats(
            running=self._running,
            received_tls=c.received_tls,
            received_udp=c.received_udp,
            mapped=c.mapped,
            events=c.events,
            resent=c.resent,
            kept=MappingProxyType(dict(c.kept)),
            kept_bytes=0 if store is None else store.bytes,
            kept_full=self._kept_full,
            lost_at_stop=c.lost_at_stop,
            udp_dropped_overload=c.udp_dropped_overload,
            queue_depth=self._held(),
            queue_max=self._config.queue_max,
            connections=len(self._connections),
            connections_refused=c.connections_refused,
            handshakes_refused=c.handshakes_refused,
            refused_senders=c.refused_senders,
            emit_retries=c.emit_retries,
        )

    # ------------------------------------------------------------------ transports

    async def _serve_tls(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer.get_extra_info("peername"))
        task = asyncio.current_task()
        sender: str | None = None
        if task is not None and not self._stopping:
            # Authenticate first: a client that never completes a handshake (bounded by
            # handshake_timeout_seconds) takes no slot from the authenticated senders.
            self._handshaking.add(task)
            try:
                sender = await self._handshake(writer, peer)
            except BaseException:
                writer.close()
                raise
            finally:
                self._handshaking.discard(task)
        if task is None or sender is None:
            writer.close()
            return
        if self._stopping or len(self._connections) >= self._config.max_connections:
            self._counters.connections_refused += 1
            logger.warning("ATNA: refusing TLS connection from %s (connection limit)", peer)
            writer.close()
            return
        self._connections.add(task)
        queue = self._queue
        decoder = OctetCountingDecoder(self._config.max_message_bytes)
        idle = self._config.idle_timeout_seconds
        try:
            if queue is None:  # pragma: no cover - start() creates it before binding
                return
            while True:
                try:
                    async with asyncio.timeout(idle):
                        data = await reader.read(_READ_CHUNK)
                except TimeoutError:
                    logger.info("ATNA: closing idle TLS connection from %s", peer)
                    break
                if not data:
                    break
                for frame in decoder.feed(data):
                    now = time.time()
                    if isinstance(frame, Frame):
                        self._counters.received_tls += 1
                        await self._put(_Item(frame.data, "tls", peer, now, sender))
                    else:
                        self._counters.received_tls += 1
                        logger.warning(
                            "ATNA: closing TLS connection from %s: %s", peer, frame.detail
                        )
                        await self._put(
                            _Item(frame.data, "tls", peer, now, sender, frame.reason, frame.detail)
                        )
                if decoder.broken:
                    break
        except asyncio.CancelledError:
            self._keep_tail(decoder, peer, queue, sender)
            raise
        except (ConnectionError, ssl.SSLError, OSError) as exc:
            logger.info("ATNA: TLS connection from %s failed: %r", peer, exc)
            self._keep_tail(decoder, peer, queue, sender)
        else:
            tail = decoder.finish()
            if tail is not None and queue is not None:
                self._counters.received_tls += 1
                await self._put(
                    _Item(tail.data, "tls", peer, time.time(), sender, tail.reason, tail.detail)
                )
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _handshake(self, writer: asyncio.StreamWriter, peer: str | None) -> str | None:
        """Mutual TLS on a fresh connection; the sender (``tls:<CN>``), or None (refused,
        counted, logged; the caller closes the connection)."""
        ctx = self._tls
        if ctx is None:  # pragma: no cover - start() sets it before binding
            return None
        try:
            async with asyncio.timeout(self._config.handshake_timeout_seconds):
                await writer.start_tls(ctx)
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError) as exc:
            self._counters.handshakes_refused += 1
            logger.warning("ATNA: refused TLS client %s at the handshake: %r", peer, exc)
            return None
        ssl_object = writer.get_extra_info("ssl_object")
        sender = certificate_sender(None if ssl_object is None else ssl_object.getpeercert())
        if sender is None:
            self._counters.handshakes_refused += 1
            logger.warning("ATNA: refused TLS client %s: not one subject CN", peer)
        return sender

    def _keep_tail(
        self,
        decoder: OctetCountingDecoder,
        peer: str | None,
        queue: asyncio.Queue[_Item] | None,
        sender: str | None,
    ) -> None:
        """A connection ends abnormally: keep a partial frame without waiting for room."""
        tail = decoder.finish()
        if tail is None or queue is None or sender is None:
            return
        self._counters.received_tls += 1
        item = _Item(tail.data, "tls", peer, time.time(), sender, tail.reason, tail.detail)
        if self._held() < self._config.queue_max:
            queue.put_nowait(item)
        else:
            kept_queue = self._kept_queue
            if kept_queue is not None:
                with contextlib.suppress(asyncio.QueueFull):
                    kept_queue.put_nowait(item)
                    return
            self._counters.lost_at_stop += 1
            logger.error("ATNA: a partial frame from %s could not be kept (queues full)", peer)

    def _held(self) -> int:
        """Messages queued or taken off the queue and not yet emitted or kept."""
        return (0 if self._queue is None else self._queue.qsize()) + len(self._inflight)

    async def _put(self, item: _Item) -> None:
        """Queue a TLS message, waiting (so not reading the connection) while the receiver
        holds ``queue_max`` messages."""
        queue = self._queue
        if queue is None:  # pragma: no cover - start() creates it before binding
            return
        while self._held() >= self._config.queue_max:
            self._room.clear()
            await self._room.wait()
        queue.put_nowait(item)

    def _on_datagram(self, data: bytes, addr: object) -> None:
        queue = self._queue
        if queue is None or self._stopping:
            return
        self._counters.received_udp += 1
        limit = self._config.max_message_bytes
        item = _Item(data, "udp", _peer(addr), time.time(), UDP_SENDER)
        if len(data) > limit:
            item.raw = data[:limit]
            item.reason = "oversize"
            item.detail = f"datagram of {len(data)} bytes exceeds the maximum of {limit}"
        if self._held() < self._config.queue_max:
            queue.put_nowait(item)
        else:
            self._counters.udp_dropped_overload += 1
            if self._counters.udp_dropped_overload in (1, 10, 100) or (
                self._counters.udp_dropped_overload % 1000 == 0
            ):
                logger.error(
                    "ATNA: %d UDP datagram(s) dropped because the receiver is overloaded "
                    "(queue of %d full); use TLS for reliable delivery",
                    self._counters.udp_dropped_overload,
                    self._config.queue_max,
                )

    # ------------------------------------------------------------------ processing

    async def _start_pool(self) -> None:
        workers = self._config.parse_workers
        if workers < 1:
            return
        # spawn, not fork: this process has threads (the kept store's, aiokafka's).
        register_pickling()
        pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=register_pickling,
        )
        try:
            await asyncio.gather(
                *(asyncio.wrap_future(pool.submit(warm_up)) for _ in range(workers))
            )
        except Exception as exc:
            logger.error("ATNA: cannot start parse workers (%r); parsing in the event loop", exc)
            await asyncio.to_thread(
                functools.partial(pool.shutdown, wait=True, cancel_futures=True)
            )
            return
        self._pool = pool

    async def _stop_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await asyncio.to_thread(
                functools.partial(pool.shutdown, wait=True, cancel_futures=True)
            )

    def _parse(self, raws: list[bytes | None], senders: list[str]) -> asyncio.Future[list[Parsed]]:
        pool, codec, cfg = self._pool, self._codec, self._config
        if pool is not None and codec is not None:
            try:
                return asyncio.wrap_future(
                    pool.submit(parse_batch, raws, senders, cfg.default_facility, codec, cfg.policy)
                )
            except RuntimeError as exc:  # BrokenProcessPool, or shut down
                logger.error("ATNA: the parse worker failed (%r); parsing in the event loop", exc)
                self._pool = None
                pool.shutdown(wait=False, cancel_futures=True)
        future: asyncio.Future[list[Parsed]] = asyncio.get_running_loop().create_future()
        future.set_result(self._parse_here(raws, senders))
        return future

    def _parse_here(self, raws: list[bytes | None], senders: list[str]) -> list[Parsed]:
        codec, cfg = self._codec, self._config
        if codec is None:  # pragma: no cover - start() creates it before any message
            raise RuntimeError("the ATNA receiver is not started")
        return parse_batch(raws, senders, cfg.default_facility, codec, cfg.policy)

    async def _feed_loop(self) -> None:
        """Take messages off the queue in arrival order, in batches, and start parsing
        them; at most ``_PARSE_AHEAD`` batches wait to be emitted (then the queue fills
        and TLS connections are pushed back)."""
        queue, pipeline, inflight = self._queue, self._pipeline, self._inflight
        if queue is None or pipeline is None:  # pragma: no cover - start() creates them
            return
        while True:
            items = [await queue.get()]
            inflight.append(items[0])
            limit = min(_PARSE_BATCH, self._config.queue_max)
            while len(items) < limit and not queue.empty():
                item = queue.get_nowait()
                inflight.append(item)
                items.append(item)
            raws = [None if item.reason is not None else item.raw for item in items]
            senders = [item.sender for item in items]
            await pipeline.put(_Batch(items, self._parse(raws, senders), raws, senders))

    async def _work_loop(self) -> None:
        """The one task that emits and keeps, batch after batch, in arrival order."""
        queue, pipeline, inflight = self._queue, self._pipeline, self._inflight
        if queue is None or pipeline is None:  # pragma: no cover - start() creates them
            return
        while True:
            batch = await pipeline.get()
            try:
                results = await batch.parsed
            except Exception as exc:  # the worker process died: parsing is pure, redo it
                logger.error("ATNA: a parse worker failed (%r); parsing in the event loop", exc)
                results = self._parse_here(batch.raws, batch.senders)
            for item, parsed in zip(batch.items, results, strict=True):
                try:
                    await self._handle(item, parsed)
                except Exception as exc:  # a bug: keep the message, never lose it
                    logger.exception("ATNA: unexpected error handling a message")
                    await self._keep(item, "internal_error", repr(exc)[:500])
                # stop() keeps what is still in ``inflight`` if this task is cancelled
                inflight.popleft()
                queue.task_done()
                self._room.set()
            await self._save_stamps()

    async def _save_stamps(self) -> None:
        """Write this batch's new stamps (on the I/O thread); a failure is logged, since
        the events are emitted already (a later re-send would be a ledger conflict)."""
        stamps, new = self._stamps, list(self._new_stamps)
        if stamps is None or self._io is None or not new:
            return
        loop = asyncio.get_running_loop()
        try:
            # Cleared once written: a stop() that cancels this await writes them again
            # (a line written twice is harmless, a stamp lost makes a re-send conflict).
            compact = await loop.run_in_executor(self._io, stamps.append, new)
            del self._new_stamps[: len(new)]
            if compact:
                await loop.run_in_executor(self._io, stamps.compact, list(self._recent.items()))
        except OSError as exc:
            logger.error("ATNA: cannot write %s (%s); re-sends after a restart may conflict",
                         stamps.path, exc)  # fmt: skip

    async def _handle(self, item: _Item, parsed: Parsed) -> None:
        if item.reason is not None:
            await self._keep(item, item.reason, item.detail)
            return
        if parsed.reason is not None:
            if parsed.reason in (REASON_NOT_ALLOWED, REASON_CLAIMS_LEDGER):
                self._counters.refused_senders += 1
                logger.warning(
                    "ATNA SECURITY: refused a message from %s (%s/%s): %s",
                    item.sender,
                    item.transport,
                    item.peer,
                    parsed.detail,
                )
            await self._keep(item, parsed.reason, parsed.detail, parsed.field)
            return
        events = parsed.events
        for index, event in enumerate(events):
            try:
                await self._emit(event)
            except EventValidationError as exc:
                detail = str(exc) if len(events) == 1 else f"event {index}: {exc}"
                await self._keep(item, "invalid_event", detail, exc.field)
                return
        self._counters.mapped += 1

    async def _emit(self, event: PreparedEvent) -> None:
        recent = self._recent
        known = recent.get(event.event_id)
        if known is not None:
            recent.move_to_end(event.event_id)
            producer_id = self._emitter.config.producer_id
            await self._emit_retrying(event.stamped_as(producer_id=producer_id, producer_seq=known))
            self._counters.resent += 1
            self._counters.events += 1
            return
        seq = await self._emit_retrying(event)
        self._counters.events += 1
        recent[event.event_id] = seq
        self._new_stamps.append((event.event_id, seq))
        if len(recent) > self._config.recent_events:
            recent.popitem(last=False)

    async def _emit_retrying(self, event: PreparedEvent) -> int:
        delay = 0.05
        warned = False
        while True:
            try:
                seq = await self._emitter.emit_prepared(event)
                if warned:
                    logger.warning("ATNA: the emitter accepts events again")
                return seq
            except (EmitterPushbackError, EmitterUnavailableError, SpoolError) as exc:
                self._counters.emit_retries += 1
                if not warned:
                    logger.error(
                        "ATNA: the emitter refused an event (%s); holding messages and "
                        "retrying (TLS senders are pushed back)",
                        exc,
                    )
                    warned = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._config.emit_retry_max_seconds)

    # ------------------------------------------------------------------ the kept store

    async def _keep(self, item: _Item, reason: str, detail: str, fld: str | None = None) -> None:
        item.reason, item.detail, item.field = reason, detail, fld
        kept_queue = self._kept_queue
        if kept_queue is None:  # pragma: no cover - start() creates it first
            return
        await kept_queue.put(item)

    async def _keep_loop(self) -> None:
        kept_queue = self._kept_queue
        if kept_queue is None:  # pragma: no cover
            return
        while True:
            batch = [await kept_queue.get()]
            while not kept_queue.empty() and len(batch) < 256:
                batch.append(kept_queue.get_nowait())
            try:
                await self._write_kept(batch, final=False)
            finally:
                for _ in batch:
                    kept_queue.task_done()

    async def _write_kept(self, batch: list[_Item], *, final: bool) -> None:
        """Write until every item is durable (retrying while the store is full), or, with
        ``final``, try once and log whatever could not be kept."""
        store, io = self._store, self._io
        loop = asyncio.get_running_loop()
        pending = batch
        while pending:
            records = [
                KeptRecord(
                    raw=i.raw,
                    received_at=datetime.fromtimestamp(i.received_at, UTC),
                    transport=i.transport,
                    peer=i.peer,
                    reason=i.reason or "unknown",
                    detail=i.detail,
                    field=i.field,
                    sender=i.sender,
                )
                for i in pending
            ]
            written = 0
            error: KeptStoreError | None = None
            if store is None or io is None:
                error = KeptStoreError("the kept store is closed")
            else:
                try:
                    written = len(await loop.run_in_executor(io, store.append, records))
                except KeptStoreFullError as exc:
                    written = len(exc.written)
                    error = exc
                except KeptStoreError as exc:
                    error = exc
            for item in pending[:written]:
                self._counters.kept[item.reason or "unknown"] += 1
                logger.info(
                    "ATNA: kept a %d-byte message from %s/%s: %s",
                    len(item.raw),
                    item.transport,
                    item.peer,
                    item.reason,
                )
            pending = pending[written:]
            if not pending:
                if self._kept_full:
                    logger.warning("ATNA: the kept store accepts messages again")
                self._kept_full = False
                return
            if final:
                self._counters.lost_at_stop += len(pending)
                logger.error(
                    "ATNA: %d message(s) could not be kept at stop: %s", len(pending), error
                )
                return
            if isinstance(error, KeptStoreFullError):
                if not self._kept_full:
                    logger.error("ATNA: %s; holding messages until there is room", error)
                self._kept_full = True
            else:
                logger.error("ATNA: cannot write the kept store (%s); retrying", error)
            await asyncio.sleep(_KEPT_RETRY_SECONDS)
