"""The ATNA receiver end to end: `ledger atna serve` as a real process with the
real durable emitter, syslog over TLS (a Python ssl client, and Debian's rsyslog relaying
what util-linux `logger` gives it, as a PACS host's syslog daemon would) and over UDP
(util-linux `logger`, a real RFC 5424 client), Kafka, `ledger consume`,
PostgreSQL and `ledger serve`: the events come back through the API under ids derived
from the messages, a re-sent message is an idempotent duplicate, logins, logouts and
emergency overrides are security events in the user's history, and malformed or
unmappable messages are in the kept store with their reason."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from producers.atna.dicom_audit import events_from_dicom
from producers.atna.rfc5424 import format_syslog, frame_octet_counted
from producers.events import SecurityEvent
from tests.e2e.conftest import (
    LEDGER,
    Pipeline,
    free_port,
    get_json,
    install_or_skip,
    wait_for_events,
)
from tests.support import ROOT

pytestmark = pytest.mark.e2e

CORPUS = ROOT / "tests" / "corpus" / "dicom-audit"
MAPPED = [
    "instances-accessed.xml",
    "query.xml",
    "export.xml",
    "import.xml",
    "emergency-override-start.xml",
    "audit-log-used.xml",
    "dcm4chee-instances-transferred.xml",
    "dcm4chee-export.xml",
    "multi-study.xml",
]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Atna:
    tls_port: int
    udp_port: int
    cert: Path
    kept_dir: Path
    log: Path
    producer_id: str
    proc: subprocess.Popen[bytes]

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))

    def kept(self) -> list[dict[str, object]]:
        out = subprocess.run(
            [LEDGER, "atna", "kept", "--kept-dir", str(self.kept_dir),
             "--raw", "--limit", "1000"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        )  # fmt: skip
        return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture(scope="module")
def atna(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Atna]:
    where = tmp_path_factory.mktemp("atna")
    cert, key = where / "server.crt", where / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    tls_port, udp_port = free_port(), free_udp_port()
    producer_id = f"atna-e2e-{uuid.uuid4().hex[:8]}"
    log = where / "atna.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [LEDGER, "atna", "serve",
             "--tls-port", str(tls_port), "--udp-port", str(udp_port),
             "--cert", str(cert), "--key", str(key), "--kept-dir", str(where / "kept"),
             "--producer-id", producer_id, "--stats-every", "5"],
            env={**pipeline.env,
                 "LEDGER_PRODUCER_KEY_FILE": pipeline.stack.producer_key(producer_id)},
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    running = Atna(tls_port, udp_port, cert, where / "kept", log, producer_id, proc)
    deadline = time.monotonic() + 60
    while "ATNA receiver ready" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the ATNA receiver did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    try:
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def send_tls(atna: Atna, messages: list[bytes], *, chunk: int = 1000) -> None:
    """A syslog TLS client (RFC 5425): octet-counted frames, arbitrarily split writes."""
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", atna.tls_port, ssl=atna.tls_context(), server_hostname="localhost"
    )
    stream = b"".join(frame_octet_counted(m) for m in messages)
    for i in range(0, len(stream), chunk):
        writer.write(stream[i : i + chunk])
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def syslog(payload: bytes, *, app: str = "dcm4chee-arc") -> bytes:
    return format_syslog(payload, hostname="pacs01.example", app_name=app, procid="8804")


async def test_tls_messages_reach_the_ledger_under_deterministic_ids(
    pipeline: Pipeline, atna: Atna, http: aiohttp.ClientSession
) -> None:
    payloads = [(CORPUS / name).read_bytes() for name in MAPPED]
    expected = [e for p in payloads for e in events_from_dicom(p)]
    assert len(expected) == len(MAPPED) + 1  # multi-study.xml is two events
    await send_tls(atna, [syslog(p) for p in payloads])
    ids = [str(e.event_id) for e in expected]
    await wait_for_events(http, pipeline, ids)
    for event in expected:
        status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{event.event_id}")
        assert status == 200
        stored = body["event"]
        assert stored["event_id"] == str(event.event_id)
        assert stored["producer_id"] == atna.producer_id
        assert stored["patient"]["id"] == event.patient.id  # type: ignore[union-attr]
        assert stored["actor"]["user_id"] == event.actor.user_id
        assert body["ledger"]["kafka"]["topic"] == pipeline.access_topic
        if hasattr(event, "dicom_event_id"):
            assert stored["dicom_event_id"] == event.dicom_event_id
        else:
            assert body["schema"] == "philedger.audit.AuditLogUsed"
            assert stored["query"]["path"] == "/ARR/fhir/AuditEvent"

    # The same message again (a sender retrying after a lost connection) is the same
    # event, byte for byte: the ledger counts a duplicate, raises no alert.
    status, before = await get_json(http, f"{pipeline.api_url}/v1/events/{ids[0]}")
    await send_tls(atna, [syslog(payloads[0], app="retry")])
    await asyncio.sleep(3)
    status, after = await get_json(http, f"{pipeline.api_url}/v1/events/{ids[0]}")
    assert status == 200
    assert after["ledger"] == before["ledger"]
    status, alerts = await get_json(http, f"{pipeline.api_url}/v1/alerts")
    assert status == 200
    assert not [a for a in alerts["alerts"] if a.get("event_id") in ids]


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger is not installed")
async def test_udp_from_util_linux_logger(
    pipeline: Pipeline, atna: Atna, http: aiohttp.ClientSession
) -> None:
    xml = (CORPUS / "dcm4chee-instances-accessed.xml").read_bytes()
    one_line = b" ".join(xml.split())  # logger sends one line per message
    (event,) = events_from_dicom(one_line)
    await asyncio.to_thread(
        subprocess.run,
        ["logger", "--rfc5424=notq", "--udp", "--server", "127.0.0.1",
         "--port", str(atna.udp_port), "--msgid", "IHE+RFC-3881", "--size", "65000",
         "--tag", "dcm4chee-arc", one_line.decode()],
        check=True,
    )  # fmt: skip
    await wait_for_events(http, pipeline, [str(event.event_id)])
    status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{event.event_id}")
    assert status == 200
    assert body["event"]["patient"] == {"id": "GE1118", "issuer": "DCM4CHEE.ISSUER", "state": None}
    assert body["event"]["details"]["audit_source_id"] == "dcm4chee-arc"


RSYSLOGD = Path("/usr/sbin/rsyslogd")


def ensure_rsyslog() -> None:
    install_or_skip(
        "rsyslog.sh",
        "Debian's rsyslog and rsyslog-gnutls",
        lambda: RSYSLOGD.exists() and bool(list(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so"))),
    )


RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="64k" defaultNetstreamDriverCAFile="{ca}")
module(load="imtcp")
input(type="imtcp" address="127.0.0.1" port="{inbound}")
action(type="omfwd" target="127.0.0.1" port="{tls_port}" protocol="tcp"
       StreamDriver="gtls" StreamDriverMode="1" StreamDriverAuthMode="x509/name"
       StreamDriverPermittedPeers="localhost" TCP_Framing="octet-counted"
       template="RSYSLOG_SyslogProtocol23Format")
"""


