"""Interoperability: HAPI FHIR's R4 instance validator accepts what ``ledger.audit.fhir`` produces.

Every resource here is built by ``ledger.audit.fhir`` from events encoded by the producer library
and decoded by ``ledger.audit.records``, exactly as the API serves them.
``fhir/Validate.java`` checks
them offline against the R4 core definitions and terminology (HAPI FHIR 8,
``FhirInstanceValidator``). All resources go through one JVM (``reports`` below). The
negative cases, validated in the same run, show that acceptance is not vacuous: each
deliberately broken resource is rejected at the element that was broken.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from integrations.atna.dicom_audit import events_from_dicom
from integrations.simulator import Simulator
from ledger.audit import fhir
from ledger.audit.query import LedgerPosition
from ledger.audit.records import SchemaSet, StoredSchema
from producers.codec import Codec, load_shipped_schemas
from producers.events import (
    PURPOSES_OF_USE,
    Actor,
    AttemptOutcome,
    AuditEvent,
    AuditLogUsed,
    CriticalResultRelay,
    DisclosedPatient,
    DisclosedRange,
    EventAction,
    EventOutcome,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    Recipient,
    RelayAttempt,
    RelayMethod,
    SecurityEvent,
)
from tests.interop.fhir_validator import (
    ValidationReport,
    build_fhir_validator,
    run_fhir_validator,
    tools_available,
    validate_resources,
)
from tests.support import ROOT

SELF_URL = "https://ledger.example/fhir/AuditEvent?patient=MRN1&date=ge2026-01-05&_count=4"
NEXT_URL = SELF_URL + "&_cursor=MjAyNi0wMS0wNVQxODowMDowMCswMDowMHwwfDE"

_CODEC = Codec()
_SCHEMAS = SchemaSet(
    StoredSchema(fingerprint=s.fingerprint, full_name=s.full_name, schema_json=s.schema_json)
    for s in load_shipped_schemas()
)


def _resource(event: AuditEvent, leaf_index: int) -> dict[str, Any]:
    event = event.stamped(producer_id="orthanc-01", producer_seq=leaf_index)
    name, record = _SCHEMAS.decode(_CODEC.encode(event))
    position = LedgerPosition(log_id=1, origin="ledger.example/phi-access/0", leaf_index=leaf_index)
    return fhir.audit_event(name, record, event_id=event.event_id, position=position)


def _kind(event: AuditEvent) -> str:
    if isinstance(event, PhiAccessEvent):
        return f"{event.dicom_event_id}-{event.event_type_code or 'none'}-{event.outcome.value}"
    return type(event).__name__


#: Every kind of event the simulator produces (DICOM EventID, EventTypeCode, outcome).
SIMULATED_KINDS = frozenset(
    {
        "110103-none-SUCCESS",  # a radiologist or referring physician reads a study
        "110107-none-SUCCESS",  # a technologist imports a study
        "110112-none-SUCCESS",  # a worklist query
        "110106-none-SUCCESS",  # an export (disclosure) to an outside recipient
        "110113-110127-SUCCESS",  # break the glass
        "110105-none-SUCCESS",  # a deletion
        "110105-none-MINOR_FAILURE",  # a refused deletion
        "CriticalResultRelay",
    }
)


@functools.cache
def simulated() -> dict[str, AuditEvent]:
    """The first event of each kind in a deterministic simulation."""
    found: dict[str, AuditEvent] = {}
    for event in Simulator(seed=2026).events(2000, relay_every=25):
        found.setdefault(_kind(event), event)
    return found


WHEN = datetime(2026, 1, 5, 18, 0, tzinfo=UTC)


def _access(**changes: Any) -> PhiAccessEvent:
    base = next(e for e in simulated().values() if isinstance(e, PhiAccessEvent))
    return dataclasses.replace(
        base, event_id=uuid.uuid5(uuid.NAMESPACE_URL, repr(changes)), **changes
    )


def _extra_events() -> dict[str, AuditEvent]:
    relay = next(e for e in simulated().values() if isinstance(e, CriticalResultRelay))
    purposes: dict[str, AuditEvent] = {
        f"purpose-{code}": _access(purpose_of_use=code) for code in sorted(PURPOSES_OF_USE)
    }
    extras: dict[str, AuditEvent] = {
        "login": _access(
            dicom_event_id="110114",
            event_type_code="110122",
            action=EventAction.EXECUTE,
            study=None,
        ),
        "logout-failed": _access(
            dicom_event_id="110114",
            event_type_code="110123",
            action=EventAction.EXECUTE,
            outcome=EventOutcome.MAJOR_FAILURE,
            study=None,
        ),
        "serious-failure": _access(outcome=EventOutcome.SERIOUS_FAILURE),
        "local-subtype": _access(event_type_code="X-LOCAL.1"),
        "audit-log-used-as-access": _access(dicom_event_id="110101", study=None),
        "hostname": _access(network_address="pacs-ws-12.stmarys.local"),
        "ipv6": _access(network_address="2001:db8::7"),
        "no-optionals": _access(
            study=None,
            network_address=None,
            purpose_of_use=None,
            facility=Facility(id="f"),
            actor=Actor(user_id="u", role="system"),
            patient=Patient(id="p"),
        ),
        "details": _access(details={"a": "1", "empty": "", "unicode ü": "ß → ∑"}),
        # PhiAccessEvent v2: a query that names nobody and returned three patients (more
        # than it lists), and one that matched nobody.
        "query-disclosed-v2": _access(
            dicom_event_id="110112",
            action=EventAction.EXECUTE,
            patient=None,
            study=None,
            details={"query": "PatientName=SMITH*"},
            disclosed=(
                DisclosedPatient(id="MRN1", issuer="hosp", state="MA", studies=("1.2.3.4",)),
                DisclosedPatient(id="MRN2", issuer="hosp"),
                DisclosedPatient(id="MRN3", issuer="other", studies=("1.2.3.5", "1.2.3.6")),
            ),
            disclosed_truncated=True,
            disclosed_total=12,
        ),
        "query-empty-v2": _access(
            dicom_event_id="110112",
            action=EventAction.EXECUTE,
            patient=None,
            study=None,
            details={"query": "StudyDate=20261206"},
        ),
        "export-minimal": _access(dicom_event_id="110106", recipient=Recipient(name="DPH")),
        "export-full": _access(
            dicom_event_id="110106",
            recipient=Recipient(name="Harbor Law", address="100 Federal St", organization="HL"),
            purpose_of_use="LEGAL",
        ),
        "relay-unreached": dataclasses.replace(
            relay,
            event_id=uuid.UUID(int=77),
            communicated_at=None,
            acknowledged_at=None,
            finding=None,
            attempts=(
                RelayAttempt(
                    at=relay.identified_at + timedelta(minutes=3),
                    method=RelayMethod.PHONE,
                    outcome=AttemptOutcome.LEFT_MESSAGE,
                    note="voicemail, paged the covering resident",
                ),
            ),
        ),
        "audit-log-used": AuditLogUsed(
            event_id=uuid.UUID(int=78),
            event_time=WHEN,
            facility=Facility(id="philedger", name="PHI audit ledger"),
            actor=Actor(user_id="auditor.kim", role="auditor", name="Kim Auditor"),
            query=LedgerQuery(
                method="GET",
                path="/fhir/AuditEvent",
                status=200,
                parameters={"patient": "MRN1234567", "date": "ge2026-01-01"},
                results=3,
            ),
            network_address="127.0.0.1",
            patient=Patient(id="MRN1234567", issuer="stmarys-boston", state="MA"),
            disclosed=(
                DisclosedRange(log="philedger/phi-access/0", start=0, end=3),
                DisclosedRange(log="philedger/phi-access/2", start=17, end=18),
            ),
        ),
        "audit-log-used-refused": AuditLogUsed(
            event_id=uuid.UUID(int=79),
            event_time=WHEN,
            facility=Facility(id="philedger"),
            actor=Actor(user_id="someone", role="investigator"),
            query=LedgerQuery(method="POST", path="/fhir/AuditEvent", status=403),
            outcome=EventOutcome.MINOR_FAILURE,
        ),
    }
    return extras | purposes | _security_events()


def _security(**changes: Any) -> SecurityEvent:
    base = SecurityEvent(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, f"security {sorted(changes.items())!r}"),
        event_time=WHEN,
        facility=Facility(id="stmarys-boston", name="St. Mary's"),
        actor=Actor(user_id="rad004.kowalski", name="Ana Kowalski", role="radiologist"),
        dicom_event_id="110114",
        event_type_code="110122",
        network_address="10.20.4.17",
        details={"audit_source_id": "viewer-auth"},
    )
    return dataclasses.replace(base, **changes)


#: DICOM audit messages of the corpus that become security events.
SECURITY_CORPUS = (
    "user-login.xml",
    "user-logout.xml",
    "user-login-failure-4.xml",
    "user-login-failure-8.xml",
    "emergency-override-start.xml",
    "emergency-override-stop.xml",
    "dcm4chee-application-start.xml",
)


def _security_events() -> dict[str, AuditEvent]:
    """SecurityEvent resources: login, logout and failures, emergency override started and
    stopped (with the patient, BTG), application activity, network entry; and every corpus
    message that maps to one."""
    override = Patient(id="MRN9900112", issuer="stmarys-boston", state="MA")
    events: dict[str, AuditEvent] = {
        "security-login": _security(),
        "security-logout": _security(event_type_code="110123"),
        "security-login-failed": _security(
            outcome=EventOutcome.MINOR_FAILURE,
            actor=Actor(user_id="rad004.kowalski", role="unspecified"),
            details={"outcome_description": "invalid password"},
        ),
        "security-login-locked": _security(outcome=EventOutcome.SERIOUS_FAILURE),
        "security-override-start": _security(
            dicom_event_id="110113",
            event_type_code="110127",
            patient=override,
            purpose_of_use="BTG",
            actor=Actor(
                user_id="er.patel", role="ed-attending", organization="ED", npi="1234567893"
            ),
        ),
        "security-override-stop": _security(
            dicom_event_id="110113", event_type_code="110138", patient=override
        ),
        "security-application-start": _security(
            dicom_event_id="110100",
            event_type_code="110120",
            actor=Actor(user_id="dcm4chee-arc", role="system"),
            network_address="archive.example",
        ),
        "security-network-entry": _security(
            dicom_event_id="110108", event_type_code="110124", network_address="2001:db8::7"
        ),
        "security-bare": _security(event_type_code=None, network_address=None, details={}),
    }
    corpus = ROOT / "tests" / "corpus" / "dicom-audit"
    for name in SECURITY_CORPUS:
        (event,) = events_from_dicom((corpus / name).read_bytes())
        assert isinstance(event, SecurityEvent), name
        events[f"corpus-{name.removesuffix('.xml')}"] = event
    return events


def _broken(resource: dict[str, Any], change: Any) -> dict[str, Any]:
    copied = copy.deepcopy(resource)
    change(copied)
    return copied


def _unreadable_outcome() -> dict[str, Any]:
    """The warning of a search that could not read a detached period (docs/api.md)."""
    from ledger.audit.fhir.outcomes import unreadable_outcome
    from ledger.audit.unreadable import UnreadablePeriod

    march = UnreadablePeriod(
        period="2021-03", state="detached", archive="ab" * 32,
        first_event_time=datetime(2021, 3, 1, tzinfo=UTC),
        last_event_time=datetime(2021, 4, 2, tzinfo=UTC),
    )  # fmt: skip
    outcome = unreadable_outcome([march])
    assert outcome is not None
    return dict(outcome)


@functools.cache
def cases() -> tuple[dict[str, dict[str, Any]], dict[str, tuple[dict[str, Any], str]]]:
    """(valid cases by name, broken cases by name with the location that must be flagged)."""
    valid: dict[str, dict[str, Any]] = {}
    for i, (kind, event) in enumerate(sorted(simulated().items())):
        valid[f"simulated-{kind}"] = _resource(event, 100 + i)
    for i, (name, event) in enumerate(_extra_events().items()):
        valid[name] = _resource(event, 2**40 + i)
    listed = [valid[f"simulated-{k}"] for k in sorted(SIMULATED_KINDS)[:4]]
    valid["searchset"] = fhir.searchset_bundle(
        listed, self_url=SELF_URL, next_url=NEXT_URL, total=40
    )
    valid["searchset-relative-last-page"] = fhir.searchset_bundle(
        listed[:2], self_url="/fhir/AuditEvent?agent=rad001.chen", next_url=None
    )
    valid["searchset-empty"] = fhir.searchset_bundle([], self_url=SELF_URL, next_url=None, total=0)
    valid["searchset-with-unreadable-periods"] = fhir.searchset_bundle(
        listed[:1], self_url=SELF_URL, next_url=None, outcome=_unreadable_outcome()
    )
    issue = fhir.Issue(
        severity="error",
        code="invalid",
        diagnostics="AuditEvent.agent: needs the requesting user (an agent, requestor=true)",
        expression="AuditEvent.agent",
    )
    valid["operation-outcome"] = fhir.operation_outcome([issue])
    outcomes = [
        fhir.EntryOutcome(status="201 Created", location=f"AuditEvent/{uuid.UUID(int=1)}"),
        fhir.EntryOutcome(status="400 Bad Request", issues=(issue,)),
    ]
    valid["batch-response"] = fhir.batch_response_bundle(outcomes, transaction=False)
    valid["transaction-response"] = fhir.batch_response_bundle(outcomes[:1], transaction=True)

    read = valid["simulated-110103-none-SUCCESS"]
    broken: dict[str, tuple[dict[str, Any], str]] = {
        "action": (_broken(read, lambda r: r.update(action="X")), "AuditEvent.action"),
        "recorded": (
            _broken(read, lambda r: r.update(recorded="2026-01-05 18:00")),
            "AuditEvent.recorded",
        ),
        "outcome": (_broken(read, lambda r: r.update(outcome="2")), "AuditEvent.outcome"),
        "no-type": (_broken(read, lambda r: r.pop("type")), "AuditEvent"),
        "unknown-dcm-code": (
            _broken(read, lambda r: r["type"].update(code="999999", display="Nonsense")),
            "AuditEvent.type",
        ),
        "no-source": (_broken(read, lambda r: r.pop("source")), "AuditEvent"),
        "network-type": (
            _broken(read, lambda r: r["agent"][0]["network"].update(type="9")),
            "AuditEvent.agent[0].network.type",
        ),
        "extension-value-and-parts": (
            _broken(read, lambda r: r["extension"][0].update(valueString="x")),
            "AuditEvent.extension[0]",
        ),
        "entity-name-and-query": (
            _broken(
                valid["simulated-110112-none-SUCCESS"],
                lambda r: r["entity"][-1].update(name="both"),
            ),
            "AuditEvent.entity[1]",  # a query has no study: patient, query
        ),
        "bundle-search-mode": (
            _broken(valid["searchset"], lambda b: b["entry"][0]["search"].update(mode="bogus")),
            "Bundle.entry[0].search.mode",
        ),
        "bundle-type": (
            _broken(valid["searchset"], lambda b: b.update(type="search")),
            "Bundle.type",
        ),
    }
    return valid, broken


@pytest.fixture(scope="module")
def reports() -> dict[str, ValidationReport]:
    """Every case, valid and broken, validated in one JVM."""
    if not tools_available():
        pytest.fail(
            "a JDK 17+ (java and javac) and Maven are required for tests/interop/test_fhir_r4.py;"
            " install them and put them on PATH; these tests must not be skipped",
            pytrace=False,
        )
    build_fhir_validator()
    valid, broken = cases()
    names = [*valid, *(f"broken-{n}" for n in broken)]
    resources = [*valid.values(), *(r for r, _ in broken.values())]
    return dict(zip(names, validate_resources(resources), strict=True))


def test_every_simulated_kind_is_covered() -> None:
    assert set(simulated()) == SIMULATED_KINDS


@pytest.mark.parametrize("name", list(cases()[0]))
def test_resource_is_valid_r4(reports: dict[str, ValidationReport], name: str) -> None:
    report = reports[name]
    assert report.valid, report.explain()
    assert report.issues == ()


@pytest.mark.parametrize("name", list(cases()[1]))
def test_broken_resource_is_rejected(reports: dict[str, ValidationReport], name: str) -> None:
    report = reports[f"broken-{name}"]
    location = cases()[1][name][1]
    assert not report.valid, report.explain()
    assert any(
        issue["location"] == location or issue["location"].startswith(location + ".")
        for issue in report.issues
    ), report.explain()


def test_audit_events_carry_their_ledger_position(reports: dict[str, ValidationReport]) -> None:
    valid, _ = cases()
    for name, resource in valid.items():
        if resource["resourceType"] == "AuditEvent":
            position = resource["extension"][0]
            assert position["url"].endswith("/StructureDefinition/ledger-position"), name
            assert reports[name].valid


def test_unusable_input_exits_with_status_2() -> None:
    for raw in ("not json", "[]", '[{"no": "resourceType"}]', "42", ""):
        proc = run_fhir_validator(raw, timeout=60)
        assert proc.returncode == 2, (raw, proc.stdout, proc.stderr)
        assert proc.stdout == ""
        assert proc.stderr.startswith("fhir-r4-validate: ")


def test_a_lone_resource_on_stdin_is_reported_with_all_severities() -> None:
    # A second, small JVM run: stdin may hold one resource rather than an array.
    resource = {"resourceType": "Basic", "code": {"text": "x"}}
    proc = run_fhir_validator(json.dumps(resource), "--all", timeout=120)
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)["results"]
    assert (result["source"], result["resourceType"], result["valid"]) == ("stdin", "Basic", True)
