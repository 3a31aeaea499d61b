"""Pure helpers of benchmarks/peers.py: the entries file the Go drivers read, their JSON
result, and the side-by-side table (no I/O, no timing; tests/unit/test_bench_peerfmt.py).

The entries file is what benchmarks/peers/{tessera,immudb}/main.go read: each entry a
big-endian uint32 length and that many bytes, nothing else.
"""

from __future__ import annotations

import json
import statistics
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_LENGTH = struct.Struct(">I")


class PeerError(Exception):
    """A peer could not be built, started or run, or said something we cannot read."""


def frame_entries(entries: Iterable[bytes]) -> bytes:
    """The entries file's bytes."""
    parts = []
    for entry in entries:
        if len(entry) > 0xFFFF_FFFF:
            raise PeerError(f"an entry of {len(entry)} bytes does not fit a uint32 length")
        parts += [_LENGTH.pack(len(entry)), entry]
    return b"".join(parts)


def unframe_entries(data: bytes) -> list[bytes]:
    """The inverse of ``frame_entries`` (what the Go drivers do), for the tests."""
    entries: list[bytes] = []
    at = 0
    while at < len(data):
        if at + 4 > len(data):
            raise PeerError(f"a truncated length at byte {at}")
        (length,) = _LENGTH.unpack_from(data, at)
        if at + 4 + length > len(data):
            raise PeerError(f"entry {len(entries)} runs past the end")
        entries.append(data[at + 4 : at + 4 + length])
        at += 4 + length
    return entries


@dataclass(frozen=True, slots=True, kw_only=True)
class DriverResult:
    """One driver run: how many entries it wrote and how long that took."""

    entries: int
    seconds: float
    details: dict[str, object]

    @property
    def rate(self) -> float:
        return self.entries / self.seconds


def parse_result(stdout: str, *, expected: int) -> DriverResult:
    """The driver's result, its last line of stdout; refuses anything but ``expected``
    entries written in a positive time."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise PeerError("the driver printed no result")
    try:
        doc = json.loads(lines[-1])
        entries, seconds = int(doc["entries"]), float(doc["seconds"])
    except (ValueError, KeyError, TypeError) as exc:
        raise PeerError(f"unreadable driver result {lines[-1][:200]!r}") from exc
    if entries != expected:
        raise PeerError(f"the driver wrote {entries:,} entries, not {expected:,}")
    if not seconds > 0:
        raise PeerError(f"the driver reported {seconds} s")
    details = {k: v for k, v in doc.items() if k not in ("entries", "seconds")}
    return DriverResult(entries=entries, seconds=seconds, details=details)


@dataclass(frozen=True, slots=True, kw_only=True)
class Row:
    """One line of the table: a system, what was measured, its rates over the rounds."""

    system: str
    measured: str
    rates: tuple[float, ...]

    @property
    def rate(self) -> float:
        return statistics.median(self.rates)


def _rate(row: Row) -> str:
    if len(row.rates) == 1:
        return f"{row.rate:,.0f}"
    return f"{row.rate:,.0f} ({min(row.rates):,.0f}-{max(row.rates):,.0f})"


def _ratio(value: float, base: float | None) -> str:
    return "-" if base is None or base <= 0 else f"{value / base:.2f}"


def format_table(rows: Sequence[Row], *, end_to_end: float | None, copy: float | None) -> str:
    """A Markdown table: entries/s (median, and the range over rounds) and the ratios to
    the ledger's best end-to-end figure and to the raw COPY ("-" where not measured)."""
    head = ("system", "what was measured", "entries/s", "/ ledger end to end", "/ raw COPY")
    body = [
        (r.system, r.measured, _rate(r), _ratio(r.rate, end_to_end), _ratio(r.rate, copy))
        for r in rows
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)
