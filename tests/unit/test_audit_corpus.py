"""The DICOM audit message corpus (tests/corpus/dicom-audit): each message becomes exactly
the events stated here (none is kept); every event survives
event -> DICOM XML -> event unchanged, and event -> FHIR AuditEvent (ledger.audit.fhir) -> event
(integrations.fhir) where the FHIR mapping covers the event type (all but Audit Log Used).

Instances Accessed, Query, Export and Import become ``PhiAccessEvent``; User Authentication
(login, logout, failures), Emergency Override start and stop, and Application Activity
become ``SecurityEvent``; Audit Log Used becomes ``AuditLogUsed``."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from integrations import fhir as pfhir
from integrations.atna.dicom_audit import (
    ATNA_NAMESPACE,
    event_id_for,
    events_from_dicom,
    to_dicom_xml,
)
from integrations.errors import AtnaUnmappableError
from integrations.simulator import Simulator
from ledger.audit import fhir
from ledger.audit.query import LedgerPosition
from ledger.audit.records import SchemaSet, StoredSchema
from producers.codec import Codec, load_shipped_schemas
from producers.errors import EventValidationError
from producers.events import (
    Actor,
    AuditLogUsed,
    CriticalResultRelay,
    EventAction,
    EventOutcome,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    Recipient,
    SecurityEvent,
    Study,
    validate,
)

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "dicom-audit"
POSITION = LedgerPosition(log_id=1, origin="test.ledger/phi-access/0", leaf_index=9)
_CODEC = Codec()
_SCHEMAS = SchemaSet(
    StoredSchema(fingerprint=s.fingerprint, full_name=s.full_name, schema_json=s.schema_json)
    for s in load_shipped_schemas()
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


CT = "1.2.840.10008.5.1.4.1.1.2"
MR = "1.2.840.10008.5.1.4.1.1.4"

#: file -> the fields each event must have (``event`` holds the full-object checks).
EXPECTED: dict[str, list[dict[str, Any]]] = {
    "instances-accessed.xml": [
        {
            "dicom_event_id": "110103",
            "action": EventAction.READ,
            "outcome": EventOutcome.SUCCESS,
            "event_time": utc(2026, 3, 2, 19, 7, 31, 250000),
            "facility": Facility(id="stmarys-boston"),
            "actor": Actor(user_id="rad004.kowalski", name="Ana Kowalski", role="radiologist"),
            "patient": Patient(id="MRN1234567", issuer="stmarys-boston"),
            "study": Study(
                uid="2.25.302931804526318725201538219302018473",
                accession="SM26030211",
                modality="CT",
                sop_classes=(CT, "1.2.840.10008.5.1.4.1.1.88.22"),
                instances=413,
            ),
            "network_address": "10.20.4.17",
            "purpose_of_use": "TREAT",
            "recipient": None,
            "details": {"alternative_user_id": "viewer-pid-4411", "audit_source_id": "pacs01"},
        }
    ],
    "query.xml": [
        {
            "dicom_event_id": "110112",
            "action": EventAction.EXECUTE,
            "actor": Actor(user_id="tech17.nguyen", name="Linh Nguyen", role="technologist"),
            "patient": Patient(id="MRN5550123"),
            "study": None,
            "network_address": "10.20.9.41",
            "details": {
                "query": "/dicom-web/studies?PatientID=MRN5550123&StudyDate=20260101-20260315"
                "&includefield=00081030",
                "query_object_id": "1.2.840.10008.5.1.4.1.2.2.1",
                "audit_source_id": "pacs01",
            },
        }
    ],
    "export.xml": [
        {
            "dicom_event_id": "110106",
            "action": EventAction.READ,
            "event_time": utc(2026, 3, 4, 21, 41, 0, 500000),
            "facility": Facility(id="nocturne-telerad"),
            "actor": Actor(user_id="rad011.osei", name="Kwame Osei", role="person"),
            "patient": Patient(id="P-0042217", issuer="2.16.840.1.113883.3.7001"),
            "recipient": Recipient(name="Mercy Hospital Radiology", address="203.0.113.45"),
            "study": Study(
                uid="1.2.826.0.1.3680043.8.498.10448765123093418873",
                accession="NT-884120",
                sop_classes=(MR,),
                instances=188,
            ),
        }
    ],
    "import.xml": [
        {
            "dicom_event_id": "110107",
            "action": EventAction.CREATE,
            "outcome": EventOutcome.MINOR_FAILURE,
            "actor": Actor(user_id="fileroom.diaz", name="Marta Diaz", role="person"),
            "network_address": "ws-fileroom-3",
            "patient": Patient(id="MRN7781234", issuer="stmarys-boston"),
            "study": Study(
                uid="1.3.6.1.4.1.5962.99.1.2280943358.716200484.1363785608958.3.0",
                accession="OUTSIDE-7730",
                sop_classes=("1.2.840.10008.5.1.4.1.1.1.2", CT),
                instances=94,
            ),
            "details": {
                "outcome_description": "2 of 96 instances rejected: unsupported transfer syntax",
                "audit_source_id": "pacs01",
            },
        }
    ],
    "emergency-override-start.xml": [
        {
            "kind": SecurityEvent,
            "dicom_event_id": "110113",
            "event_type_code": "110127",
            "action": EventAction.EXECUTE,
            "outcome": EventOutcome.SUCCESS,
            "event_time": utc(2026, 3, 10, 3, 14, 7, 512000),
            "purpose_of_use": "BTG",
            "facility": Facility(id="stmarys-boston"),
            "actor": Actor(user_id="er.patel", name="Ravi Patel", role="ed-attending"),
            "patient": Patient(id="MRN9900112", issuer="stmarys-boston"),
            "network_address": "10.50.1.77",
            "details": {"audit_source_id": "ehr-access-control"},
        }
    ],
    "emergency-override-stop.xml": [
        {
            "kind": SecurityEvent,
            "dicom_event_id": "110113",
            "event_type_code": "110138",
            "action": EventAction.EXECUTE,
            "purpose_of_use": None,
            "event_time": utc(2026, 3, 10, 3, 52, 40, 20000),
            "actor": Actor(user_id="er.patel", name="Ravi Patel", role="ed-attending"),
            "patient": Patient(id="MRN9900112", issuer="stmarys-boston"),
        }
    ],
    "user-login.xml": [
        {
            "kind": SecurityEvent,
            "dicom_event_id": "110114",
            "event_type_code": "110122",
            "action": EventAction.EXECUTE,
            "outcome": EventOutcome.SUCCESS,
            "event_time": utc(2026, 3, 9, 6, 58, 44, 913000),
            "facility": Facility(id="stmarys-boston"),
            "actor": Actor(user_id="rad004.kowalski", name="Ana Kowalski", role="person"),
            "patient": None,
            "purpose_of_use": None,
            "network_address": "10.20.4.17",
            "details": {"audit_source_id": "viewer-auth"},
        }
    ],
    "user-logout.xml": [
        {
            "kind": SecurityEvent,
            "dicom_event_id": "110114",
            "event_type_code": "110123",
            "outcome": EventOutcome.SUCCESS,
            "event_time": utc(2026, 3, 9, 15, 2, 10, 1000),
            "actor": Actor(user_id="rad004.kowalski", name="Ana Kowalski", role="person"),
            "patient": None,
            "network_address": "10.20.4.17",
        }
    ],
    "user-login-failure-4.xml": [
        {
            "kind": SecurityEvent,
            "dicom_event_id": "110114",
            "event_type_code": "110122",
            "outcome": EventOutcome.MINOR_FAILURE,
            # The user id that was attempted; the message gives no name and no role.
            "actor": Actor(user_id="rad004.kowalski", role="unspecified"),
            "patient": None,
            "network_address": "198.51.100.23",
            "details": {
                "outcome_description": "invalid password",
                "audit_source_id": "viewer-auth",
            },
        }
    ],
    "user-login-failure-8.xml": [
        {
            "kind": SecurityEvent,
            "dicom_event_id": "110114",
            "event_type_code": "110122",
            "outcome": EventOutcome.SERIOUS_FAILURE,
            "actor": Actor(user_id="rad004.kowalski", role="unspecified"),
            "network_address": "198.51.100.23",
            "details": {
                "outcome_description": "account locked after 5 failed attempts",
                "audit_source_id": "viewer-auth",
            },
        }
    ],
    "dcm4chee-application-start.xml": [
        {
            "kind": SecurityEvent,
            "dicom_event_id": "110100",
            "event_type_code": "110120",
            "action": EventAction.EXECUTE,
            "event_time": utc(2026, 3, 11, 6, 0, 2, 310000),
            "facility": Facility(id="dcm4chee-arc"),
            "actor": Actor(user_id="dcm4chee-arc", role="system"),
            "patient": None,
            "network_address": "archive.example",
            "details": {"alternative_user_id": "8804", "audit_source_id": "dcm4chee-arc"},
        }
    ],
    "audit-log-used.xml": [
        {
            "kind": AuditLogUsed,
            "actor": Actor(user_id="privacy.officer", name="Grace Hopper-Lin", role="person"),
            "query": LedgerQuery(
                method="GET",
                path="/ARR/fhir/AuditEvent",
                status=200,
                parameters={"patient": "MRN1234567", "date": "ge2026-01-01"},
            ),
            "patient": Patient(id="MRN1234567", issuer="stmarys-boston"),
            "network_address": "10.1.1.5",
        }
    ],
    "dcm4chee-instances-accessed.xml": [
        {
            "dicom_event_id": "110103",
            "action": EventAction.UPDATE,
            "event_time": utc(2026, 3, 11, 9, 14, 7, 276000),
            "facility": Facility(id="dcm4chee-arc"),
            "actor": Actor(user_id="admin", role="person"),
            "patient": Patient(id="GE1118", issuer="DCM4CHEE.ISSUER"),
            "study": Study(uid="1.2.840.113674.1118.54.200", accession="GE000257"),
            "network_address": "192.0.2.50",
            "details": {"audit_source_id": "dcm4chee-arc"},
        }
    ],
    "dcm4chee-instances-transferred.xml": [
        {
            "dicom_event_id": "110104",
            "action": EventAction.CREATE,
            "actor": Actor(user_id="CT_SCANNER_2", role="system"),
            "patient": Patient(id="PID-55012"),
            "study": Study(
                uid="1.3.12.2.1107.5.1.4.73251.30000026031108342143500000012",
                accession="ACC260311-004",
                sop_classes=(CT,),
                instances=254,
            ),
            "network_address": "192.0.2.81",
        }
    ],
    "dcm4chee-query.xml": [
        {
            "dicom_event_id": "110112",
            "actor": Actor(user_id="WORKSTATION7", role="system"),
            "patient": Patient(id="MRN7781234"),
            "details": {
                "query": "base64:CAAgAERBEgAyMDI2MDMwMS0yMDI2MDMxMCAIAFIAQ1MGAFNUVURZIAgAYQBD"
                "UwIAQ1QQACAATE8KAE1STjc3ODEyMzQgAA0AVUkAAA==",
                "query_object_id": "1.2.840.10008.5.1.4.1.2.2.1",
                "audit_source_id": "dcm4chee-arc",
            },
        }
    ],
    "dcm4chee-export.xml": [
        {
            "dicom_event_id": "110106",
            "actor": Actor(user_id="jsmith", role="person"),
            "network_address": "192.0.2.50",
            "recipient": Recipient(name="STORESCP_MERCY", address="mercy-gw.example"),
            "patient": Patient(id="PID-88120", issuer="DCM4CHEE.ISSUER"),
            "study": Study(
                uid="1.2.840.113619.2.55.3.604688119.969.1268071029.320",
                accession="ACC-93311",
                sop_classes=(MR, "1.2.840.10008.5.1.4.1.1.7"),
                instances=97,
            ),
        }
    ],
    "ihe-iti18-registry-stored-query.xml": [
        {
            "dicom_event_id": "110112",
            "event_type_code": "ITI-18",
            "action": EventAction.EXECUTE,
            # Two requestors (the machine Source and the Human Requestor): the person.
            "actor": Actor(user_id="dr.chen", name="Wei Chen", role="attender"),
            # The HL7 CX issuer (&OID&ISO) becomes the OID.
            "patient": Patient(id="IHERED-1024", issuer="1.3.6.1.4.1.21367.13.20.1000"),
            "study": None,
            "network_address": "10.30.1.12",  # the Source's: the person gives none
            "facility": Facility(id="stmarys-boston"),
            "details": {
                "query": "<query:AdhocQueryRequest/>",
                "query_object_id": "urn:uuid:14d4debf-8f97-4251-9a74-a90016b0af0d",
                "audit_source_id": "xds-consumer",
            },
        }
    ],
    "ihe-iti43-retrieve-document-set.xml": [
        {
            "dicom_event_id": "110106",
            "event_type_code": "ITI-43",
            "action": EventAction.READ,
            "actor": Actor(user_id="http://www.w3.org/2005/08/addressing/anonymous", role="system"),
            "patient": Patient(id="IHERED-1024", issuer="1.3.6.1.4.1.21367.13.20.1000"),
            "study": None,
            "network_address": "10.30.1.12",
            "facility": Facility(id="xds-repository"),
        }
    ],
    "ihe-rad69-retrieve-imaging-document-set.xml": [
        {
            "dicom_event_id": "110106",
            "event_type_code": "RAD-69",
            "actor": Actor(user_id="READING_WS_4", role="system"),
            "patient": Patient(id="IHERED-1024", issuer="1.3.6.1.4.1.21367.13.20.1000"),
            "study": Study(uid="1.3.6.1.4.1.21367.201.1.4418", sop_classes=(CT,), instances=120),
            "network_address": "10.40.2.4",
        }
    ],
    "dcm4chee-security-alert-node-authentication.xml": [
        {
            "kind": SecurityEvent,
            "dicom_event_id": "110113",
            "event_type_code": "110126",
            "outcome": EventOutcome.SERIOUS_FAILURE,
            "actor": Actor(user_id="203.0.113.99", role="unspecified"),
            "patient": None,
            "network_address": "203.0.113.99",
            "details": {
                "outcome_description": "TLS handshake failed: certificate unknown",
                "audit_source_id": "dcm4chee-arc",
            },
        }
    ],
    # A QIDO search by date that names no patient: a patient-less Query (PhiAccessEvent v2).
    "dcm4chee-query-no-patient.xml": [
        {
            "dicom_event_id": "110112",
            "action": EventAction.EXECUTE,
            "actor": Actor(user_id="192.0.2.50", role="system"),
            "facility": Facility(id="dcm4chee-arc"),
            "patient": None,
            "disclosed": (),
            "study": None,
            "network_address": "192.0.2.50",
            "details": {
                "query": "StudyDate=20260311&ModalitiesInStudy=CT",
                "query_object_id": "DCM4CHEE",
                "audit_source_id": "dcm4chee-arc",
            },
        }
    ],
    # A retention job's Study Deleted of two patients' studies, without saying whose: one
    # event per patient (a deletion discloses nothing), the studies listed in details.
    "ambiguous-patients.xml": [
        {
            "dicom_event_id": "110105",
            "action": EventAction.DELETE,
            "actor": Actor(user_id="retention-job", role="system"),
            "patient": Patient(id=f"MRN000000{i}"),
            "disclosed": (),
            "study": None,
            "details": {"audit_source_id": "pacs01", "study_uids": "2.25.1,2.25.2"},
        }
        for i in (1, 2)
    ],
    "multi-study.xml": [
        {
            "study": Study(uid="2.25.302931804526318725201538219302018473", accession="SM26030211"),
            "patient": Patient(id="MRN1234567", issuer="stmarys-boston"),
        },
        {
            "study": Study(uid="2.25.110734906733162091876320541227651392", accession="SM25110907"),
            "patient": Patient(id="MRN1234567", issuer="stmarys-boston"),
        },
    ],
}


def test_every_corpus_file_has_an_expectation() -> None:
    files = {p.name for p in CORPUS.glob("*.xml")}
    assert files == set(EXPECTED)  # nothing of the corpus is kept
    assert len(files) >= 23


def _payload(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_message_maps_to_the_expected_events(name: str) -> None:
    payload = _payload(name)
    events = events_from_dicom(payload)
    expected = EXPECTED[name]
    assert len(events) == len(expected)
    for index, (event, fields) in enumerate(zip(events, expected, strict=True)):
        kind = fields.get("kind", PhiAccessEvent)
        assert type(event) is kind
        assert event.event_id == event_id_for(payload, index)
        assert event.event_id.version == 5
        assert event.producer_id is None
        assert event.producer_seq is None
        for key, value in fields.items():
            if key == "kind":
                continue
            got = getattr(event, key)
            if key == "details" or isinstance(got, LedgerQuery):
                got = dict(got) if key == "details" else got
            assert got == value, f"{name}: {key}"
        validate(dataclasses.replace(event, producer_id="atna", producer_seq=0))


def test_event_ids_are_deterministic_and_ignore_bom_and_trailing_space() -> None:
    payload = _payload("instances-accessed.xml")
    first = events_from_dicom(payload)
    assert events_from_dicom(payload) == first
    assert events_from_dicom(b"\xef\xbb\xbf" + payload + b"\r\n  ") == first
    other = events_from_dicom(payload.replace(b"14:07:31.250", b"14:07:31.251"))
    assert other[0].event_id != first[0].event_id
    name = payload.rstrip()
    import hashlib

    digest = hashlib.sha1(ATNA_NAMESPACE.bytes + name).digest()
    assert first[0].event_id == uuid.UUID(bytes=digest[:16], version=5)
    two = events_from_dicom(_payload("multi-study.xml"))
    assert two[1].event_id == event_id_for(_payload("multi-study.xml"), 1)
    assert two[0].event_id != two[1].event_id


def test_default_facility_applies_without_an_enterprise_site() -> None:
    (event,) = events_from_dicom(
        _payload("dcm4chee-instances-accessed.xml"), default_facility="mercy-west"
    )
    assert event.facility == Facility(id="mercy-west")
    (own_site,) = events_from_dicom(_payload("instances-accessed.xml"), default_facility="x")
    assert own_site.facility.id == "stmarys-boston"


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (b'csd-code="110103" codeSystemName="DCM"', b'csd-code="ITI-9" codeSystemName="IHE"',
         "unsupported_event"),
        (b'EventActionCode="R" ', b"", "invalid_event"),
        (b'EventActionCode="R" ', b'EventActionCode="X" ', "invalid_event"),
        (b'EventOutcomeIndicator="0"', b'EventOutcomeIndicator="3"', "invalid_event"),
        (b'EventDateTime="2026-03-02T14:07:31.250-05:00"', b'EventDateTime="2099-01-01T00:00:00Z"',
         "invalid_event"),
        (b'ParticipantObjectID="2.25.302931804526318725201538219302018473"',
         b'ParticipantObjectID="not-a-uid"', "invalid_event"),
        (b'UserIsRequestor="true"', b'UserIsRequestor="false"', "no_requestor"),
    ],
)  # fmt: skip
def test_unmappable_variants(old: bytes, new: bytes, reason: str) -> None:
    payload = _payload("instances-accessed.xml")
    assert old in payload
    with pytest.raises(AtnaUnmappableError) as caught:
        events_from_dicom(payload.replace(old, new))
    assert caught.value.reason == reason


def test_purpose_of_use_outside_hl7_goes_to_details() -> None:
    payload = _payload("instances-accessed.xml").replace(b'csd-code="TREAT"', b'csd-code="CARE"')
    (event,) = events_from_dicom(payload)
    assert event.purpose_of_use is None
    assert event.details["purpose_of_use"] == "2.16.840.1.113883.5.8|CARE"


# --------------------------------------------------------------------------- round trips


def _stamped(name: str) -> list[PhiAccessEvent | AuditLogUsed | SecurityEvent]:
    return [
        e.stamped(producer_id="atna-receiver", producer_seq=100 + i)
        for i, e in enumerate(events_from_dicom(_payload(name)))
    ]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_event_to_dicom_xml_and_back_is_equal(name: str) -> None:
    for event in _stamped(name):
        xml = to_dicom_xml(event)
        assert events_from_dicom(xml, keep_producer=True) == (event,)
        # Without keep_producer the emitter stamps; the source is kept as a detail.
        (loose,) = events_from_dicom(xml)
        assert (loose.producer_id, loose.producer_seq) == (None, None)
        assert loose.event_id == event.event_id


@pytest.mark.parametrize("name", sorted(n for n in EXPECTED if n != "audit-log-used.xml"))
def test_event_to_fhir_and_back_is_equal(name: str) -> None:
    for event in _stamped(name):
        full_name, record = _SCHEMAS.decode(_CODEC.encode(event))
        resource = fhir.audit_event(full_name, record, event_id=event.event_id, position=POSITION)
        back = pfhir.event_from_fhir(resource, keep_producer=True)
        assert back == event


def test_the_fhir_feed_takes_a_query_naming_no_patient_and_nothing_else_without_one() -> None:
    (event,) = _stamped("dcm4chee-query-no-patient.xml")
    full_name, record = _SCHEMAS.decode(_CODEC.encode(event))
    resource = fhir.audit_event(full_name, record, event_id=event.event_id, position=POSITION)
    back = pfhir.event_from_fhir(resource, keep_producer=True)
    assert isinstance(back, PhiAccessEvent)
    assert back.patient is None
    resource["type"]["code"] = "110103"
    with pytest.raises(EventValidationError, match="needs the patient"):
        pfhir.event_from_fhir(resource, keep_producer=True)


def test_audit_log_used_to_fhir_is_a_view_only() -> None:
    """The FHIR feed does not accept Audit Log Used (the ledger records its own reads),
    so that direction is one way: DICOM -> event -> FHIR."""
    (event,) = _stamped("audit-log-used.xml")
    full_name, record = _SCHEMAS.decode(_CODEC.encode(event))
    resource = fhir.audit_event(full_name, record, event_id=event.event_id, position=POSITION)
    assert resource["type"]["code"] == "110101"
    assert resource["entity"][0]["role"]["code"] == "13"


FULL = PhiAccessEvent(
    event_id=uuid.UUID("0b8a2e7c-1111-4222-8333-444455556666"),
    event_time=utc(2026, 3, 1, 12, 0, 0, 1),
    producer_id="orthanc-01",
    producer_seq=2**40,
    facility=Facility(id="stmarys-boston", name="St. Mary's <Boston> & Co"),
    actor=Actor(
        user_id="rad004.kowalski",
        name="Ana \"Kowalski\"\n'Jr'",
        role="reading radiologist (locum)",
        organization="Nocturne Teleradiology Group",
        npi="1234567893",
    ),
    dicom_event_id="110106",
    event_type_code="X-1.2",
    action=EventAction.READ,
    outcome=EventOutcome.MAJOR_FAILURE,
    patient=Patient(id="MRN^1", issuer="stmarys&boston", state="MA"),
    study=Study(
        uid="2.25.1234567890",
        accession="A1234",
        modality="CT",
        sop_classes=(CT, MR),
        instances=120,
    ),
    network_address="fe80::1",
    purpose_of_use="OVERSIGHT",
    recipient=Recipient(name="Mercy", address="1 Main St\nSpringfield", organization="Mercy Inc"),
    details={"query": "PatientID=MRN^1", "ticket": "", "ünïcode": "välue ✓"},
)


def test_every_field_survives_dicom_xml() -> None:
    assert events_from_dicom(to_dicom_xml(FULL), keep_producer=True) == (FULL,)
    bare = PhiAccessEvent(
        producer_id="p",
        producer_seq=0,
        facility=Facility(id="f"),
        actor=Actor(user_id="u", role="r"),
        dicom_event_id="110110",
        action=EventAction.UPDATE,
        patient=Patient(id="1"),
    )
    assert events_from_dicom(to_dicom_xml(bare), keep_producer=True) == (bare,)


def test_audit_log_used_survives_dicom_xml() -> None:
    event = AuditLogUsed(
        producer_id="api-1",
        producer_seq=5,
        facility=Facility(id="philedger.localhost"),
        actor=Actor(user_id="test-admin", role="admin"),
        query=LedgerQuery(
            method="POST",
            path="/fhir/AuditEvent",
            status=201,
            parameters={"_count": "10", "a b": "c&d"},
            results=3,
        ),
        outcome=EventOutcome.SUCCESS,
        network_address="127.0.0.1",
        patient=Patient(id="MRN1", state="NY"),
    )
    assert events_from_dicom(to_dicom_xml(event), keep_producer=True) == (event,)
    no_patient = dataclasses.replace(event, patient=None, query=LedgerQuery(
        method="GET", path="/v1/logs", status=200))  # fmt: skip
    assert events_from_dicom(to_dicom_xml(no_patient), keep_producer=True) == (no_patient,)


def test_simulated_events_survive_dicom_xml() -> None:
    sim = Simulator(seed=2_026_777)
    events = [
        e.stamped(producer_id="sim", producer_seq=i)
        for i, e in enumerate(sim.events(400))
        if isinstance(e, PhiAccessEvent)
    ]
    assert len(events) > 300
    for event in events:
        assert events_from_dicom(to_dicom_xml(event), keep_producer=True) == (event,)


def test_to_dicom_xml_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="stamped"):
        to_dicom_xml(dataclasses.replace(FULL, producer_id=None))
    with pytest.raises(ValueError, match=r"XML 1\.0"):
        to_dicom_xml(dataclasses.replace(FULL, actor=Actor(user_id="u\x01", role="r")))
    relay = next(e for e in Simulator(seed=1).events(50, relay_every=5)
                 if isinstance(e, CriticalResultRelay))  # fmt: skip
    with pytest.raises(ValueError, match="no DICOM"):
        to_dicom_xml(relay.stamped(producer_id="p", producer_seq=1))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- security events

_PATIENT_OBJECT = (
    b'<ParticipantObjectIdentification ParticipantObjectID="MRN9900112^^^stmarys-boston" '
    b'ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">'
)
_STUDY_OBJECT = (
    b'<ParticipantObjectIdentification ParticipantObjectID="2.25.77" '
    b'ParticipantObjectTypeCode="2" ParticipantObjectTypeCodeRole="3">'
    b'<ParticipantObjectIDTypeCode csd-code="110180" codeSystemName="DCM" '
    b'originalText="Study Instance UID"/></ParticipantObjectIdentification>'
)


def test_a_security_alert_that_names_a_study_records_access_to_its_images() -> None:
    """An emergency override that names the patient *and* the study opened is an access to
    those images: a PhiAccessEvent with the study, as before SecurityEvent existed."""
    payload = _payload("emergency-override-start.xml").replace(
        b"</AuditMessage>", _STUDY_OBJECT + b"</AuditMessage>"
    )
    (event,) = events_from_dicom(payload)
    assert type(event) is PhiAccessEvent
    assert (event.dicom_event_id, event.event_type_code) == ("110113", "110127")
    assert event.study == Study(uid="2.25.77")
    assert event.patient == Patient(id="MRN9900112", issuer="stmarys-boston")


def test_a_security_event_names_a_study_without_a_patient_in_its_details() -> None:
    payload = _payload("user-login.xml").replace(
        b"</AuditMessage>", _STUDY_OBJECT + b"</AuditMessage>"
    )
    (event,) = events_from_dicom(payload)
    assert isinstance(event, SecurityEvent)
    assert event.patient is None
    assert event.details["study_uids"] == "2.25.77"


def test_an_override_of_several_records_is_one_security_event_per_patient() -> None:
    payload = _payload("emergency-override-start.xml")
    second = _PATIENT_OBJECT.replace(b"MRN9900112", b"MRN9900113")
    end = payload.index(b"</AuditMessage>")
    patient = payload.index(b"<ParticipantObjectIdentification")
    two = payload[:end] + second + payload[payload.index(b">", patient) + 1 : end] + payload[end:]
    events = events_from_dicom(two)
    assert [type(e) for e in events] == [SecurityEvent, SecurityEvent]
    assert [e.patient.id for e in events if e.patient is not None] == ["MRN9900112", "MRN9900113"]
    assert [e.event_id for e in events] == [event_id_for(two, 0), event_id_for(two, 1)]


def test_security_action_defaults_to_execute_and_must_be_a_code() -> None:
    payload = _payload("user-login.xml")
    (event,) = events_from_dicom(payload.replace(b'EventActionCode="E" ', b""))
    assert event.action is EventAction.EXECUTE  # type: ignore[union-attr]
    with pytest.raises(AtnaUnmappableError) as caught:
        events_from_dicom(payload.replace(b'EventActionCode="E" ', b'EventActionCode="Z" '))
    assert caught.value.reason == "invalid_event"


def test_a_message_of_another_event_without_a_patient_is_still_kept() -> None:
    """no_patient is left only for messages that fit no schema: a PHI EventID without a
    patient (a Query over every patient, a Study Deleted without its patient)."""
    payload = _payload("user-login.xml").replace(
        b'csd-code="110114" codeSystemName="DCM" originalText="User Authentication"',
        b'csd-code="110103" codeSystemName="DCM" originalText="DICOM Instances Accessed"',
    )
    with pytest.raises(AtnaUnmappableError) as caught:
        events_from_dicom(payload)
    assert caught.value.reason == "no_patient"


SECURITY = SecurityEvent(
    event_id=uuid.UUID("0b8a2e7c-2222-4222-8333-444455556666"),
    event_time=utc(2026, 3, 1, 12, 0, 0, 1),
    producer_id="atna-receiver",
    producer_seq=2**41,
    facility=Facility(id="stmarys-boston", name="St. Mary's <Boston> & Co"),
    actor=Actor(
        user_id="er.patel",
        name="Ravi \"Patel\"\n'Jr'",
        role="ed attending (locum)",
        organization="ED Physicians Group",
        npi="1234567893",
    ),
    dicom_event_id="110113",
    event_type_code="110127",
    action=EventAction.EXECUTE,
    outcome=EventOutcome.MINOR_FAILURE,
    network_address="fe80::1",
    patient=Patient(id="MRN^9", issuer="stmarys&boston", state="MA"),
    purpose_of_use="BTG",
    details={"query": "PatientID=MRN^9", "reason": "", "ünïcode": "välue ✓"},
)


@pytest.mark.parametrize(
    "event",
    [
        SECURITY,
        dataclasses.replace(SECURITY, patient=None, purpose_of_use=None, details={}),
        SecurityEvent(
            producer_id="p",
            producer_seq=0,
            facility=Facility(id="f"),
            actor=Actor(user_id="u", role="r"),
            dicom_event_id="110114",
        ),
        dataclasses.replace(SECURITY, dicom_event_id="110108", event_type_code="110124"),
        dataclasses.replace(SECURITY, event_type_code="X-LOCAL.1", action=EventAction.READ),
    ],
    ids=["full", "no-patient", "bare", "network-entry", "private-subtype"],
)
def test_every_security_event_field_survives_dicom_xml_and_fhir(event: SecurityEvent) -> None:
    validate(event)
    assert events_from_dicom(to_dicom_xml(event), keep_producer=True) == (event,)
    full_name, record = _SCHEMAS.decode(_CODEC.encode(event))
    assert full_name == "philedger.audit.SecurityEvent"
    resource = fhir.audit_event(full_name, record, event_id=event.event_id, position=POSITION)
    assert pfhir.event_from_fhir(resource, keep_producer=True) == event


def test_a_written_message_keeps_its_schema() -> None:
    """A PhiAccessEvent with a security EventID and no study (which a foreign message of
    that shape would not be) comes back a PhiAccessEvent: the ledger object says so."""
    access = PhiAccessEvent(
        producer_id="p",
        producer_seq=3,
        facility=Facility(id="f"),
        actor=Actor(user_id="u", role="r"),
        dicom_event_id="110114",
        event_type_code="110122",
        action=EventAction.EXECUTE,
        patient=Patient(id="1"),
    )
    assert events_from_dicom(to_dicom_xml(access), keep_producer=True) == (access,)
    (loose,) = events_from_dicom(to_dicom_xml(access))
    assert type(loose) is PhiAccessEvent


def test_a_written_security_event_names_one_patient() -> None:
    xml = to_dicom_xml(SECURITY)
    two = xml.replace(b"</AuditMessage>", _PATIENT_OBJECT + b"<ParticipantObjectIDTypeCode "
                      b'csd-code="2" codeSystemName="RFC-3881"/>'
                      b"</ParticipantObjectIdentification></AuditMessage>")  # fmt: skip
    with pytest.raises(AtnaUnmappableError) as caught:
        events_from_dicom(two)
    assert caught.value.reason == "ambiguous_objects"
