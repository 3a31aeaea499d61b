"""The FHIR server's pure parts: the CapabilityStatement claims exactly what the parser
implements, result shaping keeps what a client and an auditor need, batch Bundles are
bounded and read-only, and the resource-side matching selects what it says."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.audit import fhir
from ledger.audit.fhir.catalog import PATIENT_IDENTIFIER, accepted_names
from ledger.audit.fhir.filters import CodingFilter, Narrowing, matches
from ledger.errors import MalformedInputError
from ledger.http.openapi import document

BASE = "https://ledger.example/fhir"

#: One value per parameter the statement may list; a parameter without one fails
#: ``test_every_listed_parameter_is_parsed_and_changes_the_search``.
EXAMPLES: dict[str, str] = {
    "patient": "MRN1",
    "agent": "dr.a",
    "entity": "1.2.3",
    "date": "ge2026-01-05",
    "type": "110103",
    "action": "R",
    "outcome": "4",
    "subtype": "110127",
    "site": "site-1",
    "source": "Device/orthanc-01",
    "address": "10.0.",
    "entity-type": "2",
    "entity-role": "http://terminology.hl7.org/CodeSystem/object-role|3",
    "agent-name": "dr",
    "_count": "7",
    "_summary": "true",
    "_elements": "outcome",
    "_format": "application/fhir+json",
}


def _statement(*, writable: bool = True) -> dict[str, Any]:
    return fhir.capability_statement(
        base_url=BASE, writable=writable, software_version="1", max_batch_entries=50
    )


def _listed(statement: dict[str, Any]) -> list[dict[str, Any]]:
    (resource,) = statement["rest"][0]["resource"]
    params: list[dict[str, Any]] = resource["searchParam"]
    return params


def test_the_statement_lists_exactly_the_parsers_table() -> None:
    listed = _listed(_statement())
    names = [p["name"] for p in listed]
    assert len(names) == len(set(names))
    # Every name the parser accepts is listed, except the chain (documented on patient)
    # and the server's own page token.
    assert set(accepted_names()) - set(names) == {PATIENT_IDENTIFIER, "_cursor"}
    assert set(names) <= set(accepted_names())
    for p in listed:
        if not p["name"].startswith("_"):
            assert p["definition"] == f"http://hl7.org/fhir/SearchParameter/AuditEvent-{p['name']}"
    # ... and exactly the parameters the OpenAPI document declares for the route.
    declared = {q["name"] for q in document()["paths"]["/fhir/AuditEvent"]["get"]["parameters"]}
    assert declared == set(accepted_names())


@pytest.mark.parametrize("name", [p.name for p in fhir.SEARCH_PARAMETERS + fhir.RESULT_PARAMETERS])
def test_every_listed_parameter_is_parsed_and_changes_the_search(name: str) -> None:
    """Never claimed but ignored: adding the parameter changes the parsed search."""
    key = {"agent": "dr.a"} if name == "patient" else {"patient": "MRN1"}
    plain = fhir.parse_search({k: [v] for k, v in key.items()})
    narrowed = fhir.parse_search({**{k: [v] for k, v in key.items()}, name: [EXAMPLES[name]]})
    assert narrowed != plain
    if name != "_count":
        assert name in narrowed.query_string()


def test_the_statement_is_honest_about_security_writes_and_formats() -> None:
    statement = _statement(writable=False)
    (resource,) = statement["rest"][0]["resource"]
    assert [i["code"] for i in resource["interaction"]] == ["read", "search-type"]
    assert "create" in [i["code"] for i in _statement()["rest"][0]["resource"][0]["interaction"]]
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert statement["implementation"]["url"] == BASE
    assert all("xml" not in f for f in statement["format"])
    security = statement["rest"][0]["security"]
    assert "service" not in security  # no SMART, no OAuth
    assert "not supported" in security["description"]
    assert statement["rest"][0]["interaction"] == [{"code": "batch"}]


def test_patient_identifier_is_the_patient_and_contradictions_match_nothing() -> None:
    s = fhir.parse_search({PATIENT_IDENTIFIER: ["|MRN1"]})
    assert s.patient == "MRN1"
    assert not s.empty_range
    both = fhir.parse_search({"patient": ["Patient/MRN1"], PATIENT_IDENTIFIER: ["MRN2"]})
    assert both.empty_range
    with pytest.raises(MalformedInputError, match="carry no system"):
        fhir.parse_search({PATIENT_IDENTIFIER: ["urn:oid:1.2|MRN1"]})


def test_narrowing_goes_to_sql_with_stored_values() -> None:
    s = fhir.parse_search(
        {
            "patient": ["MRN1"],
            "outcome": ["http://hl7.org/fhir/audit-event-outcome|8,12,8"],
            "site": ["a,b"],
            "source": ["Device/p1,p2"],
        }
    )
    assert s.narrowing.outcomes == ("SERIOUS_FAILURE", "MAJOR_FAILURE")
    assert s.narrowing.sites == ("a", "b")
    assert s.narrowing.sources == ("p1", "p2")
    assert not s.narrowing.on_resources
    assert "outcome=8%2C12" in s.query_string()


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"_format": ["xml"]}, "not_acceptable"),
        ({"_format": ["text/turtle"]}, "not_acceptable"),
        ({"_format": ["application/fhir+xml;fhirVersion=4.0"]}, "not_acceptable"),
        ({"_format": ["csv"]}, "bad_request"),
        ({"_summary": ["yes"]}, "bad_request"),
        ({"_elements": ["type", "outcome"]}, "bad_request"),  # given twice
        ({"_elements": ["AuditEvent.type"]}, "bad_request"),
        ({"outcome": ["1"]}, "bad_request"),
        ({"entity-type": ["a b"]}, "bad_request"),
        ({"source": ["Device/a/b"]}, "bad_request"),
        ({"address": [" 10.0"]}, "bad_request"),
        ({"agent-name": ["x" * 300]}, "bad_request"),
    ],
)
def test_bad_result_and_narrowing_values_are_refused(
    params: dict[str, list[str]], code: str
) -> None:
    with pytest.raises(MalformedInputError) as exc:
        fhir.parse_search({"patient": ["MRN1"], **params})
    assert exc.value.code == code


def _resource() -> dict[str, Any]:
    return {
        "resourceType": "AuditEvent",
        "id": "e1",
        "extension": [
            {"url": f"{fhir.DEFAULT_BASE_URL}/StructureDefinition/ledger-position"},
            {"url": "other"},
        ],
        "type": {"code": "110103"},
        "subtype": [{"system": fhir.DCM, "code": "110127"}],
        "action": "R",
        "recorded": "2026-01-05T10:00:00Z",
        "outcome": "0",
        "agent": [{"requestor": True}],
        "source": {"site": "s"},
        "entity": [
            {"type": {"system": "t", "code": "1"}, "role": {"system": "r", "code": "1"}},
            {"type": {"system": "t", "code": "2"}, "role": {"system": "r", "code": "3"}},
        ],
    }


def test_subsets_keep_the_mandatory_elements_and_the_ledger_position() -> None:
    position_url = fhir.namespace(fhir.DEFAULT_BASE_URL).ledger_position
    resource = _resource()
    resource["extension"][0]["url"] = position_url
    full = fhir.subset(
        resource, fhir.parse_shape(None, None, None, search=True), position_url=position_url
    )
    assert full is resource
    summary = fhir.subset(
        resource, fhir.parse_shape("true", None, None, search=True), position_url=position_url
    )
    assert set(summary) == {
        "resourceType", "id", "meta", "extension", "type", "subtype", "action", "recorded",
        "outcome", "agent", "source",
    }  # fmt: skip
    assert summary["extension"] == [resource["extension"][0]]
    assert summary["meta"]["tag"] == [fhir.shaping.SUBSETTED]
    text = fhir.subset(
        resource, fhir.parse_shape("text", None, None, search=True), position_url=position_url
    )
    assert set(text) == {
        "resourceType",
        "id",
        "meta",
        "extension",
        "type",
        "recorded",
        "agent",
        "source",
    }
    elements = fhir.parse_shape(None, "entity,extension", None, search=True)
    chosen = fhir.subset(resource, elements, position_url=position_url)
    assert chosen["entity"] == resource["entity"]
    assert chosen["extension"] == resource["extension"]
    with pytest.raises(MalformedInputError):
        fhir.parse_shape("count", None, None, search=False)


def test_resource_side_matching() -> None:
    r = _resource()
    assert matches(r, Narrowing(subtypes=(CodingFilter(system=fhir.DCM, code="110127"),)))
    assert not matches(r, Narrowing(subtypes=(CodingFilter(system="x", code="110127"),)))
    assert matches(r, Narrowing(entity_types=(CodingFilter(system=None, code="2"),)))
    assert not matches(r, Narrowing(entity_roles=(CodingFilter(system=None, code="24"),)))
    # ANDed across parameters, ORed within one.
    assert matches(
        r,
        Narrowing(
            entity_types=(CodingFilter(system=None, code="9"), CodingFilter(system="t", code="1")),
            entity_roles=(CodingFilter(system="r", code="3"),),
        ),
    )
    assert not matches(
        {"resourceType": "AuditEvent"},
        Narrowing(entity_types=(CodingFilter(system=None, code="1"),)),
    )


def _batch(*entries: object, kind: str = "batch") -> dict[str, object]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def test_batch_entries_reach_only_the_read_routes() -> None:
    get = lambda url: {"request": {"method": "GET", "url": url}}  # noqa: E731
    requests = fhir.batch_requests(
        _batch(
            get("AuditEvent?patient=MRN1&_count=2"),
            get(f"{BASE}/AuditEvent/abc"),
            get("/metadata"),
            get("https://evil.example/fhir/metadata"),
            get("AuditEvent/a/_history/1"),
            get("../v1/logs"),
            {"request": {"method": "POST", "url": "AuditEvent"}},
            {"request": {"url": "metadata"}},
            "not an entry",
            get("AuditEvent?patient=%FF"),
        ),
        base_url=BASE,
    )
    assert [r.target for r in requests] == ["search", "read", "metadata", *[None] * 7]
    assert requests[0].params == {"patient": ["MRN1"], "_count": ["2"]}
    assert requests[1].event_id == "abc"
    assert [r.status for r in requests[3:]] == [
        "400 Bad Request", "404 Not Found", "404 Not Found", "405 Method Not Allowed",
        "400 Bad Request", "400 Bad Request", "400 Bad Request",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("document", "code"),
    [
        (_batch(kind="transaction"), "not_supported"),
        (_batch(kind="searchset"), "bad_request"),
        ({"resourceType": "Parameters"}, "bad_request"),
        ({"resourceType": "Bundle", "type": "batch", "entry": "x"}, "bad_request"),
        (_batch(*[{"request": {"method": "GET", "url": "metadata"}}] * 51), "too_many_entries"),
    ],
)
def test_batch_bundles_that_are_not_served(document: dict[str, object], code: str) -> None:
    with pytest.raises(MalformedInputError) as exc:
        fhir.batch_requests(document, base_url=BASE)
    assert exc.value.code == code
