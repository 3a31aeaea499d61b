"""The ATNA receiver in-process, with a stand-in emitter: framing over real mutual-TLS
sockets, UDP, the kept store, backpressure, limits, idempotent re-sends, node
authentication and the sender policy. (The real emitter,
Kafka and the ledger are exercised in tests/e2e/test_atna.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from integrations.atna.dicom_audit import event_id_for
from integrations.atna.kept import read_kept
from integrations.atna.receiver import AtnaReceiver, AtnaReceiverConfig
from integrations.atna.rfc5424 import format_syslog, frame_octet_counted, parse_syslog
from integrations.atna.senders import SenderPolicy, sender_event_id
from producers.codec import Codec, PreparedEvent
from producers.errors import SpoolFullError
from producers.events import AuditEvent
from tests.atna_pki import Pki, make_pki

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "dicom-audit"


@dataclass
class _Config:
    producer_id: str


class FakeEmitter:
    """Stamps like ``Emitter.emit_prepared``, and decodes (so validates) what it would send;
    ``gate`` makes it slow, ``refuse`` makes it push back that many times."""

    def __init__(self) -> None:
        self.config = _Config(producer_id="atna-test")
        self.codec = Codec()
        self.events: list[AuditEvent] = []
        self.next_sequence = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.refuse = 0

    async def emit_prepared(self, prepared: PreparedEvent) -> int:
        await self.gate.wait()
        if self.refuse:
            self.refuse -= 1
            raise SpoolFullError("spool full (test)")
        producer_id, seq = prepared.producer_id, prepared.producer_seq
        if producer_id is None or seq is None:
            producer_id, seq = self.config.producer_id, self.next_sequence
            self.next_sequence += 1
        self.events.append(self.codec.decode(prepared.encode_with(producer_id, seq)))
        return seq


#: The sender every test connects as, and what it may claim (the corpus messages here say
#: AuditSourceID "pacs01"); UDP may claim the same, so the UDP tests map too.
SENDER = "pacs01.example"
POLICY = SenderPolicy(
    tls={SENDER: frozenset({"pacs01"}), "pacs02.example": frozenset({"pacs01"})},
    udp=frozenset({"pacs01"}),
    ledger_names=frozenset({"philedger.localhost"}),
)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("atna-tls"))


def _client_context(pki: Pki, *, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.server_cert))
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    return ctx


def _message(name: str = "instances-accessed.xml", **changes: bytes) -> bytes:
    payload = (CORPUS / name).read_bytes()
    for old, new in changes.items():
        payload = payload.replace(old.encode(), new)
    return format_syslog(payload, hostname="pacs01", app_name="ATNA")


_PATIENT_ROLE = 'ParticipantObjectTypeCode="1" ParticipantObjectTypeCodeRole="1"'


def _variant(i: int) -> bytes:
    """A valid message with its own event id (a different event time)."""
    return _message(**{"14:07:31.250": b"14:07:%02d.%03d" % (i % 60, i // 60)})


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, tls_files: Pki, emitter: FakeEmitter, **config: Any
) -> AsyncIterator[AtnaReceiver]:
    settings: dict[str, Any] = {
        "kept_dir": str(tmp_path / "kept"),
        "tls_port": 0,
        "udp_port": 0,
        "cert_file": str(tls_files.server_cert),
        "key_file": str(tls_files.server_key),
        "client_ca_file": str(tls_files.client_ca),
        "policy": POLICY,
        "stop_timeout_seconds": 2.0,
    }
    cfg = AtnaReceiverConfig(**(settings | config))
    existed = (tmp_path / "kept").exists()
    receiver = AtnaReceiver(cfg, emitter)  # type: ignore[arg-type]
    assert (tmp_path / "kept").exists() == existed  # no I/O before start()
    async with receiver:
        yield receiver


async def _open(
    receiver: AtnaReceiver, pki: Pki, cn: str = SENDER, *, send_buffer: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection as ``cn``; ``send_buffer`` caps the kernel's send buffer (set
    before connecting, so autotuning never grows it)."""
    ctx = _client_context(pki, client=pki.client(cn))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if send_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send_buffer)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", receiver.tls_port))
    return await asyncio.open_connection(sock=sock, ssl=ctx, server_hostname="localhost")


