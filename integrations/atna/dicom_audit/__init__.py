"""DICOM PS3.15 A.5 audit messages (the XML body of IHE ATNA syslog) to and from events.

This package owns the audit message model (``model``), the XML hardening (``safe_xml``:
no DTD, so no entity or external reference is ever expanded or fetched), the parser
(``reader``), the mapping to ledger events per event type (``mapping`` for PHI access,
``security``, ``audit_log``, over the shared ``fields``, the event ``identity`` and the
result sets of ``resultset``) and the writer used by tests and senders (``writer``, over
the message parts of ``xmlparts``). It may import ``producers`` (its public
surface), ``integrations.errors`` and the ``schemas`` data (the DICOM codes live in
``schemas.dicom``). The mapping, field by field, is in docs/design/dicom-audit-mapping.md.

Invariants: the events of a message are a pure function of its bytes and
``default_facility``; a message maps or raises ``AtnaParseError`` / ``AtnaUnmappableError``
(nothing is silently dropped); for every valid event ``e``,
``events_from_dicom(to_dicom_xml(e), keep_producer=True) == (e,)``.
"""

from __future__ import annotations

from datetime import datetime

from integrations.atna.dicom_audit.identity import event_id_for
from integrations.atna.dicom_audit.mapping import map_audit_message
from integrations.atna.dicom_audit.model import (
    ATNA_NAMESPACE,
    MSGID,
    AuditMessage,
    Code,
    MappedEvent,
    Participant,
    ParticipantObject,
    SopClass,
)
from integrations.atna.dicom_audit.reader import parse_audit_message
from integrations.atna.dicom_audit.writer import to_dicom_xml

__all__ = [
    "ATNA_NAMESPACE",
    "MSGID",
    "AuditMessage",
    "Code",
    "MappedEvent",
    "Participant",
    "ParticipantObject",
    "SopClass",
    "event_id_for",
    "events_from_dicom",
    "map_audit_message",
    "parse_audit_message",
    "to_dicom_xml",
]


def events_from_dicom(
    payload: bytes,
    *,
    default_facility: str | None = None,
    keep_producer: bool = False,
    now: datetime | None = None,
    check: bool = True,
) -> tuple[MappedEvent, ...]:
    """Parse and map one DICOM audit message (the MSG of an ATNA syslog message).

    Raises ``AtnaParseError`` or ``AtnaUnmappableError`` (see the module doc). With
    ``keep_producer`` the producer id and sequence come from a message this module wrote
    (AuditSourceID and the ledger object); without, they are left for the emitter to
    stamp and the AuditSourceID is kept in ``details["audit_source_id"]``.
    """
    msg = parse_audit_message(payload)
    return map_audit_message(
        msg,
        payload,
        default_facility=default_facility,
        keep_producer=keep_producer,
        now=now,
        check=check,
    )
