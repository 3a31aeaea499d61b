"""The Orthanc plugin's logic without Orthanc: routes, settings, resolution, the auditor.

A fake host answers Orthanc's REST API from a dict; a list sink collects events. The
real plugin inside Orthanc is tested in tests/e2e/test_orthanc.py.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from integrations.orthanc import plugin
from integrations.orthanc.audit import Auditor, basic_user
from integrations.orthanc.config import ConfigError, PluginConfig, UserInfo, parse_config
from integrations.orthanc.resolve import Resolver, orthanc_id
from integrations.orthanc.routes import Kind, Level, classify
from integrations.simulator import Simulator
from producers.errors import EmitterPushbackError
from producers.events import AuditEvent, PhiAccessEvent
from producers.sync import SyncEmitter

PATIENT = orthanc_id("MRN777")
STUDY = orthanc_id("MRN777", "1.2.3.4")
SERIES = orthanc_id("MRN777", "1.2.3.4", "1.2.3.4.5")
INSTANCE = orthanc_id("MRN777", "1.2.3.4", "1.2.3.4.5", "1.2.3.4.5.6")


def test_orthanc_ids_are_the_sha1_of_the_dicom_identifiers() -> None:
    # Values read from a real Orthanc 1.10 (Debian 12).
    assert orthanc_id("MRN777") == "386d60ef-0d9d8f0c-51cbf484-ba733ba0-1397f944"
    assert (
        orthanc_id("MRN777", "1.2.826.0.1.3680043.8.498.97621987554163273324762410341654336313")
        == "dcefd014-d740f5ba-62e8d5dc-4d757334-e6fd1d93"
    )


@pytest.mark.parametrize(
    ("method", "path", "kind", "template"),
    [
        ("GET", f"/studies/{STUDY}", Kind.READ, "GET /studies/{id}"),
        ("GET", f"/instances/{INSTANCE}/file", Kind.READ, "GET /instances/{id}/file"),
        ("GET", f"/instances/{INSTANCE}/frames/0/preview", Kind.READ,
         "GET /instances/{id}/frames/..."),
        ("POST", f"/studies/{STUDY}/archive", Kind.WRAPPED, "POST /studies/{id}/archive"),
        ("GET", f"/patients/{PATIENT}/media", Kind.WRAPPED, "GET /patients/{id}/media"),
        ("POST", "/tools/find", Kind.WRAPPED, "POST /tools/find"),
        ("POST", "/tools/lookup", Kind.WRAPPED, "POST /tools/lookup"),
        ("POST", "/tools/create-archive", Kind.WRAPPED, "POST /tools/create-archive"),
        ("POST", "/tools/create-media-extended", Kind.WRAPPED,
         "POST /tools/create-media-extended"),
        ("POST", "/modalities/pacs/move", Kind.WRAPPED, "POST /modalities/{name}/move"),
        ("GET", "/studies", Kind.WRAPPED, "GET /studies"),
        ("GET", "/instances", Kind.LISTING, "GET /instances"),
        ("POST", f"/studies/{STUDY}/anonymize", Kind.READ, "POST /studies/{id}/anonymize"),
        ("DELETE", f"/series/{SERIES}", Kind.DELETE, "DELETE /series/{id}"),
        ("POST", "/instances", Kind.IMPORT, "POST /instances"),
        ("POST", "/modalities/pacs/store", Kind.EXPORT, "POST /modalities/{name}/store"),
        ("POST", "/peers/remote/store", Kind.EXPORT, "POST /peers/{name}/store"),
        ("GET", "/dicom-web/studies", Kind.QUERY, "GET /dicom-web/studies"),
        ("GET", "/dicom-web/studies/1.2.3/series", Kind.QUERY,
         "GET /dicom-web/studies/{uid}/series"),
        ("GET", "/dicom-web/studies/1.2.3/series/1.2.3.4/instances/1.2.3.4.5", Kind.READ,
         "GET /dicom-web/studies/{uid}/series/{uid}/instances/{uid}"),
    ],
)  # fmt: skip
def test_audited_routes(method: str, path: str, kind: Kind, template: str) -> None:
    route = classify(method, path, {"PatientID": "X"})
    assert route is not None
    assert (route.kind, route.template) == (kind, template)
    assert "MRN" not in route.template
    assert STUDY not in route.template


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/system"),
        ("POST", "/studies"),
        ("GET", "/studies/not-an-id"),
        ("PUT", f"/studies/{STUDY}/metadata/1024"),
        ("DELETE", f"/studies/{STUDY}/labels/x"),
        ("GET", "/tools/find"),
        ("POST", "/tools/reset"),
        ("GET", "/tools/lookup"),
        ("GET", "/app/explorer.html"),
    ],
)
def test_requests_that_are_not_audited(method: str, path: str) -> None:
    assert classify(method, path, {}) is None


def test_dicomweb_routes_only_when_the_plugin_is_there() -> None:
    assert classify("GET", "/dicom-web/studies/1.2.3", {}, dicomweb=False) is None
    wado = classify("GET", "/wado", {"studyUID": "1.2.3", "requestType": "WADO"})
    assert wado is not None
    assert (wado.kind, wado.study_uid) == (Kind.READ, "1.2.3")


def minimal(**extra: object) -> dict[str, object]:
    return {"PhiLedger": {"KafkaBootstrap": "k:9092", "ProducerId": "o1", "FacilityId": "f1"}
            | extra}  # fmt: skip


def test_config_defaults_and_users() -> None:
    cfg = parse_config(
        minimal(Users={"dr.a": {"Role": "radiologist", "Npi": "1234567893"}}, FailClosed=True)
    )
    assert cfg.access_topic == "phi-access"
    assert cfg.fail_closed
    assert cfg.user("dr.a") == UserInfo(role="radiologist", npi="1234567893")
    assert cfg.user("someone") == UserInfo(role="orthanc-user")
    assert cfg.emitter_config().producer_id == "o1"
    # Events go through a pipe process by default, at idle priority (niced when promoted).
    assert (cfg.pipe, cfg.pipe_idle, cfg.pipe_nice, cfg.pipe_python) == (True, True, 10, None)
    assert cfg.deprecated_keys == ()
    inline = parse_config(
        minimal(Pipe=False, PipeIdle=False, PipeNice=0, PipePython="/opt/py/bin/python3")
    )
    assert (inline.pipe, inline.pipe_idle, inline.pipe_nice, inline.pipe_python) == (
        False,
        False,
        0,
        "/opt/py/bin/python3",
    )
    assert inline.deprecated_keys == ()


def test_config_reads_the_old_relay_keys_and_names_them_deprecated() -> None:
    old = parse_config(
        minimal(Relay=False, RelayIdle=False, RelayNice=0, RelayPython="/opt/py/bin/python3")
    )
    assert (old.pipe, old.pipe_idle, old.pipe_nice, old.pipe_python) == (
        False,
        False,
        0,
        "/opt/py/bin/python3",
    )
    assert old.deprecated_keys == (
        ("Relay", "Pipe"),
        ("RelayIdle", "PipeIdle"),
        ("RelayNice", "PipeNice"),
        ("RelayPython", "PipePython"),
    )
    # The new name wins when both are set; the old one is still reported.
    both = parse_config(minimal(Pipe=True, Relay=False, RelayNice=3))
    assert (both.pipe, both.pipe_nice) == (True, 3)
    assert both.deprecated_keys == (("RelayNice", "PipeNice"),)
    # RelayTopic is the critical-result relay topic: not renamed, never deprecated.
    topic = parse_config(minimal(RelayTopic="crr"))
    assert (topic.relay_topic, topic.deprecated_keys) == ("crr", ())


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({}, "PhiLedger section"),
        ({"PhiLedger": {"KafkaBootstrap": "k", "ProducerId": "p"}}, "PhiLedger.FacilityId"),
        (minimal(PurposeOfUse="FUN"), "PhiLedger.PurposeOfUse"),
        (minimal(BlockSeconds=-1), "PhiLedger.BlockSeconds"),
        (minimal(Users={"x": {}}), "PhiLedger.Users.x.Role"),
        (minimal(FailClosed="yes"), "PhiLedger.FailClosed"),
        (minimal(Relay="no"), "PhiLedger.Relay"),
        (minimal(RelayNice=-5), "PhiLedger.RelayNice"),
        (minimal(RelayIdle=1), "PhiLedger.RelayIdle"),
        (minimal(Pipe="no"), "PhiLedger.Pipe"),
        (minimal(PipeNice=-5), "PhiLedger.PipeNice"),
        (minimal(PipeIdle=1), "PhiLedger.PipeIdle"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(config)


def test_basic_user() -> None:
    token = base64.b64encode(b"dr.alice:s3:cret").decode()
    assert basic_user(f"Basic {token}") == "dr.alice"
    assert basic_user("Bearer abc") is None
    assert basic_user("Basic !!!") is None
    assert basic_user(None) is None


class FakeOrthanc:
    """Orthanc's REST API for one patient, one study, one series, one instance."""

    def __init__(self) -> None:
        study = {
            "ID": STUDY,
            "ParentPatient": PATIENT,
            "MainDicomTags": {"StudyInstanceUID": "1.2.3.4", "AccessionNumber": "ACC1"},
        }
        self.answers: dict[str, object] = {
            f"/patients/{PATIENT}/module?simplify": {
                "PatientID": "MRN777",
                "IssuerOfPatientID": "stmarys",
            },
            f"/studies/{STUDY}": study,
            f"/series/{SERIES}/study": study,
            f"/instances/{INSTANCE}/study": study,
        }
        self.calls: list[str] = []

    def rest_get(self, uri: str) -> bytes:
        self.calls.append(uri)
        if uri not in self.answers:
            raise ValueError("Unknown resource")
        return json.dumps(self.answers[uri]).encode()

    def lookup_study(self, study_uid: str) -> str | None:
        return STUDY if study_uid == "1.2.3.4" else None


