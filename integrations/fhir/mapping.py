"""One FHIR R4 AuditEvent -> one ``PhiAccessEvent`` or ``SecurityEvent``.

Invariant: an event returned here has passed ``producers.validate`` (producer fields aside
when they are left for the emitter to stamp), and every error is an
``EventValidationError`` whose ``field`` is the FHIR path of the offending element. Which
schema a resource becomes, and why, is described in docs/design/fhir.md.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType

from integrations.fhir.agents import agent_kind, network_of, purpose_of, recipient_of, user_of
from integrations.fhir.elements import (
    add_details,
    add_query,
    entity_kind,
    patient_of,
    source_of,
    study_of,
)
from integrations.fhir.nodes import (
    Builder,
    Node,
    code_of,
    extensions_at,
    fail,
    has_code,
    parse_instant,
)
from integrations.fhir.vocabulary import (
    AGENT_KEYS,
    DCM,
    DEFAULT_BASE_URL,
    ENTITY_KEYS,
    OUTCOMES,
    SOURCE_ROLE_ID,
    TOP_LEVEL,
    names,
)
from producers import (
    Actor,
    EventAction,
    EventOutcome,
    EventValidationError,
    Patient,
    PhiAccessEvent,
    Recipient,
    SecurityEvent,
    Study,
    new_event_id,
    validate,
)
from schemas import dicom

__all__ = ["event_from_fhir"]


def event_from_fhir(
    resource: Mapping[str, object],
    *,
    base_url: str = DEFAULT_BASE_URL,
    keep_producer: bool = False,
    full_url: str | None = None,
    now: datetime | None = None,
) -> PhiAccessEvent | SecurityEvent:
    """The event of one FHIR R4 AuditEvent (a ``PhiAccessEvent``, or a ``SecurityEvent`` as
    docs/design/fhir.md says); raises ``EventValidationError``.

    The event id is the resource's ``id`` (a UUID), else the ``urn:uuid:`` of ``full_url``,
    else a new one. With ``keep_producer`` the producer id and sequence number are read
    from ``source.observer`` and the ``producer-sequence`` extension (a resource this ledger
    produced); without, they are left unset for the emitter to stamp, and the observer's id
    is kept in ``details["source.observer"]``.
    """
    ns = names(base_url)
    root = Node(resource, "AuditEvent")
    builder = Builder(root, ns)
    event = _build(root, builder, keep_producer=keep_producer, full_url=full_url)
    probe = event
    if not keep_producer:  # validate() wants producer fields; the emitter stamps real ones
        probe = replace(event, producer_id="fhir-feed", producer_seq=0)
    try:
        validate(probe, now=now)
    except EventValidationError as exc:
        path = builder.fhir_path(exc.field)
        problem = str(exc).removeprefix(f"{exc.field}: ")
        raise EventValidationError(f"{path}: {problem}", field=path) from exc
    return event


def event_type(b: Builder) -> tuple[str, str | None, bool]:
    """The EventID, the EventTypeCode, and whether the ``SEC`` subtype marks the resource
    as a security event."""
    root = b.root
    type_node = root.get("type")
    if not type_node.present:
        raise fail(type_node.path, "is required (a DICOM EventID, code system DCM)")
    system, code = code_of(type_node)
    if system == b.names.private_codes and code == dicom.CRITICAL_RESULT_RELAY[0]:
        raise fail(
            type_node.path,
            "critical result relays cannot be submitted as FHIR AuditEvents; "
            "emit a CriticalResultRelay event instead",
        )
    if system != DCM or code is None or code not in dicom.EVENT_IDS:
        raise fail(
            f"{type_node.path}.code" if system == DCM else f"{type_node.path}.system",
            f"must be a DICOM EventID (system {DCM}, codes 110100-110114)",
        )
    b.note("dicom_event_id", type_node.get("code"))
    type_code: str | None = None
    security = False
    for sub in root.items("subtype"):
        sub_system, sub_code = code_of(sub)
        if sub_system in (DCM, b.names.event_type_code):
            if type_code is not None:
                raise fail(sub.path, "only one DICOM EventTypeCode can be recorded")
            type_code = sub.get("code").required_text()
            b.note("event_type_code", sub.get("code"))
        elif sub_system == b.names.private_codes:
            if sub_code != dicom.SECURITY_EVENT[0]:
                raise fail(sub.path, f"private code {sub_code!r} cannot be mapped")
            if code not in dicom.SECURITY_EVENT_IDS:
                raise fail(
                    sub.path,
                    f"a security event needs a security EventID "
                    f"({', '.join(sorted(dicom.SECURITY_EVENT_IDS))}), not {code}",
                )
            security = True
        # Other subtypes (BALP's iso-21089-lifecycle#disclose, RESTful interactions) only
        # restate what type and the recipient already say.
    return code, type_code, security


def event_id_of(root: Node, full_url: str | None) -> uuid.UUID:
    ident = root.get("id")
    if ident.present:
        try:
            return uuid.UUID(ident.required_text())
        except ValueError as exc:
            raise fail(ident.path, "must be a UUID (the ledger deduplicates on it)") from exc
    if full_url and full_url.startswith("urn:uuid:"):
        try:
            return uuid.UUID(full_url.removeprefix("urn:uuid:"))
        except ValueError as exc:
            raise fail("fullUrl", "is not a valid urn:uuid") from exc
    return new_event_id()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Head:
    """What the resource says about the event itself: which, when, and how it ended."""

    code: str
    type_code: str | None
    marked_security: bool
    event_id: uuid.UUID
    action: EventAction
    outcome: EventOutcome
    event_time: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class _People:
    """The requesting user, where the request came from, whom PHI went to, and why."""

    actor: Actor
    network: Node
    recipient_nodes: tuple[Node, ...]
    recipient: Recipient | None
    purpose: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Subjects:
    """The patient and the study the event names (at most one of each)."""

    patients: tuple[Patient, ...]
    studies: tuple[tuple[Node, Study], ...]


def _build(
    root: Node, b: Builder, *, keep_producer: bool, full_url: str | None
) -> PhiAccessEvent | SecurityEvent:
    head = _head(root, b, full_url)
    people = _people(root, b, head.code)
    subjects = _subjects(root, b)
    served = bool(extensions_at(root, b.names.ledger_position))
    security = head.marked_security or (
        not served and head.code in dicom.SECURITY_EVENT_IDS and not subjects.studies
    )
    if security:
        if subjects.studies:
            raise fail(subjects.studies[0][0].path, "a security event names no study")
        if people.recipient_nodes:
            raise fail(people.recipient_nodes[0].path, "a security event has no recipient")
    elif not subjects.patients:
        raise fail(f"{root.path}.entity", "needs the patient (object-role 1 Patient)")

    add_details(b)
    outcome_desc = root.get("outcomeDesc")
    if outcome_desc.present:
        b.add_detail("outcomeDesc", outcome_desc.required_text(), outcome_desc)
    facility, producer_id, producer_seq = source_of(b, keep_producer)
    if security:
        return SecurityEvent(
            event_id=head.event_id,
            event_time=head.event_time,
            producer_id=producer_id,
            producer_seq=producer_seq,
            facility=facility,
            actor=people.actor,
            dicom_event_id=head.code,
            event_type_code=head.type_code,
            action=head.action,
            outcome=head.outcome,
            network_address=people.network.text(),
            patient=subjects.patients[0] if subjects.patients else None,
            purpose_of_use=people.purpose,
            details=MappingProxyType(dict(b.details)),
        )
    return PhiAccessEvent(
        event_id=head.event_id,
        event_time=head.event_time,
        producer_id=producer_id,
        producer_seq=producer_seq,
        facility=facility,
        actor=people.actor,
        dicom_event_id=head.code,
        event_type_code=head.type_code,
        action=head.action,
        outcome=head.outcome,
        patient=subjects.patients[0],
        study=subjects.studies[0][1] if subjects.studies else None,
        network_address=people.network.text(),
        purpose_of_use=people.purpose,
        recipient=people.recipient,
        details=MappingProxyType(dict(b.details)),
    )


def _head(root: Node, b: Builder, full_url: str | None) -> _Head:
    if root.get("resourceType").value != "AuditEvent":
        raise fail(f"{root.path}.resourceType", "must be AuditEvent")
    code, type_code, marked_security = event_type(b)
    root.only(TOP_LEVEL)
    event_id = event_id_of(root, full_url)
    b.note("event_id", root.get("id"))

    action_node = root.get("action")
    action_text = action_node.required_text("is required (C, R, U, D or E)")
    try:
        action = EventAction(action_text)
    except ValueError as exc:
        raise fail(action_node.path, "must be C, R, U, D or E") from exc
    b.note("action", action_node)

    outcome_node = root.get("outcome")
    outcome = OUTCOMES.get(outcome_node.required_text("is required (0, 4, 8 or 12)"))
    if outcome is None:
        raise fail(outcome_node.path, "must be 0, 4, 8 or 12")
    b.note("outcome", outcome_node)

    recorded = root.get("recorded")
    event_time = parse_instant(recorded)
    b.note("event_time", recorded)
    return _Head(
        code=code,
        type_code=type_code,
        marked_security=marked_security,
        event_id=event_id,
        action=action,
        outcome=outcome,
        event_time=event_time,
    )


def _people(root: Node, b: Builder, code: str) -> _People:
    users: list[Node] = []
    recipients: list[Node] = []
    systems: list[Node] = []
    for agent in root.items("agent"):
        kind = agent_kind(agent)
        if kind == "user":
            users.append(agent)
        elif kind == "recipient":
            recipients.append(agent)
        else:
            systems.append(agent)
    if not users:
        raise fail(f"{root.path}.agent", "needs the requesting user (an agent, requestor=true)")
    if len(users) > 1:
        raise fail(users[1].path, "only one agent can be the requestor")
    if len(recipients) > 1:
        raise fail(recipients[1].path, "the ledger records one recipient per event")
    user = users[0]
    actor = user_of(b, user, lenient_role=code in dicom.SECURITY_EVENT_IDS)
    network = network_of(user)
    if not network.present:  # BALP puts the client's address on the Source Role ID agent
        for agent in systems:
            if has_code(agent.get("type"), DCM, SOURCE_ROLE_ID) and network_of(agent).present:
                network = network_of(agent)
                break
    b.note("network_address", network)
    for agent in systems:
        agent.only(AGENT_KEYS)
    recipient = recipient_of(b, recipients[0]) if recipients else None
    return _People(
        actor=actor,
        network=network,
        recipient_nodes=tuple(recipients),
        recipient=recipient,
        purpose=purpose_of(b, user),
    )


def _subjects(root: Node, b: Builder) -> _Subjects:
    patients: list[Patient] = []
    studies: list[tuple[Node, Study]] = []
    for entity in root.items("entity"):
        entity.only(ENTITY_KEYS)
        kind = entity_kind(entity)
        if kind == "patient":
            if patients:
                raise fail(entity.path, "the ledger records one patient per event")
            patients.append(patient_of(b, entity))
        elif kind == "study":
            if studies:
                raise fail(entity.path, "the ledger records one study per event")
            studies.append((entity, study_of(b, entity)))
        else:
            add_query(b, entity)
    return _Subjects(patients=tuple(patients), studies=tuple(studies))
