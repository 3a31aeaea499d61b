"""Alert delivery against REAL receivers started here (an aiohttp HTTPS webhook and a
syslog-over-TLS server, a test certificate, free ports) and real scratch databases:
signed deliveries the receiver checks, a receiver that is down and then up, a 500 then a
200, a wrong CA, a world-readable secret, and the append-only delivery tables."""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from aiohttp import web

from integrations.atna.framing import StreamDecoder
from integrations.atna.rfc5424 import Frame, SyslogMessage, parse_syslog
from ledger.audit.delivery import Deliverer, Destination, SyslogDestination, verify
from ledger.http.webhook import WebhookSender
from ledger.pg.delivery import PostgresDeliveryStore
from ledgerctl.delivery import Senders
from tests.atna_pki import Pki, make_pki
from tests.conftest import own_ledger
from tests.integration.test_compliance_alerts import evaluate, fill, plant
from tests.ports import free_port
from tests.support import Stack, run_ledger

pytestmark = pytest.mark.integration

SECRET = b"webhook-test-secret-0123456789abcdef"


@dataclass
class Receiver:
    """An HTTPS webhook receiver on its own thread and loop: it checks each signature,
    dedupes by idempotency key, and answers ``fail_first`` requests with a 500."""

    pki: Pki
    port: int
    fail_first: int = 0
    seen: Counter[str] = field(default_factory=Counter)
    bad_signatures: int = 0
    alerts: dict[str, dict[str, object]] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.read()
        stamp = request.headers["X-PhiLedger-Timestamp"]
        if not verify(SECRET, stamp, body, request.headers["X-PhiLedger-Signature"]):
            self.bad_signatures += 1
            return web.Response(status=401)
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=500)
        key = request.headers["Idempotency-Key"]
        self.seen[key] += 1
        self.alerts.setdefault(key, await request.json())
        return web.Response(status=204)

    def start(self) -> None:
        ready = threading.Event()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.pki.server_cert, self.pki.server_key)

        async def serve() -> None:
            app = web.Application()
            app.router.add_post("/hook", self._hook)
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=context).start()
            ready.set()

        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(timeout=30)
        ready.wait(timeout=30)

    def stop(self) -> None:
        assert self._loop is not None
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)


@dataclass(frozen=True)
class Scratch:
    stack: Stack
    pki: Pki
    other_ca: Path
    secret: Path
    alert_ids: frozenset[int]


@pytest.fixture(scope="module")
def scratch(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scratch]:
    where = tmp_path_factory.mktemp("delivery")
    secret = where / "siem.secret"
    secret.write_bytes(SECRET + b"\n")
    os.chmod(secret, 0o600)
    tag = uuid.uuid4().hex[:8]
    with own_ledger(stack, f"{stack.database}_deliver{tag[:6]}") as own:
        fill(own, plant(), tag)
        assert asyncio.run(evaluate(own.appender_url)) == 3
        ids = asyncio.run(fetch(own.appender_url, "SELECT alert_id FROM alerts"))
        yield Scratch(
            stack=own, pki=make_pki(where / "pki"), other_ca=make_pki(where / "other").server_cert,
            secret=secret, alert_ids=frozenset(int(r["alert_id"]) for r in ids),
        )  # fmt: skip


