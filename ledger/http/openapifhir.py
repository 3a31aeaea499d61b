"""The OpenAPI description of the FHIR R4 routes (``ledger.http.fhir``): the capability
statement, batch, AuditEvent search, read and ingest.

Invariant: every FHIR answer and refusal is ``application/fhir+json`` (an OperationOutcome)
but for the bearer-token refusals, and the search declares every name
``ledger.audit.fhir.catalog`` accepts.
"""

from __future__ import annotations

from typing import Final

from ledger.http.openapiparts import (
    _ID_SCHEMA,
    JsonObject,
    _cursor,
    _fhir_errors,
    _fhir_json,
    _get,
    _path,
    _query,
)

_FORMAT: Final = _query(
    "_format",
    {"type": "string", "maxLength": 64},
    "json, application/json or application/fhir+json (XML and others: 406)",
)


def _fhir_post(summary: str, ok: dict[str, JsonObject], *refusals: str) -> JsonObject:
    """A POST of a FHIR resource or Bundle: its answers, the refusals it names, the errors."""
    responses: JsonObject = dict(ok)
    responses.update(
        {code: _fhir_json({"type": "object"}, "OperationOutcome") for code in refusals}
    )
    responses.update(_fhir_errors())
    return {
        "summary": summary,
        "tags": ["fhir"],
        "parameters": [_FORMAT],
        "requestBody": {
            "required": True,
            "content": {"application/fhir+json": {"schema": {"type": "object"}}},
        },
        "responses": responses,
    }


def _fhir_search_parameters() -> list[JsonObject]:
    """``GET /fhir/AuditEvent``: every name ``ledger.audit.fhir.catalog`` accepts."""
    token: JsonObject = {"type": "string", "maxLength": 256}
    return [
        _query("patient", _ID_SCHEMA, "Patient id or Patient/id"),
        _query("patient.identifier", _ID_SCHEMA, "Patient id as an identifier value"),
        _query("agent", _ID_SCHEMA, "User id"),
        _query("entity", {"type": "string", "maxLength": 256}, "Study UID"),
        {
            "name": "date",
            "in": "query",
            "schema": {"type": "array", "items": {"type": "string"}, "maxItems": 4},
            "style": "form",
            "explode": True,
            "description": "ge/gt/le/lt/eq + FHIR dateTime; repeat to bound",
        },
        _query("type", token, "[system|]code"),
        _query("action", {"type": "string", "maxLength": 64}, "C,R,U,D,E"),
        _query("outcome", token, "0, 4, 8, 12 ([system|]code, comma alternatives)"),
        _query("subtype", token, "[system|]code, comma alternatives"),
        _query("site", token, "Facility id (source.site), comma alternatives"),
        _query("source", token, "Producer id (source.observer) or Device/id"),
        _query("address", _ID_SCHEMA, "agent.network.address prefix, case-insensitive"),
        _query("entity-type", token, "[system|]code, comma alternatives"),
        _query("entity-role", token, "[system|]code, comma alternatives"),
        _query("agent-name", _ID_SCHEMA, "agent.name prefix, case-insensitive"),
        _query("_count", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page"),
        _query(
            "_summary",
            {"type": "string", "enum": ["true", "text", "data", "count", "false"]},
            "R4 _summary",
        ),
        _query("_elements", {"type": "string", "maxLength": 256}, "Elements to keep"),
        _FORMAT,
        _cursor("Next page", name="_cursor"),
    ]


def fhir_paths() -> dict[str, JsonObject]:
    """``/fhir/metadata``, ``/fhir`` (batch) and ``/fhir/AuditEvent`` with its reads."""
    return {**_server_paths(), **_audit_event_paths()}


def _server_paths() -> dict[str, JsonObject]:
    return {
        "/fhir/metadata": {
            "get": {
                "summary": "FHIR R4 CapabilityStatement: what this server supports "
                "(public, not recorded, no PHI)",
                "tags": ["fhir"],
                "parameters": [_FORMAT],
                "responses": {
                    "200": _fhir_json({"type": "object", "required": ["resourceType", "rest"]}),
                    "400": _fhir_json({"type": "object"}, "OperationOutcome"),
                    "406": _fhir_json({"type": "object"}, "OperationOutcome"),
                },
                "security": [],
            }
        },
        "/fhir": {
            "post": _fhir_post(
                "A FHIR batch Bundle of GET entries (search, read, metadata); each "
                "entry is answered and recorded as its own read (a transaction is 422)",
                {"200": _fhir_json({"type": "object"}, "batch-response Bundle")},
                "406",
                "422",
            ),
        },
    }


def _audit_event_paths() -> dict[str, JsonObject]:
    return {
        "/fhir/AuditEvent": {
            **_get(
                "FHIR R4 AuditEvent search (searchset Bundle); name a patient, agent or entity. A "
                "search that could not read a detached period ends with an OperationOutcome "
                "entry (search mode outcome, a warning issue of code incomplete per period)",
                "fhir",
                _fhir_search_parameters(),
                _fhir_json({"type": "object", "required": ["resourceType", "type"]}),
                errors=(),
            ),
            "post": _fhir_post(
                "Ingest an AuditEvent, or a batch/transaction Bundle of them, "
                "through Kafka like any producer",
                {
                    "200": _fhir_json({"type": "object"}, "batch/transaction response"),
                    "201": _fhir_json({"type": "object"}, "Accepted (OperationOutcome)"),
                },
                "406",
            ),
        },
        "/fhir/AuditEvent/{event_id}": _get(
            "One FHIR R4 AuditEvent, with its ledger position",
            "fhir",
            [
                _path("event_id", {"type": "string", "maxLength": 64}, "Event id"),
                _query(
                    "_summary",
                    {"type": "string", "enum": ["true", "text", "data", "false"]},
                    "R4 _summary",
                ),
                _query("_elements", {"type": "string", "maxLength": 256}, "Elements to keep"),
                _FORMAT,
            ],
            _fhir_json({"type": "object", "required": ["resourceType", "id"]}),
            errors=(),
        ),
    }
