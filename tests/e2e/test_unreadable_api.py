"""Answers over time name the detached periods they could not read, through the real API.

A `ledger serve` on a fresh ledger of its own (``period_archives`` is append-only, so the
session's shared ledger never gets a detached period); a detached March 2021, whose late
events reach into April, is simulated by inserting its row as the schema owner, as the
detach procedure will. Histories overlapping it, or without a range, name it; one that
does not overlap it does not; the reports name it in JSON (digested), in their CSV's
leading row and their header; a FHIR search ends with an outcome entry; `ledger history`
and `ledger report` name it on stderr and exit 3 with --require-complete; the console's
history page shows the banner (over HTTP with a signed-in session rather than a browser:
the banner is server-rendered text, and a browser adds minutes to this file).
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp
import asyncpg
import pytest

from tests.conftest import own_ledger
from tests.e2e.conftest import LEDGER, free_port
from tests.support import ROOT, Stack

pytestmark = pytest.mark.e2e

ARCHIVE = bytes(range(32))
FIRST = datetime(2021, 3, 1, 0, 0, 5, tzinfo=UTC)
LAST = datetime(2021, 4, 2, 8, 0, tzinfo=UTC)  # a late event of March, recorded in April
MARCH = {
    "period": "2021-03",
    "state": "detached",
    "archive": ARCHIVE.hex(),
    "events_from": FIRST.isoformat(),
    "events_until": LAST.isoformat(),
}
BANNER = f"This answer does not include 2021-03 (archived; bundle sha256 {ARCHIVE.hex()})."


@dataclass(frozen=True)
class Served:
    url: str
    env: dict[str, str]
    stack: Stack


async def _detach_march(owner_url: str) -> None:
    conn = await asyncpg.connect(owner_url)
    try:
        for state in ("archived", "detached"):
            await conn.execute(
                "INSERT INTO period_archives (period, state, manifest_digest, logs, events, "
                "first_event_time, last_event_time, record_event_id, actor, copies) "
                "VALUES ('2021-03-01', $1, $2, 2, 40, $3, $4, $5, 'e2e', 'tape A; site B')",
                state, ARCHIVE, FIRST, LAST, uuid.uuid4(),
            )  # fmt: skip
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def served(stack: Stack) -> Iterator[Served]:
    with own_ledger(stack, f"{stack.database}_unr{uuid.uuid4().hex[:6]}") as own:
        asyncio.run(_detach_march(own.owner_url))
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = own.env(
            LEDGER_API_URL=url,
            LEDGER_PRODUCER_KEY_FILE=own.producer_key("ledger-api-unreadable"),
            LEDGER_FHIR_PRODUCER_KEY_FILE=own.producer_key("ledger-fhir-unreadable"),
        )
        proc = subprocess.Popen(
            [LEDGER, "serve", "--port", str(port)], env=env, cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            subprocess.run([LEDGER, "wait", "api", "--timeout", "60"], env=env, check=True,
                           cwd=ROOT)  # fmt: skip
            yield Served(url, env, own)
        finally:
            proc.terminate()
            proc.wait(timeout=20)


@pytest.fixture
async def http(served: Served) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(20), headers=served.stack.auth("admin")
    ) as session:
        yield session


async def _history(http: aiohttp.ClientSession, url: str, **params: str) -> list[object]:
    async with http.get(f"{url}/v1/patients/MRN-UNR/accesses", params=params) as resp:
        assert resp.status == 200, await resp.text()
        body = await resp.json()
        named = body["unreadable_periods"]
        assert resp.headers.get("Unreadable-Periods", "") == ", ".join(
            str(p["period"]) for p in named
        )
        return list(named)


async def test_a_history_names_the_detached_period_its_range_overlaps(
    served: Served, http: aiohttp.ClientSession
) -> None:
    url = served.url
    assert await _history(http, url) == [MARCH]  # no range: every detached period
    assert await _history(http, url, since="2021-03-15T00:00:00Z", until="2021-03-16T00:00:00Z")
    # The late events widen March's span into April.
    assert await _history(http, url, since="2021-04-01T00:00:00Z") == [MARCH]
    assert await _history(http, url, since="2021-04-02T08:00:00Z") == [MARCH]  # its last event
    assert await _history(http, url, since="2021-04-02T08:00:01Z") == []
    assert await _history(http, url, until="2021-03-01T00:00:05Z") == []  # until is exclusive
    assert (
        await _history(http, url, since="2022-01-01T00:00:00Z", until="2022-02-01T00:00:00Z") == []
    )


async def test_the_reports_name_it_in_json_csv_and_header(
    served: Served, http: aiohttp.ClientSession
) -> None:
    url = served.url
    scope = {"since": "2021-03-01T00:00:00Z", "until": "2021-04-01T00:00:00Z", "users": ["rad9"]}
    async with http.post(f"{url}/v1/investigations", json=scope) as resp:
        assert resp.status == 200, await resp.text()
        report = await resp.json()
        assert resp.headers["Unreadable-Periods"] == "2021-03"
    assert report["unreadable_periods"] == [MARCH]
    async with http.post(f"{url}/v1/investigations?format=csv", json=scope) as resp:
        rows = list(csv.reader(io.StringIO(await resp.text())))
    assert rows[0][:4] == ["#unreadable_period", "2021-03", "detached", ARCHIVE.hex()]
    later = {**scope, "since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z"}
    async with http.post(f"{url}/v1/investigations", json=later) as resp:
        assert (await resp.json())["unreadable_periods"] == []
        assert "Unreadable-Periods" not in resp.headers
    # Six years back from 2026-12-06 reach into 2021-03.
    at = "2026-12-06T00:00:00Z"
    async with http.get(f"{url}/v1/patients/MRN-UNR/disclosures", params={"at": at}) as resp:
        assert (await resp.json())["unreadable_periods"] == [MARCH]
    async with http.get(f"{url}/v1/patients/MRN-UNR/disclosures",
                        params={"at": at, "years": "1"}) as resp:  # fmt: skip
        assert (await resp.json())["unreadable_periods"] == []
    relays = {"since": "2021-03-01T00:00:00Z", "until": "2021-04-01T00:00:00Z", "format": "csv"}
    async with http.get(f"{url}/v1/reports/critical-results", params=relays) as resp:
        assert resp.headers["Unreadable-Periods"] == "2021-03"
        assert (await resp.text()).startswith("#unreadable_period,2021-03,detached,")


async def test_a_fhir_search_ends_with_a_warning_outcome(
    served: Served, http: aiohttp.ClientSession
) -> None:
    params = {"patient": "MRN-UNR", "date": "ge2021-03-10"}
    async with http.get(f"{served.url}/fhir/AuditEvent", params=params) as resp:
        assert resp.status == 200, await resp.text()
        bundle = await resp.json()
    (entry,) = bundle["entry"]
    assert entry["search"] == {"mode": "outcome"}
    (issue,) = entry["resource"]["issue"]
    assert (issue["severity"], issue["code"], issue["diagnostics"]) == (
        "warning", "incomplete", BANNER,
    )  # fmt: skip
    params["date"] = "ge2022-01-01"
    async with http.get(f"{served.url}/fhir/AuditEvent", params=params) as resp:
        assert "entry" not in await resp.json()


def _ledger(served: Served, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LEDGER, *args], env=served.env, cwd=ROOT, capture_output=True,
                          text=True, timeout=120)  # fmt: skip


async def test_the_cli_names_it_on_stderr_and_exits_3_when_completeness_is_required(
    served: Served,
) -> None:
    march = ["MRN-UNR", "--since", "2021-03-10T00:00:00Z", "--until", "2021-03-20T00:00:00Z"]
    shown = await asyncio.to_thread(_ledger, served, "history", *march)
    assert shown.returncode == 0, shown.stderr
    line = f"incomplete: this answer does not include 2021-03 (detached; archive bundle sha256 {ARCHIVE.hex()}"  # noqa: E501
    assert line in shown.stderr
    strict = await asyncio.to_thread(_ledger, served, "history", *march, "--require-complete")
    assert strict.returncode == 3, strict.stderr
    later = ["MRN-UNR", "--since", "2022-01-01T00:00:00Z", "--require-complete"]
    complete = await asyncio.to_thread(_ledger, served, "history", *later)
    assert complete.returncode == 0, complete.stderr
    assert "incomplete" not in complete.stderr
    report = await asyncio.to_thread(
        _ledger, served, "report", "disclosures", "MRN-UNR", "--format", "csv",
        "--at", "2026-12-06T00:00:00Z", "--require-complete",
    )  # fmt: skip
    assert report.returncode == 3, report.stderr
    assert report.stdout.startswith("#unreadable_period,2021-03,")
    assert "incomplete: this answer does not include 2021-03 (detached)" in report.stderr


async def test_the_console_history_page_shows_the_banner(served: Served) -> None:
    token = served.stack.tokens["investigator"]
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for 127.0.0.1
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(20), cookie_jar=jar) as browser:
        async with browser.get(f"{served.url}/console/sign-in") as resp:
            csrf = _csrf(await resp.text())
        form = {"csrf": csrf, "token": token, "next": "/console/"}
        async with browser.post(f"{served.url}/console/sign-in", data=form) as resp:
            assert resp.status == 200, await resp.text()
        page = f"{served.url}/console/patients/MRN-UNR"
        async with browser.get(page, params={"since": "2021-03-10"}) as resp:
            html = await resp.text()
        assert f'<p class="message warning unreadable" role="alert">{BANNER}</p>' in html
        async with browser.get(page, params={"since": "2022-01-01"}) as resp:
            assert "does not include" not in await resp.text()


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)
