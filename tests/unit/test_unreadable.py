"""Which detached periods an answer over time could not read, and how each answer says so.

The overlap rule (``ledger.audit.unreadable``), the reports' sealed forms (JSON, CSV,
HTML), the FHIR searchset's outcome entry, the CLI's stderr lines and exit, and the API's
and console's history in-process with a stand-in reader (tests/e2e/test_unreadable_api.py
drives the real server and database).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import typer

from ledger.audit.fhir import searchset_bundle
from ledger.audit.fhir.outcomes import unreadable_outcome
from ledger.audit.reports import (
    build_disclosures,
    build_investigation,
    build_relay_report,
    digest,
    digest_of,
    seal,
    sealed_csv,
    sealed_html,
    sealed_json,
    with_unreadable,
)
from ledger.audit.reports.sealed import RELAY_READ_LAG, RELAY_READ_LEAD, event_range
from ledger.audit.unreadable import UnreadablePeriod, banner, header_value, unreadable
from ledger.errors import MalformedInputError
from tests.unit.test_console import console  # noqa: F401  (the in-process API and console)
from tests.unit.test_reports import NOW, PATIENT, T0, access, export, scope

DIGEST = "ab" * 32


FIRST = datetime(2021, 3, 1, tzinfo=UTC)
LAST = datetime(2021, 3, 31, 23, 59, tzinfo=UTC)


def period(
    label: str = "2021-03", first: datetime | None = FIRST, last: datetime | None = LAST
) -> UnreadablePeriod:
    return UnreadablePeriod(
        period=label, state="detached", archive=DIGEST, first_event_time=first,
        last_event_time=last,
    )  # fmt: skip


MARCH = period()
US = timedelta(microseconds=1)


# --------------------------------------------------------------------------- the rule


def test_a_range_overlapping_the_events_span_names_the_period() -> None:
    assert unreadable([MARCH], datetime(2021, 3, 10, tzinfo=UTC), datetime(2021, 4, 10, tzinfo=UTC))
    assert unreadable([MARCH], datetime(2021, 1, 1, tzinfo=UTC), datetime(2022, 1, 1, tzinfo=UTC))


def test_since_is_inclusive_and_until_exclusive_at_the_span_edges() -> None:
    assert unreadable([MARCH], LAST, None) == (MARCH,)  # since == the last event time
    assert unreadable([MARCH], LAST + US, None) == ()
    assert unreadable([MARCH], None, FIRST) == ()  # until == the first event time
    assert unreadable([MARCH], None, FIRST + US) == (MARCH,)
    assert unreadable([MARCH], FIRST - timedelta(days=9), FIRST) == ()


def test_open_ranges_and_no_range() -> None:
    empty = period("2021-05", None, None)
    assert unreadable([MARCH, empty], None, None) == (MARCH, empty)  # no range: every one
    assert unreadable([MARCH, empty], datetime(2020, 1, 1, tzinfo=UTC), None) == (MARCH,)
    assert unreadable([MARCH, empty], None, datetime(2030, 1, 1, tzinfo=UTC)) == (MARCH,)


def test_late_events_widen_the_span_past_the_month() -> None:
    late = period(last=datetime(2021, 4, 20, tzinfo=UTC))  # events of March recorded in April
    april = (datetime(2021, 4, 10, tzinfo=UTC), datetime(2021, 5, 1, tzinfo=UTC))
    assert unreadable([late], *april) == (late,)
    assert unreadable([MARCH], *april) == ()


def test_an_unrecorded_end_of_the_span_counts_as_open() -> None:
    no_last, no_first = period(last=None), period(first=None)
    assert unreadable([no_last], datetime(2030, 1, 1, tzinfo=UTC), None) == (no_last,)
    assert unreadable([no_last], None, FIRST) == ()
    assert unreadable([no_first], None, datetime(2000, 1, 1, tzinfo=UTC)) == (no_first,)
    assert unreadable([no_first], LAST + US, None) == ()


def test_no_detached_period_means_a_complete_answer_and_order_is_by_period() -> None:
    assert unreadable([], None, None) == ()
    jan, feb = period("2021-01"), period("2021-02")
    assert [p.period for p in unreadable([MARCH, jan, feb], None, None)] == [
        "2021-01", "2021-02", "2021-03",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("label", "archive", "first", "last"),
    [
        ("2021-3", DIGEST, None, None),
        ("March", DIGEST, None, None),
        ("2021-03", "AB" * 32, None, None),
        ("2021-03", "ab" * 31, None, None),
        ("2021-03", DIGEST, LAST, FIRST),
    ],
)
def test_a_malformed_period_is_refused(
    label: str, archive: str, first: datetime | None, last: datetime | None
) -> None:
    with pytest.raises(MalformedInputError):
        UnreadablePeriod(period=label, state="detached", archive=archive,
                         first_event_time=first, last_event_time=last)  # fmt: skip


def test_the_banner_and_header_name_each_period() -> None:
    feb = period("2021-02")
    assert banner([]) is None
    assert banner([feb, MARCH]) == (
        f"This answer does not include 2021-02 (archived; bundle sha256 {DIGEST}), "
        f"2021-03 (archived; bundle sha256 {DIGEST})."
    )
    assert header_value([feb, MARCH]) == "2021-02, 2021-03"


# --------------------------------------------------------------------------- reports


def test_each_report_is_checked_over_the_event_times_it_reads() -> None:
    inv = build_investigation(scope(), [access()], checkpoints=[])
    assert event_range(inv) == (inv.scope.start, inv.scope.end)
    acc = build_disclosures(PATIENT, [export()], now=NOW)
    assert event_range(acc) == (acc.period_start, NOW + US)  # the accounting includes now
    rel = build_relay_report([], start=T0, end=NOW, now=NOW)
    assert event_range(rel) == (T0 - RELAY_READ_LEAD, NOW + RELAY_READ_LAG)


def test_the_relay_margins_are_those_the_adapter_reads() -> None:
    from ledger.pg.reports import DEFAULT_RELAY_RECORD_LAG, RELAY_RECORD_LEAD

    assert (RELAY_READ_LEAD, RELAY_READ_LAG) == (RELAY_RECORD_LEAD, DEFAULT_RELAY_RECORD_LAG)


def _hit_and_miss() -> tuple[UnreadablePeriod, UnreadablePeriod]:
    inside = period("2026-01", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    before = period(
        "2025-10", datetime(2025, 10, 1, tzinfo=UTC), datetime(2025, 10, 31, tzinfo=UTC)
    )
    return inside, before


def test_a_sealed_report_names_what_it_could_not_read_in_its_digested_json() -> None:
    inside, before = _hit_and_miss()
    base = seal(build_investigation(scope(), [access()], checkpoints=[]), ())
    sealed = with_unreadable(base, [before, inside])
    assert sealed.unreadable == (inside,)
    body = json.loads(sealed_json(sealed))
    assert body["unreadable_periods"] == [
        {"period": "2026-01", "state": "detached", "archive": DIGEST,
         "events_from": "2026-01-05T11:00:00+00:00", "events_until": "2026-01-05T13:00:00+00:00"}
    ]  # fmt: skip
    assert json.loads(sealed_json(base))["unreadable_periods"] == []
    assert body["digest"] == digest_of(body) == digest(sealed) != digest(base)


def test_a_csv_opens_with_a_row_per_unreadable_period_and_a_complete_one_does_not() -> None:
    inside, _ = _hit_and_miss()
    base = seal(build_disclosures(PATIENT, [export()], now=NOW), ())
    complete = list(csv.reader(io.StringIO(sealed_csv(base))))
    assert not complete[0][0].startswith("#")
    acc = build_disclosures(PATIENT, [export()], now=NOW)
    hit = period("2026-02", NOW - timedelta(days=30), NOW - timedelta(days=20))
    rows = list(csv.reader(io.StringIO(sealed_csv(with_unreadable(seal(acc, ()), [hit])))))
    assert rows[0][:4] == ["#unreadable_period", "2026-02", "detached", DIGEST]
    assert rows[1] == complete[0]  # then the table's header, as before
    assert all(len(r) == len(rows[1]) for r in rows)
    assert inside.period not in sealed_csv(base)


def test_the_printable_page_opens_with_the_banner() -> None:
    acc = build_disclosures(PATIENT, [export()], now=NOW)
    hit = period("2026-02", NOW - timedelta(days=30), NOW - timedelta(days=20))
    page = sealed_html(with_unreadable(seal(acc, ()), [hit]))
    _, _, rest = page.partition("<body>\n")
    assert rest.startswith('<p class="unreadable" role="alert"')
    assert "This answer does not include 2026-02 (archived; bundle sha256" in rest
    assert "unreadable" not in sealed_html(seal(acc, ()))


# --------------------------------------------------------------------------- FHIR


def test_a_searchset_ends_with_an_outcome_entry_naming_each_period() -> None:
    assert unreadable_outcome([]) is None
    outcome = unreadable_outcome([MARCH])
    bundle: Any = searchset_bundle([], self_url="https://h/fhir/AuditEvent", next_url=None,
                                   total=0, outcome=outcome)  # fmt: skip
    (entry,) = bundle["entry"]
    assert entry["search"] == {"mode": "outcome"}
    assert entry["fullUrl"] == f"urn:uuid:{entry['resource']['id']}"  # R4: every entry has one
    assert unreadable_outcome([MARCH]) == outcome  # the same periods, the same id
    (issue,) = entry["resource"]["issue"]
    assert (issue["severity"], issue["code"]) == ("warning", "incomplete")
    assert (
        issue["diagnostics"]
        == f"This answer does not include 2021-03 (archived; bundle sha256 {DIGEST})."
    )
    with pytest.raises(MalformedInputError, match="OperationOutcome"):
        searchset_bundle([], self_url="/x", next_url=None, outcome={"resourceType": "Patient"})
    with pytest.raises(MalformedInputError, match="UUID id"):
        searchset_bundle([], self_url="/x", next_url=None,
                         outcome={"resourceType": "OperationOutcome", "id": "x"})  # fmt: skip


# --------------------------------------------------------------------------- the CLI


def test_the_cli_names_each_period_and_exits_3_when_completeness_is_required(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from ledgerctl.unreadable import INCOMPLETE, header_lines, merge, period_lines, say

    pages: list[dict[str, object]] = []
    march = {"period": "2021-03", "state": "detached", "archive": DIGEST,
             "events_from": "2021-03-01T00:00:00+00:00",
             "events_until": "2021-03-31T00:00:00+00:00"}  # fmt: skip
    merge(pages, [march])
    merge(pages, [march, {**march, "period": "2021-04"}])  # a later page names them again
    assert [p["period"] for p in pages] == ["2021-03", "2021-04"]
    lines = period_lines(pages)
    assert lines[0].startswith("incomplete: this answer does not include 2021-03 (detached;")
    assert DIGEST in lines[0]
    assert header_lines("2021-03, 2021-04") == [
        "incomplete: this answer does not include 2021-03 (detached)",
        "incomplete: this answer does not include 2021-04 (detached)",
    ]
    say(lines, require_complete=False)
    assert capsys.readouterr().err.count("incomplete:") == 2
    say([], require_complete=True)  # a complete answer passes
    with pytest.raises(typer.Exit) as exited:
        say(lines, require_complete=True)
    assert exited.value.exit_code == INCOMPLETE == 3


# --------------------------------------------------------------------------- in-process


async def test_the_history_answer_and_page_name_what_they_could_not_read(
    console: Any,  # noqa: F811  (the fixture of tests/unit/test_console.py)
) -> None:
    from ledger.audit.auth import Role
    from tests.unit.test_console import sign_in

    client, tokens, _, reader = console
    await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    async with client.get("/v1/patients/P-1/accesses") as resp:
        assert (await resp.json())["unreadable_periods"] == []
        assert "Unreadable-Periods" not in resp.headers
    async with client.get("/console/patients/P-1") as resp:
        assert "does not include" not in await resp.text()
    reader.detached = [MARCH]
    async with client.get("/v1/patients/P-1/accesses") as resp:
        body = await resp.json()
        assert resp.headers["Unreadable-Periods"] == "2021-03"
    assert [p["period"] for p in body["unreadable_periods"]] == ["2021-03"]
    async with client.get("/v1/patients/P-1/accesses?since=2021-04-01T00:00:00Z") as resp:
        assert (await resp.json())["unreadable_periods"] == []
    async with client.get("/console/patients/P-1/accesses.csv") as resp:
        assert resp.headers["Unreadable-Periods"] == "2021-03"
        rows = list(csv.reader(io.StringIO(await resp.text())))
    assert rows[0][:4] == ["#unreadable_period", "2021-03", "detached", DIGEST]
    assert rows[1][0] == "time"
    assert len(rows[0]) == len(rows[1])
    async with client.get("/console/patients/P-1") as resp:
        html = await resp.text()
    assert (
        '<p class="message warning unreadable" role="alert">This answer does not include '
        f"2021-03 (archived; bundle sha256 {DIGEST}).</p>"
    ) in html


async def test_the_console_report_pages_show_the_banner() -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from ledger.audit.auth import Role
    from ledger.http import create_app
    from ledger.http.console import ConsoleConfig
    from ledger.http.openapi import document
    from tests.unit.test_console import Reader, Recorder, Tokens, sign_in
    from tests.unit.test_console_reports import SCOPE, Source

    reader, tokens = Reader([]), Tokens()
    reader.detached = [period("2026-03", datetime(2026, 3, 1, tzinfo=UTC),
                              datetime(2026, 3, 31, tzinfo=UTC))]  # fmt: skip
    app = create_app(reader=reader, tokens=tokens, recorder=Recorder(), openapi=document(),
                     report_source=Source(), console=ConsoleConfig())  # type: ignore[arg-type]  # fmt: skip
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    said = f"This answer does not include 2026-03 (archived; bundle sha256 {DIGEST})."
    try:
        csrf = await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
        async with client.post("/console/investigations", data={**SCOPE, "csrf": csrf}) as resp:
            assert said in await resp.text()
        await sign_in(client, tokens.add(Role.AUDITOR, "aud"))
        async with client.get("/console/patients/P-9/disclosures") as resp:
            assert said in await resp.text()
        async with client.get("/console/relays?since=2026-03-01&until=2026-03-08") as resp:
            assert said in await resp.text()
        async with client.get("/console/relays?since=2026-06-01&until=2026-06-08") as resp:
            assert "does not include" not in await resp.text()
    finally:
        await client.close()


def test_the_reader_labels_a_month_by_its_first_day_and_anything_else_by_the_day() -> None:
    from datetime import date

    from ledger.pg.reader import _label

    assert _label(date(2021, 3, 1)) == "2021-03"
    assert _label(date(2021, 3, 15)) == "2021-03-15"
