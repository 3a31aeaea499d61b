"""The REST routes the Orthanc plugin wraps (issue 14, item 3): answers and records.

Two Orthancs (Debian's 1.10.1) start from one copy of the same index and storage, so
their answers can be compared byte for byte: ``plain`` without any plugin, ``audited``
with this worktree's plugin emitting to the pipeline's Kafka topics. Every wrapped route
(``/tools/find``, ``/tools/lookup``, ``/tools/create-archive``, ``/tools/create-media``
and ``-extended``, the archive and media downloads, REST C-MOVE, the bulk listings) is
asked of both, successes and errors, and must answer the same status, content type
and body, except the ``Details`` line of the errors orthanc-python does not pass on
(docs/orthanc.md, "Wrapped routes"). Then each request must be in the ledger: in the
history of every patient its answer returned (``disclosed``) or named, and a search
that matched nobody in its user's history.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import difflib
import io
import json
import secrets
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from pydicom import dcmread
from pydicom.uid import UID

from ledgerctl.settings import KafkaRole
from tests.e2e.conftest import Pipeline, free_port, get_json
from tests.e2e.test_orthanc import (
    ORTHANC,
    PLUGIN_SCRIPT,
    PYTHON_PLUGIN,
    ensure_orthanc,
    make_study,
    orthanc_kafka_settings,
    plugin_python_path,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

ISSUER = "rest-issuer"
#: Debian's orthanc-dicomweb: loaded by both Orthancs when installed (QIDO-RS by date).
DICOMWEB = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
HAVE_DICOMWEB = DICOMWEB.exists()
USER = "dr.rest"


@dataclass
class Server:
    url: str
    aet: str
    dicom: int
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Pair:
    plain: Server
    audited: Server
    password: str
    patients: list[str]
    #: patient id -> (Orthanc patient id, Orthanc study id, Study Instance UID)
    ids: dict[str, tuple[str, str, str]]


def _config(home: Path, users: dict[str, str], store_port: int) -> dict[str, Any]:
    """The same settings for both Orthancs (name and AE title too), on their own ports."""
    http, dicom = free_port(), free_port()
    aet = "RESTPACS"
    return {
        "Name": "rest",
        "StorageDirectory": str(home / "db"),
        "IndexDirectory": str(home / "db"),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": users,
        # REST C-MOVE: Orthanc asks itself (modality "self") to move to a DCMTK storescp.
        "DicomModalities": {
            "self": [aet, "127.0.0.1", dicom],
            "store": ["STORESCP", "127.0.0.1", store_port],
        },
        "Plugins": [str(DICOMWEB)] if HAVE_DICOMWEB else [],
    }


def _start(home: Path, config: dict[str, Any], password: str) -> Server:
    (home / "orthanc.json").write_text(json.dumps(config, indent=2))
    log = home / "orthanc.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(ORTHANC), str(home / "orthanc.json")], cwd=home, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{config['HttpPort']}", config["DicomAet"],
                    config["DicomPort"], proc, log)  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            pytest.fail(f"Orthanc exited at start:\n{log.read_text()[-3000:]}")
        try:
            _call(server, password, "GET", "/system")
            break
        except OSError:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
    if "PhiLedger" in config:
        while "PhiLedger: auditing PHI access" not in (text := log.read_text()):
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.1)
    return server


def _stop(server: Server) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str | None
    disposition: str | None
    allow: str | None
    body: bytes


def _call(server: Server, password: str, method: str, path: str, body: bytes | None = None,
          user: str = USER) -> Reply:  # fmt: skip
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        server.url + path, data=body, method=method,
        headers={"Authorization": f"Basic {token}"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return Reply(resp.status, resp.headers.get("Content-Type"),
                         resp.headers.get("Content-Disposition"), resp.headers.get("Allow"),
                         resp.read())  # fmt: skip
    except urllib.error.HTTPError as err:
        return Reply(err.code, err.headers.get("Content-Type"),
                     err.headers.get("Content-Disposition"), err.headers.get("Allow"),
                     err.read())  # fmt: skip


@pytest.fixture(scope="module")
def pair(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    ensure_orthanc()
    run = uuid.uuid4().hex[:6]
    password = secrets.token_urlsafe(12)
    users = {USER: password, "dr.other": password}
    patients = [f"REST{run}{x}" for x in "ABC"]
    store_port = free_port()
    with contextlib.ExitStack() as cleanup:
        received = tmp_path_factory.mktemp("storescp")
        storescp = subprocess.Popen(
            ["storescp", "-aet", "STORESCP", "-od", str(received), str(store_port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cleanup.callback(storescp.wait, timeout=10)
        cleanup.callback(storescp.kill)  # storescp may sit out a SIGTERM
        plain_home = tmp_path_factory.mktemp("plain")
        plain_config = _config(plain_home, users, store_port)
        plain = _start(plain_home, plain_config, password)
        cleanup.callback(_stop, plain)
        ids = _upload(plain, password, patients, run)
        # The audited Orthanc's ports are drawn while the plain one holds its own.
        audited_home = tmp_path_factory.mktemp("audited")
        audited_config = _config(audited_home, users, store_port) | {
            "Plugins": [str(PYTHON_PLUGIN)] + ([str(DICOMWEB)] if HAVE_DICOMWEB else []),
            "PythonScript": str(PLUGIN_SCRIPT),
            "PhiLedger": _plugin_settings(pipeline, audited_home, run),
        }
        _stop(plain)
        shutil.copytree(plain_home / "db", audited_home / "db")
        plain = _start(plain_home, plain_config, password)
        cleanup.callback(_stop, plain)
        audited = _start(audited_home, audited_config, password)
        cleanup.callback(shutil.copy, audited.log, pipeline.logs / "orthanc-rest-audited.log")
        cleanup.callback(_stop, audited)
        yield Pair(plain, audited, password, patients, ids)


def _upload(
    plain: Server, password: str, patients: list[str], run: str
) -> dict[str, tuple[str, str, str]]:
    """Each patient's study (two instances, study dates 20260101 to 20260103)."""
    ids = {}
    for n, patient in enumerate(patients):
        study_uid, files = make_study(patient, ISSUER, f"ACC{run}{n}", 2)
        for i, data in enumerate(files):
            ds = dcmread(io.BytesIO(data))
            ds.StudyDate = f"2026010{n + 1}"
            out = io.BytesIO()
            ds.save_as(out, enforce_file_format=True)
            reply = _call(plain, password, "POST", "/instances", out.getvalue())
            assert reply.status == 200, reply.body
            if i == 0:
                stored = json.loads(reply.body)
                ids[patient] = (stored["ParentPatient"], stored["ParentStudy"], study_uid)
    return ids


