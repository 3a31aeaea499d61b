"""The pieces every AuditEvent is built from: codings, extensions, agents, source, entities.

Invariant: each function maps one part of a stored record to one FHIR element, with the
codes of ``schemas.fhir`` and this product's URLs from the ``FhirNamespace`` it is given;
an optional field that is absent or empty leaves its element out (FHIR strings are never
empty).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Final

from ledger.audit.fhir.stored import StoredRecord
from ledger.audit.fhir.vocabulary import (
    AUDIT_ENTITY_TYPE,
    DCM,
    DICOM_UID_SYSTEM,
    HL7_PURPOSES_OF_USE,
    OBJECT_ROLE,
    SECURITY_SOURCE_TYPE,
    US_NPI,
    V2_IDENTIFIER_TYPE,
    V3_ACT_REASON,
    V3_PARTICIPATION_TYPE,
    V3_ROLE_CLASS,
    FhirNamespace,
    Resource,
)
from ledger.audit.query import LedgerPosition
from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError
from schemas import dicom

__all__ = [
    "coding",
    "concept",
    "detail",
    "detail_extensions",
    "disclosure_recipient_agent",
    "event_type_subtypes",
    "extension",
    "network_type",
    "patient_entity",
    "person_agent",
    "position_extension",
    "producer_agent",
    "purpose_concept",
    "source_element",
    "study_entity",
    "transport_extension",
    "user_agent_type",
]

_MAX_INT32: Final = 2**31 - 1


def coding(system: str, code: str, display: str | None = None) -> Resource:
    out: Resource = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(system: str, code: str, display: str | None = None) -> Resource:
    return {"coding": [coding(system, code, display)]}


def extension(url: str, **value: JsonValue) -> Resource:
    out: Resource = {"url": url}
    out.update(value)
    return out


def network_type(address: str) -> str:
    """DICOM/FHIR network access point type: 1 machine name, 2 IP address, 5 URI."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return "5" if "://" in address else "1"
    return "2"


def purpose_concept(code: str, ns: FhirNamespace) -> Resource:
    system = V3_ACT_REASON if code in HL7_PURPOSES_OF_USE else ns.purpose_of_use
    return concept(system, code)


def person_agent(
    actor: StoredRecord,
    *,
    agent_type: Resource,
    requestor: bool,
    ns: FhirNamespace,
    network: str | None = None,
    purpose: str | None = None,
    transport: StoredRecord | None = None,
) -> Resource:
    role = actor.text("role")
    who: Resource = {"identifier": {"value": actor.text("user_id")}}
    name = actor.opt_text("name")
    if name:
        who["display"] = name
    agent: Resource = {}
    extensions: list[JsonValue] = []
    npi = actor.opt_text("npi")
    if npi:
        extensions.append(extension(ns.agent_npi, valueIdentifier={"system": US_NPI, "value": npi}))
    organization = actor.opt_text("organization")
    if organization:
        extensions.append(extension(ns.agent_organization, valueString=organization))
    if extensions:
        agent["extension"] = extensions
    agent["type"] = agent_type
    agent["role"] = [{"coding": [coding(ns.workforce_role, role)], "text": role}]
    agent["who"] = who
    if name:  # agent.name: what the ITI-81 agent-name search matches (the index's user_name)
        agent["name"] = name
    agent["requestor"] = requestor
    if network or transport is not None:
        agent["network"] = _network(network, transport, ns)
    if purpose:
        agent["purposeOfUse"] = [purpose_concept(purpose, ns)]
    return agent


def _network(address: str | None, transport: StoredRecord | None, ns: FhirNamespace) -> Resource:
    out: Resource = {}
    if transport is not None:
        out["extension"] = [transport_extension(transport, ns)]
    if address:
        out["address"] = address
        out["type"] = network_type(address)
    return out


def transport_extension(transport: StoredRecord, ns: FhirNamespace) -> Resource:
    """PhiAccessEvent v3 ``transport`` on ``agent.network`` (R4 has no element for it):
    ``channel`` (valueCode) and ``encrypted`` (valueBoolean, left out when unknown)."""
    parts: list[JsonValue] = [extension("channel", valueCode=transport.text("channel"))]
    encrypted = transport.opt_bool("encrypted")
    if encrypted is not None:
        parts.append(extension("encrypted", valueBoolean=encrypted))
    return extension(ns.transport, extension=parts)


def producer_agent(producer_id: str) -> Resource:
    return {
        "type": concept(DCM, dicom.APPLICATION_ROLE, dicom.ROLE_IDS[dicom.APPLICATION_ROLE]),
        "who": {"identifier": {"value": producer_id}},
        "requestor": False,
    }


