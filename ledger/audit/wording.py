"""Plain words for the codes and verdicts people read: purpose of use, DICOM action and
outcome, relay states, readable dates and durations, the breach report's opening sentence.

Invariant: pure and total: every function answers for any input (an unknown code is shown
as itself, never dropped), so a renderer can call it on whatever the ledger holds. Shared
by the CLI and the console; the wording is explained in docs/cli.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Final

#: HL7 v3 PurposeOfUse codes as a reader says them.
PURPOSES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "TREAT": "treatment",
        "ETREAT": "emergency treatment",
        "BTG": "emergency access (break the glass)",
        "COC": "coordination of care",
        "HPAYMT": "payment",
        "HOPERAT": "health care operations",
        "HQUALIMP": "quality improvement",
        "SYSADMN": "system administration",
        "HSYSADMIN": "system administration",
        "PATRQT": "at the patient's request",
        "PWATRNY": "for the patient's representative",
        "FAMRQT": "for family involved in care",
        "DISASTER": "disaster relief",
        "PUBHLTH": "public health",
        "HRESCH": "research",
        "CLINTRCH": "clinical trial research",
        "LEGAL": "legal proceedings or law enforcement",
        "OVERSIGHT": "health oversight",
        "THREAT": "to avert a serious threat",
        "HPRGRP": "health program reporting",
        "HMARKT": "marketing",
    }
)

#: DICOM EventActionCode (C, R, U, D, E).
ACTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {"C": "created", "R": "viewed", "U": "changed", "D": "deleted", "E": "ran"}
)

#: DICOM EventOutcomeIndicator, by the names the ledger stores.
OUTCOMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "SUCCESS": "succeeded",
        "MINOR_FAILURE": "failed (minor)",
        "SERIOUS_FAILURE": "failed (serious)",
        "MAJOR_FAILURE": "failed (major)",
        "0": "succeeded",
        "4": "failed (minor)",
        "8": "failed (serious)",
        "12": "failed (major)",
    }
)

#: Critical-result relay states and issues.
RELAY_STATES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "on_time": "met the deadline",
        "late": "missed the deadline (communicated late)",
        "overdue": "overdue (not communicated, deadline passed)",
        "pending": "pending (not communicated, deadline not yet passed)",
        "no-read-back": "no read-back recorded",
        "no_read_back": "no read-back recorded",
        "not-verbal": "not communicated by phone or in person",
    }
)

#: ACR actionable-finding categories.
ACR_CATEGORIES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "CAT1": "Category 1 (minutes: direct verbal contact)",
        "CAT2": "Category 2 (hours)",
        "CAT3": "Category 3 (days)",
    }
)

#: Kinds of history entries.
KINDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "phi_access": "access",
        "critical_result_relay": "critical result relay",
        "audit_log_used": "ledger read (self-audit)",
        "security_event": "security event",
    }
)

#: The kind of entry the ledger writes about reads of itself.
SELF_AUDIT_KIND: Final = "audit_log_used"

_MONTHS: Final = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def _spell(table: Mapping[str, str], code: str | None) -> str:
    if code is None or code == "":
        return "not recorded"
    return table.get(code, code)


def purpose(code: str | None) -> str:
    """``TREAT`` -> "treatment"; an unknown code as itself, none as "not recorded"."""
    return _spell(PURPOSES, code)


def action(code: str | None) -> str:
    """``R`` -> "viewed"."""
    return _spell(ACTIONS, code)


def outcome(code: str | None) -> str:
    """``SUCCESS`` (or 0) -> "succeeded"; the failures with their severity."""
    return _spell(OUTCOMES, code)


def relay_state(code: str | None) -> str:
    """``late`` -> "missed the deadline (communicated late)"."""
    return _spell(RELAY_STATES, code)


def category(code: str | None) -> str:
    """``CAT1`` -> "Category 1 (minutes: direct verbal contact)"."""
    return _spell(ACR_CATEGORIES, code)


def kind(code: str | None) -> str:
    """``audit_log_used`` -> "ledger read (self-audit)"."""
    return _spell(KINDS, code)


def date(value: datetime | None) -> str:
    """A readable day: "6 December 2026"."""
    if value is None:
        return "not recorded"
    return f"{value.day} {_MONTHS[value.month - 1]} {value.year}"


def when(value: datetime | None) -> str:
    """A readable day and time: "6 December 2026, 14:05 UTC" (the time in its own zone)."""
    if value is None:
        return "not recorded"
    zone = value.tzname() or ""
    zone = "UTC" if zone in ("UTC", "+00:00", "") else zone
    return f"{date(value)}, {value:%H:%M} {zone}"


def duration(value: timedelta | None, *, unit: str = "minutes") -> str:
    """A duration in ``unit`` (minutes, hours or days), as people say it: "30 minutes",
    "1.5 hours"; seconds are shown only when under a minute."""
    if value is None:
        return "none"
    total = value.total_seconds()
    if unit == "minutes" and abs(total) < 60 and total != 0:
        return _count(round(total), "second")
    size = {"minutes": 60, "hours": 3600, "days": 86400}.get(unit)
    if size is None:
        raise ValueError(f"unit must be minutes, hours or days, not {unit!r}")
    amount = round(total / size, 1)
    shown = str(int(amount)) if amount == int(amount) else str(amount)
    singular = unit[:-1]
    return f"{shown} {singular if shown == '1' else unit}"


def deadline_unit(deadline: timedelta | None) -> str:
    """The unit a deadline was set in: minutes below 2 hours, hours below 2 days, else
    days (so a 30-minute CAT1 deadline is read in minutes)."""
    if deadline is None or deadline < timedelta(hours=2):
        return "minutes"
    return "hours" if deadline < timedelta(days=2) else "days"


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n} {noun if n == 1 else (plural or noun + 's')}"


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``count(1, "person", "people")`` -> "1 person"."""
    return _count(n, noun, plural)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreachCounts:
    """What the breach report's verdict depends on (the report's ``notification``)."""

    individuals: int
    #: Affected residents per state (only the states with at least one).
    states: Mapping[str, int]
    unknown_state: int = 0
    #: Patients truncated answers returned without listing them.
    unlisted: int = 0
    threshold: int = 500
    #: Events in the scope at all (0: the scope matched nothing).
    events: int = 1


