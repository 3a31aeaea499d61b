"""``ledger relays --month``: critical-result relays of one month, per ACR category, in
words and in the unit each deadline is set in.

Invariant: every number is the API's (its relay report, which records the read); states
are spelled out (``ledger.audit.wording``) and durations are shown in the unit of their
category's deadline (a 30-minute deadline in minutes), never in raw seconds.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from ledger.audit import wording

Json = dict[str, object]


def month_window(month: str) -> tuple[datetime, datetime]:
    """``YYYY-MM`` -> [first instant of the month, first of the next), UTC; ValueError
    for anything else."""
    try:
        start = datetime.strptime(month, "%Y-%m").replace(tzinfo=UTC)
    except ValueError as exc:
        raise ValueError(f"month must be YYYY-MM, not {month!r}") from exc
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def _seconds(value: object) -> timedelta | None:
    return None if not isinstance(value, int | float) else timedelta(seconds=value)


def _list(value: object) -> list[Json]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0


def in_unit(seconds: object, deadline: timedelta | None) -> str:
    """A duration in the unit its deadline is set in."""
    return wording.duration_for(_seconds(seconds), deadline)


CATEGORY_COLUMNS = (
    "category",
    "deadline",
    "relays",
    "met the deadline",
    "missed (late)",
    "overdue",
    "pending",
    "no read-back",
    "median time to communicate",
    "90th percentile",
)


def category_row(c: Json) -> list[str]:
    deadline = _seconds(c.get("deadline_seconds"))
    unit = wording.deadline_unit(deadline)
    stats = cast(Json, c.get("identified_to_communicated") or {})
    return [
        wording.category(str(c.get("category"))),
        wording.duration(deadline, unit=unit) if deadline is not None else "none set",
        str(_int(c.get("relays"))),
        str(_int(c.get("on_time"))),
        str(_int(c.get("late"))),
        str(_int(c.get("overdue"))),
        str(_int(c.get("pending"))),
        str(_int(c.get("no_read_back"))),
        in_unit(stats.get("median_seconds"), deadline) if stats else "none communicated",
        in_unit(stats.get("p90_seconds"), deadline) if stats else "",
    ]


EXCEPTION_COLUMNS = (
    "identified",
    "category",
    "patient",
    "to",
    "took",
    "deadline",
    "what went wrong",
    "position",
)


def exception_row(x: Json) -> list[str]:
    deadline = _seconds(x.get("deadline_seconds"))
    recipient = cast(Json, x.get("recipient") or {})
    ledger = cast(Json, x.get("ledger") or {})
    identified = x.get("identified_at")
    took = (
        "not communicated"
        if x.get("communicated_at") is None
        else in_unit(x.get("delay_seconds"), deadline)
    )
    return [
        wording.when(datetime.fromisoformat(identified)) if isinstance(identified, str) else "",
        wording.category(str(x.get("category"))).split(" (")[0],
        str(x.get("patient_id") or ""),
        ", ".join(str(recipient.get(k)) for k in ("name", "role") if recipient.get(k)),
        took,
        wording.duration(deadline, unit=wording.deadline_unit(deadline)) if deadline else "",
        "; ".join(wording.relay_state(str(i)) for i in cast(list[object], x.get("issues") or [])),
        f"{str(ledger.get('origin', '')).split('/', 1)[-1]}#{ledger.get('leaf_index')}",
    ]


def headline(report: Json, month: str, facility: str | None) -> str:
    """One sentence: how many relays, how many met their deadline, missed, overdue, pending."""
    cats = _list(report.get("categories"))
    total = _int(report.get("relays"))
    where = f" at {facility}" if facility else ""
    if not total:
        return f"No critical-result relays were identified in {month}{where}."
    met, late, overdue, pending = (
        sum(_int(c.get(k)) for c in cats) for k in ("on_time", "late", "overdue", "pending")
    )
    return (
        f"{wording.count(total, 'relay')} identified in {month}{where}: {met} met the "
        f"deadline, {late} missed it (communicated late), {overdue} overdue (not "
        f"communicated, deadline passed), {pending} pending."
    )
