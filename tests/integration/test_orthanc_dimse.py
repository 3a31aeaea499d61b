"""C-FIND and C-STORE received by Orthanc itself, with the audit plugin (issue #14, item 3).

Two Orthanc 1.10 processes on free ports hold the same four patients: ``native`` (no
plugin) and ``audited`` (the plugin, which replaces Orthanc's C-FIND SCP). A matrix of
C-FIND queries (every level, patient and study root, wildcards, ranges, lists, empty
return keys, computed counters, a sequence, a non-main tag, a non-ASCII name, case
rules, no match, no level) must give, dataset by dataset, the same answers and statuses
from both, with Orthanc's limits unset and set. Then the audited one's events, read back
from Kafka: a query that returned three patients discloses all three, a query that
matched nobody is still recorded, and a C-STORE names the caller's IP address.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from pydicom import dcmread
from pydicom.dataset import Dataset
from pynetdicom import AE
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    PatientRootQueryRetrieveInformationModelFind as PATIENT_ROOT,
)
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind as STUDY_ROOT,
)

from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.events import PhiAccessEvent
from tests.dimse_orthanc import (
    ARCHIVE,
    PYTHON_PLUGIN,
    OrthancProcess,
    have_orthanc,
    instances,
    start_orthanc,
)
from tests.reaping import stop_later
from tests.support import ROOT, Stack

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(240),
    pytest.mark.skipif(not have_orthanc(), reason="needs Debian's orthanc, orthanc-python, DCMTK"),
]

PLUGIN_SCRIPT = ROOT / "integrations" / "orthanc" / "orthanc_plugin.py"
#: Orthanc settings each pair runs with (the matrix's expected counts are for "default").
SETTINGS = {
    "default": {},
    "limited": {
        "LimitFindResults": 3,
        "LimitFindInstances": 4,
        "DefaultEncoding": "Utf8",  # answers are re-encoded in it
        "StorageAccessOnFind": "Answers",  # match on the index only, answer from files
    },
    "index-only": {"StorageAccessOnFind": "Never", "CaseSensitivePN": True},
}
DICOM_SETTINGS = {
    "DicomAlwaysAllowFind": True,
    "DicomAlwaysAllowStore": True,
    "DicomAlwaysAllowEcho": True,
}


@dataclass
class Pair:
    name: str
    native: OrthancProcess
    audited: OrthancProcess
    topics: tuple[str, str]
    stack: Stack


def plugin_settings(stack: Stack, topics: tuple[str, str], home: Path) -> dict[str, Any]:
    from tests.e2e.test_orthanc import orthanc_kafka_settings, plugin_python_path

    producer_id = f"orthanc-dimse-{uuid.uuid4().hex[:6]}"
    return {
        "Plugins": [str(PYTHON_PLUGIN)],
        "PythonScript": str(PLUGIN_SCRIPT),
        "PhiLedger": {
            "KafkaBootstrap": stack.kafka_bootstrap,
            "AccessTopic": topics[0],
            "RelayTopic": topics[1],
            "ProducerId": producer_id,
            "ProducerKeyFile": stack.producer_key(producer_id),
            "FacilityId": "dimse-test",
            "SpoolDirectory": str(home / "spool"),
            "DefaultPatientIdIssuer": "DEFAULT",
            "PythonPath": [plugin_python_path()],
            "PipePython": sys.executable,
            "StopTimeoutSeconds": 3.0,
            **orthanc_kafka_settings(stack.kafka(KafkaRole.ORTHANC)),
        },
    }


@pytest.fixture(scope="module", params=list(SETTINGS))
def pair(
    request: pytest.FixtureRequest, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    limits = SETTINGS[request.param]
    topics = stack.topics(f"dimse-{request.param}-{uuid.uuid4().hex[:6]}")
    asyncio.run(ensure_topics(stack.kafka_bootstrap, topics, 1, stack.kafka(KafkaRole.ADMIN)))
    started: list[OrthancProcess] = []
    try:
        home = tmp_path_factory.mktemp("native")
        started.append(start_orthanc(home, "native", "DIMSEPACS", {**DICOM_SETTINGS, **limits}))
        home = tmp_path_factory.mktemp("audited")
        settings = {**DICOM_SETTINGS, **limits, **plugin_settings(stack, topics, home)}
        started.append(start_orthanc(home, "audited", "DIMSEPACS", settings,
                                     ready_line="PhiLedger: auditing PHI access"))  # fmt: skip
        for server in started:
            for dicom in instances():
                server.rest("POST", "/instances", dicom)
        yield Pair(request.param, started[0], started[1], topics, stack)
    finally:
        for server in started:  # nothing reads them after this
            stop_later(server.proc)


def c_find(
    server: OrthancProcess, model: str, query: Dataset, calling: str = "FINDSCU"
) -> list[tuple[int, dict[str, Any] | None]]:
    """(status, answer as DICOM JSON) of every C-FIND response, in order."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(model)
    assoc = ae.associate("127.0.0.1", server.dicom, ae_title=server.aet)
    assert assoc.is_established
    try:
        return [
            (int(status.Status), None if ident is None else ident.to_json_dict())
            for status, ident in assoc.send_c_find(query, model)
        ]
    finally:
        assoc.release()


