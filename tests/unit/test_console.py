"""The console in-process: sign-in, sessions, CSRF, roles, CSP, escaping, records.

The ports are small stand-ins here (a unit test of the HTTP adapter); the browser tests
in tests/e2e/test_console_browser.py drive the real API process and ledger."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.audit.auth import Principal, Role, TokenHash, issue_token
from ledger.audit.query import AccessEntry, Cursor, HistoryQuery, LedgerPosition, Snapshot
from ledger.audit.readlog import LedgerRead
from ledger.audit.unreadable import UnreadablePeriod
from ledger.errors import UnavailableError
from ledger.http import create_app
from ledger.http.console import ConsoleConfig
from ledger.http.console.render import CSP
from ledger.http.console.sessions import COOKIE
from ledger.http.openapi import document

HOSTILE = '<script>alert("x")</script>'


def entry(n: int, *, user: str = "rad001", name: str | None = None) -> AccessEntry:
    return AccessEntry(
        event_id=uuid.UUID(int=n), kind="phi_access",
        event_time=datetime(2026, 3, 1 + n % 20, 9, tzinfo=UTC), facility_id="FAC1",
        patient_id="P-1", patient_issuer=None, patient_state="CA", user_id=user,
        user_name=name, user_role="radiologist", user_org=None, dicom_event_id="110110",
        action="R", outcome="SUCCESS", study_uid="1.2.3", accession="A1",
        network_address="10.0.0.1", purpose_of_use="TREAT",
        position=LedgerPosition(log_id=1, origin="test/log", leaf_index=n),
    )  # fmt: skip


class Reader:
    def __init__(self, entries: Sequence[AccessEntry], *, down: bool = False) -> None:
        self.entries, self.down = list(entries), down
        #: The detached periods the ledger reports (none: every answer is complete).
        self.detached: list[UnreadablePeriod] = []

    async def detached_periods(self) -> Sequence[UnreadablePeriod]:
        return self.detached

    async def snapshot(self) -> Snapshot:
        if self.down:
            raise UnavailableError("database unreachable")
        return Snapshot(sizes=(1000,))

    async def origins(self) -> Mapping[int, str]:
        return {1: "test/log"}

    async def history(
        self, query: HistoryQuery, *, snapshot: Snapshot, limit: int, after: Cursor | None
    ) -> Sequence[AccessEntry]:
        rows = [e for e in self.entries if e.patient_id == query.value or e.user_id == query.value]
        return rows[:limit]


class Tokens:
    def __init__(self) -> None:
        self.known: dict[bytes, Principal] = {}

    def add(self, role: Role, subject: str) -> str:
        issued = issue_token()
        self.known[issued.token_hash] = Principal(
            token_id=issued.token_id, subject=subject, role=role
        )
        return issued.text

    async def principal(self, token_hash: TokenHash) -> Principal | None:
        return self.known.get(token_hash)


class Recorder:
    def __init__(self) -> None:
        self.reads: list[LedgerRead] = []

    async def record(self, read: LedgerRead) -> None:
        self.reads.append(read)


@pytest.fixture
async def console() -> AsyncIterator[tuple[TestClient[Any, Any], Tokens, Recorder, Reader]]:
    tokens, recorder = Tokens(), Recorder()
    reader = Reader([entry(1), entry(2, name=HOSTILE)])
    app = create_app(
        reader=cast(Any, reader), tokens=tokens, recorder=recorder, openapi=document(),
        # The same key configured twice (LEDGER_VERIFIER_KEY and _KEYS) is served once.
        console=ConsoleConfig(verifier_keys=("test+12345678+AAAA", "test+12345678+AAAA")),
    )  # fmt: skip
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, tokens, recorder, reader
    finally:
        await client.close()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def sign_in(client: TestClient[Any, Any], token: str) -> str:
    async with client.get("/console/sign-in") as resp:
        csrf = csrf_of(await resp.text())
    async with client.post(
        "/console/sign-in", data={"csrf": csrf, "token": token, "next": "/console/"},
        allow_redirects=False,
    ) as resp:  # fmt: skip
        assert resp.status == 303, await resp.text()
    async with client.get("/console/") as resp:
        return csrf_of(await resp.text())


def cookie(client: TestClient[Any, Any]) -> str | None:
    for c in client.session.cookie_jar:
        if c.key == COOKIE:
            return c.value
    return None


async def test_a_page_without_a_session_goes_to_sign_in_and_is_recorded(console: Any) -> None:
    client, _, recorder, _ = console
    async with client.get("/console/patients/P-1", allow_redirects=False) as resp:
        assert resp.status == 303
        assert resp.headers["Location"].startswith("/console/sign-in?next=")
        assert resp.headers["Content-Security-Policy"] == CSP
    assert recorder.reads[-1].status == 401
    assert recorder.reads[-1].subject == "(anonymous)"


async def test_sign_in_draws_a_new_session_and_the_page_is_recorded(console: Any) -> None:
    client, tokens, recorder, _ = console
    async with client.get("/console/sign-in") as resp:
        assert resp.headers["Content-Security-Policy"] == CSP
        before = cookie(client)
        csrf = csrf_of(await resp.text())
    token = tokens.add(Role.INVESTIGATOR, "ivy")
    async with client.post(
        "/console/sign-in", data={"csrf": csrf, "token": token}, allow_redirects=False
    ) as resp:
        assert resp.status == 303
        set_cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in set_cookie
        assert "SameSite=Strict" in set_cookie
    after = cookie(client)
    assert before
    assert after
    assert before != after
    async with client.get("/console/patients/P-1") as resp:
        html = await resp.text()
        assert resp.status == 200
        assert resp.headers["Content-Security-Policy"] == CSP
    read = recorder.reads[-1]
    assert (read.subject, read.role, read.status, read.patient_id) == (
        "ivy",
        "investigator",
        200,
        "P-1",
    )
    assert read.path == "/console/patients/P-1"
    assert read.results == 2
    # The hostile user name is text, never markup.
    assert HOSTILE not in html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
    assert html.count('class="verify"') == 2


async def test_a_wrong_token_is_refused_and_recorded_as_a_401(console: Any) -> None:
    client, _, recorder, _ = console
    async with client.get("/console/sign-in") as resp:
        csrf = csrf_of(await resp.text())
    bad = issue_token().text
    async with client.post("/console/sign-in", data={"csrf": csrf, "token": bad}) as resp:
        assert resp.status == 401
        assert "unknown, expired or revoked" in await resp.text()
    assert recorder.reads[-1].status == 401
    assert recorder.reads[-1].parameters["auth.failure"] == "unknown_token"
    async with client.post("/console/sign-in", data={"csrf": csrf, "token": "nope"}) as resp:
        assert resp.status == 401
    assert recorder.reads[-1].parameters["auth.failure"] == "malformed_token"


async def test_sign_in_without_the_csrf_token_is_refused(console: Any) -> None:
    client, tokens, recorder, _ = console
    await client.get("/console/sign-in")
    token = tokens.add(Role.ADMIN, "ada")
    async with client.post("/console/sign-in", data={"csrf": "forged", "token": token}) as resp:
        assert resp.status == 403
    assert recorder.reads[-1].status == 403


async def test_sign_out_needs_its_csrf_token_and_ends_the_session(console: Any) -> None:
    client, tokens, _, _ = console
    csrf = await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    async with client.post("/console/sign-out", data={"csrf": "forged"}) as resp:
        assert resp.status == 403
    async with client.get("/console/", allow_redirects=False) as resp:
        assert resp.status == 200  # still signed in
    async with client.post("/console/sign-out", data={"csrf": csrf}, allow_redirects=False) as resp:
        assert resp.status == 303
    async with client.get("/console/", allow_redirects=False) as resp:
        assert resp.status == 303


async def test_the_auditor_does_not_see_or_open_histories(console: Any) -> None:
    client, tokens, recorder, _ = console
    await sign_in(client, tokens.add(Role.AUDITOR, "aud"))
    async with client.get("/console/") as resp:
        html = await resp.text()
    assert "/console/search" not in html
    async with client.get("/console/patients/P-1") as resp:
        assert resp.status == 403
        assert "Not for your role" in await resp.text()
        assert resp.headers["Content-Security-Policy"] == CSP
    assert (recorder.reads[-1].subject, recorder.reads[-1].status) == ("aud", 403)


async def test_an_unreachable_ledger_shows_a_clear_page(console: Any) -> None:
    client, tokens, _, reader = console
    await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    reader.down = True
    async with client.get("/console/patients/P-1") as resp:
        assert resp.status == 503
        assert "The ledger cannot be reached" in await resp.text()


async def test_the_session_cookie_reads_the_api_but_never_changes_it(console: Any) -> None:
    client, tokens, recorder, _ = console
    await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    async with client.get("/v1/patients/P-1/accesses") as resp:
        assert resp.status == 200
    assert recorder.reads[-1].subject == "ivy"
    async with client.post("/v1/investigations", json={}) as resp:
        assert resp.status in (401, 404, 405)


async def test_csv_export_and_timeline(console: Any) -> None:
    client, tokens, _, _ = console
    await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    async with client.get("/console/patients/P-1/accesses.csv") as resp:
        text = await resp.text()
        assert resp.headers["Content-Type"].startswith("text/csv")
    lines = text.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("time,user_id")
    async with client.get("/console/patients/P-1/timeline.svg?colour=user") as resp:
        body = await resp.text()
        assert resp.headers["Content-Type"].startswith("image/svg+xml")
    assert "<script" not in body
    assert "rad001" in body
    async with client.get("/console/patients/P-1?colour=purple") as resp:
        assert resp.status == 400


async def test_verifier_keys_and_blank_filters(console: Any) -> None:
    client, tokens, _, _ = console
    async with client.get("/console/verifier-keys") as resp:
        assert await resp.json() == ["test+12345678+AAAA"]
        assert resp.headers["Cache-Control"] == "no-cache"
    await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    async with client.get(
        "/console/patients/P-1?since=&action=R&self_audit=hide", allow_redirects=False
    ) as resp:
        assert resp.status == 303
        assert resp.headers["Location"] == "/console/patients/P-1?action=R&self_audit=hide"


def test_the_demo_prints_the_console_and_a_sign_in_token() -> None:
    from pydantic import SecretStr
    from rich.console import Console

    from ledgerctl.commands.emit import print_console_sign_in
    from ledgerctl.settings import Settings

    settings = Settings.model_construct(
        api_url="http://127.0.0.1:18080", api_token=SecretStr("plt_demo")
    )
    out = Console(record=True, width=200)
    print_console_sign_in(out, settings, "MRN 1/2")
    text = out.export_text()
    assert "http://127.0.0.1:18080/console/patients/MRN%201%2F2" in text
    assert "Sign in with the API token: plt_demo" in text


def test_the_timeline_stacks_days_and_names_the_biggest_series() -> None:
    from ledger.http.console.timeline import MAX_SERIES, chart

    rows = [entry(n, user=f"u{n % 9}") for n in range(1, 40)]
    drawn = chart(rows, by="user")
    assert drawn.total == 39
    assert len(drawn.legend) == MAX_SERIES + 1
    assert drawn.legend[-1] == "others"
    assert sum(int(b.title.split(": ")[1].split(" ")[0]) for b in drawn.bars) == 39
    assert chart([], by="action").bars == ()
    assert {b.series for b in chart(rows, by="action").bars} == {0}


def test_the_role_map_is_ordered_and_strict() -> None:
    from ledger.http.console.oidc import parse_role_map

    assert parse_role_map("a=admin, b=investigator") == (
        ("a", Role.ADMIN), ("b", Role.INVESTIGATOR),
    )  # fmt: skip
    for bad in ("a", "a=boss", "=admin"):
        with pytest.raises(ValueError):  # noqa: PT011 - the message names the entry
            parse_role_map(bad)


class Book:
    def __init__(self) -> None:
        from ledger.audit.rules import AlertState

        self.stored = StoredAlert(
            alert_id=7, rule_id="after-hours", rule_version=1, severity="high",
            facility_id="FAC1", user_id="rad001", patient_id="P-1", patient_issuer=None,
            summary=HOSTILE, log_id=1, origin="test/log", leaf_index=3, thresholds={},
            raised_at=datetime(2026, 3, 2, tzinfo=UTC), state=AlertState.OPEN,
            disposition=None, seq=0,
        )  # fmt: skip
        self.transitions: list[Any] = []

    async def page(self, query: Any) -> Sequence[Any]:
        return [self.stored]

    async def alert(self, alert_id: int) -> Any:
        from ledger.audit.rules.alerts import AlertDetail

        if alert_id != 7:
            return None
        return AlertDetail(alert=self.stored, evidence=(), transitions=())

    async def transition(self, alert_id: int, wanted: Any) -> Any:
        from ledger.audit.rules.alerts import StoredTransition

        self.transitions.append(wanted)
        return StoredTransition(seq=1, state=wanted.state, disposition=wanted.disposition,
                                note=wanted.note, by=wanted.by, at=datetime.now(UTC))  # fmt: skip


from ledger.audit.rules.alerts import StoredAlert  # noqa: E402


@pytest.fixture
async def ops_console() -> AsyncIterator[tuple[TestClient[Any, Any], Tokens, Recorder, Book]]:
    from ledger.audit.query import LogInfo

    tokens, recorder, book = Tokens(), Recorder(), Book()
    reader = Reader([entry(1)])

    async def logs() -> Sequence[LogInfo]:
        return [LogInfo(log_id=1, origin="test/log", topic="t", partition=0, size=12,
                        checkpoint_size=10)]  # fmt: skip

    async def quarantine(*, after: int, limit: int, reason: str | None) -> Sequence[Any]:
        return [{}, {}]

    reader.logs = logs  # type: ignore[attr-defined]
    reader.quarantine = quarantine  # type: ignore[attr-defined]
    app = create_app(
        reader=cast(Any, reader), tokens=tokens, recorder=recorder, openapi=document(),
        alert_book=book, alert_triage=book, console=ConsoleConfig(),
    )  # fmt: skip
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, tokens, recorder, book
    finally:
        await client.close()


async def test_the_alert_queue_triages_with_csrf_as_the_signed_in_person(ops_console: Any) -> None:
    client, tokens, recorder, book = ops_console
    csrf = await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    async with client.get("/console/alerts") as resp:
        html = await resp.text()
    assert resp.status == 200
    assert HOSTILE not in html
    assert "Acknowledge" in html
    form = {"state": "acknowledged", "note": "looking"}
    async with client.post("/console/alerts/7/transitions", data=form) as resp:
        assert resp.status == 403  # no CSRF token
    assert book.transitions == []
    assert (recorder.reads[-1].status, recorder.reads[-1].parameters.get("csrf")) == (
        403,
        "refused",
    )
    async with client.post(
        "/console/alerts/7/transitions", data={**form, "csrf": csrf}, allow_redirects=False
    ) as resp:
        assert resp.status == 303
        assert resp.headers["Location"].startswith("/console/alerts?done=7")
    assert [(t.state.value, t.by) for t in book.transitions] == [("acknowledged", "ivy")]
    async with client.post(
        "/console/alerts/7/transitions", data={"state": "closed", "note": "x", "csrf": csrf}
    ) as resp:
        assert resp.status == 400  # closing needs a finding


async def test_integrity_shows_the_quarantine_only_to_roles_that_may_read_it(
    ops_console: Any,
) -> None:
    client, tokens, _, _ = ops_console
    await sign_in(client, tokens.add(Role.AUDITOR, "aud"))
    async with client.get("/console/integrity") as resp:
        html = await resp.text()
    assert "2 records refused" in html
    assert "never signed" in html
    assert "/console/alerts" not in html  # the auditor may not read compliance alerts
    async with client.get("/console/alerts") as resp:
        assert resp.status == 403
    async with client.post("/console/sign-out", data={"csrf": csrf_of(html)}) as resp:
        assert resp.status == 200
    await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    async with client.get("/console/integrity") as resp:
        html = await resp.text()
    assert "Quarantine" not in html


def test_an_idle_session_ends_and_ids_are_never_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from ledger.http.console.sessions import SessionStore

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    store = SessionStore(idle=60)
    who = Principal(token_id=uuid.uuid4(), subject="ivy", role=Role.INVESTIGATOR)
    first = store.start(who)
    now[0] += 59
    assert store.get(first.session_id) is not None  # used: the idle clock restarts
    now[0] += 59
    assert store.get(first.session_id) is not None
    now[0] += 61
    assert store.get(first.session_id) is None
    assert store.get(first.session_id) is None  # dropped for good
    assert len({store.start(who).session_id for _ in range(100)}) == 100


async def test_the_cookie_is_secure_behind_an_https_public_url() -> None:
    tokens, recorder = Tokens(), Recorder()
    app = create_app(
        reader=cast(Any, Reader([])), tokens=tokens, recorder=recorder, openapi=document(),
        public_url="https://ledger.example.org", console=ConsoleConfig(),
    )  # fmt: skip
    async with TestClient(TestServer(app)) as client, client.get("/console/sign-in") as resp:
        assert "Secure" in resp.headers["Set-Cookie"]
        assert "HttpOnly" in resp.headers["Set-Cookie"]
