"""The fields every event type maps the same way.

Invariant: pure functions of the parsed message (and of its ledger object, when this
package wrote it): the requestor and its actor, the outcome, the facility, the producer,
the patient and study objects, the details, the recipient. Each returns its field or
raises ``AtnaUnmappableError``.
"""

from __future__ import annotations

import base64

from integrations.atna.dicom_audit.identity import (
    LedgerObject,
    unmappable,
    utf8_text,
)
from integrations.atna.dicom_audit.model import (
    CODE,
    CONTROL,
    OUTCOMES,
    AuditMessage,
    Participant,
    ParticipantObject,
)
from producers import (
    PURPOSES_OF_USE,
    Actor,
    EventOutcome,
    Facility,
    Recipient,
    Study,
)
from schemas import dicom


def find_requestor(msg: AuditMessage) -> Participant:
    """The requestor; of several (IHE's machine Source and its Human Requestor), the first
    that is not a system (no DCM application or transfer-end RoleIDCode, UserTypeCode not
    2), else the first."""
    requestors = [p for p in msg.participants if p.is_requestor]
    for p in requestors:
        if len(requestors) == 1 or not _is_system(p):
            return p
    if requestors:
        return requestors[0]
    if len(msg.participants) == 1:
        return msg.participants[0]
    raise unmappable("no_requestor", "no ActiveParticipant is the requestor")


def _is_system(p: Participant) -> bool:
    return p.user_type_code == "2" or p.has_role(dicom.SYSTEM_ROLE_IDS)


def foreign_role(p: Participant) -> str:
    for role in p.roles:
        if role.system == dicom.PRIVATE_CODE_SYSTEM:
            return role.code
    for role in p.roles:
        if not (role.system == dicom.DCM and role.code in dicom.SYSTEM_ROLE_IDS):
            return role.original_text or role.code
    if p.user_type_code == "1":
        return "person"
    if p.user_type_code == "2":
        return "system"
    if p.user_name:
        return "person"
    if p.has_role(dicom.SYSTEM_ROLE_IDS):
        return "system"
    return "unspecified"


def split_patient_id(obj: ParticipantObject) -> tuple[str, str | None]:
    issuer = obj.detail("IssuerOfPatientID")
    if issuer is not None:
        text = utf8_text(issuer, "IssuerOfPatientID")
        return obj.object_id, text or None
    pid, sep, rest = obj.object_id.partition("^^^")
    if not sep:
        return obj.object_id, None
    # HL7 CX: id^check digit^scheme^assigning authority (namespace&universal id&type).
    authority = rest.split("^", 1)[0]
    namespace, _, universal = authority.partition("&")
    issuer_text = namespace or universal.split("&", 1)[0]
    return pid, issuer_text or None


def is_patient(obj: ParticipantObject) -> bool:
    return obj.type_code == dicom.OBJECT_PERSON and obj.role == dicom.ROLE_PATIENT


def is_study(obj: ParticipantObject) -> bool:
    return (
        obj.type_code == dicom.OBJECT_SYSTEM
        and obj.role == dicom.ROLE_REPORT
        and obj.id_type.code == dicom.STUDY_INSTANCE_UID
    )


def is_query(obj: ParticipantObject) -> bool:
    """PS3.15 Query: type 2, role 3, ID type 110181 (SOP Class UID) with the query;
    RFC 3881 / IHE ITI: role 24 (Query)."""
    if is_patient(obj) or is_study(obj):
        return False
    return (
        obj.query is not None
        or obj.role == dicom.ROLE_QUERY
        or obj.id_type.is_(dicom.DCM, dicom.SOP_CLASS_UID)
    )


def study_of(obj: ParticipantObject, ledger: LedgerObject | None) -> Study:
    modality_raw = obj.detail("Modality")
    modality = None if modality_raw is None else utf8_text(modality_raw, "Modality")
    uids = tuple(s.uid for s in obj.sop_classes if s.uid)
    counts = [s.instances for s in obj.sop_classes]
    instances: int | None = None
    if ledger is not None:
        instances = ledger.integer("study-instances")
        if instances is None and len(counts) == 1:
            instances = counts[0]
    elif counts and all(c is not None for c in counts):
        instances = sum(c for c in counts if c is not None)
    return Study(
        uid=obj.object_id,
        accession=obj.accessions[0] if obj.accessions else None,
        modality=modality,
        sop_classes=uids,
        instances=instances,
    )


