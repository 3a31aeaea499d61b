"""Run the DICOM audit proxy as a service (``ledger dicom-proxy serve``): the proxy of
``integrations.dicomproxy`` with a ``LedgerRecorder``, until SIGTERM or SIGINT.

Invariants: the configuration file must have a ``[ledger]`` section (no service without a
ledger to record to); the recorder (its emitter and spool) starts before the proxy
listens and stops after it: at a stop the proxy stops accepting and aborts the
associations still open (their open operations are recorded, ``aborted``), then the
emitter flushes to Kafka or spools what is left. The log lines carry counts only.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from integrations.dicomproxy import (
    DicomProxy,
    DicomProxyConfigError,
    LedgerRecorder,
    load_config,
)
from producers.ops import OpsConfig, OpsState, StatsCollector, ThreadedOps

logger = logging.getLogger(__name__)


def run_dicom_proxy(
    config_file: Path,
    *,
    stats_every: float = 60.0,
    stop: threading.Event | None = None,
    ready: Callable[[DicomProxy], None] | None = None,
    ops: OpsConfig | None = None,
) -> dict[str, object]:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set); return the last counters.

    Raises ``DicomProxyConfigError`` for a bad file, ``ProducerError`` when the emitter
    cannot start (spool unusable, key mismatch), ``OSError`` when the port cannot be bound.
    """
    config = load_config(config_file)
    if config.ledger is None:
        raise DicomProxyConfigError("is required by `ledger dicom-proxy serve`", key="ledger")
    stopping = stop or threading.Event()
    recorder = LedgerRecorder(config.ledger)
    with _stop_on_signals(stopping):
        recorder.start()
        try:
            with DicomProxy(config, recorder) as proxy, _ops_listener(ops, proxy, recorder):
                logger.info(
                    "DICOM proxy ready: %s:%d, producer %s, topic %s, spool %s",
                    *proxy.address,
                    config.ledger.producer_id,
                    config.ledger.topic,
                    config.ledger.spool_dir,
                )
                if ready is not None:
                    ready(proxy)
                while not stopping.wait(stats_every):
                    logger.info("DICOM proxy stats %s", stats_json(_stats(proxy, recorder)))
                stats = _stats(proxy, recorder)
        finally:
            clean = recorder.stop()
    stats.update(recorder.stats())
    stats["stopped_cleanly"] = clean
    return stats


def _stats(proxy: DicomProxy, recorder: LedgerRecorder) -> dict[str, object]:
    server = proxy.server
    return {
        "refused_operations": proxy.gate.refused,
        "unrecorded_operations": proxy.gate.lost,
        "refused_connections": server.refused_connections,
        "failed_handshakes": server.failed_handshakes,
        **recorder.stats(),
    }


@contextlib.contextmanager
def _ops_listener(
    ops: OpsConfig | None, proxy: DicomProxy, recorder: LedgerRecorder
) -> Iterator[None]:
    """The ops listener (its own thread) while the proxy serves; readiness: the recorder
    is not stalled (Kafka away and the spool full or unwritable)."""
    if ops is None:
        yield
        return
    state = OpsState()
    state.registry.register(StatsCollector("ledger_dicomproxy", lambda: _stats(proxy, recorder)))

    async def recorder_ready() -> str | None:
        return "ledger emitter stalled" if recorder.stalled else None

    state.checks["recorder"] = recorder_ready
    listener = ThreadedOps(ops, state)
    listener.start()
    try:
        yield
    finally:
        listener.stop()


def stats_json(stats: dict[str, object]) -> str:
    return json.dumps(stats, sort_keys=True)


@contextlib.contextmanager
def _stop_on_signals(stopping: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stopping`` inside the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


_SIGNALS = (signal.SIGTERM, signal.SIGINT)
