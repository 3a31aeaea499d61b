"""Write one event as a DICOM PS3.15 A.5 audit message (for tests and senders).

Invariant: for every valid, stamped event ``e`` (``PhiAccessEvent``, ``SecurityEvent`` or
``AuditLogUsed``), ``events_from_dicom(to_dicom_xml(e), keep_producer=True) == (e,)``:
what DICOM has no element for goes into the private *ledger object*.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime

from integrations.atna.dicom_audit.model import (
    CODE,
    CONTROL,
    LEDGER_OBJECT_CODE,
    OUTCOME_CODES,
    SECURITY_SCHEMA,
    MappedEvent,
)
from integrations.atna.dicom_audit.resultset import (
    DISCLOSED_DETAIL,
    DISCLOSED_TOTAL_DETAIL,
    DISCLOSED_TRUNCATED_DETAIL,
    NAMED_PATIENT_DETAIL,
    disclosed_json,
)
from producers import AuditLogUsed, Patient, PhiAccessEvent, Recipient, SecurityEvent, Study
from schemas import dicom

__all__ = ["to_dicom_xml"]

#: Characters XML 1.0 cannot carry at all (plus lone surrogates).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_PRIVATE = dicom.PRIVATE_CODE_SYSTEM


def to_dicom_xml(event: MappedEvent) -> bytes:
    """The DICOM PS3.15 A.5 audit message of one event (UTF-8 XML with a declaration).

    The event must be valid and stamped (``producer_id`` / ``producer_seq``), since the
    message names its audit source. Raises ``ValueError`` for an event that cannot be
    written (unstamped, or a character XML 1.0 cannot carry); ``CriticalResultRelay`` has
    no DICOM audit message (its private EventID is not a PS3.15 one) and is refused.
    """
    if not isinstance(event, PhiAccessEvent | AuditLogUsed | SecurityEvent):
        raise ValueError(f"{type(event).__name__} has no DICOM audit message mapping")
    if event.producer_id is None or event.producer_seq is None:
        raise ValueError("the event must be stamped (producer_id, producer_seq)")
    _all_text(
        [
            ("producer_id", event.producer_id),
            ("facility.id", event.facility.id),
            ("facility.name", event.facility.name),
            ("actor.user_id", event.actor.user_id),
            ("actor.name", event.actor.name),
            ("actor.role", event.actor.role),
            ("actor.organization", event.actor.organization),
            ("network_address", event.network_address),
        ]
    )
    root = ET.Element("AuditMessage")
    _identification(root, event)
    recipient = event.recipient if isinstance(event, PhiAccessEvent) else None
    _participants(root, event, recipient)
    _audit_source(root, event.facility.id, event.producer_id)
    ledger = _ledger_object(event, event.producer_seq)
    if isinstance(event, AuditLogUsed):
        _log_objects(root, ledger, event)
    else:
        _event_objects(root, ledger, event, recipient)
        _detail_objects(root, ledger, event)
    root.append(ledger)
    written: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return written


def _identification(root: ET.Element, event: MappedEvent) -> None:
    coded = event if isinstance(event, PhiAccessEvent | SecurityEvent) else None
    code = dicom.AUDIT_LOG_USED if coded is None else coded.dicom_event_id
    action = "R" if coded is None else coded.action.value
    ident = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": action,
            "EventDateTime": _format_time(event.event_time),
            "EventOutcomeIndicator": OUTCOME_CODES[event.outcome],
        },
    )
    _coded(ident, "EventID", code, dicom.DCM, dicom.EVENT_IDS.get(code))
    if coded is None:
        return
    if coded.event_type_code is not None:
        known = dicom.EVENT_TYPE_CODES.get(coded.event_type_code)
        _coded(
            ident,
            "EventTypeCode",
            coded.event_type_code,
            dicom.DCM if known else _PRIVATE,
            known,
        )
    if coded.purpose_of_use is not None:
        _coded(ident, "PurposeOfUse", coded.purpose_of_use, dicom.HL7_ACT_REASON_OID, None)


def _participants(root: ET.Element, event: MappedEvent, recipient: Recipient | None) -> None:
    """The requestor (the actor) and, for a disclosure, the destination."""
    user = {"UserID": event.actor.user_id}
    if event.actor.name is not None:
        user["UserName"] = event.actor.name
    user["UserIsRequestor"] = "true"
    if event.network_address is not None:
        user["NetworkAccessPointID"] = event.network_address
        user["NetworkAccessPointTypeCode"] = _network_type(event.network_address)
    participant = ET.SubElement(root, "ActiveParticipant", user)
    if CODE.fullmatch(event.actor.role):
        _coded(participant, "RoleIDCode", event.actor.role, _PRIVATE, event.actor.role)
    if recipient is None:
        return
    _all_text(
        [
            ("recipient.name", recipient.name),
            ("recipient.address", recipient.address),
            ("recipient.organization", recipient.organization),
        ]
    )
    dest = ET.SubElement(
        root,
        "ActiveParticipant",
        {"UserID": recipient.name, "UserName": recipient.name, "UserIsRequestor": "false"},
    )
    _coded(
        dest,
        "RoleIDCode",
        dicom.DESTINATION_ROLE,
        dicom.DCM,
        dicom.ROLE_IDS[dicom.DESTINATION_ROLE],
    )


def _audit_source(root: ET.Element, site: str, source_id: str) -> None:
    source = ET.SubElement(
        root,
        "AuditSourceIdentification",
        {"AuditEnterpriseSiteID": site, "AuditSourceID": source_id},
    )
    code, name = dicom.APPLICATION_SERVER
    _coded(source, "AuditSourceTypeCode", code, dicom.DCM, name)


def _ledger_object(event: MappedEvent, producer_seq: int) -> ET.Element:
    """The private object with what DICOM has no element for (appended last)."""
    ledger = ET.Element(
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": f"urn:uuid:{event.event_id}",
            "ParticipantObjectTypeCode": dicom.OBJECT_SYSTEM,
            "ParticipantObjectTypeCodeRole": dicom.ROLE_RESOURCE,
        },
    )
    _coded(ledger, "ParticipantObjectIDTypeCode", LEDGER_OBJECT_CODE, _PRIVATE, "Ledger Event")
    _detail(ledger, "producer-seq", str(producer_seq))
    if event.facility.name is not None:
        _detail(ledger, "facility-name", event.facility.name)
    _detail(ledger, "actor-role", event.actor.role)
    if event.actor.organization is not None:
        _detail(ledger, "actor-organization", event.actor.organization)
    if event.actor.npi is not None:
        _detail(ledger, "actor-npi", event.actor.npi)
    patient = event.patient
    if patient is not None:
        _all_text([("patient.id", patient.id), ("patient.issuer", patient.issuer)])
        if patient.state is not None:
            _detail(ledger, "patient-state", patient.state)
    return ledger


def _event_objects(
    root: ET.Element,
    ledger: ET.Element,
    event: PhiAccessEvent | SecurityEvent,
    recipient: Recipient | None,
) -> None:
    """The patient and study objects (and the recipient's details) of a coded event."""
    if isinstance(event, SecurityEvent):
        _detail(ledger, "event-schema", SECURITY_SCHEMA)
        if event.patient is not None:
            _patient_object(root, event.patient)
        return
    if recipient is not None:
        if recipient.address is not None:
            _detail(ledger, "recipient-address", recipient.address)
        if recipient.organization is not None:
            _detail(ledger, "recipient-organization", recipient.organization)
    if event.patient is not None:
        _patient_object(root, event.patient)
    _result_set(root, ledger, event)
    if event.study is not None:
        _all_text(
            [
                ("study.uid", event.study.uid),
                ("study.accession", event.study.accession),
                ("study.modality", event.study.modality),
            ]
            + [("study.sop_classes", s) for s in event.study.sop_classes]
        )
        _study_object(root, event.study, ledger)


def _result_set(root: ET.Element, ledger: ET.Element, event: PhiAccessEvent) -> None:
    """The patients the answer returned (v2 ``disclosed``): a patient object for each one
    the request did not name (after the named patient's), and everything about them in
    the ledger object (``resultset``)."""
    named = None if event.patient is None else (event.patient.id, event.patient.issuer)
    if named is None:
        _detail(ledger, NAMED_PATIENT_DETAIL, "none")
    for p in event.disclosed:
        _all_text([("disclosed.id", p.id), ("disclosed.issuer", p.issuer)])
        _all_text([("disclosed.state", p.state), *(("disclosed.studies", u) for u in p.studies)])
        _detail(ledger, DISCLOSED_DETAIL, disclosed_json(p))
        if (p.id, p.issuer) != named:
            _patient_object(root, Patient(id=p.id, issuer=p.issuer))
    if event.disclosed_truncated:
        _detail(ledger, DISCLOSED_TRUNCATED_DETAIL, "true")
    if event.disclosed_total is not None:
        _detail(ledger, DISCLOSED_TOTAL_DETAIL, str(event.disclosed_total))


def _detail_objects(
    root: ET.Element, ledger: ET.Element, event: PhiAccessEvent | SecurityEvent
) -> None:
    """``details["query"]`` as a query object; every other detail in the ledger object."""
    details = dict(event.details)
    query = details.pop("query", None)
    if query is not None:
        _check_xml_text(query, "details['query']")
        obj = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": details.get("query_object_id", "query"),
                "ParticipantObjectTypeCode": dicom.OBJECT_SYSTEM,
                "ParticipantObjectTypeCodeRole": dicom.ROLE_QUERY,
            },
        )
        _coded(obj, "ParticipantObjectIDTypeCode", "query", _PRIVATE, "Query")
        ET.SubElement(obj, "ParticipantObjectQuery").text = _query_b64(query)
    for key, value in details.items():
        _pair(ledger, "detail", key, value)


