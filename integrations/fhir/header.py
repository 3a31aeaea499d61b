"""What an AuditEvent says about the event itself: which EventID, which id, when, how it ended.

Invariant: ``type`` is a DICOM EventID (a critical-result relay cannot come in as FHIR);
at most one EventTypeCode is recorded, and the private ``SEC`` subtype only marks a
security EventID; the event id is the resource's ``id``, else its ``urn:uuid:`` fullUrl,
else a new one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from integrations.fhir.nodes import Builder, Node, code_of, fail, parse_instant
from integrations.fhir.vocabulary import DCM, OUTCOMES, TOP_LEVEL
from producers import EventAction, EventOutcome, new_event_id
from schemas import dicom

__all__ = ["Head", "head_of"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Head:
    """What the resource says about the event itself: which, when, and how it ended."""

    code: str
    type_code: str | None
    marked_security: bool
    event_id: uuid.UUID
    action: EventAction
    outcome: EventOutcome
    event_time: datetime


def head_of(root: Node, b: Builder, full_url: str | None) -> Head:
    if root.get("resourceType").value != "AuditEvent":
        raise fail(f"{root.path}.resourceType", "must be AuditEvent")
    code, type_code, marked_security = _event_type(b)
    root.only(TOP_LEVEL)
    event_id = _event_id(root, full_url)
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
    return Head(
        code=code,
        type_code=type_code,
        marked_security=marked_security,
        event_id=event_id,
        action=action,
        outcome=outcome,
        event_time=event_time,
    )


def _event_type(b: Builder) -> tuple[str, str | None, bool]:
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


def _event_id(root: Node, full_url: str | None) -> uuid.UUID:
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
