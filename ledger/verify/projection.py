"""The ``events``-table columns an event determines: what an index row must say.

Invariant: ``project_event`` agrees with the consumer's projection
(``consumers.projection.index_fields``) column by column; ``cell_equal`` compares one stored
cell with its expected value (``event_time`` as an instant, ``event_id`` as a UUID) and
never echoes values.

The two projections are written twice on purpose and must stay independent: the verifier
must not trust the code it checks, so a wrong (or tampered) consumer projection shows up as
``index_mismatch`` instead of being reproduced here. ``tests/unit/test_projections_agree.py``
holds them equal for every event kind (docs/design/verifier.md).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Final

from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError
from schemas import dicom

__all__ = ["cell_equal", "project_event"]

_ACCESS: Final = "philedger.audit.PhiAccessEvent"
_RELAY: Final = "philedger.audit.CriticalResultRelay"
_AUDIT_LOG_USED: Final = "philedger.audit.AuditLogUsed"
_SECURITY: Final = "philedger.audit.SecurityEvent"


def _sub(record: Mapping[str, JsonValue], key: str) -> dict[str, JsonValue]:
    value = record.get(key)
    if not isinstance(value, dict):
        raise MalformedInputError(f"event field {key} is not a record")
    return value


def _opt_sub(record: Mapping[str, JsonValue], key: str) -> dict[str, JsonValue]:
    """An optional nested record (an absent one reads as empty)."""
    value = record.get(key)
    if value is not None and not isinstance(value, dict):
        raise MalformedInputError(f"event field {key} is not a record")
    return value or {}


def project_event(full_name: str, record: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """The ``events`` columns that a decoded event determines (``SchemaSet.decode`` output).

    Must agree with the consumer's projection (``consumers.projection.index_fields``).
    Raises ``MalformedInputError`` for a schema without a projection or a record that lacks
    a nested record.  Relay ``action``/``outcome``/``purpose_of_use`` are not included.
    """
    facility = _sub(record, "facility")
    if full_name == _SECURITY:
        actor = _sub(record, "actor")
        named = _opt_sub(record, "patient")
        return {
            "event_id": record.get("event_id"),
            "event_time": record.get("event_time"),
            "producer_id": record.get("producer_id"),
            "producer_seq": record.get("producer_seq"),
            "facility_id": facility.get("id"),
            "patient_id": named.get("id"),
            "patient_issuer": named.get("issuer"),
            "patient_state": named.get("state"),
            "kind": "security_event",
            "user_id": actor.get("user_id"),
            "user_name": actor.get("name"),
            "user_role": actor.get("role"),
            "user_org": actor.get("organization"),
            "dicom_event_id": record.get("dicom_event_id"),
            "action": record.get("action"),
            "outcome": record.get("outcome"),
            "study_uid": None,
            "accession": None,
            "network_address": record.get("network_address"),
            "purpose_of_use": record.get("purpose_of_use"),
        }
    if full_name == _AUDIT_LOG_USED:
        actor = _sub(record, "actor")
        who = _opt_sub(record, "patient")
        return {
            "event_id": record.get("event_id"),
            "event_time": record.get("event_time"),
            "producer_id": record.get("producer_id"),
            "producer_seq": record.get("producer_seq"),
            "facility_id": facility.get("id"),
            "patient_id": who.get("id"),
            "patient_issuer": who.get("issuer"),
            "patient_state": who.get("state"),
            "kind": "audit_log_used",
            "user_id": actor.get("user_id"),
            "user_name": actor.get("name"),
            "user_role": actor.get("role"),
            "user_org": actor.get("organization"),
            "dicom_event_id": dicom.AUDIT_LOG_USED,
            "action": "R",
            "outcome": record.get("outcome"),
            "study_uid": None,
            "accession": None,
            "network_address": record.get("network_address"),
            "purpose_of_use": None,
        }
    patient = _sub(record, "patient")
    out: dict[str, JsonValue] = {
        "event_id": record.get("event_id"),
        "event_time": record.get("event_time"),
        "producer_id": record.get("producer_id"),
        "producer_seq": record.get("producer_seq"),
        "facility_id": facility.get("id"),
        "patient_id": patient.get("id"),
        "patient_issuer": patient.get("issuer"),
        "patient_state": patient.get("state"),
    }
    if full_name == _ACCESS:
        actor = _sub(record, "actor")
        study = record.get("study")
        if study is not None and not isinstance(study, dict):
            raise MalformedInputError("event field study is not a record")
        out.update(
            kind="phi_access",
            user_id=actor.get("user_id"),
            user_name=actor.get("name"),
            user_role=actor.get("role"),
            user_org=actor.get("organization"),
            dicom_event_id=record.get("dicom_event_id"),
            action=record.get("action"),
            outcome=record.get("outcome"),
            study_uid=None if study is None else study.get("uid"),
            accession=None if study is None else study.get("accession"),
            network_address=record.get("network_address"),
            purpose_of_use=record.get("purpose_of_use"),
        )
    elif full_name == _RELAY:
        sender = _sub(record, "sender")
        study = _sub(record, "study")
        out.update(
            kind="critical_result_relay",
            user_id=sender.get("user_id"),
            user_name=sender.get("name"),
            user_role=sender.get("role"),
            user_org=sender.get("organization"),
            dicom_event_id=None,
            study_uid=study.get("uid"),
            accession=study.get("accession"),
            network_address=None,
        )
    else:
        raise MalformedInputError(f"no index projection for schema {full_name}")
    return out


def _as_uuid(value: object) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            return None
    return None


def _as_instant(value: object) -> datetime | None:
    moment: datetime
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment if moment.utcoffset() is not None else None


def cell_equal(column: str, expected: object, actual: object) -> bool:
    if type(actual) is str and actual == expected:
        return True  # the common case, whatever the column
    if column == "event_id":
        want = _as_uuid(expected)
        return want is not None and want == _as_uuid(actual)
    if column == "event_time":
        when = _as_instant(expected)
        return when is not None and when == _as_instant(actual)
    if column == "producer_seq":
        return type(actual) is int and actual == expected
    return (actual is None or isinstance(actual, str)) and actual == expected