def _plugin_settings(pipeline: Pipeline, home: Path, run: str) -> dict[str, Any]:
    return {
        "KafkaBootstrap": pipeline.stack.kafka_bootstrap,
        "AccessTopic": pipeline.access_topic,
        "RelayTopic": pipeline.relay_topic,
        "ProducerId": f"orthanc-rest-{run}",
        "ProducerKeyFile": pipeline.stack.producer_key(f"orthanc-rest-{run}"),
        "FacilityId": "e2e-orthanc-rest",
        "SpoolDirectory": str(home / "spool"),
        "PurposeOfUse": "TREAT",
        "Users": {USER: {"Role": "radiologist"}},
        "PythonPath": [plugin_python_path()],
        "PipePython": sys.executable,
        "StopTimeoutSeconds": 3.0,
        "WrapRestMove": True,
        **orthanc_kafka_settings(pipeline.stack.kafka(KafkaRole.ORTHANC)),
    }


def _zip_entries(data: bytes) -> list[tuple[str, bytes]]:
    """A ZIP's entries; a DICOMDIR without the instance UID Orthanc draws for each one
    (two downloads from the same Orthanc differ there too)."""
    entries = []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for info in archive.infolist():
            content = archive.read(info)
            if info.filename == "DICOMDIR":
                ds = dcmread(io.BytesIO(content))
                ds.file_meta.MediaStorageSOPInstanceUID = UID("1.2.3")
                content = json.dumps(ds.to_json_dict(), sort_keys=True, indent=1).encode()
            entries.append((info.filename, content))
    return entries


