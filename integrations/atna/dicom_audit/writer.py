"""Write one event as a DICOM PS3.15 A.5 audit message (for tests and senders).

Invariant: for every valid, stamped event ``e`` (``PhiAccessEvent``, ``SecurityEvent`` or
``AuditLogUsed``), ``events_from_dicom(to_dicom_xml(e), keep_producer=True) == (e,)``:
what DICOM has no element for goes into the private *ledger object*.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import xml.etree.ElementTree as ET
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
from integrations.atna.dicom_audit.transport import transport_details
from integrations.atna.dicom_audit.xmlparts import (
    all_text,
    b64,
    check_xml_text,
    coded,
    detail,
    pair,
    patient_object,
    study_object,
)
from producers import AuditLogUsed, Patient, PhiAccessEvent, Recipient, SecurityEvent
from schemas import dicom

__all__ = ["to_dicom_xml"]

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
    all_text(
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
    typed = event if isinstance(event, PhiAccessEvent | SecurityEvent) else None
    code = dicom.AUDIT_LOG_USED if typed is None else typed.dicom_event_id
    action = "R" if typed is None else typed.action.value
    ident = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": action,
            "EventDateTime": _format_time(event.event_time),
            "EventOutcomeIndicator": OUTCOME_CODES[event.outcome],
        },
    )
    coded(ident, "EventID", code, dicom.DCM, dicom.EVENT_IDS.get(code))
    if typed is None:
        return
    if typed.event_type_code is not None:
        known = dicom.EVENT_TYPE_CODES.get(typed.event_type_code)
        coded(
            ident,
            "EventTypeCode",
            typed.event_type_code,
            dicom.DCM if known else _PRIVATE,
            known,
        )
    if typed.purpose_of_use is not None:
        coded(ident, "PurposeOfUse", typed.purpose_of_use, dicom.HL7_ACT_REASON_OID, None)


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
        coded(participant, "RoleIDCode", event.actor.role, _PRIVATE, event.actor.role)
    if recipient is None:
        return
    all_text(
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
    coded(
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
    coded(source, "AuditSourceTypeCode", code, dicom.DCM, name)


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
    coded(ledger, "ParticipantObjectIDTypeCode", LEDGER_OBJECT_CODE, _PRIVATE, "Ledger Event")
    detail(ledger, "producer-seq", str(producer_seq))
    if event.facility.name is not None:
        detail(ledger, "facility-name", event.facility.name)
    detail(ledger, "actor-role", event.actor.role)
    if event.actor.organization is not None:
        detail(ledger, "actor-organization", event.actor.organization)
    if event.actor.npi is not None:
        detail(ledger, "actor-npi", event.actor.npi)
    patient = event.patient
    if patient is not None:
        all_text([("patient.id", patient.id), ("patient.issuer", patient.issuer)])
        if patient.state is not None:
            detail(ledger, "patient-state", patient.state)
    return ledger


def _event_objects(
    root: ET.Element,
    ledger: ET.Element,
    event: PhiAccessEvent | SecurityEvent,
    recipient: Recipient | None,
) -> None:
    """The patient and study objects (and the recipient's details) of a coded event."""
    if isinstance(event, SecurityEvent):
        detail(ledger, "event-schema", SECURITY_SCHEMA)
        if event.patient is not None:
            patient_object(root, event.patient)
        return
    if recipient is not None:
        if recipient.address is not None:
            detail(ledger, "recipient-address", recipient.address)
        if recipient.organization is not None:
            detail(ledger, "recipient-organization", recipient.organization)
    for key, value in transport_details(event.transport):
        detail(ledger, key, value)
    if event.patient is not None:
        patient_object(root, event.patient)
    _result_set(root, ledger, event)
    if event.study is not None:
        all_text(
            [
                ("study.uid", event.study.uid),
                ("study.accession", event.study.accession),
                ("study.modality", event.study.modality),
            ]
            + [("study.sop_classes", s) for s in event.study.sop_classes]
        )
        study_object(root, event.study, ledger)


def _result_set(root: ET.Element, ledger: ET.Element, event: PhiAccessEvent) -> None:
    """The patients the answer returned (v2 ``disclosed``): a patient object for each one
    the request did not name (after the named patient's), and everything about them in
    the ledger object (``resultset``)."""
    named = None if event.patient is None else (event.patient.id, event.patient.issuer)
    if named is None:
        detail(ledger, NAMED_PATIENT_DETAIL, "none")
    for p in event.disclosed:
        all_text([("disclosed.id", p.id), ("disclosed.issuer", p.issuer)])
        all_text([("disclosed.state", p.state), *(("disclosed.studies", u) for u in p.studies)])
        detail(ledger, DISCLOSED_DETAIL, disclosed_json(p))
        if (p.id, p.issuer) != named:
            patient_object(root, Patient(id=p.id, issuer=p.issuer))
    if event.disclosed_truncated:
        detail(ledger, DISCLOSED_TRUNCATED_DETAIL, "true")
    if event.disclosed_total is not None:
        detail(ledger, DISCLOSED_TOTAL_DETAIL, str(event.disclosed_total))


def _detail_objects(
    root: ET.Element, ledger: ET.Element, event: PhiAccessEvent | SecurityEvent
) -> None:
    """``details["query"]`` as a query object; every other detail in the ledger object."""
    details = dict(event.details)
    query = details.pop("query", None)
    if query is not None:
        check_xml_text(query, "details['query']")
        obj = ET.SubElement(
            root,
            "ParticipantObjectIdentification",
            {
                "ParticipantObjectID": details.get("query_object_id", "query"),
                "ParticipantObjectTypeCode": dicom.OBJECT_SYSTEM,
                "ParticipantObjectTypeCodeRole": dicom.ROLE_QUERY,
            },
        )
        coded(obj, "ParticipantObjectIDTypeCode", "query", _PRIVATE, "Query")
        ET.SubElement(obj, "ParticipantObjectQuery").text = _query_b64(query)
    for key, value in details.items():
        pair(ledger, "detail", key, value)


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


def _query_b64(query: str) -> str:
    """The inverse of ``_query_text``: a ``base64:`` query of binary bytes goes back as
    those bytes; any other query as its UTF-8 text."""
    encoded = query.removeprefix("base64:")
    if encoded != query:
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return b64(query)
        try:
            binary = CONTROL.search(raw.decode("utf-8")) is not None
        except UnicodeDecodeError:
            binary = True
        if binary and base64.b64encode(raw).decode("ascii") == encoded:
            return encoded
    return b64(query)


def _log_objects(root: ET.Element, ledger: ET.Element, event: AuditLogUsed) -> None:
    q = event.query
    all_text([("query.path", q.path)])
    log = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": q.path,
            "ParticipantObjectTypeCode": dicom.OBJECT_SYSTEM,
            "ParticipantObjectTypeCodeRole": dicom.ROLE_SECURITY_RESOURCE,
        },
    )
    coded(log, "ParticipantObjectIDTypeCode", dicom.URI, dicom.RFC3881, "URI")
    target = q.path
    if q.parameters:
        target += "?" + "&".join(f"{k}={v}" for k, v in sorted(q.parameters.items()))
    ET.SubElement(log, "ParticipantObjectQuery").text = b64(f"{q.method} {target}")
    detail(ledger, "query-method", q.method)
    detail(ledger, "query-status", str(q.status))
    if q.results is not None:
        detail(ledger, "query-results", str(q.results))
    for key, value in q.parameters.items():
        pair(ledger, "query-parameter", key, value)
    if event.patient is not None:
        patient_object(root, event.patient)