async def _until(predicate: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - polling counters, no event to wait on
            await asyncio.sleep(0.01)


async def test_tls_messages_become_events_and_bad_ones_are_kept(
    tmp_path: Path, tls_files: Pki
) -> None:
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter) as receiver:
        good = [_variant(i) for i in range(3)]
        # Instances Accessed whose patient object is not one: fits no schema.
        no_patient = _message(
            **{_PATIENT_ROLE: _PATIENT_ROLE.replace('Role="1"', 'Role="6"').encode()}
        )
        garbage = b"<13>1 not a timestamp - - - - -"
        stream = b"".join(
            frame_octet_counted(m) for m in [good[0], no_patient, good[1], garbage, good[2]]
        )
        _, writer = await _open(receiver, tls_files)
        for i in range(0, len(stream), 97):  # arbitrary splits across TLS records
            writer.write(stream[i : i + 97])
            await writer.drain()
        await _until(lambda: receiver.stats().events == 3 and receiver.stats().kept_total == 2)
        writer.close()
        stats = receiver.stats()
        assert stats.received_tls == 5
        assert stats.mapped == 3
        assert dict(stats.kept) == {"no_patient": 1, "bad_timestamp": 1}
    ids = [e.event_id for e in emitter.events]
    payloads = [(CORPUS / "instances-accessed.xml").read_bytes()]
    assert len(set(ids)) == 3
    assert ids[0] == sender_event_id(f"tls:{SENDER}", event_id_for(_payload_of(good[0])))
    assert payloads  # the corpus file itself is untouched
    kept = list(read_kept(tmp_path / "kept"))
    assert [(k.reason, k.transport, k.raw) for k in kept] == [
        ("no_patient", "tls", no_patient),
        ("bad_timestamp", "tls", garbage),
    ]
    assert all(k.peer and k.peer.startswith("127.0.0.1:") for k in kept)


def _payload_of(message: bytes) -> bytes:
    from integrations.atna.rfc5424 import parse_syslog

    return parse_syslog(message).msg


async def test_udp_datagrams_and_oversize(tmp_path: Path, tls_files: Pki) -> None:
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter, max_message_bytes=8192) as receiver:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(_variant(1), ("127.0.0.1", receiver.udp_port))
            sock.sendto(b"x" * 9000, ("127.0.0.1", receiver.udp_port))
            # Another MSGID and a MSG that is not an AuditMessage: not an audit record.
            sock.sendto(format_syslog(b"<note>backup done</note>", msgid="OTHER"),
                        ("127.0.0.1", receiver.udp_port))  # fmt: skip
            # Another MSGID with an AuditMessage: mapped (dcm4che sends DICOM+RFC3881).
            sock.sendto(_message().replace(b"IHE+RFC-3881", b"DICOM+RFC3881"),
                        ("127.0.0.1", receiver.udp_port))  # fmt: skip
        await _until(lambda: receiver.stats().events == 2 and receiver.stats().kept_total == 2)
        assert receiver.stats().received_udp == 4
    kept = list(read_kept(tmp_path / "kept"))
    assert [k.reason for k in kept] == ["oversize", "unexpected_msgid"]
    assert kept[0].raw == b"x" * 8192
    assert kept[0].transport == "udp"


async def test_oversize_tls_frame_is_kept_and_the_connection_closed(
    tmp_path: Path, tls_files: Pki
) -> None:
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter, max_message_bytes=4096) as receiver:
        reader, writer = await _open(receiver, tls_files)
        writer.write(frame_octet_counted(_variant(2)) + b"5000 " + b"y" * 100)
        await writer.drain()
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # the server closed the connection
        await _until(lambda: receiver.stats().kept_total == 1 and receiver.stats().events == 1)
        writer.close()
    (kept,) = read_kept(tmp_path / "kept")
    assert kept.reason == "oversize"
    assert kept.raw.startswith(b"5000 yyyy")


