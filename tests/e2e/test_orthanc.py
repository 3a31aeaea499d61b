"""A real Orthanc with the PHI audit plugin, feeding the real pipeline.

Debian's ``orthanc`` and ``orthanc-python`` are installed with apt when missing (the test
skips only if that is impossible). The test starts its own Orthanc (scratch directory,
free ports, the pipeline's topics, its own spool), uploads a small pydicom-made study as
one user, reads it as two others, exports it to a DICOM node, deletes one instance, and
checks through the ledger API that exactly those accesses are recorded, with the right
user, patient, study, action and address, and that refused requests left no trace.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import json
import re
import secrets
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from ledgerctl.settings import KafkaRole
from producers.kafka_security import KafkaSecurity
from tests.e2e.conftest import Pipeline, free_port, install_or_skip, wait_for_events
from tests.ports import closed_address
from tests.reaping import stop_later
from tests.support import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

ORTHANC = Path("/usr/sbin/Orthanc")
PYTHON_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancPython.so")
PLUGIN_SCRIPT = ROOT / "integrations" / "orthanc" / "orthanc_plugin.py"
ROLES = {"dr.alice": "radiologist", "dr.bob": "radiologist", "tech.carol": "technologist"}


def ensure_orthanc() -> None:
    install_or_skip(
        "orthanc.sh",
        "Debian's orthanc and orthanc-python",
        lambda: ORTHANC.exists() and PYTHON_PLUGIN.exists(),
    )


def plugin_python_path() -> str:
    """The venv's site-packages, which must match the CPython minor Orthanc embeds."""
    ldd = subprocess.run(["ldd", str(PYTHON_PLUGIN)], capture_output=True, text=True, check=True)
    found = re.search(r"libpython(\d+\.\d+)", ldd.stdout)
    assert found, "cannot tell which Python orthanc-python embeds"
    ours = "{}.{}".format(*sys.version_info[:2])
    assert found.group(1) == ours, (
        f"orthanc-python embeds Python {found.group(1)}, the test venv runs {ours}: "
        "deploy/local/orthanc.sh shows how to install the plugin's dependencies for it"
    )
    return sysconfig.get_paths()["purelib"]


@dataclass
class OrthancServer:
    url: str
    aet: str
    users: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes]

    def auth(self, user: str, password: str | None = None) -> dict[str, str]:
        token = f"{user}:{password or self.users[user]}".encode()
        return {"Authorization": "Basic " + base64.b64encode(token).decode()}


def launch(
    pipeline: Pipeline,
    home: Path,
    *,
    bootstrap: str,
    users: dict[str, str],
    producer_id: str,
    log_name: str = "orthanc.log",
) -> OrthancServer:
    """Start Orthanc with the plugin on fresh ports; the index and spool live in ``home``."""
    http_port, dicom_port = free_port(), free_port()
    aet = "E2EORTHANC"
    config = {
        "Name": "e2e",
        "StorageDirectory": str(home / "db"),
        "IndexDirectory": str(home / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": users,
        "DicomAlwaysAllowStore": False,
        "DicomCheckModalityHost": True,
        "DicomModalities": {"mirror": [aet, "127.0.0.1", dicom_port]},
        "Plugins": [str(PYTHON_PLUGIN)],
        "PythonScript": str(PLUGIN_SCRIPT),
        "PhiLedger": {
            "KafkaBootstrap": bootstrap,
            "AccessTopic": pipeline.access_topic,
            "RelayTopic": pipeline.relay_topic,
            "ProducerId": producer_id,
            "ProducerKeyFile": pipeline.stack.producer_key(producer_id),
            "FacilityId": "e2e-orthanc",
            "FacilityName": "E2E Orthanc",
            "SpoolDirectory": str(home / "spool"),
            "PurposeOfUse": "TREAT",
            "Users": {u: {"Role": r, "Name": u.split(".")[1].title()} for u, r in ROLES.items()},
            "PythonPath": [plugin_python_path()],
            # The pipe process runs in the test's own interpreter (it has every dependency; the
            # machine need not have a system python3.X binary).
            "PipePython": sys.executable,
            "StopTimeoutSeconds": 3.0,
            **orthanc_kafka_settings(pipeline.stack.kafka(KafkaRole.ORTHANC)),
        },
    }
    conf = home / "orthanc.json"
    conf.write_text(json.dumps(config, indent=2))
    log = home / log_name
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(ORTHANC), str(conf)], cwd=home, stdout=out, stderr=subprocess.STDOUT
        )
    server = OrthancServer(f"http://127.0.0.1:{http_port}", aet, users, log, proc)
    try:
        _wait_ready(server)
    except BaseException:
        stop(server, pipeline)
        raise
    return server