def source_element(record: StoredRecord, ns: FhirNamespace) -> Resource:
    facility = record.record("facility")
    seq = record.integer("producer_seq")
    source: Resource = {}
    extensions: list[JsonValue] = [extension(ns.producer_sequence, valueDecimal=seq)]
    site_name = facility.opt_text("name")
    if site_name:
        extensions.append(extension(ns.site_name, valueString=site_name))
    source["extension"] = extensions
    source["site"] = facility.text("id")
    source["observer"] = {"identifier": {"value": record.text("producer_id")}}
    source["type"] = [coding(SECURITY_SOURCE_TYPE, "4", "Application Server")]
    return source


def detail(kind: str, value: str) -> Resource:
    return {"type": kind, "valueString": value}


def patient_entity(patient: StoredRecord) -> Resource:
    identifier: Resource = {
        "type": concept(V2_IDENTIFIER_TYPE, "MR", "Medical record number"),
        "value": patient.text("id"),
    }
    issuer = patient.opt_text("issuer")
    if issuer:
        identifier["assigner"] = {"display": issuer}
    entity: Resource = {
        "what": {"type": "Patient", "identifier": identifier},
        "type": coding(AUDIT_ENTITY_TYPE, "1", "Person"),
        "role": coding(OBJECT_ROLE, "1", "Patient"),
    }
    state = patient.opt_text("state")
    if state:
        entity["detail"] = [detail("state", state)]
    return entity


def study_entity(study: StoredRecord) -> Resource:
    details: list[JsonValue] = []
    accession = study.opt_text("accession")
    if accession:
        details.append(detail("accession", accession))
    modality = study.opt_text("modality")
    if modality:
        details.append(detail("modality", modality))
    details.extend(detail("sop-class", sop) for sop in study.texts("sop_classes"))
    instances = study.opt_integer("instances")
    if instances is not None:
        details.append(detail("instances", str(instances)))
    entity: Resource = {
        "what": {
            "type": "ImagingStudy",
            "identifier": {
                "type": concept(DCM, dicom.STUDY_INSTANCE_UID, "Study Instance UID"),
                "system": DICOM_UID_SYSTEM,
                "value": f"urn:oid:{study.text('uid')}",
            },
        },
        "type": coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "3", "Report"),
    }
    if details:
        entity["detail"] = details
    return entity


def position_extension(position: LedgerPosition, ns: FhirNamespace) -> Resource:
    if not 0 <= position.log_id <= _MAX_INT32:
        raise MalformedInputError("log id does not fit a FHIR integer")
    if position.leaf_index < 0 or not position.origin:
        raise MalformedInputError("ledger position must have an origin and a leaf index >= 0")
    return extension(
        ns.ledger_position,
        extension=[
            extension("origin", valueString=position.origin),
            extension("logId", valueInteger=position.log_id),
            extension("leafIndex", valueDecimal=position.leaf_index),
        ],
    )


def user_agent_type(event_code: str, action: str) -> Resource:
    if event_code == dicom.EXPORT:
        return concept(V3_PARTICIPATION_TYPE, "INF", "informant")
    if action in ("C", "U"):
        return concept(V3_PARTICIPATION_TYPE, "AUT", "author (originator)")
    if action == "D":
        return concept(V3_ROLE_CLASS, "AGNT", "agent")
    return concept(V3_PARTICIPATION_TYPE, "IRCP", "information recipient")


def detail_extensions(details: Mapping[str, str], ns: FhirNamespace) -> list[JsonValue]:
    """One ``event-detail`` extension (``key``, ``value``) per ``details`` entry, by key."""
    extensions: list[JsonValue] = []
    for key in sorted(details):
        parts: list[JsonValue] = [extension("key", valueString=key)]
        if details[key]:
            parts.append(extension("value", valueString=details[key]))
        extensions.append(extension(ns.event_detail, extension=parts))
    return extensions


def event_type_subtypes(rec: StoredRecord, ns: FhirNamespace) -> list[JsonValue]:
    """The ``subtype`` coding of the stored DICOM EventTypeCode, if any."""
    type_code = rec.opt_text("event_type_code")
    if type_code is None:
        return []
    known = dicom.EVENT_TYPE_CODES.get(type_code)
    system = DCM if known else ns.event_type_code
    return [coding(system, type_code, known)]


def disclosure_recipient_agent(recipient: StoredRecord, ns: FhirNamespace) -> Resource:
    agent: Resource = {}
    organization = recipient.opt_text("organization")
    if organization:
        agent["extension"] = [extension(ns.agent_organization, valueString=organization)]
    agent["type"] = concept(V3_PARTICIPATION_TYPE, "IRCP", "information recipient")
    agent["who"] = {"display": recipient.text("name")}
    agent["requestor"] = False
    address = recipient.opt_text("address")
    if address:
        agent["location"] = {"display": address}
    return agent