async def test_a_connection_ending_inside_a_frame_is_kept_as_truncated(
    tmp_path: Path, tls_files: Pki
) -> None:
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter) as receiver:
        _, writer = await _open(receiver, tls_files)
        writer.write(b"300 <13>1 - - - - - - partial")
        await writer.drain()
        writer.close()
        await _until(lambda: receiver.stats().kept_total == 1)
    (kept,) = read_kept(tmp_path / "kept")
    assert kept.reason == "truncated"
    assert kept.raw == b"300 <13>1 - - - - - - partial"


async def test_tls_backpressure_bounds_memory(tmp_path: Path, tls_files: Pki) -> None:
    emitter = FakeEmitter()
    emitter.gate.clear()  # Kafka (and the spool) cannot take anything
    async with running(tmp_path, tls_files, emitter, queue_max=8) as receiver:
        # A small send buffer: the sender is pushed back after a few hundred kilobytes
        # (what the receiver's socket holds unread), not the megabytes autotuning allows.
        _, writer = await _open(receiver, tls_files, send_buffer=4096)
        frames = [frame_octet_counted(_variant(i)) for i in range(100)]
        blocked = False
        sent = 0
        # Up to 100 MB: far more than the socket buffers of both ends can absorb.
        while sent < 40_000:
            writer.write(frames[sent % len(frames)])
            try:
                async with asyncio.timeout(1.0):
                    await writer.drain()
                    await asyncio.sleep(0)  # let the receiver run
            except TimeoutError:
                blocked = True
                break
            sent += 1
        assert blocked, "the sender was never pushed back"
        assert receiver.stats().queue_depth <= 8
        assert receiver.stats().received_tls <= 8 + 2
        emitter.gate.set()
        await _until(lambda: receiver.stats().events >= sent, timeout=60)
        writer.close()
    assert receiver.stats().kept_total == 0


async def test_udp_overload_is_counted_not_hidden(tmp_path: Path, tls_files: Pki) -> None:
    emitter = FakeEmitter()
    emitter.gate.clear()
    async with running(tmp_path, tls_files, emitter, queue_max=4) as receiver:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(40):
                sock.sendto(_variant(i), ("127.0.0.1", receiver.udp_port))
        await _until(lambda: receiver.stats().received_udp == 40)
        stats = receiver.stats()
        assert stats.udp_dropped_overload > 0
        emitter.gate.set()
        await _until(lambda: receiver.stats().events == 40 - stats.udp_dropped_overload)


async def test_a_resent_message_is_emitted_byte_identical(tmp_path: Path, tls_files: Pki) -> None:
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter) as receiver:
        message = _variant(7)
        _, writer = await _open(receiver, tls_files)
        writer.write(frame_octet_counted(message) + frame_octet_counted(_variant(8)))
        writer.write(frame_octet_counted(message))
        await writer.drain()
        await _until(lambda: receiver.stats().events == 3)
        writer.close()
        assert receiver.stats().resent == 1
    first, other, again = emitter.events
    assert again == first
    assert again.producer_seq == 0
    assert other.producer_seq == 1


async def test_pushback_is_retried(tmp_path: Path, tls_files: Pki) -> None:
    emitter = FakeEmitter()
    emitter.refuse = 2
    async with running(tmp_path, tls_files, emitter) as receiver:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(_variant(3), ("127.0.0.1", receiver.udp_port))
        await _until(lambda: receiver.stats().events == 1)
        assert receiver.stats().emit_retries == 2


async def test_connection_limit_and_idle_timeout(tmp_path: Path, tls_files: Pki) -> None:
    emitter = FakeEmitter()
    async with running(
        tmp_path, tls_files, emitter, max_connections=1, idle_timeout_seconds=0.5
    ) as receiver:
        first_reader, first = await _open(receiver, tls_files)
        await _until(lambda: receiver.stats().connections == 1)
        # Refused before the TLS handshake: the client sees the connection closed.
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            second_reader, second = await _open(receiver, tls_files)
            async with asyncio.timeout(5):
                assert await second_reader.read() == b""
            second.close()
        assert receiver.stats().connections_refused == 1
        async with asyncio.timeout(5):
            assert await first_reader.read() == b""  # idle for 0.5 s
        await _until(lambda: receiver.stats().connections == 0)
        first.close()