def q(level: str | None, charset: str | None = None, **keys: Any) -> Dataset:
    ds = Dataset()
    if charset:
        ds.SpecificCharacterSet = charset
    if level is not None:
        ds.QueryRetrieveLevel = level
    for name, value in keys.items():
        setattr(ds, name, value)
    return ds


def private_query() -> Dataset:
    """A private creator is a key with a value: Orthanc matches it like any other."""
    ds = q("STUDY", StudyInstanceUID="")
    ds.add_new(0x00090010, "LO", "SOMECREATOR")
    ds.add_new(0x00091001, "LO", "")
    return ds


STUDY_A, STUDY_B = ARCHIVE[0].studies[0].uid, ARCHIVE[0].studies[1].uid
PATIENT_KEYS = {"PatientName": "", "PatientID": "", "PatientBirthDate": "", "PatientSex": ""}
STUDY_KEYS = {"StudyInstanceUID": "", "StudyDate": "", "AccessionNumber": "", "PatientID": ""}

#: name -> (model, query, answers the native Orthanc must give without limits, or None)
MATRIX: dict[str, tuple[str, Callable[[], Dataset], int | None]] = {
    "patients-all-with-counters": (PATIENT_ROOT, lambda: q(
        "PATIENT", **PATIENT_KEYS, NumberOfPatientRelatedStudies="",
        NumberOfPatientRelatedSeries="", NumberOfPatientRelatedInstances=""), 4),
    "patients-name-wildcard-any-case": (PATIENT_ROOT, lambda: q(
        "PATIENT", **{**PATIENT_KEYS, "PatientName": "doe*"}), 2),
    "patient-id-case-sensitive": (PATIENT_ROOT, lambda: q(
        "PATIENT", **{**PATIENT_KEYS, "PatientID": "PID002"}), 0),
    "patient-id-lower-case": (PATIENT_ROOT, lambda: q(
        "PATIENT", **{**PATIENT_KEYS, "PatientID": "pid002"}), 1),
    "patient-id-wildcard-case-sensitive": (PATIENT_ROOT, lambda: q(
        "PATIENT", **{**PATIENT_KEYS, "PatientID": "PID*"}), 3),
    "patient-non-ascii-name": (PATIENT_ROOT, lambda: q(
        "PATIENT", "ISO_IR 192", **{**PATIENT_KEYS, "PatientName": "Müller*"}), 1),
    "patients-no-match": (PATIENT_ROOT, lambda: q(
        "PATIENT", **{**PATIENT_KEYS, "PatientName": "NOBODY*"}), 0),
    "studies-date-range-with-counters": (STUDY_ROOT, lambda: q(
        "STUDY", **{**STUDY_KEYS, "StudyDate": "20240101-20241231"}, PatientName="",
        ModalitiesInStudy="", NumberOfStudyRelatedSeries="",
        NumberOfStudyRelatedInstances="", SOPClassesInStudy="", StudyDescription=""), 2),
    "studies-open-range": (STUDY_ROOT, lambda: q(
        "STUDY", **{**STUDY_KEYS, "StudyDate": "-20240630"}), 3),
    "studies-modality-in-study": (STUDY_ROOT, lambda: q(
        "STUDY", **STUDY_KEYS, ModalitiesInStudy="CT"), 2),
    "studies-accession-list": (STUDY_ROOT, lambda: q(
        "STUDY", **{**STUDY_KEYS, "AccessionNumber": "ACC1\\acc3\\ACC4"}), 3),
    "studies-accession-wrong-case": (STUDY_ROOT, lambda: q(
        "STUDY", **{**STUDY_KEYS, "AccessionNumber": "ACC3"}), 0),
    "studies-lower-level-keys": (STUDY_ROOT, lambda: q(
        "STUDY", **{**STUDY_KEYS, "PatientID": "PID001"}, Modality="", SeriesDescription="",
        SOPInstanceUID=""), 2),
    "studies-patient-root": (PATIENT_ROOT, lambda: q(
        "STUDY", **{**STUDY_KEYS, "PatientID": "PID001"}, StudyDescription="CT*"), 1),
    "studies-sequence-and-non-main-tag": (STUDY_ROOT, lambda: q(
        "STUDY", **STUDY_KEYS, ReferencedStudySequence=[], PatientWeight=""), 5),
    "studies-non-main-constraint": (STUDY_ROOT, lambda: q(
        "STUDY", **STUDY_KEYS, PatientWeight="70"), 2),
    "series-with-ancestors": (STUDY_ROOT, lambda: q(
        "SERIES", StudyInstanceUID=STUDY_A, SeriesInstanceUID="", Modality="",
        BodyPartExamined="", NumberOfSeriesRelatedInstances="", PatientName="",
        StudyDate=""), 2),
    "series-all": (STUDY_ROOT, lambda: q(
        "SERIES", StudyInstanceUID="", SeriesInstanceUID="", Modality="CT\\US"), 3),
    "images-of-a-study": (STUDY_ROOT, lambda: q(
        "IMAGE", StudyInstanceUID=STUDY_A, SeriesInstanceUID="", SOPInstanceUID="",
        InstanceNumber="", SOPClassUID="", PatientID=""), 3),
    "images-all": (PATIENT_ROOT, lambda: q(
        "IMAGE", PatientID="", StudyInstanceUID="", SeriesInstanceUID="", SOPInstanceUID=""), 8),
    "private-creator-and-key": (STUDY_ROOT, private_query, 0),
    "no-query-level": (STUDY_ROOT, lambda: q(None, StudyInstanceUID=STUDY_B), None),
    "unknown-query-level": (STUDY_ROOT, lambda: q("FRAME", StudyInstanceUID=STUDY_B), None),
}  # fmt: skip


