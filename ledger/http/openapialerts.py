"""The OpenAPI description of the compliance alert routes (``ledger.http.alerts``), merged
into ``ledger.http.openapi.document``.

Invariant: an alert, its transitions and the triage body name the same states and
dispositions, and every parameter the alert handlers read is declared here.
"""

from __future__ import annotations

from typing import Final

from ledger.http.openapiparts import (
    _ID_SCHEMA,
    _INSTANT,
    _NULLABLE_STRING,
    JsonObject,
    _cursor,
    _get,
    _json,
    _page,
    _path,
    _query,
    _ref,
    _with_errors,
)

_DISPOSITIONS: Final = ("false_positive", "policy_violation", "breach_investigation")
_ALERT_ID: Final = _path(
    "alert_id", {"type": "integer", "minimum": 1, "maximum": 9223372036854775807}, "Alert id"
)


def alert_paths() -> dict[str, JsonObject]:
    """Compliance alerts: list and filter, read one with its evidence, triage."""
    return {
        "/v1/compliance/alerts": _list(),
        "/v1/compliance/alerts/{alert_id}": _one(),
        "/v1/compliance/alerts/{alert_id}/transitions": _triage(),
    }


def _list() -> JsonObject:
    return _get(
        "Compliance alerts, newest first, filtered and paged",
        "compliance",
        [
            _query(
                "state",
                {"type": "string", "enum": ["open", "acknowledged", "closed"]},
                "Current state",
            ),
            _query("rule", _ID_SCHEMA, "Rule id (e.g. access.bulk)"),
            _query("facility", _ID_SCHEMA, "Facility id"),
            _query("user", _ID_SCHEMA, "User id"),
            _query("since", _INSTANT, "Raised at or after"),
            _query("until", _INSTANT, "Raised before"),
            _page(1000),
            _cursor("next_cursor of the previous page (same filters)"),
        ],
        _json(
            {
                "type": "object",
                "properties": {
                    "alerts": {"type": "array", "items": _alert_schema()},
                    "next_cursor": _NULLABLE_STRING,
                },
            }
        ),
    )


def _one() -> JsonObject:
    return _get(
        "One compliance alert, its evidence (each with its inclusion proof) and its transitions",
        "compliance",
        [_ALERT_ID],
        _json(
            {
                "type": "object",
                "properties": {
                    "alert": _alert_schema(),
                    "notes": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "One line per registry change known after the "
                        "access that would have prevented the alert (evidence role "
                        "later_registry_change): 'covered by a registry change known "
                        "later: log L leaf N'",
                    },
                    "evidence": {"type": "array", "items": _evidence()},
                    "transitions": {"type": "array", "items": _transition_schema()},
                },
            }
        ),
    )


def _triage() -> JsonObject:
    return {
        "post": {
            "summary": "Acknowledge or close (with a disposition) a compliance alert, as "
            "the token's subject",
            "tags": ["compliance"],
            "parameters": [_ALERT_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _transition_body()}},
            },
            "responses": _triage_responses(),
        }
    }


def _triage_responses() -> dict[str, JsonObject]:
    return {
        **_with_errors(
            _json(
                {
                    "type": "object",
                    "properties": {
                        "alert_id": {"type": "integer"},
                        "transition": _transition_schema(),
                    },
                },
                "The transition made",
            )
        ),
        "409": _json(_ref("Error"), "The alert's current state forbids it"),
        "413": _json(_ref("Error"), "Request body too large"),
    }


def _transition_body() -> JsonObject:
    return {
        "type": "object",
        "required": ["state", "note"],
        "additionalProperties": False,
        "properties": {
            "state": {"type": "string", "enum": ["acknowledged", "closed"]},
            "disposition": {"type": "string", "enum": list(_DISPOSITIONS)},
            "note": {"type": "string", "minLength": 1, "maxLength": 2000},
        },
    }


def _evidence() -> JsonObject:
    return {
        "type": "object",
        "properties": {
            "log_id": {"type": "integer"},
            "origin": {"type": "string"},
            "leaf_index": {"type": "integer"},
            "role": {"type": "string"},
            "inclusion_proof": {
                "type": ["string", "null"],
                "description": "URL of the leaf's inclusion proof at the latest signed "
                "checkpoint (null until one covers it)",
            },
        },
    }


def _alert_schema() -> JsonObject:
    position = {
        "type": "object",
        "properties": {
            "log_id": {"type": "integer"},
            "origin": {"type": "string"},
            "leaf_index": {"type": "integer"},
        },
    }
    return {
        "type": "object",
        "required": ["alert_id", "rule", "severity", "state", "summary", "trigger"],
        "properties": {
            "alert_id": {"type": "integer"},
            "rule": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "version": {"type": "integer"}},
            },
            "severity": {"type": "string", "enum": ["low", "medium", "high", "critical"]},
            "state": {"type": "string", "enum": ["open", "acknowledged", "closed"]},
            "disposition": {"type": ["string", "null"], "enum": [*_DISPOSITIONS, None]},
            "facility": _NULLABLE_STRING,
            "user": _NULLABLE_STRING,
            "patient": {
                "type": ["object", "null"],
                "properties": {"id": {"type": "string"}, "issuer": _NULLABLE_STRING},
            },
            "summary": {"type": "string"},
            "trigger": position,
            "thresholds": {"type": "object"},
            "raised_at": {"type": "string", "format": "date-time"},
        },
    }


def _transition_schema() -> JsonObject:
    return {
        "type": "object",
        "properties": {
            "seq": {"type": "integer"},
            "state": {"type": "string", "enum": ["open", "acknowledged", "closed"]},
            "disposition": {"type": ["string", "null"], "enum": [*_DISPOSITIONS, None]},
            "note": {"type": "string"},
            "by": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
        },
    }
