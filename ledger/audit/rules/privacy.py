"""``privacy.own_record``, ``privacy.coworker_record``, ``privacy.vip_record``: a
successful access that reached a patient on the watch list.

Invariant: decided by the record and the watch list alone, once per (rule, user,
patient, calendar day of the event time in the rules' time zone) per log: the first such
access of the day raises, later ones that day do not. Own record: a ``workforce`` line
naming the acting user. Co-worker: a ``workforce`` line naming another member (and none
naming the actor). VIP: a ``vip`` line. A finding is keyed by its triggering leaf, so an
access reaching several listed patients raises one finding per rule, naming the first
(by issuer and id) and counting the others. No list configured: the rules are inert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import ClassVar, Final
from zoneinfo import ZoneInfo

from ledger.audit.records import JsonValue
from ledger.audit.rules.access import (
    facility_id,
    is_access,
    local_time,
    patients_seen,
    succeeded,
    user_id,
)
from ledger.audit.rules.model import AppendedEvent, Evidence, Finding, PatientRef, Severity
from ledger.audit.rules.watchlist import WatchEntry, WatchKind, WatchList

_Seen = tuple[str, str | None, str, date]


@dataclass(slots=True)
class PrivacyWindow:
    #: (user, issuer, patient id, day) already alerted in this log: one entry per alert.
    alerted: set[_Seen] = field(default_factory=set)


class _WatchListRule:
    """The shared part: which listed patients an access reached, once per day."""

    id: ClassVar[str]
    version: Final = 1
    _what: ClassVar[str]

    def __init__(self, watchlist: WatchList | None, severity: Severity, zone: ZoneInfo) -> None:
        self._list = watchlist
        self._severity = severity
        self._zone = zone

    @property
    def severity(self) -> Severity:
        return self._severity

    def thresholds(self) -> Mapping[str, JsonValue]:
        w = self._list
        return {
            "list_file": None if w is None else w.name,
            "list_sha256": None if w is None else w.sha256,
            "list_entries": 0 if w is None else len(w.entries),
            "timezone": self._zone.key,
        }

    def new_window(self) -> PrivacyWindow:
        return PrivacyWindow()

    def hits(self, user: str, entries: Sequence[WatchEntry]) -> bool:
        """Whether the listed entries for one patient make this rule's case."""
        raise NotImplementedError

    def evaluate(self, event: AppendedEvent, window: PrivacyWindow) -> Sequence[Finding]:
        if self._list is None or not is_access(event) or not _mentions(event, self._list):
            return ()
        listed = [(p, self._list.matching(p.id, p.issuer)) for p in patients_seen(event)]
        listed = [(p, entries) for p, entries in listed if entries]
        user = user_id(event)
        if not listed or user is None or not succeeded(event):
            return ()
        day = local_time(event, self._zone).date()
        found: list[PatientRef] = []
        for patient, entries in listed:
            if not self.hits(user, entries):
                continue
            seen: _Seen = (user, patient.issuer, patient.id, day)
            if seen not in window.alerted:
                window.alerted.add(seen)
                found.append(patient)
        if not found:
            return ()
        found.sort(key=lambda p: (p.issuer or "", p.id))
        return (self._finding(event, user, found, day),)

    def _finding(
        self, event: AppendedEvent, user: str, patients: Sequence[PatientRef], day: date
    ) -> Finding:
        first = patients[0]
        more = f" and {len(patients) - 1} more listed patient(s)" if len(patients) > 1 else ""
        return Finding(
            rule_id=self.id,
            rule_version=self.version,
            severity=self.severity,
            trigger=event.position,
            summary=(
                f"{user} opened {self._what} (patient {first.id}){more} on {day.isoformat()} "
                f"({self._zone.key}); later accesses that day raise no alert"
            ),
            facility_id=facility_id(event),
            user_id=user,
            patient=first,
            evidence=(Evidence(position=event.position, role="trigger"),),
            thresholds=self.thresholds(),
        )


def _mentions(event: AppendedEvent, watchlist: WatchList) -> bool:
    """Whether the record names a listed patient id at all (a cheap first look: most
    accesses name none)."""
    named = event.record.get("patient")
    if isinstance(named, Mapping) and watchlist.lists_id(named.get("id")):
        return True
    disclosed = event.record.get("disclosed")
    return isinstance(disclosed, list) and any(
        isinstance(d, Mapping) and watchlist.lists_id(d.get("id")) for d in disclosed
    )


class OwnRecord(_WatchListRule):
    """A workforce member opening their own patient record."""

    id: ClassVar[str] = "privacy.own_record"
    _what: ClassVar[str] = "their own patient record"

    def hits(self, user: str, entries: Sequence[WatchEntry]) -> bool:
        return any(e.kind is WatchKind.WORKFORCE and e.user_id == user for e in entries)


class CoworkerRecord(_WatchListRule):
    """A workforce member opening the patient record of another workforce member."""

    id: ClassVar[str] = "privacy.coworker_record"
    _what: ClassVar[str] = "a co-worker's patient record"

    def hits(self, user: str, entries: Sequence[WatchEntry]) -> bool:
        workforce = [e for e in entries if e.kind is WatchKind.WORKFORCE]
        return bool(workforce) and all(e.user_id != user for e in workforce)


class VipRecord(_WatchListRule):
    """Anyone opening the record of a patient on the VIP list."""

    id: ClassVar[str] = "privacy.vip_record"
    _what: ClassVar[str] = "a VIP patient's record"

    def hits(self, user: str, entries: Sequence[WatchEntry]) -> bool:
        return any(e.kind is WatchKind.VIP for e in entries)
