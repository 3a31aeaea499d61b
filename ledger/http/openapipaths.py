"""The OpenAPI description of the history, event, log, proof, tile and operations routes
(``ledger.http.history``, ``ledger.http.proofs``, ``ledger.http.ops``), merged into
``ledger.http.openapi.document``.

Invariant: every parameter those handlers read is declared here (the boundary refuses any
other), and the paths come in the order the document lists them.
"""

from __future__ import annotations

from typing import Final

from ledger.http.openapiparts import (
    _ID_SCHEMA,
    _INSTANT,
    JsonObject,
    _cursor,
    _get,
    _json,
    _page,
    _path,
    _query,
    _ref,
)

_UINT: Final[JsonObject] = {"type": "integer", "minimum": 0, "maximum": 9223372036854775807}
_LOG: Final = _path("log", {"type": "integer", "minimum": 0, "maximum": 2147483647}, "Log id")
_START: Final[JsonObject] = {"type": "integer", "minimum": 0, "maximum": 2**62}
_TILE: Final[JsonObject] = {
    "description": "OK",
    "content": {"application/octet-stream": {"schema": {"type": "string"}}},
}


def history_paths() -> dict[str, JsonObject]:
    """Who accessed a patient, a study or an accession; what a user touched; one event."""
    return {
        "/v1/patients/{patient_id}/accesses": _accesses(
            "Who accessed this patient's PHI, newest first",
            _path("patient_id", _ID_SCHEMA, "Patient id"),
            _query("issuer", _ID_SCHEMA, "Assigning authority of the patient id"),
        ),
        "/v1/users/{user_id}/accesses": _accesses(
            "Everything one user touched, newest first (including their reads of the ledger)",
            _path("user_id", _ID_SCHEMA, "User id"),
        ),
        "/v1/studies/{study_uid}/accesses": _accesses(
            "Who accessed this study, newest first",
            _path("study_uid", {"type": "string", "maxLength": 64}, "Study Instance UID"),
            _query("accession", _ID_SCHEMA, "Accession number"),
        ),
        "/v1/accessions/{accession}/accesses": _accesses(
            "Who accessed the study (or studies) with this accession number, newest first",
            _path("accession", _ID_SCHEMA, "Accession number"),
        ),
        "/v1/events/{event_id}": _get(
            "One event, decoded, with its ledger position",
            "history",
            [_path("event_id", {"type": "string", "format": "uuid"}, "Event id")],
            _json({"type": "object", "required": ["event_id", "schema", "event", "ledger"]}),
        ),
    }


def _accesses(summary: str, *selectors: JsonObject) -> JsonObject:
    """A history: the accesses the ``selectors`` name, filtered by the history parameters."""
    return _get(summary, "history", [*selectors, *_history_parameters()], _json(_ref("AccessPage")))


def log_paths() -> dict[str, JsonObject]:
    """The logs, their leaves and index, proofs, schemas, checkpoints and tiles."""
    return {**_log_reads(), **_proofs(), **_tiles()}


def _log_reads() -> dict[str, JsonObject]:
    rows = _ref("Rows")
    return {
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
                _page(10000),
            ],
            _json({"type": "object", "properties": {"origin": {"type": "string"}}}),
        ),
        "/v1/logs/{log}/index": _get(
            "The event index rows of a log, by leaf index",
            "proofs",
            [
                _LOG,
                _query("start", _START, "First leaf index"),
                _page(10000),
            ],
            _json({"type": "object", "properties": {"rows": rows}}),
        ),
        "/v1/logs/{log}/leaves": _get(
            "Stored leaves with their indexes (base64)",
            "proofs",
            [
                _LOG,
                _query("start", _START, "First leaf index"),
                _page(4096),
            ],
            _json({"type": "object", "properties": {"leaves": rows}}),
        ),
    }


def _proofs() -> dict[str, JsonObject]:
    rows = _ref("Rows")
    return {
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
    }


def _tiles() -> dict[str, JsonObject]:
    return {
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
    }


def operations_paths() -> dict[str, JsonObject]:
    """Quarantined records and security alerts."""
    rows = _ref("Rows")
    return {
        "/v1/quarantine": _get(
            "Records that could not be appended, with raw bytes and reason",
            "operations",
            [
                _query("after", _UINT, "Only records with a larger id"),
                _page(1000),
                _query("reason", {"type": "string", "pattern": "^[a-z0-9_]{1,64}$"}, "Reason"),
            ],
            _json({"type": "object", "properties": {"records": rows}}),
        ),
        "/v1/alerts": _get(
            "Security alerts (conflicting re-sends of an event id)",
            "operations",
            [
                _query("after", _UINT, "Only alerts with a larger id"),
                _page(1000),
            ],
            _json({"type": "object", "properties": {"alerts": rows}}),
        ),
    }


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
        _page(1000, "Page size"),
        _cursor("next_cursor of the previous page (keeps that page's snapshot)"),
    ]
