"""Validation of events: which rules apply to which kind of event.

Invariant: ``validate_record`` is the one definition of a valid event, on the Avro record
shape: ``validate(event)`` applies it to ``to_record(event)`` and the consumer to the
record it decoded, so producer and ledger accept exactly the same events. It returns
``None`` or raises ``EventValidationError`` naming the first bad field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import cast

from producers.errors import EventValidationError
from producers.events.fields import (
    check_details,
    check_enum,
    check_envelope,
    check_event_type_code,
    check_network_address,
    check_npi,
    check_patient,
    check_purpose_of_use,
    check_study,
    check_symbol,
    check_text,
    check_time,
    check_transport,
    fail,
    optional_record,
    required_record,
)
from producers.events.limits import (
    DICOM_EVENT_IDS,
    MAX_DETAILS,
    MAX_DISCLOSED_RANGES,
    MAX_FUTURE_SKEW,
    MAX_LEAF_END,
    MAX_TEXT_CHARS,
    QUERY_EVENT_ID,
    SECURITY_EVENT_IDS,
)
from producers.events.model import (
    AcrCategory,
    AttemptOutcome,
    AuditEvent,
    AuditLogUsed,
    CriticalResultRelay,
    EventAction,
    EventOutcome,
    PhiAccessEvent,
    RelayMethod,
    SecurityEvent,
    Transport,
    TransportChannel,
    utc_now,
)
from producers.events.records import (
    ACCESS_SCHEMA_NAME,
    AUDIT_LOG_USED_SCHEMA_NAME,
    RELAY_SCHEMA_NAME,
    SECURITY_SCHEMA_NAME,
    Record,
    schema_name,
    to_record,
)
from producers.events.resultset import check_disclosed_patients

#: An HTTP method token as recorded (the API records every method a caller tried).
_METHOD = re.compile(r"[A-Z]{1,16}")


def validate(event: AuditEvent, *, now: datetime | None = None) -> None:
    """Return ``None`` if the event may be sent, else raise ``EventValidationError``."""
    validated_record(event, now=now)


def validated_record(
    event: AuditEvent, *, now: datetime | None = None, stamp: tuple[str, int] | None = None
) -> Record:
    """The event's Avro record, once it passed every rule (what the codec encodes);
    raises ``EventValidationError`` naming the first bad field. With ``stamp`` the record
    carries that producer id and sequence number instead of the event's own (the codec
    validates an unstamped event as it will be stamped, see ``Codec.prepare``)."""
    _check_enums(event)
    record = to_record(event)
    if stamp is not None:
        record["producer_id"], record["producer_seq"] = stamp
    validate_record(schema_name(event), record, now=now)
    return record


def _check_enums(event: AuditEvent) -> None:
    """The enum fields hold members of their enum (before ``to_record`` reads ``.value``)."""
    if isinstance(event, PhiAccessEvent):
        check_enum("action", event.action, EventAction)
        check_enum("outcome", event.outcome, EventOutcome)
        if event.transport is not None:
            if not isinstance(event.transport, Transport):
                raise fail("transport", "must be a Transport")
            check_enum("transport.channel", event.transport.channel, TransportChannel)
    elif isinstance(event, CriticalResultRelay):
        check_enum("category", event.category, AcrCategory)
        check_enum("method", event.method, RelayMethod)
        for i, attempt in enumerate(event.attempts):
            check_enum(f"attempts[{i}].method", attempt.method, RelayMethod)
            check_enum(f"attempts[{i}].outcome", attempt.outcome, AttemptOutcome)
    elif isinstance(event, AuditLogUsed):
        check_enum("outcome", event.outcome, EventOutcome)
    elif isinstance(event, SecurityEvent):
        check_enum("action", event.action, EventAction)
        check_enum("outcome", event.outcome, EventOutcome)
    else:
        raise EventValidationError(
            f"unsupported event type {type(event).__name__}", field="<event>"
        )


def check_producer_id(producer_id: str) -> None:
    """Raise ``EventValidationError`` unless events may carry this producer id."""
    check_text("producer_id", producer_id, required=True)


def validate_record(
    full_name: str,
    record: Record,
    *,
    now: datetime | None = None,
    max_future_skew: timedelta = MAX_FUTURE_SKEW,
) -> None:
    """Validate an event in its Avro record shape (as encoded, or as just decoded).

    Returns ``None`` or raises ``EventValidationError`` naming the first bad field.
    """
    latest = (now or utc_now()) + max_future_skew
    if full_name == ACCESS_SCHEMA_NAME:
        _validate_access(record, latest)
    elif full_name == RELAY_SCHEMA_NAME:
        _validate_relay(record, latest)
    elif full_name == AUDIT_LOG_USED_SCHEMA_NAME:
        _validate_audit_log_used(record, latest)
    elif full_name == SECURITY_SCHEMA_NAME:
        _validate_security(record, latest)
    else:
        raise EventValidationError(f"no event type for schema {full_name}", field="<event>")


def _validate_access(record: Record, latest: datetime) -> None:
    check_envelope(record, latest, "actor")
    patient = optional_record(record, "patient")
    if patient is not None:
        check_patient(patient)
    dicom_event_id = record.get("dicom_event_id")
    if dicom_event_id not in DICOM_EVENT_IDS:
        raise fail("dicom_event_id", f"{dicom_event_id!r} is not a DICOM PS3.15 EventID (1101xx)")
    disclosed = check_disclosed_patients(
        record.get("disclosed"), record.get("disclosed_truncated"), record.get("disclosed_total")
    )
    if patient is None and not disclosed and dicom_event_id != QUERY_EVENT_ID:
        raise fail(
            "patient",
            f"is required unless the event discloses patients or is a Query ({QUERY_EVENT_ID})",
        )
    check_event_type_code(record.get("event_type_code"))
    check_symbol("action", record.get("action"), EventAction)
    check_symbol("outcome", record.get("outcome"), EventOutcome)
    study = optional_record(record, "study")
    if study is not None:
        check_study("study", study)
    check_network_address(record.get("network_address"))
    check_purpose_of_use(record.get("purpose_of_use"))
    recipient = optional_record(record, "recipient")
    if recipient is not None:
        check_text("recipient.name", recipient.get("name"), required=True)
        check_text(
            "recipient.address", recipient.get("address"), required=False, limit=MAX_TEXT_CHARS
        )
        check_text("recipient.organization", recipient.get("organization"), required=False)
    check_details(record.get("details"))
    check_transport(record.get("transport"))


def _common(record: Record, latest: datetime, actor_path: str) -> None:
    check_envelope(record, latest, actor_path)
    check_patient(required_record(record, "patient"))


def _validate_relay(record: Record, latest: datetime) -> None:
    _common(record, latest, "sender")
    check_symbol("category", record.get("category"), AcrCategory)
    check_text("finding", record.get("finding"), required=False, limit=MAX_TEXT_CHARS)
    study = required_record(record, "study")
    check_study("study", study)
    _relay_times(record, latest)
    recipient = required_record(record, "recipient")
    check_text("recipient.name", recipient.get("name"), required=True)
    check_text("recipient.role", recipient.get("role"), required=True)
    check_npi("recipient.npi", recipient.get("npi"))
    check_symbol("method", record.get("method"), RelayMethod)
    if not isinstance(record.get("read_back"), bool):
        raise fail("read_back", "must be a bool")
    _relay_attempts(record.get("attempts"), latest)


def _relay_times(record: Record, latest: datetime) -> None:
    """Identified, then communicated, then acknowledged (the last two optional)."""
    identified = record.get("identified_at")
    communicated = record.get("communicated_at")
    acknowledged = record.get("acknowledged_at")
    check_time("identified_at", identified, latest=latest)
    check_time("communicated_at", communicated, latest=latest, required=False)
    check_time("acknowledged_at", acknowledged, latest=latest, required=False)
    if (
        isinstance(identified, datetime)
        and isinstance(communicated, datetime)
        and communicated < identified
    ):
        raise fail("communicated_at", "is before identified_at")
    if acknowledged is not None:
        if not isinstance(communicated, datetime):
            raise fail("acknowledged_at", "is set but communicated_at is not")
        if isinstance(acknowledged, datetime) and acknowledged < communicated:
            raise fail("acknowledged_at", "is before communicated_at")


def _relay_attempts(raw: object, latest: datetime) -> None:
    attempts = raw or []
    if not isinstance(attempts, list | tuple):
        raise fail("attempts", "must be a list")
    for i, attempt in enumerate(attempts):
        if not isinstance(attempt, dict):
            raise fail(f"attempts[{i}]", "must be a record")
        check_time(f"attempts[{i}].at", attempt.get("at"), latest=latest)
        check_symbol(f"attempts[{i}].method", attempt.get("method"), RelayMethod)
        check_symbol(f"attempts[{i}].outcome", attempt.get("outcome"), AttemptOutcome)
        check_text(f"attempts[{i}].note", attempt.get("note"), required=False, limit=MAX_TEXT_CHARS)


def _validate_audit_log_used(record: Record, latest: datetime) -> None:
    check_envelope(record, latest, "actor")
    check_symbol("outcome", record.get("outcome"), EventOutcome)
    check_network_address(record.get("network_address"))
    _query_fields(required_record(record, "query"))
    patient = optional_record(record, "patient")
    if patient is not None:
        check_patient(patient)
    _disclosed_fields(record.get("disclosed"), record.get("disclosed_coarsened"))


def _query_fields(query: Record) -> None:
    """What the caller asked the ledger's API: method, path, status, results, parameters."""
    method = query.get("method")
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise fail("query.method", f"{method!r} is not an upper-case HTTP method token")
    path = query.get("path")
    check_text("query.path", path, required=True, limit=MAX_TEXT_CHARS)
    if not isinstance(path, str) or not path.startswith("/"):
        raise fail("query.path", "must be an absolute request path")
    status = query.get("status")
    if type(status) is not int or not 100 <= status <= 599:
        raise fail("query.status", "must be an HTTP status code")
    results = query.get("results")
    if results is not None and not (type(results) is int and 0 <= results < 2**31):
        raise fail("query.results", "must be between 0 and 2^31-1")
    parameters = query.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise fail("query.parameters", "must be a map")
    if len(parameters) > MAX_DETAILS:
        raise fail("query.parameters", f"has {len(parameters)} entries; at most {MAX_DETAILS}")
    for key, value in parameters.items():
        check_text(f"query.parameters[{key!r}]", key, required=True)
        check_text(f"query.parameters[{key!r}]", value, required=False, limit=MAX_TEXT_CHARS)