def _check_xml_text(value: str, field: str) -> str:
    if _XML_ILLEGAL.search(value):
        raise ValueError(f"{field} holds a character XML 1.0 cannot carry")
    return value


def _b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def _coded(parent: ET.Element, tag: str, code: str, system: str, text: str | None) -> None:
    attrs = {"csd-code": code, "codeSystemName": system}
    if text:
        attrs["originalText"] = text
    ET.SubElement(parent, tag, attrs)


def _network_type(address: str) -> str:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return "5" if "://" in address else "1"
    return "2"


def _format_time(when: datetime) -> str:
    if when.utcoffset() is None:
        raise ValueError("event_time must be timezone-aware")
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond:06d}Z"


def _detail(parent: ET.Element, kind: str, value: str) -> None:
    ET.SubElement(parent, "ParticipantObjectDetail", {"type": kind, "value": _b64(value)})


def _pair(parent: ET.Element, kind: str, key: str, value: str) -> None:
    _detail(parent, kind, json.dumps([key, value], ensure_ascii=False))


def _patient_object(parent: ET.Element, patient: Patient) -> None:
    safe = "^" not in patient.id and (
        patient.issuer is None or not re.search(r"[\^&]", patient.issuer)
    )
    ident = patient.id if patient.issuer is None else f"{patient.id}^^^{patient.issuer}"
    obj = ET.SubElement(
        parent,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": ident if safe else patient.id,
            "ParticipantObjectTypeCode": dicom.OBJECT_PERSON,
            "ParticipantObjectTypeCodeRole": dicom.ROLE_PATIENT,
        },
    )
    _coded(
        obj, "ParticipantObjectIDTypeCode", dicom.PATIENT_NUMBER, dicom.RFC3881, "Patient Number"
    )
    if not safe:
        _detail(obj, "IssuerOfPatientID", patient.issuer or "")


