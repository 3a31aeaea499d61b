"""The DICOM proxy's pure parts: identifiers to criteria, patients and studies; the
audit return keys it adds and strips; the recorder gate."""

from __future__ import annotations

import dataclasses
from datetime import UTC

import pytest
from pydicom.dataset import Dataset

from integrations.dicomproxy import (
    DicomOperation,
    MemoryRecorder,
    OperationKind,
    PatientRef,
)
from integrations.dicomproxy.identifiers import (
    add_return_keys,
    criteria_of,
    patients_of,
    query_level_of,
    strip_keys,
    studies_of,
    unique,
)
from integrations.dicomproxy.recording import Draft, Gate, Peer

PEER = Peer(
    calling_ae="FINDSCU", called_ae="PROXY", address="10.0.0.7", port=40000, tls=False,
    certificate_subject=None,
)  # fmt: skip


def _study_query() -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.PatientID = "PID001"
    ds.IssuerOfPatientID = "HOSP"
    ds.StudyDate = "20260101-20260131"
    ds.ModalitiesInStudy = ["CT", "MR"]
    ds.PatientName = ""
    return ds


def test_criteria_are_the_keys_with_values_in_tag_order() -> None:
    assert criteria_of(_study_query()) == (
        ("StudyDate", "20260101-20260131"),
        ("ModalitiesInStudy", "CT\\MR"),
        ("PatientID", "PID001"),
        ("IssuerOfPatientID", "HOSP"),
    )


def test_worklist_criteria_name_sequence_items_and_there_is_no_level() -> None:
    ds = Dataset()
    ds.PatientName = ""
    first, second = Dataset(), Dataset()
    first.Modality, first.ScheduledStationAETitle = "CT", ""
    second.Modality = "MR"
    ds.ScheduledProcedureStepSequence = [first, second]
    assert query_level_of(ds) is None
    assert criteria_of(ds) == (
        ("ScheduledProcedureStepSequence.Modality", "CT"),
        ("ScheduledProcedureStepSequence[1].Modality", "MR"),
    )
    assert patients_of(ds) == ()


@pytest.mark.filterwarnings("ignore:The PN component length")
def test_long_criteria_are_cut() -> None:
    ds = Dataset()
    ds.PatientName = "A" * 10_000
    ((_, value),) = criteria_of(ds)
    assert len(value) == 256


def test_patients_and_studies() -> None:
    ds = _study_query()
    assert patients_of(ds) == (PatientRef(patient_id="PID001", issuer="HOSP"),)
    ds.IssuerOfPatientID = ""
    assert patients_of(ds) == (PatientRef(patient_id="PID001"),)
    ds.PatientID = "  "
    assert patients_of(ds) == ()
    ds.StudyInstanceUID = ["1.2.3", "1.2.4"]
    assert studies_of(ds) == ("1.2.3", "1.2.4")
    assert patients_of(None) == ()
    assert studies_of(None) == ()
    assert criteria_of(None) == ()
    assert query_level_of(ds) == "STUDY"


def test_return_keys_are_added_where_the_level_allows_and_stripped_again() -> None:
    ds = Dataset()
    ds.QueryRetrieveLevel = "PATIENT"
    ds.PatientName = "DOE*"
    assert add_return_keys(ds) == ("PatientID", "IssuerOfPatientID")
    study = _study_query()
    assert add_return_keys(study) == ("StudyInstanceUID",)
    answer = Dataset()
    answer.PatientID, answer.StudyInstanceUID, answer.StudyDate = "P", "1.2", "20260101"
    strip_keys(answer, ("StudyInstanceUID", "IssuerOfPatientID"))
    assert [e.keyword for e in answer] == ["StudyDate", "PatientID"]


def test_unique_keeps_first_seen_order() -> None:
    assert unique(["b", "a", "b", "c", "a"]) == ("b", "a", "c")


def test_draft_finishes_into_an_immutable_operation() -> None:
    draft = Draft(OperationKind.FIND, "1.2.840.10008.5.1.4.1.2.2.1", PEER).request(_study_query())
    for pid in ("PID001", "PID002", "PID001"):
        answer = Dataset()
        answer.PatientID = pid
        answer.StudyInstanceUID = f"1.2.{pid[-1]}"
        draft.result(answer)
    op = draft.finish(0x0000)
    assert op.result_patients == (PatientRef(patient_id="PID001"), PatientRef(patient_id="PID002"))
    assert op.result_studies == ("1.2.1", "1.2.2")
    assert op.result_count == 3
    assert op.requested_patients == (PatientRef(patient_id="PID001", issuer="HOSP"),)
    assert op.query_level == "STUDY"
    assert op.status == 0
    assert op.started_at.tzinfo is UTC
    assert op.ended_at >= op.started_at
    with pytest.raises(dataclasses.FrozenInstanceError):
        op.status = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        DicomOperation(OperationKind.ECHO)  # type: ignore[misc,call-arg]


@pytest.mark.parametrize("fail_closed", [True, False])
def test_gate_applies_fail_closed_or_open(fail_closed: bool) -> None:
    recorder = MemoryRecorder()
    gate = Gate(recorder, fail_closed=fail_closed)
    op = Draft(OperationKind.ECHO, "1.2.840.10008.1.1", PEER).finish(0)
    assert gate.admit(op)
    recorder.available = False
    assert gate.admit(op) is (not fail_closed)
    assert (gate.refused, gate.lost) == ((1, 0) if fail_closed else (0, 1))
    assert recorder.operations == (op,)


def test_gate_treats_a_broken_recorder_as_unavailable() -> None:
    class Broken:
        def record(self, op: DicomOperation) -> None:
            raise KeyError("bug")

    op = Draft(OperationKind.ECHO, "1.2.840.10008.1.1", PEER).finish(0)
    assert not Gate(Broken(), fail_closed=True).admit(op)
    assert Gate(Broken(), fail_closed=False).admit(op)


def test_an_undecodable_identifier_is_none() -> None:
    from types import SimpleNamespace

    from integrations.dicomproxy.recording import identifier_of

    class Broken:
        assoc = SimpleNamespace(requestor=SimpleNamespace(address="10.0.0.7"))

        @property
        def identifier(self) -> Dataset:
            raise ValueError("truncated element")

    good = SimpleNamespace(identifier=_study_query(), assoc=Broken.assoc)
    assert identifier_of(Broken()) is None
    assert identifier_of(good) is good.identifier


def test_the_logging_recorder_writes_no_phi(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from integrations.dicomproxy import LoggingRecorder

    draft = Draft(OperationKind.FIND, "1.2.840.10008.5.1.4.1.2.2.1", PEER).request(_study_query())
    answer = Dataset()
    answer.PatientID, answer.StudyInstanceUID = "PID001", "1.2.3"
    draft.result(answer)
    with caplog.at_level(logging.INFO):
        LoggingRecorder().record(draft.finish(0))
    (line,) = caplog.messages
    assert "C-FIND FINDSCU->PROXY from 10.0.0.7:40000" in line
    assert "patients=1" in line
    assert "PID001" not in line
    assert "2026" not in line  # criteria values (StudyDate) stay out
