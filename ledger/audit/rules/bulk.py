"""``access.bulk``: one user reaching more than N distinct patients within M minutes.

Invariant: one finding per crossing, not per event. A user's window is "over" from the
event that takes it above N until the distinct count falls back to N or fewer; only the
event that crosses raises. The window is the M minutes up to the latest event time seen
for that user in the log, so an out-of-order earlier event counts where it belongs; the
accesses in it are kept in a heap by time with a count per patient (log k per event).
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from ledger.audit.records import JsonValue
from ledger.audit.rules.access import (
    facility_id,
    is_access,
    patients_seen,
    succeeded,
    user_id,
)
from ledger.audit.rules.config import BulkAccessConfig
from ledger.audit.rules.model import (
    AppendedEvent,
    Evidence,
    Finding,
    Position,
    Severity,
)

#: At most this many positions are listed as a window's evidence.
MAX_EVIDENCE: Final = 1000


_Patient = tuple[str | None, str]


@dataclass(slots=True)
class _UserWindow:
    clock: datetime | None = None
    #: (event time, position, arrival, patient) of each access in the window, earliest
    #: first (the arrival number breaks ties, so patients are never compared).
    heap: list[tuple[datetime, Position, int, _Patient]] = field(default_factory=list)
    arrivals: int = 0
    #: Accesses in the window per patient: its length is the distinct count.
    counts: dict[_Patient, int] = field(default_factory=dict)
    over: bool = False

    def add(self, at: datetime, position: Position, patient: _Patient) -> None:
        self.arrivals += 1
        heapq.heappush(self.heap, (at, position, self.arrivals, patient))
        self.counts[patient] = self.counts.get(patient, 0) + 1

    def prune(self, horizon: datetime) -> None:
        """Forget accesses at or before ``horizon`` (the window is (horizon, clock])."""
        while self.heap and self.heap[0][0] <= horizon:
            _, _, _, patient = heapq.heappop(self.heap)
            left = self.counts[patient] - 1
            if left:
                self.counts[patient] = left
            else:
                del self.counts[patient]

    def first_positions(self) -> list[Position]:
        """Each patient's earliest access in the window."""
        first: dict[_Patient, Position] = {}
        for _, position, _, patient in sorted(self.heap):
            first.setdefault(patient, position)
        return sorted(first.values())


@dataclass(slots=True)
class BulkWindow:
    users: dict[str, _UserWindow] = field(default_factory=dict)


class BulkAccess:
    """More than ``max_patients`` distinct patients by one user within ``window``."""

    id: Final = "access.bulk"
    version: Final = 1

    def __init__(self, config: BulkAccessConfig) -> None:
        self._config = config

    @property
    def severity(self) -> Severity:
        return self._config.severity

    def thresholds(self) -> Mapping[str, JsonValue]:
        return {
            "max_patients": self._config.max_patients,
            "window_minutes": int(self._config.window.total_seconds() // 60),
        }

    def new_window(self) -> BulkWindow:
        return BulkWindow()

    def evaluate(self, event: AppendedEvent, window: BulkWindow) -> Sequence[Finding]:
        user = user_id(event)
        if not is_access(event) or not succeeded(event) or user is None:
            return ()
        patients = patients_seen(event)
        if not patients:
            return ()
        w = window.users.setdefault(user, _UserWindow())
        at = event.event_time
        w.clock = at if w.clock is None or at > w.clock else w.clock
        for p in patients:
            w.add(at, event.position, (p.issuer, p.id))
        w.prune(w.clock - self._config.window)
        distinct = len(w.counts)
        if distinct <= self._config.max_patients:
            w.over = False
            return ()
        if w.over:
            return ()
        w.over = True
        return (self._finding(event, user, distinct, w.first_positions()),)

    def _finding(
        self, event: AppendedEvent, user: str, count: int, positions: Sequence[Position]
    ) -> Finding:
        evidence = [Evidence(position=event.position, role="trigger")]
        evidence += [Evidence(position=p, role="window") for p in positions][:MAX_EVIDENCE]
        minutes = int(self._config.window.total_seconds() // 60)
        return Finding(
            rule_id=self.id,
            rule_version=self.version,
            severity=self.severity,
            trigger=event.position,
            summary=(
                f"{user} reached {count} distinct patients within {minutes} minutes "
                f"(more than {self._config.max_patients})"
            ),
            facility_id=facility_id(event),
            user_id=user,
            patient=None,
            evidence=tuple(evidence),
            thresholds=self.thresholds(),
        )