async def _refused(receiver: AtnaReceiver, ctx: ssl.SSLContext) -> None:
    """Connect with ``ctx`` and send a message; the receiver must refuse the client."""

    async def attempt() -> None:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", receiver.tls_port, ssl=ctx, server_hostname="localhost"
        )
        # TLS 1.3: the server's verdict on the client arrives with the first read.
        writer.write(frame_octet_counted(_variant(5)))
        await writer.drain()
        if not await reader.read():
            raise ConnectionError("closed")

    before = receiver.stats().handshakes_refused
    with pytest.raises((ssl.SSLError, ConnectionError)):
        await attempt()
    await _until(lambda: receiver.stats().handshakes_refused == before + 1)


async def test_a_tls_sender_without_a_client_certificate_is_refused(
    tmp_path: Path, tls_files: Pki
) -> None:
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter) as receiver:
        await _refused(receiver, _client_context(tls_files))
        assert receiver.stats().received_tls == 0
    assert emitter.events == []
    assert list(read_kept(tmp_path / "kept")) == []


async def test_a_certificate_from_another_ca_is_refused(tmp_path: Path, tls_files: Pki) -> None:
    emitter = FakeEmitter()
    rogue = tls_files.client(SENDER, ca="rogue")  # the right CN, the wrong CA
    async with running(tmp_path, tls_files, emitter) as receiver:
        await _refused(receiver, _client_context(tls_files, client=rogue))
        # The server's own certificate is not a client credential either.
        own = (tls_files.server_cert, tls_files.server_key)
        await _refused(receiver, _client_context(tls_files, client=own))
        assert receiver.stats().received_tls == 0
    assert emitter.events == []


async def test_a_valid_certificate_may_claim_only_its_audit_sources(
    tmp_path: Path, tls_files: Pki
) -> None:
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter) as receiver:
        _, writer = await _open(receiver, tls_files)
        other = _message(**{'AuditSourceID="pacs01"': b'AuditSourceID="pacs-elsewhere"'})
        writer.write(frame_octet_counted(_variant(6)) + frame_octet_counted(other))
        await writer.drain()
        await _until(lambda: receiver.stats().events == 1 and receiver.stats().kept_total == 1)
        writer.close()
        # A certificate the policy does not list may claim nothing.
        _, writer = await _open(receiver, tls_files, "unlisted.example")
        writer.write(frame_octet_counted(_variant(7)))
        await writer.drain()
        await _until(lambda: receiver.stats().kept_total == 2)
        writer.close()
        assert receiver.stats().refused_senders == 2
    assert len(emitter.events) == 1
    assert emitter.events[0].details["atna_sender"] == f"tls:{SENDER}"  # type: ignore[union-attr]
    kept = list(read_kept(tmp_path / "kept"))
    assert [(k.reason, k.sender) for k in kept] == [
        ("source_not_allowed", f"tls:{SENDER}"),
        ("source_not_allowed", "tls:unlisted.example"),
    ]
    assert "'pacs-elsewhere'" in kept[0].detail
    assert kept[0].raw == other


LEDGER_SELF = [
    # The ledger's own Audit Log Used, as to_dicom_xml writes it: AuditSourceID = the API's
    # producer id, site = the ledger's name.
    {'AuditSourceID="arr-01"': b'AuditSourceID="ledger-api-host-18080"'},
    {'AuditEnterpriseSiteID="stmarys-boston"': b'AuditEnterpriseSiteID="philedger.localhost"'},
]


