"""The people of an AuditEvent: the requesting user, a recipient, and the purpose of use.

Invariant: an agent is the requesting user (``requestor`` = true), a recipient
(v3-ParticipationType IRCP) or a system taking part (DCM 110150/110152/110153); anything
else cannot be mapped. A user needs a role, except with a security EventID, where one
without is ``person``, ``system`` or ``unspecified`` as a foreign DICOM message is mapped.
"""

from __future__ import annotations

from typing import Literal

from integrations.fhir.nodes import Builder, Node, code_of, fail, has_code, one_extension
from integrations.fhir.vocabulary import (
    AGENT_KEYS,
    DCM,
    EXTRA_SECURITY_ROLE_TYPE,
    SYSTEM_AGENT_TYPES,
    V3_ACT_REASON,
    V3_PARTICIPATION_TYPE,
)
from producers import Actor, Recipient, Transport, TransportChannel

__all__ = [
    "agent_kind",
    "ext_text",
    "network_of",
    "purpose_of",
    "recipient_of",
    "transport_of",
    "user_of",
]


def purpose_of(b: Builder, user: Node | None) -> str | None:
    found: list[tuple[str, Node]] = []
    concepts = b.root.items("purposeOfEvent")
    if user is not None:
        concepts += user.items("purposeOfUse")
    for concept in concepts:
        codes = [
            c
            for c in concept.codings()
            if c.get("system").text() in (V3_ACT_REASON, b.names.purpose_of_use)
        ]
        if not codes:
            raise fail(concept.path, f"needs a coding from {V3_ACT_REASON}")
        found.extend((c.get("code").required_text(), c.get("code")) for c in codes)
    distinct = {code for code, _ in found}
    if len(distinct) > 1:
        raise fail(found[1][1].path, "the ledger records one purpose of use per event")
    if not found:
        return None
    b.note("purpose_of_use", found[0][1])
    return found[0][0]


def agent_kind(agent: Node) -> Literal["user", "recipient", "system"]:
    if agent.get("requestor").value is True:
        return "user"
    if agent.get("requestor").value not in (False, None):
        raise fail(agent.get("requestor").path, "must be true or false")
    agent_type = agent.get("type")
    if has_code(agent_type, V3_PARTICIPATION_TYPE, "IRCP"):
        return "recipient"
    if any(
        code_of(c)[0] == DCM and code_of(c)[1] in SYSTEM_AGENT_TYPES for c in agent_type.codings()
    ):
        return "system"
    raise fail(
        agent.path,
        "an agent that is neither the requesting user (requestor=true), a recipient "
        "(v3-ParticipationType IRCP) nor a system (DCM 110150/110152/110153) cannot be mapped",
    )


def ext_text(b: Builder, node: Node, url: str, event_field: str) -> str | None:
    ext = one_extension(node, url)
    if ext is None:
        return None
    value = ext.get("valueString")
    b.note(event_field, value)
    return value.required_text()


def npi_of(b: Builder, node: Node, event_field: str) -> str | None:
    ext = one_extension(node, b.names.agent_npi)
    if ext is None:
        return None
    value = ext.get("valueIdentifier").get("value")
    b.note(event_field, value)
    return value.required_text()


def role_of(b: Builder, agent: Node, event_field: str, *, lenient: bool = False) -> str:
    roles = agent.items("role")
    if not roles and lenient:
        # As the DICOM mapping of a foreign message: a human user is a person, an
        # application a system (e.g. the FHIR R4 User Authentication example has no role).
        agent_type = agent.get("type")
        b.note(event_field, agent_type)
        if has_code(agent_type, EXTRA_SECURITY_ROLE_TYPE, "humanuser"):
            return "person"
        if any(code_of(c)[0] == DCM for c in agent_type.codings()):
            return "system"
        return "unspecified"
    if not roles:
        raise fail(f"{agent.path}.role", "is required (the workforce role)")
    if len(roles) > 1:
        raise fail(roles[1].path, "the ledger records one role per person")
    role = roles[0]
    for coding in role.codings():
        if coding.get("system").text() == b.names.workforce_role:
            b.note(event_field, coding.get("code"))
            return coding.get("code").required_text()
    if role.get("text").present:
        b.note(event_field, role.get("text"))
        return role.get("text").required_text()
    codings = role.codings()
    if codings:
        b.note(event_field, codings[0].get("code"))
        return codings[0].get("code").required_text()
    raise fail(role.path, "needs a text or a coding")


def user_of(b: Builder, agent: Node, *, lenient_role: bool = False) -> Actor:
    agent.only(AGENT_KEYS)
    who = agent.get("who")
    user_id = who.get("identifier").get("value")
    b.note("actor.user_id", user_id)
    name = who.get("display")
    if not name.present:
        name = agent.get("name")
    b.note("actor.name", name)
    return Actor(
        user_id=user_id.required_text("is required (the unique user id)"),
        name=name.text(),
        role=role_of(b, agent, "actor.role", lenient=lenient_role),
        organization=ext_text(b, agent, b.names.agent_organization, "actor.organization"),
        npi=npi_of(b, agent, "actor.npi"),
    )


def recipient_of(b: Builder, agent: Node) -> Recipient:
    agent.only(AGENT_KEYS)
    name = agent.get("who").get("display")
    if not name.present:
        name = agent.get("name")
    b.note("recipient.name", name)
    address = agent.get("location").get("display")
    b.note("recipient.address", address)
    return Recipient(
        name=name.required_text("is required (who received the PHI)"),
        address=address.text(),
        organization=ext_text(b, agent, b.names.agent_organization, "recipient.organization"),
    )


def network_of(agent: Node) -> Node:
    return agent.get("network").get("address")


def transport_of(b: Builder, agent: Node) -> tuple[Node, Transport] | None:
    """The ledger's own ``transport`` extension on ``agent.network`` (PhiAccessEvent v3),
    if any: a foreign AuditEvent has none (R4 records no encryption), so it maps to none."""
    ext = one_extension(agent.get("network"), b.names.transport)
    if ext is None:
        return None
    b.note("transport", ext)
    channel = one_extension(ext, "channel")
    if channel is None:
        raise fail(f"{ext.path}.extension", "needs the channel")
    code = channel.get("valueCode")
    b.note("transport.channel", code)
    symbol = code.required_text()
    if symbol not in TransportChannel.__members__:
        raise fail(code.path, f"{symbol[:40]!r} is not a transport channel")
    encrypted = one_extension(ext, "encrypted")
    flag: bool | None = None
    if encrypted is not None:
        value = encrypted.get("valueBoolean")
        b.note("transport.encrypted", value)
        if not isinstance(value.value, bool):
            raise fail(value.path, "must be a boolean")
        flag = value.value
    return ext, Transport(channel=TransportChannel(symbol), encrypted=flag)
