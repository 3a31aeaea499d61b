"""The OpenAPI document lists exactly the routes the app serves, with their methods, and
every kind of access entry the API returns."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, datetime
from typing import Any, cast

from consumers.projection import event_index
from ledger.audit.auth import ROLE_PERMISSIONS, Permission, Role
from ledger.audit.query import AccessEntry, LedgerPosition
from ledger.http import create_app
from ledger.http.accesses import entry_json
from ledger.http.app import routes
from ledger.http.openapi import document
from producers.events import Actor, EventOutcome, Facility, SecurityEvent


def served() -> set[tuple[str, str]]:
    unused = cast(Any, object())
    app = create_app(
        reader=unused,
        tokens=unused,
        recorder=unused,
        report_source=unused,
        fhir_submitter=unused,
        alert_book=unused,
        alert_triage=unused,
        registry_book=unused,
        registry_writes=unused,
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
            assert codes & {"200", "201", "202"}, (method, path)
            if op.get("security") != []:
                assert {"400", "401", "403", "503"} <= codes, (method, path)


def test_only_phi_free_routes_are_public_and_each_role_is_least_privilege() -> None:
    public = {r.name for r in routes() if r.permission is None}
    assert public == {"healthz", "checkpoint", "hash_tile"}
    assert Permission.FHIR_WRITE not in ROLE_PERMISSIONS[Role.INVESTIGATOR]
    assert Permission.FHIR_WRITE not in ROLE_PERMISSIONS[Role.AUDITOR]
    # The auditor reads no PHI by patient, user, study or event id, by any route.
    for by_key in (Permission.HISTORY, Permission.FHIR_READ, Permission.INVESTIGATE):
        assert by_key not in ROLE_PERMISSIONS[Role.AUDITOR]
    assert Permission.ENTRIES not in ROLE_PERMISSIONS[Role.INVESTIGATOR]
    assert Permission.COMPLIANCE not in ROLE_PERMISSIONS[Role.INVESTIGATOR]
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)


def test_access_entries_cover_every_indexed_kind_including_security_events() -> None:
    """Every kind the consumer indexes is in the AccessEntry schema, and a security event's
    entry names its DICOM EventID and no patient when it named none."""
    components = cast(dict[str, Any], document()["components"])
    kinds = set(components["schemas"]["AccessEntry"]["properties"]["kind"]["enum"])
    assert kinds == {"phi_access", "critical_result_relay", "audit_log_used", "security_event"}

    login = SecurityEvent(
        producer_id="atna",
        producer_seq=1,
        event_time=datetime(2026, 3, 9, 6, 58, 44, tzinfo=UTC),
        facility=Facility(id="stmarys-boston"),
        actor=Actor(user_id="rad004.kowalski", role="person", name="Ana Kowalski"),
        dicom_event_id="110114",
        event_type_code="110122",
        outcome=EventOutcome.MINOR_FAILURE,
        network_address="198.51.100.23",
    )
    row = dataclasses.asdict(event_index(login))
    for column in ("producer_id", "producer_seq", "disclosed", "patients"):
        del row[column]
    entry = AccessEntry(**row, position=LedgerPosition(log_id=1, origin="o", leaf_index=0))
    body = entry_json(entry)
    assert body["kind"] in kinds
    assert body["event"] == {"dicom_event_id": "110114", "name": "User Authentication"}
    assert body["patient"] is None
    assert body["study"] is None
    assert (body["action"], body["outcome"]) == ("E", "MINOR_FAILURE")
    assert body["user"] == {
        "id": "rad004.kowalski",
        "name": "Ana Kowalski",
        "role": "person",
        "organization": None,
    }
    assert body["event_id"] == str(login.event_id)
