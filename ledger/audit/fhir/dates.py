"""The FHIR ``date`` search parameter: a prefix and a date(Time) of any precision.

Invariant: a ``date`` parameter stands for the half-open range ``[since, until)`` of the
instants ``recorded`` may take (None = unbounded); a date of some precision covers its whole
year, month, day or fraction of a second, and an offset beyond +-14:00 is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from ledger.audit.fhir.params import bad_parameter, parameter_text

__all__ = ["DateBound", "DatePrefix", "date_bound"]

DatePrefix = Literal["eq", "ge", "gt", "le", "lt"]
_PREFIXES: Final[Mapping[str, DatePrefix]] = {p: p for p in ("eq", "ge", "gt", "le", "lt")}
_UNSUPPORTED_PREFIXES: Final[frozenset[str]] = frozenset({"ne", "sa", "eb", "ap"})
_DATE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?"
)
_MAX_TIME = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class DateBound:
    """One ``date`` parameter: the instants ``recorded`` may take are ``[since, until)``."""

    prefix: DatePrefix
    value: str
    since: datetime | None
    until: datetime | None


def _add_months(when: datetime, months: int) -> datetime:
    total = when.year * 12 + when.month - 1 + months
    return when.replace(year=total // 12, month=total % 12 + 1)


def _offset(tz: str) -> timedelta:
    """The UTC offset of ``Z`` or ``+hh:mm`` / ``-hh:mm``."""
    if tz == "Z":
        return timedelta(0)
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    if hours > 14 or minutes > 59 or (hours == 14 and minutes):
        raise bad_parameter("date", "time zone offset must be between -14:00 and +14:00")
    return timedelta(hours=hours, minutes=minutes) * (-1 if tz[0] == "-" else 1)


def _start(m: re.Match[str]) -> datetime:
    """The first instant of the matched date(Time), in UTC."""
    year = int(m["year"])
    month = int(m["month"] or 1)
    day = int(m["day"] or 1)
    try:
        if m["hour"] is None:
            return datetime(year, month, day, tzinfo=UTC)
        offset = _offset(m["tz"])
        fraction = m["fraction"] or ""
        micros = int(fraction.ljust(6, "0")) if fraction else 0
        local = datetime(
            year, month, day, int(m["hour"]), int(m["minute"]), int(m["second"]), micros
        )
        return (local - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise bad_parameter("date", "is not a calendar date and time") from exc


def _date_range(value: str) -> tuple[datetime, datetime | None]:
    """The half-open range of instants a FHIR date(Time) of some precision stands for."""
    if "T" in value and " " in value:
        raise bad_parameter(
            "date", "a time zone offset '+hh:mm' must be percent-encoded as %2B in a URL"
        )
    m = _DATE.fullmatch(value)
    if m is None:
        raise bad_parameter(
            "date",
            "must be YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.ffffff](Z|+hh:mm|-hh:mm)",
        )
    start = _start(m)
    try:
        if m["month"] is None:
            end: datetime | None = start.replace(year=int(m["year"]) + 1)
        elif m["day"] is None:
            end = _add_months(start, 1)
        elif m["hour"] is None:
            end = start + timedelta(days=1)
        else:
            end = start + timedelta(microseconds=10 ** (6 - len(m["fraction"] or "")))
    except (ValueError, OverflowError):
        end = None  # past datetime.max: unbounded above
    return start, end


def date_bound(raw: str) -> DateBound:
    """One ``date`` parameter value, prefix (default ``eq``) and date(Time)."""
    value = parameter_text("date", raw)
    prefix = value[:2]
    if prefix.isalpha():
        if prefix in _UNSUPPORTED_PREFIXES:
            raise bad_parameter(
                "date", f"prefix {prefix!r} is not supported; use ge, gt, le, lt or eq"
            )
        if prefix not in _PREFIXES:
            raise bad_parameter("date", "prefix must be one of ge, gt, le, lt, eq")
        value = value[2:]
    else:
        prefix = "eq"
    if "," in value:
        raise bad_parameter(
            "date", "alternatives (commas) are not supported; repeat date to AND bounds"
        )
    start, end = _date_range(value)
    since: datetime | None
    until: datetime | None
    if prefix == "eq":
        since, until = start, end
    elif prefix == "ge":
        since, until = start, None
    elif prefix == "gt":
        since, until = (end, None) if end is not None else (_MAX_TIME, _MAX_TIME)
    elif prefix == "le":
        since, until = None, end
    else:  # lt
        since, until = None, start
    return DateBound(prefix=_PREFIXES[prefix], value=value, since=since, until=until)
