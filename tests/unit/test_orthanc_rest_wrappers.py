"""The REST routes the Orthanc plugin answers itself, without Orthanc: forwarding,
Orthanc's error answers, refusals (FailClosed, ArchiveMaxBytes), and the v2 events.

Orthanc's in-process REST API is faked with dicts; the real Orthanc, compared byte for
byte with and without the plugin, is in tests/e2e/test_orthanc_rest.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from integrations.orthanc.answers import error_answer
from integrations.orthanc.audit import Auditor
from integrations.orthanc.config import parse_config
from integrations.orthanc.resolve import Resolver, orthanc_id
from integrations.orthanc.rest_wrappers import RestWrappers
from integrations.orthanc.resultsets import ResultSets, returned
from integrations.orthanc.routes import Level
from producers import validate
from producers.events import PhiAccessEvent
from tests.unit.test_orthanc_plugin import (
    PATIENT,
    STUDY,
    FakeOrthanc,
    ListSink,
    headers,
    minimal,
)

NATIVE_404 = (
    b'{\n\t"HttpError" : "Not Found",\n\t"HttpStatus" : 404,\n\t"Message" : "Unknown resource",'
    b'\n\t"Method" : "GET",\n\t"OrthancError" : "Unknown resource",\n\t"OrthancStatus" : 17,'
    b'\n\t"Uri" : "/studies/abc/archive"\n}\n'
)  # what Orthanc 1.10.1 answers to GET /studies/abc/archive (198 bytes)


class OrthancException(Exception):
    """orthanc-python's exception: (error code, description)."""


class Output:
    """orthanc-python's RestOutput: records what was answered."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args: self.calls.append((name, args))


class Api:
    """Orthanc's built-in handlers: GET and POST answers by URI, or an error code."""

    def __init__(self, host: FakeOrthanc) -> None:
        self.host = host
        self.posts: dict[str, object] = {}
        self.posted: list[tuple[str, bytes]] = []

    def get(self, uri: str) -> bytes:
        answer = self.posts.get(f"GET {uri}")
        if answer is not None:
            return answer if isinstance(answer, bytes) else json.dumps(answer).encode()
        try:
            return self.host.rest_get(uri)
        except ValueError:
            raise OrthancException(17, "Unknown resource") from None

    def post(self, uri: str, body: bytes) -> bytes:
        self.posted.append((uri, body))
        answer = self.posts.get(uri)
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, bytes) else json.dumps(answer).encode()


def setup(**settings: object) -> tuple[Auditor, RestWrappers, Api, ListSink]:
    sink = ListSink()
    host = FakeOrthanc()
    cfg = parse_config(minimal(Users={"dr.alice": {"Role": "radiologist"}}, **settings))
    auditor = Auditor(cfg, sink, host)
    auditor.start()
    api = Api(host)
    wrappers = RestWrappers(auditor, get=api.get, post=api.post, fail_closed=cfg.fail_closed,
                            archive_max_bytes=cfg.archive_max_bytes)  # fmt: skip
    return auditor, wrappers, api, sink


def call(wrappers: RestWrappers, auditor: Auditor, method: str, uri: str,
         body: bytes = b"", get: dict[str, str] | None = None) -> Output:  # fmt: skip
    """The filter, then the REST callback, as Orthanc calls them on one thread."""
    auditor.on_http_request(method, uri, "10.0.0.9", headers(), get or {})
    output = Output()
    wrappers.callback(output, uri, method=method, body=body, get=get or {}, headers=headers())
    return output


def events(auditor: Auditor, sink: ListSink) -> list[PhiAccessEvent]:
    assert auditor.drain(5)
    auditor.stop()
    found = [e for e in sink.events if isinstance(e, PhiAccessEvent)]
    for event in found:  # what the emitter checks before encoding
        validate(event.stamped(producer_id="orthanc-test", producer_seq=1))
    return found


def test_error_bodies_are_orthancs_own() -> None:
    answer = error_answer("GET", "/studies/abc/archive", 17, "Unknown resource")
    assert (answer.status, answer.body) == (404, NATIVE_404)


def test_find_is_answered_as_orthanc_answers_and_discloses_what_it_returned() -> None:
    auditor, wrappers, api, sink = setup()
    api.posts["/tools/find"] = [PATIENT]
    out = call(wrappers, auditor, "POST", "/tools/find",
               b'{"Level":"Patient","Query":{"PatientName":"SMITH*"}}')  # fmt: skip
    assert out.calls == [("AnswerBuffer", (json.dumps([PATIENT]).encode(),
                                           "application/json; charset=utf-8"))]  # fmt: skip
    api.posts["/tools/find"] = []
    call(wrappers, auditor, "POST", "/tools/find", b'{"Level":"Study","Query":{"StudyDate":"1"}}')
    (found, nobody) = events(auditor, sink)
    assert (found.dicom_event_id, found.action.value, found.patient) == ("110112", "E", None)
    assert [(p.id, p.issuer) for p in found.disclosed] == [("MRN777", "stmarys")]
    assert (found.details["query.Level"], found.details["query.PatientName"]) == (
        "Patient", "SMITH*")  # fmt: skip
    assert found.network_address == "10.0.0.9"  # from the filter, which sees the address
    # A search that matched nobody: recorded, with its criteria, naming nobody.
    assert (nobody.patient, nobody.disclosed, nobody.details["query.StudyDate"]) == (None, (), "1")


