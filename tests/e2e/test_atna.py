"""The ATNA receiver end to end: `ledger atna serve` as a real process with the
real durable emitter, syslog over mutual TLS (a Python ssl client, and Debian's rsyslog
relaying what util-linux `logger` gives it, as a PACS host's syslog daemon would, each
with a client certificate), over UDP (util-linux `logger`, a real RFC 5424 client; turned
on explicitly) and over plain TCP (`logger` again, RFC 5424 octet-counted and RFC 3164
LF-framed; turned on explicitly, the source address listed under [tcp]), Kafka, `ledger
consume`, PostgreSQL and `ledger serve`: the events come back through the API under ids
derived from the sender and the messages, a re-sent message is an idempotent duplicate,
logins, logouts and emergency overrides are security events in the user's history, and
malformed or unmappable messages are in the kept store with their reason. Node
authentication: a sender without a certificate, or with one from another CA, is refused; a
certificate claiming an AuditSourceID it may not, or a message claiming to be the
ledger's own Audit Log Used, is kept and never reaches Kafka; two senders using the same
event id make two events and no conflict alert; without --udp-port nothing listens on UDP.
"""

from __future__ import annotations

import asyncio
import contextlib
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

from integrations.atna.dicom_audit import events_from_dicom
from integrations.atna.rfc5424 import format_syslog, frame_octet_counted, parse_syslog
from integrations.atna.senders import UDP_SENDER, sender_event_id, tcp_sender, tls_sender
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.events import SecurityEvent
from tests.atna_pki import Pki, make_pki
from tests.e2e.conftest import (
    LEDGER,
    Pipeline,
    free_port,
    get_json,
    install_or_skip,
    wait_for_events,
)
from tests.ports import free_udp_port
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


#: The client certificate CN the tests send as, and a second sender.
SENDER = "atna-e2e-sender"
OTHER = "atna-e2e-other"
#: What the first may claim: every AuditSourceID of the corpus; the second only one.
SOURCES = sorted(
    {
        line.split('AuditSourceID="', 1)[1].split('"', 1)[0]
        for p in CORPUS.glob("*.xml")
        for line in p.read_text().splitlines()
        if 'AuditSourceID="' in line
    }
)
POLICY = f"""
[tls]
"{SENDER}" = {json.dumps(SOURCES)}
"{OTHER}" = ["pacs01"]

[udp]
audit_source_ids = ["dcm4chee-arc"]

[tcp]
"127.0.0.1" = ["dcm4chee-arc", "pacs01"]
"""


def tls_id(event_id: object, cn: str = SENDER) -> str:
    """The ledger event id of the event a TLS sender's message gives ``event_id``."""
    return str(sender_event_id(tls_sender(cn), str(event_id)))


@dataclass
class Atna:
    tls_port: int
    udp_port: int
    pki: Pki
    kept_dir: Path
    log: Path
    producer_id: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    tcp_port: int = 0

    @property
    def cert(self) -> Path:
        return self.pki.server_cert

    def tls_context(self, cn: str | None = SENDER, *, ca: str = "") -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.pki.server_cert))
        if cn is not None:
            ctx.load_cert_chain(*(str(f) for f in self.pki.client(cn, ca=ca)))
        return ctx

    def kept(self) -> list[dict[str, object]]:
        out = subprocess.run(
            [LEDGER, "atna", "kept", "--kept-dir", str(self.kept_dir),
             "--raw", "--limit", "1000", "--reason", "e2e: what the receiver kept"],
            env=self.env, cwd=ROOT, check=True, capture_output=True, text=True,
        )  # fmt: skip
        return [json.loads(line) for line in out.stdout.splitlines()]


