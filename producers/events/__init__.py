"""Typed audit events, as a PACS integration builds them: the model, its limits, the field
rules and the Avro record mapping.

Invariant: an event value is immutable, every datetime in it is timezone-aware UTC, and
``validate()`` either returns ``None`` or raises ``EventValidationError`` naming the first
bad field by its dotted path (``patient.id``, ``actor.npi``). The field rules are defined
once, on the Avro record shape (``validate_record``): ``validate(event)`` applies them to
``to_record(event)``, and the consumer applies them to the record it decoded, so producer
and ledger accept exactly the same events. Converting to and from Avro records
(``to_record`` / ``codec.from_record``) is lossless.

Modules: ``model`` (enums and dataclasses), ``limits`` (bounds and vocabularies),
``records`` (Avro mapping, schema names, Kafka key), ``decoding`` (records back to
events), ``fields`` (one rule per field kind), ``resultset`` (an access answer's
disclosed patients), ``validation`` (which rules apply to which event). They import
only the standard library, ``producers.errors``, ``producers.netaddr`` and the
``schemas`` data package.
"""

from producers.events.decoding import from_record
from producers.events.fields import npi_checksum_ok
from producers.events.limits import (
    DICOM_EVENT_IDS,
    MAX_DETAILS,
    MAX_DISCLOSED_PATIENTS,
    MAX_DISCLOSED_RANGES,
    MAX_DISCLOSED_STUDIES,
    MAX_FUTURE_SKEW,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    MIN_EVENT_TIME,
    PURPOSES_OF_USE,
    QUERY_EVENT_ID,
    SECURITY_EVENT_IDS,
)
from producers.events.model import (
    AcrCategory,
    Actor,
    AttemptOutcome,
    AuditEvent,
    AuditLogUsed,
    CriticalResultRelay,
    DisclosedPatient,
    DisclosedRange,
    EventAction,
    EventOutcome,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    Recipient,
    RelayAttempt,
    RelayMethod,
    RelayRecipient,
    SecurityEvent,
    Study,
    Transport,
    TransportChannel,
    new_event_id,
    utc_now,
)
from producers.events.records import (
    ACCESS_SCHEMA_NAME,
    AUDIT_LOG_USED_SCHEMA_NAME,
    RELAY_SCHEMA_NAME,
    SECURITY_SCHEMA_NAME,
    Record,
    event_key,
    schema_name,
    to_record,
)
from producers.events.validation import (
    check_producer_id,
    validate,
    validate_record,
    validated_record,
)

__all__ = [
    "ACCESS_SCHEMA_NAME",
    "AUDIT_LOG_USED_SCHEMA_NAME",
    "DICOM_EVENT_IDS",
    "MAX_DETAILS",
    "MAX_DISCLOSED_PATIENTS",
    "MAX_DISCLOSED_RANGES",
    "MAX_DISCLOSED_STUDIES",
    "MAX_FUTURE_SKEW",
    "MAX_ID_CHARS",
    "MAX_TEXT_CHARS",
    "MIN_EVENT_TIME",
    "PURPOSES_OF_USE",
    "QUERY_EVENT_ID",
    "RELAY_SCHEMA_NAME",
    "SECURITY_EVENT_IDS",
    "SECURITY_SCHEMA_NAME",
    "AcrCategory",
    "Actor",
    "AttemptOutcome",
    "AuditEvent",
    "AuditLogUsed",
    "CriticalResultRelay",
    "DisclosedPatient",
    "DisclosedRange",
    "EventAction",
    "EventOutcome",
    "Facility",
    "LedgerQuery",
    "Patient",
    "PhiAccessEvent",
    "Recipient",
    "Record",
    "RelayAttempt",
    "RelayMethod",
    "RelayRecipient",
    "SecurityEvent",
    "Study",
    "Transport",
    "TransportChannel",
    "check_producer_id",
    "event_key",
    "from_record",
    "new_event_id",
    "npi_checksum_ok",
    "schema_name",
    "to_record",
    "utc_now",
    "validate",
    "validate_record",
    "validated_record",
]