@pytest.mark.parametrize("name", list(MATRIX))
def test_c_find_answers_equal_native_orthanc(pair: Pair, name: str) -> None:
    model, query, expected = MATRIX[name]
    native = c_find(pair.native, model, query())
    audited = c_find(pair.audited, model, query())
    answers = [a for _, a in native if a is not None]
    if expected is not None and pair.name == "default":
        assert len(answers) == expected, native  # the query means what it says
    if expected is None:
        assert native[-1][0] >= 0xA000, native  # Orthanc refuses it
    charset = "ISO_IR 192" if pair.native.config.get("DefaultEncoding") == "Utf8" else "ISO_IR 100"
    assert all(a["00080005"]["Value"] == [charset] for a in answers)  # its DefaultEncoding
    assert [s for s, _ in audited] == [s for s, _ in native]
    for got, want in zip(audited, native, strict=True):
        assert got == want, differences(got[1] or {}, want[1] or {})


def differences(got: dict[str, Any], want: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """tag -> (audited, native) of each element that differs."""
    return {t: (got.get(t), want.get(t)) for t in sorted(got.keys() | want.keys())
            if got.get(t) != want.get(t)}  # fmt: skip


def test_findscu_answers_equal_native_orthanc(pair: Pair, tmp_path: Path) -> None:
    """DCMTK's findscu, a study-level search as a workstation sends it."""
    answers = {}
    for server in (pair.native, pair.audited):
        out = tmp_path / server.name
        out.mkdir()
        run = subprocess.run(
            ["findscu", "-aet", "WORKSTATION", "-aec", server.aet, "-S", "-X", "-od", str(out),
             "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientName=*", "-k", "PatientID",
             "-k", "StudyDate=2024", "-k", "StudyInstanceUID", "-k", "ModalitiesInStudy",
             "-k", "NumberOfStudyRelatedInstances", "127.0.0.1", str(server.dicom)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert run.returncode == 0, run.stderr
        answers[server.name] = sorted(
            p.name + str(dcmread(p, force=True).to_json_dict()) for p in out.iterdir()
        )
    assert answers["audited"] == answers["native"]


# ---------------------------------------------------------------------- recorded events


async def _read_events(
    pair: Pair, done: Callable[[list[PhiAccessEvent]], bool], timeout: float = 30.0
) -> list[PhiAccessEvent]:
    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, **pair.stack.kafka_client(KafkaRole.CONSUMER)
    )
    await consumer.start()
    codec, events = Codec(), list[PhiAccessEvent]()
    try:
        part = TopicPartition(pair.topics[0], 0)
        consumer.assign([part])
        await consumer.seek_to_beginning(part)
        deadline = time.monotonic() + timeout
        while not done(events) and time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                for record in records:
                    event = codec.decode(record.value)
                    if isinstance(event, PhiAccessEvent):
                        events.append(event)
    finally:
        await consumer.stop()
    return events


def events_of(pair: Pair, done: Callable[[list[PhiAccessEvent]], bool]) -> list[PhiAccessEvent]:
    return asyncio.run(_read_events(pair, done))


#: A test about what is recorded, not about Orthanc's settings: run with the defaults only.
ONCE = pytest.mark.parametrize("pair", ["default"], indirect=True)


def queries_by(aet: str) -> Callable[[list[PhiAccessEvent]], list[PhiAccessEvent]]:
    return lambda events: [
        e for e in events if e.actor.user_id == aet and e.dicom_event_id == "110112"
    ]


@ONCE
def test_a_query_returning_three_patients_discloses_all_three(pair: Pair) -> None:
    query = q("STUDY", **{**STUDY_KEYS, "StudyDate": "-20240630"})
    answers = c_find(pair.audited, STUDY_ROOT, query, calling="SNOOPER")
    assert len([a for _, a in answers if a]) == 3
    mine = queries_by("SNOOPER")
    (event,) = mine(events_of(pair, lambda events: bool(mine(events))))
    assert event.actor.role == "dicom-application-entity"
    assert event.action.value == "E"
    assert event.patient is None  # the query named nobody
    assert {(p.id, p.issuer, p.studies) for p in event.disclosed} == {
        ("PID001", "HOSP", (STUDY_A,)),
        ("pid002", "HOSP", (ARCHIVE[1].studies[0].uid,)),
        ("PID003", "OTHER", (ARCHIVE[2].studies[0].uid,)),
    }
    assert event.details["query.StudyDate"] == "-20240630"
    assert event.details["dicom.level"] == "STUDY"
    assert event.details["dicom.called_aet"] == pair.audited.aet
    assert event.details["dicom.answers"] == "3"
    assert not any(STUDY_A in v for v in event.details.values())  # criteria, not results


@ONCE
def test_a_query_matching_nobody_is_recorded(pair: Pair) -> None:
    answers = c_find(pair.audited, PATIENT_ROOT, q("PATIENT", PatientName="SMITH^NOBODY",
                     PatientID=""), calling="NOBODYQ")  # fmt: skip
    assert answers == [(0, None)]
    mine = queries_by("NOBODYQ")
    (event,) = mine(events_of(pair, lambda events: bool(mine(events))))
    assert event.patient is None
    assert event.disclosed == ()
    assert event.details["query.PatientName"] == "SMITH^NOBODY"


@ONCE
def test_a_query_naming_one_patient_names_them(pair: Pair) -> None:
    c_find(pair.audited, PATIENT_ROOT, q("STUDY", PatientID="PID003", StudyInstanceUID=""),
           calling="NAMEDQ")  # fmt: skip
    mine = queries_by("NAMEDQ")
    (event,) = mine(events_of(pair, lambda events: bool(mine(events))))
    assert event.patient is not None
    assert (event.patient.id, event.patient.issuer) == ("PID003", "OTHER")
    assert [p.id for p in event.disclosed] == ["PID003"]


@ONCE
def test_c_store_records_the_calling_ip(pair: Pair, tmp_path: Path) -> None:
    path = tmp_path / "one.dcm"
    dicom = instances()[-1]
    path.write_bytes(dicom)
    pair.audited.rest("DELETE", f"/patients/{_patient_id('PID004')}")
    run = subprocess.run(
        ["storescu", "-aet", "MODALITY1", "-aec", pair.audited.aet, "127.0.0.1",
         str(pair.audited.dicom), str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr

    def stored(events: list[PhiAccessEvent]) -> list[PhiAccessEvent]:
        return [
            e for e in events if e.actor.user_id == "MODALITY1" and e.dicom_event_id == "110107"
        ]

    (event,) = stored(events_of(pair, lambda events: bool(stored(events))))
    assert event.network_address == "127.0.0.1"
    assert event.details["orthanc.called_aet"] == pair.audited.aet
    assert event.patient is not None
    assert event.patient.id == "PID004"


def _patient_id(pid: str) -> str:
    from integrations.orthanc.resolve import orthanc_id

    return orthanc_id(pid)


@ONCE
def test_an_image_level_query_discloses_the_studies_of_its_instances(pair: Pair) -> None:
    query = q("IMAGE", PatientID="PID001", StudyInstanceUID="", SOPInstanceUID="")
    answers = c_find(pair.audited, PATIENT_ROOT, query, calling="IMAGEQ")
    assert len([a for _, a in answers if a]) == 4
    mine = queries_by("IMAGEQ")
    (event,) = mine(events_of(pair, lambda events: bool(mine(events))))
    assert [(p.id, p.studies) for p in event.disclosed] == [
        ("PID001", tuple(sorted((STUDY_A, STUDY_B))))
    ]
    assert event.details["dicom.answers"] == "4"
