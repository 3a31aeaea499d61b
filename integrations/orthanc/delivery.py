"""Delivery of the plugin's events to the sink, and the counters that watch it.

Invariant: ``emit`` never raises: it retries while the sink pushes back (until the auditor
stops), and counts every event it could not deliver as unaudited; the logs name only
error types and field paths, never PHI.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from typing import Final, Protocol

from producers import (
    AuditEvent,
    EmitterPushbackError,
    EventValidationError,
    PhiAccessEvent,
    ProducerError,
)

logger = logging.getLogger(__name__)

_LOG_EVERY: Final = 60.0


class Sink(Protocol):
    """Where events go: ``producers.pipe.PipeEmitter`` (or ``SyncEmitter``) in the
    plugin. The worker emits each batch it takes inside ``batch()``."""

    def emit(self, event: AuditEvent) -> None: ...

    def batch(self) -> contextlib.AbstractContextManager[None]: ...


@dataclass(slots=True)
class Counters:
    events: int = 0
    unaudited: int = 0
    refused: int = 0
    queue_full: int = 0
    unresolved: int = 0
    errors: int = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "events": self.events,
            "unaudited": self.unaudited,
            "refused": self.refused,
            "queue_full": self.queue_full,
            "unresolved": self.unresolved,
            "errors": self.errors,
        }


class Alarm:
    """Logs a problem at most once a minute per kind, with the counters."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self._last_log: dict[str, float] = {}

    def warn(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, 0.0) >= _LOG_EVERY:
            self._last_log[key] = now
            logger.error("%s (counters: %s)", message, self._counters.snapshot())


class Delivery:
    """Hands events to the sink, waiting out its pushback."""

    def __init__(self, sink: Sink, counters: Counters, stopping: threading.Event) -> None:
        self._sink = sink
        self._counters = counters
        self._stopping = stopping

    def batch(self) -> contextlib.AbstractContextManager[None]:
        return self._sink.batch()

    def emit(self, event: PhiAccessEvent) -> None:
        counters = self._counters
        delay = 0.01
        while True:
            try:
                self._sink.emit(event)
                counters.events += 1
                return
            except EmitterPushbackError:
                if self._stopping.is_set():
                    break
                time.sleep(delay)  # the queue in front of us fills: back-pressure
                delay = min(1.0, delay * 2)
            except EventValidationError as exc:
                counters.refused += 1
                counters.unaudited += 1
                logger.error("PHI audit event refused: invalid field %s", exc.field)
                return
            except ProducerError as exc:
                counters.unaudited += 1
                logger.error("PHI audit event not recorded: %s", type(exc).__name__)
                return
        counters.unaudited += 1
        logger.error("PHI audit event not recorded: the emitter is stopping")