@pytest.fixture
def rsyslog(atna: Atna, tmp_path: Path) -> Iterator[int]:
    """An rsyslogd of this test's own that relays over TLS to the receiver; its port."""
    ensure_rsyslog()
    inbound = free_port()
    (tmp_path / "work").mkdir()
    conf = tmp_path / "rsyslog.conf"
    conf.write_text(RSYSLOG_CONF.format(
        work=tmp_path / "work", ca=atna.cert, inbound=inbound, tls_port=atna.tls_port,
    ))  # fmt: skip
    log = tmp_path / "rsyslogd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(RSYSLOGD), "-n", "-f", str(conf), "-i", str(tmp_path / "rsyslogd.pid")],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", inbound), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"rsyslogd did not start:\n{log.read_text(errors='replace')}")
                time.sleep(0.1)
        yield inbound
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger is not installed")
async def test_tls_from_rsyslog_relaying_a_pacs_hosts_messages(
    pipeline: Pipeline, atna: Atna, http: aiohttp.ClientSession, rsyslog: int
) -> None:
    # A third-party RFC 5425 sender: rsyslog's GnuTLS driver, checking our certificate,
    # octet-counted framing, its own RFC 5424 formatting of what util-linux logger gave it.
    names = ["dcm4chee-export.xml", "user-login.xml", "query.xml"]
    one_lines = [b" ".join((CORPUS / n).read_bytes().split()) for n in names]
    expected = [e for line in one_lines for e in events_from_dicom(line)]
    for line in one_lines:
        await asyncio.to_thread(
            subprocess.run,
            ["logger", "--rfc5424=notq", "--tcp", "--octet-count", "--server", "127.0.0.1",
             "--port", str(rsyslog), "--msgid", "IHE+RFC-3881", "--size", "65000",
             "--tag", "dcm4chee-arc", line.decode()],
            check=True,
        )  # fmt: skip
    await wait_for_events(http, pipeline, [str(e.event_id) for e in expected])
    for event in expected:
        status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{event.event_id}")
        assert status == 200
        assert body["event"]["producer_id"] == atna.producer_id
        assert body["event"]["actor"]["user_id"] == event.actor.user_id


