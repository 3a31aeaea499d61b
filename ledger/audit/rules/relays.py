"""``relay.late``: a critical result communicated after its ACR category's deadline.

Invariant: the deadline is counted from identification to communication, as the relay
report counts it (``ledger.audit.reports.relays``), with the deadlines of the rules'
configuration. Several records of one relay (same facility, patient, study, category and
identification time) raise at most one finding: at the first record that shows the late
communication.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from ledger.audit.records import JsonValue
from ledger.audit.rules.access import facility_id, named_patient
from ledger.audit.rules.config import RelayLateConfig
from ledger.audit.rules.model import RELAY, AppendedEvent, Evidence, Finding, Severity

#: What makes records one relay: facility, patient (issuer, id), study, category and the
#: identification time.
RelayIdentity = tuple[str | None, ...]


def relay_identity(event: AppendedEvent) -> RelayIdentity:
    """The relay a CriticalResultRelay record is a record of."""
    patient = named_patient(event)
    identified = event.instant("identified_at")
    return (
        facility_id(event),
        None if patient is None else patient.issuer,
        None if patient is None else patient.id,
        event.text("study", "uid"),
        event.text("category"),
        None if identified is None else identified.isoformat(),
    )


@dataclass(slots=True)
class RelayWindow:
    #: Relays already found late, by their identity.
    late: set[RelayIdentity] = field(default_factory=set)


class RelayLate:
    """A relay communicated more than its category's deadline after identification."""

    id: Final = "relay.late"
    version: Final = 1

    def __init__(self, config: RelayLateConfig) -> None:
        self._config = config

    @property
    def severity(self) -> Severity:
        return self._config.severity

    def thresholds(self) -> Mapping[str, JsonValue]:
        return {
            f"{category.lower()}_minutes": int(deadline.total_seconds() // 60)
            for category, deadline in sorted(self._config.deadlines.items())
        }

    def new_window(self) -> RelayWindow:
        return RelayWindow()

    def evaluate(self, event: AppendedEvent, window: RelayWindow) -> Sequence[Finding]:
        if event.schema != RELAY:
            return ()
        category = event.text("category")
        deadline = self._config.deadlines.get(category or "")
        identified = event.instant("identified_at")
        communicated = event.instant("communicated_at")
        if deadline is None or identified is None or communicated is None:
            return ()
        delay = communicated - identified
        if delay <= deadline:
            return ()
        patient = named_patient(event)
        identity = relay_identity(event)
        if identity in window.late:
            return ()
        window.late.add(identity)
        minutes = int(delay.total_seconds() // 60)
        return (
            Finding(
                rule_id=self.id,
                rule_version=self.version,
                severity=self.severity,
                trigger=event.position,
                summary=(
                    f"{category} critical result communicated {minutes} minutes after it was "
                    f"identified (deadline {int(deadline.total_seconds() // 60)} minutes)"
                ),
                facility_id=facility_id(event),
                user_id=event.text("sender", "user_id"),
                patient=patient,
                evidence=(Evidence(position=event.position, role="trigger"),),
                thresholds=self.thresholds(),
            ),
        )
