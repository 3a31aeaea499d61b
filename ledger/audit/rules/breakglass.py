"""``breakglass.unjustified``: an emergency override with no justification in time.

Invariant: decided by the log's own clock (the latest event time appended to it so far),
never the wall clock, so replaying the log decides the same way at the same leaf. An
override is an access or security event whose purpose of use is a break-glass code
(ETREAT, BTG) naming a patient; it is justified by a non-blank ``details.justification``
on the override itself, or on an access or security event of the same user naming the
same patient, at most ``within`` after it, appended to the same log (a patient's events
share a partition). Once the log's clock passes the deadline unjustified, one finding,
keyed by the override's position, cites the override and the event that passed it.
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
    is_user_event,
    justification,
    named_patient,
    user_id,
)
from ledger.audit.rules.config import BreakGlassConfig
from ledger.audit.rules.model import (
    AppendedEvent,
    Evidence,
    Finding,
    PatientRef,
    Position,
    Severity,
)

_Key = tuple[str, str | None, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Override:
    position: Position
    at: datetime
    user: str
    patient: PatientRef
    facility: str | None


@dataclass(slots=True)
class BreakGlassWindow:
    clock: datetime | None = None
    #: Unjustified overrides by (user, issuer, patient id).
    pending: dict[_Key, list[_Override]] = field(default_factory=dict)
    #: (deadline, position) of every pending override, earliest first.
    deadlines: list[tuple[datetime, Position, _Key]] = field(default_factory=list)


class BreakGlassUnjustified:
    """An override (``purposes``) not justified within ``within``."""

    id: Final = "breakglass.unjustified"
    version: Final = 1

    def __init__(self, config: BreakGlassConfig) -> None:
        self._config = config

    @property
    def severity(self) -> Severity:
        return self._config.severity

    def thresholds(self) -> Mapping[str, JsonValue]:
        return {
            "purposes": list(self._config.purposes),
            "justify_within_minutes": int(self._config.within.total_seconds() // 60),
        }

    def new_window(self) -> BreakGlassWindow:
        return BreakGlassWindow()

    def evaluate(self, event: AppendedEvent, window: BreakGlassWindow) -> Sequence[Finding]:
        if is_user_event(event):
            self._observe(event, window)
        at = event.event_time
        if window.clock is None or at > window.clock:
            window.clock = at
        return self._expire(event, window)

    def _observe(self, event: AppendedEvent, window: BreakGlassWindow) -> None:
        user, patient = user_id(event), named_patient(event)
        if user is None or patient is None:
            return
        key: _Key = (user, patient.issuer, patient.id)
        at = event.event_time
        justified = justification(event) is not None
        if justified and key in window.pending:
            within = self._config.within
            left = [o for o in window.pending[key] if not o.at <= at <= o.at + within]
            if left:
                window.pending[key] = left
            else:
                del window.pending[key]
        if justified or event.text("purpose_of_use") not in self._config.purposes:
            return
        override = _Override(
            position=event.position, at=at, user=user, patient=patient, facility=facility_id(event)
        )
        window.pending.setdefault(key, []).append(override)
        heapq.heappush(window.deadlines, (at + self._config.within, event.position, key))

    def _expire(self, event: AppendedEvent, window: BreakGlassWindow) -> list[Finding]:
        found: list[Finding] = []
        clock = window.clock
        while clock is not None and window.deadlines and window.deadlines[0][0] < clock:
            _, position, key = heapq.heappop(window.deadlines)
            pending = window.pending.get(key, [])
            match = [o for o in pending if o.position == position]
            if not match:
                continue  # justified in time
            rest = [o for o in pending if o.position != position]
            if rest:
                window.pending[key] = rest
            else:
                del window.pending[key]
            found.append(self._finding(match[0], event.position))
        return found

    def _finding(self, o: _Override, passed_at: Position) -> Finding:
        minutes = int(self._config.within.total_seconds() // 60)
        evidence = [Evidence(position=o.position, role="trigger")]
        if passed_at != o.position:
            evidence.append(Evidence(position=passed_at, role="deadline_passed"))
        return Finding(
            rule_id=self.id,
            rule_version=self.version,
            severity=self.severity,
            trigger=o.position,
            summary=(
                f"{o.user} broke the glass for patient {o.patient.id} and recorded no "
                f"justification within {minutes} minutes"
            ),
            facility_id=o.facility,
            user_id=o.user,
            patient=o.patient,
            evidence=tuple(evidence),
            thresholds=self.thresholds(),
        )