def _disclosed_fields(logs: object, coarsened: object) -> None:
    """Schema v2's ``disclosed`` (absent in v1): canonical ranges, so that the ledger's
    projection of a read is exactly what the event says (docs/read-attribution.md)."""
    if coarsened is not None and type(coarsened) is not bool:
        raise fail("disclosed_coarsened", "must be a boolean")
    if logs is None:
        return
    if not isinstance(logs, list):
        raise fail("disclosed", "must be a list")
    count, previous_log = 0, None
    for i, entry in enumerate(logs):
        if not isinstance(entry, Mapping):
            raise fail(f"disclosed[{i}]", "must be a record")
        log, ranges = entry.get("log"), entry.get("ranges")
        check_text(f"disclosed[{i}].log", log, required=True)
        if previous_log is not None and not previous_log < cast(str, log):
            raise fail(f"disclosed[{i}].log", "logs must be sorted and each named once")
        previous_log = cast(str, log)
        if not isinstance(ranges, list) or not ranges:
            raise fail(f"disclosed[{i}].ranges", "must be a non-empty list")
        count += len(ranges)
        if count > MAX_DISCLOSED_RANGES:
            raise fail("disclosed", f"has more than {MAX_DISCLOSED_RANGES} ranges")
        _disclosed_ranges(i, ranges)


