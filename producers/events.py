"""Typed audit events, as a PACS integration builds them.

Invariant: an event value is immutable, every datetime in it is timezone-aware
UTC, and ``validate()`` either returns ``None`` or raises ``EventValidationError``
naming the first bad field by its dotted path (``patient.id``, ``actor.npi``).
Converting to and from Avro records (``to_record`` / ``from_record``) is lossless.
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
from typing import Final

from producers.errors import EventValidationError
from schemas import dicom

#: DICOM PS3.15 A.5 EventIDs (code system DCM) that a PHI access event may carry.
DICOM_EVENT_IDS: Final[Mapping[str, str]] = dicom.EVENT_IDS

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


AuditEvent = PhiAccessEvent | CriticalResultRelay


# --------------------------------------------------------------------------- validation


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


def _time(path: str, value: object, *, now: datetime, required: bool = True) -> None:
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
    if value > now + MAX_FUTURE_SKEW:
        raise _fail(path, f"{value.isoformat()} is in the future beyond the allowed clock skew")


def _npi(path: str, value: str | None) -> None:
    if value is None:
        return
    if not _NPI.fullmatch(value) or not npi_checksum_ok(value):
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


def _enum(path: str, value: object, kind: type[StrEnum]) -> None:
    if not isinstance(value, kind):
        allowed = ", ".join(member.value for member in kind)
        raise _fail(path, f"must be a {kind.__name__} ({allowed}), not {value!r}")


def _common(
    event: PhiAccessEvent | CriticalResultRelay, now: datetime, actor_path: str, actor: Actor
) -> None:
    if not isinstance(event.event_id, uuid.UUID):
        raise _fail("event_id", "must be a UUID")
    _time("event_time", event.event_time, now=now)
    _text("producer_id", event.producer_id, required=True)
    if not isinstance(event.producer_seq, int) or event.producer_seq < 0:
        raise _fail("producer_seq", "must be a non-negative integer")
    if event.producer_seq >= 2**63:
        raise _fail("producer_seq", "must fit in a signed 64-bit integer")
    _text("facility.id", event.facility.id, required=True)
    _text("facility.name", event.facility.name, required=False)
    _text(f"{actor_path}.user_id", actor.user_id, required=True)
    _text(f"{actor_path}.role", actor.role, required=True)
    _text(f"{actor_path}.name", actor.name, required=False)
    _text(f"{actor_path}.organization", actor.organization, required=False)
    _npi(f"{actor_path}.npi", actor.npi)
    _text("patient.id", event.patient.id, required=True)
    _text("patient.issuer", event.patient.issuer, required=False)
    if event.patient.state is not None and not _STATE.fullmatch(event.patient.state):
        raise _fail("patient.state", f"{event.patient.state!r} is not a two-letter state code")


def _study(path: str, study: Study) -> None:
    _text(f"{path}.uid", study.uid, required=True, limit=64)
    if not _DICOM_UID.fullmatch(study.uid):
        raise _fail(f"{path}.uid", f"{study.uid!r} is not a DICOM UID (digits and dots)")
    _text(f"{path}.accession", study.accession, required=False, limit=64)
    _text(f"{path}.modality", study.modality, required=False, limit=16)
    for i, sop in enumerate(study.sop_classes):
        _text(f"{path}.sop_classes[{i}]", sop, required=True, limit=64)
    if study.instances is not None and not 0 <= study.instances < 2**31:
        raise _fail(f"{path}.instances", "must be between 0 and 2^31-1")


def validate(event: AuditEvent, *, now: datetime | None = None) -> None:
    """Return ``None`` if the event may be sent, else raise ``EventValidationError``."""
    now = now or utc_now()
    if isinstance(event, PhiAccessEvent):
        _validate_access(event, now)
    elif isinstance(event, CriticalResultRelay):
        _validate_relay(event, now)
    else:
        raise EventValidationError(
            f"unsupported event type {type(event).__name__}", field="<event>"
        )


def _validate_access(event: PhiAccessEvent, now: datetime) -> None:
    _common(event, now, "actor", event.actor)
    if event.dicom_event_id not in DICOM_EVENT_IDS:
        raise _fail(
            "dicom_event_id", f"{event.dicom_event_id!r} is not a DICOM PS3.15 EventID (1101xx)"
        )
    if event.event_type_code is not None and not _CODE.fullmatch(event.event_type_code):
        raise _fail("event_type_code", f"{event.event_type_code!r} is not a code")
    _enum("action", event.action, EventAction)
    _enum("outcome", event.outcome, EventOutcome)
    if event.study is not None:
        _study("study", event.study)
    _text("network_address", event.network_address, required=False)
    if event.purpose_of_use is not None and event.purpose_of_use not in PURPOSES_OF_USE:
        raise _fail("purpose_of_use", f"{event.purpose_of_use!r} is not an HL7 PurposeOfUse code")
    if event.recipient is not None:
        _text("recipient.name", event.recipient.name, required=True)
        _text("recipient.address", event.recipient.address, required=False, limit=MAX_TEXT_CHARS)
        _text("recipient.organization", event.recipient.organization, required=False)
    if len(event.details) > MAX_DETAILS:
        raise _fail("details", f"has {len(event.details)} entries; at most {MAX_DETAILS}")
    for key, value in event.details.items():
        _text(f"details[{key!r}]", key, required=True)
        _text(f"details[{key!r}]", value, required=False, limit=MAX_TEXT_CHARS)


def _validate_relay(event: CriticalResultRelay, now: datetime) -> None:
    _common(event, now, "sender", event.sender)
    _enum("category", event.category, AcrCategory)
    _text("finding", event.finding, required=False, limit=MAX_TEXT_CHARS)
    _study("study", event.study)
    _time("identified_at", event.identified_at, now=now)
    _time("communicated_at", event.communicated_at, now=now, required=False)
    _time("acknowledged_at", event.acknowledged_at, now=now, required=False)
    if event.communicated_at is not None and event.communicated_at < event.identified_at:
        raise _fail("communicated_at", "is before identified_at")
    if event.acknowledged_at is not None:
        if event.communicated_at is None:
            raise _fail("acknowledged_at", "is set but communicated_at is not")
        if event.acknowledged_at < event.communicated_at:
            raise _fail("acknowledged_at", "is before communicated_at")
    _text("recipient.name", event.recipient.name, required=True)
    _text("recipient.role", event.recipient.role, required=True)
    _npi("recipient.npi", event.recipient.npi)
    _enum("method", event.method, RelayMethod)
    if not isinstance(event.read_back, bool):
        raise _fail("read_back", "must be a bool")
    for i, attempt in enumerate(event.attempts):
        _time(f"attempts[{i}].at", attempt.at, now=now)
        _enum(f"attempts[{i}].method", attempt.method, RelayMethod)
        _enum(f"attempts[{i}].outcome", attempt.outcome, AttemptOutcome)
        _text(f"attempts[{i}].note", attempt.note, required=False, limit=MAX_TEXT_CHARS)
