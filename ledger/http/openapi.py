"""The OpenAPI 3.1 document served at ``/openapi.json``.

Invariant: it lists exactly the routes the app registers (a unit test compares
them), with every parameter the handlers read and the shape of every answer; the
schemathesis suite checks the running API against it.
"""

from __future__ import annotations

from typing import Final

JsonObject = dict[str, object]

_NULLABLE_STRING: Final[JsonObject] = {"type": ["string", "null"]}
_ERROR_CODES: Final = ("400", "401", "403", "404", "503")


def _ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: JsonObject, description: str = "OK") -> JsonObject:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _fhir_json(schema: JsonObject, description: str = "OK") -> JsonObject:
    return {"description": description, "content": {"application/fhir+json": {"schema": schema}}}


def _fhir_errors() -> dict[str, JsonObject]:
    outcome = _fhir_json({"type": "object", "required": ["resourceType"]}, "OperationOutcome")
    return {
        "400": outcome,
        "401": _json(_ref("Error"), "Missing or invalid token"),
        "403": _json(_ref("Error"), "Role lacks permission"),
        "404": outcome,
        "413": outcome,
        "503": outcome,
    }


def _with_errors(ok: JsonObject) -> dict[str, JsonObject]:
    return {"200": ok, **_errors()}


def _errors(*codes: str) -> dict[str, JsonObject]:
    wanted = codes or _ERROR_CODES
    texts = {
        "400": "Malformed parameter",
        "401": "Missing, unknown, expired or revoked bearer token",
        "403": "The token's role lacks this endpoint's permission",
        "404": "Not found",
        "413": "Request body too large",
        "503": "The ledger is unavailable, overloaded or the read could not be recorded",
    }
    return {c: _json(_ref("Error"), texts[c]) for c in wanted}


def _query(
    name: str, schema: JsonObject, description: str, *, required: bool = False
) -> JsonObject:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


#: ``as_of``: the signed checkpoints a report is computed against (repeatable).
_AS_OF: Final = {
    "name": "as_of",
    "in": "query",
    "required": False,
    "style": "form",
    "explode": True,
    "schema": {"type": "array", "items": {"type": "string", "pattern": "^[^\\s+]+:[1-9][0-9]*$"}},
    "description": "A signed checkpoint <origin>:<size> to compute the report against "
    "(repeatable, one per log; default: the latest of each log). The report reads no "
    "event at or past these sizes, names them, and prints its digest (also in the "
    "Report-Digest header)",
}
_AS_OF_NOTE: Final = {
    "name": "as_of_note",
    "in": "query",
    "required": False,
    "style": "form",
    "explode": True,
    "schema": {"type": "array", "items": {"type": "string", "format": "byte"}},
    "description": "A signed checkpoint note (standard base64), as a report printed it in "
    "as_of_checkpoints (repeatable): accepted when a trusted key signed it and this "
    "ledger's leaves have its root at its size, even if this database never stored it "
    "(a replayed copy)",
}
_AT: Final = {
    "name": "at",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "format": "date-time"},
    "description": "The time the report is made as of (default: now); a re-run passes "
    "the one the report printed",
}


def _path(name: str, schema: JsonObject, description: str) -> JsonObject:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


_ID_SCHEMA: Final[JsonObject] = {"type": "string", "minLength": 1, "maxLength": 256}
_UINT: Final[JsonObject] = {"type": "integer", "minimum": 0, "maximum": 9223372036854775807}
_LOG: Final = _path("log", {"type": "integer", "minimum": 0, "maximum": 2147483647}, "Log id")
_START: Final[JsonObject] = {"type": "integer", "minimum": 0, "maximum": 2**62}
_INSTANT: Final[JsonObject] = {"type": "string", "format": "date-time"}
_TILE: Final[JsonObject] = {
    "description": "OK",
    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
}


_FORMAT: Final = _query(
    "_format",
    {"type": "string", "maxLength": 64},
    "json, application/json or application/fhir+json (XML and others: 406)",
)