def _disclosed_ranges(i: int, ranges: list[object]) -> None:
    """One log's ranges: integers, sorted, neither overlapping nor adjacent."""
    last_end = -1
    for j, r in enumerate(ranges):
        start = r.get("start") if isinstance(r, Mapping) else None
        end = r.get("end") if isinstance(r, Mapping) else None
        if type(start) is not int or type(end) is not int:
            raise fail(f"disclosed[{i}].ranges[{j}]", "must have integer start and end")
        if not 0 <= start < end <= MAX_LEAF_END:
            raise fail(f"disclosed[{i}].ranges[{j}]", "must have 0 <= start < end <= 2^62")
        if start <= last_end:
            raise fail(
                f"disclosed[{i}].ranges[{j}]",
                "ranges must be sorted, neither overlapping nor adjacent (coalesced)",
            )
        last_end = end


def _validate_security(record: Record, latest: datetime) -> None:
    check_envelope(record, latest, "actor")
    dicom_event_id = record.get("dicom_event_id")
    if dicom_event_id not in SECURITY_EVENT_IDS:
        allowed = ", ".join(
            f"{code} {DICOM_EVENT_IDS[code]}" for code in sorted(SECURITY_EVENT_IDS)
        )
        raise fail("dicom_event_id", f"{dicom_event_id!r} is not a security EventID ({allowed})")
    check_event_type_code(record.get("event_type_code"))
    check_symbol("action", record.get("action"), EventAction)
    check_symbol("outcome", record.get("outcome"), EventOutcome)
    check_network_address(record.get("network_address"))
    patient = optional_record(record, "patient")
    if patient is not None:
        check_patient(patient)
    check_purpose_of_use(record.get("purpose_of_use"))
    check_details(record.get("details"))