def query_text(obj: ParticipantObject) -> str | None:
    if obj.query is None:
        return None
    try:
        text = obj.query.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or CONTROL.search(text):  # binary, e.g. a C-FIND identifier
        return "base64:" + base64.b64encode(obj.query).decode("ascii")
    return text


def network_of(msg: AuditMessage, requestor: Participant) -> str | None:
    if requestor.network_access_point_id:
        return requestor.network_access_point_id
    for p in msg.participants:
        if p.has_role(frozenset({dicom.SOURCE_ROLE})) and p.network_access_point_id:
            return p.network_access_point_id
    return None


def actor_of(requestor: Participant, ledger: LedgerObject | None) -> Actor:
    if ledger is not None:
        role = ledger.get("actor-role") or foreign_role(requestor)
        return Actor(
            user_id=requestor.user_id,
            name=requestor.user_name,
            role=role,
            organization=ledger.get("actor-organization"),
            npi=ledger.get("actor-npi"),
        )
    return Actor(user_id=requestor.user_id, name=requestor.user_name, role=foreign_role(requestor))


def outcome_of(msg: AuditMessage) -> EventOutcome:
    outcome = OUTCOMES.get(msg.outcome)
    if outcome is None:
        raise unmappable(
            "invalid_event",
            f"EventOutcomeIndicator {msg.outcome[:8]!r} is not 0, 4, 8 or 12",
            "EventIdentification@EventOutcomeIndicator",
        )
    return outcome


def facility_of(msg: AuditMessage, ledger: LedgerObject | None, default: str | None) -> Facility:
    site = msg.enterprise_site_id or default or msg.source_id
    return Facility(id=site, name=None if ledger is None else ledger.get("facility-name"))


def producer_of(
    msg: AuditMessage, ledger: LedgerObject | None, keep_producer: bool
) -> tuple[str | None, int | None]:
    if not keep_producer:
        return None, None
    if ledger is None or ledger.integer("producer-seq") is None:
        raise unmappable(
            "invalid_event", "keep_producer needs a message with the ledger object", "producer_seq"
        )
    return msg.source_id, ledger.integer("producer-seq")


def details_of(
    msg: AuditMessage, ledger: LedgerObject | None, requestor: Participant, keep_producer: bool
) -> dict[str, str]:
    details: dict[str, str] = {}
    if ledger is not None:
        details.update(ledger.pairs.get("detail", []))
    else:
        if msg.outcome_description:
            details["outcome_description"] = msg.outcome_description
        if requestor.alternative_user_id:
            details["alternative_user_id"] = requestor.alternative_user_id
    for obj in msg.objects:
        if is_query(obj):
            text = query_text(obj)
            if text is not None:
                details["query"] = text
            if ledger is None:
                details["query_object_id"] = obj.object_id
            break
    if not keep_producer:
        details["audit_source_id"] = msg.source_id
    return details


def type_code_of(
    msg: AuditMessage, ledger: LedgerObject | None, details: dict[str, str]
) -> str | None:
    chosen: str | None = None
    others: list[str] = []
    for t in msg.event_types:
        if chosen is None and CODE.fullmatch(t.code):
            chosen = t.code
        else:
            others.append(f"{t.system or ''}|{t.code}")
    if others and ledger is None:
        details["event_type_codes"] = ",".join(others)
    return chosen


def purpose_of(msg: AuditMessage, details: dict[str, str]) -> str | None:
    if not msg.purposes:
        return None
    first = msg.purposes[0]
    if first.code in PURPOSES_OF_USE:
        return first.code
    details["purpose_of_use"] = f"{first.system or ''}|{first.code}"
    return None


def recipient_of(
    msg: AuditMessage, ledger: LedgerObject | None, requestor: Participant
) -> Recipient | None:
    if ledger is None and msg.event_id.code != dicom.EXPORT:
        return None
    for p in msg.participants:
        if p is requestor or p.is_requestor or not p.has_role(dicom.DESTINATION_ROLE_IDS):
            continue
        if ledger is not None:
            return Recipient(
                name=p.user_name or p.user_id,
                address=ledger.get("recipient-address"),
                organization=ledger.get("recipient-organization"),
            )
        return Recipient(name=p.user_name or p.user_id, address=p.network_access_point_id)
    return None
