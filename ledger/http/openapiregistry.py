"""The OpenAPI description of the registry routes (``ledger.http.registry``), merged into
``ledger.http.openapi.document``.

Invariant: every parameter the registry handlers read is declared here (the boundary
refuses any other), and every answer's shape and refusal is described.
"""

from __future__ import annotations

from typing import Final

from ledger.http.openapiparts import (
    _ID_SCHEMA,
    _INSTANT,
    _NULLABLE_STRING,
    JsonObject,
    _cursor,
    _errors,
    _get,
    _json,
    _page,
    _query,
    _ref,
)

_KINDS: Final = ("organization", "baa", "member", "license", "credential")
_POSITION: Final[JsonObject] = {
    "type": "object",
    "description": "The ledger entry of the change that set the record (provable)",
    "properties": {
        "log_id": {"type": "integer"},
        "origin": {"type": "string"},
        "leaf_index": {"type": "integer"},
    },
}
_CHECKPOINTS: Final[JsonObject] = {
    "type": "array",
    "description": "Each registry log and the signed checkpoint the answer was read under "
    "(size 0 and note null: nothing signed yet)",
    "items": {
        "type": "object",
        "properties": {
            "log_id": {"type": "integer"},
            "origin": {"type": "string"},
            "size": {"type": "integer"},
            "note": _NULLABLE_STRING,
        },
    },
}
_RECORD: Final[JsonObject] = {
    "type": "object",
    "description": "The record's fields (docs/design/compliance-registry.md), dates "
    "YYYY-MM-DD, an open end null",
    "additionalProperties": True,
}


def _state() -> JsonObject:
    entry: JsonObject = {
        "allOf": [
            _RECORD,
            {
                "type": "object",
                "properties": {
                    "known_since": {"type": "string", "format": "date-time"},
                    "ledger": _POSITION,
                },
            },
        ]
    }
    return {
        "type": "object",
        "properties": {
            "as_of": {"type": "string", "format": "date-time"},
            "checkpoints": _CHECKPOINTS,
            "records": {
                "type": "object",
                "properties": {k: {"type": "array", "items": entry} for k in _KINDS},
            },
            "undecodable": {"type": "integer"},
        },
    }


def _history() -> JsonObject:
    change: JsonObject = {
        "type": "object",
        "properties": {
            "event_time": {"type": "string", "format": "date-time"},
            "operation": {"type": "string", "enum": ["upsert", "retire"]},
            "kind": {"type": "string", "enum": list(_KINDS)},
            "record": _RECORD,
            "author": {
                "type": "object",
                "properties": {"user_id": {"type": "string"}, "role": {"type": "string"}},
            },
            "ledger": _POSITION,
        },
    }
    return {
        "type": "object",
        "properties": {
            "checkpoints": _CHECKPOINTS,
            "changes": {"type": "array", "items": change},
            "next_cursor": _NULLABLE_STRING,
        },
    }


def _submit() -> JsonObject:
    problem: JsonObject = {
        "description": "The file was refused whole: every bad line is named, nothing applied",
        "content": {
            "application/problem+json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "type": {"type": "string"},
                        "title": {"type": "string"},
                        "status": {"type": "integer"},
                        "detail": {"type": "string"},
                        "code": {"type": "string"},
                        "problems": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "line": {"type": "integer"},
                                    "field": {"type": "string"},
                                    "reason": {"type": "string"},
                                },
                            },
                        },
                    },
                }
            },
            "application/json": {"schema": _ref("Error")},
        },
    }
    accepted = _json(
        {
            "type": "object",
            "properties": {
                "submitted": {"type": "integer"},
                "author": {"type": "object"},
                "changes": {"type": "array", "items": {"type": "object"}},
            },
        },
        "Every change emitted to the registry topic",
    )
    return {
        "post": {
            "summary": "Change the compliance registry with a registry file (CSV or JSON), "
            "authored by the token's subject: all of it or nothing",
            "tags": ["registry"],
            "parameters": [],
            "requestBody": {
                "required": True,
                "content": {
                    "text/csv": {"schema": {"type": "string"}},
                    "application/json": {"schema": {"type": "array", "items": _RECORD}},
                },
            },
            "responses": {
                "202": accepted,
                **_errors("401", "403", "413", "503"),
                "400": problem,
                "415": _json(_ref("Error"), "Not text/csv or application/json"),
            },
        }
    }


def registry_paths() -> dict[str, JsonObject]:
    """``/v1/registry`` and ``/v1/registry/changes``."""
    history = _get(
        "The registry's change history, in the order it applies (event time, then ledger "
        "position), paged",
        "registry",
        [
            _query("since", _INSTANT, "Changes with an event time at or after this"),
            _page(1000),
            _cursor("next_cursor of the previous page (same since; keeps its checkpoint)"),
        ],
        _json(_history()),
    )
    return {
        "/v1/registry": _get(
            "The compliance registry as known at a time, each record with the change "
            "that set it, read under the registry's latest signed checkpoint",
            "registry",
            [
                _query(
                    "as_of",
                    {"type": "string", "maxLength": 40},
                    "An RFC 3339 instant or 'now' (default): the changes known then",
                ),
                _query("kind", {"type": "string", "enum": list(_KINDS)}, "Only this kind"),
                _query("user", _ID_SCHEMA, "Only records naming this user"),
                _query("facility", _ID_SCHEMA, "Only records naming this facility"),
            ],
            _json(_state()),
        ),
        "/v1/registry/changes": {**history, **_submit()},
    }
