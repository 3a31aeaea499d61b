"""Limits and validation of report inputs.

Invariant: every report input is checked here before use; a naive datetime, an empty or
oversized selector, a window out of bounds or longer than ``MAX_WINDOW`` raises
``MalformedInputError`` naming what is wrong, and valid times come back in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from ledger.errors import MalformedInputError

#: Longest report window: ten years (3,653 days covers the leap days). HIPAA retention is
#: six years (164.316(b)(2)); ten leaves room for state law without allowing "everything".
MAX_WINDOW: Final = timedelta(days=3653)
#: Most users, or most network addresses, one investigation may name.
MAX_SCOPE_SELECTORS: Final = 100
#: Longest identifier accepted in a selector (the events' own limit).
MAX_SELECTOR_CHARS: Final = 256
#: Longest accounting lookback the Privacy Rule grants (164.528(a)(1)): six years.
MAX_LOOKBACK_YEARS: Final = 6
#: 164.528(a)(1)(ix): disclosures before the compliance date are never accounted. April 14,
#: 2003 for most covered entities (small health plans: April 14, 2004).
COMPLIANCE_DATE: Final = datetime(2003, 4, 14, tzinfo=UTC)

#: Report windows must lie within these bounds (no event predates 1990; far-future times
#: would overflow date arithmetic).
EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)
LATEST: Final = datetime(9000, 1, 1, tzinfo=UTC)

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def check_text(name: str, value: object, *, limit: int = MAX_SELECTOR_CHARS) -> str:
    """A non-blank string of at most ``limit`` characters, none of them a control."""
    if (
        not isinstance(value, str)
        or not value
        or value.isspace()
        or len(value) > limit
        or _CONTROL.search(value)
    ):
        raise MalformedInputError(f"{name} must be 1-{limit} printable characters")
    return value


def check_utc(name: str, value: object) -> datetime:
    """A timezone-aware datetime, returned in UTC."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise MalformedInputError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def check_instant(name: str, value: object) -> datetime:
    """A timezone-aware datetime between ``EARLIEST`` and ``LATEST``, in UTC."""
    when = check_utc(name, value)
    if not EARLIEST <= when <= LATEST:
        raise MalformedInputError(f"{name} must lie between {EARLIEST.date()} and {LATEST.date()}")
    return when


def check_window(start: object, end: object) -> tuple[datetime, datetime]:
    """Validate a report window [start, end): both timezone-aware, start < end, at most
    ``MAX_WINDOW`` long. Returns both in UTC; raises ``MalformedInputError``."""
    if start is None or end is None:
        raise MalformedInputError("a time window (start and end) is required")
    s, e = check_utc("start", start), check_utc("end", end)
    if not s < e:
        raise MalformedInputError("start must be before end")
    if s < EARLIEST or e > LATEST:
        raise MalformedInputError(
            f"the window must lie between {EARLIEST.date()} and {LATEST.date()}"
        )
    if e - s > MAX_WINDOW:
        raise MalformedInputError(f"the window may span at most {MAX_WINDOW.days} days")
    return s, e


def check_identifier(name: str, value: object) -> str:
    """Validate an identifier (1-256 printable characters); raises ``MalformedInputError``."""
    return check_text(name, value)


def check_selectors(name: str, values: object) -> tuple[str, ...]:
    """A list of at most ``MAX_SCOPE_SELECTORS`` identifiers, duplicates dropped."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence):
        raise MalformedInputError(f"{name} must be a list of strings")
    if len(values) > MAX_SCOPE_SELECTORS:
        raise MalformedInputError(f"{name} may name at most {MAX_SCOPE_SELECTORS} values")
    return tuple(dict.fromkeys(check_text(name, v) for v in values))