def orthanc_kafka_settings(security: KafkaSecurity) -> dict[str, str]:
    """The plugin's Kafka security keys (integrations/orthanc/config.py) for ``security``."""
    keys = {
        "SecurityProtocol": security.protocol,
        "SslCaFile": security.ca_file,
        "SslCertFile": security.cert_file,
        "SslKeyFile": security.key_file,
        "SaslMechanism": security.sasl_mechanism,
        "SaslUsername": security.sasl_username,
        "SaslPasswordFile": security.sasl_password_file,
    }
    return {k: v for k, v in keys.items() if v is not None}


def stop(server: OrthancServer, pipeline: Pipeline, *, wait: bool = True) -> None:
    """Stop Orthanc gracefully and keep its log with the pipeline's; ``wait=False`` (a
    fixture's teardown) does both in the background (tests/reaping.py)."""
    keep = functools.partial(
        shutil.copy, server.log, pipeline.logs / f"{server.log.parent.name}-{server.log.name}"
    )
    if not wait:
        stop_later(server.proc, then=keep)
        return
    server.proc.terminate()
    try:
        server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=10)
    keep()


@pytest.fixture(scope="module")
def orthanc(
    pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OrthancServer]:
    ensure_orthanc()
    server = launch(
        pipeline,
        tmp_path_factory.mktemp("orthanc"),
        bootstrap=pipeline.stack.kafka_bootstrap,
        users={u: secrets.token_urlsafe(12) for u in ROLES},
        producer_id=f"orthanc-e2e-{uuid.uuid4().hex[:6]}",
    )
    try:
        yield server
    finally:
        stop(server, pipeline, wait=False)


def _wait_ready(server: OrthancServer) -> None:
    import urllib.request

    user, password = next(iter(server.users.items()))
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    request = urllib.request.Request(
        f"{server.url}/system", headers={"Authorization": f"Basic {token}"}
    )
    deadline = time.monotonic() + 30
    while True:
        if server.proc.poll() is not None:
            pytest.fail(f"Orthanc exited at start:\n{server.log.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(request, timeout=2).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"Orthanc not ready in 30 s:\n{server.log.read_text()[-3000:]}")
            time.sleep(0.2)
    deadline = time.monotonic() + 10
    while "PhiLedger: auditing PHI access" not in (text := server.log.read_text()):
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.1)


def make_study(patient_id: str, issuer: str, accession: str, count: int) -> tuple[str, list[bytes]]:
    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for i in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = sop = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.PatientID, ds.IssuerOfPatientID, ds.PatientName = patient_id, issuer, "Test^Patient"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, sop
        ds.SOPClassUID, ds.Modality, ds.AccessionNumber = (
            SecondaryCaptureImageStorage,
            "OT",
            accession,
        )
        ds.StudyDate, ds.InstanceNumber = "20260101", i + 1
        ds.Rows = ds.Columns = 16
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = bytes((x * 7 + i) % 256 for x in range(256))
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files.append(buf.getvalue())
    return study_uid, files


async def _ok(resp: aiohttp.ClientResponse) -> bytes:
    body = await resp.read()
    assert resp.status == 200, (resp.status, body[:300])
    return body


