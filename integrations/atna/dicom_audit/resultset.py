"""The patients a message's access returned (PhiAccessEvent v2 ``disclosed``).

Invariant: a foreign Query that names no patient, or several, is one event: several
patient objects are its result set, each patient once, in canonical order (at most
``MAX_DISCLOSED_PATIENTS``, the rest counted as truncated). A message this package wrote
carries its result set in its ledger object (``disclosed`` details: id, issuer, state,
studies; ``disclosed-truncated`` and ``disclosed-total`` as the event has them;
``named-patient`` = ``none`` when the request named no one), and its patient objects
must be exactly the named patient (first) and the other listed ones, or the message is
``invalid_event``. Design: docs/design/multi-patient-events.md, "ATNA".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from integrations.atna.dicom_audit.fields import split_patient_id
from integrations.atna.dicom_audit.identity import LedgerObject, unmappable
from integrations.atna.dicom_audit.model import ParticipantObject
from producers import MAX_DISCLOSED_PATIENTS, DisclosedPatient, Patient

__all__ = [
    "DISCLOSED_DETAIL",
    "DISCLOSED_TOTAL_DETAIL",
    "DISCLOSED_TRUNCATED_DETAIL",
    "NAMED_PATIENT_DETAIL",
    "ResultSet",
    "disclosed_json",
    "foreign_result",
    "written_result",
]

#: Ledger-object details (``ParticipantObjectDetail`` types) of a written result set.
DISCLOSED_DETAIL = "disclosed"
DISCLOSED_TOTAL_DETAIL = "disclosed-total"
DISCLOSED_TRUNCATED_DETAIL = "disclosed-truncated"
NAMED_PATIENT_DETAIL = "named-patient"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultSet:
    """The named patient (if any) and the patients the answer returned."""

    patient: Patient | None
    disclosed: tuple[DisclosedPatient, ...] = ()
    truncated: bool = False
    total: int | None = None


def foreign_result(patients: Sequence[ParticipantObject]) -> ResultSet:
    """A foreign Query's patient objects as its result set (none: a search that named no
    one and matched nobody, or did not say whom)."""
    unique: dict[tuple[str, str], DisclosedPatient] = {}
    for obj in patients:
        pid, issuer = split_patient_id(obj)
        p = DisclosedPatient(id=pid, issuer=issuer)
        unique.setdefault(p.sort_key, p)
    ordered = tuple(unique[k] for k in sorted(unique))
    if len(ordered) <= MAX_DISCLOSED_PATIENTS:
        return ResultSet(patient=None, disclosed=ordered)
    return ResultSet(
        patient=None,
        disclosed=ordered[:MAX_DISCLOSED_PATIENTS],
        truncated=True,
        total=len(ordered),
    )


def disclosed_json(p: DisclosedPatient) -> str:
    """One ``disclosed`` ledger detail: ``[id, issuer, state, [study UIDs]]``."""
    return json.dumps([p.id, p.issuer, p.state, list(p.studies)], ensure_ascii=False)


def _disclosed_of(text: str) -> DisclosedPatient:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise unmappable("invalid_event", "ledger detail disclosed is not JSON") from exc
    if not (
        isinstance(value, list)
        and len(value) == 4
        and isinstance(value[0], str)
        and all(v is None or isinstance(v, str) for v in value[1:3])
        and isinstance(value[3], list)
        and all(isinstance(u, str) for u in value[3])
    ):
        raise unmappable(
            "invalid_event", "ledger detail disclosed must be [id, issuer, state, [studies]]"
        )
    return DisclosedPatient(id=value[0], issuer=value[1], state=value[2], studies=tuple(value[3]))


def written_result(ledger: LedgerObject, patients: Sequence[ParticipantObject]) -> ResultSet:
    """The result set a message this package wrote carries in its ledger object, checked
    against its patient objects (the named patient first, then the other listed ones)."""
    disclosed = tuple(_disclosed_of(t) for t in ledger.multi.get(DISCLOSED_DETAIL, ()))
    total = ledger.integer(DISCLOSED_TOTAL_DETAIL)
    named_none = ledger.get(NAMED_PATIENT_DETAIL) == "none"
    ids = [split_patient_id(o) for o in patients]
    patient: Patient | None = None
    if not named_none:
        if not ids:
            raise unmappable("no_patient", "the ledger object names a patient the message lacks")
        pid, issuer = ids.pop(0)
        patient = Patient(id=pid, issuer=issuer, state=ledger.get("patient-state"))
    expected = [
        (p.id, p.issuer)
        for p in disclosed
        if patient is None or (p.id, p.issuer) != (patient.id, patient.issuer)
    ]
    if ids != expected:
        raise unmappable(
            "invalid_event", "the patient objects are not the ledger object's named and listed"
        )
    truncated = ledger.get(DISCLOSED_TRUNCATED_DETAIL) == "true"
    return ResultSet(patient=patient, disclosed=disclosed, truncated=truncated, total=total)
