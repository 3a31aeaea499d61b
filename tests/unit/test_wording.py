"""Plain words for codes and verdicts (ledger.audit.wording), and the breach report's
opening sentence in its JSON, CSV and printable page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ledger.audit import wording
from ledger.audit.reports import build_investigation, to_html, to_json
from ledger.audit.reports.sealed import seal, sealed_html
from ledger.audit.wording import BreachCounts, breach_sentence
from tests.unit.test_reports import access, checkpoint, scope


@pytest.mark.parametrize(
    ("fn", "code", "words"),
    [
        (wording.purpose, "TREAT", "treatment"),
        (wording.purpose, "BTG", "emergency access (break the glass)"),
        (wording.purpose, "LEGAL", "legal proceedings or law enforcement"),
        (wording.purpose, "XYZ", "XYZ"),
        (wording.purpose, None, "not recorded"),
        (wording.action, "R", "viewed"),
        (wording.action, "E", "ran"),
        (wording.action, "", "not recorded"),
        (wording.outcome, "SUCCESS", "succeeded"),
        (wording.outcome, "8", "failed (serious)"),
        (wording.outcome, "MAJOR_FAILURE", "failed (major)"),
        (wording.relay_state, "late", "missed the deadline (communicated late)"),
        (wording.relay_state, "overdue", "overdue (not communicated, deadline passed)"),
        (wording.relay_state, "pending", "pending (not communicated, deadline not yet passed)"),
        (wording.relay_state, "no-read-back", "no read-back recorded"),
        (wording.category, "CAT1", "Category 1 (minutes: direct verbal contact)"),
        (wording.category, "CAT9", "CAT9"),
        (wording.kind, "audit_log_used", "ledger read (self-audit)"),
    ],
)
def test_codes_are_spelled_out_and_unknown_codes_kept(fn, code, words) -> None:  # type: ignore[no-untyped-def]
    assert fn(code) == words


def test_every_purpose_code_the_accounting_knows_is_spelled_out() -> None:
    from ledger.audit.reports import PURPOSE_RULES

    assert set(PURPOSE_RULES) <= set(wording.PURPOSES)


def test_dates_and_durations_read_as_people_say_them() -> None:
    t = datetime(2026, 12, 6, 14, 5, tzinfo=UTC)
    assert wording.date(t) == "6 December 2026"
    assert wording.when(t) == "6 December 2026, 14:05 UTC"
    assert wording.when(t.astimezone(timezone(timedelta(hours=-5)))).endswith("09:05 UTC-05:00")
    assert wording.when(None) == "not recorded"
    assert wording.duration(timedelta(minutes=30)) == "30 minutes"
    assert wording.duration(timedelta(minutes=1)) == "1 minute"
    assert wording.duration(timedelta(seconds=90)) == "1.5 minutes"
    assert wording.duration(timedelta(seconds=20)) == "20 seconds"
    assert wording.duration(timedelta(hours=6), unit="hours") == "6 hours"
    assert wording.duration(timedelta(days=3), unit="days") == "3 days"
    assert wording.duration(None) == "none"
    with pytest.raises(ValueError, match="unit"):
        wording.duration(timedelta(1), unit="weeks")
    assert wording.deadline_unit(timedelta(minutes=30)) == "minutes"
    assert wording.deadline_unit(timedelta(hours=6)) == "hours"
    assert wording.deadline_unit(timedelta(days=3)) == "days"


def _states(n: int, each: int = 1) -> dict[str, int]:
    return {f"S{i:02}": each for i in range(n)}


@pytest.mark.parametrize(
    ("counts", "sentence"),
    [
        (
            BreachCounts(individuals=12, states={**_states(9), "MA": 3}),
            "12 people in 10 states; below both 500 thresholds: enter in the annual HHS log; "
            "no media notice",
        ),
        (
            BreachCounts(individuals=1, states={"MA": 1}),
            "1 person in 1 state; below both 500 thresholds: enter in the annual HHS log; "
            "no media notice",
        ),
        (
            BreachCounts(individuals=500, states={"MA": 500}),
            "500 people in 1 state; 500 or more people: notify HHS now; no state over 500: "
            "no media notice",
        ),
        (
            BreachCounts(individuals=601, states={"MA": 501, "RI": 100}),
            "601 people in 2 states; 500 or more people: notify HHS now; media notice in MA",
        ),
        (
            BreachCounts(individuals=4, states={}, unknown_state=4),
            "4 people, none with a recorded state; below both 500 thresholds: enter in the "
            "annual HHS log; no media notice",
        ),
        (
            BreachCounts(individuals=3, states={"MA": 3}, unlisted=597),
            "3 people in 1 state, and 597 more not listed by truncated answers; below both 500 "
            "thresholds: enter in the annual HHS log; no media notice; up to 600 people if the "
            "unlisted patients are counted: HHS notice possible, identify them; media notice "
            "possible in MA",
        ),
        (
            BreachCounts(individuals=0, states={}, events=3),
            "0 people; no one affected: no notice (the events did not reach patient data)",
        ),
    ],
)
def test_the_breach_sentence(counts: BreachCounts, sentence: str) -> None:
    assert breach_sentence(counts) == sentence


def test_a_scope_that_matched_nothing_is_never_a_silent_no_notice() -> None:
    sentence = breach_sentence(BreachCounts(individuals=0, states={}, events=0))
    assert sentence.startswith("No events matched this scope")
    assert "0 people" not in sentence


def test_no_match_warnings_name_each_selector_that_matched_nothing() -> None:
    assert wording.no_match_warnings(
        users=["rad003.brenan", "rad001"],
        facility="north",
        addresses=["10.0.0.9"],
        seen_users=["rad001"],
        seen_facilities=["south"],
        seen_addresses=[],
    ) == [
        "no events for user rad003.brenan",
        "no events for facility north",
        "no events from address 10.0.0.9",
    ]
    assert wording.no_match_warnings(users=["a"], seen_users=["a"]) == []


def test_the_investigation_opens_with_its_sentence_in_json_and_printable_html() -> None:
    hostile = access(patient_id="<script>x</script>", patient_state="MA", user_id="rad<b>")
    plain = access(patient_id="MRN7", patient_state="RI")
    in_scope = scope(users=("rad001", "rad<b>"))
    report = build_investigation(in_scope, [hostile, plain], checkpoints=[checkpoint()])
    body = to_json(report)
    assert body["summary"] == (
        "2 people in 2 states; below both 500 thresholds: enter in the annual HHS log; "
        "no media notice"
    )
    page = to_html(report)
    assert page.index(str(body["summary"])) < page.index("Affected residents by state")
    assert "<script>" not in page
    assert "rad&lt;b&gt;" in page
    assert "&lt;script&gt;x&lt;/script&gt;" in page
    assert "Appendix" in page
    assert "viewed" in page  # action R spelled out
    sealed = sealed_html(seal(report, (checkpoint(),)))
    assert "Content digest: sha256:" in sealed
    assert sealed.endswith("</body>\n</html>\n")


def test_an_empty_investigation_page_says_nothing_matched() -> None:
    report = build_investigation(scope(), [], checkpoints=[])
    assert to_json(report)["summary"] == breach_sentence(
        BreachCounts(individuals=0, states={}, events=0)
    )
    assert "No events matched this scope." in to_html(report)
