"""The DICOM proxy's operations as ledger events (``eventmap``), the ``[ledger]`` section of
its configuration, and the ``LedgerRecorder``'s refusals (with a fake emitter)."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from integrations.dicomproxy import (
    DicomOperation,
    DicomProxyConfigError,
    LedgerRecorder,
    OperationKind,
    PatientRef,
    RecorderUnavailable,
    SubOperations,
    event_of,
    parse_config,
)
from integrations.dicomproxy.eventmap import outcome_of, user_of
from integrations.dicomproxy.ledgerconfig import LedgerConfig
from producers import (
    AuditEvent,
    Codec,
    EmitterPushbackError,
    EmitterUnavailableError,
    EventAction,
    EventOutcome,
    EventValidationError,
    Facility,
    validate,
)

FACILITY = Facility(id="radiology-east", name="Radiology East")
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
CT = "1.2.840.10008.5.1.4.1.1.2"
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
P1, P2, P3 = (PatientRef(patient_id=f"PID00{i}", issuer="HOSP") for i in (1, 2, 3))


def op(kind: OperationKind, sop: str = STUDY_FIND, **fields: Any) -> DicomOperation:
    base: dict[str, Any] = {
        "kind": kind,
        "sop_class_uid": sop,
        "calling_ae": "WS-READING-1",
        "called_ae": "LEDGERPROXY",
        "peer_address": "10.0.0.21",
        "peer_port": 40123,
        "tls": False,
        "peer_certificate_subject": None,
        "status": 0x0000,
        "started_at": T0,
        "ended_at": T0,
    }
    base.update(fields)
    return DicomOperation(**base)


def mapped(operation: DicomOperation) -> Any:
    event = event_of(operation, FACILITY)
    check(event)
    return event


def check(event: Any) -> None:
    """What the producer and the consumer accept (as the emitter stamps it)."""
    validate(event.stamped(producer_id="dicom-proxy-test", producer_seq=1))


def test_a_find_is_a_query_with_its_criteria_and_every_result_patient() -> None:
    event = mapped(
        op(
            OperationKind.FIND,
            query_level="STUDY",
            criteria=(("PatientName", "*O*"), ("StudyDate", "20260101-")),
            result_sets=((P3, ("1.2.3.1",)), (P1, ("1.2.1.2", "1.2.1.1")), (P2, ())),
            result_patients=(P3, P1, P2),
            result_studies=("1.2.3.1", "1.2.1.2", "1.2.1.1"),
            result_count=4,
        )
    )
    assert (event.dicom_event_id, event.action) == ("110112", EventAction.EXECUTE)
    assert event.patient is None  # the identifier names nobody
    assert [(d.id, d.studies) for d in event.disclosed] == [
        ("PID001", ("1.2.1.1", "1.2.1.2")),
        ("PID002", ()),
        ("PID003", ("1.2.3.1",)),
    ]
    assert not event.disclosed_truncated
    assert event.actor.user_id == "WS-READING-1"
    assert event.actor.role == "dicom-application-entity"
    assert event.network_address == "10.0.0.21"
    assert event.event_time == T0
    assert event.facility == FACILITY
    d = event.details
    assert d["query.PatientName"] == "*O*"
    assert d["query.StudyDate"] == "20260101-"
    assert (d["calling_ae"], d["called_ae"], d["tls"]) == ("WS-READING-1", "LEDGERPROXY", "false")
    assert (d["dimse"], d["sop_class"], d["query_level"], d["status"]) == (
        "C-FIND", STUDY_FIND, "STUDY", "0x0000",
    )  # fmt: skip
    assert d["result_count"] == "4"
    assert not any("PID" in v for v in d.values())  # results are never in the details


def test_a_find_naming_one_patient_names_them_and_a_wildcard_names_nobody() -> None:
    named = mapped(op(OperationKind.FIND, requested_patients=(P1,), result_sets=((P1, ()),)))
    assert named.patient is not None
    assert (named.patient.id, named.patient.issuer) == (
        "PID001",
        "HOSP",
    )
    wildcard = PatientRef(patient_id="PID*")
    assert mapped(op(OperationKind.FIND, requested_patients=(wildcard,))).patient is None


def test_a_find_that_matched_nobody_is_a_query_naming_nobody() -> None:
    event = mapped(op(OperationKind.FIND, criteria=(("PatientName", "NOBODY^*"),)))
    assert (event.dicom_event_id, event.patient, event.disclosed) == ("110112", None, ())
    assert event.key == "user|WS-READING-1"


def test_a_worklist_query_has_no_level() -> None:
    event = mapped(
        op(OperationKind.FIND, sop="1.2.840.10008.5.1.4.31",
           criteria=(("ScheduledProcedureStepSequence.Modality", "CT"),))
    )  # fmt: skip
    assert "query_level" not in event.details
    assert event.details["query.ScheduledProcedureStepSequence.Modality"] == "CT"


def test_get_and_move_are_instances_transferred_and_a_move_names_its_recipient() -> None:
    common: dict[str, Any] = {
        "query_level": "STUDY",
        "requested_studies": ("1.2.3.1",),
        "result_sets": ((P3, ("1.2.3.1",)),),
        "result_patients": (P3,),
        "result_studies": ("1.2.3.1",),
        "result_count": 3,
        "sub_operations": SubOperations(completed=3),
    }
    get = mapped(op(OperationKind.GET, STUDY_GET, **common))
    move = mapped(op(OperationKind.MOVE, STUDY_MOVE, move_destination="WS-READING-2", **common))
    for event in (get, move):
        assert (event.dicom_event_id, event.action) == ("110104", EventAction.READ)
        assert event.patient is None
        assert [d.id for d in event.disclosed] == ["PID003"]
        assert event.study is not None
        assert (event.study.uid, event.study.instances) == ("1.2.3.1", 3)
        assert event.details["sub_operations"] == "completed=3 failed=0 warning=0"
    assert get.recipient is None
    assert move.recipient is not None
    assert move.recipient.name == "WS-READING-2"
    assert move.details["move_destination"] == "WS-READING-2"


def test_a_move_to_an_unknown_destination_is_a_failure() -> None:
    event = mapped(
        op(OperationKind.MOVE, STUDY_MOVE, requested_patients=(P1,), move_destination="ELSEWHERE",
           status=0xA801, proxy_error="move_destination_unknown")
    )  # fmt: skip
    assert (event.dicom_event_id, event.action) == ("110104", EventAction.READ)
    assert event.outcome is EventOutcome.SERIOUS_FAILURE
    assert event.patient is not None
    assert event.patient.id == "PID001"
    assert event.details["proxy_error"] == "move_destination_unknown"
    assert event.details["status"] == "0xA801"


def test_a_retrieve_that_names_and_discloses_nobody_is_a_query() -> None:
    """A study-root C-MOVE to an unknown destination: no instance moved, nobody named."""
    event = mapped(
        op(OperationKind.MOVE, STUDY_MOVE, requested_studies=("1.2.9",),
           move_destination="ELSEWHERE", status=0xA801)
    )  # fmt: skip
    assert (event.dicom_event_id, event.action) == ("110112", EventAction.EXECUTE)
    assert event.details["dimse"] == "C-MOVE"
    assert event.study is not None
    assert event.study.uid == "1.2.9"
    assert event.recipient is not None
    assert event.recipient.name == "ELSEWHERE"


def test_a_store_is_instances_transferred_create_naming_the_stored_patient_and_study() -> None:
    event = mapped(
        op(OperationKind.STORE, CT, result_patients=(P2,), result_studies=("1.2.2.1",),
           result_sets=((P2, ("1.2.2.1",)),), result_count=1)
    )  # fmt: skip
    assert (event.dicom_event_id, event.action) == ("110104", EventAction.CREATE)
    assert event.patient is not None
    assert event.patient.id == "PID002"
    assert event.disclosed == ()
    assert event.study is not None
    assert (event.study.uid, event.study.sop_classes, event.study.instances) == (
        "1.2.2.1", (CT,), 1,
    )  # fmt: skip


def test_an_echo_is_a_query_naming_nobody() -> None:
    event = mapped(op(OperationKind.ECHO, "1.2.840.10008.1.1"))
    assert (event.dicom_event_id, event.action, event.patient) == (
        "110112", EventAction.EXECUTE, None,
    )  # fmt: skip
    assert event.details["dimse"] == "C-ECHO"
    assert "result_count" not in event.details


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (0x0000, EventOutcome.SUCCESS),
        (0xB000, EventOutcome.MINOR_FAILURE),
        (0xFE00, EventOutcome.MINOR_FAILURE),
        (0x0001, EventOutcome.MINOR_FAILURE),
        (0xA700, EventOutcome.SERIOUS_FAILURE),
        (0xA801, EventOutcome.SERIOUS_FAILURE),
        (0xC311, EventOutcome.SERIOUS_FAILURE),
        (None, EventOutcome.SERIOUS_FAILURE),
    ],
)
def test_outcome_from_the_dimse_status(status: int | None, outcome: EventOutcome) -> None:
    assert outcome_of(status) is outcome


def test_an_aborted_operation_records_no_status() -> None:
    event = mapped(op(OperationKind.GET, STUDY_GET, status=None, proxy_error="aborted",
                      requested_patients=(P1,)))  # fmt: skip
    assert event.outcome is EventOutcome.SERIOUS_FAILURE
    assert (event.details["status"], event.details["proxy_error"]) == ("none", "aborted")


def test_the_user_is_the_certificate_cn_with_mutual_tls() -> None:
    tls = op(OperationKind.ECHO, tls=True, peer_certificate_subject="CN=ws-1.example,O=Hosp")
    assert user_of(tls) == "ws-1.example"
    event = mapped(tls)
    assert event.details["tls"] == "true"
    assert event.details["tls_subject"] == "CN=ws-1.example,O=Hosp"
    assert event.details["calling_ae"] == "WS-READING-1"
    assert user_of(replace(tls, peer_certificate_subject="O=No CN")) == "O=No CN"
    assert user_of(replace(tls, peer_certificate_subject=None)) == "WS-READING-1"


def test_a_large_answer_is_truncated_with_its_total() -> None:
    many = tuple(
        (PatientRef(patient_id=f"P{i:05d}"), (f"1.2.{i}.1", f"1.2.{i}.2")) for i in range(1500)
    )
    event = mapped(op(OperationKind.FIND, result_sets=many, result_count=3000))
    assert event.disclosed_truncated
    assert event.disclosed_total == 1500
    assert 0 < len(event.disclosed) < 1500
    assert sum(len(d.studies) for d in event.disclosed) <= 1000
    # The first ones in answer order are kept, listed canonically.
    assert [d.id for d in event.disclosed] == [f"P{i:05d}" for i in range(len(event.disclosed))]


def test_values_the_ledger_would_refuse_are_left_out_and_counted() -> None:
    bad = PatientRef(patient_id="X" * 300)
    event = mapped(
        op(OperationKind.FIND, requested_patients=(bad,),
           result_sets=((bad, ()), (P1, ("not-a-uid", "1.2.3"))),
           criteria=(("PatientID", "X" * 256), *tuple((f"K{i}", "v") for i in range(60))))
    )  # fmt: skip
    assert event.patient is None
    assert [(d.id, d.studies) for d in event.disclosed] == [("PID001", ("1.2.3",))]
    assert event.details["unrecordable_patients"] == "1"
    assert event.details["query_keys"] == "61"
    assert len([k for k in event.details if k.startswith("query.")]) == 40


# --------------------------------------------------------------------- configuration

LEDGER = {
    "bootstrap_servers": "kafka.example:9093",
    "producer_id": "dicom-proxy-1",
    "producer_key_file": "proxy.key",
    "facility_id": "radiology-east",
    "spool_dir": "spool",
}


def _config(tmp_path: Path, **ledger: Any) -> Any:
    (tmp_path / "proxy.key").write_text("key")
    return parse_config(
        {
            "listen": {"allowed_calling_aets": ["FINDSCU"]},
            "upstream": {"host": "127.0.0.1", "port": 4242, "ae_title": "ORTHANC"},
            "ledger": {**LEDGER, **ledger},
        },
        base=tmp_path,
    )


def test_the_ledger_section_parses_with_paths_from_the_file(tmp_path: Path) -> None:
    (tmp_path / "ca.crt").write_text("ca")
    (tmp_path / "pw").write_text("pw")
    cfg = _config(
        tmp_path,
        facility_name="Radiology East",
        topic="phi-access-east",
        kafka={"protocol": "SASL_SSL", "ca_file": "ca.crt", "sasl_mechanism": "SCRAM-SHA-512",
               "sasl_username": "ledger-dicomproxy", "sasl_password_file": "pw"},
    )  # fmt: skip
    ledger = cfg.ledger
    assert isinstance(ledger, LedgerConfig)
    assert ledger.producer_key_file == str(tmp_path / "proxy.key")
    assert ledger.spool_dir == str(tmp_path / "spool")
    assert ledger.kafka.sasl_username == "ledger-dicomproxy"
    assert ledger.kafka.ca_file == str(tmp_path / "ca.crt")
    emitter = ledger.emitter_config()
    assert (emitter.access_topic, emitter.producer_id, emitter.spool_dir) == (
        "phi-access-east", "dicom-proxy-1", str(tmp_path / "spool"),
    )  # fmt: skip
    assert parse_config(
        {"listen": {"allowed_calling_aets": ["A"]},
         "upstream": {"host": "h", "port": 1, "ae_title": "B"}}
    ).ledger is None  # fmt: skip


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"bootstrap_servers": None}, "ledger.bootstrap_servers"),
        ({"producer_id": None}, "ledger.producer_id"),
        ({"facility_id": None}, "ledger.facility_id"),
        ({"spool_dir": None}, "ledger.spool_dir"),
        ({"producer_key_file": None}, "ledger.producer_key_file"),
        ({"producer_key_file": "missing.key"}, "ledger.producer_key_file"),
        ({"spool_dir": "proxy.key"}, "ledger.spool_dir"),
        ({"spool_max_bytes": 10}, "ledger.spool_max_bytes"),
        ({"max_pending": 0}, "ledger.max_pending"),
        ({"stalled_after_seconds": 0}, "ledger.stalled_after_seconds"),
        ({"facility_id": "x" * 300}, "ledger.facility_id"),
        ({"topics": "x"}, "ledger.topics"),
        ({"kafka": {"protocol": "SASL_SSL"}}, "ledger.kafka"),
        ({"kafka": {"protocol": "SSL", "ca_file": "nope.crt"}}, "ledger.kafka.ca_file"),
        ({"kafka": {"protocl": "SSL"}}, "ledger.kafka.protocl"),
    ],
)
def test_every_bad_ledger_value_names_its_key(
    tmp_path: Path, change: dict[str, Any], key: str
) -> None:
    ledger = {k: v for k, v in {**LEDGER, **change}.items() if v is not None}
    (tmp_path / "proxy.key").write_text("key")
    with pytest.raises(DicomProxyConfigError) as caught:
        parse_config(
            {"listen": {"allowed_calling_aets": ["A"]},
             "upstream": {"host": "h", "port": 1, "ae_title": "B"}, "ledger": ledger},
            base=tmp_path,
        )  # fmt: skip
    assert caught.value.key == key, caught.value


# --------------------------------------------------------------------- the recorder


class FakeEmitter:
    """A stand-in for ``SyncEmitter``: takes events until told to fail or to stall."""

    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.error: Exception | None = None
        self.stuck = False
        self._counts = {"accepted": 0, "delivered": 0, "pending": 0, "lost": 0}
        self.lock = threading.Lock()

    def start(self, timeout: float | None = None) -> None:
        pass

    def stop(self, timeout: float | None = None) -> bool:
        return True

    def emit(self, event: AuditEvent) -> None:
        if self.error is not None:
            raise self.error
        check(event)
        with self.lock:
            self.events.append(event)
            self._counts["accepted"] += 1
            key = "pending" if self.stuck else "delivered"
            self._counts[key] += 1

    def unstick(self) -> None:
        with self.lock:
            self.stuck = False
            self._counts["delivered"] += self._counts["pending"]
            self._counts["pending"] = 0

    @property
    def counts(self) -> dict[str, int]:
        with self.lock:
            return dict(self._counts)


def _recorder(tmp_path: Path, emitter: FakeEmitter) -> LedgerRecorder:
    config = _config(tmp_path, stalled_after_seconds=0.2).ledger
    assert config is not None
    return LedgerRecorder(config, emitter=emitter)


def test_the_recorder_hands_each_operation_to_the_emitter(tmp_path: Path) -> None:
    emitter = FakeEmitter()
    with _recorder(tmp_path, emitter) as recorder:
        recorder.record(op(OperationKind.ECHO, "1.2.840.10008.1.1"))
    (event,) = emitter.events
    assert event.facility.id == "radiology-east"
    assert recorder.stats()["recorded"] == 1


@pytest.mark.parametrize(
    "error",
    [
        EmitterPushbackError("full"),
        EventValidationError("bad", field="x"),
        EmitterUnavailableError("stopped"),
        OSError("disk"),
    ],
)
def test_the_recorder_is_unavailable_when_the_emitter_refuses(
    tmp_path: Path, error: Exception
) -> None:
    emitter = FakeEmitter()
    emitter.error = error
    with _recorder(tmp_path, emitter) as recorder:
        if isinstance(error, OSError):  # not a ProducerError: the gate treats it the same
            with pytest.raises(OSError, match="disk"):
                recorder.record(op(OperationKind.ECHO))
            return
        with pytest.raises(RecorderUnavailable):
            recorder.record(op(OperationKind.ECHO))
        assert recorder.stats()["unavailable"] == 1


def test_a_stalled_emitter_makes_the_recorder_refuse_until_it_moves(tmp_path: Path) -> None:
    """Kafka away and the spool full or unwritable: events wait, none is taken."""
    emitter = FakeEmitter()
    emitter.stuck = True
    with _recorder(tmp_path, emitter) as recorder:
        recorder.record(op(OperationKind.ECHO))  # queued: the emitter holds it
        deadline = time.monotonic() + 10
        while not recorder.stalled:
            assert time.monotonic() < deadline, "never marked stalled"
            time.sleep(0.05)
        with pytest.raises(RecorderUnavailable, match="stalled"):
            recorder.record(op(OperationKind.ECHO))
        emitter.unstick()
        while recorder.stalled:
            assert time.monotonic() < deadline, "never recovered"
            time.sleep(0.05)
        recorder.record(op(OperationKind.ECHO))
    assert len(emitter.events) == 2


def test_the_largest_answer_fits_the_emitters_event_size() -> None:
    """Long ids, issuers, UIDs and 40 long criteria: still under 60,000 encoded bytes."""
    uid = "1.2.840.113619.2.55.3.604688119.969.1268071029.320." + "1" * 12
    many = tuple(
        (PatientRef(patient_id=f"{i:064d}", issuer="I" * 64), (uid[:-6] + f"{i:06d}",))
        for i in range(2000)
    )
    criteria = tuple((f"Keyword{i:03d}", "v" * 256) for i in range(60))
    event = event_of(
        op(OperationKind.FIND, result_sets=many, criteria=criteria,
           peer_certificate_subject="CN=" + "c" * 1000, tls=True),
        FACILITY,
    )  # fmt: skip
    stamped = event.stamped(producer_id="dicom-proxy-test", producer_seq=1)
    validate(stamped)
    assert event.disclosed_truncated
    assert event.disclosed_total == 2000
    assert Codec().prepare(stamped).encoded_size("dicom-proxy-test", 2**62) <= 60_000
