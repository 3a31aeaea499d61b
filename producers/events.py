"""Typed audit events, as a PACS integration builds them.

Invariant: an event value is immutable, every datetime in it is timezone-aware
UTC, and ``validate()`` either returns ``None`` or raises ``EventValidationError``
naming the first bad field by its dotted path (``patient.id``, ``actor.npi``).
The field rules are defined once, on the Avro record shape (``validate_record``):
``validate(event)`` applies them to ``to_record(event)``, and the consumer applies
them to the record it decoded, so producer and ledger accept exactly the same events.
Converting to and from Avro records (``to_record`` / ``codec.from_record``) is lossless.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Final, cast

from producers.errors import EventValidationError
from producers.netaddr import is_network_address
from schemas import dicom

#: DICOM PS3.15 A.5 EventIDs (code system DCM) that a PHI access event may carry.
DICOM_EVENT_IDS: Final[Mapping[str, str]] = dicom.EVENT_IDS
#: The EventIDs a ``SecurityEvent`` may carry: Application Activity (110100), Network Entry
#: (110108), Security Alert (110113) and User Authentication (110114).
SECURITY_EVENT_IDS: Final[frozenset[str]] = dicom.SECURITY_EVENT_IDS

#: HL7 v3 PurposeOfUse codes accepted in ``purpose_of_use``.
PURPOSES_OF_USE: Final[frozenset[str]] = frozenset(
    {
        "TREAT",
        "ETREAT",
        "HPAYMT",
        "HOPERAT",
        "PUBHLTH",
        "HRESCH",
        "LEGAL",
        "PATRQT",
        "FAMRQT",
        "PWATRNY",
        "SYSADMN",
        "HSYSADMIN",
        "COC",
        "HMARKT",
        "OVERSIGHT",
        "DISASTER",
        "THREAT",
        "CLINTRCH",
        "HQUALIMP",
        "HPRGRP",
        "BTG",
    }
)

_NPI = re.compile(r"\d{10}")
_STATE = re.compile(r"[A-Z]{2}")
_DICOM_UID = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")

#: Longest string accepted in any identifier field, in characters.
MAX_ID_CHARS: Final = 256
#: Longest free-text field, in characters.
MAX_TEXT_CHARS: Final = 1024
#: Most entries in ``details``.
MAX_DETAILS: Final = 64
#: How far in the future an event time may be, to tolerate clock skew.
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)
#: Oldest event time accepted (no PACS predates this).
MIN_EVENT_TIME: Final = datetime(1990, 1, 1, tzinfo=UTC)


class EventAction(StrEnum):
    """DICOM EventActionCode."""

    CREATE = "C"
    READ = "R"
    UPDATE = "U"
    DELETE = "D"
    EXECUTE = "E"


class EventOutcome(StrEnum):
    """DICOM EventOutcomeIndicator (0, 4, 8, 12)."""

    SUCCESS = "SUCCESS"
    MINOR_FAILURE = "MINOR_FAILURE"
    SERIOUS_FAILURE = "SERIOUS_FAILURE"
    MAJOR_FAILURE = "MAJOR_FAILURE"


class AcrCategory(StrEnum):
    """ACR actionable-finding category."""

    CAT1 = "CAT1"
    CAT2 = "CAT2"
    CAT3 = "CAT3"


class RelayMethod(StrEnum):
    PHONE = "PHONE"
    IN_PERSON = "IN_PERSON"
    ELECTRONIC = "ELECTRONIC"


class AttemptOutcome(StrEnum):
    REACHED = "REACHED"
    NO_ANSWER = "NO_ANSWER"
    LEFT_MESSAGE = "LEFT_MESSAGE"
    WRONG_CONTACT = "WRONG_CONTACT"
    ESCALATED = "ESCALATED"


@dataclass(frozen=True, slots=True, kw_only=True)
class Facility:
    id: str
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    user_id: str
    role: str
    name: str | None = None
    organization: str | None = None
    npi: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Patient:
    id: str
    issuer: str | None = None
    state: str | None = None

    @property
    def key(self) -> str:
        """The Kafka message key: one patient's events stay in one partition, in order."""
        return f"{self.issuer or ''}|{self.id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Study:
    uid: str
    accession: str | None = None
    modality: str | None = None
    sop_classes: tuple[str, ...] = ()
    instances: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipient:
    name: str
    address: str | None = None
    organization: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayRecipient:
    name: str
    role: str
    npi: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayAttempt:
    at: datetime
    method: RelayMethod
    outcome: AttemptOutcome
    note: str | None = None