def _entries_diff(plain: list[tuple[str, bytes]], audited: list[tuple[str, bytes]]) -> str:
    """Where two ZIPs' entries differ: the names, and a diff of each differing entry
    that is text (a DICOMDIR as indented JSON; a CI run once saw one differ)."""
    lines = [f"names: {[n for n, _ in plain]} vs {[n for n, _ in audited]}"]
    for (name, a), (_, b) in zip(plain, audited, strict=False):
        if a != b:
            try:
                left, right = a.decode().splitlines(), b.decode().splitlines()
            except UnicodeDecodeError:
                lines.append(f"{name}: {len(a)} vs {len(b)} bytes differ")
                continue
            diff = difflib.unified_diff(left, right, "plain", "audited", lineterm="", n=2)
            lines.extend([f"{name}:", *list(diff)[:80]])
    return "\n".join(lines)


def _without_details(body: bytes) -> bytes:
    return b"".join(
        line for line in body.splitlines(keepends=True) if not line.startswith(b'\t"Details"')
    )


def _same(pair: Pair, method: str, path: str, body: bytes | None = None) -> Reply:
    """Ask both Orthancs; assert the audited one answers exactly as the plain one."""
    plain = _call(pair.plain, pair.password, method, path, body)
    audited = _call(pair.audited, pair.password, method, path, body)
    assert (audited.status, audited.content_type, audited.disposition, audited.allow) == (
        plain.status, plain.content_type, plain.disposition, plain.allow,
    ), (method, path, plain.body[:300], audited.body[:300])  # fmt: skip
    if plain.content_type == "application/zip":
        # A ZIP holds each entry's modification time (to the second): compare entries.
        ours, theirs = _zip_entries(audited.body), _zip_entries(plain.body)
        assert ours == theirs, _entries_diff(theirs, ours)
    else:
        assert audited.body == plain.body, (method, path, plain.body[:500], audited.body[:500])
    return audited


def _details_lost(pair: Pair, method: str, path: str, body: bytes | None) -> None:
    """An error whose ``Details`` orthanc-python does not pass on: the rest is the same."""
    plain = _call(pair.plain, pair.password, method, path, body)
    audited = _call(pair.audited, pair.password, method, path, body)
    assert b'"Details"' in plain.body  # the difference this test documents
    assert (audited.status, audited.content_type) == (plain.status, plain.content_type)
    assert audited.body == _without_details(plain.body)


