"""The OpenAPI 3.1 document served at ``/openapi.json``.

Invariant: it lists exactly the routes the app registers (a unit test compares
them), with every parameter the handlers read and the shape of every answer; the
schemathesis suite checks the running API against it.

Each group of paths is described in its own module (``openapipaths``, ``openapireports``,
``openapialerts``, ``openapifhir``, ``openapiregistry``), built from the pieces in
``openapiparts``, with the component schemas in ``openapischemas``; this module puts
them together, in the order the document lists them.
"""

from __future__ import annotations

from ledger.http.openapialerts import alert_paths
from ledger.http.openapifhir import fhir_paths
from ledger.http.openapiparts import JsonObject, _get, _json
from ledger.http.openapipaths import history_paths, log_paths, operations_paths
from ledger.http.openapiregistry import registry_paths
from ledger.http.openapireports import report_paths
from ledger.http.openapischemas import component_schemas

__all__ = ["JsonObject", "document"]


def document() -> JsonObject:
    """The OpenAPI document of the API as ``create_app`` wires it."""
    paths: dict[str, JsonObject] = {
        **_liveness(),
        **history_paths(),
        **log_paths(),
        **operations_paths(),
        **report_paths(),
        **alert_paths(),
        **fhir_paths(),
        **_this_document(),
    }
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
            "schemas": component_schemas(),
        },
    }


def _liveness() -> dict[str, JsonObject]:
    return {
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
    }


def _this_document() -> dict[str, JsonObject]:
    return {
        "/openapi.json": _get(
            "This document", "service", [], _json({"type": "object"}), public=True, errors=("404",)
        ),
    }