@pytest.fixture(scope="module")
def atna(pipeline: Pipeline, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Atna]:
    where = tmp_path_factory.mktemp("atna")
    pki = make_pki(where / "pki")
    (where / "senders.toml").write_text(POLICY)
    tls_port, udp_port, tcp_port = free_port(), free_udp_port(), free_port()
    producer_id = f"atna-e2e-{uuid.uuid4().hex[:8]}"
    log = where / "atna.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [LEDGER, "atna", "serve",
             "--tls-port", str(tls_port), "--udp-port", str(udp_port),
             "--tcp-port", str(tcp_port),
             "--cert", str(pki.server_cert), "--key", str(pki.server_key),
             "--client-ca", str(pki.client_ca), "--senders", str(where / "senders.toml"),
             "--kept-dir", str(where / "kept"),
             "--producer-id", producer_id, "--stats-every", "5"],
            env={**pipeline.env,
                 "LEDGER_PRODUCER_KEY_FILE": pipeline.stack.producer_key(producer_id)},
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    running = Atna(
        tls_port, udp_port, pki, where / "kept", log, producer_id, proc, pipeline.env, tcp_port
    )
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


async def send_tls(
    atna: Atna, messages: list[bytes], *, chunk: int = 1000, cn: str = SENDER
) -> None:
    """A syslog TLS client (RFC 5425): octet-counted frames, arbitrarily split writes."""
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", atna.tls_port, ssl=atna.tls_context(cn), server_hostname="localhost"
    )
    stream = b"".join(frame_octet_counted(m) for m in messages)
    for i in range(0, len(stream), chunk):
        writer.write(stream[i : i + chunk])
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def syslog(payload: bytes, *, app: str = "dcm4chee-arc", host: str = "pacs01.example") -> bytes:
    return format_syslog(payload, hostname=host, app_name=app, procid="8804")


async def test_tls_messages_reach_the_ledger_under_deterministic_ids(
    pipeline: Pipeline, atna: Atna, http: aiohttp.ClientSession
) -> None:
    payloads = [(CORPUS / name).read_bytes() for name in MAPPED]
    expected = [e for p in payloads for e in events_from_dicom(p)]
    assert len(expected) == len(MAPPED) + 1  # multi-study.xml is two events
    await send_tls(atna, [syslog(p) for p in payloads])
    ids = [tls_id(e.event_id) for e in expected]
    await wait_for_events(http, pipeline, ids)
    for event, event_id in zip(expected, ids, strict=True):
        status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{event_id}")
        assert status == 200
        stored = body["event"]
        assert stored["event_id"] == event_id
        assert stored["producer_id"] == atna.producer_id
        assert stored["patient"]["id"] == event.patient.id  # type: ignore[union-attr]
        assert stored["actor"]["user_id"] == event.actor.user_id
        assert body["ledger"]["kafka"]["topic"] == pipeline.access_topic
        if hasattr(event, "dicom_event_id"):
            assert stored["dicom_event_id"] == event.dicom_event_id
            assert stored["details"]["atna_sender"] == f"tls:{SENDER}"
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
    event_id = str(sender_event_id(UDP_SENDER, event.event_id))
    await wait_for_events(http, pipeline, [event_id])
    status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{event_id}")
    assert status == 200
    assert body["event"]["patient"] == {"id": "GE1118", "issuer": "DCM4CHEE.ISSUER", "state": None}
    assert body["event"]["details"]["audit_source_id"] == "dcm4chee-arc"  # allowed for [udp]
    assert body["event"]["details"]["atna_sender"] == "udp"


@pytest.mark.skipif(shutil.which("logger") is None, reason="util-linux logger is not installed")
async def test_plain_tcp_from_util_linux_logger_in_both_framings_and_headers(
    pipeline: Pipeline, atna: Atna, http: aiohttp.ClientSession
) -> None:
    """Plain TCP (--tcp-port, the source address listed under [tcp]): logger's RFC 5424
    with octet counting and dcm4che's MSGID, and its RFC 3164 (BSD) header with LF
    framing; the sender is the source address."""
    names = ["dcm4chee-export.xml", "dcm4chee-instances-transferred.xml"]
    one_lines = [b" ".join((CORPUS / n).read_bytes().split()) for n in names]
    commands = [
        ["logger", "--rfc5424=notq", "--tcp", "--octet-count", "--msgid", "DICOM+RFC3881"],
        ["logger", "--rfc3164", "--tcp"],
    ]
    for command, line in zip(commands, one_lines, strict=True):
        await asyncio.to_thread(
            subprocess.run,
            [*command, "--server", "127.0.0.1", "--port", str(atna.tcp_port),
             "--size", "65000", "--tag", "dcm4chee-arc", line.decode()],
            check=True,
        )  # fmt: skip
    expected = [e for line in one_lines for e in events_from_dicom(line)]
    ids = [str(sender_event_id(tcp_sender("127.0.0.1"), e.event_id)) for e in expected]
    await wait_for_events(http, pipeline, ids)
    for event, event_id in zip(expected, ids, strict=True):
        status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{event_id}")
        assert status == 200
        assert body["event"]["producer_id"] == atna.producer_id
        assert body["event"]["actor"]["user_id"] == event.actor.user_id
        assert body["event"]["details"]["atna_sender"] == "tcp:127.0.0.1"