@pytest.mark.parametrize("changes", LEDGER_SELF)
async def test_an_audit_log_used_that_claims_the_ledger_is_refused(
    tmp_path: Path, tls_files: Pki, changes: dict[str, bytes]
) -> None:
    """Even for a sender allowed to claim the AuditSourceID (``arr-01`` here): a message
    naming the ledger as its source or site is kept, never emitted."""
    policy = replace(POLICY, tls={SENDER: frozenset({"arr-01"})})
    emitter = FakeEmitter()
    assert b'AuditSourceID="arr-01"' in (CORPUS / "audit-log-used.xml").read_bytes()
    genuine = _message("audit-log-used.xml")  # a PACS's own ARR was read: accepted
    forged = _message("audit-log-used.xml", **changes)
    async with running(tmp_path, tls_files, emitter, policy=policy) as receiver:
        _, writer = await _open(receiver, tls_files)
        writer.write(frame_octet_counted(genuine) + frame_octet_counted(forged))
        await writer.drain()
        await _until(lambda: receiver.stats().events == 1 and receiver.stats().kept_total == 1)
        writer.close()
        assert receiver.stats().refused_senders == 1
    (kept,) = read_kept(tmp_path / "kept")
    assert (kept.reason, kept.raw) == ("claims_ledger", forged)
    assert [type(e).__name__ for e in emitter.events] == ["AuditLogUsed"]


def test_the_policy_refuses_to_let_anyone_claim_the_ledger() -> None:
    from integrations.errors import AtnaPolicyError

    with pytest.raises(AtnaPolicyError, match="names the ledger"):
        replace(POLICY, tls={SENDER: frozenset({"philedger.localhost"})})
    with pytest.raises(AtnaPolicyError, match="names the ledger"):
        replace(POLICY, udp=frozenset({"ledger-api-x-1"}))


async def test_two_senders_using_the_same_event_id_make_two_events(
    tmp_path: Path, tls_files: Pki
) -> None:
    """The same message (so the same event id it gives) from two certificates is two
    distinct ledger events; each sender's re-send is still a byte-identical duplicate."""
    emitter = FakeEmitter()
    message = frame_octet_counted(_variant(9))
    async with running(tmp_path, tls_files, emitter) as receiver:
        for cn in (SENDER, "pacs02.example", SENDER):
            _, writer = await _open(receiver, tls_files, cn)
            writer.write(message)
            await writer.drain()
            writer.close()
        await _until(lambda: receiver.stats().events == 3)
        assert receiver.stats().resent == 1
    first, second, again = emitter.events
    assert first.event_id != second.event_id
    assert again == first


async def test_clients_that_never_authenticate_take_no_connection_slot(
    tmp_path: Path, tls_files: Pki
) -> None:
    """Unauthenticated TCP connections (no TLS handshake) cannot starve the senders: the
    connection limit counts authenticated connections only."""
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter, max_connections=1) as receiver:
        idle = [await asyncio.open_connection("127.0.0.1", receiver.tls_port) for _ in range(3)]
        _, writer = await _open(receiver, tls_files)
        writer.write(frame_octet_counted(_variant(12)))
        await writer.drain()
        await _until(lambda: receiver.stats().events == 1)
        assert receiver.stats().connections_refused == 0
        writer.close()
        for _, w in idle:
            w.close()


async def test_udp_is_off_unless_a_port_is_given(tmp_path: Path, tls_files: Pki) -> None:
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter, udp_port=None) as receiver:
        assert receiver.udp_port is None
        assert receiver._parts.udp is None


async def test_udp_may_claim_only_the_sources_listed_for_udp(
    tmp_path: Path, tls_files: Pki
) -> None:
    emitter = FakeEmitter()
    policy = replace(POLICY, udp=frozenset({"somewhere-else"}))
    async with running(tmp_path, tls_files, emitter, policy=policy) as receiver:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(_variant(11), ("127.0.0.1", receiver.udp_port))
        await _until(lambda: receiver.stats().kept_total == 1)
    (kept,) = read_kept(tmp_path / "kept")
    assert (kept.reason, kept.sender, kept.transport) == ("source_not_allowed", "udp", "udp")
    assert emitter.events == []


