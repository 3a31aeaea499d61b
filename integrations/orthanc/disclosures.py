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
from integrations.orthanc.resolve import Resolver, Subject, orthanc_id, study_uid_or_none
from integrations.orthanc.resultsets import Resource, ResultSet, ResultSets, fit, returned
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

    def qido(self, context: Context, rest_get: Callable[[str], bytes]) -> None:
        """A QIDO-RS search naming no patient: its answer asked again of the DICOMweb
        plugin, each dataset's PatientID (or its study's patient) disclosed."""
        route = context.route
        uri = route.template.partition(" ")[2]
        try:
            answer = json.loads(rest_get(f"{uri}?{route.arguments}" if route.arguments else uri))
        except Exception:
            self._counters.unresolved += 1  # refused, or no DICOMweb: nothing to record
            return
        identifiers = [
            {key: _dicom_value(ds, tag) for key, tag in _QIDO_TAGS.items()}
            for ds in (answer if isinstance(answer, list) else [])
            if isinstance(ds, dict)
        ]
        result = self._identified(identifiers)
        criteria = {f"query.{k}": v for k, v in list(route.parameters.items())[:16]}
        self._delivery.emit(
            self._build.event(context, None, "110112", EventAction.EXECUTE,
                              extra={**criteria, **_counts(result)},
                              disclosed=result.patients, disclosed_total=result.total)
        )  # fmt: skip

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
        result = self._identified(identifiers)
        self._emit(context, result, "110104", outcome, recipient, extra)

    def _identified(self, identifiers: Iterable[Mapping[str, object]]) -> ResultSet:
        """The patients DICOM identifiers name: a study Orthanc holds, else a PatientID;
        at most ``ResolveLimit`` identifiers are resolved (the rest counted)."""
        order: dict[tuple[str, str | None], set[str]] = {}
        count = unresolved = skipped = 0
        for keys in identifiers:
            count += 1
            if count > self._results.limit:
                skipped += 1
                continue
            patient, study = keys.get("PatientID"), keys.get("StudyInstanceUID")
            local = self._host.lookup_study(study) if isinstance(study, str) else None
            subject = self._results.subject(Level.STUDY, local) if local else None
            if subject is not None:
                key, uid = (subject.patient_id, subject.issuer), subject.study_uid
            elif isinstance(patient, str) and patient:
                key, uid = (patient, self._issuer(patient)), study_uid_or_none(
                    study if isinstance(study, str) else None)  # fmt: skip
            else:
                unresolved += 1
                continue
            studies = order.setdefault(key, set())
            if uid is not None:
                studies.add(uid)
        return fit(order, resources=count, unresolved=unresolved, skipped=skipped)

    def _issuer(self, patient_id: str) -> str | None:
        """The issuer Orthanc holds for a PatientID, else ``DefaultPatientIdIssuer``."""
        try:
            known = self._resolver.resolve(Level.PATIENT, orthanc_id(patient_id))
        except LookupError:
            return self._results.default_issuer
        return known.issuer if known.patient_id == patient_id else self._results.default_issuer

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


#: What a QIDO-RS answer's datasets say about whose they are.
_QIDO_TAGS = {"PatientID": "00100020", "StudyInstanceUID": "0020000D"}


def _dicom_value(dataset: Mapping[str, object], tag: str) -> str | None:
    """The first value of a DICOM JSON attribute, when it is a string."""
    element = dataset.get(tag)
    values = element.get("Value") if isinstance(element, dict) else None
    first = values[0] if isinstance(values, list) and values else None
    return first if isinstance(first, str) and first else None
