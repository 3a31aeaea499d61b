"""The route table in docs/api.md is the app's routes: every route, its permission, the
roles holding it, whether it returns PHI and whether it is recorded. And the table is
honest by construction: only PHI-free routes are public or guarded by ``proofs``."""

from __future__ import annotations

from typing import Any, cast

import pytest

from ledger.audit.auth import ROLE_PERMISSIONS, Permission, Role
from ledger.errors import MalformedInputError
from ledger.http import create_app
from ledger.http.app import Route, served_routes
from ledger.http.common import identifier
from ledger.http.openapi import document
from tests.route_table import API_DOC, Row, canonical, documented_table
from tests.support import ROOT

README = ROOT / "README.md"


def all_routes() -> tuple[Route, ...]:
    """Every route of a fully configured app (reports, FHIR writes, OpenAPI)."""
    unused = cast(Any, object())
    app = create_app(
        reader=unused, tokens=unused, recorder=unused, report_source=unused,
        fhir_submitter=unused, alert_book=unused, alert_triage=unused, registry_book=unused,
        registry_writes=unused, openapi=document(),
    )  # fmt: skip
    table = served_routes(app)
    registered = {
        (r.method, canonical(r.resource.canonical))
        for r in app.router.routes()
        if r.resource is not None and r.method != "HEAD"
    }
    assert registered == {(r.method, canonical(r.path)) for r in table}
    return table


def as_row(route: Route) -> Row:
    public = route.permission is None
    return Row(
        method=route.method,
        path=canonical(route.path),
        permission="public" if public else str(route.permission),
        roles=frozenset({"anyone (no token)"})
        if public
        else frozenset(r.value for r in Role if route.permission in ROLE_PERMISSIONS[r]),
        phi=route.phi,
        recorded=not public,
    )


def test_the_documented_table_is_exactly_the_apps_routes() -> None:
    rows = documented_table()
    assert len(rows) == len({(r.method, r.path) for r in rows}), "a route is listed twice"
    by_route = {(r.method, r.path): r for r in rows}
    served = {(r.method, canonical(r.path)): as_row(r) for r in all_routes()}
    assert set(by_route) - set(served) == set(), "documented but not served"
    assert set(served) - set(by_route) == set(), "served but missing from docs/api.md"
    for key, row in served.items():
        assert by_route[key] == row, key


def test_a_table_missing_a_route_or_with_a_wrong_role_fails() -> None:
    """The comparison above can fail: drop a row or widen a role and it sees it."""
    text = API_DOC.read_text()
    served = {(r.method, canonical(r.path)): as_row(r) for r in all_routes()}
    dropped = text.replace("| GET | `/v1/alerts` | operations | auditor, admin | no | yes |\n", "")
    assert len(documented_table(dropped)) == len(served) - 1
    widened = text.replace(
        "| GET | `/v1/logs/{log}/index` | entries | auditor, admin |",
        "| GET | `/v1/logs/{log}/index` | entries | investigator, auditor, admin |",
    )
    row = next(r for r in documented_table(widened) if r.path == "/v1/logs/{log}/index")
    assert row != served[("GET", "/v1/logs/{log}/index")]


def test_no_phi_through_a_public_route_or_the_phi_free_permission() -> None:
    for route in all_routes():
        if route.permission is None or route.permission is Permission.PROOFS:
            assert not route.phi, route.name
    # Public: the liveness probe, this API's description, the FHIR CapabilityStatement,
    # checkpoints and hash tiles.
    assert {r.name for r in all_routes() if r.permission is None} == {
        "healthz", "openapi", "fhir_metadata", "checkpoint", "hash_tile",
    }  # fmt: skip


def test_the_auditor_reads_no_phi_by_key_and_the_investigator_none_in_bulk() -> None:
    by_key = {"patient_accesses", "user_accesses", "study_accesses", "event_detail",
              "event_proof", "fhir_search", "fhir_read", "investigation"}  # fmt: skip
    bulk = {"leaves", "index_rows", "entry_bundle"}
    for route in all_routes():
        assert route.permission is not None or route.name not in by_key | bulk
        if route.name in by_key:
            assert route.permission not in ROLE_PERMISSIONS[Role.AUDITOR], route.name
        if route.name in bulk:
            assert route.permission not in ROLE_PERMISSIONS[Role.INVESTIGATOR], route.name


def test_the_readme_role_table_names_every_role_and_points_to_the_table() -> None:
    text = README.read_text()
    for role in Role:
        assert f"| `{role.value}` |" in text
    assert "docs/api.md" in text


@pytest.mark.parametrize("blank", [" ", "   ", "\u3000", "\u2003 "])
def test_a_blank_id_is_malformed(blank: str) -> None:
    """A blank patient id is refused as input (400), not passed on to an audit record the
    schema would refuse (which failed closed as 503 and left no record)."""
    with pytest.raises(MalformedInputError, match="not all blank"):
        identifier(blank, "patient id")
    assert identifier(" MRN 1 ", "patient id") == " MRN 1 "