def test_orthanc_errors_are_answered_with_orthancs_status_and_body() -> None:
    auditor, wrappers, api, sink = setup()
    api.posts["/tools/create-archive"] = OrthancException(17, "Unknown resource")
    out = call(wrappers, auditor, "POST", "/tools/create-archive", b'["nope"]')
    ((name, (status, text, length)),) = out.calls
    assert (name, status, length) == ("SendHttpStatus", 404, len(text))
    assert '"OrthancStatus" : 17' in text
    assert '"Method" : "POST"' in text
    # A body that is not JSON: Orthanc's own text for its first check.
    out = call(wrappers, auditor, "POST", "/tools/find", b"not json")
    assert '"Details" : "The body must contain a JSON object"' in out.calls[0][1][1]
    # A method Orthanc does not serve there.
    out = call(wrappers, auditor, "GET", "/tools/find")
    assert out.calls == [("SendMethodNotAllowed", ("POST",))]
    assert events(auditor, sink) == []  # nothing was disclosed


def test_a_bug_in_the_wrapper_answers_500_and_never_raises() -> None:
    auditor, wrappers, _, _ = setup()

    def broken(uri: str, body: bytes) -> bytes:
        raise KeyError("not an Orthanc error")

    wrappers._post = broken
    out = call(wrappers, auditor, "POST", "/tools/lookup", b"MRN777")
    ((name, (status, text, _)),) = out.calls
    assert (name, status) == ("SendHttpStatus", 500)
    assert "Error encountered within the plugin engine" in text
    auditor.stop()


@pytest.mark.parametrize("fail_closed", [True, False])
def test_a_record_that_cannot_be_queued(fail_closed: bool) -> None:
    """Queue full: served and counted, or refused with 403 under FailClosed."""
    auditor, wrappers, api, _ = setup(FailClosed=fail_closed, MaxPending=1, BlockSeconds=0.0)
    api.posts["/tools/lookup"] = []
    auditor.stop()  # the worker no longer takes the queue: it stays full
    auditor._handoff.put(None)  # one item: the queue is full (MaxPending 1)
    out = call(wrappers, auditor, "POST", "/tools/lookup", b"MRN777")
    if fail_closed:
        assert out.calls == [("SendHttpStatusCode", (403,))]
    else:
        assert out.calls[0][0] == "AnswerBuffer"
    assert auditor.counters.unaudited >= 1


def test_archives_are_built_as_jobs_and_named_by_their_patients() -> None:
    auditor, wrappers, api, sink = setup()
    api.posts[f"/studies/{STUDY}/archive"] = {"ID": "job1", "Path": "/jobs/job1"}
    api.posts[f"GET /studies/{STUDY}/statistics"] = {"DiskSize": "1000"}
    api.posts["GET /jobs/job1"] = {"State": "Success"}
    api.posts["GET /jobs/job1/archive"] = b"PK\x03\x04zip"
    out = call(wrappers, auditor, "GET", f"/studies/{STUDY}/archive")
    assert out.calls == [
        ("SetHttpHeader", ("Content-Disposition", f'filename="{STUDY}.zip"')),
        ("AnswerBuffer", (b"PK\x03\x04zip", "application/zip")),
    ]
    assert json.loads(api.posted[0][1]) == {"Synchronous": False}
    (read,) = events(auditor, sink)
    assert (read.dicom_event_id, read.action.value) == ("110103", "R")
    assert read.patient is not None
    assert read.patient.id == "MRN777"
    assert read.study is not None
    assert read.study.uid == "1.2.3.4"
    assert [(p.id, p.studies) for p in read.disclosed] == [("MRN777", ("1.2.3.4",))]


def test_an_archive_above_the_bound_is_refused_with_413_and_recorded() -> None:
    auditor, wrappers, api, sink = setup(ArchiveMaxBytes=999)
    api.posts[f"GET /studies/{STUDY}/statistics"] = {"DiskSize": "1000"}
    out = call(wrappers, auditor, "POST", "/tools/create-archive", json.dumps([STUDY]).encode())
    ((name, (status, text, _)),) = out.calls
    assert (name, status) == ("SendHttpStatus", 413)
    assert "ArchiveMaxBytes" in text
    assert api.posted == []  # nothing was built
    (refused,) = events(auditor, sink)
    assert refused.outcome.value == "SERIOUS_FAILURE"
    assert refused.details["orthanc.refused"] == "ArchiveMaxBytes"


def test_a_failed_archive_job_is_answered_with_its_error() -> None:
    auditor, wrappers, api, sink = setup()
    api.posts["/tools/create-media"] = {"ID": "job2"}
    api.posts["GET /jobs/job2"] = {"State": "Failure", "ErrorCode": 17,
                                   "ErrorDescription": "Unknown resource"}  # fmt: skip
    out = call(wrappers, auditor, "POST", "/tools/create-media", json.dumps([STUDY]).encode())
    assert out.calls[0][1][0] == 404
    assert events(auditor, sink) == []


