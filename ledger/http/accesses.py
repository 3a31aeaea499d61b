"""An access entry's JSON object, made from one history row, and JSON answers as bytes.

Invariant: every history answer (the API's pages, an event's summary, the console's
rows) shapes an entry with ``access_object``, so the fast path (database rows straight
to the object) and the ``AccessEntry`` path give the same JSON; times are RFC 3339 as
``datetime.isoformat`` writes them and ids are canonical UUID text.
"""

from __future__ import annotations

import uuid
from typing import Any, Final

import orjson
from aiohttp import web

from ledger.audit.query import AccessEntry, AccessRow, entry_row
from schemas import dicom

_RELAY: Final = "critical_result_relay"
_RELAY_NAME: Final = dicom.CRITICAL_RESULT_RELAY[1]
_EVENT_NAMES: Final = dicom.EVENT_IDS


def access_object(r: AccessRow) -> dict[str, Any]:
    """The AccessEntry object (docs/api.md) of row ``r``; its ``event_id`` (a UUID) and
    ``time`` (an aware datetime) are left for ``json_bytes`` to write."""
    (event_id, kind, event_time, facility, patient_id, issuer, state, user_id, user_name,
     role, org, dicom_event_id, action, outcome, study_uid, accession, address, purpose,
     log_id, origin, leaf_index, via_disclosure) = r  # fmt: skip
    return {
        "event_id": event_id,
        "kind": kind,
        "time": event_time,
        "facility": facility,
        "patient": None
        if patient_id is None
        else {"id": patient_id, "issuer": issuer, "state": state},
        "user": {"id": user_id, "name": user_name, "role": role, "organization": org},
        "event": {
            "dicom_event_id": dicom_event_id,
            "name": _RELAY_NAME if kind == _RELAY else _EVENT_NAMES.get(dicom_event_id or "", ""),
        },
        "action": action,
        "outcome": outcome,
        "study": None if study_uid is None else {"uid": study_uid, "accession": accession},
        "network_address": address,
        "purpose_of_use": purpose,
        "ledger": {"log_id": log_id, "origin": origin, "leaf_index": leaf_index},
        # "disclosed": a read of the ledger that returned this patient's entries, or an
        # access whose answer returned the patient (a query), without naming the patient:
        # docs/read-attribution.md, docs/design/multi-patient-events.md
        "attribution": "disclosed" if via_disclosure else "named",
    }


def entry_json(e: AccessEntry) -> dict[str, object]:
    """``e``'s AccessEntry object with plain JSON values (strings for id and time)."""
    obj = access_object(entry_row(e))
    obj["event_id"] = str(e.event_id)
    obj["time"] = e.event_time.isoformat()
    return obj


def _other(value: object) -> str:
    # orjson writes uuid.UUID itself, not the database driver's subclass of it.
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_bytes(obj: object) -> bytes:
    """``obj`` as compact UTF-8 JSON; aware datetimes as ``isoformat`` writes them."""
    return orjson.dumps(obj, default=_other)


def json_answer(obj: object, *, status: int = 200) -> web.Response:
    """A JSON answer (as ``web.json_response``, several times cheaper to encode)."""
    return web.Response(
        body=json_bytes(obj), status=status, content_type="application/json", charset="utf-8"
    )
