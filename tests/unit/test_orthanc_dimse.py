"""The plugin's C-FIND handler without Orthanc: refusals, the hand-off, the event it records.

Orthanc's answers themselves are compared with a real Orthanc's in
tests/integration/test_orthanc_dimse.py; here a fake engine and a fake ``orthanc`` module
check what the callback does around them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from integrations.orthanc.audit import Auditor
from integrations.orthanc.config import PluginConfig, parse_config
from integrations.orthanc.dimse import FindCallback, NotAudited
from integrations.orthanc.dimse_audit import (
    MAX_CRITERIA,
    DimseRecorder,
    disclosed_set,
)
from integrations.orthanc.dimse_find import FindAnswer, FindOutcome, FindRefused
from integrations.orthanc.dimse_tags import case_sensitive_match
from integrations.orthanc.resolve import Subject
from producers import Facility
from producers.events import PhiAccessEvent, validate
from tests.unit.test_orthanc_plugin import PATIENT, STUDY, FakeOrthanc, ListSink, minimal


class FakeQuery:
    def __init__(self, items: Sequence[tuple[int, int, str, str]]) -> None:
        self._items = list(items)

    def GetFindQuerySize(self) -> int:
        return len(self._items)

    def GetFindQueryTagGroup(self, i: int) -> int:
        return self._items[i][0]

    def GetFindQueryTagElement(self, i: int) -> int:
        return self._items[i][1]

    def GetFindQueryTagName(self, i: int) -> str:
        return self._items[i][2]

    def GetFindQueryValue(self, i: int) -> str:
        return self._items[i][3]


class FakeAnswers:
    def __init__(self) -> None:
        self.added: list[dict[str, object]] = []
        self.incomplete = False

    def FindAddAnswer(self, dicom: bytes) -> None:
        self.added.append(json.loads(dicom))

    def FindMarkIncomplete(self) -> None:
        self.incomplete = True


class FakeModule:
    """``orthanc.CreateDicom``: the JSON back, refusing a value marked ``BAD``."""

    def CreateDicom(self, tags: str, image: object, flags: int) -> bytes:
        if "BAD" in tags:
            raise ValueError("Orthanc refuses this value")
        return tags.encode()


class FakeEngine:
    def __init__(self, outcome: FindOutcome | Exception) -> None:
        self.outcome = outcome

    def answer(self, query: Sequence[tuple[str, str]]) -> FindOutcome:
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


QUERY = FakeQuery([
    (0x0008, 0x0052, "QueryRetrieveLevel", "STUDY"),
    (0x0008, 0x0020, "StudyDate", "20240101-"),
    (0x0010, 0x0020, "PatientID", ""),
])  # fmt: skip
OUTCOME = FindOutcome(
    level="Study",
    answers=(
        FindAnswer(
            resource=STUDY,
            tags={"0008,0052": "STUDY", "0010,0020": "MRN777"},
            subject=("Study", STUDY),
        ),
    ),
    complete=False,
    criteria=(("0008,0020", "20240101-"),),
)


def callback(
    outcome: FindOutcome | Exception, *, fail_closed: bool = False, **settings: Any
) -> tuple[FindCallback, Auditor, ListSink]:
    sink = ListSink()
    config = parse_config(minimal(DefaultPatientIdIssuer="dflt", **settings))
    auditor = Auditor(config, sink, FakeOrthanc())
    recorder = DimseRecorder(
        submit=auditor.submit, delivery=auditor.delivery, resolver=auditor.resolver,
        facility=Facility(id="f1"), purpose_of_use="TREAT", default_issuer="dflt",
    )  # fmt: skip
    cb = FindCallback(FakeModule(), FakeEngine(outcome), recorder, auditor.counters,  # type: ignore[arg-type]
                      fail_closed=fail_closed)  # fmt: skip
    return cb, auditor, sink


def run(cb: FindCallback, auditor: Auditor, answers: FakeAnswers) -> None:
    auditor.start()
    try:
        cb(answers, QUERY, "WORKSTATION", "ORTHANC")
    finally:
        assert auditor.drain(5)
        auditor.stop()


def test_answers_are_sent_and_the_query_recorded_with_what_it_disclosed() -> None:
    cb, auditor, sink = callback(OUTCOME)
    answers = FakeAnswers()
    run(cb, auditor, answers)
    assert answers.added == [{"0008,0052": "STUDY", "0010,0020": "MRN777"}]
    assert answers.incomplete
    (event,) = sink.events
    assert isinstance(event, PhiAccessEvent)
    validate(event.stamped(producer_id="o1", producer_seq=1))
    assert (event.actor.user_id, event.actor.role) == ("WORKSTATION", "dicom-application-entity")
    assert (event.dicom_event_id, event.action.value) == ("110112", "E")
    assert event.patient is None
    assert event.network_address is None  # orthanc-python gives the callback no address
    assert [(p.id, p.issuer, p.studies) for p in event.disclosed] == [
        ("MRN777", "stmarys", ("1.2.3.4",))
    ]
    assert event.details["query.StudyDate"] == "20240101-"
    assert "query.PatientID" not in event.details  # an empty key asks, it does not filter
    assert event.details["dicom.complete"] == "false"
    assert event.details["dicom.called_aet"] == "ORTHANC"


def test_a_query_orthanc_refuses_is_refused_and_recorded_as_failed() -> None:
    cb, auditor, sink = callback(FindRefused("no level"))
    answers = FakeAnswers()
    with pytest.raises(FindRefused):
        run(cb, auditor, answers)
    assert answers.added == []
    (event,) = sink.events
    assert isinstance(event, PhiAccessEvent)
    assert event.outcome.value == "SERIOUS_FAILURE"
    assert event.disclosed == ()


def full_queue(auditor: Auditor) -> None:
    while auditor.submit(lambda: None):
        pass


@pytest.mark.parametrize("fail_closed", [False, True])
def test_a_full_audit_queue_answers_or_refuses_as_configured(fail_closed: bool) -> None:
    cb, auditor, _ = callback(OUTCOME, fail_closed=fail_closed, MaxPending=2, BlockSeconds=0.01)
    full_queue(auditor)  # the worker is not started: nothing drains it
    answers = FakeAnswers()
    if fail_closed:
        with pytest.raises(NotAudited):
            cb(answers, QUERY, "WORKSTATION", "ORTHANC")
        assert answers.added == []  # refused before any answer
    else:
        cb(answers, QUERY, "WORKSTATION", "ORTHANC")
        assert len(answers.added) == 1
    assert auditor.counters.unaudited >= 1


def test_a_broken_recorder_never_stops_the_answer() -> None:
    cb, auditor, _ = callback(OUTCOME)

    def broken(run: object) -> bool:
        raise RuntimeError("audit broke")

    cb._recorder._submit = broken
    answers = FakeAnswers()
    cb(answers, QUERY, "WORKSTATION", "ORTHANC")
    assert len(answers.added) == 1
    assert auditor.counters.unaudited == 1


def test_a_value_orthanc_refuses_is_dropped_as_orthanc_drops_it() -> None:
    outcome = FindOutcome(level="Study", complete=True, answers=(
        FindAnswer(resource=STUDY, tags={"0008,0052": "STUDY", "0010,1010": "BAD"}),))  # fmt: skip
    cb, auditor, _ = callback(outcome)
    answers = FakeAnswers()
    run(cb, auditor, answers)
    assert answers.added == [{"0008,0052": "STUDY"}]


def test_a_query_naming_one_patient_names_them() -> None:
    sink = ListSink()
    config = PluginConfig(bootstrap_servers="k", producer_id="p", facility_id="f")
    auditor = Auditor(config, sink, FakeOrthanc())
    recorder = DimseRecorder(
        submit=auditor.submit, delivery=auditor.delivery, resolver=auditor.resolver,
        facility=Facility(id="f"), purpose_of_use=None, default_issuer="dflt",
    )  # fmt: skip
    subjects = [Subject(patient_id="MRN777", issuer="stmarys", orthanc_patient=PATIENT)]
    assert recorder._named((("PatientID", "MRN777"),), subjects) == _patient("MRN777", "stmarys")
    assert recorder._named((("PatientID", "X1"),), []) == _patient("X1", "dflt")
    assert recorder._named((("PatientID", "X1"), ("IssuerOfPatientID", "h")), []) == _patient(
        "X1", "h"
    )
    for wildcard in ("MRN*", "MRN?77", "A\\B"):
        assert recorder._named((("PatientID", wildcard),), subjects) is None


def _patient(pid: str, issuer: str) -> Any:
    from producers import Patient

    return Patient(id=pid, issuer=issuer)


def test_disclosed_set_is_canonical_and_bounded() -> None:
    subjects = [
        Subject(patient_id=f"P{n:05d}", issuer=None if n % 2 else "h", orthanc_patient="x",
                study_uid=f"1.2.{n}")
        for n in range(3000)
    ]  # fmt: skip
    subjects += subjects[:10]  # the same patients again
    disclosed, truncated, total = disclosed_set(subjects, with_studies=True)
    assert truncated
    assert total == 3000
    assert 0 < len(disclosed) < 3000
    assert list(disclosed) == sorted(disclosed, key=lambda p: p.sort_key)
    assert len({(p.issuer, p.id) for p in disclosed}) == len(disclosed)
    small, truncated, total = disclosed_set(subjects[:3], with_studies=False)
    assert (truncated, total) == (False, 3)
    assert all(p.studies == () for p in small)


def test_criteria_are_bounded() -> None:
    many = tuple((f"Key{n}", "v") for n in range(MAX_CRITERIA + 5))
    cb, auditor, sink = callback(FindOutcome(level="Patient", answers=(), complete=True,
                                             criteria=many))  # fmt: skip
    auditor.start()
    try:
        cb(FakeAnswers(), QUERY, "WS", "ORTHANC")
    finally:
        assert auditor.drain(5)
        auditor.stop()
    (event,) = sink.events
    assert isinstance(event, PhiAccessEvent)
    validate(event.stamped(producer_id="o1", producer_seq=1))
    assert event.details["query.more"] == "5"


@pytest.mark.parametrize(
    ("vr", "constraint", "value", "match"),
    [
        ("LO", "PID001", "PID001", True),
        ("LO", "pid001", "PID001", False),
        ("LO", "PID*", "PID001", True),
        ("LO", "pid*", "PID001", False),
        ("LO", "P?D001", "PID001", True),
        ("UI", "1.2*", "1.2.3", False),  # no wildcard for a UID: equality
        ("SH", "A\\B", "B", True),
        ("SH", "a\\b", "B", False),
        ("DA", "2020-2021", "20200101", True),  # ranges: case does not matter
        ("LO", "X", None, False),
    ],
)
def test_case_sensitive_match(vr: str, constraint: str, value: str | None, match: bool) -> None:
    assert case_sensitive_match(vr, constraint, value) is match


class FakeHostModule:
    """The parts of ``orthanc`` that ``install_find`` uses."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.registered: list[object] = []

    def GetConfiguration(self) -> str:
        return json.dumps({"DicomAet": "PACS", "LimitFindResults": 7})

    def RestApiGet(self, uri: str) -> bytes:
        return b"{}"

    def RestApiPost(self, uri: str, body: str) -> bytes:
        return b"[]"

    def RegisterFindCallback(self, callback: object) -> None:
        self.registered.append(callback)

    def LogError(self, text: str) -> None:
        self.errors.append(text)


