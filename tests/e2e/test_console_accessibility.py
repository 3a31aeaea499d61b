"""The console for people who do not use a mouse, read on a phone, or need a screen
reader, in a real browser (Debian's Chromium, driven by Playwright) against a real
`ledger serve` and consumer: an investigator who holds only an accession number finds the
study, sees exactly the events that name it and verifies one, with the keyboard alone;
axe-core (bundled with axe-playwright-python, nothing fetched) finds no violation of WCAG
2.1 A/AA on any page; the history tables need no sideways scrolling at 1280 px and 390 px;
and when the ledger's database goes away the page says so plainly.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import pytest

from producers.events import Actor, EventAction, Facility, Patient, PhiAccessEvent, Study
from tests.e2e.conftest import Pipeline, serving_api, wait_for_events
from tests.e2e.test_console_browser import browser
from tests.tcp_relay import TcpRelay

pytestmark = pytest.mark.e2e

#: The rules axe checks: WCAG 2.0 and 2.1, levels A and AA.
WCAG: dict[str, Any] = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]},
    "resultTypes": ["violations"],
}


@dataclass
class Console:
    url: str
    tokens: dict[str, str]
    relay: TcpRelay


@pytest.fixture(scope="module")
def console(pipeline: Pipeline) -> Iterator[Console]:
    """A `ledger serve` of its own whose reads of PostgreSQL go through a relay the
    test can cut (the last test does)."""
    stack = pipeline.stack
    reader = urlsplit(pipeline.env["LEDGER_READER_URL"])
    with TcpRelay(reader.hostname or "127.0.0.1", reader.port or 5432) as relay:
        netloc = reader.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{relay.port}"
        relayed = urlunsplit(
            reader._replace(netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host)
        )
        env = {
            "LEDGER_READER_URL": relayed,
            "LEDGER_PRODUCER_KEY_FILE": stack.producer_key("ledger-api-console-a11y"),
            "LEDGER_FHIR_PRODUCER_KEY_FILE": stack.producer_key("ledger-fhir-console-a11y"),
        }
        with serving_api(pipeline, env, "console-a11y-api.log") as url:
            yield Console(url, dict(stack.tokens), relay)


@dataclass
class Emitted:
    patient: str
    user: str
    study: str
    accession: str
    #: The events that name the accession number.
    named: set[str]


@pytest.fixture(scope="module")
async def emitted(console: Console, pipeline: Pipeline) -> Emitted:
    run = secrets.token_hex(3)
    patient, user = f"MRN-A11Y-{run}", f"rad.a11y.{run}"
    study, accession = f"1.2.826.0.1.17.{int(run, 16)}", f"ACC-A11Y-{run}"
    facility, actor = Facility(id=f"a11y-{run}"), Actor(user_id=user, role="radiologist")

    def access(action: EventAction, with_accession: bool) -> PhiAccessEvent:
        return PhiAccessEvent(
            facility=facility, actor=actor, dicom_event_id="110110", action=action,
            patient=Patient(id=patient, state="OR"),
            study=Study(uid=study, accession=accession if with_accession else None),
            purpose_of_use="TREAT", network_address="10.9.8.7",
        )  # fmt: skip

    # Two events name the accession; a third names the study without it.
    events = [
        access(EventAction.READ, True),
        access(EventAction.UPDATE, True),
        access(EventAction.READ, False),
    ]
    async with pipeline.emitter(f"e2e-a11y-{run}") as emitter:
        for e in events:
            await emitter.emit(e)
        await emitter.flush()
    ids = [str(e.event_id) for e in events]
    headers = {"Authorization": f"Bearer {console.tokens['admin']}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(10)) as http:
        await wait_for_events(http, pipeline, ids)
    return Emitted(patient=patient, user=user, study=study, accession=accession, named=set(ids[:2]))


async def focused(page: Any) -> str:
    """The focused element, as ``tag#id[name=value]`` (enough to tell fields apart)."""
    return str(
        await page.evaluate(
            """() => { const e = document.activeElement;
                return `${e.tagName.toLowerCase()}#${e.id}[${e.name || ''}=${e.value || ''}]`
                     + `(${(e.textContent || '').trim().slice(0, 40)})`; }"""
        )
    )


async def tab_to(page: Any, fragment: str, *, most: int = 60) -> str:
    """Press Tab until the focused element's description contains ``fragment``; fails
    when it cannot be reached from the keyboard."""
    seen = []
    for _ in range(most):
        await page.keyboard.press("Tab")
        now = await focused(page)
        if fragment in now:
            # The focus is visible: the console draws an outline on every focused control.
            outline = await page.evaluate("() => getComputedStyle(document.activeElement)"
                                          ".outlineStyle")  # fmt: skip
            assert outline != "none", f"{now} has no visible focus"
            return now
        seen.append(now)
    raise AssertionError(f"{fragment!r} is not reachable with Tab; focus went {seen}")


async def shown_ids(page: Any) -> set[str]:
    return set(
        await page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    )


