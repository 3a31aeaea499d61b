"""Report rows decoded from leaves: what ``ledger.pg.reports`` hands the pure reports.

Invariant: every field a report uses comes from the leaf (the bytes the Merkle tree
commits to), never from the index row; a field that is missing or of the wrong type
raises ``VerificationError`` naming the leaf. No I/O here.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, TypedDict

from ledger.audit.query import LedgerPosition
from ledger.audit.records import JsonValue
from ledger.audit.reports import (
    DISCLOSURE_BASIS_DETAIL,
    KIND_ACCESS,
    KIND_LEDGER_READ,
    KIND_RELAY,
    KIND_SECURITY,
    AccessRow,
    DisclosedRef,
    RecipientRef,
    RelayRow,
    StudyRef,
)
from ledger.errors import MalformedInputError, VerificationError
from schemas import dicom

PHI_ACCESS: Final = "philedger.audit.PhiAccessEvent"
RELAY: Final = "philedger.audit.CriticalResultRelay"
LEDGER_READ: Final = "philedger.audit.AuditLogUsed"
SECURITY: Final = "philedger.audit.SecurityEvent"
#: The event schemas a report reads.
REPORTED_SCHEMAS: Final = (PHI_ACCESS, RELAY, LEDGER_READ, SECURITY)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decoded:
    """An event decoded from its leaf, with its id checked against its index row."""

    name: str
    rec: dict[str, JsonValue]
    event_id: uuid.UUID
    pos: LedgerPosition
    where: str


def _get(rec: Mapping[str, JsonValue], key: str, where: str) -> JsonValue:
    if key not in rec:
        raise VerificationError(f"{where}: decoded event has no field {key!r}")
    return rec[key]


def _str(rec: Mapping[str, JsonValue], key: str, where: str) -> str:
    value = _get(rec, key, where)
    if not isinstance(value, str):
        raise VerificationError(f"{where}: field {key!r} is not a string")
    return value


def _opt_str(rec: Mapping[str, JsonValue], key: str, where: str) -> str | None:
    value = rec.get(key)
    if value is not None and not isinstance(value, str):
        raise VerificationError(f"{where}: field {key!r} is not a string")
    return value


def _opt_int(rec: Mapping[str, JsonValue], key: str, where: str) -> int | None:
    value = rec.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise VerificationError(f"{where}: field {key!r} is not an integer")
    return value


def _map(rec: Mapping[str, JsonValue], key: str, where: str) -> dict[str, JsonValue]:
    value = _get(rec, key, where)
    if not isinstance(value, dict):
        raise VerificationError(f"{where}: field {key!r} is not a record")
    return value


def _opt_map(rec: Mapping[str, JsonValue], key: str, where: str) -> dict[str, JsonValue] | None:
    value = rec.get(key)
    if value is not None and not isinstance(value, dict):
        raise VerificationError(f"{where}: field {key!r} is not a record")
    return value


def _time(rec: Mapping[str, JsonValue], key: str, where: str) -> datetime:
    value = _opt_time(rec, key, where)
    if value is None:
        raise VerificationError(f"{where}: field {key!r} is missing")
    return value


def _opt_time(rec: Mapping[str, JsonValue], key: str, where: str) -> datetime | None:
    text = _opt_str(rec, key, where)
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise VerificationError(f"{where}: field {key!r} is not a time") from exc
    if value.tzinfo is None:
        raise VerificationError(f"{where}: field {key!r} has no time zone")
    return value.astimezone(UTC)


def _study(rec: Mapping[str, JsonValue] | None, where: str) -> StudyRef | None:
    if rec is None:
        return None
    sops = rec.get("sop_classes") or []
    if not isinstance(sops, list) or not all(isinstance(s, str) for s in sops):
        raise VerificationError(f"{where}: study.sop_classes is not a list of strings")
    return StudyRef(
        uid=_str(rec, "uid", where),
        accession=_opt_str(rec, "accession", where),
        modality=_opt_str(rec, "modality", where),
        sop_classes=tuple(str(s) for s in sops),
        instances=_opt_int(rec, "instances", where),
    )


def expect(d: Decoded, name: str) -> Decoded:
    """``d`` itself, if its leaf holds the schema the index row promised."""
    if d.name != name:
        raise VerificationError(f"{d.where}: the index kind does not match the leaf ({d.name})")
    return d


def check_id(rec: Mapping[str, JsonValue], event_id: uuid.UUID, where: str) -> None:
    decoded_id = _str(rec, "event_id", where)
    try:
        same = uuid.UUID(decoded_id) == event_id
    except ValueError:
        same = False
    if not same:
        raise VerificationError(
            f"{where}: the index says event {event_id} but the leaf holds {decoded_id}"
        )


class _Who(TypedDict):
    patient_id: str | None
    patient_issuer: str | None
    patient_state: str | None
    user_id: str
    user_name: str | None
    user_role: str | None
    user_org: str | None


def _who(
    rec: Mapping[str, JsonValue], user_field: str, where: str, *, patient_required: bool = False
) -> _Who:
    """The user and the patient of an event (which may name no patient, unless required)."""
    user = _map(rec, user_field, where)
    named = _map(rec, "patient", where) if patient_required else _opt_map(rec, "patient", where)
    return _Who(
        patient_id=None if named is None else _str(named, "id", where),
        patient_issuer=None if named is None else _opt_str(named, "issuer", where),
        patient_state=None if named is None else _opt_str(named, "state", where),
        user_id=_str(user, "user_id", where),
        user_name=_opt_str(user, "name", where),
        user_role=_opt_str(user, "role", where),
        user_org=_opt_str(user, "organization", where),
    )


def as_access(d: Decoded) -> AccessRow:
    """An event as an investigation or an accounting sees it. A relay appears as its
    sender's access to the finding, as the index projects it (action E, purpose TREAT,
    outcome SUCCESS once communicated, else MINOR_FAILURE); a read of the ledger as its
    caller's Audit Log Used (110101, action R), naming a patient only if its query did; a
    security event as its user's, naming a patient only if it did."""
    rec, where = d.rec, d.where
    event_time = _time(rec, "event_time", where)
    facility_id = _str(_map(rec, "facility", where), "id", where)
    if d.name == SECURITY:
        return _security_access(d, event_time, facility_id)
    if d.name == LEDGER_READ:
        return _ledger_read_access(d, event_time, facility_id)
    if d.name == RELAY:
        return _relay_access(d, event_time, facility_id)
    return _phi_access(d, event_time, facility_id)


