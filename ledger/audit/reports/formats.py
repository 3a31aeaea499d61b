"""What every export shares: the report union, times and durations as values, CSV cells.

Invariant: times are ISO 8601 (UTC, as the reports hold them), durations are seconds; a
CSV cell that a spreadsheet would run as a formula is neutralised with a leading
apostrophe (OWASP "CSV injection").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

from ledger.audit.reports.compliance_model import ComplianceReport
from ledger.audit.reports.disclosures import DisclosureAccounting
from ledger.audit.reports.investigation import InvestigationReport
from ledger.audit.reports.relays import RelayReport
from ledger.audit.wording import BreachCounts, breach_sentence

Report = InvestigationReport | DisclosureAccounting | RelayReport | ComplianceReport

#: A cell starting with one of these is run as a formula by spreadsheet programs (OWASP
#: "CSV injection"); such cells get a leading apostrophe.
_FORMULA_PREFIXES: Final = ("=", "+", "-", "@", "\t", "\r")


def cell(value: object) -> str:
    """A CSV cell, neutralised if a spreadsheet would run it as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_PREFIXES) else text


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()


def investigation_summary(report: InvestigationReport) -> str:
    """The investigation's opening sentence (``ledger.audit.wording.breach_sentence``)."""
    return breach_sentence(
        BreachCounts(
            individuals=report.individuals,
            states={s.state: s.residents for s in report.states},
            unknown_state=report.unknown_state,
            unlisted=report.unlisted_patients,
            threshold=report.threshold,
            events=len(report.timeline),
        )
    )
