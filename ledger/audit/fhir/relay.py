"""The AuditEvent of a critical-result relay (``CriticalResultRelay``).

Invariant: a relay has no DICOM EventID, so its ``type`` is this product's private code
``99PHILEDGER#CRR``; ``outcome`` is 0 once the finding was communicated, else 4.
"""

from __future__ import annotations

from ledger.audit.fhir.elements import (
    coding,
    concept,
    detail,
    extension,
    patient_entity,
    person_agent,
    producer_agent,
    purpose_concept,
    source_element,
    study_entity,
)
from ledger.audit.fhir.stored import StoredRecord
from ledger.audit.fhir.vocabulary import (
    OBJECT_ROLE,
    RESOURCE_TYPES,
    US_NPI,
    V3_PARTICIPATION_TYPE,
    FhirNamespace,
    Resource,
)
from ledger.audit.records import JsonValue
from schemas import dicom

__all__ = ["relay_event"]


def relay_event(rec: StoredRecord, ns: FhirNamespace) -> Resource:
    code, display = dicom.CRITICAL_RESULT_RELAY
    identified = rec.instant("identified_at")
    communicated = rec.opt_instant("communicated_at")
    acknowledged = rec.opt_instant("acknowledged_at")
    period: Resource = {"start": identified}
    if acknowledged or communicated:
        period["end"] = acknowledged or communicated
    recipient_agent = _relay_recipient(rec.record("recipient"), ns)
    relay_entity = _relay_entity(rec, display, identified, communicated, acknowledged)
    return {
        "type": coding(ns.private_codes, code, display),
        "action": "E",
        "period": period,
        "recorded": rec.instant("event_time"),
        "outcome": "0" if communicated else "4",
        "purposeOfEvent": [purpose_concept("TREAT", ns)],
        "agent": [
            person_agent(
                rec.record("sender"),
                agent_type=concept(V3_PARTICIPATION_TYPE, "AUT", "author (originator)"),
                requestor=True,
                ns=ns,
            ),
            recipient_agent,
            producer_agent(rec.text("producer_id")),
        ],
        "source": source_element(rec, ns),
        "entity": [
            patient_entity(rec.record("patient")),
            study_entity(rec.record("study")),
            relay_entity,
        ],
    }


def _relay_recipient(recipient: StoredRecord, ns: FhirNamespace) -> Resource:
    """Whom the finding was relayed to: name, workforce role and NPI."""
    agent: Resource = {}
    npi = recipient.opt_text("npi")
    if npi:
        agent["extension"] = [
            extension(ns.agent_npi, valueIdentifier={"system": US_NPI, "value": npi})
        ]
    role = recipient.text("role")
    agent["type"] = concept(V3_PARTICIPATION_TYPE, "IRCP", "information recipient")
    agent["role"] = [{"coding": [coding(ns.workforce_role, role)], "text": role}]
    agent["who"] = {"display": recipient.text("name")}
    agent["requestor"] = False
    return agent


def _relay_entity(
    rec: StoredRecord,
    display: str,
    identified: str,
    communicated: str | None,
    acknowledged: str | None,
) -> Resource:
    """The relay itself, a Communication: the finding, its category, method and attempts."""
    relay_details: list[JsonValue] = [
        detail("category", rec.text("category")),
        detail("method", rec.text("method")),
        detail("read-back", "true" if rec.flag("read_back") else "false"),
        detail("identified-at", identified),
    ]
    if communicated:
        relay_details.append(detail("communicated-at", communicated))
    if acknowledged:
        relay_details.append(detail("acknowledged-at", acknowledged))
    for attempt in rec.records("attempts"):
        text = f"{attempt.instant('at')} {attempt.text('method')} {attempt.text('outcome')}"
        note = attempt.opt_text("note")
        relay_details.append(detail("attempt", f"{text}: {note}" if note else text))
    relay_entity: Resource = {
        "type": coding(RESOURCE_TYPES, "Communication", "Communication"),
        "role": coding(OBJECT_ROLE, "4", "Domain Resource"),
        "name": display,
    }
    finding = rec.opt_text("finding")
    if finding:
        relay_entity["description"] = finding
    relay_entity["detail"] = relay_details
    return relay_entity
