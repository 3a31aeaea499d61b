"""FHIR R4 AuditEvent resources in, ``PhiAccessEvent`` or ``SecurityEvent`` out: the IHE FHIR
audit feed behind ``POST /fhir/AuditEvent``.

This package owns the inbound mapping, the reverse of ``ledger.audit.fhir.audit_event``:
``events_from_fhir`` turns one AuditEvent, or a ``batch`` / ``transaction`` Bundle of them,
into one ``EntryResult`` per resource, each an event that passed ``producers.validate`` or an
``EventValidationError`` naming the FHIR path of the offending element. It imports nothing
of this product but the producers' public surface (``from producers import ...``) and the
``schemas`` data (``schemas.fhir`` is the vocabulary it shares with the ledger). Which schema
a resource becomes, and the round trip it keeps, are described in docs/design/fhir.md.
"""

from __future__ import annotations

from integrations.fhir.feed import MAX_BUNDLE_ENTRIES, EntryResult, Submission, events_from_fhir
from integrations.fhir.mapping import event_from_fhir
from integrations.fhir.vocabulary import DEFAULT_BASE_URL

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_BUNDLE_ENTRIES",
    "EntryResult",
    "Submission",
    "event_from_fhir",
    "events_from_fhir",
]
