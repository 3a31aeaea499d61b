"""Which periods may leave the database: the rules of the detach procedure, without I/O.

Invariant: a month is detachable only when it holds logs, every one of them sealed at its
full size, it is older than the live window, it is not archived or detached already, and
the bundle offered for it holds exactly those logs at those sizes with the same seals and
as many index rows. Anything else is a named refusal (``DetachRefused``), never a partial
detach. docs/archive.md says why each rule exists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from ledger.errors import LedgerError

__all__ = [
    "BundleLog",
    "DetachRefused",
    "PeriodContents",
    "PeriodLog",
    "check_detachable",
    "check_matches_bundle",
    "months_between",
]


class DetachRefused(LedgerError):
    """The period may not leave the database (the message says why; nothing changed)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodLog:
    """One log of the month as the database holds it."""

    log_id: int
    origin: str
    size: int
    sealed_size: int | None
    seal_note: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PeriodContents:
    """Everything of one month (the partition unit) the database holds."""

    month: date
    logs: tuple[PeriodLog, ...]
    events: int
    first_event_time: datetime | None
    last_event_time: datetime | None
    states: frozenset[str]


@dataclass(frozen=True, slots=True, kw_only=True)
class BundleLog:
    """One log as the (already verified) archive bundle holds it."""

    origin: str
    size: int
    seal_note: str | None


def months_between(earlier: date, later: date) -> int:
    """Whole calendar months from ``earlier``'s month to ``later``'s (0: the same month)."""
    return (later.year - earlier.year) * 12 + later.month - earlier.month


def check_detachable(contents: PeriodContents, *, today: date, live_months: int) -> None:
    """Refuse unless the month may be detached at all (before looking at any bundle)."""
    label = f"{contents.month:%Y-%m}"
    if "detached" in contents.states:
        raise DetachRefused(f"{label} is detached already")
    if not contents.logs:
        raise DetachRefused(f"{label} holds no log: nothing to detach")
    age = months_between(contents.month, today)
    if age < live_months:
        raise DetachRefused(
            f"{label} is within the {live_months} live months (LEDGER_LIVE_MONTHS): the "
            "current month and a year of reports stay in the database"
        )
    unsealed = [g.origin for g in contents.logs if g.sealed_size != g.size]
    if unsealed:
        raise DetachRefused(f"{label}: not sealed at its full size: {', '.join(unsealed)}")


def check_matches_bundle(
    contents: PeriodContents, bundle_logs: Sequence[BundleLog], bundle_events: int
) -> None:
    """Refuse unless the bundle holds exactly the month's logs, sizes, seals and index."""
    label = f"{contents.month:%Y-%m}"
    ours: Mapping[str, PeriodLog] = {g.origin: g for g in contents.logs}
    theirs: Mapping[str, BundleLog] = {g.origin: g for g in bundle_logs}
    problems = [f"missing from the bundle: {o}" for o in sorted(ours.keys() - theirs.keys())]
    problems += [f"not a log of {label}: {o}" for o in sorted(theirs.keys() - ours.keys())]
    for origin in sorted(ours.keys() & theirs.keys()):
        db, b = ours[origin], theirs[origin]
        if b.size != db.size:
            problems.append(f"{origin}: {b.size} entries in the bundle, {db.size} here")
        if b.seal_note != db.seal_note:
            problems.append(f"{origin}: the bundle's seal differs from the stored one")
    if bundle_events != contents.events:
        problems.append(f"{bundle_events} index rows in the bundle, {contents.events} here")
    if problems:
        raise DetachRefused(f"the bundle does not match {label}: " + "; ".join(problems))