def breach_sentence(c: BreachCounts) -> str:
    """The breach report's opening sentence, e.g. "12 people in 10 states; below both 500
    thresholds: enter in the annual HHS log; no media notice". States the two thresholds as
    45 CFR 164.406(a) and 164.408(b) word them (media: more than ``threshold`` residents of
    one state; HHS now: ``threshold`` or more people in all)."""
    if c.events == 0:
        return (
            "No events matched this scope: nobody is shown as affected; check the users, "
            "facility, addresses and dates before concluding there is nothing to notify"
        )
    t = c.threshold
    who = _who(c)
    media = sorted(s for s, n in c.states.items() if n > t)
    at_most = c.individuals + c.unlisted
    hhs_now = c.individuals >= t
    possible_hhs = not hhs_now and at_most >= t
    media_possible = [
        s for s, n in sorted(c.states.items()) if n <= t < n + c.unknown_state + c.unlisted
    ]
    if c.individuals == 0 and c.unlisted == 0:
        verdict = "no one affected: no notice (the events did not reach patient data)"
    elif hhs_now and media:
        verdict = f"{t} or more people: notify HHS now; media notice in {', '.join(media)}"
    elif hhs_now:
        verdict = f"{t} or more people: notify HHS now; no state over {t}: no media notice"
    else:
        verdict = f"below both {t} thresholds: enter in the annual HHS log; no media notice"
    notes = []
    if possible_hhs:
        notes.append(
            f"up to {at_most} people if the unlisted patients are counted: HHS notice "
            "possible, identify them"
        )
    if media_possible:
        notes.append(f"media notice possible in {', '.join(media_possible)}")
    return "; ".join([who, verdict, *notes])


def _who(c: BreachCounts) -> str:
    people = _count(c.individuals, "person", "people")
    if c.states:
        text = f"{people} in {_count(len(c.states), 'state')}"
        if c.unknown_state:
            text += f" ({c.unknown_state} without a recorded state)"
    elif c.individuals:
        text = f"{people}, none with a recorded state"
    else:
        text = "0 people"
    if c.unlisted:
        text += f", and {c.unlisted} more not listed by truncated answers"
    return text


def no_match_warnings(
    *,
    users: Sequence[str] = (),
    facility: str | None = None,
    addresses: Sequence[str] = (),
    seen_users: Sequence[str] = (),
    seen_facilities: Sequence[str] = (),
    seen_addresses: Sequence[str] = (),
) -> list[str]:
    """One warning per selector of a scope that matched no event: "no events for user
    rad003.brenan" (in the scope's window)."""
    out = [f"no events for user {u}" for u in users if u not in set(seen_users)]
    if facility is not None and facility not in set(seen_facilities):
        out.append(f"no events for facility {facility}")
    out += [f"no events from address {a}" for a in addresses if a not in set(seen_addresses)]
    return out


def age(value: timedelta | None) -> str:
    """How long ago, in the unit a person would use: "4 seconds ago", "12 minutes ago",
    "3 hours ago", "2 days ago"; None: "never"."""
    if value is None:
        return "never"
    s = value.total_seconds()
    if s < 120:
        return f"{_count(max(0, round(s)), 'second')} ago"
    if s < 7200:
        return f"{_count(round(s / 60), 'minute')} ago"
    if s < 172800:
        return f"{_count(round(s / 3600), 'hour')} ago"
    return f"{_count(round(s / 86400), 'day')} ago"


_UNITS: Final = (("days", timedelta(days=1)), ("hours", timedelta(hours=1)), ("minutes", None))


def duration_for(value: timedelta | None, deadline: timedelta | None) -> str:
    """A duration in the unit its deadline is set in ("45 minutes" against 30 minutes),
    or a smaller one when it is under one of those ("12 minutes" against 6 hours)."""
    if value is None:
        return "none"
    unit = deadline_unit(deadline)
    names = [name for name, _ in _UNITS]
    for name, size in _UNITS[names.index(unit) :]:
        if size is None or abs(value) >= size:
            return duration(value, unit=name)
    return duration(value)  # pragma: no cover - the minutes entry always answers
