"""The ports the API reads and triages compliance alerts through (docs/api.md, "Compliance
alerts").

Invariant: a listing is newest first (descending alert id) and pages by keyset (alerts
with an id below ``before``), so alerts raised while a client pages never shift a page;
a transition goes through the same checks as ``ledger alerts ack/close``
(``ledger.audit.rules.transition`` builds it, the store checks it against the current
state in its own transaction).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from ledger.audit.rules import AlertState, Transition
from ledger.audit.rules.alerts import AlertDetail, StoredAlert, StoredTransition


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertQuery:
    """One page of alerts: every filter given must match; ``since`` is inclusive and
    ``until`` exclusive on the time the alert was raised."""

    state: AlertState | None = None
    rule_id: str | None = None
    facility_id: str | None = None
    user_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    #: Only alerts with a smaller id (the last alert of the previous page).
    before: int | None = None
    limit: int = 100


class AlertBook(Protocol):
    """Reads of the alert tables (role ``ledger_reader`` is enough)."""

    async def page(self, query: AlertQuery) -> Sequence[StoredAlert]:
        """Alerts matching ``query``, newest first, at most ``query.limit``."""
        ...

    async def alert(self, alert_id: int) -> AlertDetail | None:
        """The alert with its evidence and transitions; None when there is no such alert."""
        ...


class AlertTriage(Protocol):
    """Appends transitions (needs INSERT on ``alert_transitions``)."""

    async def transition(self, alert_id: int, wanted: Transition) -> StoredTransition:
        """Append ``wanted``; ``ConflictError`` when the current state forbids it."""
        ...