RSYSLOGD = Path("/usr/sbin/rsyslogd")


def ensure_rsyslog() -> None:
    install_or_skip(
        "rsyslog.sh",
        "Debian's rsyslog and rsyslog-gnutls",
        lambda: RSYSLOGD.exists() and bool(list(Path("/usr/lib").glob("*/rsyslog/lmnsd_gtls.so"))),
    )


RSYSLOG_CONF = """\
global(workDirectory="{work}" maxMessageSize="64k" defaultNetstreamDriverCAFile="{ca}"
       defaultNetstreamDriverCertFile="{cert}" defaultNetstreamDriverKeyFile="{key}")
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
    cert, key = atna.pki.client(SENDER)  # rsyslog's own client certificate (mutual TLS)
    conf.write_text(RSYSLOG_CONF.format(
        work=tmp_path / "work", ca=atna.cert, cert=cert, key=key, inbound=inbound,
        tls_port=atna.tls_port,
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
    await wait_for_events(http, pipeline, [tls_id(e.event_id) for e in expected])
    for event in expected:
        status, body = await get_json(
            http, f"{pipeline.api_url}/v1/events/{tls_id(event.event_id)}"
        )
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
    await wait_for_events(http, pipeline, [tls_id(e.event_id) for e in expected])
    login = events_from_dicom((CORPUS / "user-login.xml").read_bytes())[0]
    login_id = tls_id(login.event_id)

    status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{login_id}")
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
    ids = {tls_id(e.event_id) for e in expected if e.actor.user_id == "rad004.kowalski"}
    assert ids <= set(mine)
    entry = mine[login_id]
    assert entry["event"] == {"dicom_event_id": "110114", "name": "User Authentication"}
    assert entry["patient"] is None
    assert (entry["action"], entry["outcome"]) == ("E", "SUCCESS")
    assert entry["user"]["id"] == "rad004.kowalski"
    failed = events_from_dicom((CORPUS / "user-login-failure-4.xml").read_bytes())[0]
    assert mine[tls_id(failed.event_id)]["outcome"] == "MINOR_FAILURE"

    # An emergency override names its patient: it is in that patient's history too.
    override = events_from_dicom((CORPUS / "emergency-override-start.xml").read_bytes())[0]
    status, page = await get_json(
        http, f"{pipeline.api_url}/v1/patients/MRN9900112/accesses", issuer="stmarys-boston"
    )
    assert status == 200
    found = {e["event_id"]: e for e in page["accesses"]}
    override_id = tls_id(override.event_id)
    assert found[override_id]["kind"] == "security_event"
    assert found[override_id]["purpose_of_use"] == "BTG"
    assert found[override_id]["event"]["name"] == "Security Alert"

    # The FHIR view of the stored login is a User Authentication AuditEvent.
    async with http.get(f"{pipeline.api_url}/fhir/AuditEvent/{login_id}") as resp:
        assert resp.status == 200
        resource = await resp.json(content_type=None)
    assert resource["type"]["code"] == "110114"
    assert [c["code"] for c in resource["subtype"]] == ["110122", "SEC"]
    assert resource["agent"][0]["who"]["identifier"]["value"] == "rad004.kowalski"
    assert "entity" not in resource


async def test_malformed_and_unmappable_messages_are_kept(atna: Atna) -> None:
    # Instances Accessed (110103) naming no patient fits no schema: kept as no_patient.
    unmapped = syslog(
        (CORPUS / "instances-accessed.xml")
        .read_bytes()
        .replace(b'ParticipantObjectTypeCodeRole="1"', b'ParticipantObjectTypeCodeRole="6"')
    )
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
    assert "110103" in str(by_reason["no_patient"]["detail"])


async def test_queries_naming_no_patient_or_several_reach_the_histories(
    pipeline: Pipeline, atna: Atna, http: aiohttp.ClientSession
) -> None:
    """dcm4chee-arc's QIDO search by date (no patient) is a patient-less Query in its
    user's history, with its criteria, by API and FHIR ``agent``; a Query naming three
    patients discloses them all, in each one's history marked "disclosed"."""
    marker = uuid.uuid4().hex
    by_date = unique("dcm4chee-query-no-patient.xml", marker)
    several = unique("query.xml", marker)
    patients = [f"MRN-ATNA-{x}-{marker[:8]}" for x in "ABC"]
    several = several.replace(
        b'ParticipantObjectID="MRN5550123"', f'ParticipantObjectID="{patients[0]}"'.encode()
    ).replace(
        b"</AuditMessage>",
        b"".join(
            b'<ParticipantObjectIdentification ParticipantObjectID="%s" '
            b'ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1">'
            b'<ParticipantObjectIDTypeCode csd-code="2" codeSystemName="RFC-3881"/>'
            b"</ParticipantObjectIdentification>" % p.encode()
            for p in patients[1:]
        )
        + b"</AuditMessage>",
    )
    (empty,) = events_from_dicom(by_date)
    (three,) = events_from_dicom(several)
    await send_tls(atna, [syslog(by_date), syslog(several)])
    ids = [tls_id(empty.event_id), tls_id(three.event_id)]
    await wait_for_events(http, pipeline, ids)

    status, body = await get_json(http, f"{pipeline.api_url}/v1/events/{ids[0]}")
    assert status == 200
    assert body["event"]["patient"] is None
    assert body["event"]["disclosed"] == []
    assert body["event"]["details"]["query"] == "StudyDate=20260311&ModalitiesInStudy=CT"
    status, users = await get_json(
        http, f"{pipeline.api_url}/v1/users/192.0.2.50/accesses", limit="1000"
    )
    assert status == 200
    assert {e["event_id"]: e["attribution"] for e in users["accesses"]}.get(ids[0]) == "named"
    async with http.get(
        f"{pipeline.api_url}/fhir/AuditEvent", params={"agent": "192.0.2.50", "_count": "1000"}
    ) as resp:
        assert resp.status == 200
        bundle = await resp.json(content_type=None)
    (found,) = [e["resource"] for e in bundle["entry"] if e["resource"]["id"] == ids[0]]
    assert found["type"]["code"] == "110112"
    roles = [e.get("role", {}).get("code") for e in found.get("entity", [])]
    assert "1" not in roles  # no Patient entity: it named nobody

    status, stored = await get_json(http, f"{pipeline.api_url}/v1/events/{ids[1]}")
    assert stored["event"]["patient"] is None
    assert sorted(p["id"] for p in stored["event"]["disclosed"]) == sorted(patients)
    for patient in patients:
        status, page = await get_json(
            http, f"{pipeline.api_url}/v1/patients/{patient}/accesses", limit="1000"
        )
        assert status == 200
        attribution = {e["event_id"]: e["attribution"] for e in page["accesses"]}
        assert attribution.get(ids[1]) == "disclosed", patient


