"""Time shards of a log: which period a Kafka record belongs to, and its log's origin.

Invariant: a period is a half-open UTC interval ``[start, end)`` of whole days, aligned to
calendar months (``MONTH``) or days (``DAY``); every instant lies in exactly one period of
a given length, ``period_of`` is monotone in time, and ``label`` is unique per period
within one length. Pure: docs/design/periods.md says why logs are sharded this way.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final

from ledger.errors import MalformedInputError

__all__ = [
    "Period",
    "PeriodLength",
    "parse_label",
    "period_of",
    "period_of_ms",
    "split_origin",
]

_MONTH_LABEL: Final = re.compile(r"([0-9]{4})-([0-9]{2})")
_DAY_LABEL: Final = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")


class PeriodLength(enum.StrEnum):
    """How long one log of a partition grows before it is sealed (``LEDGER_PERIOD``)."""

    MONTH = "month"
    DAY = "day"


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    """``[start, end)`` in UTC; ``start`` is the first day, ``end`` the day after the last."""

    start: date
    length: PeriodLength

    def __post_init__(self) -> None:
        if self.length is PeriodLength.MONTH and self.start.day != 1:
            raise MalformedInputError(f"a month period starts on day 1, not {self.start}")

    @property
    def end(self) -> date:
        if self.length is PeriodLength.DAY:
            return self.start + timedelta(days=1)
        year, month = divmod(self.start.month, 12)
        return date(self.start.year + year, month + 1, 1)

    @property
    def label(self) -> str:
        """``2027-01`` for a month, ``2027-01-31`` for a day: the origin's last part."""
        if self.length is PeriodLength.DAY:
            return self.start.isoformat()
        return f"{self.start.year:04d}-{self.start.month:02d}"

    def contains(self, instant: datetime) -> bool:
        return self.start <= _utc_day(instant) < self.end


def _utc_day(instant: datetime) -> date:
    if instant.tzinfo is None:
        raise MalformedInputError("a period needs an aware datetime")
    return instant.astimezone(UTC).date()


def period_of(instant: datetime, length: PeriodLength) -> Period:
    """The period of ``length`` that holds ``instant`` (aware)."""
    day = _utc_day(instant)
    start = day if length is PeriodLength.DAY else day.replace(day=1)
    return Period(start=start, length=length)


def period_of_ms(timestamp_ms: int, length: PeriodLength) -> Period:
    """The period of a Kafka record timestamp (milliseconds since the epoch, UTC)."""
    return period_of(datetime.fromtimestamp(timestamp_ms / 1000, UTC), length)


def parse_label(text: str) -> Period:
    """``2027-01`` (a month) or ``2027-01-31`` (a day), as ``ledger archive`` takes them."""
    try:
        if m := _MONTH_LABEL.fullmatch(text):
            return Period(start=date(int(m[1]), int(m[2]), 1), length=PeriodLength.MONTH)
        if m := _DAY_LABEL.fullmatch(text):
            return Period(start=date(int(m[1]), int(m[2]), int(m[3])), length=PeriodLength.DAY)
    except ValueError as exc:
        raise MalformedInputError(f"{text!r} is not a real month or day") from exc
    raise MalformedInputError(f"{text!r} is not a period: use YYYY-MM or YYYY-MM-DD")


def split_origin(origin: str) -> tuple[str, str | None]:
    """``(<ledger>/<topic>/<partition>, period label)`` of a log's origin; the label is None
    for a log made before logs were sharded (its origin ends at the partition)."""
    base, _, last = origin.rpartition("/")
    if base and (_MONTH_LABEL.fullmatch(last) or _DAY_LABEL.fullmatch(last)):
        return base, last
    return origin, None