#: Security messages sent by the login test, in the order they happened.
SECURITY = [
    "user-login-failure-4.xml",
    "user-login.xml",
    "emergency-override-start.xml",
    "emergency-override-stop.xml",
    "user-logout.xml",
]


async def test_login_over_atna_is_a_security_event_in_the_users_history(
    pipeline: Pipeline, atna: Atna, http: aiohttp.ClientSession
) -> None:
    """A User Authentication message (login, 110114 / 110122) names no patient: it reaches
    the ledger as a SecurityEvent, indexed as kind security_event under its user, and is
    served by the user's access history, as a ledger event and as a FHIR AuditEvent."""
    payloads = [(CORPUS / name).read_bytes() for name in SECURITY]
    expected = [e for p in payloads for e in events_from_dicom(p)]
    assert all(isinstance(e, SecurityEvent) for e in expected)
    await send_tls(atna, [syslog(p, app="viewer-auth") for p in payloads])
    await wait_for_events(http, pipeline, [str(e.event_id) for e in expected])
    login = events_from_dicom((CORPUS / "user-login.xml").read_bytes())[0]

    status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{login.event_id}")
    assert status == 200
    assert body["schema"] == "philedger.audit.SecurityEvent"
    assert body["ledger"]["kafka"]["topic"] == pipeline.access_topic
    stored = body["event"]
    assert stored["producer_id"] == atna.producer_id
    assert (stored["dicom_event_id"], stored["event_type_code"]) == ("110114", "110122")
    assert stored["actor"]["user_id"] == "rad004.kowalski"
    assert stored["patient"] is None
    assert stored["network_address"] == "10.20.4.17"

    # The user's history (the stack's admin token) lists every one of them.
    status, page = await get_json(
        http, f"{pipeline.api_url}/v1/users/rad004.kowalski/accesses", limit="100"
    )
    assert status == 200
    mine = {e["event_id"]: e for e in page["accesses"] if e["kind"] == "security_event"}
    ids = {str(e.event_id) for e in expected if e.actor.user_id == "rad004.kowalski"}
    assert ids <= set(mine)
    entry = mine[str(login.event_id)]
    assert entry["event"] == {"dicom_event_id": "110114", "name": "User Authentication"}
    assert entry["patient"] is None
    assert (entry["action"], entry["outcome"]) == ("E", "SUCCESS")
    assert entry["user"]["id"] == "rad004.kowalski"
    failed = events_from_dicom((CORPUS / "user-login-failure-4.xml").read_bytes())[0]
    assert mine[str(failed.event_id)]["outcome"] == "MINOR_FAILURE"

    # An emergency override names its patient: it is in that patient's history too.
    override = events_from_dicom((CORPUS / "emergency-override-start.xml").read_bytes())[0]
    status, page = await get_json(
        http, f"{pipeline.api_url}/v1/patients/MRN9900112/accesses", issuer="stmarys-boston"
    )
    assert status == 200
    found = {e["event_id"]: e for e in page["accesses"]}
    assert found[str(override.event_id)]["kind"] == "security_event"
    assert found[str(override.event_id)]["purpose_of_use"] == "BTG"
    assert found[str(override.event_id)]["event"]["name"] == "Security Alert"

    # The FHIR view of the stored login is a User Authentication AuditEvent.
    async with http.get(f"{pipeline.api_url}/fhir/AuditEvent/{login.event_id}") as resp:
        assert resp.status == 200
        resource = await resp.json(content_type=None)
    assert resource["type"]["code"] == "110114"
    assert [c["code"] for c in resource["subtype"]] == ["110122", "SEC"]
    assert resource["agent"][0]["who"]["identifier"]["value"] == "rad004.kowalski"
    assert "entity" not in resource


