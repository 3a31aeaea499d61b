"""From the resources an Orthanc answer returned to the patients (and studies) it disclosed.

Invariant: runs on the audit worker, never on an Orthanc request thread. It resolves at
most ``resolve_limit`` resources per answer (each through the cached ``Resolver``); the
patients beyond that bound, or beyond what one event may carry (``MAX_PATIENTS``, the
study bound and a byte budget under the emitter's record limit), are not listed: the
result is then ``truncated`` with ``total`` the number of patients returned when every
resource was resolved, else an upper bound (resolved patients + unresolved resources).
A resource Orthanc no longer knows (deleted since) is counted, never guessed.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from integrations.orthanc.resolve import Resolver, Subject
from integrations.orthanc.routes import Level
from integrations.orthanc.subjects import Host
from producers import DisclosedPatient

#: Most patients one event lists (``producers``' MAX_DISCLOSED_PATIENTS).
MAX_PATIENTS: Final = 1000
#: Most study UIDs one event lists in all (``producers``' MAX_DISCLOSED_STUDIES).
MAX_STUDIES: Final = 1000
#: Bytes of patient ids, issuers and study UIDs one event lists: well under the
#: emitter's 60,000-byte record with the rest of the event.
BYTE_BUDGET: Final = 40_000
TYPES: Final[Mapping[str, Level]] = {
    "Patient": Level.PATIENT,
    "Study": Level.STUDY,
    "Series": Level.SERIES,
    "Instance": Level.INSTANCE,
}

Resource = tuple[Level | None, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResultSet:
    patients: tuple[DisclosedPatient, ...]
    #: None: ``patients`` lists every patient; else how many were returned (or at most).
    total: int | None
    resources: int
    unresolved: int
    #: Study UIDs left out (beyond the study bound or the byte budget).
    studies_left_out: int = 0

    @property
    def single(self) -> DisclosedPatient | None:
        """The one patient of a complete result set of one."""
        return self.patients[0] if len(self.patients) == 1 and self.total is None else None


def returned(answer: object, level: Level | None) -> list[Resource]:
    """The resources of an answer: a list of ids (at ``level``) or of expanded resources
    (``{"ID": ..., "Type": "Study"}``, as ``expand``, ``/tools/find`` and ``/tools/lookup``
    answer)."""
    found: list[Resource] = []
    for item in answer if isinstance(answer, list) else []:
        if isinstance(item, str):
            found.append((level, item))
        elif isinstance(item, dict) and isinstance(item.get("ID"), str):
            kind = item.get("Type")
            found.append((TYPES.get(kind, level) if isinstance(kind, str) else level, item["ID"]))
    return found


class ResultSets:
    def __init__(
        self, resolver: Resolver, host: Host, *, resolve_limit: int, default_issuer: str | None
    ) -> None:
        self._resolver = resolver
        self._host = host
        self.limit = resolve_limit
        #: The issuer of a PatientID Orthanc does not hold (``DefaultPatientIdIssuer``).
        self.default_issuer = default_issuer

    def subject(self, level: Level, resource: str) -> Subject | None:
        """One resource's subject (cached), None if Orthanc does not know it."""
        try:
            return self._resolver.resolve(level, resource)
        except LookupError:
            return None

    def of(self, resources: Iterable[Resource], *, whole_patients: bool = False) -> ResultSet:
        """The patients of ``resources``, in answer order. ``whole_patients``: a patient
        resource discloses all its studies (an archive), not only the patient (a listing)."""
        order: dict[tuple[str, str | None], set[str]] = {}
        count = unresolved = skipped = 0
        for level, resource in resources:
            count += 1
            if count > self.limit:
                skipped += 1
                continue
            subjects = self._subjects(level, resource, whole_patients)
            if not subjects:
                unresolved += 1
            for subject in subjects:
                studies = order.setdefault((subject.patient_id, subject.issuer), set())
                if subject.study_uid is not None:
                    studies.add(subject.study_uid)
        return fit(order, resources=count, unresolved=unresolved, skipped=skipped)

    def _subjects(self, level: Level | None, resource: str, whole: bool) -> list[Subject]:
        levels = (level,) if level is not None else tuple(Level)
        for at in levels:
            try:
                subject = self._resolver.resolve(at, resource)
            except LookupError:
                continue
            if at is Level.PATIENT and whole:
                return [subject, *self._studies_of(resource)]
            return [subject]
        return []

    def _studies_of(self, patient: str) -> list[Subject]:
        try:
            value = json.loads(self._host.rest_get(f"/patients/{patient}"))
        except Exception:
            return []
        studies = value.get("Studies") if isinstance(value, dict) else None
        found = []
        for study in studies if isinstance(studies, list) else []:
            try:
                found.append(self._resolver.resolve(Level.STUDY, str(study)))
            except LookupError:
                continue
        return found


def fit(
    order: Mapping[tuple[str, str | None], set[str]],
    *,
    resources: int,
    unresolved: int,
    skipped: int,
) -> ResultSet:
    """The first patients (answer order) that fit one event; the rest counted."""
    listed: list[DisclosedPatient] = []
    budget, studies_left, left_out = BYTE_BUDGET, MAX_STUDIES, 0
    for (patient_id, issuer), studies in order.items():
        cost = len(patient_id) + len(issuer or "") + 16
        if len(listed) >= MAX_PATIENTS or cost > budget:
            break
        budget -= cost
        kept: list[str] = []
        for uid in sorted(studies):
            if studies_left > 0 and len(uid) + 4 <= budget:
                kept.append(uid)
                budget -= len(uid) + 4
                studies_left -= 1
            else:
                left_out += 1
        listed.append(DisclosedPatient(id=patient_id, issuer=issuer, studies=tuple(kept)))
    total: int | None = None
    if skipped:
        total = len(order) + skipped  # an upper bound: the unresolved may share patients
    elif len(listed) < len(order):
        total = len(order)
    if not listed:
        total = None  # nothing resolved: the event lists none (details count the resources)
    return ResultSet(
        patients=tuple(listed),
        total=total,
        resources=resources,
        unresolved=unresolved,
        studies_left_out=left_out,
    )