class ListSink:
    def __init__(self) -> None:
        self.events: list[AuditEvent] = []
        self.refuse = 0

    def emit(self, event: AuditEvent) -> None:
        if self.refuse:
            self.refuse -= 1
            raise EmitterPushbackError("full")
        self.events.append(event)

    def batch(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()


def test_resolver_caches_with_a_bound_and_a_ttl() -> None:
    host = FakeOrthanc()
    now = [0.0]
    resolver = Resolver(host.rest_get, max_entries=3, ttl_seconds=10, clock=lambda: now[0])
    subject = resolver.resolve(Level.INSTANCE, INSTANCE)
    assert (subject.patient_id, subject.issuer, subject.study_uid, subject.accession) == (
        "MRN777", "stmarys", "1.2.3.4", "ACC1",
    )  # fmt: skip
    calls = len(host.calls)
    assert resolver.resolve(Level.INSTANCE, INSTANCE) == subject
    assert resolver.resolve(Level.STUDY, STUDY) == subject
    assert len(host.calls) == calls  # all from the cache
    assert len(resolver) <= 3
    now[0] = 11.0
    resolver.resolve(Level.STUDY, STUDY)
    assert len(host.calls) > calls  # expired
    with pytest.raises(LookupError):
        resolver.resolve(Level.STUDY, orthanc_id("nobody", "9.9"))


def test_resolver_remembers_all_levels_of_a_stored_instance() -> None:
    host = FakeOrthanc()
    resolver = Resolver(host.rest_get, default_issuer="default-issuer")
    tags = {
        "PatientID": "MRN777",
        "StudyInstanceUID": "1.2.3.4",
        "SeriesInstanceUID": "1.2.3.4.5",
        "SOPInstanceUID": "1.2.3.4.5.6",
        "Modality": "CT",
    }
    subject = resolver.remember(tags, INSTANCE)
    assert (subject.issuer, subject.modality) == ("default-issuer", "CT")
    for level, ident in ((Level.PATIENT, PATIENT), (Level.STUDY, STUDY), (Level.SERIES, SERIES)):
        assert resolver.cached(level, ident) is not None
    assert host.calls == []


def auditor(sink: ListSink, **settings: object) -> tuple[Auditor, FakeOrthanc]:
    host = FakeOrthanc()
    cfg = parse_config(minimal(Users={"dr.alice": {"Role": "radiologist"}}, **settings))
    a = Auditor(cfg, sink, host)
    a.start()
    return a, host


def headers(user: str = "dr.alice") -> dict[str, str]:
    return {"authorization": "Basic " + base64.b64encode(f"{user}:pw".encode()).decode()}


def test_read_is_recorded_with_user_address_patient_and_study() -> None:
    sink = ListSink()
    a, _ = auditor(sink, PurposeOfUse="TREAT")
    try:
        assert a.on_http_request("GET", f"/instances/{INSTANCE}/preview", "10.0.0.7",
                                 headers(), {})  # fmt: skip
        assert a.on_http_request("GET", "/system", "10.0.0.7", headers(), {})
        assert a.on_http_request(
            "GET", f"/studies/{orthanc_id('x', '9')}", "10.0.0.7", headers(), {}
        )  # fmt: skip  (404 in Orthanc: no event)
        assert a.drain(5)
    finally:
        a.stop()
    assert len(sink.events) == 1
    event = sink.events[0]
    assert isinstance(event, PhiAccessEvent)
    assert (event.actor.user_id, event.actor.role) == ("dr.alice", "radiologist")
    assert (event.dicom_event_id, event.action.value, event.network_address) == (
        "110103", "R", "10.0.0.7",
    )  # fmt: skip
    assert (event.patient.id, event.patient.issuer) == ("MRN777", "stmarys")
    assert event.study is not None
    assert event.study.uid == "1.2.3.4"
    assert event.purpose_of_use == "TREAT"
    assert event.details["orthanc.route"] == "GET /instances/{id}/preview"
    assert a.counters.unresolved == 1


def test_delete_is_recorded_once_orthanc_reports_it() -> None:
    sink = ListSink()
    a, _ = auditor(sink)
    try:
        assert a.on_http_request("DELETE", f"/studies/{STUDY}", "10.0.0.8", headers(), {})
        assert a.drain(5)
        assert sink.events == []  # not deleted yet
        a.on_change("DELETED", Level.STUDY, STUDY)
        assert a.drain(5)
    finally:
        a.stop()
    [event] = sink.events
    assert isinstance(event, PhiAccessEvent)
    assert (event.dicom_event_id, event.action.value, event.outcome.value) == (
        "110105", "D", "SUCCESS",
    )  # fmt: skip


def test_imports_by_rest_user_and_by_dicom_ae() -> None:
    sink = ListSink()
    a, _ = auditor(sink)
    tags = {"PatientID": "MRN777", "StudyInstanceUID": "1.2.3.4", "SOPClassUID": "1.2.840.1"}
    try:
        assert a.on_http_request("POST", "/instances", "10.0.0.9", headers(), {})
        a.on_stored_instance(tags, INSTANCE, "REST_API", None)
        done = threading.Event()

        def from_dicom_thread() -> None:
            a.on_stored_instance(tags, INSTANCE, "DICOM_PROTOCOL", "CT01")
            done.set()

        threading.Thread(target=from_dicom_thread).start()
        assert done.wait(5)
        assert a.drain(5)
    finally:
        a.stop()
    rest, dicom = sink.events
    assert isinstance(rest, PhiAccessEvent)
    assert isinstance(dicom, PhiAccessEvent)
    assert (rest.actor.user_id, rest.network_address, rest.dicom_event_id) == (
        "dr.alice", "10.0.0.9", "110107",
    )  # fmt: skip
    assert (dicom.actor.user_id, dicom.actor.role, dicom.network_address) == (
        "CT01", "dicom-application-entity", None,
    )  # fmt: skip
    assert dicom.study is not None
    assert dicom.study.sop_classes == ("1.2.840.1",)


def test_transfer_job_is_matched_to_its_request() -> None:
    sink = ListSink()
    a, host = auditor(sink)
    host.answers["/jobs/j1"] = {
        "Type": "DicomModalityStore",
        "Content": {"Description": "REST API", "ParentResources": [STUDY],
                    "RemoteAet": "PACS2", "FailedInstancesCount": 0},
    }  # fmt: skip
    try:
        assert a.on_http_request("POST", "/modalities/pacs2/store", "10.0.0.5", headers(), {})
        a.on_change("JOB_SUBMITTED", None, "j1")
        a.on_change("JOB_SUCCESS", None, "j1")
        assert a.drain(5)
    finally:
        a.stop()
    [event] = sink.events
    assert isinstance(event, PhiAccessEvent)
    assert event.dicom_event_id == "110104"
    assert event.recipient is not None
    assert (event.recipient.name, event.recipient.address) == ("pacs2", "PACS2")


def test_unauthenticated_and_proxied_users() -> None:
    sink = ListSink()
    a, _ = auditor(sink, TrustedProxies=["10.0.0.1"], UserHeader="X-Forwarded-User")
    try:
        a.on_http_request("GET", f"/studies/{STUDY}", "10.0.0.2", {}, {})
        a.on_http_request(
            "GET", f"/studies/{STUDY}", "10.0.0.1",
            {"x-forwarded-user": "dr.alice", "x-forwarded-for": "192.0.2.10, 10.0.0.1"}, {},
        )  # fmt: skip
        assert a.drain(5)
    finally:
        a.stop()
    anonymous, proxied = sink.events
    assert isinstance(anonymous, PhiAccessEvent)
    assert isinstance(proxied, PhiAccessEvent)
    assert (anonymous.actor.user_id, anonymous.actor.role) == ("anonymous", "unauthenticated")
    assert (proxied.actor.user_id, proxied.network_address) == ("dr.alice", "192.0.2.10")


@pytest.mark.parametrize("fail_closed", [False, True])
def test_full_queue_never_blocks_beyond_the_bound(fail_closed: bool) -> None:
    sink = ListSink()
    host = FakeOrthanc()
    cfg = PluginConfig(bootstrap_servers="k", producer_id="p", facility_id="f", max_pending=5,
                       block_seconds=0.05, fail_closed=fail_closed)  # fmt: skip
    a = Auditor(cfg, sink, host)  # worker not started: nothing drains the queue
    for _ in range(5):
        assert a.on_http_request("GET", f"/studies/{STUDY}", "10.0.0.2", headers(), {})
    started = time.perf_counter()
    allowed = a.on_http_request("GET", f"/studies/{STUDY}", "10.0.0.2", headers(), {})
    took = time.perf_counter() - started
    assert allowed is (not fail_closed)
    assert 0.05 <= took < 0.5
    assert a.counters.queue_full == 1


def test_worker_retries_while_the_emitter_pushes_back() -> None:
    sink = ListSink()
    sink.refuse = 3
    a, _ = auditor(sink)
    try:
        a.on_http_request("GET", f"/studies/{STUDY}", "10.0.0.2", headers(), {})
        assert a.drain(5)
    finally:
        a.stop()
    assert len(sink.events) == 1


def test_the_callers_size_check_is_exact_at_the_limit() -> None:
    from producers.codec import Codec
    from producers.emitter import MAX_EVENT_BYTES, EmitterConfig
    from producers.errors import EventValidationError

    codec = Codec()
    pid = "p" * 256
    # No I/O before start(): check() runs in the caller, as emit() does.
    emitter = SyncEmitter(EmitterConfig(bootstrap_servers="127.0.0.1:9", producer_id=pid))
    event = Simulator(seed=12_345).access()

    def padded(n: int) -> PhiAccessEvent:  # n characters of details, 1,000 a value
        return replace(
            event, details={f"k{i:02}": "y" * min(1000, n - i) for i in range(0, n, 1000)}
        )

    def size(n: int) -> int:  # with the longest sequence number this emitter stamps
        return len(codec.encode(padded(n).stamped(producer_id=pid, producer_seq=2**62)))

    n = MAX_EVENT_BYTES - size(0)
    while size(n) > MAX_EVENT_BYTES:  # the keys and lengths take room too
        n -= 1
    outcomes = set()
    for m in range(n - 2, n + 3):
        fits = size(m) <= MAX_EVENT_BYTES
        outcomes.add(fits)
        if fits:
            emitter.check(padded(m))
        else:
            with pytest.raises(EventValidationError, match="bytes; at most"):
                emitter.check(padded(m))
    assert outcomes == {True, False}


def test_qido_query_takes_the_issuer_orthanc_knows() -> None:
    sink = ListSink()
    a, _ = auditor(sink, DefaultPatientIdIssuer="fallback")
    a.dicomweb = True
    try:
        a.on_http_request("GET", "/dicom-web/studies", "10.0.0.3", headers(),
                          {"PatientID": "MRN777", "limit": "10"})  # fmt: skip
        a.on_http_request("GET", "/dicom-web/studies", "10.0.0.3", headers(),
                          {"PatientID": "UNKNOWN1"})  # fmt: skip
        a.on_http_request(
            "GET", "/dicom-web/studies", "10.0.0.3", headers(), {"StudyDate": "20240101"}
        )  # fmt: skip  (no patient: not recorded)
        assert a.drain(5)
    finally:
        a.stop()
    known, unknown = sink.events
    assert isinstance(known, PhiAccessEvent)
    assert isinstance(unknown, PhiAccessEvent)
    assert (known.dicom_event_id, known.action.value) == ("110112", "E")
    assert (known.patient.id, known.patient.issuer) == ("MRN777", "stmarys")
    assert (unknown.patient.id, unknown.patient.issuer) == ("UNKNOWN1", "fallback")
    assert known.details["query.PatientID"] == "MRN777"
    assert "limit" not in str(dict(known.details))


def test_the_plugins_own_log_lines_reach_orthancs_log() -> None:
    """The auditor lives in ``integrations``: its warnings (a full queue, a ledger away)
    must reach Orthanc's log, not only stderr, like the producer library's."""
    lines: list[str] = []

    class Host:
        def LogWarning(self, text: str) -> None:
            lines.append(text)

        LogError = LogInfo = LogWarning

    plugin._bridge_logging(Host())
    try:
        logging.getLogger("integrations.orthanc.delivery").warning("PHI audit queue is full")
        logging.getLogger("producers.emitter").warning("Kafka is away")
    finally:
        for name, _ in plugin._LOGGERS:
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
    assert any("PHI audit queue is full" in line for line in lines), lines
    assert any("Kafka is away" in line for line in lines), lines