def _fhir_post_responses(ok: dict[str, JsonObject], *refusals: str) -> JsonObject:
    out: JsonObject = dict(ok)
    out.update({code: _fhir_json({"type": "object"}, "OperationOutcome") for code in refusals})
    out.update(_fhir_errors())
    return out


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
        _query(
            "_cursor",
            {"type": "string", "maxLength": 8192, "pattern": "^[A-Za-z0-9_-]*$"},
            "Next page",
        ),
    ]


def _history_parameters() -> list[JsonObject]:
    return [
        _query("since", _INSTANT, "Earliest event time (inclusive), RFC 3339 with offset"),
        _query("until", _INSTANT, "Latest event time (exclusive), RFC 3339 with offset"),
        _query("action", {"type": "string", "enum": ["C", "R", "U", "D", "E"]}, "DICOM action"),
        _query("facility", _ID_SCHEMA, "Facility id"),
        _query(
            "outcome",
            {
                "type": "string",
                "enum": ["SUCCESS", "MINOR_FAILURE", "SERIOUS_FAILURE", "MAJOR_FAILURE"],
            },
            "Event outcome",
        ),
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page size"),
        _query(
            "cursor",
            {"type": "string", "maxLength": 8192, "pattern": "^[A-Za-z0-9_-]*$"},
            "next_cursor of the previous page (keeps that page's snapshot)",
        ),
    ]


def _get(
    summary: str,
    tag: str,
    parameters: list[JsonObject],
    ok: JsonObject,
    *,
    public: bool = False,
    errors: tuple[str, ...] = (),
) -> JsonObject:
    failures = _fhir_errors() if tag == "fhir" else _errors(*errors)
    op: JsonObject = {
        "summary": summary,
        "tags": [tag],
        "parameters": parameters,
        "responses": {"200": ok, **failures},
    }
    if public:
        op["security"] = []
    return {"get": op}


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


_DISPOSITIONS: Final = ("false_positive", "policy_violation", "breach_investigation")
_ALERT_ID: Final = _path(
    "alert_id", {"type": "integer", "minimum": 1, "maximum": 9223372036854775807}, "Alert id"
)


def _alert_paths() -> dict[str, JsonObject]:
    """Compliance alerts: list and filter, read one with its evidence, triage."""
    evidence = {
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
    responses: dict[str, JsonObject] = {
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
    transition_body = {
        "type": "object",
        "required": ["state", "note"],
        "additionalProperties": False,
        "properties": {
            "state": {"type": "string", "enum": ["acknowledged", "closed"]},
            "disposition": {"type": "string", "enum": list(_DISPOSITIONS)},
            "note": {"type": "string", "minLength": 1, "maxLength": 2000},
        },
    }
    return {
        "/v1/compliance/alerts": _get(
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
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page"),
                _query(
                    "cursor",
                    {"type": "string", "maxLength": 8192, "pattern": "^[A-Za-z0-9_-]*$"},
                    "next_cursor of the previous page (same filters)",
                ),
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
        ),
        "/v1/compliance/alerts/{alert_id}": _get(
            "One compliance alert, its evidence (each with its inclusion proof) and its "
            "transitions",
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
                        "evidence": {"type": "array", "items": evidence},
                        "transitions": {"type": "array", "items": _transition_schema()},
                    },
                }
            ),
        ),
        "/v1/compliance/alerts/{alert_id}/transitions": {
            "post": {
                "summary": "Acknowledge or close (with a disposition) a compliance alert, as "
                "the token's subject",
                "tags": ["compliance"],
                "parameters": [_ALERT_ID],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": transition_body}},
                },
                "responses": responses,
            }
        },
    }


def _schemas() -> dict[str, JsonObject]:
    entry: JsonObject = {
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
        "AccessEntry": entry,
        "UnreadablePeriod": _UNREADABLE_PERIOD,
        "SealedReport": {
            "type": "object",
            "required": ["as_of_checkpoints", "unreadable_periods", "digest"],
            "properties": {"unreadable_periods": _UNREADABLE_LIST},
            "additionalProperties": True,
        },
        "AccessPage": {
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
        },
        "Rows": {
            "type": "array",
            "items": {"type": "object", "additionalProperties": True},
        },
    }


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


