"""One FHIR R4 AuditEvent -> one ``PhiAccessEvent`` or ``SecurityEvent``.

Invariant: an event returned here has passed ``producers.validate`` (producer fields aside
when they are left for the emitter to stamp), and every error is an
``EventValidationError`` whose ``field`` is the FHIR path of the offending element. Which
schema a resource becomes, and why, is described in docs/design/fhir.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from types import MappingProxyType

from integrations.fhir.agents import (
    agent_kind,
    network_of,
    purpose_of,
    recipient_of,
    transport_of,
    user_of,
)
from integrations.fhir.elements import (
    add_details,
    add_query,
    entity_kind,
    patient_of,
    source_of,
    study_of,
)
from integrations.fhir.header import Head, head_of
from integrations.fhir.nodes import (
    Builder,
    Node,
    extensions_at,
    fail,
    has_code,
)
from integrations.fhir.vocabulary import (
    AGENT_KEYS,
    DCM,
    DEFAULT_BASE_URL,
    ENTITY_KEYS,
    SOURCE_ROLE_ID,
    names,
)
from producers import (
    Actor,
    EventValidationError,
    Facility,
    Patient,
    PhiAccessEvent,
    Recipient,
    SecurityEvent,
    Study,
    Transport,
    validate,
)
from schemas import dicom

__all__ = ["event_from_fhir"]

#: The facility, producer id and producer sequence number ``source`` names.
_Source = tuple[Facility, str | None, int | None]


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


@dataclass(frozen=True, slots=True, kw_only=True)
class _People:
    """The requesting user, where the request came from, whom PHI went to, and why."""

    actor: Actor
    network: Node
    recipient_nodes: tuple[Node, ...]
    recipient: Recipient | None
    purpose: str | None
    #: The ``transport`` extension on the user's ``agent.network`` and what it says.
    transport: tuple[Node, Transport] | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Subjects:
    """The patient and the study the event names (at most one of each)."""

    patients: tuple[Patient, ...]
    studies: tuple[tuple[Node, Study], ...]


def _build(
    root: Node, b: Builder, *, keep_producer: bool, full_url: str | None
) -> PhiAccessEvent | SecurityEvent:
    head = head_of(root, b, full_url)
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
        if people.transport is not None:
            raise fail(people.transport[0].path, "a security event records no transport")
    elif not subjects.patients and head.code != dicom.QUERY:
        # A Query may name no patient (a search by date: PhiAccessEvent v2).
        raise fail(f"{root.path}.entity", "needs the patient (object-role 1 Patient)")

    add_details(b)
    outcome_desc = root.get("outcomeDesc")
    if outcome_desc.present:
        b.add_detail("outcomeDesc", outcome_desc.required_text(), outcome_desc)
    source = source_of(b, keep_producer)
    if security:
        return _security_event(head, people, subjects, source, b)
    return _access_event(head, people, subjects, source, b)


def _security_event(
    head: Head, people: _People, subjects: _Subjects, source: _Source, b: Builder
) -> SecurityEvent:
    facility, producer_id, producer_seq = source
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


def _access_event(
    head: Head, people: _People, subjects: _Subjects, source: _Source, b: Builder
) -> PhiAccessEvent:
    facility, producer_id, producer_seq = source
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
        patient=subjects.patients[0] if subjects.patients else None,
        study=subjects.studies[0][1] if subjects.studies else None,
        network_address=people.network.text(),
        purpose_of_use=people.purpose,
        recipient=people.recipient,
        details=MappingProxyType(dict(b.details)),
        transport=None if people.transport is None else people.transport[1],
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
        transport=transport_of(b, user),
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
