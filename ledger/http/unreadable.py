"""What an answer over time could not read: the detached periods its range overlaps.

Invariant: the detached periods are read after the answer's rows, so a period detached
while the answer was computed is named (detaching only ever adds periods); every answer
that reads the event index over a time range names them, in its body and in the
``Unreadable-Periods`` header (docs/api.md).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final, TypeVar

from aiohttp import web

from ledger.audit.reports import (
    ComplianceReport,
    DisclosureAccounting,
    InvestigationReport,
    RelayReport,
    Sealed,
    with_unreadable,
)
from ledger.audit.unreadable import UnreadablePeriod, header_value, unreadable
from ledger.http.common import READER

#: The response header naming (by label, comma-separated) the periods an answer lacks.
HEADER: Final = "Unreadable-Periods"
_R = TypeVar("_R", InvestigationReport, DisclosureAccounting, RelayReport, ComplianceReport)


async def unreadable_periods(
    request: web.Request, since: datetime | None, until: datetime | None
) -> tuple[UnreadablePeriod, ...]:
    """The detached periods an answer over ``[since, until)`` could not read."""
    return unreadable(await request.app[READER].detached_periods(), since, until)


async def sealed_unreadable(request: web.Request, sealed: Sealed[_R]) -> Sealed[_R]:
    """``sealed`` naming the detached periods its report could not read."""
    return with_unreadable(sealed, await request.app[READER].detached_periods())


def mark(response: web.StreamResponse, periods: tuple[UnreadablePeriod, ...]) -> None:
    """Name ``periods`` in the ``Unreadable-Periods`` header (none: no header)."""
    if periods:
        response.headers[HEADER] = header_value(periods)
