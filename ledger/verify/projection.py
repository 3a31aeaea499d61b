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
from collections.abc import Callable, Mapping
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
_REGISTRY: Final = "philedger.registry.RegistryChange"


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


_Row = dict[str, JsonValue]


def _head(
    record: Mapping[str, JsonValue], facility: _Row, patient: Mapping[str, JsonValue]
) -> _Row:
    """The columns every kind fills the same way: the event, its facility, its patient."""
    return {
        "event_id": record.get("event_id"),
        "event_time": record.get("event_time"),
        "producer_id": record.get("producer_id"),
        "producer_seq": record.get("producer_seq"),
        "facility_id": facility.get("id"),
        "patient_id": patient.get("id"),
        "patient_issuer": patient.get("issuer"),
        "patient_state": patient.get("state"),
    }


def _user(kind: str, user: _Row) -> _Row:
    """The kind and the user columns (the ``actor``, or a relay's ``sender``)."""
    return {
        "kind": kind,
        "user_id": user.get("user_id"),
        "user_name": user.get("name"),
        "user_role": user.get("role"),
        "user_org": user.get("organization"),
    }


def _security_event(record: Mapping[str, JsonValue], facility: _Row) -> _Row:
    actor = _sub(record, "actor")
    named = _opt_sub(record, "patient")
    return {
        **_head(record, facility, named),
        **_user("security_event", actor),
        "dicom_event_id": record.get("dicom_event_id"),
        "action": record.get("action"),
        "outcome": record.get("outcome"),
        "study_uid": None,
        "accession": None,
        "network_address": record.get("network_address"),
        "purpose_of_use": record.get("purpose_of_use"),
    }


def _audit_log_used(record: Mapping[str, JsonValue], facility: _Row) -> _Row:
    actor = _sub(record, "actor")
    who = _opt_sub(record, "patient")
    return {
        **_head(record, facility, who),
        **_user("audit_log_used", actor),
        "dicom_event_id": dicom.AUDIT_LOG_USED,
        "action": "R",
        "outcome": record.get("outcome"),
        "study_uid": None,
        "accession": None,
        "network_address": record.get("network_address"),
        "purpose_of_use": None,
    }


def _phi_access(record: Mapping[str, JsonValue], facility: _Row) -> _Row:
    """v2 may name no patient (a query by date); v1 always names one."""
    patient = _opt_sub(record, "patient")
    actor = _sub(record, "actor")
    study = record.get("study")
    if study is not None and not isinstance(study, dict):
        raise MalformedInputError("event field study is not a record")
    return {
        **_head(record, facility, patient),
        **_user("phi_access", actor),
        "dicom_event_id": record.get("dicom_event_id"),
        "action": record.get("action"),
        "outcome": record.get("outcome"),
        "study_uid": None if study is None else study.get("uid"),
        "accession": None if study is None else study.get("accession"),
        "network_address": record.get("network_address"),
        "purpose_of_use": record.get("purpose_of_use"),
    }


def _critical_result_relay(record: Mapping[str, JsonValue], facility: _Row, patient: _Row) -> _Row:
    """Relay ``action``/``outcome``/``purpose_of_use`` are consumer policy: not projected."""
    sender = _sub(record, "sender")
    study = _sub(record, "study")
    return {
        **_head(record, facility, patient),
        **_user("critical_result_relay", sender),
        "dicom_event_id": None,
        "study_uid": study.get("uid"),
        "accession": study.get("accession"),
        "network_address": None,
    }


def _registry_change(record: Mapping[str, JsonValue]) -> _Row:
    """A change to the compliance registry: no patient, no facility (an empty id), its
    author as the user; nothing else is indexed."""
    author = _sub(record, "author")
    return {
        "event_id": record.get("event_id"),
        "event_time": record.get("event_time"),
        "producer_id": record.get("producer_id"),
        "producer_seq": record.get("producer_seq"),
        "facility_id": "",
        "patient_id": None,
        "patient_issuer": None,
        "patient_state": None,
        "kind": "registry_change",
        "user_id": author.get("user_id"),
        "user_name": None,
        "user_role": author.get("role"),
        "user_org": None,
        "dicom_event_id": None,
        "action": None,
        "outcome": None,
        "study_uid": None,
        "accession": None,
        "network_address": None,
        "purpose_of_use": None,
    }


#: Kinds that may name a patient (an absent ``patient`` reads as empty).
_PATIENT_OPTIONAL: Final[Mapping[str, Callable[[Mapping[str, JsonValue], _Row], _Row]]] = {
    _SECURITY: _security_event,
    _AUDIT_LOG_USED: _audit_log_used,
    _ACCESS: _phi_access,
}
#: Kinds that must name a patient.
_PATIENT_REQUIRED: Final[Mapping[str, Callable[[Mapping[str, JsonValue], _Row, _Row], _Row]]] = {
    _RELAY: _critical_result_relay,
}


def project_event(full_name: str, record: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """The ``events`` columns that a decoded event determines (``SchemaSet.decode`` output).

    Must agree with the consumer's projection (``consumers.projection.index_fields``).
    Raises ``MalformedInputError`` for a schema without a projection or a record that lacks
    a nested record.  Relay ``action``/``outcome``/``purpose_of_use`` are not included.
    """
    if full_name == _REGISTRY:
        return _registry_change(record)
    facility = _sub(record, "facility")
    optional = _PATIENT_OPTIONAL.get(full_name)
    if optional is not None:
        return optional(record, facility)
    patient = _sub(record, "patient")
    required = _PATIENT_REQUIRED.get(full_name)
    if required is None:
        raise MalformedInputError(f"no index projection for schema {full_name}")
    return required(record, facility, patient)


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
