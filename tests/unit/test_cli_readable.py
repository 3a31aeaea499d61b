"""The CLI's readable renderers, on API answers: history (CSV, self-audit filter, the
empty warning), investigate (warnings, the sentence), disclosures (the letter), relays
(minutes where the deadline is in minutes) and status (lag, unsigned leaves)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from ledger.audit.reports import RecipientRef, build_disclosures, to_html
from ledger.pg.status import LogIngestion
from ledgerctl.accounting import Letterhead, letter
from ledgerctl.histories import (
    CSV_COLUMNS,
    History,
    HistoryRequest,
    csv_text,
    empty_warning,
    hide_self_audit,
    readable_row,
)
from ledgerctl.investigation import scope_warnings, sentence, summary_lines, verdict_of
from ledgerctl.relays import category_row, exception_row, headline, month_window
from ledgerctl.status import combine, row, summary
from tests.unit.test_reports import NOW, PATIENT, export


def entry(kind: str = "phi_access", **kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "event_id": "e1",
        "kind": kind,
        "time": "2026-12-06T14:05:00+00:00",
        "user": {"id": "rad001", "name": "=HYPERLINK(1)", "role": "radiologist"},
        "event": {"name": "DICOM Instances Accessed"},
        "action": "R",
        "outcome": "SUCCESS",
        "purpose_of_use": "TREAT",
        "patient": {"id": "MRN1", "issuer": "h"},
        "study": {"uid": "1.2", "accession": "A1"},
        "facility": "f",
        "network_address": "10.0.0.1",
        "attribution": "named",
        "ledger": {"origin": "x.ledger/phi-access/0", "leaf_index": 7},
    }
    return base | kw


def test_history_rows_spell_the_codes_out() -> None:
    cells = readable_row(entry(), with_patient=True)
    assert cells[4:8] == ["viewed", "succeeded", "treatment", "named"]
    assert cells[8] == "MRN1 (h)"
    assert cells[-1] == "phi-access/0#7"
    self_audit = readable_row(entry("audit_log_used", purpose_of_use=None), with_patient=False)
    assert self_audit[3].endswith("(ledger self-audit)")
    assert self_audit[6] == "not recorded"


def test_history_csv_has_codes_and_words_and_neutralises_formulas() -> None:
    rows = list(csv.reader(io.StringIO(csv_text([entry()]))))
    assert tuple(rows[0]) == CSV_COLUMNS
    cells = dict(zip(rows[0], rows[1], strict=True))
    assert (cells["action"], cells["action_code"]) == ("viewed", "R")
    assert (cells["purpose"], cells["purpose_code"]) == ("treatment", "TREAT")
    assert cells["user_name"] == "'=HYPERLINK(1)"
    assert (cells["origin"], cells["leaf_index"]) == ("x.ledger/phi-access/0", "7")


def test_hiding_self_audit_rows_counts_them_and_an_empty_history_warns() -> None:
    req = HistoryRequest(subject="user", id="rad003.brenan", since="2026-01-01T00:00:00Z")
    assert empty_warning(req, History(entries=[], pages=1)) == (
        "no events for user rad003.brenan since 2026-01-01T00:00:00Z"
    )
    found = History(entries=[entry("audit_log_used"), entry()], pages=2)
    assert empty_warning(req, found) is None
    kept = hide_self_audit(found)
    assert (len(kept.entries), kept.hidden, kept.pages) == (1, 1, 2)
    only_reads = hide_self_audit(History(entries=[entry("audit_log_used")], pages=1))
    assert empty_warning(req, only_reads) == (
        "no events for user rad003.brenan since 2026-01-01T00:00:00Z "
        "except 1 ledger self-audit row (hidden)"
    )
    study = HistoryRequest(subject="study", id="1.2", qualifier="A1")
    assert study.describe() == "study 1.2 (accession A1)"


def _report(timeline: list[dict[str, object]], **notification: object) -> dict[str, object]:
    return {
        "scope": {
            "start": "2026-01-01T00:00:00+00:00",
            "end": "2026-02-01T00:00:00+00:00",
            "users": ["rad001", "rad003.brenan"],
            "facility": None,
            "network_addresses": [],
        },
        "notification": {"individuals": 1, "unknown_state": 0, "threshold": 500} | notification,
        "states": [{"state": "MA", "residents": 1}],
        "timeline": timeline,
        "patients": [],
    }


def test_investigate_warns_per_selector_and_computes_the_sentence_if_missing() -> None:
    seen = {"user_id": "rad001", "facility_id": "f", "network_address": "10.0.0.1"}
    report = _report([seen])
    assert scope_warnings(report) == [
        "no events for user rad003.brenan from 2026-01-01T00:00:00+00:00 "
        "until 2026-02-01T00:00:00+00:00"
    ]
    assert sentence(report).startswith("1 person in 1 state; below both 500 thresholds")
    assert summary_lines(report)[0] == sentence(report)
    assert sentence(report | {"summary": "as the API said"}) == "as the API said"
    empty = _report([], individuals=0) | {"states": []}
    warnings = scope_warnings(empty)
    assert [w.split(" from ")[0] for w in warnings] == [
        "no events for user rad001",
        "no events for user rad003.brenan",
    ]
    lines = summary_lines(empty)
    assert lines[0].startswith("No events matched this scope")
    assert not any("HHS" in line for line in lines)  # no verdict on nothing


def test_the_verdict_of_an_exported_report() -> None:
    body = b'patient_id,issuer\r\nA,h\r\n#verdict,"1 person; below"\r\n#digest,sha256:x\r\n'
    assert verdict_of(body, "csv") == "1 person; below"
    assert verdict_of(b'{"summary": "s"}', "json") == "s"
    assert verdict_of(b"<html>", "html") is None


def test_the_accounting_letter_groups_repeats_and_keeps_references_in_the_appendix() -> None:
    accounting = {
        "patient": {"id": "MRN1", "issuer": "h"},
        "period_start": "2020-12-06T00:00:00+00:00",
        "requested_at": "2026-12-06T10:00:00+00:00",
        "needs_review": 1,
        "entries": [
            {
                "date": "2026-03-12T09:00:00+00:00",
                "last_date": "2026-05-20T09:00:00+00:00",
                "count": 5,
                "recipient": {"name": "Dr Counsel", "organization": None, "address": "1 Main"},
                "description": "CT images",
                "purpose": "Judicial or administrative proceedings",
                "purpose_code": "LEGAL",
                "citation": "45 CFR 164.512(e)",
                "needs_review": True,
                "sources": [
                    {"event_id": "ev-1", "time": "t", "ledger": {"origin": "o", "leaf_index": 3}}
                ],
            }
        ],
    }
    text = "\n".join(letter(accounting, Letterhead(name="St Mary's", contact="617-555-0100")))
    assert text.index("St Mary's") < text.index("Patient: MRN1")
    assert "Questions: 617-555-0100" in text
    assert "Period: 6 December 2020 to 6 December 2026" in text
    assert "1. 5 times, from 12 March 2026 to 20 May 2026" in text
    assert "DRAFT: 1 entry needs review" in text
    body, appendix = text.split("Appendix: technical references")
    assert "ev-1" not in body
    assert "LEGAL" not in body
    assert "ev-1 at o#3" in appendix
    nothing = letter(
        {**accounting, "entries": [], "needs_review": 0}, Letterhead(name=None, contact=None)
    )
    assert any("set LEDGER_FACILITY_NAME" in line for line in nothing)
    assert any("no disclosures" in line for line in nothing)
    assert not any("Appendix" in line for line in nothing)


def test_the_printable_accounting_has_readable_dates_and_an_appendix() -> None:
    shown = export(recipient=RecipientRef(name="Dr Counsel", address="1 Main", organization=None))
    page = to_html(build_disclosures(PATIENT, [shown], now=NOW))
    table, appendix = page.split("Appendix: audit record references")
    assert str(shown.event_id) not in table
    assert str(shown.event_id) in appendix
    assert f"<td>{shown.event_time.day} " in table  # "12 March 2026", not 2026-03-12


def test_month_window_and_the_relay_headline() -> None:
    assert month_window("2026-12") == (
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    with pytest.raises(ValueError, match="YYYY-MM"):
        month_window("2026-13")
    report = {
        "relays": 3,
        "categories": [{"on_time": 1, "late": 1, "overdue": 1, "pending": 0}],
    }
    assert headline(report, "December 2026", "north") == (
        "3 relays identified in December 2026 at north: 1 met the deadline, 1 missed it "
        "(communicated late), 1 overdue (not communicated, deadline passed), 0 pending."
    )
    assert headline({"relays": 0}, "May 2026", None).startswith("No critical-result relays")


def test_relay_durations_are_in_the_deadline_unit() -> None:
    cat1 = {
        "category": "CAT1",
        "deadline_seconds": 1800.0,
        "relays": 2,
        "on_time": 1,
        "late": 1,
        "identified_to_communicated": {"median_seconds": 600.0, "p90_seconds": 2700.0},
    }
    cells = category_row(cat1)
    assert cells[:4] == ["Category 1 (minutes: direct verbal contact)", "30 minutes", "2", "1"]
    assert cells[-2:] == ["10 minutes", "45 minutes"]
    late = {
        "category": "CAT2",
        "deadline_seconds": 21600.0,
        "identified_at": "2026-12-06T14:05:00+00:00",
        "communicated_at": "2026-12-06T21:05:00+00:00",
        "delay_seconds": 25200.0,
        "issues": ["late", "no-read-back"],
        "recipient": {"name": "Dr A", "role": "ordering-physician"},
        "ledger": {"origin": "x/critical-result-relay/1", "leaf_index": 4},
    }
    cells = exception_row(late)
    assert cells[0] == "6 December 2026, 14:05 UTC"
    assert cells[1] == "Category 2"
    assert cells[4:6] == ["7 hours", "6 hours"]
    assert cells[6] == "missed the deadline (communicated late); no read-back recorded"
    assert exception_row(late | {"communicated_at": None})[4] == "not communicated"


def test_status_rows_show_the_lag_and_unknown_is_never_zero() -> None:
    log = LogIngestion(
        origin="x/phi-access/0",
        topic="phi-access",
        partition=0,
        next_offset=90,
        size=80,
        checkpoint_size=70,
        checkpoint_age=timedelta(minutes=12),
    )
    rows = combine([log], {("phi-access", 0): 100, ("phi-access", 1): 5}, ["phi-access"])
    assert [(r.partition, r.lag) for r in rows] == [(0, 10), (1, 5)]
    assert row(rows[0])[2:] == ["100", "90", "10", "80", "70", "10", "12 minutes ago"]
    assert row(rows[1])[5] == "no log yet"
    said = summary(rows, stale=timedelta(minutes=1))
    assert said[0] == "15 records not ingested yet, in 2 partitions"
    assert said[1].startswith("x/phi-access/0: 10 unsigned leaves, last checkpoint 12 minutes ago")
    unknown = combine([log], None, ["phi-access"])
    assert row(unknown[0])[2:5] == ["unknown", "90", "unknown"]
    assert summary(unknown, stale=timedelta(hours=1)) == [
        "Kafka's end offsets could not be read: the lag is unknown"
    ]
    current = combine([log], {("phi-access", 0): 90}, ["phi-access"])
    assert summary(current, stale=timedelta(hours=1)) == ["ingestion is up to date"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["history"], "exactly one of"),
        (["history", "MRN1", "--user", "rad001"], "exactly one of"),
        (["history", "--user", "rad001", "--issuer", "h"], "--issuer goes with a patient id"),
        # A patient and an accession: two subjects, not a narrowed patient history.
        (["history", "MRN1", "--accession", "A1"], "exactly one of"),
        (["history", "--user", "rad001", "--accession", "A1"], "exactly one of"),
        (["relays", "--month", "2026-13"], "month must be YYYY-MM"),
        (["relays", "--month", "December"], "month must be YYYY-MM"),
    ],
)
def test_refused_before_any_request(args: list[str], message: str) -> None:
    from typer.testing import CliRunner

    from ledgerctl.cli import app

    result = CliRunner().invoke(app, args, env={"LEDGER_API_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 1
    assert message in " ".join(result.output.split())


def test_repeat_disclosures_are_grouped_unless_under_review() -> None:
    from ledgerctl.accounting import grouped

    def one(day: int, *, review: bool = False, to: str = "Dr Counsel") -> dict[str, object]:
        return {
            "date": f"2026-03-{day:02}T09:00:00+00:00",
            "last_date": f"2026-03-{day:02}T09:00:00+00:00",
            "count": 1,
            "recipient": {"name": to, "address": "1 Main"},
            "purpose": "Public health activities",
            "purpose_code": "PUBHLTH",
            "needs_review": review,
            "sources": [{"event_id": f"ev-{day}"}],
        }

    out = grouped([one(1), one(2, to="DPH"), one(5), one(6, review=True), one(9)])
    assert [(e["date"][:10], e["count"]) for e in out] == [  # type: ignore[index]
        ("2026-03-01", 3),
        ("2026-03-02", 1),
        ("2026-03-06", 1),
    ]
    assert out[0]["last_date"] == "2026-03-09T09:00:00+00:00"
    assert [s["event_id"] for s in out[0]["sources"]] == ["ev-1", "ev-5", "ev-9"]  # type: ignore[index,union-attr]


def test_the_printable_accounting_groups_repeats_the_json_does_not() -> None:
    from ledger.audit.reports import to_json

    to = RecipientRef(name="DPH", address="250 Washington St", organization=None)
    first = export(recipient=to, purpose_of_use="PUBHLTH")
    again = export(
        recipient=to, purpose_of_use="PUBHLTH", event_time=first.event_time + timedelta(days=2)
    )
    accounting = build_disclosures(PATIENT, [first, again], now=NOW)
    assert len(to_json(accounting)["entries"]) == 2  # type: ignore[arg-type]
    page = to_html(accounting)
    assert page.count("<tr><td>") == 1
    assert "2 disclosures, the last on" in page
    appendix = page.split("Appendix: audit record references")[1]
    assert str(first.event_id) in appendix
    assert str(again.event_id) in appendix
