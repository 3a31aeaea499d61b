"""DICOM audit messages of accesses that name many patients, or none (PhiAccessEvent v2):
a foreign Query that names no patient is a patient-less Query; one with several patient
objects is one event disclosing them all; a non-Query naming several patients is one event
per patient (their studies listed, whose is not stated), an Audit Log Used naming
several patients one per patient. The writer writes disclosed
patients as patient objects and the rest in its ledger object, so that every v2 event
survives write-then-map, and a written message whose objects disagree is refused."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integrations.atna.dicom_audit import events_from_dicom, to_dicom_xml
from integrations.errors import AtnaUnmappableError
from producers.events import (
    Actor,
    DisclosedPatient,
    EventAction,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    Study,
    validate,
)

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "dicom-audit"
QUERY = (CORPUS / "query.xml").read_bytes()
STUDY = "1.2.826.0.1.3680043.8.498"
_PATIENT = (
    '<ParticipantObjectIdentification ParticipantObjectID="{id}" ParticipantObjectTypeCode="1"'
    ' ParticipantObjectTypeCodeRole="1"><ParticipantObjectIDTypeCode csd-code="2"'
    ' codeSystemName="RFC-3881" originalText="Patient Number"/>'
    "</ParticipantObjectIdentification>"
)
_STUDY = (
    '<ParticipantObjectIdentification ParticipantObjectID="{uid}" ParticipantObjectTypeCode="2"'
    ' ParticipantObjectTypeCodeRole="3"><ParticipantObjectIDTypeCode csd-code="110180"'
    ' codeSystemName="DCM" originalText="Study Instance UID"/>'
    "</ParticipantObjectIdentification>"
)


def _query_with(*objects: str, drop_patient: bool = True) -> bytes:
    """query.xml without its patient, with ``objects`` added."""
    payload = QUERY
    if drop_patient:
        payload = re.sub(
            rb'<ParticipantObjectIdentification ParticipantObjectID="MRN5550123".*?'
            rb"</ParticipantObjectIdentification>",
            b"",
            payload,
            flags=re.S,
        )
    return payload.replace(b"</AuditMessage>", "".join(objects).encode() + b"</AuditMessage>")


def _check(event: object) -> None:
    assert isinstance(event, PhiAccessEvent)
    validate(dataclasses.replace(event, producer_id="atna", producer_seq=0))


def test_a_query_with_several_patients_discloses_them_all() -> None:
    payload = _query_with(
        _PATIENT.format(id="P2^^^hosp"),
        _PATIENT.format(id="P1"),
        _PATIENT.format(id="P1^^^hosp"),
        _PATIENT.format(id="P2^^^hosp"),  # the same patient twice: listed once
    )
    (event,) = events_from_dicom(payload)
    assert isinstance(event, PhiAccessEvent)
    assert event.patient is None
    assert event.disclosed == (
        DisclosedPatient(id="P1"),
        DisclosedPatient(id="P1", issuer="hosp"),
        DisclosedPatient(id="P2", issuer="hosp"),
    )
    assert (event.disclosed_truncated, event.disclosed_total) == (False, None)
    assert event.details["query_object_id"] == "1.2.840.10008.5.1.4.1.2.2.1"
    assert event.key == "user|tech17.nguyen"
    _check(event)


def test_a_query_with_several_patients_and_studies_lists_the_studies_apart() -> None:
    payload = _query_with(
        _PATIENT.format(id="P1"),
        _PATIENT.format(id="P2"),
        _STUDY.format(uid=f"{STUDY}.1"),
        _STUDY.format(uid=f"{STUDY}.2"),
    )
    (event,) = events_from_dicom(payload)
    assert isinstance(event, PhiAccessEvent)
    assert [p.id for p in event.disclosed] == ["P1", "P2"]
    assert all(p.studies == () for p in event.disclosed)  # whose is not stated
    assert event.study is None
    assert event.details["study_uids"] == f"{STUDY}.1,{STUDY}.2"
    _check(event)


def test_a_query_naming_no_patient_and_one_study_keeps_the_study() -> None:
    (event,) = events_from_dicom(_query_with(_STUDY.format(uid=f"{STUDY}.7")))
    assert isinstance(event, PhiAccessEvent)
    assert (event.patient, event.disclosed) == (None, ())
    assert event.study == Study(uid=f"{STUDY}.7")
    _check(event)


def test_a_query_with_one_patient_still_names_them() -> None:
    (event,) = events_from_dicom(QUERY)
    assert isinstance(event, PhiAccessEvent)
    assert event.patient == Patient(id="MRN5550123")
    assert event.disclosed == ()


def test_a_query_returning_more_than_a_thousand_patients_is_truncated() -> None:
    payload = _query_with(*(_PATIENT.format(id=f"P{i:04}") for i in range(1001)))
    (event,) = events_from_dicom(payload)
    assert isinstance(event, PhiAccessEvent)
    assert len(event.disclosed) == 1000
    assert event.disclosed[-1].id == "P0999"
    assert (event.disclosed_truncated, event.disclosed_total) == (True, 1001)
    _check(event)


def test_a_deletion_of_several_patients_is_one_event_per_patient() -> None:
    (first, second) = events_from_dicom((CORPUS / "ambiguous-patients.xml").read_bytes())
    for event, pid in ((first, "MRN0000001"), (second, "MRN0000002")):
        assert isinstance(event, PhiAccessEvent)
        assert event.patient == Patient(id=pid)
        assert (event.study, event.disclosed) == (None, ())
        assert event.details["study_uids"] == "2.25.1,2.25.2"
        _check(event)
    assert first.event_id != second.event_id


def test_an_access_other_than_a_query_still_needs_a_patient() -> None:
    payload = _query_with().replace(b'csd-code="110112"', b'csd-code="110103"')
    with pytest.raises(AtnaUnmappableError) as caught:
        events_from_dicom(payload)
    assert caught.value.reason == "no_patient"
    assert "not a Query" in str(caught.value)


# ------------------------------------------------------------------ written messages

BASE = PhiAccessEvent(
    event_id=uuid.UUID("0b8a2e7c-3333-4222-8333-444455556666"),
    event_time=datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=UTC),
    producer_id="dicom-proxy",
    producer_seq=7,
    facility=Facility(id="stmarys-boston"),
    actor=Actor(user_id="WORKSTATION1", role="system"),
    dicom_event_id="110112",
    action=EventAction.EXECUTE,
    outcome=EventOutcome.SUCCESS,
    patient=None,
    network_address="10.0.0.9",
    details={"query": "PatientName=SMITH*"},
)
LISTED = (  # canonical: by issuer (none first), then id
    DisclosedPatient(id="A", studies=(f"{STUDY}.1", f"{STUDY}.2")),
    DisclosedPatient(id="C", issuer="hosp", state="NH", studies=(f"{STUDY}.3",)),
    DisclosedPatient(id="B^1", issuer="hosp&x", state="MA"),
)
WRITTEN = {
    "empty": BASE,
    "three": dataclasses.replace(BASE, disclosed=LISTED),
    "truncated": dataclasses.replace(
        BASE, disclosed=LISTED, disclosed_truncated=True, disclosed_total=40
    ),
    "total-given": dataclasses.replace(BASE, disclosed=LISTED, disclosed_total=3),
    "named-and-listed": dataclasses.replace(
        BASE, patient=Patient(id="C", issuer="hosp", state="NH"), disclosed=LISTED
    ),
    "named-not-listed": dataclasses.replace(
        BASE,
        patient=Patient(id="Z", state="RI"),
        study=Study(uid=f"{STUDY}.9", accession="ACC9"),
        disclosed=LISTED[:2],
    ),
    "bulk-read": dataclasses.replace(
        BASE, dicom_event_id="110103", action=EventAction.READ, details={}, disclosed=LISTED
    ),
}


def _patient_objects(xml: bytes) -> int:
    return xml.count(b'ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1"')


@pytest.mark.parametrize("name", sorted(WRITTEN))
def test_a_v2_event_survives_write_then_map(name: str) -> None:
    event = WRITTEN[name]
    validate(event)
    xml = to_dicom_xml(event)
    assert events_from_dicom(xml, keep_producer=True) == (event,)
    (loose,) = events_from_dicom(xml)
    assert loose.event_id == event.event_id
    named = {(event.patient.id, event.patient.issuer)} if event.patient else set()
    everyone = named | {(p.id, p.issuer) for p in event.disclosed}
    assert _patient_objects(xml) == len(everyone)  # each patient once, as a patient object


def test_a_written_query_read_by_another_repository_discloses_its_patients() -> None:
    """Without the ledger object (what a foreign audit repository understands), a written
    Query naming no one lists its patient objects as the result set."""
    xml = to_dicom_xml(WRITTEN["three"])
    foreign = re.sub(
        rb"<ParticipantObjectIdentification ParticipantObjectID=\"urn:uuid:.*?"
        rb"</ParticipantObjectIdentification>",
        b"",
        xml,
        flags=re.S,
    )
    (event,) = events_from_dicom(foreign)
    assert isinstance(event, PhiAccessEvent)
    assert event.patient is None
    assert [(p.id, p.issuer, p.state, p.studies) for p in event.disclosed] == [
        ("A", None, None, ()),
        ("C", "hosp", None, ()),
        ("B^1", "hosp&x", None, ()),
    ]


def _detail(kind: str, value: str) -> bytes:
    import base64

    return b'<ParticipantObjectDetail type="%s" value="%s"/>' % (
        kind.encode(),
        base64.b64encode(value.encode()),
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("extra_patient", "invalid_event"),
        ("missing_patient", "invalid_event"),
        ("bad_disclosed", "invalid_event"),
        ("unsorted", "invalid_event"),
    ],
)
def test_a_written_message_whose_patients_disagree_is_refused(change: str, reason: str) -> None:
    xml = to_dicom_xml(WRITTEN["three"])
    if change == "extra_patient":
        xml = xml.replace(b"</AuditMessage>", _PATIENT.format(id="X").encode() + b"</AuditMessage>")
    elif change == "missing_patient":
        xml = re.sub(
            rb'<ParticipantObjectIdentification ParticipantObjectID="C\^\^\^hosp".*?'
            rb"</ParticipantObjectIdentification>",
            b"",
            xml,
            flags=re.S,
        )
    elif change == "bad_disclosed":
        xml = xml.replace(
            b'<ParticipantObjectDetail type="producer-seq"',
            _detail("disclosed", '{"id": "A"}') + b'<ParticipantObjectDetail type="producer-seq"',
        )
    else:  # a disclosed patient listed twice breaks the canonical order
        xml = xml.replace(
            b'<ParticipantObjectDetail type="producer-seq"',
            _detail("disclosed", '["C", "hosp", "NH", []]')
            + b'<ParticipantObjectDetail type="producer-seq"',
        )
    with pytest.raises(AtnaUnmappableError) as caught:
        events_from_dicom(xml, keep_producer=True)
    assert caught.value.reason == reason


def test_a_foreign_audit_log_used_naming_several_patients_is_one_event_each() -> None:
    payload = (CORPUS / "audit-log-used.xml").read_bytes()
    payload = payload.replace(
        b"</AuditMessage>", _PATIENT.format(id="MRN7654321").encode() + b"</AuditMessage>"
    )
    events = events_from_dicom(payload)
    assert [type(e).__name__ for e in events] == ["AuditLogUsed", "AuditLogUsed"]
    assert [(e.patient.id if e.patient else None) for e in events] == ["MRN1234567", "MRN7654321"]
    assert len({e.event_id for e in events}) == 2
    assert events[0].query == events[1].query  # type: ignore[union-attr]


def test_a_written_audit_log_used_is_one_event() -> None:
    (event,) = events_from_dicom((CORPUS / "audit-log-used.xml").read_bytes())
    xml = to_dicom_xml(event.stamped(producer_id="arr", producer_seq=1))
    two = xml.replace(b"</AuditMessage>", _PATIENT.format(id="X").encode() + b"</AuditMessage>")
    with pytest.raises(AtnaUnmappableError) as caught:
        events_from_dicom(two, keep_producer=True)
    assert caught.value.reason == "ambiguous_objects"
