"""The console's report pages in a real browser (Debian's Chromium, driven by Playwright)
against a real `ledger serve` and consumer on a scratch ledger: run a breach investigation
through its form and download its CSV (verdict and per-state counts checked against the
events emitted), the warning for a scope that matches nothing, a patient's accounting of
disclosures as a letter, the relays page showing a missed deadline, and a role without
the permission: no link, and 403. Screenshots go to docs/console/ only with
LEDGER_SCREENSHOTS=docs (see SHOTS in test_console_browser.py).
"""

from __future__ import annotations

import csv
import io
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from ledger.http.console.render import CSP
from producers.events import (
    AcrCategory,
    Actor,
    CriticalResultRelay,
    EventAction,
    Facility,
    Patient,
    PhiAccessEvent,
    Recipient,
    RelayMethod,
    RelayRecipient,
    Study,
)
from tests.e2e.conftest import Pipeline, serving_api, wait_for_events
from tests.e2e.test_console_browser import SHOTS, Watch, browser, nav

pytestmark = pytest.mark.e2e

FACILITY_NAME = "Lakeside Teleradiology"
FACILITY_CONTACT = "privacy@lakeside.example, 555-0100"


@dataclass
class Console:
    url: str
    tokens: dict[str, str]


@pytest.fixture(scope="module")
def console(pipeline: Pipeline) -> Iterator[Console]:
    """A `ledger serve` of its own (the pipeline's ledger and topics) with a letterhead."""
    stack = pipeline.stack
    env = {
        "LEDGER_PRODUCER_KEY_FILE": stack.producer_key("ledger-api-console-reports"),
        "LEDGER_FHIR_PRODUCER_KEY_FILE": stack.producer_key("ledger-fhir-console-reports"),
        "LEDGER_FACILITY_NAME": FACILITY_NAME,
        "LEDGER_FACILITY_CONTACT": FACILITY_CONTACT,
    }
    with serving_api(pipeline, env, "console-reports-api.log") as url:
        yield Console(url, dict(stack.tokens))


@dataclass
class Emitted:
    run: str
    user: str
    facility: str
    #: Residents per state of the patients the user read (None: no state recorded).
    states: dict[str | None, int]
    disclosed_patient: str
    relays: list[CriticalResultRelay]
    since: str
    until: str


