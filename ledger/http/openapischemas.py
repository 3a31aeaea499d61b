"""The component schemas of the OpenAPI document (``#/components/schemas``).

Invariant: every ``$ref`` the paths make (``_ref`` in ``ledger.http.openapiparts``) names a
schema defined here, and every answer over archived periods describes what it could not
read with ``UnreadablePeriod`` (docs/api.md "Answers over archived periods").
"""

from __future__ import annotations

from typing import Final

from ledger.http.openapiparts import _NULLABLE_STRING, JsonObject, _ref

#: A detached period an answer could not read (docs/api.md "Answers over archived periods").
_UNREADABLE_PERIOD: Final[JsonObject] = {
    "type": "object",
    "required": ["period", "state", "archive", "events_from", "events_until"],
    "properties": {
        "period": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}(-[0-9]{2})?$"},
        "state": {"type": "string", "enum": ["detached"]},
        "archive": {
            "type": "string",
            "pattern": "^[0-9a-f]{64}$",
            "description": "SHA-256 of the period's archive bundle manifest",
        },
        "events_from": {**_NULLABLE_STRING, "description": "Its first event time"},
        "events_until": {**_NULLABLE_STRING, "description": "Its last event time (inclusive)"},
    },
}
_UNREADABLE_LIST: Final[JsonObject] = {
    "type": "array",
    "items": {"$ref": "#/components/schemas/UnreadablePeriod"},
    "description": "The archived and detached periods whose events overlap the answer's "
    "time range (every one when it has no range): the answer does not include them; also "
    "named, by label, in the Unreadable-Periods header. Empty when complete.",
}


def component_schemas() -> dict[str, JsonObject]:
    """The schemas the paths refer to, by name."""
    return {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {
                    "type": "object",
                    "required": ["code", "message"],
                    "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                }
            },
        },
        "Position": {
            "type": "object",
            "required": ["log_id", "origin", "leaf_index"],
            "properties": {
                "log_id": {"type": "integer"},
                "origin": {"type": "string"},
                "leaf_index": {"type": "integer", "minimum": 0},
            },
        },
        "AccessEntry": _access_entry(),
        "UnreadablePeriod": _UNREADABLE_PERIOD,
        "SealedReport": {
            "type": "object",
            "required": ["as_of_checkpoints", "unreadable_periods", "digest"],
            "properties": {"unreadable_periods": _UNREADABLE_LIST},
            "additionalProperties": True,
        },
        "AccessPage": _access_page(),
        "Rows": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": True},
        },
    }


def _access_page() -> JsonObject:
    """``AccessPage``: one page of a history, newest first."""
    return {
        "type": "object",
        "required": ["accesses", "next_cursor", "as_of", "unreadable_periods"],
        "properties": {
            "accesses": {"type": "array", "items": _ref("AccessEntry")},
            "next_cursor": _NULLABLE_STRING,
            "as_of": {
                "type": "object",
                "description": "Signed size of each log the listing is computed within",
                "additionalProperties": {"type": "integer"},
            },
            "unreadable_periods": _UNREADABLE_LIST,
        },
    }


def _access_entry() -> JsonObject:
    """``AccessEntry``: one event as a history lists it."""
    return {
        "type": "object",
        "required": ["event_id", "kind", "time", "facility", "user", "ledger"],
        "properties": {
            "event_id": {"type": "string", "format": "uuid"},
            "kind": {
                "type": "string",
                "enum": [
                    "phi_access",
                    "critical_result_relay",
                    "audit_log_used",
                    "security_event",
                ],
            },
            "time": {"type": "string", "format": "date-time"},
            "facility": {"type": "string"},
            **_who(),
            "event": {
                "type": "object",
                "properties": {"dicom_event_id": _NULLABLE_STRING, "name": {"type": "string"}},
            },
            "action": _NULLABLE_STRING,
            "outcome": _NULLABLE_STRING,
            "study": {
                "type": ["object", "null"],
                "properties": {"uid": {"type": "string"}, "accession": _NULLABLE_STRING},
            },
            "network_address": _NULLABLE_STRING,
            "purpose_of_use": _NULLABLE_STRING,
            "ledger": _ref("Position"),
            "attribution": {
                "type": "string",
                "enum": ["named", "disclosed"],
                "description": "named: the event names the history's patient, user or study; "
                "disclosed: a read of the ledger that returned one of the patient's entries "
                "without naming the patient (an index page, a user's history, a proof...), "
                "or an access whose answer returned the patient (a query's result set).",
            },
        },
    }


def _who() -> JsonObject:
    """The patient and the user an ``AccessEntry`` names."""
    return {
        "patient": {
            "type": ["object", "null"],
            "properties": {
                "id": {"type": "string"},
                "issuer": _NULLABLE_STRING,
                "state": _NULLABLE_STRING,
            },
        },
        "user": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "name": _NULLABLE_STRING,
                "role": _NULLABLE_STRING,
                "organization": _NULLABLE_STRING,
            },
        },
    }