def test_rest_c_move_is_a_transfer_with_its_outcome() -> None:
    auditor, wrappers, api, sink = setup()
    api.posts["GET /modalities"] = ["pacs"]
    api.posts["/modalities/pacs/move"] = OrthancException(9, "Error in the network protocol")
    body = {"Level": "Study", "Resources": [{"StudyInstanceUID": "1.2.3.4"}],
            "TargetAet": "NOWHERE"}  # fmt: skip
    out = call(wrappers, auditor, "POST", "/modalities/pacs/move", json.dumps(body).encode())
    assert out.calls[0][1][0] == 422  # as Orthanc 1.10 answers a failed C-MOVE
    out = call(wrappers, auditor, "POST", "/modalities/nope/move", json.dumps(body).encode())
    assert '"Details" : "No modality with symbolic name: nope"' in out.calls[0][1][1]
    (move,) = events(auditor, sink)
    assert (move.dicom_event_id, move.outcome.value) == ("110104", "SERIOUS_FAILURE")
    assert move.recipient is not None
    assert move.recipient.name == "NOWHERE"
    assert move.patient is not None
    assert move.patient.id == "MRN777"


def test_listings_disclose_every_patient_and_truncate_beyond_the_bound() -> None:
    host = FakeOrthanc()
    others = [orthanc_id(f"P{i}") for i in range(5)]
    for i, ident in enumerate(others):
        host.answers[f"/patients/{ident}/module?simplify"] = {"PatientID": f"P{i}"}
    results = ResultSets(Resolver(host.rest_get), host, resolve_limit=3, default_issuer=None)
    listed = results.of(returned(others, Level.PATIENT))
    assert [p.id for p in listed.patients] == ["P0", "P1", "P2"]
    assert listed.total == 5  # at most: two were not resolved
    expanded = returned([{"ID": STUDY, "Type": "Study"}, {"ID": "x", "Type": "Series"}], None)
    assert expanded == [(Level.STUDY, STUDY), (Level.SERIES, "x")]
    complete = ResultSets(Resolver(host.rest_get), host, resolve_limit=10,
                          default_issuer=None).of(expanded)  # fmt: skip
    assert (complete.total, complete.unresolved, [p.id for p in complete.patients]) == (
        None, 1, ["MRN777"])  # fmt: skip


@pytest.mark.parametrize("answered", [True, False])
def test_a_qido_search_by_date_names_nobody_and_discloses_what_it_returned(
    answered: bool,
) -> None:
    sink, host, asked = ListSink(), FakeOrthanc(), []
    datasets = [{"00100020": {"vr": "LO", "Value": ["MRN777"]},
                 "0020000D": {"vr": "UI", "Value": ["1.2.3.4"]}},
                {"00100020": {"vr": "LO", "Value": ["ELSEWHERE"]}}]  # fmt: skip

    def after_plugins(uri: str) -> bytes:
        asked.append(uri)
        if not answered:
            raise OrthancException(17, "Unknown resource")
        return json.dumps(datasets).encode()

    host.rest_get_after_plugins = after_plugins  # type: ignore[attr-defined]
    cfg = parse_config(minimal(Users={"dr.alice": {"Role": "radiologist"}}))
    auditor = Auditor(cfg, sink, host, dicomweb=True)
    auditor.start()
    query = {"StudyDate": "20260101", "limit": "5"}
    assert auditor.on_http_request("GET", "/dicom-web/studies", "10.0.0.9", headers(), query)
    found = events(auditor, sink)
    assert asked == ["/dicom-web/studies?StudyDate=20260101&limit=5"]
    if not answered:  # no DICOMweb answer to see: nothing recorded, counted
        assert (found, auditor.counters.unresolved) == ([], 1)
        return
    (search,) = found
    assert (search.dicom_event_id, search.patient) == ("110112", None)
    assert search.details["query.StudyDate"] == "20260101"
    assert [(p.id, p.issuer, p.studies) for p in search.disclosed] == [
        ("ELSEWHERE", None, ()), ("MRN777", "stmarys", ("1.2.3.4",))]  # fmt: skip


@pytest.mark.parametrize("fail_closed", [True, False])
def test_a_bug_in_recording_still_sends_orthancs_answer_unless_fail_closed(
    fail_closed: bool,
) -> None:
    auditor, wrappers, api, _ = setup(FailClosed=fail_closed)
    api.posts["/tools/lookup"] = []

    def broken(*args: object) -> None:
        raise KeyError("a bug")

    wrappers._record = broken  # type: ignore[method-assign,assignment]
    out = call(wrappers, auditor, "POST", "/tools/lookup", b"MRN777")
    auditor.stop()
    if fail_closed:
        assert out.calls == [("SendHttpStatusCode", (403,))]
    else:
        assert out.calls == [("AnswerBuffer", (b"[]", "application/json; charset=utf-8"))]
    assert (auditor.counters.errors, auditor.counters.unaudited) == (1, 1)
