"""What a read of the ledger disclosed: ranges of ledger positions (docs/read-attribution.md).

Invariant: a ``Disclosure`` is canonical -- ranges sorted by (origin, start), half-open,
non-empty, neither overlapping nor adjacent -- and holds at most ``MAX_RANGES`` ranges.
Past that it is *coarsened*: each log's ranges become the one range covering them, a
superset of what was returned, so a read is never attributed to fewer patients than it
touched. The same canonical list is what an AuditLogUsed v2 event carries, what the
``read_disclosures`` table holds, and what the verifier compares with the leaf (``check``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

#: Most ranges one AuditLogUsed event carries (a page is at most 1000 entries).
MAX_RANGES: Final = 1000
#: The index-row column that renders a leaf's ``read_disclosures`` rows.
COLUMN: Final = "disclosed"
#: The only record type that discloses anything.
AUDIT_LOG_USED: Final = "philedger.audit.AuditLogUsed"


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class LeafRange:
    """Leaves ``start`` (inclusive) to ``end`` (exclusive) of the log ``origin``."""

    origin: str
    start: int
    end: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Disclosure:
    """The entries one answer returned; ``coarsened`` when widened past ``MAX_RANGES``."""

    ranges: tuple[LeafRange, ...] = ()
    coarsened: bool = False

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def union(self, other: Disclosure) -> Disclosure:
        merged = coalesce((*self.ranges, *other.ranges))
        if self.coarsened or other.coarsened:
            return Disclosure(ranges=merged.ranges, coarsened=True)
        return merged


NOTHING: Final = Disclosure()


def coalesce(ranges: Iterable[LeafRange]) -> Disclosure:
    """The canonical disclosure of any ranges (empty ones dropped), coarsened past the cap."""
    merged: list[LeafRange] = []
    for r in sorted(x for x in ranges if x.start < x.end):
        last = merged[-1] if merged else None
        if last is not None and last.origin == r.origin and r.start <= last.end:
            if r.end > last.end:
                merged[-1] = LeafRange(origin=last.origin, start=last.start, end=r.end)
            continue
        merged.append(r)
    if len(merged) <= MAX_RANGES:
        return Disclosure(ranges=tuple(merged))
    covering: dict[str, LeafRange] = {}
    for r in merged:
        first = covering.get(r.origin, r)
        covering[r.origin] = LeafRange(origin=r.origin, start=first.start, end=r.end)
    # More logs than MAX_RANGES cannot happen (a cursor pins at most 512 logs).
    return Disclosure(ranges=tuple(covering.values())[:MAX_RANGES], coarsened=True)


def of_positions(positions: Iterable[tuple[str, int]]) -> Disclosure:
    """The disclosure of single entries given as (origin, leaf index): ``coalesce`` of
    their one-leaf ranges, with runs found on the sorted pairs (a history page's hundred
    entries cost one range object per run, not per entry)."""
    runs: list[LeafRange] = []
    origin, start, end = "", -1, -1
    for o, i in sorted(set(positions)):
        if o == origin and i == end:
            end += 1
            continue
        if end > start >= 0:
            runs.append(LeafRange(origin=origin, start=start, end=end))
        origin, start, end = o, i, i + 1
    if end > start >= 0:
        runs.append(LeafRange(origin=origin, start=start, end=end))
    if len(runs) <= MAX_RANGES:
        # Already canonical: found on sorted unique pairs, a run ends where the next
        # position is not its end, so runs neither overlap nor touch.
        return Disclosure(ranges=tuple(runs))
    return coalesce(runs)


def whole_logs(sizes: Mapping[str, int]) -> Disclosure:
    """Everything of each log up to its size (an export): one range per log."""
    return coalesce(LeafRange(origin=o, start=0, end=n) for o, n in sizes.items())


# ------------------------------------------------------------------ AuditLogUsed v2 records


def from_record(record: Mapping[str, object]) -> tuple[LeafRange, ...]:
    """The ranges an AuditLogUsed record carries, as stored (a v1 record carries none).

    The consumer validated the record (canonical ranges, ``producers.events``) before it
    was appended; this never raises, and yields only the well-formed ranges it finds."""
    out: list[LeafRange] = []
    logs = record.get("disclosed")
    if not isinstance(logs, list):
        return ()
    for entry in logs:
        if not isinstance(entry, Mapping):
            continue
        origin, ranges = entry.get("log"), entry.get("ranges")
        if not isinstance(origin, str) or not isinstance(ranges, list):
            continue
        for r in ranges:
            if isinstance(r, Mapping):
                start, end = r.get("start"), r.get("end")
                if type(start) is int and type(end) is int:
                    out.append(LeafRange(origin=origin, start=start, end=end))
    return tuple(out)


# ------------------------------------------------------------------ verification


def index_cells(items: Iterable[tuple[str, object]]) -> dict[str, object]:
    """An index row as the database returns it, its ``disclosed`` and ``patients`` JSON
    text parsed."""
    row = dict(items)
    for column in (COLUMN, "patients"):
        raw = row.get(column)
        if isinstance(raw, str):
            row[column] = json.loads(raw)
    return row


def parse_cell(value: object) -> list[tuple[str, int, int]] | None:
    """A stored ``disclosed`` cell as tuples; ``[]`` when absent, None when malformed."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        return None
    out: list[tuple[str, int, int]] = []
    for item in value:
        if (
            not isinstance(item, list | tuple)
            or len(item) != 3
            or not isinstance(item[0], str)
            or type(item[1]) is not int
            or type(item[2]) is not int
        ):
            return None
        out.append((item[0], item[1], item[2]))
    return sorted(out)


def check(full_name: str, record: Mapping[str, object], row: Mapping[str, object]) -> str | None:
    """Why the ``disclosed`` cell of a leaf's index row disagrees with the leaf, else None.

    Only an AuditLogUsed record discloses anything; every other row must have no ranges.
    The answer counts missing and extra ranges, never names them (no PHI in findings)."""
    want = (
        [(r.origin, r.start, r.end) for r in sorted(from_record(record))]
        if full_name == AUDIT_LOG_USED
        else []
    )
    have = parse_cell(row.get(COLUMN))
    if have is None:
        return "its disclosed ranges are malformed"
    if have == want:
        return None
    missing = len(set(want) - set(have))
    extra = len(set(have) - set(want))
    duplicated = len(have) - len(set(have))
    counts = ((missing, "missing"), (extra, "extra"), (duplicated, "duplicated"))
    parts = ", ".join(f"{n} {what}" for n, what in counts if n)
    return f"its disclosed ranges disagree with the leaf ({parts})"
