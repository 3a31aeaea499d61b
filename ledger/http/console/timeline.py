"""The timeline chart: accesses per day, stacked by action or by user, as SVG shapes.

Invariant: pure layout (no I/O); every label is data for an autoescaping template, and
the drawing needs no script and no inline style (colours are classes of console.css).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from ledger.audit.query import AccessEntry

WIDTH: Final = 960
HEIGHT: Final = 240
_LEFT, _BOTTOM, _TOP = 48, 36, 12
#: Series shown by name; the rest are summed as "others".
MAX_SERIES: Final = 6
#: Most days drawn (the newest).
MAX_DAYS: Final = 180
ACTION_NAMES: Final = {
    "C": "Create",
    "R": "Read",
    "U": "Update",
    "D": "Delete",
    "E": "Execute",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    series: int
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Chart:
    bars: tuple[Bar, ...]
    legend: tuple[str, ...]
    ticks: tuple[tuple[float, str], ...]
    peak: int
    days: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT


def series_of(entry: AccessEntry, by: str) -> str:
    if by == "user":
        return entry.user_id
    return ACTION_NAMES.get(entry.action or "", "Other")


def chart(entries: Iterable[AccessEntry], *, by: str) -> Chart:
    rows = [(e.event_time.date(), series_of(e, by)) for e in entries]
    if not rows:
        return Chart(bars=(), legend=(), ticks=(), peak=0, days=0, total=0)
    top = [name for name, _ in Counter(s for _, s in rows).most_common(MAX_SERIES)]
    named = {name: i for i, name in enumerate(top)}
    legend = (*top, "others") if len(named) < len({s for _, s in rows}) else tuple(top)
    last = max(d for d, _ in rows)
    first = max(min(d for d, _ in rows), last - timedelta(days=MAX_DAYS - 1))
    days = (last - first).days + 1
    counts: Counter[tuple[date, int]] = Counter(
        (d, named.get(s, MAX_SERIES)) for d, s in rows if d >= first
    )
    per_day = Counter[date]()
    for (d, _), n in counts.items():
        per_day[d] += n
    peak = max(per_day.values())
    plot_w, plot_h = WIDTH - _LEFT - 8, HEIGHT - _BOTTOM - _TOP
    slot = plot_w / days
    bars = []
    for offset in range(days):
        d = first + timedelta(days=offset)
        base = float(HEIGHT - _BOTTOM)
        for series in sorted({s for (day, s) in counts if day == d}):
            n = counts[(d, series)]
            h = plot_h * n / peak
            base -= h
            name = legend[min(series, len(legend) - 1)]
            width = min(max(slot - 2, 1.0), 40.0)
            bars.append(
                Bar(
                    x=_LEFT + offset * slot + (slot - width) / 2,
                    y=base,
                    width=width,
                    height=h,
                    series=min(series, MAX_SERIES),
                    title=f"{d.isoformat()}: {n} by {name}",
                )
            )
    step = max(1, days // 8)
    ticks = tuple(
        (_LEFT + (i + 0.5) * slot, (first + timedelta(days=i)).strftime("%m-%d"))
        for i in range(0, days, step)
    )
    return Chart(
        bars=tuple(bars), legend=legend, ticks=ticks, peak=peak, days=days, total=len(rows)
    )