def test_install_find_replaces_orthancs_c_find(monkeypatch: pytest.MonkeyPatch) -> None:
    from integrations.orthanc import dimse

    module = FakeHostModule()
    config = parse_config(minimal())
    auditor = Auditor(config, ListSink(), FakeOrthanc())
    assert dimse.install_find(module, auditor, config) is not None
    assert len(module.registered) == 1
    assert module.errors == []


def test_without_the_dicom_dictionary_orthancs_c_find_is_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from integrations.orthanc import dimse

    monkeypatch.setattr(dimse, "vr_of", lambda tag: None)
    module = FakeHostModule()
    config = parse_config(minimal())
    auditor = Auditor(config, ListSink(), FakeOrthanc())
    assert dimse.install_find(module, auditor, config) is None
    assert module.registered == []
    assert "NOT audited" in module.errors[0]


def test_the_c_find_handler_can_be_left_to_orthanc() -> None:
    assert parse_config(minimal()).audit_dicom_find is True
    assert parse_config(minimal(AuditDicomFind=False)).audit_dicom_find is False


def test_an_engine_error_fails_the_c_find_cleanly_and_is_recorded() -> None:
    from integrations.orthanc.dimse import HandlerError

    cb, auditor, sink = callback(KeyError("PID001 leaked?"))
    answers = FakeAnswers()
    with pytest.raises(HandlerError) as raised:
        run(cb, auditor, answers)
    assert str(raised.value) == "KeyError"  # what Orthanc logs: the type, never the text
    assert raised.value.__cause__ is None
    assert answers.added == []
    assert auditor.counters.errors == 1
    (event,) = sink.events
    assert isinstance(event, PhiAccessEvent)
    assert event.outcome.value == "SERIOUS_FAILURE"