async def test_stop_keeps_what_could_not_be_emitted(tmp_path: Path, tls_files: Pki) -> None:
    emitter = FakeEmitter()
    emitter.gate.clear()
    async with running(tmp_path, tls_files, emitter) as receiver:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for i in range(5):
                sock.sendto(_variant(20 + i), ("127.0.0.1", receiver.udp_port))
        await _until(lambda: receiver.stats().received_udp == 5)
    await receiver.stop()  # idempotent
    kept = list(read_kept(tmp_path / "kept"))
    assert [k.reason for k in kept] == ["shutdown"] * 5
    assert not receiver.stats().running


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="tls_port, a udp_port"):
        AtnaReceiverConfig(kept_dir="x")
    with pytest.raises(ValueError, match="cert_file"):
        AtnaReceiverConfig(kept_dir="x", tls_port=1)
    with pytest.raises(ValueError, match="client_ca_file"):
        AtnaReceiverConfig(kept_dir="x", tls_port=1, cert_file="c", key_file="k")
    assert replace(AtnaReceiverConfig(kept_dir="x", udp_port=0), queue_max=5).queue_max == 5


@pytest.mark.parametrize("workers", [0, 1, 2])
async def test_parse_workers_keep_arrival_order_and_keep_what_does_not_map(
    tmp_path: Path, tls_files: Pki, workers: int
) -> None:
    emitter = FakeEmitter()
    bad_msgid = format_syslog(b"<x/>", hostname="pacs01", app_name="ATNA", msgid="OTHER")
    messages = [bad_msgid if i % 50 == 7 else _variant(i) for i in range(300)]
    good = [m for m in messages if m is not bad_msgid]
    async with running(tmp_path, tls_files, emitter, parse_workers=workers) as receiver:
        _, writer = await _open(receiver, tls_files)
        writer.write(b"".join(frame_octet_counted(m) for m in messages))
        await writer.drain()
        await _until(lambda: receiver.stats().mapped + receiver.stats().kept_total == 300)
        writer.close()
    stats = receiver.stats()
    assert stats.mapped == len(good)
    assert stats.kept == {"unexpected_msgid": 6}
    assert [e.event_id for e in emitter.events] == [
        sender_event_id(f"tls:{SENDER}", event_id_for(parse_syslog(m).msg)) for m in good
    ]
    assert [e.producer_seq for e in emitter.events] == list(range(len(good)))


async def test_a_dead_parse_worker_loses_nothing(tmp_path: Path, tls_files: Pki) -> None:
    emitter = FakeEmitter()
    async with running(tmp_path, tls_files, emitter, parse_workers=1) as receiver:
        pool = receiver._parts.parser.pool  # the worker process is what this test kills
        assert pool is not None
        for process in list(pool._processes.values()):
            process.kill()
            process.join()
        _, writer = await _open(receiver, tls_files)
        writer.write(b"".join(frame_octet_counted(_variant(i)) for i in range(100)))
        await writer.drain()
        await _until(lambda: receiver.stats().events == 100)
        writer.close()
    assert receiver.stats().kept_total == 0
    assert len({e.event_id for e in emitter.events}) == 100


async def test_a_message_resent_after_a_restart_is_still_byte_identical(
    tmp_path: Path, tls_files: Pki
) -> None:
    first_run = FakeEmitter()
    async with running(tmp_path, tls_files, first_run) as receiver:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(_variant(21), ("127.0.0.1", receiver.udp_port))
        await _until(lambda: receiver.stats().events == 1)
    second_run = FakeEmitter()
    second_run.next_sequence = 1024  # a real Emitter continues above its persisted floor
    async with running(tmp_path, tls_files, second_run) as receiver:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(_variant(22), ("127.0.0.1", receiver.udp_port))
            await _until(lambda: receiver.stats().events == 1)
            sock.sendto(_variant(21), ("127.0.0.1", receiver.udp_port))
        await _until(lambda: receiver.stats().events == 2)
        assert receiver.stats().resent == 1
    (original,) = first_run.events
    other, again = second_run.events
    assert again == original  # same id, same stamp: the ledger counts a duplicate
    assert (again.producer_seq, other.producer_seq) == (0, 1024)