def unique(name: str, marker: str) -> bytes:
    """A corpus message made unique (its event time), so its event ids are this test's."""
    payload = (CORPUS / name).read_bytes()
    start = payload.index(b'EventDateTime="') + len(b'EventDateTime="')
    end = payload.index(b'"', start)
    n = int(marker[:12], 16)
    when = b"2026-02-%02dT%02d:%02d:%02d.%06dZ" % (
        1 + n % 28, n // 28 % 24, n // 672 % 60, n // 40320 % 60, n // 2419200 % 1_000_000,
    )  # fmt: skip
    return payload[:start] + when + payload[end:]


async def kafka_event_ids(pipeline: Pipeline) -> set[str]:
    """Every event id in the access topic, read from its beginning to its end."""
    from aiokafka import AIOKafkaConsumer

    codec = Codec()
    consumer = AIOKafkaConsumer(
        pipeline.access_topic,
        **pipeline.stack.kafka_client(KafkaRole.CONSUMER),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        async with asyncio.timeout(30):
            while not consumer.assignment():  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.05)
        parts = sorted(consumer.assignment())
        end = await consumer.end_offsets(parts)
        ids: set[str] = set()
        pending = {tp for tp in parts if end[tp] > 0}
        while pending:
            batches = await consumer.getmany(*pending, timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    _, fields = codec.decode_record(record.value or b"")
                    ids.add(str(fields["event_id"]))
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
        return ids
    finally:
        await consumer.stop()


async def wait_kept(atna: Atna, marker: str, count: int) -> list[dict[str, object]]:
    deadline = time.monotonic() + 30
    while True:
        mine = [k for k in await asyncio.to_thread(atna.kept) if marker in str(k["raw"])]
        if len(mine) >= count or time.monotonic() > deadline:
            return mine
        await asyncio.sleep(0.2)


async def test_a_sender_without_a_valid_certificate_is_refused(atna: Atna) -> None:
    """IHE ATNA node authentication: no client certificate, or one another CA signed
    (with the very CN the policy lists), and nothing the client sends is read."""
    marker = uuid.uuid4().hex
    message = syslog(unique("instances-accessed.xml", marker), host=f"m{marker}")
    before = atna.log.read_text().count("refused TLS client")

    async def attempt(ctx: ssl.SSLContext) -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", atna.tls_port, ssl=ctx, server_hostname="localhost"
        )
        writer.write(frame_octet_counted(message))
        await writer.drain()
        if not await reader.read():  # TLS 1.3: the verdict comes with the first read
            raise ConnectionError("closed by the receiver")

    for ctx in (atna.tls_context(None), atna.tls_context(SENDER, ca="rogue")):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            await attempt(ctx)
    deadline = time.monotonic() + 10
    while atna.log.read_text().count("refused TLS client") < before + 2:
        assert time.monotonic() < deadline, atna.log.read_text()[-2000:]
        await asyncio.sleep(0.1)
    # A barrier, not a wait for nothing: a message the receiver keeps (OTHER may not
    # claim dcm4chee-arc), sent afterwards on a good connection; once it is kept, the
    # refused senders' message would have been seen too, had anything of it been read.
    barrier = uuid.uuid4().hex
    kept_one = syslog(unique("dcm4chee-export.xml", barrier), host=f"m{barrier}")
    await send_tls(atna, [kept_one], cn=OTHER)
    assert len(await wait_kept(atna, barrier, 1)) == 1
    assert [k for k in atna.kept() if marker in str(k["raw"])] == []  # never read