async def fetch(dsn: str, query: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def destination(s: Scratch, name: str, port: int, *, ca: Path | None = None) -> Destination:
    return Destination(
        name=name, url=f"https://localhost:{port}/hook", secret=SECRET,
        ca_file=ca or s.pki.server_cert, timeout_seconds=5.0, max_attempts=3,
        backoff_seconds=0.01, backoff_max_seconds=0.05,
    )  # fmt: skip


def deliver(s: Scratch, dest: Destination) -> None:
    async def once() -> None:
        async with PostgresDeliveryStore(dsn=s.stack.appender_url) as store, WebhookSender() as tx:
            await Deliverer(store, tx, [dest]).run_pass()

    asyncio.run(once())


def attempts(s: Scratch, name: str) -> list[tuple[int | None, str | None, bool]]:
    rows = asyncio.run(
        fetch(
            s.stack.reader_url,
            "SELECT http_status, error_class, delivered FROM alert_delivery_attempts"
            " WHERE destination = $1 ORDER BY attempt_id",
            name,
        )
    )
    return [(r["http_status"], r["error_class"], r["delivered"]) for r in rows]


def delivered(s: Scratch, name: str) -> set[int]:
    rows = asyncio.run(
        fetch(
            s.stack.reader_url,
            "SELECT alert_id FROM alert_deliveries WHERE destination = $1",
            name,
        )
    )
    return {int(r["alert_id"]) for r in rows}


def test_a_receiver_down_then_up_gets_every_alert_once_signed_and_without_patients(
    scratch: Scratch,
) -> None:
    port = free_port()
    dest = destination(scratch, "siem-down", port)
    deliver(scratch, dest)  # nobody listens: connection refused, 3 attempts, still pending
    assert attempts(scratch, "siem-down") == [(None, "connect", False)] * 3
    assert delivered(scratch, "siem-down") == set()

    receiver = Receiver(scratch.pki, port)
    receiver.start()
    try:
        deliver(scratch, dest)
        deliver(scratch, dest)  # nothing pending any more: nothing is sent again
    finally:
        receiver.stop()
    keys = {f"{i}.siem-down" for i in scratch.alert_ids}
    assert receiver.bad_signatures == 0
    assert receiver.seen == Counter(dict.fromkeys(keys, 1))
    assert delivered(scratch, "siem-down") == set(scratch.alert_ids)
    bodies = list(receiver.alerts.values())
    assert {b["alert"]["rule_id"] for b in bodies} == {  # type: ignore[index]
        "access.bulk", "breakglass.unjustified", "relay.late",
    }  # fmt: skip
    assert all("patient" not in b["alert"] for b in bodies)  # type: ignore[operator]
    assert all(b["evidence"] for b in bodies)
    assert "MRN-" not in repr(bodies)


def test_a_500_is_retried_until_the_receiver_accepts(scratch: Scratch) -> None:
    port = free_port()
    receiver = Receiver(scratch.pki, port, fail_first=2)
    receiver.start()
    try:
        deliver(scratch, destination(scratch, "siem-flaky", port))
    finally:
        receiver.stop()
    tries = attempts(scratch, "siem-flaky")
    assert tries[:3] == [(500, None, False), (500, None, False), (204, None, True)]
    assert tries[3:] == [(204, None, True)] * (len(scratch.alert_ids) - 1)
    assert delivered(scratch, "siem-flaky") == set(scratch.alert_ids)
    assert sum(receiver.seen.values()) == len(scratch.alert_ids)


def test_a_receiver_with_a_certificate_of_another_ca_gets_nothing(scratch: Scratch) -> None:
    port = free_port()
    receiver = Receiver(scratch.pki, port)
    receiver.start()
    try:
        deliver(scratch, destination(scratch, "siem-wrongca", port, ca=scratch.other_ca))
    finally:
        receiver.stop()
    assert receiver.seen == Counter()
    assert attempts(scratch, "siem-wrongca") == [(None, "tls", False)]
    assert delivered(scratch, "siem-wrongca") == set()


def config(scratch: Scratch, name: str, port: int, secret: Path) -> Path:
    where = secret.parent / f"{name}.toml"
    where.write_text(
        f'[destination.{name}]\nurl = "https://localhost:{port}/hook"\n'
        f'secret_file = "{secret}"\nca_file = "{scratch.pki.server_cert}"\n'
        "include_patient = true\nbackoff_seconds = 0.01\n"
    )
    return where


def test_the_cli_delivers_with_patients_when_configured(scratch: Scratch) -> None:
    port = free_port()
    receiver = Receiver(scratch.pki, port)
    receiver.start()
    try:
        env = scratch.stack.env(LEDGER_ALERT_DELIVERY_FILE=str(config(
            scratch, "siem-cli", port, scratch.secret)))  # fmt: skip
        ran = run_ledger(env, "alerts", "deliver", "--once")
    finally:
        receiver.stop()
    assert ran.returncode == 0, ran.stderr
    assert f"{len(scratch.alert_ids)} alert(s) delivered" in ran.stdout + ran.stderr
    assert SECRET.decode() not in ran.stdout + ran.stderr
    bodies = list(receiver.alerts.values())
    assert len(bodies) == len(scratch.alert_ids)
    assert all("patient" in b["alert"] for b in bodies)  # type: ignore[operator]
    assert "MRN-BG1" in repr(bodies)


def test_a_world_readable_secret_refuses_the_start(scratch: Scratch) -> None:
    loose = scratch.secret.parent / "loose.secret"
    loose.write_bytes(SECRET)
    os.chmod(loose, 0o644)
    where = config(scratch, "siem-loose", free_port(), loose)
    ran = run_ledger(scratch.stack.env(), "alerts", "deliver", "--once", "--destinations",
                     str(where))  # fmt: skip
    assert ran.returncode != 0
    assert "destination.siem-loose.secret_file: refusing" in ran.stdout + ran.stderr
    assert SECRET.decode() not in ran.stdout + ran.stderr
    assert attempts(scratch, "siem-loose") == []


@pytest.mark.parametrize(
    "statement",
    ["UPDATE alert_delivery_attempts SET delivered = true", "DELETE FROM alert_deliveries",
     "TRUNCATE alert_delivery_attempts CASCADE"],
)  # fmt: skip
def test_the_delivery_tables_refuse_updates_and_deletes(scratch: Scratch, statement: str) -> None:
    for dsn in (scratch.stack.appender_url, scratch.stack.owner_url):
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            asyncio.run(fetch(dsn, statement))


@dataclass
class SyslogReceiver:
    """A syslog-over-TLS receiver (RFC 5425) on its own thread and loop; it frames and
    parses with the ATNA receiver's own decoder and RFC 5424 parser."""

    pki: Pki
    port: int
    seen: Counter[str] = field(default_factory=Counter)
    messages: list[SyslogMessage] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: asyncio.Server | None = None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        decoder = StreamDecoder(1024 * 1024)
        while data := await reader.read(65536):
            for got in decoder.feed(data):
                assert isinstance(got, Frame), got
                msg = parse_syslog(got.data)
                self.messages.append(msg)
                self.seen[dict(msg.structured_data[0].params)["key"]] += 1
        writer.close()

    def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.pki.server_cert, self.pki.server_key)

        async def serve() -> None:
            self._server = await asyncio.start_server(
                self._client, "127.0.0.1", self.port, ssl=context
            )

        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, daemon=True).start()
        asyncio.run_coroutine_threadsafe(serve(), self._loop).result(timeout=30)

    def stop(self) -> None:
        assert self._loop is not None
        assert self._server is not None
        self._server.close()
        self._loop.call_soon_threadsafe(self._loop.stop)


