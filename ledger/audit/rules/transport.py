"""``transport.unencrypted``: an access to PHI that travelled unencrypted.

Invariant: decided by the record alone. A PhiAccessEvent (schema v3) whose
``transport.encrypted`` is false raises one finding, at that leaf, whatever its outcome (a
refused request still carried the patient's identifiers in the clear). ``transport``
absent (every v1 and v2 event) or ``encrypted`` null is unknown, not a violation: nothing
is raised unless ``alert_on_unknown``, and then only at the first unknown access of each
(facility, channel, UTC day of the event time) in the log, so a log replayed raises the
same findings at the same leaves. docs/design/transport.md says what the field means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Final

from ledger.audit.records import JsonValue
from ledger.audit.rules.access import (
    facility_id,
    is_access,
    named_patient,
    patients_seen,
    succeeded,
    user_id,
)
from ledger.audit.rules.config import TransportConfig
from ledger.audit.rules.model import AppendedEvent, Evidence, Finding, Severity

#: The channel named when an event records no transport at all (v1, v2, or v3 null).
NOT_RECORDED: Final = "not recorded"

_Day = tuple[str | None, str, str]


@dataclass(slots=True)
class TransportWindow:
    #: (facility, channel, UTC date) already alerted as unknown in this log.
    unknown_days: set[_Day] = field(default_factory=set)


def _transport(event: AppendedEvent) -> tuple[str, bool | None]:
    """(channel, encrypted): the channel ``NOT_RECORDED`` when the event has none."""
    raw = event.record.get("transport")
    if not isinstance(raw, Mapping):
        return NOT_RECORDED, None
    channel, encrypted = raw.get("channel"), raw.get("encrypted")
    return (
        channel if isinstance(channel, str) else "UNKNOWN",
        encrypted if isinstance(encrypted, bool) else None,
    )


def _utc_date(event: AppendedEvent) -> str:
    """The UTC calendar day of the event time (a time with no offset is read as UTC)."""
    at = event.event_time
    at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return at.date().isoformat()


class TransportUnencrypted:
    """An access recorded as unencrypted; with ``alert_on_unknown``, unknown ones too."""

    id: Final = "transport.unencrypted"
    version: Final = 1

    def __init__(self, config: TransportConfig) -> None:
        self._config = config

    @property
    def severity(self) -> Severity:
        return self._config.severity

    def thresholds(self) -> Mapping[str, JsonValue]:
        return {"alert_on_unknown": self._config.alert_on_unknown}

    def new_window(self) -> TransportWindow:
        return TransportWindow()

    def evaluate(self, event: AppendedEvent, window: TransportWindow) -> Sequence[Finding]:
        if not is_access(event):
            return ()
        channel, encrypted = _transport(event)
        if encrypted is True:
            return ()
        if encrypted is False:
            return (self._finding(event, f"over {channel}, unencrypted"),)
        if not self._config.alert_on_unknown:
            return ()
        day: _Day = (facility_id(event), channel, _utc_date(event))
        if day in window.unknown_days:
            return ()
        window.unknown_days.add(day)
        how = (
            "with no transport recorded"
            if channel == NOT_RECORDED
            else f"over {channel}, not known to be encrypted"
        )
        return (self._finding(event, how, unknown_on=day[2]),)

    def _finding(self, event: AppendedEvent, how: str, *, unknown_on: str | None = None) -> Finding:
        user = user_id(event)
        patient = named_patient(event)
        if patient is not None:
            whose = f"patient {patient.id}"
        else:
            whose = f"a query disclosing {len(patients_seen(event))} patient(s)"
        refused = "" if succeeded(event) else " (refused)"
        summary = f"{user or 'an unknown user'} accessed {whose}{refused} {how}"
        if unknown_on is not None:
            summary += (
                f": the first such access at {facility_id(event) or 'an unnamed facility'}"
                f" on {unknown_on} (UTC); later ones that day raise no alert"
            )
        return Finding(
            rule_id=self.id,
            rule_version=self.version,
            severity=self.severity,
            trigger=event.position,
            summary=summary,
            facility_id=facility_id(event),
            user_id=user,
            patient=patient,
            evidence=(Evidence(position=event.position, role="trigger"),),
            thresholds=self.thresholds(),
        )