def new_event_id() -> uuid.UUID:
    """A fresh random event id."""
    return uuid.uuid4()


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class PhiAccessEvent:
    """One access to PHI (schema ``philedger.audit.PhiAccessEvent``).

    ``producer_id`` and ``producer_seq`` are stamped by the emitter when left unset.
    """

    facility: Facility
    actor: Actor
    dicom_event_id: str
    action: EventAction
    patient: Patient
    outcome: EventOutcome = EventOutcome.SUCCESS
    event_type_code: str | None = None
    study: Study | None = None
    network_address: str | None = None
    purpose_of_use: str | None = None
    recipient: Recipient | None = None
    details: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    event_id: uuid.UUID = field(default_factory=new_event_id)
    event_time: datetime = field(default_factory=utc_now)
    producer_id: str | None = None
    producer_seq: int | None = None

    def stamped(self, *, producer_id: str, producer_seq: int) -> PhiAccessEvent:
        return replace(self, producer_id=producer_id, producer_seq=producer_seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class CriticalResultRelay:
    """One documented critical-result relay (schema ``philedger.audit.CriticalResultRelay``)."""

    facility: Facility
    category: AcrCategory
    patient: Patient
    study: Study
    identified_at: datetime
    sender: Actor
    recipient: RelayRecipient
    method: RelayMethod
    read_back: bool
    finding: str | None = None
    communicated_at: datetime | None = None
    acknowledged_at: datetime | None = None
    attempts: tuple[RelayAttempt, ...] = ()
    event_id: uuid.UUID = field(default_factory=new_event_id)
    event_time: datetime = field(default_factory=utc_now)
    producer_id: str | None = None
    producer_seq: int | None = None

    def stamped(self, *, producer_id: str, producer_seq: int) -> CriticalResultRelay:
        return replace(self, producer_id=producer_id, producer_seq=producer_seq)


@dataclass(frozen=True, slots=True, kw_only=True)
class LedgerQuery:
    """What a caller asked the ledger's API (DICOM ParticipantObjectQuery)."""

    method: str
    path: str
    status: int
    parameters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    results: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class DisclosedRange:
    """Entries ``start`` (inclusive) to ``end`` (exclusive) of the Merkle log ``log``
    (its checkpoint origin) that a read of the ledger returned."""

    log: str
    start: int
    end: int


#: Most disclosed ranges one AuditLogUsed event may carry.
MAX_DISCLOSED_RANGES: Final = 1000
_MAX_LEAF_END: Final = 1 << 62


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditLogUsed:
    """One read of the audit ledger itself (schema ``philedger.audit.AuditLogUsed``,
    DICOM EventID 110101 Audit Log Used)."""

    facility: Facility
    actor: Actor
    query: LedgerQuery
    outcome: EventOutcome = EventOutcome.SUCCESS
    network_address: str | None = None
    patient: Patient | None = None
    #: The ledger entries the answer returned: canonical (sorted by log and start, neither
    #: overlapping nor adjacent), at most ``MAX_DISCLOSED_RANGES`` (schema v2).
    disclosed: tuple[DisclosedRange, ...] = ()
    #: The ranges were widened to one covering range per log (more than fit).
    disclosed_coarsened: bool = False
    event_id: uuid.UUID = field(default_factory=new_event_id)
    event_time: datetime = field(default_factory=utc_now)
    producer_id: str | None = None
    producer_seq: int | None = None

    def stamped(self, *, producer_id: str, producer_seq: int) -> AuditLogUsed:
        return replace(self, producer_id=producer_id, producer_seq=producer_seq)

    @property
    def key(self) -> str:
        """Kafka key: the patient's when the read named one, else the caller's."""
        return self.patient.key if self.patient is not None else f"user|{self.actor.user_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class SecurityEvent:
    """One security event (schema ``philedger.audit.SecurityEvent``): a user logged in or
    out (or failed to), started or stopped an emergency override, an application started
    or stopped, a security alert. DICOM EventIDs ``SECURITY_EVENT_IDS``; the patient is
    optional (an emergency override names one, a login does not).

    ``producer_id`` and ``producer_seq`` are stamped by the emitter when left unset.
    """

    facility: Facility
    actor: Actor
    dicom_event_id: str
    action: EventAction = EventAction.EXECUTE
    outcome: EventOutcome = EventOutcome.SUCCESS
    event_type_code: str | None = None
    network_address: str | None = None
    patient: Patient | None = None
    purpose_of_use: str | None = None
    details: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    event_id: uuid.UUID = field(default_factory=new_event_id)
    event_time: datetime = field(default_factory=utc_now)
    producer_id: str | None = None
    producer_seq: int | None = None

    def stamped(self, *, producer_id: str, producer_seq: int) -> SecurityEvent:
        return replace(self, producer_id=producer_id, producer_seq=producer_seq)

    @property
    def key(self) -> str:
        """Kafka key: the patient's when the event names one, else the user's."""
        return self.patient.key if self.patient is not None else f"user|{self.actor.user_id}"


AuditEvent = PhiAccessEvent | CriticalResultRelay | AuditLogUsed | SecurityEvent


def event_key(event: AuditEvent) -> str:
    """The Kafka message key of an event: one patient's events stay in one partition (an
    event that names no patient is keyed by its user, ``user|<user id>``)."""
    if isinstance(event, AuditLogUsed | SecurityEvent):
        return event.key
    return event.patient.key


# --------------------------------------------------------------------------- Avro records

#: Avro record types are plain dicts; the alias keeps signatures honest.
Record = dict[str, object]

ACCESS_SCHEMA_NAME: Final = "philedger.audit.PhiAccessEvent"
RELAY_SCHEMA_NAME: Final = "philedger.audit.CriticalResultRelay"


AUDIT_LOG_USED_SCHEMA_NAME: Final = "philedger.audit.AuditLogUsed"
SECURITY_SCHEMA_NAME: Final = "philedger.audit.SecurityEvent"


def schema_name(event: AuditEvent) -> str:
    """The Avro full name of the event's record type."""
    if isinstance(event, PhiAccessEvent):
        return ACCESS_SCHEMA_NAME
    if isinstance(event, CriticalResultRelay):
        return RELAY_SCHEMA_NAME
    if isinstance(event, SecurityEvent):
        return SECURITY_SCHEMA_NAME
    return AUDIT_LOG_USED_SCHEMA_NAME


def _actor(a: Actor) -> Record:
    return {
        "user_id": a.user_id,
        "name": a.name,
        "role": a.role,
        "organization": a.organization,
        "npi": a.npi,
    }


def _patient(p: Patient) -> Record:
    return {"id": p.id, "issuer": p.issuer, "state": p.state}


def _study(s: Study) -> Record:
    return {
        "uid": s.uid,
        "accession": s.accession,
        "modality": s.modality,
        "sop_classes": list(s.sop_classes),
        "instances": s.instances,
    }


def _disclosed(ranges: tuple[DisclosedRange, ...]) -> list[Record]:
    by_log: dict[str, list[Record]] = {}
    for r in ranges:
        by_log.setdefault(r.log, []).append({"start": r.start, "end": r.end})
    return [{"log": log, "ranges": items} for log, items in by_log.items()]


def to_record(event: AuditEvent) -> Record:
    """The Avro record (plain dict) for an event."""
    if isinstance(event, AuditLogUsed):
        q = event.query
        return {
            "event_id": event.event_id,
            "event_time": event.event_time,
            "producer_id": event.producer_id,
            "producer_seq": event.producer_seq,
            "facility": {"id": event.facility.id, "name": event.facility.name},
            "actor": _actor(event.actor),
            "outcome": event.outcome.value,
            "network_address": event.network_address,
            "query": {
                "method": q.method,
                "path": q.path,
                "parameters": dict(q.parameters),
                "status": q.status,
                "results": q.results,
            },
            "patient": None if event.patient is None else _patient(event.patient),
            "disclosed": _disclosed(event.disclosed),
            "disclosed_coarsened": event.disclosed_coarsened,
        }
    if isinstance(event, SecurityEvent):
        return {
            "event_id": event.event_id,
            "event_time": event.event_time,
            "producer_id": event.producer_id,
            "producer_seq": event.producer_seq,
            "facility": {"id": event.facility.id, "name": event.facility.name},
            "actor": _actor(event.actor),
            "dicom_event_id": event.dicom_event_id,
            "event_type_code": event.event_type_code,
            "action": event.action.value,
            "outcome": event.outcome.value,
            "network_address": event.network_address,
            "patient": None if event.patient is None else _patient(event.patient),
            "purpose_of_use": event.purpose_of_use,
            "details": dict(event.details),
        }
    common: Record = {
        "event_id": event.event_id,
        "event_time": event.event_time,
        "producer_id": event.producer_id,
        "producer_seq": event.producer_seq,
        "facility": {"id": event.facility.id, "name": event.facility.name},
        "patient": _patient(event.patient),
    }
    if isinstance(event, PhiAccessEvent):
        return common | {
            "actor": _actor(event.actor),
            "dicom_event_id": event.dicom_event_id,
            "event_type_code": event.event_type_code,
            "action": event.action.value,
            "outcome": event.outcome.value,
            "study": None if event.study is None else _study(event.study),
            "network_address": event.network_address,
            "purpose_of_use": event.purpose_of_use,
            "recipient": None
            if event.recipient is None
            else {
                "name": event.recipient.name,
                "address": event.recipient.address,
                "organization": event.recipient.organization,
            },
            "details": dict(event.details),
        }
    return common | {
        "category": event.category.value,
        "finding": event.finding,
        "study": _study(event.study),
        "identified_at": event.identified_at,
        "communicated_at": event.communicated_at,
        "acknowledged_at": event.acknowledged_at,
        "sender": _actor(event.sender),
        "recipient": {
            "name": event.recipient.name,
            "role": event.recipient.role,
            "npi": event.recipient.npi,
        },
        "method": event.method.value,
        "read_back": event.read_back,
        "attempts": [
            {"at": a.at, "method": a.method.value, "outcome": a.outcome.value, "note": a.note}
            for a in event.attempts
        ],
    }


# --------------------------------------------------------------------------- validation
#
# One set of field rules, applied to the Avro record shape: the producer validates the
# record it is about to encode, the consumer the record it just decoded, so both sides
# enforce exactly the same rules without building an intermediate event on the hot path.


def _fail(path: str, problem: str) -> EventValidationError:
    return EventValidationError(f"{path}: {problem}", field=path)


def _text(path: str, value: object, *, required: bool, limit: int = MAX_ID_CHARS) -> None:
    # Fast path (the consumer validates every field of every record): a short, non-blank
    # ASCII string without NUL passes every check below.
    if (
        type(value) is str
        and 0 < len(value) <= limit
        and value.isascii()
        and "\x00" not in value
        and not value.isspace()
    ):
        return
    if value is None:
        if required:
            raise _fail(path, "is required")
        return
    if not isinstance(value, str):
        raise _fail(path, f"must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise _fail(path, "must not be empty")
    if len(value) > limit:
        raise _fail(path, f"is {len(value)} characters long; at most {limit} are allowed")
    if "\x00" in value:
        raise _fail(path, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _fail(path, "is not valid Unicode text (lone surrogate)") from exc


def _network_address(value: object) -> None:
    """Absent, or an IP address or host name (DICOM NetworkAccessPointID types 1, 2)."""
    _text("network_address", value, required=False)
    if isinstance(value, str) and not is_network_address(value):
        raise _fail("network_address", f"{value[:80]!r} is not an IP address or a host name")


def _time(path: str, value: object, *, latest: datetime, required: bool = True) -> None:
    if value is None:
        if required:
            raise _fail(path, "is required")
        return
    if not isinstance(value, datetime):
        raise _fail(path, "must be a datetime")
    if value.tzinfo is None or value.utcoffset() is None:
        raise _fail(path, "must be timezone-aware (UTC)")
    if value < MIN_EVENT_TIME:
        raise _fail(path, f"{value.isoformat()} is before {MIN_EVENT_TIME.date()}")
    if value > latest:
        raise _fail(path, f"{value.isoformat()} is in the future beyond the allowed clock skew")


def _npi(path: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _NPI.fullmatch(value) or not npi_checksum_ok(value):
        raise _fail(path, f"{value!r} is not a valid 10-digit NPI (Luhn check digit)")


@functools.lru_cache(maxsize=65_536)
def npi_checksum_ok(npi: str) -> bool:
    """NPI check digit: Luhn over the prefix 80840 followed by the first nine digits."""
    digits = [int(c) for c in "80840" + npi[:9]]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return (10 - total % 10) % 10 == int(npi[9])


def _symbol(path: str, value: object, kind: type[StrEnum]) -> None:
    if value not in _SYMBOLS[kind]:
        allowed = ", ".join(member.value for member in kind)
        raise _fail(path, f"must be a {kind.__name__} ({allowed}), not {value!r}")


def _enum(path: str, value: object, kind: type[StrEnum]) -> None:
    if not isinstance(value, kind):
        allowed = ", ".join(member.value for member in kind)
        raise _fail(path, f"must be a {kind.__name__} ({allowed}), not {value!r}")


_SYMBOLS: Final[Mapping[type[StrEnum], frozenset[str]]] = {
    kind: frozenset(member.value for member in kind)
    for kind in (EventAction, EventOutcome, AcrCategory, RelayMethod, AttemptOutcome)
}


def _opt(record: Record, key: str) -> Record | None:
    value = record.get(key)
    if value is not None and not isinstance(value, dict):
        raise _fail(key, "must be a record")
    return value


def _req(record: Record, key: str) -> Record:
    value = _opt(record, key)
    if value is None:
        raise _fail(key, "is required")
    return value


def _common(record: Record, latest: datetime, actor_path: str) -> None:
    _envelope(record, latest, actor_path)
    _patient_fields(_req(record, "patient"))


def _envelope(record: Record, latest: datetime, actor_path: str) -> None:
    """Identity, time, producer, facility and the acting user: every event has them."""
    if not isinstance(record.get("event_id"), uuid.UUID):
        raise _fail("event_id", "must be a UUID")
    _time("event_time", record.get("event_time"), latest=latest)
    _text("producer_id", record.get("producer_id"), required=True)
    seq = record.get("producer_seq")
    if type(seq) is not int or seq < 0:
        raise _fail("producer_seq", "must be a non-negative integer")
    if seq >= 2**63:
        raise _fail("producer_seq", "must fit in a signed 64-bit integer")
    facility = _req(record, "facility")
    _text("facility.id", facility.get("id"), required=True)
    _text("facility.name", facility.get("name"), required=False)
    actor = _req(record, actor_path)
    _text(f"{actor_path}.user_id", actor.get("user_id"), required=True)
    _text(f"{actor_path}.role", actor.get("role"), required=True)
    _text(f"{actor_path}.name", actor.get("name"), required=False)
    _text(f"{actor_path}.organization", actor.get("organization"), required=False)
    _npi(f"{actor_path}.npi", actor.get("npi"))


def _patient_fields(patient: Record) -> None:
    _text("patient.id", patient.get("id"), required=True)
    _text("patient.issuer", patient.get("issuer"), required=False)
    state = patient.get("state")
    if state is not None and not (isinstance(state, str) and _STATE.fullmatch(state)):
        raise _fail("patient.state", f"{state!r} is not a two-letter state code")


def _study_fields(path: str, study: Record) -> None:
    uid = study.get("uid")
    _text(f"{path}.uid", uid, required=True, limit=64)
    if not _DICOM_UID.fullmatch(str(uid)):
        raise _fail(f"{path}.uid", f"{uid!r} is not a DICOM UID (digits and dots)")
    _text(f"{path}.accession", study.get("accession"), required=False, limit=64)
    _text(f"{path}.modality", study.get("modality"), required=False, limit=16)
    sops = study.get("sop_classes") or []
    if not isinstance(sops, list | tuple):
        raise _fail(f"{path}.sop_classes", "must be a list")
    for i, sop in enumerate(sops):
        _text(f"{path}.sop_classes[{i}]", sop, required=True, limit=64)
    instances = study.get("instances")
    if instances is not None and not (type(instances) is int and 0 <= instances < 2**31):
        raise _fail(f"{path}.instances", "must be between 0 and 2^31-1")


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
    if isinstance(event, PhiAccessEvent):
        _enum("action", event.action, EventAction)
        _enum("outcome", event.outcome, EventOutcome)
    elif isinstance(event, CriticalResultRelay):
        _enum("category", event.category, AcrCategory)
        _enum("method", event.method, RelayMethod)
        for i, attempt in enumerate(event.attempts):
            _enum(f"attempts[{i}].method", attempt.method, RelayMethod)
            _enum(f"attempts[{i}].outcome", attempt.outcome, AttemptOutcome)
    elif isinstance(event, AuditLogUsed):
        _enum("outcome", event.outcome, EventOutcome)
    elif isinstance(event, SecurityEvent):
        _enum("action", event.action, EventAction)
        _enum("outcome", event.outcome, EventOutcome)
    else:
        raise EventValidationError(
            f"unsupported event type {type(event).__name__}", field="<event>"
        )
    record = to_record(event)
    if stamp is not None:
        record["producer_id"], record["producer_seq"] = stamp
    validate_record(schema_name(event), record, now=now)
    return record


def check_producer_id(producer_id: str) -> None:
    """Raise ``EventValidationError`` unless events may carry this producer id."""
    _text("producer_id", producer_id, required=True)


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
    _common(record, latest, "actor")
    dicom_event_id = record.get("dicom_event_id")
    if dicom_event_id not in DICOM_EVENT_IDS:
        raise _fail("dicom_event_id", f"{dicom_event_id!r} is not a DICOM PS3.15 EventID (1101xx)")
    _event_type_code(record.get("event_type_code"))
    _symbol("action", record.get("action"), EventAction)
    _symbol("outcome", record.get("outcome"), EventOutcome)
    study = _opt(record, "study")
    if study is not None:
        _study_fields("study", study)
    _network_address(record.get("network_address"))
    _purpose_of_use(record.get("purpose_of_use"))
    recipient = _opt(record, "recipient")
    if recipient is not None:
        _text("recipient.name", recipient.get("name"), required=True)
        _text("recipient.address", recipient.get("address"), required=False, limit=MAX_TEXT_CHARS)
        _text("recipient.organization", recipient.get("organization"), required=False)
    _details(record.get("details"))


def _event_type_code(code: object) -> None:
    if code is not None and not (isinstance(code, str) and _CODE.fullmatch(code)):
        raise _fail("event_type_code", f"{code!r} is not a code")


def _purpose_of_use(purpose: object) -> None:
    if purpose is not None and purpose not in PURPOSES_OF_USE:
        raise _fail("purpose_of_use", f"{purpose!r} is not an HL7 PurposeOfUse code")


def _details(raw: object) -> None:
    details = raw or {}
    if not isinstance(details, Mapping):
        raise _fail("details", "must be a map")
    if len(details) > MAX_DETAILS:
        raise _fail("details", f"has {len(details)} entries; at most {MAX_DETAILS}")
    for key, value in details.items():
        _text(f"details[{key!r}]", key, required=True)
        _text(f"details[{key!r}]", value, required=False, limit=MAX_TEXT_CHARS)


def _validate_relay(record: Record, latest: datetime) -> None:
    _common(record, latest, "sender")
    _symbol("category", record.get("category"), AcrCategory)
    _text("finding", record.get("finding"), required=False, limit=MAX_TEXT_CHARS)
    study = _req(record, "study")
    _study_fields("study", study)
    identified = record.get("identified_at")
    communicated = record.get("communicated_at")
    acknowledged = record.get("acknowledged_at")
    _time("identified_at", identified, latest=latest)
    _time("communicated_at", communicated, latest=latest, required=False)
    _time("acknowledged_at", acknowledged, latest=latest, required=False)
    if (
        isinstance(identified, datetime)
        and isinstance(communicated, datetime)
        and communicated < identified
    ):
        raise _fail("communicated_at", "is before identified_at")
    if acknowledged is not None:
        if not isinstance(communicated, datetime):
            raise _fail("acknowledged_at", "is set but communicated_at is not")
        if isinstance(acknowledged, datetime) and acknowledged < communicated:
            raise _fail("acknowledged_at", "is before communicated_at")
    recipient = _req(record, "recipient")
    _text("recipient.name", recipient.get("name"), required=True)
    _text("recipient.role", recipient.get("role"), required=True)
    _npi("recipient.npi", recipient.get("npi"))
    _symbol("method", record.get("method"), RelayMethod)
    if not isinstance(record.get("read_back"), bool):
        raise _fail("read_back", "must be a bool")
    attempts = record.get("attempts") or []
    if not isinstance(attempts, list | tuple):
        raise _fail("attempts", "must be a list")
    for i, attempt in enumerate(attempts):
        if not isinstance(attempt, dict):
            raise _fail(f"attempts[{i}]", "must be a record")
        _time(f"attempts[{i}].at", attempt.get("at"), latest=latest)
        _symbol(f"attempts[{i}].method", attempt.get("method"), RelayMethod)
        _symbol(f"attempts[{i}].outcome", attempt.get("outcome"), AttemptOutcome)
        _text(f"attempts[{i}].note", attempt.get("note"), required=False, limit=MAX_TEXT_CHARS)


#: An HTTP method token as recorded (the API records every method a caller tried).
_METHOD = re.compile(r"[A-Z]{1,16}")


def _validate_audit_log_used(record: Record, latest: datetime) -> None:
    _envelope(record, latest, "actor")
    _symbol("outcome", record.get("outcome"), EventOutcome)
    _network_address(record.get("network_address"))
    query = _req(record, "query")
    method = query.get("method")
    if not isinstance(method, str) or not _METHOD.fullmatch(method):
        raise _fail("query.method", f"{method!r} is not an upper-case HTTP method token")
    path = query.get("path")
    _text("query.path", path, required=True, limit=MAX_TEXT_CHARS)
    if not isinstance(path, str) or not path.startswith("/"):
        raise _fail("query.path", "must be an absolute request path")
    status = query.get("status")
    if type(status) is not int or not 100 <= status <= 599:
        raise _fail("query.status", "must be an HTTP status code")
    results = query.get("results")
    if results is not None and not (type(results) is int and 0 <= results < 2**31):
        raise _fail("query.results", "must be between 0 and 2^31-1")
    parameters = query.get("parameters") or {}
    if not isinstance(parameters, Mapping):
        raise _fail("query.parameters", "must be a map")
    if len(parameters) > MAX_DETAILS:
        raise _fail("query.parameters", f"has {len(parameters)} entries; at most {MAX_DETAILS}")
    for key, value in parameters.items():
        _text(f"query.parameters[{key!r}]", key, required=True)
        _text(f"query.parameters[{key!r}]", value, required=False, limit=MAX_TEXT_CHARS)
    patient = _opt(record, "patient")
    if patient is not None:
        _patient_fields(patient)
    _disclosed_fields(record.get("disclosed"), record.get("disclosed_coarsened"))


def _disclosed_fields(logs: object, coarsened: object) -> None:
    """Schema v2's ``disclosed`` (absent in v1): canonical ranges, so that the ledger's
    projection of a read is exactly what the event says (docs/read-attribution.md)."""
    if coarsened is not None and type(coarsened) is not bool:
        raise _fail("disclosed_coarsened", "must be a boolean")
    if logs is None:
        return
    if not isinstance(logs, list):
        raise _fail("disclosed", "must be a list")
    count, previous_log = 0, None
    for i, entry in enumerate(logs):
        if not isinstance(entry, Mapping):
            raise _fail(f"disclosed[{i}]", "must be a record")
        log, ranges = entry.get("log"), entry.get("ranges")
        _text(f"disclosed[{i}].log", log, required=True)
        if previous_log is not None and not previous_log < cast(str, log):
            raise _fail(f"disclosed[{i}].log", "logs must be sorted and each named once")
        previous_log = cast(str, log)
        if not isinstance(ranges, list) or not ranges:
            raise _fail(f"disclosed[{i}].ranges", "must be a non-empty list")
        count += len(ranges)
        if count > MAX_DISCLOSED_RANGES:
            raise _fail("disclosed", f"has more than {MAX_DISCLOSED_RANGES} ranges")
        last_end = -1
        for j, r in enumerate(ranges):
            start = r.get("start") if isinstance(r, Mapping) else None
            end = r.get("end") if isinstance(r, Mapping) else None
            if type(start) is not int or type(end) is not int:
                raise _fail(f"disclosed[{i}].ranges[{j}]", "must have integer start and end")
            if not 0 <= start < end <= _MAX_LEAF_END:
                raise _fail(f"disclosed[{i}].ranges[{j}]", "must have 0 <= start < end <= 2^62")
            if start <= last_end:
                raise _fail(
                    f"disclosed[{i}].ranges[{j}]",
                    "ranges must be sorted, neither overlapping nor adjacent (coalesced)",
                )
            last_end = end


def _validate_security(record: Record, latest: datetime) -> None:
    _envelope(record, latest, "actor")
    dicom_event_id = record.get("dicom_event_id")
    if dicom_event_id not in SECURITY_EVENT_IDS:
        allowed = ", ".join(
            f"{code} {DICOM_EVENT_IDS[code]}" for code in sorted(SECURITY_EVENT_IDS)
        )
        raise _fail("dicom_event_id", f"{dicom_event_id!r} is not a security EventID ({allowed})")
    _event_type_code(record.get("event_type_code"))
    _symbol("action", record.get("action"), EventAction)
    _symbol("outcome", record.get("outcome"), EventOutcome)
    _network_address(record.get("network_address"))
    patient = _opt(record, "patient")
    if patient is not None:
        _patient_fields(patient)
    _purpose_of_use(record.get("purpose_of_use"))
    _details(record.get("details"))