def test_wrapped_routes_answer_as_orthanc_does(pair: Pair) -> None:
    (pa, sa, _), (pb, sb, _), (pc, _, _) = (pair.ids[p] for p in pair.patients)
    post = "POST"
    found = _same(pair, post, "/tools/find", b'{"Level":"Patient","Query":{}}')
    assert {pa, pb, pc} <= set(json.loads(found.body))
    _same(
        pair,
        post,
        "/tools/find",
        b'{"Level":"Study","Query":{"StudyDate":"20260101-20260102"},"Expand":true}',
    )
    _same(pair, post, "/tools/find", b'{"Level":"Study","Query":{"StudyDate":"19000101"}}')
    _same(pair, post, "/tools/lookup", pair.patients[0].encode())
    _same(pair, post, "/tools/lookup", b"nobody-has-this")
    assert _same(pair, "GET", f"/studies/{sa}/archive").content_type == "application/zip"
    _same(pair, post, f"/studies/{sa}/archive", b"{}")
    _same(pair, "GET", f"/patients/{pc}/media")
    _same(pair, post, "/tools/create-archive", json.dumps([sa, sb]).encode())
    _same(pair, post, "/tools/create-media", json.dumps({"Resources": [pc]}).encode())
    _same(pair, post, "/tools/create-media-extended", json.dumps([sb]).encode())
    for listing in ("/patients", "/patients?expand", "/studies", "/series?expand",
                    "/studies?expand&limit=2&since=0", "/instances"):  # fmt: skip
        _same(pair, "GET", listing)
    # Errors Orthanc answers with its own status and body (no Details).
    _same(pair, "GET", "/studies/00000000-00000000-00000000-00000000-00000000/archive")
    _same(pair, post, "/tools/create-archive", b'["nope"]')
    _same(pair, post, "/tools/create-media", b'["nope"]')
    _same(pair, post, "/tools/find", b'{"Level":"Nope","Query":{}}')
    # Errors whose Details the wrapper checks first and answers with Orthanc's own text.
    _same(pair, post, "/tools/find", b"not json")
    _same(pair, post, "/tools/create-archive", b"not json")
    _same(pair, post, "/modalities/self/move", b"not json")
    _same(pair, post, "/modalities/nope/move", b'{"Level":"Study","Resources":[]}')
    _same(pair, post, "/tools/find", b'{"Query":{}}')
    _same(pair, post, "/tools/find", b'{"Level":7,"Query":{}}')
    _same(pair, post, "/tools/find", b'{"Level":"Study"}')
    _same(pair, "GET", "/series?limit=2")
    _same(pair, "GET", "/patients?since=0&expand")
    # Methods Orthanc does not serve there: 405 with its Allow header.
    _same(pair, "GET", "/tools/find")
    _same(pair, "PUT", f"/studies/{sa}/archive", b"")
    _same(pair, post, "/patients", b"")
    # Errors whose Details orthanc-python drops: same status and body without them.
    _same(pair, "GET", "/studies?limit=x&since=0")
    _details_lost(pair, post, f"/studies/{sa}/media", b'{"Transcode":"nope"}')


def test_rest_c_move_answers_as_orthanc_does(pair: Pair) -> None:
    """A REST C-MOVE (``WrapRestMove``) from Orthanc itself to a storescp, then to an AE
    title nobody knows: the failure is 422, without the DIMSE status Orthanc details."""
    uid = pair.ids[pair.patients[1]][2]
    body = {"Level": "Study", "Resources": [{"StudyInstanceUID": uid}]}
    moved = _same(pair, "POST", "/modalities/self/move",
                  json.dumps(body | {"TargetAet": "STORESCP"}).encode())  # fmt: skip
    assert moved.status == 200
    _details_lost(pair, "POST", "/modalities/self/move",
                  json.dumps(body | {"TargetAet": "NOWHERE"}).encode())  # fmt: skip


def test_a_qido_search_by_date_is_recorded_naming_nobody(pair: Pair) -> None:
    """QIDO-RS by date alone (the DICOMweb plugin): asked again by the plugin's worker,
    recorded naming nobody and disclosing the patients returned (checked below)."""
    if not HAVE_DICOMWEB:
        pytest.skip("Debian's orthanc-dicomweb is not installed")
    found = _call(pair.audited, pair.password, "GET",
                  "/dicom-web/studies?StudyDate=20260101-20260102")  # fmt: skip
    assert found.status == 200, found.body[:300]
    assert len(json.loads(found.body)) == 2
    none = _call(pair.audited, pair.password, "GET", "/dicom-web/studies?StudyDate=19000102")
    assert none.status == 200
    assert json.loads(none.body or b"[]") == []


async def _events(http: aiohttp.ClientSession, pipeline: Pipeline, path: str) -> list[dict]:  # type: ignore[type-arg]
    status, body = await get_json(http, f"{pipeline.api_url}/v1/{path}/accesses", limit="1000")
    assert status == 200, body
    return list(body["accesses"])


async def _details(http: aiohttp.ClientSession, pipeline: Pipeline, event_id: str) -> dict:  # type: ignore[type-arg]
    status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{event_id}")
    assert status == 200, body
    return dict(body)


