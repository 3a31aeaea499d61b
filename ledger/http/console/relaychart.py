"""Critical-result relays over time: the periods (weeks or months) of a window, and the
chart of deadlines met, missed, overdue and pending per ACR category, as SVG shapes.

Invariant: pure layout (no I/O); the numbers are the relay report's own
(``CategoryStats`` of one report per period), every label is data for an autoescaping
template, and the drawing needs no script and no inline style.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from ledger.audit.reports import CategoryStats
from ledger.errors import MalformedInputError

#: Most periods one page computes (one relay report each).
MAX_PERIODS: Final = 60
#: Periods shown when no ``since`` is given.
DEFAULT_PERIODS: Final = {"week": 12, "month": 6}
#: The four outcomes of a relay, in stacking order, with their words.
STATES: Final = (
    ("on_time", "met the deadline"),
    ("late", "missed (communicated late)"),
    ("overdue", "overdue (not communicated)"),
    ("pending", "pending"),
)
WIDTH: Final = 960
PANEL: Final = 150
_LEFT, _TOP, _GAP, _TITLE = 48, 28, 64, 20


@dataclass(frozen=True, slots=True, kw_only=True)
class Period:
    start: datetime
    end: datetime
    label: str


def period_start(value: datetime, per: str) -> datetime:
    """The start of the week (Monday, 00:00 UTC) or month ``value`` falls in."""
    day = value.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if per == "month":
        return day.replace(day=1)
    return day - timedelta(days=day.weekday())


def _next(start: datetime, per: str) -> datetime:
    if per == "week":
        return start + timedelta(days=7)
    return start.replace(year=start.year + 1, month=1) if start.month == 12 else (
        start.replace(month=start.month + 1)
    )  # fmt: skip


def default_start(end: datetime, per: str) -> datetime:
    """The start of the ``DEFAULT_PERIODS[per]``-th period back from ``end``'s."""
    start = period_start(end - timedelta(microseconds=1), per)
    for _ in range(DEFAULT_PERIODS[per] - 1):
        start = period_start(start - timedelta(days=1), per)
    return start


def periods(start: datetime, end: datetime, per: str) -> tuple[Period, ...]:
    """The weeks or months covering [start, end), each cut to the window."""
    if per not in ("week", "month"):
        raise MalformedInputError("per must be week or month")
    out: list[Period] = []
    edge = period_start(start, per)
    while edge < end:
        nxt = _next(edge, per)
        label = f"{edge:%Y-%m}" if per == "month" else f"week of {edge:%Y-%m-%d}"
        out.append(Period(start=max(edge, start), end=min(nxt, end), label=label))
        if len(out) > MAX_PERIODS:
            raise MalformedInputError(
                f"the window spans more than {MAX_PERIODS} {per}s; shorten it or count per month"
            )
        edge = nxt
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    state: int
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Panel:
    category: str
    title: str
    top: float
    peak: int
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    panels: tuple[Panel, ...]
    legend: tuple[str, ...]
    width: int
    height: int
    total: int


def chart(
    labels: Sequence[str], rows: Sequence[Sequence[CategoryStats]], names: dict[str, str]
) -> Chart:
    """One panel per ACR category: a stacked bar per period (``rows[i]`` holds period
    ``i``'s statistics per category), met / missed / overdue / pending."""
    categories = sorted({c.category for row in rows for c in row})
    plot_w = WIDTH - _LEFT - 8
    slot = plot_w / max(len(labels), 1)
    step = max(1, len(labels) // 8)
    panels = []
    for n, category in enumerate(categories):
        top = _TOP + n * (PANEL + _GAP)
        stats = [next((c for c in row if c.category == category), None) for row in rows]
        peak = max((_total(c) for c in stats if c is not None), default=0)
        bars: list[Bar] = []
        for i, c in enumerate(stats):
            if c is None or peak == 0:
                continue
            base = float(top + _TITLE + PANEL)
            width = min(max(slot - 4, 2.0), 48.0)
            for k, (field, words) in enumerate(STATES):
                count = int(getattr(c, field))
                if not count:
                    continue
                height = PANEL * count / peak
                base -= height
                bars.append(Bar(x=_LEFT + i * slot + (slot - width) / 2, y=base, width=width,
                                height=height, state=k,
                                title=f"{labels[i]}: {count} {words}"))  # fmt: skip
        ticks = tuple(
            (_LEFT + (i + 0.5) * slot, labels[i].removeprefix("week of "))
            for i in range(0, len(labels), step)
        )
        panels.append(Panel(category=category, title=names.get(category, category), top=top,
                            peak=peak, bars=tuple(bars), ticks=ticks))  # fmt: skip
    height = _TOP + len(panels) * (PANEL + _GAP) + 24
    total = sum(_total(c) for row in rows for c in row)
    return Chart(panels=tuple(panels), legend=tuple(w for _, w in STATES), width=WIDTH,
                 height=height, total=total)  # fmt: skip


def _total(c: CategoryStats) -> int:
    return c.on_time + c.late + c.overdue + c.pending
