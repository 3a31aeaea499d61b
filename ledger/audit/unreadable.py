"""Which detached periods an answer over a time range could not read.

Invariant: pure. A detached period's events held event times in ``[first_event_time,
last_event_time]`` (both inclusive; late events make the span wider than its month; an
end not recorded counts as open); an answer over ``[since, until)`` (either side open)
could not read the period when the two overlap; an answer without any range names every
detached period, one with a range never names a period that held no event. The list is
ordered by period and is part of every answer over time (docs/api.md "Answers over
archived periods").
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError

#: The state of a period whose events, leaves and tiles left the database.
DETACHED: Final = "detached"
_LABEL: Final = re.compile(r"[0-9]{4}-[0-9]{2}(-[0-9]{2})?")
_HEX: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class UnreadablePeriod:
    """A period an answer could not read: its label ("2021-03"), its state, the SHA-256
    (hex) of its archive bundle's manifest, and the span of its events' times (None when
    it held none)."""

    period: str
    state: str
    archive: str
    first_event_time: datetime | None
    last_event_time: datetime | None

    def __post_init__(self) -> None:
        if not _LABEL.fullmatch(self.period):
            raise MalformedInputError(f"not a period label: {self.period[:20]!r}")
        if not _HEX.fullmatch(self.archive):
            raise MalformedInputError("an archive digest is 64 lowercase hex digits")
        first, last = self.first_event_time, self.last_event_time
        if first is not None and last is not None and last < first:
            raise MalformedInputError(f"period {self.period}: events span is not a range")

    def overlaps(self, since: datetime | None, until: datetime | None) -> bool:
        """Whether an answer over ``[since, until)`` may have needed this period's events.
        A span with one end unknown is taken as open on that side (named, not missed)."""
        if since is None and until is None:
            return True
        first, last = self.first_event_time, self.last_event_time
        if first is None and last is None:
            return False
        return (since is None or last is None or last >= since) and (
            until is None or first is None or first < until
        )


def unreadable(
    detached: Iterable[UnreadablePeriod], since: datetime | None, until: datetime | None
) -> tuple[UnreadablePeriod, ...]:
    """The detached periods an answer over ``[since, until)`` could not read, by period."""
    return tuple(sorted((p for p in detached if p.overlaps(since, until)), key=lambda p: p.period))


def through(instant: datetime) -> datetime:
    """The exclusive end of a range that includes ``instant`` (a report's inclusive end)."""
    return instant + timedelta(microseconds=1)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.isoformat()


def periods_json(periods: Iterable[UnreadablePeriod]) -> list[JsonValue]:
    """The ``unreadable_periods`` of an answer's JSON (``events_until`` is inclusive)."""
    return [
        {
            "period": p.period,
            "state": p.state,
            "archive": p.archive,
            "events_from": _iso(p.first_event_time),
            "events_until": _iso(p.last_event_time),
        }
        for p in periods
    ]


def period_cells(p: UnreadablePeriod) -> tuple[str, ...]:
    """A period as text cells: label, state, archive digest, first and last event time."""
    return (p.period, p.state, p.archive, _iso(p.first_event_time) or "",
            _iso(p.last_event_time) or "")  # fmt: skip


def banner(periods: Iterable[UnreadablePeriod]) -> str | None:
    """One sentence naming what an answer does not include, or None when it is complete:
    "This answer does not include 2021-03 (archived; bundle sha256 ab12…)."."""
    named = [
        f"{p.period} ({'archived' if p.state == DETACHED else p.state}; bundle sha256 {p.archive})"
        for p in periods
    ]
    if not named:
        return None
    return f"This answer does not include {', '.join(named)}."


def header_value(periods: Iterable[UnreadablePeriod]) -> str:
    """The ``Unreadable-Periods`` response header: the labels, comma-separated."""
    return ", ".join(p.period for p in periods)