def syslog(s: Scratch, name: str, port: int, *, ca: Path | None = None) -> SyslogDestination:
    return SyslogDestination(
        name=name, host="localhost", port=port, ca_file=ca or s.pki.server_cert,
        timeout_seconds=5.0, max_attempts=2, backoff_seconds=0.01, backoff_max_seconds=0.05,
    )  # fmt: skip


def syslog_pass(s: Scratch, dest: SyslogDestination) -> None:
    async def once() -> None:
        sender = Senders()
        try:
            async with PostgresDeliveryStore(dsn=s.stack.appender_url) as store:
                await Deliverer(store, sender, [dest]).run_pass()
        finally:
            await sender.close()

    asyncio.run(once())


def test_a_syslog_receiver_down_then_up_gets_every_alert_as_rfc5424_over_tls(
    scratch: Scratch,
) -> None:
    port = free_port()
    dest = syslog(scratch, "soc-down", port)
    syslog_pass(scratch, dest)
    assert attempts(scratch, "soc-down") == [(None, "connect", False)] * 2
    assert delivered(scratch, "soc-down") == set()
    receiver = SyslogReceiver(scratch.pki, port)
    receiver.start()
    try:
        syslog_pass(scratch, dest)
        syslog_pass(scratch, dest)
        wait_for(lambda: sum(receiver.seen.values()) >= len(scratch.alert_ids))
    finally:
        receiver.stop()
    assert receiver.seen == Counter({f"{i}.soc-down": 1 for i in scratch.alert_ids})
    assert delivered(scratch, "soc-down") == set(scratch.alert_ids)
    assert attempts(scratch, "soc-down")[2:] == [(None, None, True)] * len(scratch.alert_ids)
    assert {m.app_name for m in receiver.messages} == {"phi-ledger"}
    assert all(m.bom for m in receiver.messages)
    assert all("MRN-" not in m.msg.decode() for m in receiver.messages)


def test_a_syslog_receiver_with_a_certificate_of_another_ca_gets_nothing(
    scratch: Scratch,
) -> None:
    port = free_port()
    receiver = SyslogReceiver(scratch.pki, port)
    receiver.start()
    try:
        syslog_pass(scratch, syslog(scratch, "soc-wrongca", port, ca=scratch.other_ca))
    finally:
        receiver.stop()
    assert receiver.messages == []
    assert attempts(scratch, "soc-wrongca") == [(None, "tls", False)]
    assert delivered(scratch, "soc-wrongca") == set()


def wait_for(done: Callable[[], bool]) -> None:
    """The receiver reads on its own thread: wait (bounded) until it has read it all."""
    for _ in range(600):
        if done():
            return
        time.sleep(0.05)
