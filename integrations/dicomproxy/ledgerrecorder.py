"""``LedgerRecorder``: the ``OperationRecorder`` that writes each operation to the ledger,
as a PhiAccessEvent v2 (``eventmap``) handed to the producer library's ``SyncEmitter``
with its fsynced spool.

Invariants: ``record`` never waits on Kafka or the disk: it maps, validates and queues the
event (the emitter thread sends it, or spools it while Kafka is away) and returns; it
raises ``RecorderUnavailable`` only when the event cannot be queued (invalid, queue full,
emitter stopped) or cannot be spooled: when events have waited ``stalled_after_seconds``
without the emitter taking any (Kafka away and the spool full or unwritable), a watcher
marks the recorder stalled until the emitter moves again. Logs carry counts and error
types, never PHI.
"""

from __future__ import annotations

import logging
import threading
import time
from types import TracebackType
from typing import Final, Protocol, Self

from integrations.dicomproxy.errors import RecorderUnavailable
from integrations.dicomproxy.eventmap import event_of
from integrations.dicomproxy.ledgerconfig import LedgerConfig
from integrations.dicomproxy.operations import DicomOperation
from producers import (
    AuditEvent,
    EmitterPushbackError,
    EventValidationError,
    Facility,
    ProducerError,
    SyncEmitter,
)

__all__ = ["LedgerRecorder"]

logger = logging.getLogger(__name__)

#: Longest pause of the watcher between two looks at the emitter's counts.
_WATCH_EVERY: Final = 0.25


class Sink(Protocol):
    """What the recorder needs of ``SyncEmitter`` (tests pass a fake)."""

    def start(self, timeout: float | None = None) -> None: ...

    def stop(self, timeout: float | None = None) -> bool: ...

    def emit(self, event: AuditEvent) -> None: ...

    @property
    def counts(self) -> dict[str, int]: ...


class LedgerRecorder:
    """``with LedgerRecorder(config) as recorder: DicomProxy(proxy_config, recorder)``."""

    def __init__(self, config: LedgerConfig, *, emitter: Sink | None = None) -> None:
        self._config = config
        self._facility = Facility(id=config.facility_id, name=config.facility_name)
        self._emitter: Sink = emitter or SyncEmitter(
            config.emitter_config(),
            max_pending=config.max_pending,
            block_seconds=0.0,  # never wait on the association's thread
            thread_name="dicomproxy-ledger-emitter",
        )
        self._lock = threading.Lock()
        self._stalled = False
        self._watching = threading.Event()
        self._watcher: threading.Thread | None = None
        self.recorded = 0
        self.unavailable = 0

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the emitter (opens the spool; Kafka may be away) and the watcher."""
        self._emitter.start()
        if self._watcher is None:
            self._watching.set()
            self._watcher = threading.Thread(
                target=self._watch, name="dicomproxy-ledger-watch", daemon=True
            )
            self._watcher.start()

    def stop(self) -> bool:
        """Flush to Kafka or spool what is queued, then stop; True when nothing was lost."""
        self._watching.clear()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
            self._watcher = None
        return self._emitter.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ recording

    @property
    def stalled(self) -> bool:
        return self._stalled

    def record(self, op: DicomOperation) -> None:
        try:
            if self._stalled:
                raise RecorderUnavailable(
                    "the ledger emitter is stalled (Kafka away and the spool full or unwritable)"
                )
            try:
                self._emitter.emit(event_of(op, self._facility))
            except EventValidationError as exc:
                raise RecorderUnavailable(f"the event is invalid (field {exc.field})") from exc
            except EmitterPushbackError as exc:
                raise RecorderUnavailable("the ledger emitter's queue is full") from exc
            except ProducerError as exc:
                raise RecorderUnavailable(
                    f"the ledger emitter cannot take events ({type(exc).__name__})"
                ) from exc
        except RecorderUnavailable:
            with self._lock:
                self.unavailable += 1
            raise
        with self._lock:
            self.recorded += 1

    def stats(self) -> dict[str, int | bool]:
        counts = self._emitter.counts
        with self._lock:
            return {
                "recorded": self.recorded,
                "unavailable": self.unavailable,
                "stalled": self._stalled,
                **{f"emitter_{k}": v for k, v in counts.items()},
            }

    # ------------------------------------------------------------------ the watcher

    def _watch(self) -> None:
        """Mark the recorder stalled while events wait and the emitter takes none."""
        limit = self._config.stalled_after_seconds
        pause = min(_WATCH_EVERY, limit / 4)
        moved_at, last = time.monotonic(), -1
        while self._watching.is_set():
            counts = self._emitter.counts
            done, pending = counts["delivered"] + counts["lost"], counts["pending"]
            now = time.monotonic()
            if pending == 0 or done != last:
                moved_at, last = now, done
            stalled = now - moved_at >= limit
            if stalled != self._stalled:
                self._stalled = stalled
                if stalled:
                    logger.error(
                        "ledger emitter stalled: %d event(s) waiting for %.0fs; "
                        "refusing to record until it moves (spool full or unwritable?)",
                        pending,
                        now - moved_at,
                    )
                else:
                    logger.warning("ledger emitter moves again: recording resumes")
            time.sleep(pause)
