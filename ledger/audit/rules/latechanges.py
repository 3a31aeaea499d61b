"""Late registry changes: which alerts a change known only after the access would have
prevented.

Invariant: decided from the change's own record, the alert's rule, user, facility,
access time and patient state, and the registry as known at the access: never from the
order in which the alert and the change were evaluated, so the evidence attached
(role ``later_registry_change``) is the same whether the alert or the change came first,
and on replay. A change is "later" when its own time is after the access (so the
registry as known at the access lacked it) and at most the look-back after it; only an
UPSERT of the rule's own kind counts (a license for ``registry.license_missing``, a
credential, a BAA, a workforce membership for the ``account.*`` rules), and only when,
with it, the checklist item would have been covered.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from ledger.audit.registry import (
    Baa,
    Credential,
    License,
    Member,
    RegistryChangeRecord,
    RegistryView,
    in_period,
)
from ledger.audit.rules.checklist import ChecklistConfig

LATER_ROLE: Final = "later_registry_change"

#: The record kind whose later change can cover each rule's exception.
RULE_KINDS: Final = {
    "registry.baa_missing": "BAA",
    "registry.license_missing": "LICENSE",
    "registry.credential_missing": "CREDENTIAL",
    "account.shared": "MEMBER",
    "account.unknown": "MEMBER",
    "account.ended": "MEMBER",
}

#: Who a change is about: ("user", id) or, for a BAA, ("facility", id).
Subject = tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertTarget:
    """What a late change is checked against: a registry rule's alert (``alert_id`` once
    stored) at an access of ``user_id`` at ``facility_id`` at instant ``at``."""

    rule_id: str
    user_id: str
    facility_id: str
    at: datetime
    state: str | None = None
    alert_id: int | None = None

    @property
    def subject(self) -> Subject:
        if RULE_KINDS[self.rule_id] == "BAA":
            return ("facility", self.facility_id)
        return ("user", self.user_id)


def subject_of(change: RegistryChangeRecord) -> Subject | None:
    match change.record:
        case Baa():
            return ("facility", change.record.facility_id)
        case License() | Credential() | Member():
            return ("user", change.record.user_id)
        case _:
            return None


def covers(
    change: RegistryChangeRecord,
    target: AlertTarget,
    view: RegistryView,
    config: ChecklistConfig,
    lookback: timedelta,
) -> bool:
    """Whether ``change`` is later than ``target``'s access (within ``lookback``) and would
    have covered its rule's item; ``view`` is the registry as known at the access."""
    if change.operation != "UPSERT" or change.kind != RULE_KINDS.get(target.rule_id):
        return False
    if not target.at < change.event_time <= target.at + lookback:
        return False
    day = target.at.astimezone(config.zone).date()
    r = change.record
    match r:
        case License():
            return (
                r.user_id == target.user_id
                and r.state == target.state
                and in_period(day, r.valid_from, r.valid_to)
            )
        case Credential():
            return (
                r.user_id == target.user_id
                and r.facility_id == target.facility_id
                and in_period(day, r.valid_from, r.valid_to)
            )
        case Baa():
            associates = {
                m.record.organization_id
                for m in view.memberships(target.user_id)
                if in_period(day, m.record.employed_from, m.record.employed_to)
            }
            return (
                r.facility_id == target.facility_id
                and r.business_associate_id in associates
                and in_period(day, r.effective_from, r.effective_to)
            )
        case Member():
            if r.user_id != target.user_id:
                return False
            others = [
                m.record
                for m in view.memberships(target.user_id)
                if m.record.organization_id != r.organization_id
            ]
            current = [m for m in (*others, r) if in_period(day, m.employed_from, m.employed_to)]
            return bool(current) and not any(m.shared_or_generic for m in current)
        case _:
            return False


class LaterIndex:
    """Every registry change by subject, in (event_time, position) order, to find the
    changes known after an access cheaply."""

    __slots__ = ("_by_subject",)

    def __init__(self) -> None:
        self._by_subject: defaultdict[
            Subject, list[tuple[datetime, int, int, RegistryChangeRecord]]
        ] = defaultdict(list)

    def add(self, change: RegistryChangeRecord) -> None:
        subject = subject_of(change)
        if subject is None or change.operation != "UPSERT":
            return
        p = change.position
        entry = (change.event_time, p.log_id, p.leaf_index, change)
        rows = self._by_subject[subject]
        i = bisect.bisect_left(rows, entry[:3], key=lambda e: e[:3])
        if i < len(rows) and rows[i][:3] == entry[:3]:
            return
        rows.insert(i, entry)

    def after(
        self, subject: Subject, since: datetime, until: datetime
    ) -> Iterable[RegistryChangeRecord]:
        """The changes about ``subject`` with ``since`` < event_time <= ``until``."""
        rows = self._by_subject.get(subject, [])
        i = bisect.bisect_right(rows, (since, 1 << 62, 1 << 62), key=lambda e: e[:3])
        for when, _, _, change in rows[i:]:
            if when > until:
                return
            yield change