async def test_malformed_and_unmappable_messages_are_kept(atna: Atna) -> None:
    # A Query (110112) that names no patient fits no schema: it is still kept as no_patient.
    unmapped = syslog((CORPUS / "dcm4chee-query-no-patient.xml").read_bytes())
    xxe = syslog(
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<AuditMessage>&x;</AuditMessage>"
    )
    bad_header = b"<13>1 2026-13-45T99:00:00Z pacs01 ATNA - IHE+RFC-3881 - <AuditMessage/>"
    marker = uuid.uuid4().hex.encode()
    tagged = [m.replace(b"pacs01", b"pacs01-" + marker) for m in (unmapped, xxe, bad_header)]
    await send_tls(atna, tagged, chunk=333)
    if shutil.which("logger"):
        await asyncio.to_thread(
            subprocess.run,
            ["logger", "--rfc5424=notq", "--udp", "--server", "127.0.0.1",
             "--port", str(atna.udp_port), "--msgid", "NOT-ATNA", f"hello {marker.decode()}"],
            check=True,
        )  # fmt: skip
    want = {"no_patient", "xml_forbidden", "bad_timestamp"} | (
        {"unexpected_msgid"} if shutil.which("logger") else set()
    )
    deadline = time.monotonic() + 30
    while True:
        mine = [k for k in await asyncio.to_thread(atna.kept) if marker.decode() in str(k["raw"])]
        if {k["reason"] for k in mine} >= want or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    assert {str(k["reason"]) for k in mine} == want
    by_reason = {k["reason"]: k for k in mine}
    assert by_reason["no_patient"]["transport"] == "tls"
    assert str(by_reason["no_patient"]["peer"]).startswith("127.0.0.1:")
    assert "110112" in str(by_reason["no_patient"]["detail"])


def test_sigterm_stops_the_receiver_cleanly(atna: Atna) -> None:
    """Last in this module: the receiver exits 0 on SIGTERM and logs its final stats."""
    atna.proc.send_signal(signal.SIGTERM)
    assert atna.proc.wait(timeout=30) == 0
    log = atna.log.read_text()
    assert "ATNA receiver exited" in log
    final = json.loads(log.rsplit("ATNA receiver exited: ", 1)[1].splitlines()[0])
    assert final["events"] >= len(MAPPED) + 1 + len(SECURITY)
    assert final["resent"] >= 1
    assert final["lost_at_stop"] == 0
    assert os.stat(atna.kept_dir).st_mode & 0o777 == 0o700