def document() -> JsonObject:
    """The OpenAPI document of the API as ``create_app`` wires it."""
    history = _history_parameters()
    rows = _ref("Rows")
    paths: dict[str, JsonObject] = {
        "/healthz": _get(
            "Liveness (no ledger data)",
            "service",
            [],
            _json(
                {
                    "type": "object",
                    "properties": {"status": {"type": "string"}, "version": {"type": "string"}},
                }
            ),
            public=True,
            errors=("404",),
        ),
        "/v1/patients/{patient_id}/accesses": _get(
            "Who accessed this patient's PHI, newest first",
            "history",
            [
                _path("patient_id", _ID_SCHEMA, "Patient id"),
                _query("issuer", _ID_SCHEMA, "Assigning authority of the patient id"),
                *history,
            ],
            _json(_ref("AccessPage")),
        ),
        "/v1/users/{user_id}/accesses": _get(
            "Everything one user touched, newest first (including their reads of the ledger)",
            "history",
            [_path("user_id", _ID_SCHEMA, "User id"), *history],
            _json(_ref("AccessPage")),
        ),
        "/v1/studies/{study_uid}/accesses": _get(
            "Who accessed this study, newest first",
            "history",
            [
                _path("study_uid", {"type": "string", "maxLength": 64}, "Study Instance UID"),
                _query("accession", _ID_SCHEMA, "Accession number"),
                *history,
            ],
            _json(_ref("AccessPage")),
        ),
        "/v1/accessions/{accession}/accesses": _get(
            "Who accessed the study (or studies) with this accession number, newest first",
            "history",
            [_path("accession", _ID_SCHEMA, "Accession number"), *history],
            _json(_ref("AccessPage")),
        ),
        "/v1/events/{event_id}": _get(
            "One event, decoded, with its ledger position",
            "history",
            [_path("event_id", {"type": "string", "format": "uuid"}, "Event id")],
            _json({"type": "object", "required": ["event_id", "schema", "event", "ledger"]}),
        ),
        "/v1/events/{event_id}/proof": _get(
            "The event's C2SP tlog-proof (entry, inclusion proof, signed checkpoint)",
            "proofs",
            [_path("event_id", {"type": "string", "format": "uuid"}, "Event id")],
            {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
        ),
        "/v1/logs": _get(
            "Every log with its size and signed size",
            "proofs",
            [],
            _json({"type": "object", "properties": {"logs": rows}}),
        ),
        "/v1/logs/{log}/checkpoints": _get(
            "Signed checkpoints of a log, oldest first",
            "proofs",
            [
                _LOG,
                _query("after", _UINT, "Only checkpoints with a larger size"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "Page"),
            ],
            _json({"type": "object", "properties": {"origin": {"type": "string"}}}),
        ),
        "/v1/logs/{log}/index": _get(
            "The event index rows of a log, by leaf index",
            "proofs",
            [
                _LOG,
                _query("start", _START, "First leaf index"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "Page"),
            ],
            _json({"type": "object", "properties": {"rows": rows}}),
        ),
        "/v1/logs/{log}/leaves": _get(
            "Stored leaves with their indexes (base64)",
            "proofs",
            [
                _LOG,
                _query("start", _START, "First leaf index"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 4096}, "Page"),
            ],
            _json({"type": "object", "properties": {"leaves": rows}}),
        ),
        "/v1/logs/{log}/proof/inclusion": _get(
            "RFC 6962 inclusion proof",
            "proofs",
            [
                _LOG,
                _query("index", _UINT, "Leaf index", required=True),
                _query("tree_size", {"type": "integer", "minimum": 1}, "Tree size", required=True),
            ],
            _json({"type": "object", "properties": {"hashes": {"type": "array"}}}),
        ),
        "/v1/logs/{log}/proof/consistency": _get(
            "RFC 6962 consistency proof",
            "proofs",
            [
                _LOG,
                _query("first", {"type": "integer", "minimum": 1}, "Older size", required=True),
                _query("second", {"type": "integer", "minimum": 1}, "Newer size", required=True),
            ],
            _json({"type": "object", "properties": {"hashes": {"type": "array"}}}),
        ),
        "/v1/schemas": _get(
            "Registered Avro writer schemas",
            "proofs",
            [],
            _json({"type": "object", "properties": {"schemas": rows}}),
        ),
        "/logs/{log}/checkpoint": _get(
            "The newest signed checkpoint (C2SP signed note); public: no token, not recorded",
            "proofs",
            [_LOG],
            {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}},
            public=True,
            errors=("400", "404", "503"),
        ),
        "/logs/{log}/tile/{level}/{path}": _get(
            "C2SP tlog-tiles hash tile (node hashes only); public: no token, not recorded",
            "proofs",
            [
                _LOG,
                _path("level", {"type": "string", "pattern": "^[0-9]{1,2}$"}, "Tile level"),
                _path("path", {"type": "string", "maxLength": 64}, "Tile path, e.g. x001/234.p/5"),
            ],
            _TILE,
            public=True,
            errors=("400", "404", "503"),
        ),
        "/logs/{log}/tile/entries/{path}": _get(
            "C2SP tlog-tiles entry bundle: the leaves themselves (PHI; recorded)",
            "proofs",
            [_LOG, _path("path", {"type": "string", "maxLength": 64}, "Tile path, e.g. 001.p/5")],
            _TILE,
        ),
        "/v1/quarantine": _get(
            "Records that could not be appended, with raw bytes and reason",
            "operations",
            [
                _query("after", _UINT, "Only records with a larger id"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page"),
                _query("reason", {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"}, "Reason"),
            ],
            _json({"type": "object", "properties": {"records": rows}}),
        ),
        "/v1/alerts": _get(
            "Security alerts (conflicting re-sends of an event id)",
            "operations",
            [
                _query("after", _UINT, "Only alerts with a larger id"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "Page"),
            ],
            _json({"type": "object", "properties": {"alerts": rows}}),
        ),
        "/v1/investigations": {
            "post": {
                "summary": "Breach investigation: affected patients, per-state counts against "
                "the 164.406/164.408 thresholds, timeline, and the checkpoints it was computed "
                "against; opens with the verdict in one sentence (JSON summary, CSV #verdict "
                "row, printable HTML)",
                "tags": ["reports"],
                "parameters": [
                    _query("format", {"type": "string", "enum": ["json", "csv", "html"]}, "Export"),
                    _AS_OF,
                    _AS_OF_NOTE,
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["since", "until"],
                                "additionalProperties": False,
                                "properties": {
                                    "users": {"type": "array", "items": {"type": "string"}},
                                    "facility": {"type": "string"},
                                    "network_addresses": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                    },
                                    "since": _INSTANT,
                                    "until": _INSTANT,
                                },
                            }
                        }
                    },
                },
                "responses": _with_errors(
                    {
                        "description": "The report",
                        "content": {
                            "application/json": {"schema": _ref("SealedReport")},
                            "text/csv": {"schema": {"type": "string"}},
                        },
                    }
                )
                | _errors("413"),
            }
        },
        "/v1/patients/{patient_id}/disclosures": _get(
            "Accounting of disclosures (164.528): date, recipient, PHI, purpose",
            "reports",
            [
                _path("patient_id", _ID_SCHEMA, "Patient id"),
                _query("issuer", _ID_SCHEMA, "Assigning authority of the patient id"),
                _query("years", {"type": "integer", "minimum": 1, "maximum": 6}, "Lookback"),
                _query("format", {"type": "string", "enum": ["json", "csv", "html"]}, "Export"),
                _AS_OF,
                _AS_OF_NOTE,
                _AT,
            ],
            {
                "description": "The accounting",
                "content": {
                    "application/json": {"schema": _ref("SealedReport")},
                    "text/csv": {"schema": {"type": "string"}},
                    "text/html": {"schema": {"type": "string"}},
                },
            },
        ),
        "/v1/reports/critical-results": _get(
            "Critical-result relays: times per ACR category, late or read-back-less relays",
            "reports",
            [
                _query("since", _INSTANT, "Identified at or after (default: 30 days ago)"),
                _query("until", _INSTANT, "Identified before (default: now)"),
                _query("facility", _ID_SCHEMA, "Facility id"),
                *(
                    _query(
                        f"deadline_cat{n}",
                        {"type": "integer", "minimum": 1, "maximum": 43200},
                        f"CAT{n} deadline in minutes",
                    )
                    for n in (1, 2, 3)
                ),
                _query("format", {"type": "string", "enum": ["json", "csv"]}, "Export"),
                _AS_OF,
                _AS_OF_NOTE,
                _AT,
            ],
            {
                "description": "The report",
                "content": {
                    "application/json": {"schema": _ref("SealedReport")},
                    "text/csv": {"schema": {"type": "string"}},
                },
            },
        ),
        "/v1/reports/compliance": _get(
            "Compliance report: one facility's month, item by item of the teleradiology "
            "checklist (BAA, license, credential, unique user, encryption), the exceptions "
            "with their alerts, relay deadlines, audit of access and breach process",
            "reports",
            [
                _query("facility", _ID_SCHEMA, "Facility id", required=True),
                _query(
                    "month",
                    {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"},
                    "Calendar month YYYY-MM, in the rules' time zone",
                    required=True,
                ),
                _query("format", {"type": "string", "enum": ["json", "csv", "html"]}, "Export"),
                _AS_OF,
                _AS_OF_NOTE,
                {
                    **_AT,
                    "description": "Cut-off for the alert store (alerts raised, triage "
                    "recorded) and the relays' now (default: now; later than now is refused); "
                    "a re-run passes the one the report printed",
                },
            ],
            {
                "description": "The report",
                "content": {
                    "application/json": {"schema": _ref("SealedReport")},
                    "text/csv": {"schema": {"type": "string"}},
                    "text/html": {"schema": {"type": "string"}},
                },
            },
        ),
        **_alert_paths(),
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
            "post": {
                "summary": "A FHIR batch Bundle of GET entries (search, read, metadata); each "
                "entry is answered and recorded as its own read (a transaction is 422)",
                "tags": ["fhir"],
                "parameters": [_FORMAT],
                "requestBody": {
                    "required": True,
                    "content": {"application/fhir+json": {"schema": {"type": "object"}}},
                },
                "responses": _fhir_post_responses(
                    {"200": _fhir_json({"type": "object"}, "batch-response Bundle")}, "406", "422"
                ),
            },
        },
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
            "post": {
                "summary": "Ingest an AuditEvent, or a batch/transaction Bundle of them, "
                "through Kafka like any producer",
                "tags": ["fhir"],
                "parameters": [_FORMAT],
                "requestBody": {
                    "required": True,
                    "content": {"application/fhir+json": {"schema": {"type": "object"}}},
                },
                "responses": _fhir_post_responses(
                    {
                        "200": _fhir_json({"type": "object"}, "batch/transaction response"),
                        "201": _fhir_json({"type": "object"}, "Accepted (OperationOutcome)"),
                    },
                    "406",
                ),
            },
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
        "/openapi.json": _get(
            "This document", "service", [], _json({"type": "object"}), public=True, errors=("404",)
        ),
    }
    from ledger.http.openapiregistry import registry_paths  # it builds on this module

    paths.update(registry_paths())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PHI audit ledger",
            "version": "1",
            "description": (
                "Who accessed which PHI, when and why, provable against signed checkpoints. "
                "Every request except to the public routes (liveness, this document, "
                "checkpoints, hash tiles) is itself recorded in the ledger as a DICOM "
                "'Audit Log Used' event, refused ones included; its id is in the "
                "Ledger-Audit-Event header. A query parameter an operation does not list "
                "here is refused (400 unknown_parameter); errors carry a stable code; "
                "authenticated answers are Cache-Control: private, no-store."
            ),
        },
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": _schemas(),
        },
    }
