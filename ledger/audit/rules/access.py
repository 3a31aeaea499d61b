"""Reading an access out of an appended record: who, where, which patients, why.

Invariant: the same answer for the same record; fields absent from an older schema
version read as absent (a v1 PhiAccessEvent has no ``disclosed`` set).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

from ledger.audit.records import JsonValue
from ledger.audit.rules.model import PHI_ACCESS, SECURITY_EVENT, AppendedEvent, PatientRef

#: The ``details`` entry that records why a user broke the glass (docs/design/compliance.md).
JUSTIFICATION_KEY: Final = "justification"
SUCCESS: Final = "SUCCESS"


def is_access(event: AppendedEvent) -> bool:
    return event.schema == PHI_ACCESS


def is_user_event(event: AppendedEvent) -> bool:
    """A PHI access or a security event: both name an acting user."""
    return event.schema in (PHI_ACCESS, SECURITY_EVENT)


def _patient(value: JsonValue) -> PatientRef | None:
    if not isinstance(value, dict):
        return None
    pid, issuer = value.get("id"), value.get("issuer")
    if not isinstance(pid, str):
        return None
    return PatientRef(id=pid, issuer=issuer if isinstance(issuer, str) else None)


def named_patient(event: AppendedEvent) -> PatientRef | None:
    """The patient the request named (``patient``), if any."""
    return _patient(event.record.get("patient"))


def patients_seen(event: AppendedEvent) -> tuple[PatientRef, ...]:
    """Every patient whose PHI the access reached: the one named and those disclosed."""
    seen: dict[tuple[str | None, str], PatientRef] = {}
    named = named_patient(event)
    if named is not None:
        seen[(named.issuer, named.id)] = named
    disclosed = event.record.get("disclosed")
    if isinstance(disclosed, list):
        for item in disclosed:
            p = _patient(item)
            if p is not None:
                seen.setdefault((p.issuer, p.id), p)
    return tuple(seen.values())


def user_id(event: AppendedEvent) -> str | None:
    return event.text("actor", "user_id")


def facility_id(event: AppendedEvent) -> str | None:
    return event.text("facility", "id")


def succeeded(event: AppendedEvent) -> bool:
    return event.text("outcome") == SUCCESS


def justification(event: AppendedEvent) -> str | None:
    """The non-blank justification the event records in ``details``, if any."""
    details = event.record.get("details")
    if not isinstance(details, Mapping):
        return None
    text = details.get(JUSTIFICATION_KEY)
    return text.strip() if isinstance(text, str) and text.strip() else None


def local_time(event: AppendedEvent, zone: ZoneInfo) -> datetime:
    """The event time in ``zone`` (a time recorded with no offset is read as UTC), for
    calendar days and hours of the day."""
    at = event.event_time
    return (at.replace(tzinfo=UTC) if at.tzinfo is None else at).astimezone(zone)
