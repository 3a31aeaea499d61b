"""The event model: what a PACS integration builds and hands to an emitter.

Invariant: an event value is immutable (frozen, slotted, keyword-only dataclasses) and
every datetime in it is timezone-aware UTC; the enums are the Avro schemas' symbols.
Rules about the values live in ``validation``, the Avro shape in ``records``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from types import MappingProxyType


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


class TransportChannel(StrEnum):
    """How an access reached the system that recorded it (schema v3 ``transport.channel``)."""

    UNKNOWN = "UNKNOWN"
    HTTPS = "HTTPS"
    HTTP = "HTTP"
    DICOM_TLS = "DICOM_TLS"
    DICOM = "DICOM"
    HL7_MLLP = "HL7_MLLP"


#: The channels that are encrypted by definition: ``encrypted`` may not be false on them.
ENCRYPTED_CHANNELS = frozenset({TransportChannel.HTTPS, TransportChannel.DICOM_TLS})


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


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class DisclosedPatient:
    """One patient an answer returned (schema v2 ``disclosed``), with the UIDs of the
    studies of theirs it returned: sorted, each once."""

    id: str
    issuer: str | None = None
    state: str | None = None
    studies: tuple[str, ...] = ()

    @property
    def sort_key(self) -> tuple[str, str]:
        """The canonical order of ``disclosed``: by issuer (none first), then id."""
        return (self.issuer or "", self.id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Transport:
    """How an access travelled (schema v3 ``transport``, docs/design/transport.md).

    ``channel`` is the protocol the recording system saw; ``encrypted`` whether the
    requester's connection was encrypted up to it (None: unknown). A TLS channel is
    encrypted by definition; a plain one may be ``True`` only where the operator declared
    a TLS terminator in front of it.
    """

    channel: TransportChannel
    encrypted: bool | None = None

    @classmethod
    def of(cls, channel: TransportChannel) -> Transport:
        """The channel with what it says by itself: TLS channels encrypted, plain ones not,
        UNKNOWN unknown."""
        if channel is TransportChannel.UNKNOWN:
            return cls(channel=channel)
        return cls(channel=channel, encrypted=channel in ENCRYPTED_CHANNELS)


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
    """A fresh event id: a UUIDv7 (RFC 9562), the Unix time in milliseconds, then 74
    random bits. Ids made later sort later, so the ledger's event-id index grows at its
    right edge instead of at random pages (docs/design/event-ids.md)."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")  # 80 bits; 74 are used
    return uuid.UUID(
        int=(ms & _MS_MASK) << 80
        | 0x7 << 76
        | (rand >> 68) << 64  # rand_a: 12 bits
        | 0b10 << 62  # the RFC 4122/9562 variant
        | rand & _RAND_B_MASK  # rand_b: 62 bits
    )


_MS_MASK = (1 << 48) - 1
_RAND_B_MASK = (1 << 62) - 1


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class PhiAccessEvent:
    """One access to PHI (schema ``philedger.audit.PhiAccessEvent``).

    ``patient`` is the patient the request named (None when it named none: a search by
    date); ``disclosed`` the patients the answer returned (schema v2, canonical: sorted by
    ``DisclosedPatient.sort_key``, each once, at most ``MAX_DISCLOSED_PATIENTS``). An
    event with neither must be a Query (110112) that matched nothing.
    ``producer_id`` and ``producer_seq`` are stamped by the emitter when left unset.
    """

    facility: Facility
    actor: Actor
    dicom_event_id: str
    action: EventAction
    patient: Patient | None
    outcome: EventOutcome = EventOutcome.SUCCESS
    event_type_code: str | None = None
    study: Study | None = None
    network_address: str | None = None
    purpose_of_use: str | None = None
    recipient: Recipient | None = None
    details: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    disclosed: tuple[DisclosedPatient, ...] = ()
    #: The answer returned more patients than ``disclosed`` lists.
    disclosed_truncated: bool = False
    #: How many patients the answer returned when truncated (None: ``len(disclosed)``).
    disclosed_total: int | None = None
    #: How the access travelled (schema v3); None: the producer did not record it.
    transport: Transport | None = None
    event_id: uuid.UUID = field(default_factory=new_event_id)
    event_time: datetime = field(default_factory=utc_now)
    producer_id: str | None = None
    producer_seq: int | None = None

    def stamped(self, *, producer_id: str, producer_seq: int) -> PhiAccessEvent:
        return replace(self, producer_id=producer_id, producer_seq=producer_seq)

    @property
    def key(self) -> str:
        """Kafka key: the named patient's, else the user's (a query naming nobody)."""
        return self.patient.key if self.patient is not None else f"user|{self.actor.user_id}"


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