@pytest.fixture(scope="module")
async def emitted(console: Console, pipeline: Pipeline) -> Emitted:
    run = secrets.token_hex(3)
    user, clerk, facility = f"rad.breach.{run}", f"clerk.{run}", f"reports-{run}"
    site = Facility(id=facility, name="Reports test site")
    states: list[str | None] = ["CA", "CA", "CA", "NY", "NY", None]
    reads = [
        PhiAccessEvent(
            facility=site, actor=Actor(user_id=user, role="radiologist"),
            dicom_event_id="110110", action=EventAction.READ,
            patient=Patient(id=f"MRN-BREACH-{run}-{n}", state=state),
            study=Study(uid=f"1.2.826.0.1.16.{int(run, 16)}.{n}"), network_address="10.9.8.7",
            purpose_of_use="TREAT",
        )
        for n, state in enumerate(states)
    ]  # fmt: skip
    disclosed = f"MRN-LETTER-{run}"
    exports = [
        PhiAccessEvent(
            facility=site, actor=Actor(user_id=clerk, role="release-of-information"),
            dicom_event_id="110106", action=EventAction.READ,
            patient=Patient(id=disclosed, state="MA"), purpose_of_use="LEGAL",
            recipient=Recipient(name="Harbor Law", address="1 Main St, Boston MA"),
        )
        for _ in range(2)
    ]  # fmt: skip
    now = datetime.now(UTC)
    # Category 1 (30 minutes): communicated after 50 minutes (missed), after 10 (met).
    relays = [relay(run, n, site, f"rad.relay.{run}", now, took) for n, took in ((1, 50), (2, 10))]
    events: list[PhiAccessEvent | CriticalResultRelay] = [*reads, *exports, *relays]
    async with pipeline.emitter(f"e2e-console-reports-{run}") as emitter:
        for event in events:
            await emitter.emit(event)
        await emitter.flush()
    async with aiohttp.ClientSession(headers=pipeline.stack.auth("admin")) as http:
        await wait_for_events(http, pipeline, [str(e.event_id) for e in events])
    counts: dict[str | None, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return Emitted(
        run=run, user=user, facility=facility, states=counts, disclosed_patient=disclosed,
        relays=relays, since=(now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        until=(now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )  # fmt: skip


def relay(
    run: str, n: int, site: Facility, user: str, now: datetime, took: int
) -> CriticalResultRelay:
    """A category 1 relay identified ``took`` + 30 minutes ago, communicated after ``took``."""
    return CriticalResultRelay(
        facility=site, category=AcrCategory.CAT1, patient=Patient(id=f"MRN-RELAY-{run}-{n}"),
        study=Study(uid=f"1.2.826.0.1.17.{int(run, 16)}.{n}"),
        identified_at=now - timedelta(minutes=30 + took),
        sender=Actor(user_id=user, role="radiologist"),
        recipient=RelayRecipient(name="Dr. Okafor", role="ed-attending"),
        method=RelayMethod.PHONE, read_back=True, communicated_at=now - timedelta(minutes=30),
    )  # fmt: skip


async def sign_in(page: Any, console: Console, role: str) -> None:
    await page.goto(f"{console.url}/console/")
    assert urlsplit(page.url).path == "/console/sign-in"
    await page.get_by_label("Your API token").fill(console.tokens[role])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{console.url}/console/")


async def fill_scope(page: Any, users: str, since: str, until: str) -> None:
    await page.get_by_label("Users (ids, separated by commas or spaces)").fill(users)
    await page.get_by_label("Since (date or time, UTC)").fill(since)
    await page.get_by_label("Until (not included)").fill(until)
    await page.get_by_role("button", name="Investigate").click()
    await page.get_by_role("heading", name="Verdict").wait_for()


async def test_a_breach_investigation_through_the_form_and_its_csv(
    console: Console, emitted: Emitted
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with browser() as context:
        page = await context.new_page()
        watch = Watch(page)
        await sign_in(page, console, "investigator")
        await nav(page).get_by_role("link", name="Breach investigation").click()
        await page.get_by_role("heading", name="Breach investigation").wait_for()
        await fill_scope(page, emitted.user, emitted.since, emitted.until)
        # The plain sentence first: 6 people in 2 states (1 without one), below both 500.
        verdict = await page.locator("[data-verdict]").inner_text()
        assert verdict.startswith(
            "6 people in 2 states (1 without a recorded state); below both 500"
        )
        assert await page.locator(".message.warning").count() == 0
        for state in ("CA", "NY"):
            row = page.locator(f'table.states tr[data-state="{state}"]')
            assert await row.locator("td").nth(1).inner_text() == str(emitted.states[state])
        assert "164.408(b)" in await page.locator("table.states tfoot").inner_text()
        assert await page.locator("table.patients tbody tr").count() == 6
        assert await page.locator("table.timeline tbody tr").count() == 6
        await page.screenshot(path=str(SHOTS / "investigation.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(SHOTS / "investigation-390.png"), full_page=True)
        await page.set_viewport_size({"width": 1280, "height": 900})
        # The CSV: the same computation as POST /v1/investigations, verdict and states.
        async with page.expect_download() as info:
            await page.get_by_role("button", name="CSV").click()
        download = await info.value
        assert download.suggested_filename == "investigation.csv"
        text = Path(await download.path()).read_text()  # noqa: ASYNC240
        rows = list(csv.reader(io.StringIO(text)))
        assert [r[1] for r in rows if r[0] == "#verdict"] == [verdict]
        per_state = {r[1]: int(r[2]) for r in rows if r[0] == "#state"}
        assert per_state == {"CA": 3, "NY": 2, "unknown": 1}
        async with page.expect_download() as info:
            await page.get_by_role("button", name="Printable page (HTML)").click()
        printable = Path(await (await info.value).path()).read_text()  # noqa: ASYNC240
        assert printable.startswith("<!DOCTYPE html>")
        assert verdict in printable
        assert all(csp == CSP for _, _, csp in watch.console_answers())
        assert watch.dialogs == []


async def test_a_scope_that_matches_nothing_warns(console: Console, emitted: Emitted) -> None:
    async with browser() as context:
        page = await context.new_page()
        await sign_in(page, console, "investigator")
        await page.goto(f"{console.url}/console/investigations")
        ghost = f"rad003.brenan.{emitted.run}"
        await fill_scope(page, f"{emitted.user}, {ghost}", emitted.since, emitted.until)
        warning = page.locator(".message.warning")
        assert await warning.count() == 1
        assert f"no events for user {ghost}" in await warning.inner_text()
        # Nobody at all: the verdict says so instead of "0 individuals, no notice".
        await fill_scope(page, ghost, emitted.since, emitted.until)
        verdict = await page.locator("[data-verdict]").inner_text()
        assert verdict.startswith("No events matched this scope")
        assert f"no events for user {ghost}" in await page.locator(".message.warning").inner_text()
        await page.screenshot(path=str(SHOTS / "investigation-empty.png"), full_page=True)


async def test_the_accounting_of_disclosures_as_a_letter(
    console: Console, emitted: Emitted
) -> None:
    async with browser() as context:
        page = await context.new_page()
        await sign_in(page, console, "auditor")
        await nav(page).get_by_role("link", name="Disclosures").click()
        await page.get_by_label("Patient id").fill(emitted.disclosed_patient)
        await page.get_by_role("button", name="Show the accounting").click()
        await page.wait_for_url(f"**/console/patients/{emitted.disclosed_patient}/disclosures")
        letter = page.locator("article.letter")
        await letter.get_by_text(FACILITY_NAME).wait_for()
        assert FACILITY_CONTACT in await letter.inner_text()
        # Two disclosures to one recipient for one purpose: one line, "2 disclosures".
        rows = page.locator("table.disclosures tbody tr")
        assert await rows.count() == 1
        text = await rows.first.inner_text()
        assert "Harbor Law" in text
        assert "2 disclosures, the last on" in text
        today = datetime.now(UTC)
        assert f"{today.day} {today:%B} {today.year}" in text  # a readable date
        assert "We disclosed your health information 2 times" in await letter.inner_text()
        # Technical references only in the appendix.
        appendix = page.locator("section.appendix")
        assert await appendix.locator("code").count() >= 4
        assert "#" not in text
        await page.screenshot(path=str(SHOTS / "disclosures.png"), full_page=True)
        await page.emulate_media(media="print")
        assert not await page.get_by_role("navigation", name="Console").is_visible()
        assert not await page.locator("button.verify").first.is_visible()
        await page.emulate_media(media="screen")


async def test_the_relays_page_shows_a_missed_deadline(console: Console, emitted: Emitted) -> None:
    async with browser() as context:
        page = await context.new_page()
        watch = Watch(page)
        await sign_in(page, console, "auditor")
        await nav(page).get_by_role("link", name="Relays").click()
        await page.get_by_label("Facility").fill(emitted.facility)
        await page.get_by_role("button", name="Show").click()
        await page.wait_for_url(f"**facility={emitted.facility}**")
        headline = await page.locator("[data-headline]").inner_text()
        assert headline.startswith("2 relays identified")
        assert "1 met the deadline, 1 missed it (communicated late)" in headline
        cat1 = page.locator('table.categories tr[data-category="CAT1"]')
        assert await cat1.locator('td[data-label="Missed"]').inner_text() == "1"
        assert await cat1.locator('td[data-label="Deadline"]').inner_text() == "30 minutes"
        missed = page.locator("table.exceptions tbody tr")
        assert await missed.count() == 1
        assert await missed.first.get_attribute("data-event-id") == str(emitted.relays[0].event_id)
        assert "50 minutes" in await missed.first.inner_text()
        # The chart is drawn by the server: one orange bar for the missed deadline.
        chart = page.locator("figure.relay-chart svg")
        assert await chart.locator('rect[fill="#e36209"] title').count() == 1
        await page.screenshot(path=str(SHOTS / "relays.png"), full_page=True)
        await page.get_by_label("Count per").select_option("month")
        await page.get_by_role("button", name="Show").click()
        await page.wait_for_url("**per=month**")
        assert await page.locator("table.periods tr[data-category=CAT1]").count() == 1
        assert all(csp == CSP for _, _, csp in watch.console_answers())


async def test_a_role_without_the_permission_sees_no_link_and_is_refused(
    console: Console, emitted: Emitted
) -> None:
    async with browser() as context:
        page = await context.new_page()
        await sign_in(page, console, "investigator")
        for name in ("Disclosures", "Relays"):
            assert await nav(page).get_by_role("link", name=name).count() == 0
        for path in (
            "/console/relays",
            f"/console/patients/{emitted.disclosed_patient}/disclosures",
        ):
            answer = await page.goto(f"{console.url}{path}")
            assert answer.status == 403
            await page.get_by_role("heading", name="Not for your role").wait_for()
    async with browser() as context:
        page = await context.new_page()
        await sign_in(page, console, "auditor")
        assert await nav(page).get_by_role("link", name="Breach investigation").count() == 0
        answer = await page.goto(f"{console.url}/console/investigations")
        assert answer.status == 403
        # A forged POST (no CSRF token) is refused before anything is computed.
        forged = await context.request.post(
            f"{console.url}/console/investigations",
            form={"users": emitted.user, "since": emitted.since, "until": emitted.until},
            max_redirects=0,
        )
        assert forged.status == 403