async def test_orthanc_accesses_reach_the_ledger(
    orthanc: OrthancServer, pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    run = uuid.uuid4().hex[:8]
    patient, issuer, accession = f"OR{run}", "e2e-issuer", f"A{run}"
    study_uid, files = make_study(patient, issuer, accession, 3)
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(20)) as dicom:
        # tech.carol uploads the study: three imports.
        stored = []
        for data in files:
            async with dicom.post(
                f"{orthanc.url}/instances", data=data, headers=orthanc.auth("tech.carol")
            ) as resp:
                stored.append(json.loads(await _ok(resp)))
        instances = [s["ID"] for s in stored]
        study_id = stored[0]["ParentStudy"]
        # dr.alice reads the study and one file; dr.bob two previews (one in an emergency).
        reads = [
            ("dr.alice", f"/studies/{study_id}", {}),
            ("dr.alice", f"/instances/{instances[0]}/file", {}),
            ("dr.bob", f"/instances/{instances[1]}/preview", {}),
            ("dr.bob", f"/instances/{instances[2]}/preview", {"X-Purpose-Of-Use": "ETREAT"}),
        ]
        for user, path, headers in reads:
            async with dicom.get(orthanc.url + path, headers=orthanc.auth(user) | headers) as resp:
                await _ok(resp)
        # Requests Orthanc refuses or cannot answer disclose nothing and are not recorded.
        async with dicom.get(
            f"{orthanc.url}/studies/{study_id}", headers=orthanc.auth("dr.bob", "wrong")
        ) as resp:
            assert resp.status == 401
        missing = "00000000-00000000-00000000-00000000-00000000"
        async with dicom.get(
            f"{orthanc.url}/instances/{missing}", headers=orthanc.auth("dr.bob")
        ) as resp:
            assert resp.status == 404
        # dr.alice sends the study to a DICOM node (a transfer), then deletes one instance.
        async with dicom.post(
            f"{orthanc.url}/modalities/mirror/store",
            json={"Resources": [study_id], "Synchronous": True},
            headers=orthanc.auth("dr.alice"),
        ) as resp:
            assert json.loads(await _ok(resp))["FailedInstancesCount"] == 0
        async with dicom.delete(
            f"{orthanc.url}/instances/{instances[2]}", headers=orthanc.auth("dr.alice")
        ) as resp:
            await _ok(resp)

    ae = (orthanc.aet, "dicom-application-entity", "110107", "C", "TREAT")
    expected = Counter(
        [("tech.carol", "technologist", "110107", "C", "TREAT")] * 3
        + [("dr.alice", "radiologist", "110103", "R", "TREAT")] * 2
        + [("dr.bob", "radiologist", "110103", "R", "TREAT")]
        + [("dr.bob", "radiologist", "110103", "R", "ETREAT")]
        + [("dr.alice", "radiologist", "110104", "R", "TREAT")]
        # The node it was sent to is this Orthanc: it records receiving the three instances
        # over DICOM, with the calling AE title as the actor.
        + [ae] * 3
        + [("dr.alice", "radiologist", "110103", "D", "TREAT")]
    )
    url = f"{pipeline.api_url}/v1/studies/{study_uid}/accesses"
    deadline = time.monotonic() + 40
    while True:
        async with http.get(url, params={"limit": "100"}) as resp:
            assert resp.status == 200, await resp.text()
            entries = (await resp.json())["accesses"]
        got = Counter(
            (e["user"]["id"], e["user"]["role"], e["event"]["dicom_event_id"], e["action"],
             e["purpose_of_use"])
            for e in entries
        )  # fmt: skip
        if got == expected or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.3)
    log_tail = orthanc.log.read_text()[-2000:]
    assert got == expected, f"ledger has {got}, expected {expected}\nOrthanc log:\n{log_tail}"
    for e in entries:
        assert e["patient"] == {"id": patient, "issuer": issuer, "state": None}
        assert e["study"] == {"uid": study_uid, "accession": accession}
        assert e["facility"] == "e2e-orthanc"
        assert e["outcome"] == "SUCCESS"
        # A C-STORE's calling address comes from the instance's RemoteIP metadata.
        assert e["network_address"] == "127.0.0.1"
    await wait_for_events(http, pipeline, [e["event_id"] for e in entries], timeout=20)

    # The recorded events carry the route, never more than the Orthanc id of the resource.
    async with http.get(f"{pipeline.api_url}/v1/events/{entries[0]['event_id']}") as resp:
        event = (await resp.json())["event"]
    assert event["details"]["source"] == "orthanc"
    transfer = next(e for e in entries if e["event"]["dicom_event_id"] == "110104")
    async with http.get(f"{pipeline.api_url}/v1/events/{transfer['event_id']}") as resp:
        event = (await resp.json())["event"]
    assert event["recipient"]["name"] == "mirror"
    assert event["recipient"]["address"] == orthanc.aet

    # How each access reached Orthanc (PhiAccessEvent v3): this Orthanc has neither
    # SslEnabled nor DicomTlsEnabled, so REST requests are plain HTTP and the C-STOREs it
    # received from itself plain DICOM, each recorded unencrypted.
    channels: Counter[tuple[bool, str, bool]] = Counter()
    for e in entries:
        async with http.get(f"{pipeline.api_url}/v1/events/{e['event_id']}") as resp:
            transport = (await resp.json())["event"]["transport"]
        channels[
            (e["user"]["id"] == orthanc.aet, transport["channel"], transport["encrypted"])
        ] += 1
    assert channels == {(False, "HTTP", False): len(entries) - 3, (True, "DICOM", False): 3}

    # Nothing more arrives (no duplicates, nothing for the refused requests).
    await asyncio.sleep(1.0)
    async with http.get(url, params={"limit": "100"}) as resp:
        assert len((await resp.json())["accesses"]) == sum(expected.values())
    # The plugin's health route (authenticated like every Orthanc route).
    async with aiohttp.ClientSession() as client:
        async with client.get(f"{orthanc.url}/phi-ledger/health") as resp:
            assert resp.status == 401
        async with client.get(
            f"{orthanc.url}/phi-ledger/health", headers=orthanc.auth("dr.alice")
        ) as resp:
            health = json.loads(await _ok(resp))
    # The default: a pipe process owns the Kafka client, and has acknowledged everything.
    assert (health["emitter"]["mode"], health["emitter"]["state"]) == ("pipe", "running")
    assert health["emitter"]["lost"] == health["emitter"]["refused"] == 0
    assert health["emitter"]["pending"] == 0
    assert health["audit"]["events"] >= sum(expected.values())
    assert health["audit"]["unaudited"] == 0
    assert "PhiLedger" not in "".join(
        line for line in orthanc.log.read_text().splitlines(keepends=True) if line.startswith("E")
    ), "the plugin logged errors"
    assert time.monotonic() - started < 60