async def test_a_source_it_may_not_claim_or_the_ledger_itself_is_kept_not_sent(
    pipeline: Pipeline, atna: Atna, http: aiohttp.ClientSession
) -> None:
    marker = uuid.uuid4().hex
    # OTHER may claim only "pacs01"; this message says dcm4chee-arc.
    not_its_own = unique("dcm4chee-export.xml", marker)
    # SENDER may claim arr-01, but this Audit Log Used names the ledger as its site: a
    # forged read of the ledger, as the ledger's own self-audit would record it.
    ledger_name = pipeline.env["LEDGER_NAME"]
    forged = unique("audit-log-used.xml", marker).replace(
        b'AuditEnterpriseSiteID="stmarys-boston"',
        b'AuditEnterpriseSiteID="' + ledger_name.encode() + b'"',
    )
    assert b'AuditSourceID="arr-01"' in forged
    assert ledger_name.encode() in forged
    allowed = unique("instances-accessed.xml", marker)  # pacs01: OTHER may send it
    host = f"m{marker}"  # in the syslog header: finds the kept messages, no event id change
    await send_tls(atna, [syslog(not_its_own, host=host), syslog(allowed, host=host)], cn=OTHER)
    await send_tls(atna, [syslog(forged, host=host)])
    kept = await wait_kept(atna, marker, 2)
    assert sorted((str(k["reason"]), str(k["sender"])) for k in kept) == [
        ("claims_ledger", f"tls:{SENDER}"),
        ("source_not_allowed", f"tls:{OTHER}"),
    ]
    (ok,) = events_from_dicom(allowed)
    await wait_for_events(http, pipeline, [tls_id(ok.event_id, OTHER)])
    in_kafka = await kafka_event_ids(pipeline)
    assert tls_id(ok.event_id, OTHER) in in_kafka
    refused = [
        *(tls_id(e.event_id, OTHER) for e in events_from_dicom(not_its_own)),
        *(tls_id(e.event_id, SENDER) for e in events_from_dicom(forged)),
    ]
    assert not set(refused) & in_kafka
    for event_id in refused:
        status, _ = await get_json(http, f"{pipeline.api_url}/v1/events/{event_id}")
        assert status == 404


