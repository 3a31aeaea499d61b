"""Events for answers that disclose a result set: queries, listings, archives, C-MOVE.

Invariant: runs on the audit worker. Each wrapped request gives one PhiAccessEvent (v2)
whose ``disclosed`` lists every patient its answer returned (``resultsets``, bounded and
truncated with the total beyond that): a query or a listing is a 110112 Query (action E)
naming no patient, recorded even when it returned nobody, with its criteria in
``details``; an archive or media download is a 110103 read naming the patient when it
holds one patient only; a REST C-MOVE is a 110104 transfer to its destination with its
outcome. A read or transfer whose patients cannot be resolved is counted, not recorded.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterable, Mapping

from integrations.orthanc.build import EventBuilder
from integrations.orthanc.callers import Context
from integrations.orthanc.delivery import Counters, Delivery
from integrations.orthanc.resolve import Resolver, Subject, orthanc_id
from integrations.orthanc.resultsets import Resource, ResultSet, ResultSets, returned
from integrations.orthanc.routes import Level
from integrations.orthanc.subjects import Host
from producers import DisclosedPatient, EventAction, EventOutcome, Recipient

#: GET arguments of a bulk listing recorded as its criteria.
LISTING_ARGUMENTS = ("expand", "since", "limit", "requestedTags")


def listing_criteria(get: Mapping[str, str]) -> dict[str, str]:
    return {f"query.{k}": get[k][:256] for k in LISTING_ARGUMENTS if k in get}


def with_arguments(uri: str, get: Mapping[str, str]) -> str:
    """``uri`` with its GET arguments, as Orthanc's in-process REST API takes them."""
    return f"{uri}?{urllib.parse.urlencode(get)}" if get else uri


def _counts(result: ResultSet) -> dict[str, str]:
    extra = {"orthanc.resources": str(result.resources)}
    if result.unresolved:
        extra["orthanc.unresolved"] = str(result.unresolved)
    if result.studies_left_out:
        extra["orthanc.studies_left_out"] = str(result.studies_left_out)
    return extra


def _named(patient: DisclosedPatient) -> Subject:
    return Subject(
        patient_id=patient.id,
        issuer=patient.issuer,
        orthanc_patient="",
        study_uid=patient.studies[0] if len(patient.studies) == 1 else None,
    )


class Disclosures:
    def __init__(
        self,
        results: ResultSets,
        resolver: Resolver,
        host: Host,
        build: EventBuilder,
        delivery: Delivery,
        counters: Counters,
    ) -> None:
        self._results = results
        self._resolver = resolver
        self._host = host
        self._build = build
        self._delivery = delivery
        self._counters = counters

    def query(
        self, context: Context, resources: Iterable[Resource], criteria: Mapping[str, str]
    ) -> None:
        """A search or a listing: 110112 E, naming no patient, disclosing what it returned."""
        result = self._results.of(resources)
        extra = {**criteria, **_counts(result)}
        self._delivery.emit(
            self._build.event(context, None, "110112", EventAction.EXECUTE, extra=extra,
                              disclosed=result.patients, disclosed_total=result.total)
        )  # fmt: skip

    def listing(
        self, context: Context, uri: str, get: Mapping[str, str], rest_get: Callable[[str], bytes]
    ) -> None:
        """A listing the filter saw (``GET /instances``): asked again, then recorded."""
        try:
            answer = json.loads(rest_get(with_arguments(uri, get)))
        except Exception:
            self._counters.unresolved += 1  # Orthanc refused it: nothing was disclosed
            return
        self.query(context, returned(answer, context.route.level), listing_criteria(get))

    def read(
        self,
        context: Context,
        resources: Iterable[Resource],
        *,
        outcome: EventOutcome = EventOutcome.SUCCESS,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """An archive or media download: 110103 R of every patient and study it holds."""
        result = self._results.of(resources, whole_patients=True)
        self._emit(context, result, "110103", outcome, None, extra)

    def transfer(
        self,
        context: Context,
        identifiers: Iterable[Mapping[str, object]],
        *,
        outcome: EventOutcome,
        recipient: Recipient,
        extra: Mapping[str, str],
    ) -> None:
        """A REST C-MOVE: 110104 of the patients its identifiers name (by PatientID, or
        by a study Orthanc holds), to ``recipient``."""
        resources: list[Resource] = []
        named: list[DisclosedPatient] = []
        for keys in identifiers:
            patient, study = keys.get("PatientID"), keys.get("StudyInstanceUID")
            local = self._host.lookup_study(study) if isinstance(study, str) else None
            if local is not None:
                resources.append((Level.STUDY, local))
            elif isinstance(patient, str) and patient:
                named.append(self._patient(patient, study if isinstance(study, str) else None))
            else:
                self._counters.unresolved += 1
        result = self._results.of(resources)
        merged = _merge((*result.patients, *named))
        result = ResultSet(
            patients=merged,
            total=None if result.total is None else result.total + len(named),
            resources=result.resources + len(named),
            unresolved=result.unresolved,
            studies_left_out=result.studies_left_out,
        )
        self._emit(context, result, "110104", outcome, recipient, extra)

    def _patient(self, patient_id: str, study: str | None) -> DisclosedPatient:
        """A patient named by PatientID: the issuer Orthanc holds for it, if any."""
        issuer = None
        try:
            known = self._resolver.resolve(Level.PATIENT, orthanc_id(patient_id))
            issuer = known.issuer if known.patient_id == patient_id else None
        except LookupError:
            pass
        return DisclosedPatient(id=patient_id, issuer=issuer, studies=(study,) if study else ())

    def _emit(
        self,
        context: Context,
        result: ResultSet,
        dicom_event_id: str,
        outcome: EventOutcome,
        recipient: Recipient | None,
        extra: Mapping[str, str] | None,
    ) -> None:
        if not result.patients:
            # Nothing Orthanc could resolve (deleted since, or unknown): nothing to name.
            self._counters.unresolved += 1
            return
        single = result.single
        self._delivery.emit(
            self._build.event(
                context,
                _named(single) if single is not None else None,
                dicom_event_id,
                EventAction.READ,
                outcome=outcome,
                recipient=recipient,
                extra={**(extra or {}), **_counts(result)},
                level=context.route.level,
                resource=context.route.resource,
                disclosed=result.patients,
                disclosed_total=result.total,
            )
        )


def _merge(patients: Iterable[DisclosedPatient]) -> tuple[DisclosedPatient, ...]:
    """One entry per (issuer, id), studies united and sorted."""
    merged: dict[tuple[str, str | None], set[str]] = {}
    for p in patients:
        merged.setdefault((p.id, p.issuer), set()).update(p.studies)
    return tuple(
        DisclosedPatient(id=pid, issuer=issuer, studies=tuple(sorted(studies)))
        for (pid, issuer), studies in merged.items()
    )
