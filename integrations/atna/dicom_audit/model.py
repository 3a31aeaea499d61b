"""The parsed DICOM audit message (PS3.15 A.5.1) and the constants of its mapping.

Invariant: data only. A ``AuditMessage`` is what the XML says, before any mapping; the
codes of the standard come from ``schemas.dicom``, not from here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Final

from producers import AuditLogUsed, EventOutcome, PhiAccessEvent, SecurityEvent
from schemas import dicom

#: The syslog MSGID of an IHE ATNA audit record (ITI-20).
MSGID: Final = dicom.ATNA_MSGID
#: Namespace of the UUIDv5 event ids of received messages.
ATNA_NAMESPACE: Final = uuid.UUID("5f0c4a63-6d1e-5b8e-9a51-7a7e2c0b1d42")

#: The ParticipantObjectIDTypeCode (code system ``schemas.dicom.PRIVATE_CODE_SYSTEM``) of the
#: private *ledger object* of a message this package wrote.
LEDGER_OBJECT_CODE: Final = "event"
#: The ledger-object detail that names the schema of a message this module wrote for a
#: ``SecurityEvent`` (a written message without it is a ``PhiAccessEvent``, or for EventID
#: 110101 an ``AuditLogUsed``).
SECURITY_SCHEMA: Final = "philedger.audit.SecurityEvent"

#: EventOutcomeIndicator values and the outcomes they stand for.
OUTCOMES: Final[Mapping[str, EventOutcome]] = MappingProxyType(
    {
        "0": EventOutcome.SUCCESS,
        "4": EventOutcome.MINOR_FAILURE,
        "8": EventOutcome.SERIOUS_FAILURE,
        "12": EventOutcome.MAJOR_FAILURE,
    }
)
OUTCOME_CODES: Final[Mapping[EventOutcome, str]] = MappingProxyType(
    {v: k for k, v in OUTCOMES.items()}
)
#: Longest ``details`` value (``producers.events.MAX_TEXT_CHARS``).
MAX_DETAIL: Final = 1024
#: A code this package records as a code (else as ``system|code`` text).
CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
#: Control characters that make a query binary rather than text.
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


#: What one audit message maps to.
MappedEvent = PhiAccessEvent | AuditLogUsed | SecurityEvent


@dataclass(frozen=True, slots=True)
class Code:
    """A DICOM coded value (``csd-code``, or RFC 3881's ``code``)."""

    code: str
    system: str | None = None
    original_text: str | None = None

    def is_(self, system: str, code: str) -> bool:
        return self.system == system and self.code == code


@dataclass(frozen=True, slots=True, kw_only=True)
class Participant:
    user_id: str
    alternative_user_id: str | None = None
    user_name: str | None = None
    is_requestor: bool = False
    network_access_point_id: str | None = None
    network_access_point_type: str | None = None
    user_type_code: str | None = None
    roles: tuple[Code, ...] = ()

    def has_role(self, codes: frozenset[str]) -> bool:
        return any(r.system == dicom.DCM and r.code in codes for r in self.roles)


@dataclass(frozen=True, slots=True)
class SopClass:
    uid: str | None
    instances: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantObject:
    object_id: str
    type_code: str | None
    role: str | None
    id_type: Code
    name: str | None = None
    query: bytes | None = None
    details: tuple[tuple[str, bytes], ...] = ()
    accessions: tuple[str, ...] = ()
    sop_classes: tuple[SopClass, ...] = ()

    def detail(self, kind: str) -> bytes | None:
        for key, value in self.details:
            if key == kind:
                return value
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditMessage:
    """One parsed DICOM audit message (PS3.15 A.5.1), before any mapping."""

    event_id: Code
    action: str | None
    event_time: datetime
    outcome: str
    event_types: tuple[Code, ...]
    outcome_description: str | None
    purposes: tuple[Code, ...]
    participants: tuple[Participant, ...]
    source_id: str
    enterprise_site_id: str | None
    source_types: tuple[str, ...]
    objects: tuple[ParticipantObject, ...]
