"""The OpenAPI document lists exactly the routes the app serves, with their methods."""

from __future__ import annotations

import re
from typing import Any, cast

from ledger.api import create_app
from ledger.api.app import routes
from ledger.api.openapi import document
from ledger.auth import ROLE_PERMISSIONS, Permission, Role


def served() -> set[tuple[str, str]]:
    unused = cast(Any, object())
    app = create_app(
        reader=unused,
        tokens=unused,
        recorder=unused,
        report_source=unused,
        fhir_submitter=unused,
        openapi=document(),
    )
    out = set()
    for route in app.router.routes():
        if route.method == "HEAD":
            continue
        path = route.resource.canonical if route.resource is not None else ""
        out.add((route.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)))
    return out


def documented() -> set[tuple[str, str]]:
    paths = cast(dict[str, dict[str, object]], document()["paths"])
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_document_matches_the_routes() -> None:
    assert documented() == served()


def test_every_documented_operation_says_how_it_fails() -> None:
    paths = cast(dict[str, dict[str, dict[str, Any]]], document()["paths"])
    for path, ops in paths.items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert "200" in codes or "201" in codes, (method, path)
            if op.get("security") != []:
                assert {"400", "401", "403", "503"} <= codes, (method, path)


def test_only_service_routes_are_public_and_each_role_is_least_privilege() -> None:
    public = {r.name for r in routes() if r.permission is None}
    assert public == {"healthz"}
    assert Permission.FHIR_WRITE not in ROLE_PERMISSIONS[Role.INVESTIGATOR]
    assert Permission.FHIR_WRITE not in ROLE_PERMISSIONS[Role.AUDITOR]
    assert Permission.HISTORY not in ROLE_PERMISSIONS[Role.AUDITOR]
    assert Permission.COMPLIANCE not in ROLE_PERMISSIONS[Role.INVESTIGATOR]
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)