async def test_an_accession_alone_finds_the_study_and_verifies_with_the_keyboard(
    console: Console, emitted: Emitted
) -> None:
    async with browser() as context:
        page = await context.new_page()
        await page.goto(f"{console.url}/console/")
        assert urlsplit(page.url).path == "/console/sign-in"
        await tab_to(page, "input#token")
        await page.keyboard.type(console.tokens["investigator"])
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"{console.url}/console/")
        await tab_to(page, "(Search)")
        await page.keyboard.press("Enter")
        await page.wait_for_url("**/console/search")
        # The radio group is one Tab stop; the arrow keys move within it.
        await tab_to(page, "input#[kind=patient]")
        for _ in range(3):
            await page.keyboard.press("ArrowDown")
        assert "[kind=accession]" in await focused(page)
        await tab_to(page, "input#q")
        await page.keyboard.type(emitted.accession)
        await page.keyboard.press("Enter")
        await page.wait_for_url(f"**/console/accessions/{emitted.accession}")
        await page.get_by_role("heading", name=f"Accession number {emitted.accession}").wait_for()
        # Exactly the events that name the accession (the API's own read of this page
        # names no accession, so no self-audit row is in it).
        assert await shown_ids(page) == emitted.named
        # Verify the newest entry from the keyboard.
        button = await tab_to(page, "button#verify-")
        await page.keyboard.press("Enter")
        event_id = button.split("#verify-", 1)[1].split("[", 1)[0]
        result = page.locator(f'output[for="verify-{event_id}"]')
        await page.wait_for_function(
            "e => e.textContent.startsWith('verified') || e.textContent.startsWith('not')",
            arg=await result.element_handle(),
        )
        assert (await result.inner_text()).startswith("verified: entry ")
        # The study's page, one link away, shows the event without the accession too.
        await page.get_by_role("link", name=emitted.study).first.click()
        await page.wait_for_url(f"**/console/studies/{emitted.study}")
        assert emitted.named < await shown_ids(page)


async def test_a_search_for_an_unknown_accession_says_so(console: Console) -> None:
    async with browser() as context:
        page = await context.new_page()
        await page.goto(f"{console.url}/console/sign-in")
        await page.get_by_label("Your API token").fill(console.tokens["investigator"])
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{console.url}/console/")
        await page.goto(f"{console.url}/console/search")
        await page.get_by_label("Accession number", exact=True).check()
        await page.get_by_label("Id, UID or accession number").fill("ACC-NOBODY-0")
        await page.get_by_role("button", name="Search").click()
        await page.wait_for_url("**/console/accessions/ACC-NOBODY-0")
        status = page.get_by_role("status")
        assert await status.inner_text() == "No events for accession ACC-NOBODY-0."


async def overflow(page: Any) -> int:
    """How many pixels the page, or its widest table, is wider than its box."""
    return int(
        await page.evaluate(
            """() => Math.max(document.documentElement.scrollWidth - window.innerWidth,
                ...[...document.querySelectorAll('.table-wrap')]
                   .map(w => w.scrollWidth - w.clientWidth))"""
        )
    )


async def violations(page: Any) -> list[str]:
    from axe_playwright_python.async_playwright import Axe

    found = await Axe().run(page, options=WCAG)
    return [
        f"{page.url}: {v['id']} ({v['impact']}): {v['help']}: "
        + "; ".join(n["html"][:120] for n in v["nodes"][:3])
        for v in found.response["violations"]
    ]


async def test_no_page_has_an_accessibility_violation_and_tables_fit(
    console: Console, emitted: Emitted
) -> None:
    histories = [
        f"/console/patients/{emitted.patient}",
        f"/console/users/{emitted.user}",
        f"/console/studies/{emitted.study}",
        f"/console/accessions/{emitted.accession}",
    ]
    pages = [
        "/console/",
        "/console/search",
        *histories,
        "/console/alerts",
        "/console/integrity",
        "/console/investigations",
        "/console/disclosures",
        f"/console/patients/{emitted.patient}/disclosures",
        "/console/relays",
    ]
    found: list[str] = []
    async with browser() as context:
        page = await context.new_page()
        await page.goto(f"{console.url}/console/sign-in")
        found += await violations(page)
        await page.get_by_label("Your API token").fill(console.tokens["admin"])
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{console.url}/console/")
        for path in pages:
            answer = await page.goto(f"{console.url}{path}")
            assert answer.status == 200, path
            found += await violations(page)
        # A breach investigation's report (a POST through its form).
        await page.goto(f"{console.url}/console/investigations")
        await page.get_by_label("Users (ids, separated by commas or spaces)").fill(emitted.user)
        today = datetime.now(UTC).date()
        await page.get_by_label("Since (date or time, UTC)").fill(str(today - timedelta(days=1)))
        await page.get_by_label("Until (not included)").fill(str(today + timedelta(days=1)))
        await page.get_by_role("button", name="Investigate").click()
        await page.get_by_role("heading", name="Verdict").wait_for()
        found += await violations(page)
        # Readable at a desktop's and a phone's width: no page and no table needs
        # sideways scrolling (the report above included).
        for width, height in ((1280, 900), (390, 844)):
            await page.set_viewport_size({"width": width, "height": height})
            assert await overflow(page) <= 0, (width, "investigation report")
            for path in pages:
                await page.goto(f"{console.url}{path}")
                assert await overflow(page) <= 0, (width, path)
                if width == 390 and path in histories:
                    # On a phone each cell is labelled by its column (the header is hidden).
                    label = await page.locator("tbody td").first.evaluate(
                        "td => getComputedStyle(td, '::before').content"
                    )
                    assert label == '"Time"', (path, label)
    assert found == []


async def test_a_page_says_plainly_when_the_ledger_is_unreachable(
    console: Console, emitted: Emitted
) -> None:
    """Run last in this module: it cuts the API's way to PostgreSQL for good."""
    async with browser() as context:
        page = await context.new_page()
        await page.goto(f"{console.url}/console/sign-in")
        await page.get_by_label("Your API token").fill(console.tokens["investigator"])
        await page.get_by_role("button", name="Sign in").click()
        await page.wait_for_url(f"{console.url}/console/")
        console.relay.cut()
        answer = await page.goto(f"{console.url}/console/patients/{emitted.patient}")
        assert answer.status == 503
        await page.get_by_role("heading", name="The ledger cannot be reached").wait_for()
        assert "Nothing is lost" in await page.get_by_role("alert").inner_text()
        assert await violations(page) == []