def _security_access(d: Decoded, event_time: datetime, facility_id: str) -> AccessRow:
    rec, where = d.rec, d.where
    return AccessRow(
        event_id=d.event_id,
        kind=KIND_SECURITY,
        event_time=event_time,
        position=d.pos,
        facility_id=facility_id,
        **_who(rec, "actor", where),
        dicom_event_id=_str(rec, "dicom_event_id", where),
        event_type_code=_opt_str(rec, "event_type_code", where),
        action=_str(rec, "action", where),
        outcome=_str(rec, "outcome", where),
        network_address=_opt_str(rec, "network_address", where),
        purpose_of_use=_opt_str(rec, "purpose_of_use", where),
    )


def _ledger_read_access(d: Decoded, event_time: datetime, facility_id: str) -> AccessRow:
    rec, where = d.rec, d.where
    return AccessRow(
        event_id=d.event_id,
        kind=KIND_LEDGER_READ,
        event_time=event_time,
        position=d.pos,
        facility_id=facility_id,
        **_who(rec, "actor", where),
        dicom_event_id=dicom.AUDIT_LOG_USED,
        action="R",
        outcome=_str(rec, "outcome", where),
        network_address=_opt_str(rec, "network_address", where),
    )


def _relay_access(d: Decoded, event_time: datetime, facility_id: str) -> AccessRow:
    rec, where = d.rec, d.where
    communicated = _opt_time(rec, "communicated_at", where)
    return AccessRow(
        event_id=d.event_id,
        event_time=event_time,
        position=d.pos,
        facility_id=facility_id,
        kind=KIND_RELAY,
        **_who(rec, "sender", where, patient_required=True),
        action="E",
        outcome="SUCCESS" if communicated is not None else "MINOR_FAILURE",
        study=_study(_map(rec, "study", where), where),
        purpose_of_use="TREAT",
    )


