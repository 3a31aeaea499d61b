"""What every export shares: the report union, times and durations as values.

Invariant: times are ISO 8601 (UTC, as the reports hold them), durations are seconds.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from ledger.audit.reports.disclosures import DisclosureAccounting
from ledger.audit.reports.investigation import InvestigationReport
from ledger.audit.reports.relays import RelayReport

Report = InvestigationReport | DisclosureAccounting | RelayReport


def iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()
