"""The field rules of audit events, one function per field kind (text, time, NPI, ...).

Invariant: each ``check_*`` returns ``None`` or raises ``EventValidationError`` whose
``field`` is the dotted path of the first bad value; the rules apply to the Avro record
shape, so producer and consumer run the very same checks (``validation``).
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

from producers.errors import EventValidationError
from producers.events.limits import (
    MAX_DETAILS,
    MAX_ID_CHARS,
    MAX_TEXT_CHARS,
    MIN_EVENT_TIME,
    PURPOSES_OF_USE,
)
from producers.events.model import (
    ENCRYPTED_CHANNELS,
    AcrCategory,
    AttemptOutcome,
    EventAction,
    EventOutcome,
    RelayMethod,
    TransportChannel,
)
from producers.events.records import Record
from producers.netaddr import is_network_address

_NPI = re.compile(r"\d{10}")
_STATE = re.compile(r"[A-Z]{2}")
_DICOM_UID = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def fail(path: str, problem: str) -> EventValidationError:
    return EventValidationError(f"{path}: {problem}", field=path)


def check_text(path: str, value: object, *, required: bool, limit: int = MAX_ID_CHARS) -> None:
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
            raise fail(path, "is required")
        return
    if not isinstance(value, str):
        raise fail(path, f"must be a string, not {type(value).__name__}")
    if required and not value.strip():
        raise fail(path, "must not be empty")
    if len(value) > limit:
        raise fail(path, f"is {len(value)} characters long; at most {limit} are allowed")
    if "\x00" in value:
        raise fail(path, "must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise fail(path, "is not valid Unicode text (lone surrogate)") from exc


def check_network_address(value: object) -> None:
    """Absent, or an IP address or host name (DICOM NetworkAccessPointID types 1, 2)."""
    check_text("network_address", value, required=False)
    if isinstance(value, str) and not is_network_address(value):
        raise fail("network_address", f"{value[:80]!r} is not an IP address or a host name")


def check_time(path: str, value: object, *, latest: datetime, required: bool = True) -> None:
    if value is None:
        if required:
            raise fail(path, "is required")
        return
    if not isinstance(value, datetime):
        raise fail(path, "must be a datetime")
    if value.tzinfo is not UTC and (value.tzinfo is None or value.utcoffset() is None):
        raise fail(path, "must be timezone-aware (UTC)")
    if value < MIN_EVENT_TIME:
        raise fail(path, f"{value.isoformat()} is before {MIN_EVENT_TIME.date()}")
    if value > latest:
        raise fail(path, f"{value.isoformat()} is in the future beyond the allowed clock skew")


def check_npi(path: str, value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str) or not _NPI.fullmatch(value) or not npi_checksum_ok(value):
        raise fail(path, f"{value!r} is not a valid 10-digit NPI (Luhn check digit)")


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


def check_symbol(path: str, value: object, kind: type[StrEnum]) -> None:
    if value not in _SYMBOLS[kind]:
        allowed = ", ".join(member.value for member in kind)
        raise fail(path, f"must be a {kind.__name__} ({allowed}), not {value!r}")


def check_enum(path: str, value: object, kind: type[StrEnum]) -> None:
    if not isinstance(value, kind):
        allowed = ", ".join(member.value for member in kind)
        raise fail(path, f"must be a {kind.__name__} ({allowed}), not {value!r}")


_SYMBOLS: Final[Mapping[type[StrEnum], frozenset[str]]] = {
    kind: frozenset(member.value for member in kind)
    for kind in (
        EventAction,
        EventOutcome,
        AcrCategory,
        RelayMethod,
        AttemptOutcome,
        TransportChannel,
    )
}
_ENCRYPTED_SYMBOLS: Final = frozenset(channel.value for channel in ENCRYPTED_CHANNELS)


def optional_record(record: Record, key: str) -> Record | None:
    value = record.get(key)
    if value is not None and not isinstance(value, dict):
        raise fail(key, "must be a record")
    return value


def required_record(record: Record, key: str) -> Record:
    value = optional_record(record, key)
    if value is None:
        raise fail(key, "is required")
    return value


def check_envelope(record: Record, latest: datetime, actor_path: str) -> None:
    """Identity, time, producer, facility and the acting user: every event has them."""
    if not isinstance(record.get("event_id"), uuid.UUID):
        raise fail("event_id", "must be a UUID")
    check_time("event_time", record.get("event_time"), latest=latest)
    check_text("producer_id", record.get("producer_id"), required=True)
    seq = record.get("producer_seq")
    if type(seq) is not int or seq < 0:
        raise fail("producer_seq", "must be a non-negative integer")
    if seq >= 2**63:
        raise fail("producer_seq", "must fit in a signed 64-bit integer")
    facility = required_record(record, "facility")
    check_text("facility.id", facility.get("id"), required=True)
    check_text("facility.name", facility.get("name"), required=False)
    actor = required_record(record, actor_path)
    check_text(f"{actor_path}.user_id", actor.get("user_id"), required=True)
    check_text(f"{actor_path}.role", actor.get("role"), required=True)
    check_text(f"{actor_path}.name", actor.get("name"), required=False)
    check_text(f"{actor_path}.organization", actor.get("organization"), required=False)
    check_npi(f"{actor_path}.npi", actor.get("npi"))


def check_patient(patient: Mapping[str, object], *, path: str = "patient") -> None:
    check_text(f"{path}.id", patient.get("id"), required=True)
    check_text(f"{path}.issuer", patient.get("issuer"), required=False)
    state = patient.get("state")
    if state is not None and not (isinstance(state, str) and _STATE.fullmatch(state)):
        raise fail(f"{path}.state", f"{state!r} is not a two-letter state code")


def check_study(path: str, study: Record, *, uid_path: str = ".uid") -> None:
    """A study record; ``uid_path`` names its UID in errors (``""``: the path itself)."""
    uid = study.get("uid")
    check_text(f"{path}{uid_path}", uid, required=True, limit=64)
    if not _DICOM_UID.fullmatch(str(uid)):
        raise fail(f"{path}{uid_path}", f"{uid!r} is not a DICOM UID (digits and dots)")
    check_text(f"{path}.accession", study.get("accession"), required=False, limit=64)
    check_text(f"{path}.modality", study.get("modality"), required=False, limit=16)
    sops = study.get("sop_classes") or []
    if not isinstance(sops, list | tuple):
        raise fail(f"{path}.sop_classes", "must be a list")
    for i, sop in enumerate(sops):
        check_text(f"{path}.sop_classes[{i}]", sop, required=True, limit=64)
    instances = study.get("instances")
    if instances is not None and not (type(instances) is int and 0 <= instances < 2**31):
        raise fail(f"{path}.instances", "must be between 0 and 2^31-1")


def check_event_type_code(code: object) -> None:
    if code is not None and not (isinstance(code, str) and _CODE.fullmatch(code)):
        raise fail("event_type_code", f"{code!r} is not a code")


def check_purpose_of_use(purpose: object) -> None:
    if purpose is not None and purpose not in PURPOSES_OF_USE:
        raise fail("purpose_of_use", f"{purpose!r} is not an HL7 PurposeOfUse code")


def check_details(raw: object) -> None:
    details = raw or {}
    if not isinstance(details, Mapping):
        raise fail("details", "must be a map")
    if len(details) > MAX_DETAILS:
        raise fail("details", f"has {len(details)} entries; at most {MAX_DETAILS}")
    for key, value in details.items():
        check_text(f"details[{key!r}]", key, required=True)
        check_text(f"details[{key!r}]", value, required=False, limit=MAX_TEXT_CHARS)


def check_transport(raw: object) -> None:
    """Schema v3's ``transport`` (absent before): a known channel, and ``encrypted`` a
    boolean or null that does not contradict it (a TLS channel is never unencrypted)."""
    if raw is None:
        return
    if not isinstance(raw, Mapping):
        raise fail("transport", "must be a record")
    channel = raw.get("channel")
    check_symbol("transport.channel", channel, TransportChannel)
    encrypted = raw.get("encrypted")
    if encrypted is not None and type(encrypted) is not bool:
        raise fail("transport.encrypted", "must be a boolean or null (unknown)")
    if encrypted is False and channel in _ENCRYPTED_SYMBOLS:
        raise fail("transport.encrypted", f"cannot be false on the {channel} channel")
