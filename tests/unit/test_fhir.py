"""FHIR R4 AuditEvent: ledger.audit.fhir (stored event -> resource, search, bundles) and
integrations.fhir (resource -> event), their round trip, and hostile input to both.

FHIR conformance of the resources themselves is checked by HAPI FHIR's validator in
tests/interop/test_fhir_r4.py.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations import fhir as pfhir
from integrations.fhir import vocabulary as inbound_vocabulary
from integrations.simulator import Simulator
from ledger.audit import fhir
from ledger.audit.query import Cursor, LedgerPosition, Snapshot
from ledger.audit.records import JsonValue, SchemaSet, StoredSchema
from ledger.errors import MalformedInputError
from producers.codec import Codec, load_shipped_schemas
from producers.errors import EventValidationError
from producers.events import (
    PURPOSES_OF_USE,
    AcrCategory,
    Actor,
    AuditEvent,
    AuditLogUsed,
    CriticalResultRelay,
    DisclosedRange,
    EventAction,
    EventOutcome,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    Recipient,
    RelayMethod,
    RelayRecipient,
    SecurityEvent,
    Study,
)
from schemas import fhir as schemas_fhir
from tests.support import ROOT

NOW = datetime(2026, 1, 6, tzinfo=UTC)
WHEN = datetime(2026, 1, 5, 18, 30, 15, 123456, tzinfo=UTC)
POSITION = LedgerPosition(log_id=3, origin="ledger.example/phi-access/2", leaf_index=2**40 + 5)
DCM = "http://dicom.nema.org/resources/ontology/DCM"
BASE = fhir.DEFAULT_BASE_URL

_CODEC = Codec()
_SCHEMAS = SchemaSet(
    StoredSchema(fingerprint=s.fingerprint, full_name=s.full_name, schema_json=s.schema_json)
    for s in load_shipped_schemas()
)


def stored(event: AuditEvent, seq: int = 7) -> tuple[str, dict[str, JsonValue], AuditEvent]:
    """What the ledger holds for ``event``: encoded by producers, decoded by
    ledger.audit.records."""
    event = event.stamped(producer_id="orthanc-01", producer_seq=seq)
    name, record = _SCHEMAS.decode(_CODEC.encode(event))
    return name, record, event


def resource_of(
    event: AuditEvent, position: LedgerPosition = POSITION, **kwargs: Any
) -> dict[str, Any]:
    name, record, stamped = stored(event)
    return fhir.audit_event(name, record, event_id=stamped.event_id, position=position, **kwargs)


def access(**changes: Any) -> PhiAccessEvent:
    base = PhiAccessEvent(
        event_id=uuid.UUID("0b8a2e7c-1111-4222-8333-444455556666"),
        event_time=WHEN,
        facility=Facility(id="stmarys-boston", name="St. Mary's"),
        actor=Actor(
            user_id="rad004.kowalski",
            name="Ana Kowalski",
            role="radiologist",
            organization="Nocturne Teleradiology Group",
            npi="1234567893",
        ),
        dicom_event_id="110103",
        action=EventAction.READ,
        patient=Patient(id="MRN1234567", issuer="stmarys-boston", state="MA"),
        study=Study(
            uid="2.25.1234567890",
            accession="A1234",
            modality="CT",
            sop_classes=("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4"),
            instances=120,
        ),
        network_address="10.1.2.3",
        purpose_of_use="TREAT",
    )
    return dataclasses.replace(base, **changes)


def relay(**changes: Any) -> CriticalResultRelay:
    base = CriticalResultRelay(
        event_id=uuid.UUID("1b8a2e7c-1111-4222-8333-444455556666"),
        event_time=WHEN + timedelta(minutes=30),
        facility=Facility(id="mercy-tulsa"),
        category=AcrCategory.CAT1,
        finding="tension pneumothorax",
        patient=Patient(id="MRN7654321", issuer="mercy-tulsa"),
        study=Study(uid="2.25.99"),
        identified_at=WHEN,
        communicated_at=WHEN + timedelta(minutes=12),
        acknowledged_at=WHEN + timedelta(minutes=13),
        sender=Actor(user_id="rad001.chen", role="radiologist", npi="1234567893"),
        recipient=RelayRecipient(name="Dr. Okafor", role="ordering-physician"),
        method=RelayMethod.PHONE,
        read_back=True,
    )
    return dataclasses.replace(base, **changes)


def ext(resource: dict[str, Any], url: str) -> list[dict[str, Any]]:
    return [e for e in resource.get("extension", []) if e["url"] == url]


def simulated(count: int, seed: int = 11) -> Iterator[AuditEvent]:
    yield from Simulator(seed=seed).events(count, relay_every=20)


NS = fhir.FhirNamespace.under(BASE)


# --------------------------------------------------------------------------- round trip


def test_every_simulated_access_event_survives_the_round_trip() -> None:
    checked = 0
    kinds: set[tuple[str, str]] = set()
    for i, event in enumerate(simulated(1500)):
        name, record, original = stored(event, seq=i)
        resource = fhir.audit_event(name, record, event_id=original.event_id, position=POSITION)
        json.dumps(resource)  # JSON-safe all the way down
        if not isinstance(original, PhiAccessEvent):
            continue
        back = pfhir.event_from_fhir(resource, keep_producer=True)
        assert back == original
        kinds.add((original.dicom_event_id, original.outcome.value))
        checked += 1
    assert checked > 1000
    assert {k for k, _ in kinds} == {"110103", "110107", "110112", "110106", "110113", "110105"}


@pytest.mark.parametrize(
    "event",
    [
        access(),
        access(study=None, recipient=None, purpose_of_use=None, network_address=None),
        access(actor=Actor(user_id="u", role="system")),  # only the required actor fields
        access(patient=Patient(id="p")),
        access(study=Study(uid="1.2.3")),
        access(dicom_event_id="110114", event_type_code="110122", action=EventAction.EXECUTE),
        access(
            dicom_event_id="110114", event_type_code="110123", outcome=EventOutcome.MAJOR_FAILURE
        ),
        access(event_type_code="X-LOCAL.1"),  # not a DCM code we ship: private system
        access(purpose_of_use="OVERSIGHT"),  # accepted by producers, unknown to HL7
        access(network_address="pacs-ws-12.stmarys.local"),
        access(network_address="2001:db8::7"),
        access(details={"a": "1", "empty": "", "query": "not a query event", "ü": "ß"}),
        access(
            dicom_event_id="110112",
            action=EventAction.EXECUTE,
            study=None,
            details={"query": "QIDO-RS /studies?PatientID=MRN1&ü", "other": "x"},
        ),
        access(
            dicom_event_id="110106",
            recipient=Recipient(name="Harbor Law", address="100 Federal St", organization="HL"),
            purpose_of_use="LEGAL",
        ),
        access(dicom_event_id="110106", recipient=Recipient(name="Only a name")),
        access(
            dicom_event_id="110105", action=EventAction.DELETE, outcome=EventOutcome.SERIOUS_FAILURE
        ),
        access(event_time=datetime(2026, 1, 5, 18, 30, tzinfo=UTC)),  # no microseconds
    ],
    ids=lambda e: f"{e.dicom_event_id}-{e.event_type_code}-{sorted(e.details)}",
)
def test_round_trip_preserves_every_field(event: PhiAccessEvent) -> None:
    name, record, original = stored(event)
    resource = fhir.audit_event(name, record, event_id=original.event_id, position=POSITION)
    back = pfhir.event_from_fhir(resource, keep_producer=True, now=NOW)
    assert back == original
    # Without keep_producer the emitter stamps its own producer; the observer is kept.
    fresh = pfhir.event_from_fhir(resource, now=NOW)
    assert (fresh.producer_id, fresh.producer_seq) == (None, None)
    assert fresh.details == {**original.details, "source.observer": "orthanc-01"}
    assert dataclasses.replace(fresh, details=original.details) == dataclasses.replace(
        original, producer_id=None, producer_seq=None
    )


def test_round_trip_with_another_base_url() -> None:
    base = "https://audit.hospital.example/fhir/"
    name, record, original = stored(access(purpose_of_use="OVERSIGHT", details={"k": "v"}))
    resource: Any = fhir.audit_event(
        name, record, event_id=original.event_id, position=POSITION, base_url=base
    )
    assert ext(resource, "https://audit.hospital.example/fhir/StructureDefinition/ledger-position")
    assert pfhir.event_from_fhir(resource, keep_producer=True, base_url=base, now=NOW) == original
    # Read with the wrong base, our code systems and extensions are foreign.
    with pytest.raises(EventValidationError) as err:
        pfhir.event_from_fhir(resource, keep_producer=True, now=NOW)
    assert err.value.field == "AuditEvent.purposeOfEvent[0]"
    del resource["purposeOfEvent"], resource["agent"][0]["purposeOfUse"]
    with pytest.raises(EventValidationError) as err:
        pfhir.event_from_fhir(resource, keep_producer=True, now=NOW)
    assert err.value.field == "AuditEvent.source.extension"


def test_empty_optional_strings_come_back_as_none() -> None:
    # (an empty network_address is not an IP address or host name: refused, not mapped)
    event = access(facility=Facility(id="f", name=""), network_address=None)
    name, record, original = stored(event)
    resource = fhir.audit_event(name, record, event_id=original.event_id, position=POSITION)
    assert "" not in json.dumps(resource).split('"')[1::2]  # no empty FHIR string anywhere
    back = pfhir.event_from_fhir(resource, keep_producer=True, now=NOW)
    assert back.facility.name is None
    assert back.network_address is None


def test_the_defaults_and_urls_of_both_directions_agree() -> None:
    assert pfhir.DEFAULT_BASE_URL == fhir.DEFAULT_BASE_URL == schemas_fhir.DEFAULT_BASE_URL
    names = inbound_vocabulary.names(BASE)
    for f in dataclasses.fields(names):
        assert getattr(names, f.name) == getattr(NS, f.name), f.name
    assert names == fhir.namespace(BASE)
    assert set(fhir.HL7_PURPOSES_OF_USE) <= PURPOSES_OF_USE
    not_hl7 = PURPOSES_OF_USE - fhir.HL7_PURPOSES_OF_USE
    assert not_hl7 == {"OVERSIGHT"}


def test_the_fhir_vocabulary_has_one_home() -> None:
    # Both directions read their code systems and URLs from schemas.fhir: a copy on either
    # side could drift from the other, and resources would stop mapping back.
    literal = re.compile(r"[\"'](https?://\w|urn:dicom)|StructureDefinition|CodeSystem")
    for package in ("ledger/audit/fhir", "integrations/fhir"):
        for path in sorted((ROOT / package).glob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                assert not literal.search(line), f"{package}/{path.name}:{n}: {line.strip()}"


# --------------------------------------------------------------------------- mapping


def test_access_event_mapping() -> None:
    r = resource_of(access())
    assert r["resourceType"] == "AuditEvent"
    assert r["id"] == "0b8a2e7c-1111-4222-8333-444455556666"
    assert r["type"] == {"system": DCM, "code": "110103", "display": "DICOM Instances Accessed"}
    assert "subtype" not in r
    assert (r["action"], r["outcome"]) == ("R", "0")
    assert r["recorded"] == "2026-01-05T18:30:15.123456Z"
    assert r["purposeOfEvent"] == [
        {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}
            ]
        }
    ]
    user, producer = r["agent"]
    assert user["requestor"] is True
    assert user["who"] == {"identifier": {"value": "rad004.kowalski"}, "display": "Ana Kowalski"}
    assert user["type"]["coding"][0]["code"] == "IRCP"
    assert user["role"] == [
        {"coding": [{"system": NS.workforce_role, "code": "radiologist"}], "text": "radiologist"}
    ]
    assert user["network"] == {"address": "10.1.2.3", "type": "2"}
    assert ext(user, NS.agent_npi)[0]["valueIdentifier"] == {
        "system": "http://hl7.org/fhir/sid/us-npi",
        "value": "1234567893",
    }
    assert ext(user, NS.agent_organization)[0]["valueString"] == "Nocturne Teleradiology Group"
    assert user["purposeOfUse"] == r["purposeOfEvent"]
    assert producer == {
        "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
        "who": {"identifier": {"value": "orthanc-01"}},
        "requestor": False,
    }
    source = r["source"]
    assert source["site"] == "stmarys-boston"
    assert source["observer"] == {"identifier": {"value": "orthanc-01"}}
    assert ext(source, NS.producer_sequence)[0]["valueDecimal"] == 7
    assert ext(source, NS.site_name)[0]["valueString"] == "St. Mary's"
    patient, study = r["entity"]
    assert patient["what"]["type"] == "Patient"
    assert patient["what"]["identifier"]["value"] == "MRN1234567"
    assert patient["what"]["identifier"]["assigner"] == {"display": "stmarys-boston"}
    assert (patient["type"]["code"], patient["role"]["code"]) == ("1", "1")
    assert patient["detail"] == [{"type": "state", "valueString": "MA"}]
    identifier = study["what"]["identifier"]
    assert identifier["system"] == "urn:dicom:uid"
    assert identifier["value"] == "urn:oid:2.25.1234567890"
    assert identifier["type"]["coding"][0]["code"] == "110180"
    assert (study["type"]["code"], study["role"]["code"]) == ("2", "3")
    assert [d["type"] for d in study["detail"]] == [
        "accession",
        "modality",
        "sop-class",
        "sop-class",
        "instances",
    ]


def test_ledger_position_is_in_the_resource() -> None:
    r = resource_of(access())
    (position,) = ext(r, NS.ledger_position)
    parts = {p["url"]: p for p in position["extension"]}
    assert parts["origin"]["valueString"] == POSITION.origin
    assert parts["logId"]["valueInteger"] == 3
    assert parts["leafIndex"]["valueDecimal"] == 2**40 + 5  # beyond a FHIR integer
    assert r["extension"][0] is position  # first, so a reader finds it without searching


@pytest.mark.parametrize(
    ("changes", "user_type"),
    [
        ({"action": EventAction.READ}, "IRCP"),
        ({"action": EventAction.EXECUTE}, "IRCP"),
        ({"action": EventAction.CREATE, "dicom_event_id": "110107"}, "AUT"),
        ({"action": EventAction.UPDATE}, "AUT"),
        ({"action": EventAction.DELETE, "dicom_event_id": "110105"}, "AGNT"),
        ({"dicom_event_id": "110106"}, "INF"),
    ],
)
def test_user_agent_type_follows_balp(changes: dict[str, Any], user_type: str) -> None:
    assert resource_of(access(**changes))["agent"][0]["type"]["coding"][0]["code"] == user_type


@pytest.mark.parametrize(
    ("outcome", "code"),
    [
        (EventOutcome.SUCCESS, "0"),
        (EventOutcome.MINOR_FAILURE, "4"),
        (EventOutcome.SERIOUS_FAILURE, "8"),
        (EventOutcome.MAJOR_FAILURE, "12"),
    ],
)
def test_outcome_codes(outcome: EventOutcome, code: str) -> None:
    assert resource_of(access(outcome=outcome))["outcome"] == code


def test_login_subtype_and_export_disclosure() -> None:
    login = resource_of(access(dicom_event_id="110114", event_type_code="110122"))
    assert login["type"]["display"] == "User Authentication"
    assert login["subtype"] == [{"system": DCM, "code": "110122", "display": "Login"}]
    local = resource_of(access(event_type_code="X1"))
    assert local["subtype"] == [{"system": NS.event_type_code, "code": "X1"}]
    export = resource_of(
        access(dicom_event_id="110106", recipient=Recipient(name="DPH", address="250 Wash St"))
    )
    assert export["subtype"] == [
        {
            "system": "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle",
            "code": "disclose",
            "display": "Disclose Record Lifecycle Event",
        }
    ]
    recipient = export["agent"][2]
    assert recipient["type"]["coding"][0]["code"] == "IRCP"
    assert recipient["requestor"] is False
    assert recipient["who"] == {"display": "DPH"}
    assert recipient["location"] == {"display": "250 Wash St"}


def test_query_details_become_a_query_entity() -> None:
    r = resource_of(
        access(dicom_event_id="110112", study=None, details={"query": "QIDO ü", "page": "2"})
    )
    query = r["entity"][-1]
    assert query["role"]["code"] == "24"
    assert base64.b64decode(query["query"]).decode() == "QIDO ü"
    (detail,) = ext(r, NS.event_detail)
    assert detail["extension"] == [
        {"url": "key", "valueString": "page"},
        {"url": "value", "valueString": "2"},
    ]


def test_private_purpose_of_use_keeps_the_resource_in_hl7_terms() -> None:
    r = resource_of(access(purpose_of_use="OVERSIGHT"))
    assert r["purposeOfEvent"][0]["coding"][0] == {"system": NS.purpose_of_use, "code": "OVERSIGHT"}


def test_relay_mapping() -> None:
    r = resource_of(relay())
    assert r["type"] == {
        "system": NS.private_codes,
        "code": "CRR",
        "display": "Critical Result Relay",
    }
    assert NS.private_codes.endswith("/CodeSystem/99PHILEDGER")
    assert (r["action"], r["outcome"]) == ("E", "0")
    assert r["period"] == {
        "start": "2026-01-05T18:30:15.123456Z",
        "end": "2026-01-05T18:43:15.123456Z",
    }
    sender, recipient, producer = r["agent"]
    assert sender["requestor"] is True
    assert sender["type"]["coding"][0]["code"] == "AUT"
    assert recipient["who"] == {"display": "Dr. Okafor"}
    assert recipient["role"][0]["text"] == "ordering-physician"
    assert producer["type"]["coding"][0]["code"] == "110150"
    patient, study, communication = r["entity"]
    assert patient["what"]["identifier"]["value"] == "MRN7654321"
    assert study["what"]["identifier"]["value"] == "urn:oid:2.25.99"
    assert communication["type"]["code"] == "Communication"
    assert communication["description"] == "tension pneumothorax"
    details = {d["type"]: d["valueString"] for d in communication["detail"]}
    assert details["category"] == "CAT1"
    assert details["read-back"] == "true"


def test_unreached_relay_is_a_minor_failure_without_an_end() -> None:
    r = resource_of(relay(communicated_at=None, acknowledged_at=None))
    assert r["outcome"] == "4"
    assert r["period"] == {"start": "2026-01-05T18:30:15.123456Z"}


def test_a_relay_cannot_be_posted_back() -> None:
    with pytest.raises(EventValidationError) as err:
        pfhir.event_from_fhir(resource_of(relay()), now=NOW)
    assert err.value.field == "AuditEvent.type"
    assert "CriticalResultRelay" in str(err.value)


def audit_log_used(**changes: Any) -> AuditLogUsed:
    base = AuditLogUsed(
        event_id=uuid.UUID("2b8a2e7c-1111-4222-8333-444455556666"),
        event_time=WHEN,
        facility=Facility(id="philedger"),
        actor=Actor(user_id="auditor.kim", role="auditor"),
        query=LedgerQuery(
            method="GET",
            path="/v1/patients/MRN1234567/accesses",
            status=200,
            parameters={"limit": "20", "issuer": "stmarys-boston"},
            results=17,
        ),
        network_address="127.0.0.1",
        patient=Patient(id="MRN1234567", issuer="stmarys-boston"),
    )
    return dataclasses.replace(base, **changes)


def test_audit_log_used_mapping() -> None:
    r = resource_of(audit_log_used())
    assert r["type"] == {"system": DCM, "code": "110101", "display": "Audit Log Used"}
    assert (r["action"], r["outcome"]) == ("R", "0")
    user, producer = r["agent"]
    assert user["requestor"] is True
    assert user["who"] == {"identifier": {"value": "auditor.kim"}}
    assert user["role"][0]["text"] == "auditor"
    assert user["network"] == {"address": "127.0.0.1", "type": "2"}
    assert producer["who"] == {"identifier": {"value": "orthanc-01"}}
    log, patient = r["entity"]
    assert (log["type"]["code"], log["role"]["code"]) == ("2", "13")
    assert log["what"] == {"identifier": {"value": "/v1/patients/MRN1234567/accesses"}}
    assert base64.b64decode(log["query"]).decode() == (
        "GET /v1/patients/MRN1234567/accesses?issuer=stmarys-boston&limit=20"
    )
    assert {d["type"]: d["valueString"] for d in log["detail"]} == {
        "method": "GET",
        "status": "200",
        "results": "17",
    }
    assert patient["what"]["identifier"]["value"] == "MRN1234567"
    bare = resource_of(
        audit_log_used(
            patient=None,
            network_address=None,
            outcome=EventOutcome.MINOR_FAILURE,
            query=LedgerQuery(method="GET", path="/v1/logs", status=404),
        )
    )
    assert bare["outcome"] == "4"
    assert [e["role"]["code"] for e in bare["entity"]] == ["13"]
    assert base64.b64decode(bare["entity"][0]["query"]) == b"GET /v1/logs"
    assert "network" not in bare["agent"][0]
    # The ledger records reads of itself; they are not accepted from outside.
    with pytest.raises(EventValidationError) as err:
        pfhir.event_from_fhir(r, now=NOW)
    assert err.value.field == "AuditEvent.entity[0]"
    assert "object-role 13" in str(err.value)


def test_audit_log_used_v2_shows_what_the_read_disclosed() -> None:
    ranges = (
        DisclosedRange(log="l/t/0", start=0, end=3),
        DisclosedRange(log="l/t/0", start=7, end=8),
        DisclosedRange(log="l/t/1", start=2, end=4),
    )
    r = resource_of(audit_log_used(patient=None, disclosed=ranges, disclosed_coarsened=True))
    details = {d["type"]: d["valueString"] for d in r["entity"][0]["detail"]}
    assert details["disclosed"] == "l/t/0#0-3;l/t/0#7-8;l/t/1#2-4"
    assert details["disclosed_coarsened"] == "true"
    assert "disclosed" not in {
        d["type"] for d in resource_of(audit_log_used())["entity"][0]["detail"]
    }


def security(**changes: Any) -> SecurityEvent:
    base = SecurityEvent(
        event_id=uuid.UUID("3b8a2e7c-1111-4222-8333-444455556666"),
        event_time=WHEN,
        facility=Facility(id="stmarys-boston"),
        actor=Actor(user_id="rad004.kowalski", name="Ana Kowalski", role="radiologist"),
        dicom_event_id="110114",
        event_type_code="110122",
        network_address="10.20.4.17",
        details={"audit_source_id": "viewer-auth"},
    )
    return dataclasses.replace(base, **changes)


EXTRA_SECURITY_ROLE_TYPE = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
SEC = {"system": NS.private_codes, "code": "SEC", "display": "Security Event"}


def test_login_is_a_balp_user_authentication_audit_event() -> None:
    r = resource_of(security())
    assert r["type"] == {"system": DCM, "code": "110114", "display": "User Authentication"}
    assert r["subtype"] == [{"system": DCM, "code": "110122", "display": "Login"}, SEC]
    assert (r["action"], r["outcome"], r["recorded"]) == ("E", "0", "2026-01-05T18:30:15.123456Z")
    user, producer = r["agent"]
    human = {"system": EXTRA_SECURITY_ROLE_TYPE, "code": "humanuser", "display": "human user"}
    assert user["type"] == {"coding": [human]}
    assert user["requestor"] is True
    assert user["who"] == {"identifier": {"value": "rad004.kowalski"}, "display": "Ana Kowalski"}
    assert user["network"] == {"address": "10.20.4.17", "type": "2"}
    assert producer["who"] == {"identifier": {"value": "orthanc-01"}}
    assert "entity" not in r  # a login names no patient
    assert "purposeOfEvent" not in r
    (detail,) = ext(r, NS.event_detail)
    assert detail["extension"] == [
        {"url": "key", "valueString": "audit_source_id"},
        {"url": "value", "valueString": "viewer-auth"},
    ]


def test_logout_failure_and_emergency_override_mappings() -> None:
    logout = resource_of(security(event_type_code="110123"))
    assert logout["subtype"][0]["display"] == "Logout"
    failed = resource_of(security(outcome=EventOutcome.SERIOUS_FAILURE))
    assert failed["outcome"] == "8"
    override = resource_of(
        security(
            dicom_event_id="110113",
            event_type_code="110127",
            patient=Patient(id="MRN9900112", issuer="stmarys-boston", state="MA"),
            purpose_of_use="BTG",
        )
    )
    assert override["type"]["display"] == "Security Alert"
    assert override["subtype"][0] == {
        "system": DCM,
        "code": "110127",
        "display": "Emergency Override Started",
    }
    btg = {"coding": [{"system": fhir.V3_ACT_REASON, "code": "BTG"}]}
    assert override["purposeOfEvent"] == [btg]
    assert override["agent"][0]["purposeOfUse"] == [btg]
    (patient,) = override["entity"]
    assert patient["what"]["identifier"]["value"] == "MRN9900112"
    assert patient["detail"] == [{"type": "state", "valueString": "MA"}]
    stopped = resource_of(security(dicom_event_id="110113", event_type_code="110138"))
    assert stopped["subtype"][0]["display"] == "Emergency Override Stopped"
    app = resource_of(
        security(
            dicom_event_id="110100",
            event_type_code="110120",
            actor=Actor(user_id="dcm4chee-arc", role="system"),
        )
    )
    assert app["agent"][0]["type"] == {
        "coding": [{"system": DCM, "code": "110150", "display": "Application"}]
    }
    assert app["subtype"][0] == {"system": DCM, "code": "110120", "display": "Application Start"}


@pytest.mark.parametrize(
    "event",
    [
        security(),
        security(event_type_code="110123", details={}),
        security(outcome=EventOutcome.MINOR_FAILURE, actor=Actor(user_id="x", role="unspecified")),
        security(
            dicom_event_id="110113",
            event_type_code="110127",
            patient=Patient(id="MRN9900112", issuer="stmarys-boston", state="MA"),
            purpose_of_use="BTG",
            actor=Actor(
                user_id="er.patel", role="ed-attending", organization="ED", npi="1234567893"
            ),
        ),
        security(dicom_event_id="110100", event_type_code=None, network_address=None),
        security(event_type_code="X-LOCAL.1", purpose_of_use="OVERSIGHT"),
        security(details={"query": "not a query entity", "empty": ""}),
    ],
    ids=lambda e: f"{e.dicom_event_id}-{e.event_type_code}-{e.patient is not None}",
)
def test_security_event_round_trip(event: SecurityEvent) -> None:
    name, record, original = stored(event)
    resource = fhir.audit_event(name, record, event_id=original.event_id, position=POSITION)
    json.dumps(resource)
    assert pfhir.event_from_fhir(resource, keep_producer=True, now=NOW) == original
    fresh = pfhir.event_from_fhir(resource, now=NOW)
    assert isinstance(fresh, SecurityEvent)
    assert (fresh.producer_id, fresh.producer_seq) == (None, None)
    assert fresh.details["source.observer"] == "orthanc-01"


def test_a_served_access_with_a_security_event_id_stays_an_access() -> None:
    """The ledger's own resources say their schema: a PhiAccessEvent with EventID 110114 and
    no study comes back a PhiAccessEvent; the same resource from elsewhere (no ledger
    position) is a security event, as a foreign login is."""
    event = access(
        dicom_event_id="110114", event_type_code="110122", action=EventAction.EXECUTE, study=None
    )
    name, record, original = stored(event)
    resource = fhir.audit_event(name, record, event_id=original.event_id, position=POSITION)
    assert pfhir.event_from_fhir(resource, keep_producer=True, now=NOW) == original
    foreign = copy.deepcopy(resource)
    foreign["extension"] = [e for e in foreign["extension"] if e["url"] != NS.ledger_position]
    back = pfhir.event_from_fhir(foreign, keep_producer=True, now=NOW)
    assert isinstance(back, SecurityEvent)
    assert back.patient == original.patient
    assert (back.dicom_event_id, back.event_type_code) == ("110114", "110122")


#: The FHIR R4 User Authentication example (AuditEvent/example-login), as another system
#: would post it: no role, no ledger extensions.
FOREIGN_LOGIN: dict[str, Any] = {
    "resourceType": "AuditEvent",
    "id": "8bfb5541-047f-5baa-8c4b-097202ed0b13",
    "type": {"system": DCM, "code": "110114", "display": "User Authentication"},
    "subtype": [{"system": DCM, "code": "110122", "display": "Login"}],
    "action": "E",
    "recorded": "2026-01-05T23:41:23Z",
    "outcome": "0",
    "agent": [
        {
            "type": {"coding": [{"system": EXTRA_SECURITY_ROLE_TYPE, "code": "humanuser"}]},
            "who": {"identifier": {"value": "95"}, "display": "Grahame Grieve"},
            "requestor": True,
            "network": {"address": "127.0.0.1", "type": "2"},
        },
        {
            "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"identifier": {"value": "2.16.840.1.113883.4.2"}},
            "requestor": False,
            "network": {"address": "Workstation1.ehr.familyclinic.com", "type": "1"},
        },
    ],
    "source": {
        "site": "Cloud",
        "observer": {"display": "hl7connect.healthintersections.com.au"},
        "type": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "3",
                "display": "Web Server",
            }
        ],
    },
}


def test_a_foreign_login_becomes_a_security_event() -> None:
    event = pfhir.event_from_fhir(FOREIGN_LOGIN, now=NOW)
    assert event == SecurityEvent(
        event_id=uuid.UUID(FOREIGN_LOGIN["id"]),
        event_time=datetime(2026, 1, 5, 23, 41, 23, tzinfo=UTC),
        facility=Facility(id="Cloud"),
        actor=Actor(user_id="95", name="Grahame Grieve", role="person"),
        dicom_event_id="110114",
        event_type_code="110122",
        action=EventAction.EXECUTE,
        outcome=EventOutcome.SUCCESS,
        network_address="127.0.0.1",
        details={"source.observer": "hl7connect.healthintersections.com.au"},
    )
    # In a Bundle next to a PHI access: each entry becomes its own schema.
    read = resource_of(access())
    submission = pfhir.events_from_fhir(
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"resource": FOREIGN_LOGIN}, {"resource": read}],
        },
        now=NOW,
    )
    assert submission.ok
    assert [type(e) for e in submission.events] == [SecurityEvent, PhiAccessEvent]


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (  # the ledger's marker on an EventID that is not a security one
            lambda r: r["type"].update(code="110103", display="DICOM Instances Accessed"),
            "AuditEvent.subtype[1]",
            "security EventID",
        ),
        (
            lambda r: r["subtype"].append({"system": NS.private_codes, "code": "XYZ"}),
            "AuditEvent.subtype[2]",
            "cannot be mapped",
        ),
        (
            lambda r: r.setdefault("entity", []).append(
                {
                    "what": {"identifier": {"system": "urn:dicom:uid", "value": "urn:oid:2.25.1"}},
                    "type": {"system": fhir.AUDIT_ENTITY_TYPE, "code": "2"},
                }
            ),
            "AuditEvent.entity[0]",
            "names no study",
        ),
        (
            lambda r: r["agent"].append(
                {
                    "type": {"coding": [{"system": fhir.V3_PARTICIPATION_TYPE, "code": "IRCP"}]},
                    "who": {"display": "Mercy"},
                    "requestor": False,
                }
            ),
            "AuditEvent.agent[2]",
            "no recipient",
        ),
        (
            lambda r: r["type"].update(code="110101"),
            "AuditEvent.subtype[1]",
            "security EventID",
        ),
    ],
)
def test_security_event_resources_that_do_not_map(change: Any, path: str, message: str) -> None:
    resource = copy.deepcopy(resource_of(security()))
    change(resource)
    with pytest.raises(EventValidationError) as err:
        pfhir.event_from_fhir(resource, now=NOW)
    assert err.value.field == path
    assert message in str(err.value)


def test_a_foreign_security_alert_that_names_a_study_is_an_access() -> None:
    """A Security Alert naming a patient and a study records access to those images."""
    resource = resource_of(
        access(dicom_event_id="110113", event_type_code="110127", purpose_of_use="BTG")
    )
    resource["extension"] = [e for e in resource["extension"] if e["url"] != NS.ledger_position]
    event = pfhir.event_from_fhir(resource, now=NOW)
    assert isinstance(event, PhiAccessEvent)
    assert event.study is not None


def test_audit_event_rejects_mismatched_or_malformed_input() -> None:
    name, record, event = stored(access())
    with pytest.raises(MalformedInputError, match="does not match"):
        fhir.audit_event(name, record, event_id=uuid.uuid4(), position=POSITION)
    with pytest.raises(MalformedInputError, match="no FHIR AuditEvent mapping"):
        fhir.audit_event(
            "philedger.audit.Other", record, event_id=event.event_id, position=POSITION
        )
    broken = copy.deepcopy(record)
    broken["actor"] = "not a record"
    with pytest.raises(MalformedInputError, match="actor"):
        fhir.audit_event(name, broken, event_id=event.event_id, position=POSITION)
    broken = copy.deepcopy(record)
    broken["event_time"] = "2026-01-05T18:30:15"  # no offset
    with pytest.raises(MalformedInputError, match="event_time"):
        fhir.audit_event(name, broken, event_id=event.event_id, position=POSITION)
    with pytest.raises(MalformedInputError, match="base URL"):
        fhir.audit_event(name, record, event_id=event.event_id, position=POSITION, base_url="x")
    with pytest.raises(MalformedInputError):
        fhir.audit_event(
            name,
            record,
            event_id=event.event_id,
            position=LedgerPosition(log_id=1, origin="", leaf_index=0),
        )


# --------------------------------------------------------------------------- bundles


def test_searchset_bundle_shape() -> None:
    resources = [resource_of(e) for e in simulated(5)]
    bundle: Any = fhir.searchset_bundle(
        resources,
        self_url="https://api.example/fhir/AuditEvent?patient=MRN1&_count=5",
        next_url="https://api.example/fhir/AuditEvent?patient=MRN1&_count=5&_cursor=abc",
        total=12,
    )
    assert bundle["resourceType"] == "Bundle"
    assert bundle["type"] == "searchset"
    assert bundle["total"] == 12
    assert bundle["link"] == [
        {"relation": "self", "url": "https://api.example/fhir/AuditEvent?patient=MRN1&_count=5"},
        {
            "relation": "next",
            "url": "https://api.example/fhir/AuditEvent?patient=MRN1&_count=5&_cursor=abc",
        },
    ]
    assert [e["fullUrl"] for e in bundle["entry"]] == [
        f"https://api.example/fhir/AuditEvent/{r['id']}" for r in resources
    ]
    assert all(e["search"] == {"mode": "match"} for e in bundle["entry"])
    assert [e["resource"] for e in bundle["entry"]] == resources


def test_searchset_bundle_last_page_and_relative_links() -> None:
    resources = [resource_of(e) for e in simulated(2)]
    bundle: Any = fhir.searchset_bundle(
        resources, self_url="/fhir/AuditEvent?agent=x", next_url=None
    )
    assert [link["relation"] for link in bundle["link"]] == ["self"]
    assert "total" not in bundle
    assert [e["fullUrl"] for e in bundle["entry"]] == [f"urn:uuid:{r['id']}" for r in resources]
    empty = fhir.searchset_bundle([], self_url="/fhir/AuditEvent", next_url=None, total=0)
    assert "entry" not in empty
    assert empty["total"] == 0


def test_searchset_bundle_rejects_bad_input() -> None:
    r = resource_of(access())
    with pytest.raises(MalformedInputError, match="twice"):
        fhir.searchset_bundle([r, r], self_url="https://h/fhir/AuditEvent", next_url=None)
    with pytest.raises(MalformedInputError):
        fhir.searchset_bundle(
            [{"resourceType": "AuditEvent"}], self_url="https://h/f/AuditEvent", next_url=None
        )
    with pytest.raises(MalformedInputError):
        fhir.searchset_bundle([], self_url="", next_url=None)
    with pytest.raises(MalformedInputError):
        fhir.searchset_bundle([], self_url="/x", next_url=None, total=-1)


def test_operation_outcome_and_batch_response() -> None:
    issue = fhir.Issue(
        severity="error",
        code="invalid",
        diagnostics="AuditEvent.agent: needs the requesting user",
        expression="AuditEvent.agent",
    )
    oo = fhir.operation_outcome([issue])
    assert oo == {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "invalid",
                "diagnostics": "AuditEvent.agent: needs the requesting user",
                "expression": ["AuditEvent.agent"],
            }
        ],
    }
    with pytest.raises(MalformedInputError):
        fhir.operation_outcome([])
    bundle: Any = fhir.batch_response_bundle(
        [
            fhir.EntryOutcome(status="201 Created", location="AuditEvent/abc"),
            fhir.EntryOutcome(status="400 Bad Request", issues=(issue,)),
        ],
        transaction=False,
    )
    assert bundle["type"] == "batch-response"
    assert bundle["entry"][0] == {
        "response": {"status": "201 Created", "location": "AuditEvent/abc"}
    }
    assert bundle["entry"][1]["response"]["outcome"] == oo
    assert fhir.batch_response_bundle([], transaction=True)["type"] == "transaction-response"
    with pytest.raises(MalformedInputError):
        fhir.batch_response_bundle([fhir.EntryOutcome(status="created")], transaction=False)


# --------------------------------------------------------------------------- search


def q(**params: str | list[str]) -> dict[str, list[str]]:
    return {k: v if isinstance(v, list) else [v] for k, v in params.items()}


def test_search_defaults() -> None:
    s = fhir.parse_search({})
    assert s == fhir.AuditEventSearch()
    assert s.count == fhir.DEFAULT_COUNT == 100
    assert (s.since, s.until, s.cursor) == (None, None, None)


def test_search_with_every_parameter() -> None:
    cursor = Cursor(event_time=WHEN, event_id=uuid.UUID(int=5), snapshot=Snapshot(sizes=(3, 5)))
    s = fhir.parse_search(
        q(
            patient="Patient/MRN1234567",
            agent="Practitioner/rad004.kowalski",
            entity="urn:oid:2.25.123",
            date=["ge2026-01-01", "le2026-01-31"],
            type=f"{DCM}|110103,110112,CRR",
            action="R,E",
            _count="1000",
            _cursor=cursor.encode(),
        )
    )
    assert (s.patient, s.agent, s.entity) == ("MRN1234567", "rad004.kowalski", "2.25.123")
    assert s.types == (
        fhir.TypeCode(system=DCM, code="110103"),
        fhir.TypeCode(system=None, code="110112"),
        fhir.TypeCode(system=None, code="CRR"),
    )
    assert s.actions == ("R", "E")
    assert s.since == datetime(2026, 1, 1, tzinfo=UTC)
    assert s.until == datetime(2026, 2, 1, tzinfo=UTC)
    assert s.count == 1000
    assert s.cursor == cursor.encode()  # opened (MAC checked) by the API, not here
    assert not s.empty_range


def test_search_query_string_round_trips() -> None:
    params = q(
        patient="MRN 1&2",
        date=["gt2026-01-05T10:00:00+01:00", "lt2027"],
        type=f"{NS.private_codes}|CRR",
        action="D",
        _count="5",
    )
    s = fhir.parse_search(params)
    again = fhir.parse_search(parse_qs(s.query_string(), keep_blank_values=True))
    assert again == s
    with_cursor = parse_qs(s.query_string(cursor="tok"))
    assert with_cursor["_cursor"] == ["tok"]


@pytest.mark.parametrize(
    ("value", "since", "until"),
    [
        ("2026", datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("eq2026-02", datetime(2026, 2, 1, tzinfo=UTC), datetime(2026, 3, 1, tzinfo=UTC)),
        ("2026-12", datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        ("2024-02-29", datetime(2024, 2, 29, tzinfo=UTC), datetime(2024, 3, 1, tzinfo=UTC)),
        (
            "2026-01-05T10:00:00Z",
            datetime(2026, 1, 5, 10, tzinfo=UTC),
            datetime(2026, 1, 5, 10, 0, 1, tzinfo=UTC),
        ),
        (
            "2026-01-05T10:00:00.5-05:00",
            datetime(2026, 1, 5, 15, 0, 0, 500000, tzinfo=UTC),
            datetime(2026, 1, 5, 15, 0, 0, 600000, tzinfo=UTC),
        ),
        (
            "2026-01-05T10:00:00.123456+14:00",
            datetime(2026, 1, 4, 20, 0, 0, 123456, tzinfo=UTC),
            datetime(2026, 1, 4, 20, 0, 0, 123457, tzinfo=UTC),
        ),
        ("ge2026-01-05", datetime(2026, 1, 5, tzinfo=UTC), None),
        ("gt2026-01-05", datetime(2026, 1, 6, tzinfo=UTC), None),
        ("le2026-01-05", None, datetime(2026, 1, 6, tzinfo=UTC)),
        ("lt2026-01-05", None, datetime(2026, 1, 5, tzinfo=UTC)),
        ("le9999", None, None),  # the end of time is no bound
    ],
)
def test_date_precision_and_prefixes(
    value: str, since: datetime | None, until: datetime | None
) -> None:
    s = fhir.parse_search(q(date=value))
    assert (s.since, s.until) == (since, until)


def test_repeated_dates_intersect() -> None:
    s = fhir.parse_search(q(date=["ge2026-01-01", "ge2026-01-10", "lt2026-02", "le2026-01-20"]))
    assert s.since == datetime(2026, 1, 10, tzinfo=UTC)
    assert s.until == datetime(2026, 1, 21, tzinfo=UTC)
    assert fhir.parse_search(q(date=["ge2026-02", "lt2026-01"])).empty_range
    assert fhir.parse_search(q(date="gt9999")).empty_range


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (q(subject="x"), "unknown search parameter"),
        (q(**{"patient:identifier": "x"}), "unknown search parameter"),
        (q(_sort="date"), "unknown search parameter"),  # _format is served since #14
        (q(patient=["a", "b"]), "more than once"),
        (q(patient=""), "must not be empty"),
        (q(patient="x" * 257), "at most 256"),
        (q(patient="MRN1\x00"), "control characters"),
        (q(patient="MRN1\n' OR 1=1 --"), "control characters"),
        (q(patient=" MRN1"), "white space"),
        (q(patient="Practitioner/x"), "Patient/<id>"),
        (q(patient="Patient/"), "Patient/<id>"),
        (q(patient="Patient/a/b"), "Patient/<id>"),
        (q(agent="Location/x"), "reference"),
        (q(entity="ImagingStudy/1"), "Study Instance UID"),
        (q(entity="1.2.03"), "Study Instance UID"),
        (q(entity="1." + "2" * 70), "Study Instance UID"),
        (q(date="sa2026"), "not supported"),
        (q(date="eb2026"), "not supported"),
        (q(date="ne2026"), "not supported"),
        (q(date="ap2026"), "not supported"),
        (q(date="xx2026"), "prefix"),
        (q(date="GE2026"), "prefix"),
        (q(date="2026-1-5"), "YYYY"),
        (q(date="26"), "YYYY"),
        (q(date="2026-13"), "calendar"),
        (q(date="2026-02-30"), "calendar"),
        (q(date="2026-01-05T10:00Z"), "YYYY"),
        (q(date="2026-01-05T10:00:00"), "YYYY"),  # a time needs a zone
        (q(date="2026-01-05T24:00:00Z"), "calendar"),
        (q(date="2026-01-05T10:00:00 01:00"), "%2B"),  # '+' decoded as a space
        (q(date="2026-01-05T10:00:00+15:00"), "-14:00"),
        (q(date="2026-01-05T10:00:00.1234567Z"), "YYYY"),
        (q(date="ge2026,le2027"), "commas"),
        (q(date=["ge2026"] * 5), "at most 4"),
        (q(type="110103|"), "code"),
        (q(type="|110103"), "no system"),
        (q(type="http://evil.example/cs|110103"), "system must be"),
        (q(type="110103,"), "empty alternative"),
        (q(type=",".join(["110103"] * 17)), "at most 16"),
        (q(type="a" * 33), "code"),
        (q(type="110103;DROP TABLE"), "code"),
        (q(action="X"), "C, R, U, D, E"),
        (q(action="r"), "C, R, U, D, E"),
        (q(action="R,,E"), "empty alternative"),
        (q(_count="0"), "from 1 to 1000"),
        (q(_count="1001"), "from 1 to 1000"),
        (q(_count="-1"), "from 1 to 1000"),
        (q(_count="1e3"), "from 1 to 1000"),
        (q(_count="\u0665"), "from 1 to 1000"),  # ARABIC-INDIC DIGIT FIVE: isdigit()
        (q(_count="9" * 40), "from 1 to 1000"),
        (q(_count=["1", "2"]), "more than once"),
        (q(_cursor="not a cursor!"), "page token"),
        (q(_cursor="A" * 16_385), "16384"),
    ],
)
def test_search_rejects_bad_parameters(params: dict[str, list[str]], message: str) -> None:
    with pytest.raises(MalformedInputError, match=message):
        fhir.parse_search(params)


def test_search_errors_do_not_echo_identifiers() -> None:
    with pytest.raises(MalformedInputError) as err:
        fhir.parse_search(q(patient="MRN-SECRET\x01"))
    assert "MRN-SECRET" not in str(err.value)


def test_search_rejects_values_that_are_not_lists_of_strings() -> None:
    with pytest.raises(MalformedInputError, match="list of strings"):
        fhir.parse_search({"patient": "MRN1"})  # type: ignore[dict-item]
    with pytest.raises(MalformedInputError, match="list of strings"):
        fhir.parse_search({"patient": [1]})  # type: ignore[list-item]


def test_search_count_limit_is_configurable() -> None:
    assert fhir.parse_search(q(_count="50"), max_count=50).count == 50
    with pytest.raises(MalformedInputError, match="from 1 to 50"):
        fhir.parse_search(q(_count="51"), max_count=50)
    assert fhir.parse_search({}, default_count=20).count == 20


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["patient", "agent", "entity", "date", "type", "action", "_count", "_x"]),
        st.lists(st.text(max_size=40), max_size=3),
        max_size=5,
    )
)
def test_search_parsing_fails_only_with_malformed_input(params: dict[str, list[str]]) -> None:
    try:
        s = fhir.parse_search(params)
    except MalformedInputError:
        return
    assert 1 <= s.count <= fhir.MAX_COUNT


# --------------------------------------------------------------------------- FHIR -> event


def good() -> dict[str, Any]:
    return copy.deepcopy(resource_of(access()))


def reject(resource: dict[str, Any], field: str, message: str = "") -> EventValidationError:
    with pytest.raises(EventValidationError) as err:
        pfhir.event_from_fhir(resource, now=NOW)
    assert err.value.field == field, str(err.value)
    assert str(err.value).startswith(f"{field}: ")
    assert message in str(err.value)
    return err.value


def test_a_foreign_balp_style_resource_maps() -> None:
    resource = {
        "resourceType": "AuditEvent",
        "meta": {
            "profile": [
                "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"
            ]
        },
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">x</div>'},
        "extension": [{"url": "http://other.example/ext", "valueString": "ignored"}],
        "type": {"system": DCM, "code": "110110", "display": "Patient Record"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": "2026-01-05T13:30:15.123456789-05:00",
        "outcome": "0",
        "agent": [
            {
                "type": {
                    "coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]
                },
                "who": {"display": "client.example.org"},
                "requestor": False,
                "network": {"address": "192.0.2.7", "type": "2"},
            },
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                            "code": "IRCP",
                        }
                    ]
                },
                "who": {"identifier": {"value": "dr.who"}},
                "role": [{"text": "physician"}],
                "requestor": True,
                "purposeOfUse": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                "code": "TREAT",
                            }
                        ]
                    }
                ],
            },
        ],
        "source": {"site": "hospital-a", "observer": {"display": "dcm4chee-arc"}},
        "entity": [
            {
                "what": {"reference": "Patient/p-17"},
                "type": {
                    "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                    "code": "1",
                },
            }
        ],
    }
    event = pfhir.event_from_fhir(resource, now=NOW)
    assert event.dicom_event_id == "110110"
    assert event.event_time == datetime(2026, 1, 5, 18, 30, 15, 123456, tzinfo=UTC)
    assert event.actor == Actor(user_id="dr.who", role="physician")
    assert event.network_address == "192.0.2.7"  # from BALP's Source Role ID agent
    assert event.patient == Patient(id="p-17")
    assert event.purpose_of_use == "TREAT"
    assert event.facility == Facility(id="hospital-a")
    assert event.details == {"source.observer": "dcm4chee-arc"}
    assert event.producer_id is None
    assert isinstance(event.event_id, uuid.UUID)


def test_event_id_comes_from_id_or_full_url() -> None:
    r = good()
    del r["id"]
    ident = uuid.uuid4()
    assert pfhir.event_from_fhir(r, full_url=f"urn:uuid:{ident}", now=NOW).event_id == ident
    assert pfhir.event_from_fhir(r, now=NOW).event_id != ident
    r["id"] = "ex-audit-1"
    reject(r, "AuditEvent.id", "UUID")


def user_path(suffix: str) -> str:
    return f"AuditEvent.agent[0]{suffix}"


@pytest.mark.parametrize(
    ("mutate", "field", "message"),
    [
        (lambda r: r.update(resourceType="Patient"), "AuditEvent.resourceType", "AuditEvent"),
        (
            lambda r: r.update(modifierExtension=[{"url": "x"}]),
            "AuditEvent.modifierExtension",
            "cannot be mapped",
        ),
        (lambda r: r.update(contained=[]), "AuditEvent.contained", "cannot be mapped"),
        (lambda r: r.update(period={"start": "2026"}), "AuditEvent.period", "cannot be mapped"),
        (lambda r: r.pop("type"), "AuditEvent.type", "DICOM EventID"),
        (lambda r: r["type"].update(code="999999"), "AuditEvent.type.code", "DICOM EventID"),
        (lambda r: r["type"].update(system="http://x"), "AuditEvent.type.system", "DICOM EventID"),
        (
            lambda r: r.update(
                subtype=[{"system": DCM, "code": "110122"}, {"system": DCM, "code": "110123"}]
            ),
            "AuditEvent.subtype[1]",
            "only one",
        ),
        (lambda r: r.pop("action"), "AuditEvent.action", "required"),
        (lambda r: r.update(action="X"), "AuditEvent.action", "C, R, U, D or E"),
        (lambda r: r.update(action=1), "AuditEvent.action", "string"),
        (lambda r: r.pop("outcome"), "AuditEvent.outcome", "required"),
        (lambda r: r.update(outcome="2"), "AuditEvent.outcome", "0, 4, 8 or 12"),
        (lambda r: r.pop("recorded"), "AuditEvent.recorded", "required"),
        (lambda r: r.update(recorded="2026-01-05"), "AuditEvent.recorded", "instant"),
        (lambda r: r.update(recorded="2026-01-05T10:00:00"), "AuditEvent.recorded", "instant"),
        (lambda r: r.update(recorded="2026-02-30T10:00:00Z"), "AuditEvent.recorded", "calendar"),
        (lambda r: r.update(recorded="2099-01-01T00:00:00Z"), "AuditEvent.recorded", "future"),
        (lambda r: r.update(recorded="1980-01-01T00:00:00Z"), "AuditEvent.recorded", "before"),
        (lambda r: r.update(agent="x"), "AuditEvent.agent", "array"),
        (lambda r: r["agent"][0].update(requestor=False), "AuditEvent.agent", "requesting user"),
        (
            lambda r: r["agent"][1]["type"]["coding"][0].update(code="110100"),
            "AuditEvent.agent[1]",
            "neither",
        ),
        (
            lambda r: r["agent"][0].update(requestor="yes"),
            "AuditEvent.agent[0].requestor",
            "true or false",
        ),
        (lambda r: r["agent"][1].update(requestor=True), "AuditEvent.agent[1]", "only one"),
        (lambda r: r["agent"].pop(0), "AuditEvent.agent", "requesting user"),
        (
            lambda r: r["agent"][0]["who"].pop("identifier"),
            user_path(".who.identifier.value"),
            "required",
        ),
        (
            lambda r: r["agent"][0]["who"]["identifier"].update(value=""),
            user_path(".who.identifier.value"),
            "empty",
        ),
        (
            lambda r: r["agent"][0]["who"]["identifier"].update(value="u" * 300),
            user_path(".who.identifier.value"),
            "at most 256",
        ),
        (
            lambda r: r["agent"][0]["who"]["identifier"].update(value="u\x00"),
            user_path(".who.identifier.value"),
            "NUL",
        ),
        (lambda r: r["agent"][0].pop("role"), user_path(".role"), "required"),
        (lambda r: r["agent"][0]["role"].append({"text": "x"}), user_path(".role[1]"), "one role"),
        (
            lambda r: r["agent"][0]["extension"][0]["valueIdentifier"].update(value="1234567890"),
            user_path(".extension[0].valueIdentifier.value"),
            "NPI",
        ),
        (
            lambda r: r["agent"][0].update(media={"code": "x"}),
            user_path(".media"),
            "cannot be mapped",
        ),
        (
            lambda r: r["agent"][0]["network"].update(address="a" * 300),
            user_path(".network.address"),
            "at most 256",
        ),
        (
            lambda r: (
                r["agent"][0].pop("purposeOfUse"),
                r["purposeOfEvent"][0]["coding"][0].update(code="NOPE"),
            ),
            "AuditEvent.purposeOfEvent[0].coding[0].code",
            "PurposeOfUse",
        ),
        (
            lambda r: r["purposeOfEvent"][0]["coding"][0].update(system="http://x"),
            "AuditEvent.purposeOfEvent[0]",
            "v3-ActReason",
        ),
        (
            lambda r: r["agent"][0]["purposeOfUse"][0]["coding"][0].update(code="HPAYMT"),
            user_path(".purposeOfUse[0].coding[0].code"),
            "one purpose",
        ),
        (lambda r: r.pop("source"), "AuditEvent.source", "required"),
        (lambda r: r["source"].pop("site"), "AuditEvent.source.site", "facility"),
        (lambda r: r.pop("entity"), "AuditEvent.entity", "patient"),
        (lambda r: r["entity"].pop(0), "AuditEvent.entity", "patient"),
        (
            lambda r: r["entity"].append(copy.deepcopy(r["entity"][0])),
            "AuditEvent.entity[2]",
            "one patient",
        ),
        (
            lambda r: r["entity"].append(copy.deepcopy(r["entity"][1])),
            "AuditEvent.entity[2]",
            "one study",
        ),
        (
            lambda r: r["entity"][0]["what"]["identifier"].update(value="p" * 257),
            "AuditEvent.entity[0].what.identifier.value",
            "at most 256",
        ),
        (
            lambda r: r["entity"][0]["detail"][0].update(valueString="Mass"),
            "AuditEvent.entity[0].detail[0].valueString",
            "state",
        ),
        (
            lambda r: r["entity"][0]["detail"].append({"type": "dob", "valueString": "x"}),
            "AuditEvent.entity[0].detail[1]",
            "cannot be mapped",
        ),
        (
            lambda r: r["entity"][1]["what"]["identifier"].update(value="urn:oid:1.02"),
            "AuditEvent.entity[1].what.identifier.value",
            "DICOM UID",
        ),
        (
            lambda r: r["entity"][1]["detail"][4].update(valueString="-1"),
            "AuditEvent.entity[1].detail[4].valueString",
            "digits",
        ),
        (
            lambda r: r["entity"][1]["detail"][2].update(valueString="s" * 65),
            "AuditEvent.entity[1].detail[2].valueString",
            "at most 64",
        ),
        (
            lambda r: r["entity"].append({"what": {"reference": "DocumentReference/1"}}),
            "AuditEvent.entity[2]",
            "only the patient",
        ),
        (lambda r: r["entity"].append({"query": "%%%"}), "AuditEvent.entity[2].query", "base64"),
        (
            lambda r: r["entity"].append({"query": base64.b64encode(b"\xff").decode()}),
            "AuditEvent.entity[2].query",
            "UTF-8",
        ),
        (
            lambda r: r["entity"].append({"query": base64.b64encode(b"q\x00").decode()}),
            "AuditEvent.entity[2].query",
            "NUL",
        ),
    ],
)
def test_unmappable_resources_name_the_fhir_path(mutate: Any, field: str, message: str) -> None:
    r = good()
    mutate(r)
    reject(r, field, message)


def test_duplicate_details_are_refused() -> None:
    r = resource_of(access(details={f"k{i:02d}": "v" for i in range(63)}))
    assert len(pfhir.event_from_fhir(r, now=NOW).details) == 64  # with the observer
    r["extension"].append(copy.deepcopy(r["extension"][1]))
    reject(r, "AuditEvent.extension[64]", "twice")


def test_details_limit_maps_to_the_extensions() -> None:
    r = resource_of(access(details={f"k{i:02d}": "v" for i in range(64)}))
    with pytest.raises(EventValidationError) as err:
        pfhir.event_from_fhir(r, now=NOW)  # the observer makes 65 entries
    assert err.value.field == "AuditEvent"
    assert "at most 64" in str(err.value)


def test_keep_producer_needs_the_sequence_extension() -> None:
    r = good()
    r["source"]["extension"] = [
        e for e in r["source"]["extension"] if e["url"] != NS.producer_sequence
    ]
    with pytest.raises(EventValidationError) as err:
        pfhir.event_from_fhir(r, keep_producer=True, now=NOW)
    assert err.value.field == "AuditEvent.source.extension"
    r = good()
    r["source"]["extension"][0]["valueDecimal"] = 1.5
    with pytest.raises(EventValidationError) as err:
        pfhir.event_from_fhir(r, keep_producer=True, now=NOW)
    assert err.value.field == "AuditEvent.source.extension[0].valueDecimal"


def bundle(kind: str, *resources: dict[str, Any], **entry_extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": kind,
        "entry": [
            {"resource": r, "request": {"method": "POST", "url": "AuditEvent"}, **entry_extra}
            for r in resources
        ],
    }


def test_a_single_resource_submission() -> None:
    sub = pfhir.events_from_fhir(good(), now=NOW)
    assert sub.kind == "resource"
    assert sub.ok
    assert [r.index for r in sub.results] == [None]
    assert sub.events[0].patient.id == "MRN1234567"


def test_batch_reports_each_entry() -> None:
    ok1 = resource_of(access())
    ok2 = resource_of(access(event_id=uuid.UUID(int=9)))
    bad = copy.deepcopy(ok1)
    bad["id"] = str(uuid.UUID(int=10))
    bad["action"] = "Z"
    doc = bundle("batch", ok1, bad, ok2, copy.deepcopy(ok1))
    doc["entry"].append({"resource": ok2, "request": {"method": "PUT", "url": "AuditEvent/x"}})
    doc["entry"].append({"request": {"method": "POST", "url": "AuditEvent"}})
    doc["entry"].append({"resource": ok2, "request": {"method": "POST", "url": "Patient"}})
    sub = pfhir.events_from_fhir(doc, now=NOW)
    assert sub.kind == "batch"
    assert not sub.ok
    assert [r.ok for r in sub.results] == [True, False, True, False, False, False, False]
    assert [r.index for r in sub.results] == list(range(7))
    fields = [None if r.error is None else r.error.field for r in sub.results]
    assert fields == [
        None,
        "AuditEvent.action",
        None,
        "AuditEvent.id",
        "Bundle.entry[4].request.method",
        "Bundle.entry[5].resource",
        "Bundle.entry[6].request.url",
    ]
    assert "same event id as entry 0" in str(sub.results[3].error)
    assert [e.event_id for e in sub.events] == [access().event_id, uuid.UUID(int=9)]


def test_transaction_and_full_urls() -> None:
    r = good()
    del r["id"]
    ident = uuid.uuid4()
    doc = bundle("transaction", r, fullUrl=f"urn:uuid:{ident}")
    sub = pfhir.events_from_fhir(doc, now=NOW)
    assert sub.kind == "transaction"
    assert sub.ok
    assert sub.results[0].full_url == f"urn:uuid:{ident}"
    assert sub.events[0].event_id == ident


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"resourceType": "Patient"}, "resourceType"),
        ({}, "resourceType"),
        ({"resourceType": "Bundle", "type": "searchset", "entry": []}, "Bundle.type"),
        ({"resourceType": "Bundle", "type": "batch", "entry": {}}, "Bundle.entry"),
    ],
)
def test_bodies_that_are_no_submission_at_all(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(EventValidationError) as err:
        pfhir.events_from_fhir(doc, now=NOW)
    assert err.value.field == field


def test_bundle_size_is_bounded() -> None:
    doc = bundle("batch", *([good()] * 3))
    with pytest.raises(EventValidationError, match="at most 2"):
        pfhir.events_from_fhir(doc, now=NOW, max_entries=2)


def json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=12)
    return st.recursive(
        scalars,
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=10), children, max_size=4)
        ),
        max_leaves=20,
    )


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mangled_resources_fail_only_with_validation_errors(data: st.DataObject) -> None:
    resource = good()
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                paths.append((node, key))
                walk(value)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                paths.append((node, i))
                walk(value)

    walk(resource)
    for _ in range(data.draw(st.integers(1, 3))):
        parent, key = data.draw(st.sampled_from(paths))
        parent[key] = data.draw(json_values())
    outcome: PhiAccessEvent | EventValidationError
    try:
        outcome = pfhir.event_from_fhir(resource, now=NOW)
    except EventValidationError as exc:  # the only exception allowed out
        outcome = exc
    if isinstance(outcome, EventValidationError):
        assert outcome.field.startswith("AuditEvent")
        assert str(outcome).startswith(f"{outcome.field}: ")
    else:
        assert isinstance(outcome, PhiAccessEvent)


def test_details_are_read_only_mappings() -> None:
    event = pfhir.event_from_fhir(good(), now=NOW)
    assert isinstance(event.details, MappingProxyType)