async def study_accesses(
    http: aiohttp.ClientSession, pipeline: Pipeline, study_uid: str, want: int, timeout: float
) -> list[dict[str, Any]]:
    """The study's access history once it has ``want`` entries (or the time is up)."""
    url = f"{pipeline.api_url}/v1/studies/{study_uid}/accesses"
    deadline = time.monotonic() + timeout
    while True:
        async with http.get(url, params={"limit": "100"}) as resp:
            assert resp.status == 200, await resp.text()
            entries: list[dict[str, Any]] = (await resp.json())["accesses"]
        if len(entries) >= want or time.monotonic() > deadline:
            return entries
        await asyncio.sleep(0.3)


async def test_kafka_unreachable_orthanc_serves_at_once_and_nothing_is_lost(
    pipeline: Pipeline, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """With Kafka away, reads are served without waiting for it and their events go to
    the plugin's spool; the next start (Kafka back) delivers every one of them."""
    ensure_orthanc()
    users = {u: secrets.token_urlsafe(12) for u in ROLES}
    producer = f"orthanc-e2e-down-{uuid.uuid4().hex[:6]}"
    dead = closed_address()  # nothing listens here: connections are refused
    run = uuid.uuid4().hex[:8]
    patient, accession = f"DN{run}", f"D{run}"
    study_uid, files = make_study(patient, "e2e-issuer", accession, 2)
    server = launch(pipeline, tmp_path, bootstrap=dead, users=users, producer_id=producer)
    slowest = 0.0
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(20)) as dicom:
            stored = []
            for data in files:
                async with dicom.post(
                    f"{server.url}/instances", data=data, headers=server.auth("tech.carol")
                ) as resp:
                    stored.append(json.loads(await _ok(resp)))
            for i in range(20):
                began = time.perf_counter()
                async with dicom.get(
                    f"{server.url}/instances/{stored[i % 2]['ID']}/preview",
                    headers=server.auth("dr.bob"),
                ) as resp:
                    await _ok(resp)
                slowest = max(slowest, time.perf_counter() - began)
    finally:
        stop(server, pipeline)
    assert slowest < 1.0, f"a read waited {slowest:.2f}s while Kafka was unreachable"
    assert await study_accesses(http, pipeline, study_uid, 1, 0.5) == []

    server = launch(pipeline, tmp_path, bootstrap=pipeline.stack.kafka_bootstrap, users=users,
                    producer_id=producer, log_name="orthanc-2.log")  # fmt: skip
    try:
        entries = await study_accesses(http, pipeline, study_uid, 22, 30)
    finally:
        stop(server, pipeline)
    got = Counter((e["user"]["id"], e["event"]["dicom_event_id"], e["action"]) for e in entries)
    assert got == Counter({("tech.carol", "110107", "C"): 2, ("dr.bob", "110103", "R"): 20})
    assert {e["patient"]["id"] for e in entries} == {patient}
