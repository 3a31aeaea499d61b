"""``relay.overdue`` and ``relay.no_readback``: a critical-result relay whose deadline
passes without communication, or without a read-back.

Invariant: decided by the log's own clock (the latest event time appended to it so far),
never the wall clock, so replay raises at the same leaf. The deadline is the category's
(``relay_late``'s deadlines) after ``identified_at``; records are one relay by
``relay_identity`` (as ``relay.late``). Overdue: a relay opened by a record with no
``communicated_at`` is settled by any later record of it that has one, and raised once
the clock passes the deadline before that. No read-back: a relay first recorded as
communicated by PHONE or IN_PERSON with ``read_back`` false (ELECTRONIC: with no
``acknowledged_at``) is settled by a record of it, made by the deadline, with
``read_back`` true (ELECTRONIC: or an ``acknowledged_at``), and raised once the clock
passes the deadline before that. Each relay raises each rule at most once, keyed by the
record that opened it, citing it, later records of it and the leaf where the deadline
was seen to pass.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar, Final

from ledger.audit.records import JsonValue
from ledger.audit.rules.access import facility_id, named_patient
from ledger.audit.rules.config import RelayNoReadbackConfig, RelayOverdueConfig
from ledger.audit.rules.model import (
    RELAY,
    AppendedEvent,
    Evidence,
    Finding,
    PatientRef,
    Position,
    Severity,
)
from ledger.audit.rules.relays import RelayIdentity, relay_identity

ELECTRONIC: Final = "ELECTRONIC"
#: The relay methods (schemas/critical_result_relay.v1.avsc ``RelayMethod``).
METHODS: Final = frozenset({"PHONE", "IN_PERSON", ELECTRONIC})


@dataclass(slots=True)
class _Pending:
    opened: Position
    deadline: datetime
    category: str
    facility: str | None
    sender: str | None
    patient: PatientRef | None
    method: str | None
    #: Later records of the relay made by the deadline (their positions): evidence.
    later: list[Position] = field(default_factory=list)


@dataclass(slots=True)
class RelayDeadlineWindow:
    clock: datetime | None = None
    pending: dict[RelayIdentity, _Pending] = field(default_factory=dict)
    #: (deadline, opening position, identity) of every pending relay, earliest first.
    deadlines: list[tuple[datetime, Position, RelayIdentity]] = field(default_factory=list)
    #: Relays decided (settled in time, or raised): never opened again. One per relay.
    settled: set[RelayIdentity] = field(default_factory=set)


class _RelayDeadlineRule:
    """Pending relays, their deadlines, and the log's clock passing them."""

    id: ClassVar[str]
    version: Final = 1

    def __init__(
        self, severity: Severity, deadlines: Mapping[str, timedelta], grace: timedelta
    ) -> None:
        self._severity = severity
        self._deadlines = dict(deadlines)
        self._grace = grace

    @property
    def severity(self) -> Severity:
        return self._severity

    def thresholds(self) -> Mapping[str, JsonValue]:
        return {
            f"{category.lower()}_minutes": int(deadline.total_seconds() // 60)
            for category, deadline in sorted(self._deadlines.items())
        }

    def new_window(self) -> RelayDeadlineWindow:
        return RelayDeadlineWindow()

    def opens(self, event: AppendedEvent) -> bool:
        """Whether this record, the first of its relay seen unsettled, opens a case."""
        raise NotImplementedError

    def settles(self, event: AppendedEvent, pending: _Pending) -> bool:
        """Whether this later record of a pending relay settles it."""
        raise NotImplementedError

    def describe(self, p: _Pending) -> str:
        raise NotImplementedError

    def evaluate(self, event: AppendedEvent, window: RelayDeadlineWindow) -> Sequence[Finding]:
        if event.schema == RELAY:
            self._observe(event, window)
        at = event.event_time
        if window.clock is None or at > window.clock:
            window.clock = at
        return self._expire(window.clock, window)

    def _observe(self, event: AppendedEvent, window: RelayDeadlineWindow) -> None:
        identity = relay_identity(event)
        if identity in window.settled:
            return
        pending = window.pending.get(identity)
        if pending is not None:
            if self.settles(event, pending):
                del window.pending[identity]
                window.settled.add(identity)
            elif event.event_time <= pending.deadline:
                pending.later.append(event.position)
            return
        category = event.text("category") or ""
        limit = self._deadlines.get(category)
        identified = event.instant("identified_at")
        if limit is None or identified is None:
            return
        if not self.opens(event):
            if event.instant("communicated_at") is not None:
                window.settled.add(identity)  # communicated, and confirmed if this asks it
            return
        patient = named_patient(event)
        window.pending[identity] = _Pending(
            opened=event.position, deadline=identified + limit, category=category,
            facility=facility_id(event), sender=event.text("sender", "user_id"),
            patient=patient, method=event.text("method"),
        )  # fmt: skip
        heapq.heappush(window.deadlines, (identified + limit, event.position, identity))

    def idle(self, now: datetime, window: RelayDeadlineWindow) -> Sequence[Finding]:
        """In a log with nothing more to read, the deadlines the wall clock ``now`` has
        passed by more than the grace: raised now rather than when the log's next record
        arrives (the relay topic's partitions can stay quiet for hours). The same
        findings as the log's clock would raise later, so a replay raises them too."""
        return self._expire(now - self._grace, window)

    def _expire(self, clock: datetime | None, window: RelayDeadlineWindow) -> list[Finding]:
        found: list[Finding] = []
        while clock is not None and window.deadlines and window.deadlines[0][0] < clock:
            _, opened, identity = heapq.heappop(window.deadlines)
            pending = window.pending.get(identity)
            if pending is None or pending.opened != opened:
                continue  # settled in time
            del window.pending[identity]
            window.settled.add(identity)
            found.append(self._finding(pending))
        return found

    def _finding(self, p: _Pending) -> Finding:
        # The evidence is the relay's records made by the deadline, whichever clock saw
        # it pass (the log's next record, or the evaluator's wall clock in a quiet log),
        # so a replay cites the same positions.
        evidence = [Evidence(position=p.opened, role="trigger")]
        evidence += [Evidence(position=pos, role="relay_record") for pos in p.later]
        return Finding(
            rule_id=self.id,
            rule_version=self.version,
            severity=self.severity,
            trigger=p.opened,
            summary=self.describe(p),
            facility_id=p.facility,
            user_id=p.sender,
            patient=p.patient,
            evidence=tuple(evidence),
            thresholds=self.thresholds(),
        )

    def _minutes(self, category: str) -> int:
        return int(self._deadlines[category].total_seconds() // 60)


class RelayOverdue(_RelayDeadlineRule):
    """A relay not communicated by its category's deadline."""

    id: ClassVar[str] = "relay.overdue"

    def __init__(self, config: RelayOverdueConfig, deadlines: Mapping[str, timedelta]) -> None:
        super().__init__(config.severity, deadlines, config.grace)

    def opens(self, event: AppendedEvent) -> bool:
        return event.instant("communicated_at") is None

    def settles(self, event: AppendedEvent, pending: _Pending) -> bool:
        # Communicated by the deadline, as the record says: decided by the data, not by
        # when the record arrived, so replay agrees (a late communication is overdue and
        # late: relay.late raises too).
        communicated = event.instant("communicated_at")
        return communicated is not None and communicated <= pending.deadline

    def describe(self, p: _Pending) -> str:
        return (
            f"{p.category} critical result not communicated within "
            f"{self._minutes(p.category)} minutes of its identification (deadline "
            f"{p.deadline.isoformat()} passed)"
        )


class RelayNoReadback(_RelayDeadlineRule):
    """A relay communicated without a read-back (electronic: without acknowledgement)
    that no record of it made by the deadline adds."""

    id: ClassVar[str] = "relay.no_readback"

    def __init__(self, config: RelayNoReadbackConfig, deadlines: Mapping[str, timedelta]) -> None:
        super().__init__(config.severity, deadlines, config.grace)

    def opens(self, event: AppendedEvent) -> bool:
        method = event.text("method")
        if event.instant("communicated_at") is None or method not in METHODS:
            return False
        return not _confirmed(event, electronic=method == ELECTRONIC)

    def settles(self, event: AppendedEvent, pending: _Pending) -> bool:
        electronic = pending.method == ELECTRONIC
        return event.event_time <= pending.deadline and _confirmed(event, electronic=electronic)

    def describe(self, p: _Pending) -> str:
        missing = (
            "electronically with no acknowledgement"
            if p.method == ELECTRONIC
            else f"by {p.method or 'an unrecorded method'} with no read-back"
        )
        return (
            f"{p.category} critical result communicated {missing} recorded within "
            f"{self._minutes(p.category)} minutes of its identification (deadline "
            f"{p.deadline.isoformat()} passed)"
        )


def _confirmed(event: AppendedEvent, *, electronic: bool) -> bool:
    """The record shows the recipient read the finding back (or, for an electronic
    relay, acknowledged it)."""
    if event.record.get("read_back") is True:
        return True
    return electronic and event.instant("acknowledged_at") is not None
