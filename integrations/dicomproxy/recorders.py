"""Two small ``OperationRecorder``s: ``MemoryRecorder`` (tests, and a host that drains
operations itself) and ``LoggingRecorder`` (one log line per operation, no PHI).

Invariant: neither blocks: ``MemoryRecorder`` appends under a lock and raises
``RecorderUnavailable`` when switched off (``available = False``) or full;
``LoggingRecorder`` writes kind, AE titles, address, status and counts, never patient
ids or criteria values.
"""

from __future__ import annotations

import logging
import threading

from integrations.dicomproxy.errors import RecorderUnavailable
from integrations.dicomproxy.operations import DicomOperation

__all__ = ["LoggingRecorder", "MemoryRecorder"]


class MemoryRecorder:
    """Keeps operations in memory, at most ``capacity``."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._lock = threading.Lock()
        self._ops: list[DicomOperation] = []
        self._capacity = capacity
        self._changed = threading.Condition(self._lock)
        self.available = True

    def record(self, op: DicomOperation) -> None:
        with self._lock:
            if not self.available:
                raise RecorderUnavailable("the memory recorder is switched off")
            if len(self._ops) >= self._capacity:
                raise RecorderUnavailable("the memory recorder is full")
            self._ops.append(op)
            self._changed.notify_all()

    @property
    def operations(self) -> tuple[DicomOperation, ...]:
        with self._lock:
            return tuple(self._ops)

    def wait_for(self, count: int, timeout: float = 10.0) -> tuple[DicomOperation, ...]:
        """The operations once at least ``count`` were recorded (or at ``timeout``)."""
        with self._changed:
            self._changed.wait_for(lambda: len(self._ops) >= count, timeout=timeout)
            return tuple(self._ops)

    def clear(self) -> None:
        with self._lock:
            self._ops.clear()


class LoggingRecorder:
    """Logs each operation at INFO on ``logger`` (default: this module's)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(__name__)

    def record(self, op: DicomOperation) -> None:
        status = f"0x{op.status:04X}" if op.status is not None else "none"
        self._logger.info(
            "%s %s->%s from %s:%d%s level=%s status=%s results=%d patients=%d studies=%d%s",
            op.kind,
            op.calling_ae,
            op.called_ae,
            op.peer_address,
            op.peer_port,
            " tls" if op.tls else "",
            op.query_level or "-",
            status,
            op.result_count,
            len(op.result_patients),
            len(op.result_studies),
            f" error={op.proxy_error}" if op.proxy_error else "",
        )
