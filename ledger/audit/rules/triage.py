"""An alert's lifecycle: open -> acknowledged -> closed (with a disposition).

Invariant: a transition is a new row, never an edit; it is allowed only from the alert's
current state (its latest transition): open may be acknowledged or closed, acknowledged
may be closed, closed is final. Closing needs a disposition; nothing else takes one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from ledger.errors import ConflictError, MalformedInputError

MAX_NOTE_CHARS: Final = 2000


class AlertState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    CLOSED = "closed"


class Disposition(StrEnum):
    FALSE_POSITIVE = "false_positive"
    POLICY_VIOLATION = "policy_violation"
    BREACH_INVESTIGATION = "breach_investigation"


_ALLOWED: Final = {
    AlertState.OPEN: frozenset({AlertState.ACKNOWLEDGED, AlertState.CLOSED}),
    AlertState.ACKNOWLEDGED: frozenset({AlertState.CLOSED}),
    AlertState.CLOSED: frozenset[AlertState](),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Transition:
    """A requested transition, checked (``check_transition``) against the current state."""

    state: AlertState
    disposition: Disposition | None
    note: str
    by: str


def parse_disposition(text: str) -> Disposition:
    try:
        return Disposition(text)
    except ValueError as exc:
        choices = ", ".join(d.value for d in Disposition)
        raise MalformedInputError(f"unknown disposition {text!r}: use one of {choices}") from exc


def transition(
    *, state: AlertState, note: str, by: str, disposition: Disposition | None = None
) -> Transition:
    """A well-formed transition: a note of printable text, who made it, and a disposition
    exactly when closing."""
    text = note.strip()
    if not text or len(text) > MAX_NOTE_CHARS or not text.isprintable():
        raise MalformedInputError(f"a note is 1-{MAX_NOTE_CHARS} printable characters")
    if not by.strip():
        raise MalformedInputError("a transition names who made it")
    if (state is AlertState.CLOSED) != (disposition is not None):
        raise MalformedInputError("a disposition is given when closing, and only then")
    if state is AlertState.OPEN:
        raise MalformedInputError("an alert is opened by the evaluator, not by triage")
    return Transition(state=state, disposition=disposition, note=text, by=by)


def check_transition(alert_id: int, current: AlertState, wanted: Transition) -> None:
    """Refuse a transition the current state does not allow (``ConflictError``)."""
    if wanted.state not in _ALLOWED[current]:
        raise ConflictError(
            f"alert {alert_id} is {current.value}: it cannot become {wanted.state.value}"
        )
