"""The small builders and shared values of the OpenAPI document (``ledger.http.openapi``).

Invariant: each builder returns a fresh fragment that is pure data (no route, no schema of
its own); every refusal it describes points at the one ``Error`` component schema.
"""

from __future__ import annotations

from typing import Final

JsonObject = dict[str, object]

_NULLABLE_STRING: Final[JsonObject] = {"type": ["string", "null"]}
_ID_SCHEMA: Final[JsonObject] = {"type": "string", "minLength": 1, "maxLength": 256}
_INSTANT: Final[JsonObject] = {"type": "string", "format": "date-time"}
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


def _page(maximum: int, description: str = "Page") -> JsonObject:
    """``limit``: how many to answer, at most ``maximum``."""
    return _query("limit", {"type": "integer", "minimum": 1, "maximum": maximum}, description)


def _cursor(description: str, name: str = "cursor") -> JsonObject:
    """``cursor``: the opaque ``next_cursor`` the previous page ended with."""
    return _query(
        name, {"type": "string", "maxLength": 8192, "pattern": "^[A-Za-z0-9_-]*$"}, description
    )


def _path(name: str, schema: JsonObject, description: str) -> JsonObject:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": schema,
        "description": description,
    }


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