def _phi_access(d: Decoded, event_time: datetime, facility_id: str) -> AccessRow:
    rec, where = d.rec, d.where
    recipient = _opt_map(rec, "recipient", where)
    details = _opt_map(rec, "details", where) or {}
    basis = details.get(DISCLOSURE_BASIS_DETAIL)
    return AccessRow(
        event_id=d.event_id,
        event_time=event_time,
        position=d.pos,
        facility_id=facility_id,
        kind=KIND_ACCESS,
        # v2: a query may name no patient (a search by date); v1 always names one.
        **_who(rec, "actor", where),
        dicom_event_id=_str(rec, "dicom_event_id", where),
        event_type_code=_opt_str(rec, "event_type_code", where),
        action=_str(rec, "action", where),
        outcome=_str(rec, "outcome", where),
        study=_study(_opt_map(rec, "study", where), where),
        network_address=_opt_str(rec, "network_address", where),
        purpose_of_use=_opt_str(rec, "purpose_of_use", where),
        recipient=None
        if recipient is None
        else RecipientRef(
            name=_str(recipient, "name", where),
            address=_opt_str(recipient, "address", where),
            organization=_opt_str(recipient, "organization", where),
        ),
        disclosure_basis=basis if isinstance(basis, str) else None,
        **_result_set(rec, where),
    )


class _ResultSet(TypedDict):
    disclosed: tuple[DisclosedRef, ...]
    disclosed_total: int | None


def _result_set(rec: Mapping[str, JsonValue], where: str) -> _ResultSet:
    """The patients an access's answer returned (v2 ``disclosed``; absent in v1), and
    how many it returned when the list is truncated."""
    raw = rec.get("disclosed") or []
    if not isinstance(raw, list):
        raise VerificationError(f"{where}: field 'disclosed' is not a list")
    listed: list[DisclosedRef] = []
    for item in raw:
        if not isinstance(item, dict):
            raise VerificationError(f"{where}: a disclosed patient is not a record")
        studies = item.get("studies") or []
        if not isinstance(studies, list) or not all(isinstance(u, str) for u in studies):
            raise VerificationError(f"{where}: disclosed studies are not a list of strings")
        try:
            listed.append(
                DisclosedRef(
                    id=_str(item, "id", where),
                    issuer=_opt_str(item, "issuer", where),
                    state=_opt_str(item, "state", where),
                    studies=tuple(str(u) for u in studies),
                )
            )
        except MalformedInputError as exc:
            raise VerificationError(f"{where}: a disclosed patient: {exc}") from exc
    truncated = rec.get("disclosed_truncated") is True
    total = _opt_int(rec, "disclosed_total", where) if truncated else None
    return _ResultSet(disclosed=tuple(listed), disclosed_total=total)


def as_relay(d: Decoded) -> RelayRow:
    """A critical-result relay record as the relay report sees it."""
    rec, where = d.rec, d.where
    patient = _map(rec, "patient", where)
    attempts = _get(rec, "attempts", where)
    if not isinstance(attempts, list):
        raise VerificationError(f"{where}: attempts is not a list")
    read_back = _get(rec, "read_back", where)
    if not isinstance(read_back, bool):
        raise VerificationError(f"{where}: read_back is not a boolean")
    recipient = _map(rec, "recipient", where)
    return RelayRow(
        event_id=d.event_id,
        event_time=_time(rec, "event_time", where),
        position=d.pos,
        facility_id=_str(_map(rec, "facility", where), "id", where),
        patient_id=_str(patient, "id", where),
        patient_issuer=_opt_str(patient, "issuer", where),
        study_uid=_str(_map(rec, "study", where), "uid", where),
        category=_str(rec, "category", where),
        identified_at=_time(rec, "identified_at", where),
        communicated_at=_opt_time(rec, "communicated_at", where),
        acknowledged_at=_opt_time(rec, "acknowledged_at", where),
        read_back=read_back,
        method=_str(rec, "method", where),
        sender_user_id=_str(_map(rec, "sender", where), "user_id", where),
        recipient_name=_str(recipient, "name", where),
        recipient_role=_str(recipient, "role", where),
        attempts=len(attempts),
        escalations=sum(
            1 for a in attempts if isinstance(a, dict) and a.get("outcome") == "ESCALATED"
        ),
    )
