"""Who an event touched: the patient it named and the patients its answer returned.

Invariant: pure; a completed event touches the patient it names; an access's answer
touches every patient it lists in ``disclosed`` (whatever the outcome: the answer carried
them), each with that patient's own state and PHI kinds; a patient named and listed is
touched once, as named. Design: docs/design/reports.md, "Events that name many patients".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ledger.audit.reports.phi import PhiKind, disclosed_phi_kinds, phi_kinds
from ledger.audit.reports.rows import AccessRow, DisclosedRef

#: A patient: (issuer, id); an id is unique only within its issuer.
PatientKey = tuple[str | None, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class AffectedPatient:
    """One individual whose PHI an in-scope event touched (164.410(c)(1): identify each)."""

    patient_id: str
    issuer: str | None
    #: State of residence on the latest in-scope event that records one.
    state: str | None
    #: Other states recorded for this patient on in-scope events (moves, data errors).
    other_states: tuple[str, ...]
    first_access: datetime
    last_access: datetime
    phi_kinds: tuple[PhiKind, ...]
    events: int
    users: tuple[str, ...]
    facilities: tuple[str, ...]
    #: Of ``events``, those whose answer returned this patient without the request naming
    #: them (a query's result set, a bulk listing: PhiAccessEvent v2 ``disclosed``).
    disclosed_events: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Touch:
    """One event's touch of one patient: the state it records and the PHI kinds."""

    row: AccessRow
    state: str | None
    kinds: frozenset[PhiKind]
    #: Returned by the answer, not named by the request.
    disclosed: bool


def touches_of(
    row: AccessRow, *, completed: bool
) -> tuple[dict[PatientKey, Touch], PatientKey | None]:
    """The patients ``row`` touched, and the patient it only tried to reach (named by a
    failed event whose answer did not return them), if any."""
    touched: dict[PatientKey, Touch] = {}
    named: PatientKey | None = None
    if row.patient_id is not None:
        named = (row.patient_issuer, row.patient_id)
    named_listed: DisclosedRef | None = None
    for p in row.disclosed:
        key = (p.issuer, p.id)
        if key == named:
            named_listed = p
            continue
        touched[key] = Touch(
            row=row, state=p.state, kinds=disclosed_phi_kinds(row, p), disclosed=True
        )
    if named is None:
        return touched, None
    if not completed and named_listed is None:
        return touched, named
    state = row.patient_state
    if state is None and named_listed is not None:
        state = named_listed.state
    touched[named] = Touch(row=row, state=state, kinds=phi_kinds(row), disclosed=False)
    return touched, None


def affected_patient(key: PatientKey, touches: list[Touch]) -> AffectedPatient:
    """The affected patient ``key`` from their touches, in chronological order."""
    issuer, patient_id = key
    first, last = touches[0].row, touches[-1].row
    states = [t.state for t in touches if t.state is not None]
    state = states[-1] if states else None
    kinds: set[PhiKind] = set()
    for t in touches:
        kinds |= t.kinds
    return AffectedPatient(
        patient_id=patient_id,
        issuer=issuer,
        state=state,
        other_states=tuple(sorted(set(states) - {state})) if state is not None else (),
        first_access=first.event_time,
        last_access=last.event_time,
        phi_kinds=tuple(sorted(kinds)),
        events=len(touches),
        users=tuple(sorted({t.row.user_id for t in touches})),
        facilities=tuple(sorted({t.row.facility_id for t in touches})),
        disclosed_events=sum(1 for t in touches if t.disclosed),
    )


def patient_order(keys: Iterable[PatientKey]) -> list[PatientKey]:
    """Patients in report order: by issuer (none first), then id."""
    return sorted(keys, key=lambda k: (k[0] or "", k[1]))