async def test_two_senders_with_the_same_event_id_make_two_events_and_no_alert(
    pipeline: Pipeline, atna: Atna, http: aiohttp.ClientSession
) -> None:
    """The same message, so the same sender-chosen event id, from two certificates: two
    distinct ledger events, neither a conflict with the other; a re-send by either is
    still a duplicate."""
    message = syslog(unique("instances-accessed.xml", uuid.uuid4().hex))
    (event,) = events_from_dicom(parse_syslog(message).msg)
    await send_tls(atna, [message], cn=SENDER)
    await send_tls(atna, [message], cn=OTHER)
    await send_tls(atna, [message], cn=OTHER)  # a re-send
    ids = [tls_id(event.event_id, SENDER), tls_id(event.event_id, OTHER)]
    assert ids[0] != ids[1]
    await wait_for_events(http, pipeline, ids)
    bodies = [(await get_json(http, f"{pipeline.api_url}/v1/events/{i}"))[1] for i in ids]
    assert [b["event"]["details"]["atna_sender"] for b in bodies] == [
        f"tls:{SENDER}",
        f"tls:{OTHER}",
    ]
    status, alerts = await get_json(http, f"{pipeline.api_url}/v1/alerts")
    assert status == 200
    assert not [a for a in alerts["alerts"] if a.get("event_id") in ids]


def _udp_inodes() -> set[str]:
    inodes = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as f:
            inodes |= {line.split()[9] for line in list(f)[1:]}
    return inodes


def _socket_inodes(pid: int) -> set[str]:
    found = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                found.add(target[8:-1])
    return found


def test_udp_is_off_and_certificates_required_by_default(
    pipeline: Pipeline, atna: Atna, tmp_path: Path
) -> None:
    pki, policy = atna.pki, tmp_path / "senders.toml"
    policy.write_text(POLICY)
    base = [LEDGER, "atna", "serve", "--tls-port", str(free_port()),
            "--cert", str(pki.server_cert), "--key", str(pki.server_key),
            "--kept-dir", str(tmp_path / "kept"), "--parse-workers", "0"]  # fmt: skip
    for missing, extra in (
        ("--client-ca", ["--senders", str(policy)]),
        ("--senders", ["--client-ca", str(pki.client_ca)]),
    ):
        refused = subprocess.run(
            [*base, *extra], env=pipeline.env, cwd=ROOT, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
        assert refused.returncode == 1
        assert f"{missing} is required" in refused.stderr

    producer_id = f"atna-e2e-noudp-{uuid.uuid4().hex[:6]}"
    # Refusal: a key issued to another producer (here the simulator's) is named, no trace.
    foreign = subprocess.run(
        [*base, "--client-ca", str(pki.client_ca), "--senders", str(policy),
         "--producer-id", producer_id],
        env=pipeline.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert foreign.returncode == 1
    assert f"is producer 'simulator''s, not '{producer_id}''s" in foreign.stderr
    assert "Traceback" not in foreign.stderr

    log = tmp_path / "atna.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*base, "--client-ca", str(pki.client_ca), "--senders", str(policy),
             "--producer-id", producer_id],
            env={**pipeline.env,
                 "LEDGER_PRODUCER_KEY_FILE": pipeline.stack.producer_key(producer_id)},
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "ATNA receiver ready" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert "UDP off" in log.read_text()
        sockets = _socket_inodes(proc.pid)
        assert sockets  # it does listen (TLS) ...
        assert not sockets & _udp_inodes()  # ... but on no UDP socket
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


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
