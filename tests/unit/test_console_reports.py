"""The console's report pages in-process: breach investigation (form, CSRF, verdict,
thresholds, warnings, downloads), the accounting letter and the relays over time; roles
hidden and refused; every view recorded like the API's read.

The report port computes with the real report builders over rows given here; the
browser tests (tests/e2e/test_console_reports.py) drive the real ledger."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.audit.auth import Role
from ledger.audit.query import LedgerPosition
from ledger.audit.reports import (
    DEFAULT_RELAY_DEADLINES,
    CheckpointRef,
    DisclosureAccounting,
    InvestigationReport,
    InvestigationScope,
    PatientRef,
    RelayReport,
    Sealed,
)
from ledger.audit.reports.disclosures import build_disclosures
from ledger.audit.reports.investigation import build_investigation
from ledger.audit.reports.relays import build_relay_report
from ledger.audit.reports.rows import AccessRow, RecipientRef, RelayRow
from ledger.audit.reports.sealed import seal
from ledger.http import create_app
from ledger.http.console import ConsoleConfig
from ledger.http.console.relaychart import default_start, periods
from ledger.http.console.render import CSP
from ledger.http.openapi import document
from tests.unit.test_console import HOSTILE, Reader, Recorder, Tokens, csrf_of, sign_in

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
COURT = RecipientRef(name="County court")


def pos(n: int) -> LedgerPosition:
    return LedgerPosition(log_id=1, origin="test/log", leaf_index=n)


def access(n: int, *, user: str = "rad003", state: str | None = "CA", **kw: Any) -> AccessRow:
    fields: dict[str, Any] = {"action": "R", "outcome": "SUCCESS", "purpose_of_use": "TREAT"}
    return AccessRow(
        event_id=uuid.UUID(int=n), kind="phi_access", event_time=T0 + timedelta(hours=n),
        position=pos(n), facility_id="FAC1", patient_id=f"P-{n}", user_id=user,
        patient_state=state, **{**fields, **kw},
    )  # fmt: skip


class Source:
    """The report port over fixed rows, computed by the real builders."""

    def __init__(self) -> None:
        self.access = [access(1), access(2, state="NY"), access(3, state=None, user=HOSTILE)]
        self.access += [
            access(10 + i, user="clerk", purpose_of_use="LEGAL", recipient=COURT) for i in range(3)
        ]
        self.relays = [
            RelayRow(
                event_id=uuid.UUID(int=100), event_time=T0, position=pos(100),
                facility_id="FAC1", patient_id="P-R", study_uid="1.2.3", category="CAT1",
                identified_at=T0, communicated_at=T0 + timedelta(minutes=45), read_back=True,
                method="PHONE", sender_user_id="rad003", recipient_name="Dr Who",
                recipient_role="ordering",
            )
        ]  # fmt: skip
        self.relay_calls: list[tuple[datetime, datetime]] = []

    async def sealed_investigation(
        self, scope: InvestigationScope, *, threshold: int = 500, as_of: Any = None
    ) -> Sealed[InvestigationReport]:
        return seal(build_investigation(scope, self.access, checkpoints=()), ())

    async def sealed_disclosures(
        self, patient: PatientRef, *, now: datetime | None = None, lookback_years: int = 6,
        summarise_repeated: bool = False, as_of: Any = None,
    ) -> Sealed[DisclosureAccounting]:  # fmt: skip
        rows = [r.__class__(**{**_fields(r), "patient_id": patient.id}) for r in self.access[3:]]
        report = build_disclosures(patient, rows, now=now or T0 + timedelta(days=30),
                                   lookback_years=lookback_years)  # fmt: skip
        return seal(report, ())

    async def sealed_relays(
        self, *, start: datetime, end: datetime, now: datetime | None = None,
        deadlines: Mapping[str, timedelta] = DEFAULT_RELAY_DEADLINES,
        facility: str | None = None, as_of: Sequence[CheckpointRef] | None = None,
    ) -> Sealed[RelayReport]:  # fmt: skip
        self.relay_calls.append((start, end))
        report = build_relay_report(self.relays, start=start, end=end, now=now or end,
                                    deadlines=deadlines, facility=facility)  # fmt: skip
        return seal(report, ())

    async def sealed_compliance(self, **kw: Any) -> Any:
        raise NotImplementedError


def _fields(r: AccessRow) -> dict[str, Any]:
    return {k: getattr(r, k) for k in r.__dataclass_fields__}


@pytest.fixture
async def console() -> AsyncIterator[tuple[TestClient[Any, Any], Tokens, Recorder, Source]]:
    tokens, recorder, source = Tokens(), Recorder(), Source()
    app = create_app(
        reader=cast(Any, Reader([])), tokens=tokens, recorder=recorder, openapi=document(),
        report_source=cast(Any, source),
        console=ConsoleConfig(facility_name="Lakeside Imaging", facility_contact="privacy@x.test"),
    )  # fmt: skip
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield client, tokens, recorder, source
    finally:
        await client.close()


SCOPE = {"users": "rad003, nobody.here", "facility": "", "network_addresses": "",
         "since": "2026-03-01", "until": "2026-03-05"}  # fmt: skip


async def test_an_investigation_opens_with_the_verdict_and_warns_of_unmatched_users(
    console: Any,
) -> None:
    client, tokens, recorder, _ = console
    csrf = await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    async with client.get("/console/") as resp:
        html = await resp.text()
        assert 'href="/console/investigations"' in html
        assert 'href="/console/relays"' not in html
    async with client.post("/console/investigations", data={**SCOPE, "csrf": csrf}) as resp:
        html = await resp.text()
        assert resp.status == 200, html
        assert resp.headers["Content-Security-Policy"] == CSP
    assert "2 people in 2 states; below both 500 thresholds" in html
    assert "Warning: no events for user nobody.here from 1 March 2026" in html
    assert 'data-state="CA"' in html
    assert 'data-state="NY"' in html
    assert html.count('class="verify"') == 2
    assert 'href="/console/patients/P-1"' in html  # on to the patient's history
    read = recorder.reads[-1]
    assert (read.subject, read.method, read.path, read.status) == (
        "ivy", "POST", "/console/investigations", 200)  # fmt: skip
    assert read.parameters["scope.users"] == "rad003,nobody.here"
    assert read.results == 2
    # The CSV download carries the verdict and the per-state counts.
    async with client.post(
        "/console/investigations", data={**SCOPE, "csrf": csrf, "format": "csv"}
    ) as resp:
        assert resp.headers["Content-Disposition"] == 'attachment; filename="investigation.csv"'
        rows = list(csv.reader(io.StringIO(await resp.text())))
    assert any(r[:1] == ["#verdict"] and r[1].startswith("2 people in 2 states") for r in rows)


async def test_an_investigation_needs_the_csrf_token_and_a_valid_scope(console: Any) -> None:
    client, tokens, recorder, _ = console
    csrf = await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    async with client.post("/console/investigations", data={**SCOPE, "csrf": "forged"}) as resp:
        assert resp.status == 403
    assert recorder.reads[-1].status == 403
    bad = {**SCOPE, "users": "", "csrf": csrf}
    async with client.post("/console/investigations", data=bad) as resp:
        assert resp.status == 400
        assert "needs at least one selector" in await resp.text()
    assert recorder.reads[-1].status == 400


async def test_a_scope_matching_nothing_says_so(console: Any) -> None:
    client, tokens, _, _ = console
    csrf = await sign_in(client, tokens.add(Role.ADMIN, "ada"))
    scope = {**SCOPE, "users": "rad999", "csrf": csrf}
    async with client.post("/console/investigations", data=scope) as resp:
        html = await resp.text()
    assert "No events matched this scope" in html
    assert "Warning: no events for user rad999" in html


async def test_the_auditor_gets_no_investigation_but_the_letter_and_the_relays(
    console: Any,
) -> None:
    client, tokens, recorder, source = console
    await sign_in(client, tokens.add(Role.AUDITOR, "otto"))
    async with client.get("/console/") as resp:
        html = await resp.text()
        assert 'href="/console/investigations"' not in html
        assert 'href="/console/disclosures"' in html
    async with client.get("/console/investigations") as resp:
        assert resp.status == 403
    async with client.get("/console/disclosures?patient=P-9", allow_redirects=False) as resp:
        assert resp.headers["Location"] == "/console/patients/P-9/disclosures"
    async with client.get("/console/patients/P-9/disclosures?at=2026-04-01") as resp:
        html = await resp.text()
        assert resp.status == 200, html
    assert "Lakeside Imaging" in html
    assert "Questions about this accounting: privacy@x.test" in html
    assert '2 March 2026<br><span class="repeat">3 disclosures, the last on 2 March 2026' in html
    assert "Appendix: technical references" in html
    read = recorder.reads[-1]
    assert (read.patient_id, read.results) == ("P-9", 3)
    async with client.get("/console/patients/P-9/disclosures?format=pdf") as resp:
        assert resp.status == 400
    assert (recorder.reads[-1].status, recorder.reads[-1].patient_id) == (400, "P-9")
    async with client.get("/console/relays?per=week&since=2026-02-23&until=2026-03-09") as resp:
        html = await resp.text()
        assert resp.status == 200, html
    assert source.relay_calls[1:] == [
        (datetime(2026, 2, 23, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)),
        (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 9, tzinfo=UTC)),
    ]
    assert "1 relay identified" in html
    assert "45 minutes" in html
    assert "missed the deadline (communicated late)" in html
    assert '<svg xmlns="http://www.w3.org/2000/svg"' in html
    async with client.get("/console/relays?since=2020-01-01&until=2026-01-01") as resp:
        assert resp.status == 400


async def test_the_investigator_gets_no_compliance_pages(console: Any) -> None:
    client, tokens, _, _ = console
    await sign_in(client, tokens.add(Role.INVESTIGATOR, "ivy"))
    for path in ("/console/relays", "/console/disclosures", "/console/patients/P-1/disclosures"):
        async with client.get(path) as resp:
            assert resp.status == 403, path
            assert "Not for your role" in await resp.text()


def test_periods_are_weeks_or_months_cut_to_the_window() -> None:
    start, end = datetime(2026, 1, 14, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC)
    months = periods(start, end, "month")
    assert [p.label for p in months] == ["2026-01", "2026-02", "2026-03"]
    assert (months[0].start, months[-1].end) == (start, end)
    assert default_start(datetime(2026, 12, 6, 16, tzinfo=UTC), "week") == datetime(
        2026, 9, 14, tzinfo=UTC
    )
    assert default_start(datetime(2026, 1, 6, tzinfo=UTC), "month") == datetime(
        2025, 8, 1, tzinfo=UTC
    )


def test_csrf_of_is_shared() -> None:
    assert csrf_of('<input name="csrf" value="abc">') == "abc"