async def _quarantine_reasons(pipeline: Pipeline) -> list[str]:
    conn = await asyncpg.connect(pipeline.stack.owner_url)
    try:
        rows = await conn.fetch("SELECT reason FROM quarantine ORDER BY quarantined_at")
        return [str(r["reason"]) for r in rows]
    finally:
        await conn.close()


async def test_each_wrapped_request_is_in_the_right_histories(
    pair: Pair, pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    """Run after the comparisons: each audited request above is now in the ledger."""
    a, b, c = pair.patients
    # route template -> the patients whose history must hold it (attribution).
    expected = {
        "POST /tools/find": {a: "disclosed", b: "disclosed", c: "disclosed"},
        "POST /tools/lookup": {a: "disclosed"},
        "GET /studies/{id}/archive": {a: "named"},
        "POST /tools/create-archive": {a: "disclosed", b: "disclosed"},
        "POST /tools/create-media": {c: "named"},
        "GET /patients": {a: "disclosed", b: "disclosed", c: "disclosed"},
        "GET /instances": {a: "disclosed", b: "disclosed", c: "disclosed"},
        "POST /modalities/{name}/move": {b: "named"},
        "POST /tools/create-media-extended": {b: "named"},
        "GET /patients/{id}/media": {c: "named"},
    }
    if HAVE_DICOMWEB:
        expected["GET /dicom-web/studies"] = {a: "disclosed", b: "disclosed"}
    deadline = time.monotonic() + 60
    while True:
        histories = {p: await _events(http, pipeline, f"patients/{p}") for p in pair.patients}
        seen: dict[str, dict[str, str]] = {}
        routes: dict[str, str] = {}
        for patient, entries in histories.items():
            for e in entries:
                if e["event_id"] not in routes:
                    details = await _details(http, pipeline, e["event_id"])
                    routes[e["event_id"]] = json.dumps(details)
                for template in expected:
                    if f'"{template}"' in routes[e["event_id"]]:
                        seen.setdefault(template, {})[patient] = e["attribution"]
        if all(seen.get(t, {}).items() >= want.items() for t, want in expected.items()):
            break
        if time.monotonic() > deadline:
            log = pair.audited.log.read_text()[-3000:]
            quarantined = await _quarantine_reasons(pipeline)
            pytest.fail(
                f"missing from the histories: {seen} vs {expected}\n"
                f"quarantined: {quarantined}\n{log}"
            )
        await asyncio.sleep(0.5)
    want = {"STORESCP": ("SUCCESS", "110104"), "NOWHERE": ("SERIOUS_FAILURE", "110104")}
    moves: dict[str, tuple[str, str]] = {}
    while True:
        user = await _events(http, pipeline, f"users/{USER}")
        for e in user:
            if e["event_id"] not in routes:
                routes[e["event_id"]] = json.dumps(await _details(http, pipeline, e["event_id"]))
            event = json.loads(routes[e["event_id"]])["event"]
            if event["details"].get("orthanc.route") == "POST /modalities/{name}/move":
                moves[event["recipient"]["name"]] = (event["outcome"], event["dicom_event_id"])
                # The client's address, which only the filter sees, reached the wrapper.
                assert event["network_address"] == "127.0.0.1"
        nobody = [
            event
            for event in (json.loads(routes[e["event_id"]])["event"] for e in user)
            if event["details"].get("query.StudyDate") in ("19000101", "19000102")
        ]
        if (moves == want and len(nobody) == 1 + HAVE_DICOMWEB) or (time.monotonic() > deadline):
            break
        await asyncio.sleep(0.5)
    assert moves == want
    # The search that matched nobody: a Query naming no patient, with its criteria.
    # (and the QIDO-RS search by a date nobody has, when DICOMweb is there).
    assert [(q["patient"], q["disclosed"], q["dicom_event_id"], q["action"]) for q in nobody] == [
        (None, [], "110112", "E")
    ] * (2 if HAVE_DICOMWEB else 1)
    routes_of = sorted(q["details"]["orthanc.route"] for q in nobody)
    assert routes_of == ["GET /dicom-web/studies"] * HAVE_DICOMWEB + ["POST /tools/find"]
