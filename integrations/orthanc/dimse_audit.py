"""DIMSE operations Orthanc received, as ledger events: a C-FIND is a 110112 Query.

Invariant: ``DimseRecorder.query`` runs on Orthanc's DICOM thread and only queues a job
(bounded, ``Auditor.submit``); the job, on the plugin's worker, resolves every returned
resource to its patient and study (``resolve.Resolver``, cached) and emits one
PhiAccessEvent v2: the calling AE as actor (role ``dicom-application-entity``), the
criteria in ``details`` (never the answers), ``disclosed`` = every patient returned with
the studies the answers named (none for a patient-level query), bounded to fit a leaf.
A query that matched nobody is recorded too (no patient, nothing disclosed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from integrations.orthanc.delivery import Delivery
from integrations.orthanc.imports import DICOM_AE_ROLE
from integrations.orthanc.resolve import Resolver, Subject, study_uid_or_none
from integrations.orthanc.routes import Level
from producers import (
    MAX_DISCLOSED_PATIENTS,
    MAX_DISCLOSED_STUDIES,
    Actor,
    DisclosedPatient,
    EventAction,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    Transport,
)

logger = logging.getLogger(__name__)

#: Criteria kept in ``details`` (the rest is counted).
MAX_CRITERIA: Final = 24
#: A rough bound on the disclosed list's encoded size, so that the event fits a leaf.
DISCLOSED_BUDGET_BYTES: Final = 40_000
_LEVELS: Final = {
    "Patient": Level.PATIENT,
    "Study": Level.STUDY,
    "Series": Level.SERIES,
    "Instance": Level.INSTANCE,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class DimseQuery:
    """What a C-FIND asked and returned, as Orthanc ids (resolved later): ``subjects``
    holds the (level, id) of each answer's study, series or own resource."""

    calling_aet: str
    called_aet: str
    level: str
    criteria: tuple[tuple[str, str], ...]
    answers: int
    subjects: tuple[tuple[str, str], ...]
    complete: bool
    refused: bool = False
    at: datetime


def disclosed_set(
    subjects: Sequence[Subject], *, with_studies: bool
) -> tuple[tuple[DisclosedPatient, ...], bool, int]:
    """The canonical ``disclosed`` list of these subjects, bounded; (list, truncated, total)."""
    patients: dict[tuple[str, str], set[str]] = {}
    for subject in subjects:
        studies = patients.setdefault((subject.issuer or "", subject.patient_id), set())
        uid = study_uid_or_none(subject.study_uid) if with_studies else None
        if uid:
            studies.add(uid)
    listed: list[DisclosedPatient] = []
    budget, study_count = DISCLOSED_BUDGET_BYTES, 0
    for (issuer, pid), studies in patients.items():
        keep = sorted(studies)[: max(0, MAX_DISCLOSED_STUDIES - study_count)]
        cost = len(pid) + len(issuer) + 24 + sum(len(s) + 4 for s in keep)
        if len(listed) >= MAX_DISCLOSED_PATIENTS or cost > budget:
            break
        budget -= cost
        study_count += len(keep)
        listed.append(DisclosedPatient(id=pid, issuer=issuer or None, studies=tuple(keep)))
    listed.sort(key=lambda p: p.sort_key)
    return tuple(listed), len(listed) < len(patients), len(patients)


class DimseRecorder:
    """Turns the DIMSE operations the plugin answered into events, on the worker."""

    def __init__(
        self,
        *,
        submit: Callable[[Callable[[], None]], bool],
        delivery: Delivery,
        resolver: Resolver,
        facility: Facility,
        purpose_of_use: str | None,
        default_issuer: str | None,
        transport: Transport | None = None,
    ) -> None:
        self._submit = submit
        #: How associations reach Orthanc's DICOM server (``DicomTlsEnabled``).
        self._transport = transport
        self._delivery = delivery
        self._resolver = resolver
        self._facility = facility
        self._purpose = purpose_of_use
        self._default_issuer = default_issuer

    def query(self, query: DimseQuery) -> bool:
        """Queue the event of a C-FIND; False when the hand-off is full."""
        return self._submit(lambda: self._emit_query(query))

    def _emit_query(self, query: DimseQuery) -> None:
        level = _LEVELS[query.level]
        subjects = []
        for subject_level, resource in dict.fromkeys(query.subjects):  # each once, in order
            try:
                subjects.append(self._resolver.resolve(_LEVELS[subject_level], resource))
            except (LookupError, KeyError):
                continue  # deleted since: its answer was sent, its subject is unknown now
        disclosed, truncated, total = disclosed_set(
            subjects, with_studies=level is not Level.PATIENT
        )
        details = {
            "source": "orthanc",
            "orthanc.route": "C-FIND",
            "dicom.level": query.level.upper(),
            "dicom.called_aet": query.called_aet,
            "dicom.answers": str(query.answers),
        }
        if not query.complete:
            details["dicom.complete"] = "false"
        for name, value in query.criteria[:MAX_CRITERIA]:
            details[f"query.{name}"] = value[:1024]
        if len(query.criteria) > MAX_CRITERIA:
            details["query.more"] = str(len(query.criteria) - MAX_CRITERIA)
        self._delivery.emit(
            PhiAccessEvent(
                facility=self._facility,
                actor=Actor(user_id=query.calling_aet, role=DICOM_AE_ROLE),
                dicom_event_id="110112",
                action=EventAction.EXECUTE,
                outcome=EventOutcome.SERIOUS_FAILURE if query.refused else EventOutcome.SUCCESS,
                patient=self._named(query.criteria, subjects),
                purpose_of_use=self._purpose,
                details=MappingProxyType(details),
                disclosed=disclosed,
                disclosed_truncated=truncated,
                disclosed_total=total if truncated else None,
                event_time=query.at,
                transport=self._transport,
            )
        )

    def _named(
        self, criteria: Sequence[tuple[str, str]], subjects: Sequence[Subject]
    ) -> Patient | None:
        """The patient a query names: an exact PatientID (no wildcard, no list)."""
        keys: Mapping[str, str] = dict(criteria)
        pid = keys.get("PatientID")
        if not pid or any(c in pid for c in "*?\\"):
            return None
        issuer = keys.get("IssuerOfPatientID")
        if issuer is None:
            issuer = next((s.issuer for s in subjects if s.patient_id == pid), None)
        return Patient(id=pid, issuer=issuer or self._default_issuer)


def now() -> datetime:
    return datetime.now(UTC)
