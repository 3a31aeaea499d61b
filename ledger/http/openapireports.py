"""The OpenAPI description of the HIPAA report routes (``ledger.http.reports``): breach
investigation, accounting of disclosures, critical-result relays, the compliance report.

Invariant: every report is a ``SealedReport`` computed against signed checkpoints, so each
one declares ``as_of`` and ``as_of_note`` (and, when it can be re-run as of a time, ``at``).
"""

from __future__ import annotations

from typing import Final

from ledger.http.openapiparts import (
    _ID_SCHEMA,
    _INSTANT,
    JsonObject,
    _errors,
    _get,
    _path,
    _query,
    _ref,
    _with_errors,
)


def _repeatable(name: str, items: JsonObject, description: str) -> JsonObject:
    """A query parameter that may be given more than once (``?name=a&name=b``)."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "style": "form",
        "explode": True,
        "schema": {"type": "array", "items": items},
        "description": description,
    }


#: ``as_of``: the signed checkpoints a report is computed against (repeatable).
_AS_OF: Final = _repeatable(
    "as_of",
    {"type": "string", "pattern": "^[^\\s+]+:[1-9][0-9]*$"},
    "A signed checkpoint <origin>:<size> to compute the report against "
    "(repeatable, one per log; default: the latest of each log). The report reads no "
    "event at or past these sizes, names them, and prints its digest (also in the "
    "Report-Digest header)",
)
_AS_OF_NOTE: Final = _repeatable(
    "as_of_note",
    {"type": "string", "format": "byte"},
    "A signed checkpoint note (standard base64), as a report printed it in "
    "as_of_checkpoints (repeatable): accepted when a trusted key signed it and this "
    "ledger's leaves have its root at its size, even if this database never stored it "
    "(a replayed copy)",
)
_AT: Final = {
    "name": "at",
    "in": "query",
    "required": False,
    "schema": {"type": "string", "format": "date-time"},
    "description": "The time the report is made as of (default: now); a re-run passes "
    "the one the report printed",
}


def report_paths() -> dict[str, JsonObject]:
    """The reports, each exported as JSON, CSV and (most) printable HTML."""
    return {
        "/v1/investigations": _investigation(),
        "/v1/patients/{patient_id}/disclosures": _disclosures(),
        "/v1/reports/critical-results": _critical_results(),
        "/v1/reports/compliance": _compliance(),
    }


def _sealed(description: str, *exports: str) -> JsonObject:
    """A report's answer: the sealed JSON report, or its text export in each of ``exports``."""
    content: JsonObject = {"application/json": {"schema": _ref("SealedReport")}}
    content.update({kind: {"schema": {"type": "string"}} for kind in exports})
    return {"description": description, "content": content}


def _export(*formats: str) -> JsonObject:
    return _query("format", {"type": "string", "enum": list(formats)}, "Export")


def _investigation() -> JsonObject:
    return {
        "post": {
            "summary": "Breach investigation: affected patients, per-state counts against "
            "the 164.406/164.408 thresholds, timeline, and the checkpoints it was computed "
            "against; opens with the verdict in one sentence (JSON summary, CSV #verdict "
            "row, printable HTML)",
            "tags": ["reports"],
            "parameters": [_export("json", "csv", "html"), _AS_OF, _AS_OF_NOTE],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _investigation_body()}},
            },
            "responses": _with_errors(_sealed("The report", "text/csv")) | _errors("413"),
        }
    }


def _investigation_body() -> JsonObject:
    return {
        "type": "object",
        "required": ["since", "until"],
        "additionalProperties": False,
        "properties": {
            "users": {"type": "array", "items": {"type": "string"}},
            "facility": {"type": "string"},
            "network_addresses": {"type": "array", "items": {"type": "string"}},
            "since": _INSTANT,
            "until": _INSTANT,
        },
    }


def _disclosures() -> JsonObject:
    return _get(
        "Accounting of disclosures (164.528): date, recipient, PHI, purpose",
        "reports",
        [
            _path("patient_id", _ID_SCHEMA, "Patient id"),
            _query("issuer", _ID_SCHEMA, "Assigning authority of the patient id"),
            _query("years", {"type": "integer", "minimum": 1, "maximum": 6}, "Lookback"),
            _export("json", "csv", "html"),
            _AS_OF,
            _AS_OF_NOTE,
            _AT,
        ],
        _sealed("The accounting", "text/csv", "text/html"),
    )


def _critical_results() -> JsonObject:
    return _get(
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
            _export("json", "csv"),
            _AS_OF,
            _AS_OF_NOTE,
            _AT,
        ],
        _sealed("The report", "text/csv"),
    )


def _compliance() -> JsonObject:
    return _get(
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
            _export("json", "csv", "html"),
            _AS_OF,
            _AS_OF_NOTE,
            {
                **_AT,
                "description": "Cut-off for the alert store (alerts raised, triage "
                "recorded) and the relays' now (default: now; later than now is refused); "
                "a re-run passes the one the report printed",
            },
        ],
        _sealed("The report", "text/csv", "text/html"),
    )
