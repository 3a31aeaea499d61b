"""Run the IHE ATNA receiver (``ledger atna serve``) and list its kept messages.

Invariants: TLS senders must hold a certificate signed by ``client_ca`` and may claim only
the AuditSourceIDs the ``senders`` policy file lists for their certificate's CN (no
policy, no receiver: it refuses to start without one); UDP and plain TCP are off unless
``udp_port`` / ``tcp_port`` is given, and a plain TCP connection is served only from a
source address the policy's ``[tcp]`` section lists. The receiver's events go through a
durable emitter (a spool per producer id under ``LEDGER_SPOOL_DIR``, as ``ledger
simulate`` uses), so an event the receiver handed over survives Kafka being away;
``run_atna`` returns only after SIGTERM or SIGINT, once the receiver has stopped (queued
messages emitted or kept) and the emitter has flushed to Kafka or spooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

from integrations.atna.kept import KeptMessage, read_kept
from integrations.atna.receiver import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_PARSE_WORKERS,
    AtnaReceiver,
    AtnaReceiverConfig,
    AtnaStats,
)
from integrations.atna.senders import SenderPolicy, load_policy
from ledgerctl.atnametrics import AtnaCollector, receiver_check
from ledgerctl.settings import KafkaRole, Settings
from ledgerctl.simulate import emitter_config
from producers.emitter import Emitter
from producers.ops import EmitterCollector, OpsConfig, OpsServer, OpsState, emitter_checks

logger = logging.getLogger(__name__)

DEFAULT_TLS_PORT = 16514
DEFAULT_PRODUCER_ID = "atna-receiver"


def stats_json(stats: AtnaStats) -> str:
    """One line of JSON for logs and status files."""
    return json.dumps(
        {
            "running": stats.running,
            "received_tls": stats.received_tls,
            "received_udp": stats.received_udp,
            "received_tcp": stats.received_tcp,
            "mapped": stats.mapped,
            "events": stats.events,
            "resent": stats.resent,
            "kept": dict(stats.kept),
            "kept_bytes": stats.kept_bytes,
            "kept_full": stats.kept_full,
            "udp_dropped_overload": stats.udp_dropped_overload,
            "queue_depth": stats.queue_depth,
            "queue_max": stats.queue_max,
            "connections": stats.connections,
            "connections_refused": stats.connections_refused,
            "handshakes_refused": stats.handshakes_refused,
            "tcp_refused_sources": stats.tcp_refused_sources,
            "refused_senders": stats.refused_senders,
            "emit_retries": stats.emit_retries,
            "lost_at_stop": stats.lost_at_stop,
        },
        sort_keys=True,
    )


async def run_atna(
    settings: Settings,
    *,
    tls_port: int | None,
    udp_port: int | None,
    cert: Path | None,
    key: Path | None,
    kept_dir: Path,
    client_ca: Path | None,
    senders: Path | SenderPolicy,
    tcp_port: int | None = None,
    tcp_host: str = "127.0.0.1",
    host: str = "127.0.0.1",
    producer_id: str = DEFAULT_PRODUCER_ID,
    default_facility: str | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_connections: int = 256,
    idle_timeout: float = 300.0,
    frame_timeout: float = 60.0,
    queue_max: int = 4096,
    parse_workers: int | None = None,
    kept_max_bytes: int = 256 * 1024 * 1024,
    stats_every: float = 60.0,
    ready: Callable[[AtnaReceiver], None] | None = None,
    stop: asyncio.Event | None = None,
    ops: OpsConfig | None = None,
) -> AtnaStats:
    """Run the receiver until SIGTERM/SIGINT (or ``stop`` is set); return its last stats.

    ``ready`` is called once the listeners are bound (with the receiver, whose
    ``tls_port`` / ``tcp_port`` / ``udp_port`` are the bound ports). With ``ops``, an ops
    listener serves its metrics and readiness (docs/observability.md). Raises
    ``AtnaPolicyError`` for an unreadable policy file, ``ValueError`` for a configuration
    the receiver refuses.
    """
    policy = (
        senders
        if isinstance(senders, SenderPolicy)
        else load_policy(senders, ledger_names={settings.ledger_name})
    )
    config = AtnaReceiverConfig(
        kept_dir=str(kept_dir),
        host=host,
        tls_port=tls_port,
        udp_port=udp_port,
        tcp_port=tcp_port,
        tcp_host=tcp_host,
        cert_file=None if cert is None else str(cert),
        key_file=None if key is None else str(key),
        client_ca_file=None if client_ca is None else str(client_ca),
        policy=policy,
        max_message_bytes=max_message_bytes,
        max_connections=max_connections,
        idle_timeout_seconds=idle_timeout,
        frame_timeout_seconds=frame_timeout,
        queue_max=queue_max,
        parse_workers=DEFAULT_PARSE_WORKERS if parse_workers is None else parse_workers,
        kept_max_bytes=kept_max_bytes,
        default_facility=default_facility,
    )
    stopping = stop or asyncio.Event()
    emitting = emitter_config(settings, producer_id, KafkaRole.ATNA)
    with _stop_on_signals(stopping):
        async with (
            Emitter(emitting) as emitter,
            AtnaReceiver(config, emitter) as receiver,
            contextlib.AsyncExitStack() as stack,
        ):
            if ops is not None:
                state = OpsState()
                state.registry.register(AtnaCollector(receiver.stats))
                state.registry.register(EmitterCollector({"atna": emitter}))
                state.checks["receiver"] = receiver_check(receiver)
                state.checks.update(emitter_checks(emitter, max_bytes=emitting.spool_max_bytes))
                await stack.enter_async_context(OpsServer(ops, state))
            _log_ready(receiver, settings, config=config, producer_id=producer_id)
            if ready is not None:
                ready(receiver)
            await _log_stats_until(stopping, receiver, stats_every)
            await receiver.stop()
            return receiver.stats()


@contextlib.contextmanager
def _stop_on_signals(stopping: asyncio.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stopping`` inside the block; their handlers go when it ends."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        yield
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def _log_ready(
    receiver: AtnaReceiver,
    settings: Settings,
    *,
    config: AtnaReceiverConfig,
    producer_id: str,
) -> None:
    host, policy = config.host, config.policy
    logger.info(
        "ATNA receiver ready: TLS %s:%s (client certificates required, %d senders), "
        "TCP %s (%d source networks), UDP %s, producer %s, topic %s",
        host,
        receiver.tls_port,
        len(policy.tls),
        "off" if receiver.tcp_port is None else f"{config.tcp_host}:{receiver.tcp_port}",
        len(policy.tcp),
        "off" if receiver.udp_port is None else f"{host}:{receiver.udp_port}",
        producer_id,
        settings.access_topic,
    )


async def _log_stats_until(
    stopping: asyncio.Event, receiver: AtnaReceiver, stats_every: float
) -> None:
    """Log the receiver's counters every ``stats_every`` seconds, and once more at the stop."""
    while not stopping.is_set():
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(stats_every):
                await stopping.wait()
        logger.info("ATNA stats %s", stats_json(receiver.stats()))


def list_kept(
    kept_dir: Path, *, reason: str | None = None, after_id: int = 0, limit: int = 100
) -> Iterator[KeptMessage]:
    """The kept messages of a receiver (see ``integrations.atna.kept``)."""
    return read_kept(kept_dir, reason=reason, after_id=after_id, limit=limit)


def kept_json(message: KeptMessage, *, with_raw: bool = False) -> str:
    out: dict[str, object] = {
        "id": message.id,
        "received_at": message.received_at.isoformat(),
        "transport": message.transport,
        "peer": message.peer,
        "sender": message.sender,
        "reason": message.reason,
        "detail": message.detail,
        "field": message.field,
        "size": len(message.raw),
    }
    if with_raw:
        out["raw"] = message.raw.decode("utf-8", errors="replace")
    return json.dumps(out)