def _study_object(parent: ET.Element, study: Study, ledger: ET.Element) -> None:
    obj = ET.SubElement(
        parent,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": study.uid,
            "ParticipantObjectTypeCode": dicom.OBJECT_SYSTEM,
            "ParticipantObjectTypeCodeRole": dicom.ROLE_REPORT,
        },
    )
    _coded(
        obj,
        "ParticipantObjectIDTypeCode",
        dicom.STUDY_INSTANCE_UID,
        dicom.DCM,
        "Study Instance UID",
    )
    if study.modality is not None:
        _detail(obj, "Modality", study.modality)
    if study.accession is not None or study.sop_classes:
        description = ET.SubElement(obj, "ParticipantObjectDescription")
        if study.accession is not None:
            ET.SubElement(description, "Accession", {"Number": study.accession})
        single = len(study.sop_classes) == 1 and study.instances is not None
        for uid in study.sop_classes:
            attrs = {"UID": uid}
            if single:
                attrs["NumberOfInstances"] = str(study.instances)
            ET.SubElement(description, "SOPClass", attrs)
    if study.instances is not None and len(study.sop_classes) != 1:
        _detail(ledger, "study-instances", str(study.instances))


def _all_text(values: Iterable[tuple[str, str | None]]) -> None:
    for field, value in values:
        if value is not None:
            _check_xml_text(value, field)


def _query_b64(query: str) -> str:
    """The inverse of ``_query_text``: a ``base64:`` query of binary bytes goes back as
    those bytes; any other query as its UTF-8 text."""
    encoded = query.removeprefix("base64:")
    if encoded != query:
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return _b64(query)
        try:
            binary = CONTROL.search(raw.decode("utf-8")) is not None
        except UnicodeDecodeError:
            binary = True
        if binary and base64.b64encode(raw).decode("ascii") == encoded:
            return encoded
    return _b64(query)


def _log_objects(root: ET.Element, ledger: ET.Element, event: AuditLogUsed) -> None:
    q = event.query
    _all_text([("query.path", q.path)])
    log = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": q.path,
            "ParticipantObjectTypeCode": dicom.OBJECT_SYSTEM,
            "ParticipantObjectTypeCodeRole": dicom.ROLE_SECURITY_RESOURCE,
        },
    )
    _coded(log, "ParticipantObjectIDTypeCode", dicom.URI, dicom.RFC3881, "URI")
    target = q.path
    if q.parameters:
        target += "?" + "&".join(f"{k}={v}" for k, v in sorted(q.parameters.items()))
    ET.SubElement(log, "ParticipantObjectQuery").text = _b64(f"{q.method} {target}")
    _detail(ledger, "query-method", q.method)
    _detail(ledger, "query-status", str(q.status))
    if q.results is not None:
        _detail(ledger, "query-results", str(q.results))
    for key, value in q.parameters.items():
        _pair(ledger, "query-parameter", key, value)
    if event.patient is not None:
        _patient_object(root, event.patient)
