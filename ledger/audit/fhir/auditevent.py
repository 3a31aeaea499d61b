"""The FHIR R4 AuditEvent of one stored event, one builder per schema (IHE BALP aligned).

Invariant: pure (no I/O, no clock, no randomness); every AuditEvent has ``id`` = the event
id and carries its ledger position in the ``ledger-position`` extension, so any resource a
client receives can be proven against a signed checkpoint. The mapping of every schema is
described in docs/design/fhir.md.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from urllib.parse import urlencode

from ledger.audit.fhir.elements import (
    coding,
    concept,
    detail,
    detail_extensions,
    disclosure_recipient_agent,
    event_type_subtypes,
    patient_entity,
    person_agent,
    position_extension,
    producer_agent,
    purpose_concept,
    source_element,
    study_entity,
    user_agent_type,
)
from ledger.audit.fhir.relay import relay_event
from ledger.audit.fhir.stored import StoredRecord
from ledger.audit.fhir.vocabulary import (
    ACCESS_SCHEMA,
    ACTIONS,
    AUDIT_ENTITY_TYPE,
    AUDIT_LOG_USED_SCHEMA,
    DCM,
    DEFAULT_BASE_URL,
    EXTRA_SECURITY_ROLE_TYPE,
    ISO_21089_LIFECYCLE,
    OBJECT_ROLE,
    OUTCOMES,
    RELAY_SCHEMA,
    SECURITY_SCHEMA,
    V3_PARTICIPATION_TYPE,
    FhirNamespace,
    Resource,
    namespace,
)
from ledger.audit.query import LedgerPosition
from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError
from schemas import dicom

__all__ = ["audit_event"]


def audit_event(
    full_name: str,
    record: Mapping[str, JsonValue],
    *,
    event_id: uuid.UUID | str,
    position: LedgerPosition,
    base_url: str = DEFAULT_BASE_URL,
) -> Resource:
    """The FHIR R4 AuditEvent of one stored event.

    ``full_name`` and ``record`` are what ``SchemaSet.decode`` returned for the event's leaf;
    ``event_id`` is the id the ledger indexed it under (it must equal the record's), and
    ``position`` where its leaf sits. Raises ``MalformedInputError`` for a record that does
    not have the shape of the named schema.
    """
    ns = namespace(base_url)
    rec = StoredRecord(record, "")
    try:
        ident = uuid.UUID(str(event_id))
        stored_id = uuid.UUID(rec.text("event_id"))
    except ValueError as exc:
        raise MalformedInputError("event id is not a UUID") from exc
    if ident != stored_id:
        raise MalformedInputError("event id does not match the stored record's event_id")
    head: Resource = {
        "resourceType": "AuditEvent",
        "id": str(ident),
        "extension": [position_extension(position, ns)],
    }
    if full_name == ACCESS_SCHEMA:
        body = _access_event(rec, ns)
    elif full_name == RELAY_SCHEMA:
        body = relay_event(rec, ns)
    elif full_name == AUDIT_LOG_USED_SCHEMA:
        body = _audit_log_used(rec, ns)
    elif full_name == SECURITY_SCHEMA:
        body = _security_event(rec, ns)
    else:
        raise MalformedInputError(f"no FHIR AuditEvent mapping for schema {full_name[:100]!r}")
    extensions = body.pop("extension", None)
    if isinstance(extensions, list) and isinstance(head["extension"], list):
        head["extension"].extend(extensions)
    return head | body


def _action_and_outcome(rec: StoredRecord) -> tuple[str, str]:
    action = rec.text("action")
    if action not in ACTIONS:
        raise MalformedInputError("stored event field action must be one of C, R, U, D, E")
    return action, _outcome(rec)


def _outcome(rec: StoredRecord) -> str:
    outcome = OUTCOMES.get(rec.text("outcome"))
    if outcome is None:
        raise MalformedInputError("stored event field outcome is not a known outcome")
    return outcome


# --------------------------------------------------------------------------- PHI access


def _access_event(rec: StoredRecord, ns: FhirNamespace) -> Resource:
    code = rec.text("dicom_event_id")
    action, outcome = _action_and_outcome(rec)
    recipient = rec.opt_record("recipient")
    purpose = rec.opt_text("purpose_of_use")
    network = rec.opt_text("network_address")
    details = rec.text_map("details")

    out: Resource = {}
    query = details.pop("query", None) if code == dicom.QUERY else None
    if rec.opt_flag("disclosed_truncated"):  # v2: the answer returned more than it lists
        details["disclosed_total"] = str(rec.integer("disclosed_total"))
    extensions = detail_extensions(details, ns)
    if extensions:
        out["extension"] = extensions
    out["type"] = coding(DCM, code, dicom.EVENT_IDS.get(code))
    subtypes = event_type_subtypes(rec, ns)
    if code == dicom.EXPORT and recipient is not None:
        subtypes.append(coding(ISO_21089_LIFECYCLE, "disclose", "Disclose Record Lifecycle Event"))
    if subtypes:
        out["subtype"] = subtypes
    out["action"] = action
    out["recorded"] = rec.instant("event_time")
    out["outcome"] = outcome
    if purpose:
        out["purposeOfEvent"] = [purpose_concept(purpose, ns)]
    user = person_agent(
        rec.record("actor"),
        agent_type=user_agent_type(code, action),
        requestor=True,
        ns=ns,
        network=network,
        purpose=purpose,
        transport=rec.opt_record("transport"),  # v3
    )
    agents: list[JsonValue] = [user, producer_agent(rec.text("producer_id"))]
    if recipient is not None:
        agents.append(disclosure_recipient_agent(recipient, ns))
    out["agent"] = agents
    out["source"] = source_element(rec, ns)
    out["entity"] = _access_entities(rec, query)
    return out


def _access_entities(rec: StoredRecord, query: str | None) -> list[JsonValue]:
    """The patient named (if any, v2), the study (if any), a Query's query text (if any),
    then one patient per patient the answer returned (v2 ``disclosed``)."""
    named = rec.opt_record("patient")
    entities: list[JsonValue] = [] if named is None else [patient_entity(named)]
    study = rec.opt_record("study")
    if study is not None:
        entities.append(study_entity(study))
    if query is not None:
        entities.append(
            {
                "type": coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
                "role": coding(OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(query.encode("utf-8")).decode("ascii"),
            }
        )
    entities += [_disclosed_entity(p) for p in rec.records("disclosed")]
    return entities


def _disclosed_entity(patient: StoredRecord) -> Resource:
    """A patient the answer returned: marked ``attribution: disclosed``, with the UIDs of
    the studies of theirs it returned."""
    entity = patient_entity(patient)
    details = entity.get("detail")
    extra = [detail("attribution", "disclosed")]
    extra += [detail("study", uid) for uid in patient.texts("studies")]
    entity["detail"] = [*(details if isinstance(details, list) else []), *extra]
    return entity


# --------------------------------------------------------------------------- security events


def _security_event(rec: StoredRecord, ns: FhirNamespace) -> Resource:
    code = rec.text("dicom_event_id")
    action, outcome = _action_and_outcome(rec)
    purpose = rec.opt_text("purpose_of_use")
    actor = rec.record("actor")
    out: Resource = {}
    extensions = detail_extensions(rec.text_map("details"), ns)
    if extensions:
        out["extension"] = extensions
    out["type"] = coding(DCM, code, dicom.EVENT_IDS.get(code))
    marker, display = dicom.SECURITY_EVENT
    out["subtype"] = [*event_type_subtypes(rec, ns), coding(ns.private_codes, marker, display)]
    out["action"] = action
    out["recorded"] = rec.instant("event_time")
    out["outcome"] = outcome
    if purpose:
        out["purposeOfEvent"] = [purpose_concept(purpose, ns)]
    if actor.text("role") == "system":  # an application (e.g. Application Activity)
        agent_type = concept(DCM, dicom.APPLICATION_ROLE, dicom.ROLE_IDS[dicom.APPLICATION_ROLE])
    else:  # as the FHIR R4 User Authentication example (AuditEvent/example-login)
        agent_type = concept(EXTRA_SECURITY_ROLE_TYPE, "humanuser", "human user")
    out["agent"] = [
        person_agent(
            actor,
            agent_type=agent_type,
            requestor=True,
            ns=ns,
            network=rec.opt_text("network_address"),
            purpose=purpose,
        ),
        producer_agent(rec.text("producer_id")),
    ]
    out["source"] = source_element(rec, ns)
    patient = rec.opt_record("patient")
    if patient is not None:
        out["entity"] = [patient_entity(patient)]
    return out


# --------------------------------------------------------------------------- reads of the ledger


def _audit_log_used(rec: StoredRecord, ns: FhirNamespace) -> Resource:
    outcome = _outcome(rec)
    entities: list[JsonValue] = [_log_entity(rec)]
    patient = rec.opt_record("patient")
    if patient is not None:
        entities.append(patient_entity(patient))
    return {
        "type": coding(DCM, dicom.AUDIT_LOG_USED, dicom.EVENT_IDS[dicom.AUDIT_LOG_USED]),
        "action": "R",
        "recorded": rec.instant("event_time"),
        "outcome": outcome,
        "agent": [
            person_agent(
                rec.record("actor"),
                agent_type=concept(V3_PARTICIPATION_TYPE, "IRCP", "information recipient"),
                requestor=True,
                ns=ns,
                network=rec.opt_text("network_address"),
            ),
            producer_agent(rec.text("producer_id")),
        ],
        "source": source_element(rec, ns),
        "entity": entities,
    }


def _log_entity(rec: StoredRecord) -> Resource:
    """The ledger as the Security Resource read: the request, its status, what it returned."""
    query = rec.record("query")
    method = query.text("method")
    path = query.text("path")
    parameters = query.text_map("parameters")
    target = f"{path}?{urlencode(sorted(parameters.items()))}" if parameters else path
    details: list[JsonValue] = [
        detail("method", method),
        detail("status", str(query.integer("status"))),
    ]
    results = query.opt_integer("results")
    if results is not None:
        details.append(detail("results", str(results)))
    # Schema v2: the entries the read returned (docs/read-attribution.md), as
    # "origin#start-end" (end exclusive), the form reports use for ledger positions.
    disclosed = [
        f"{log.text('log')}#{r.integer('start')}-{r.integer('end')}"
        for log in rec.records("disclosed")
        for r in log.records("ranges")
    ]
    if disclosed:
        details.append(detail("disclosed", ";".join(disclosed)))
    if rec.opt_flag("disclosed_coarsened"):
        details.append(detail("disclosed_coarsened", "true"))
    return {
        "what": {"identifier": {"value": path}},
        "type": coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
        "role": coding(OBJECT_ROLE, "13", "Security Resource"),
        "query": base64.b64encode(f"{method} {target}".encode()).decode("ascii"),
        "detail": details,
    }
