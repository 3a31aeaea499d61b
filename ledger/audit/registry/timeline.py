"""The registry's history and its state as known at any instant.

Invariant: the state as known at *t* is, for every record identity, the last change whose
own ``event_time`` is at most *t* (ties broken by ledger position), unless that change
is a RETIRE. It depends only on the set of changes added, never on the order they were
added in, so a replayed ledger gives the same answer (docs/design/compliance.md).
A lookup costs a bisection per identity, cheap enough for every evaluated access.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.audit.registry.model import (
    Baa,
    Credential,
    License,
    Member,
    Organization,
    RegistryChangeRecord,
    RegistryEntry,
    RegistryRecord,
)

_Key = tuple[datetime, int, int]


def _order(change: RegistryChangeRecord) -> _Key:
    return (change.event_time, change.position.log_id, change.position.leaf_index)


class _History:
    """One identity's changes, in (event_time, position) order."""

    __slots__ = ("changes", "keys")

    def __init__(self) -> None:
        self.keys: list[_Key] = []
        self.changes: list[RegistryChangeRecord] = []

    def add(self, change: RegistryChangeRecord) -> bool:
        key = _order(change)
        i = bisect.bisect_left(self.keys, key)
        if i < len(self.keys) and self.keys[i] == key:
            return False  # the same leaf seen twice
        self.keys.insert(i, key)
        self.changes.insert(i, change)
        return True

    def at(self, when: datetime) -> RegistryChangeRecord | None:
        i = bisect.bisect_right(self.keys, (when, 1 << 62, 1 << 62))
        if i == 0:
            return None
        change = self.changes[i - 1]
        return None if change.operation == "RETIRE" else change


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrySnapshot:
    """Every live record as known at ``as_of``, sorted by identity, per kind."""

    as_of: datetime
    organizations: tuple[RegistryEntry[Organization], ...]
    baas: tuple[RegistryEntry[Baa], ...]
    members: tuple[RegistryEntry[Member], ...]
    licenses: tuple[RegistryEntry[License], ...]
    credentials: tuple[RegistryEntry[Credential], ...]


class RegistryTimeline:
    """Every registry change seen so far, indexed for "as known at" lookups."""

    __slots__ = ("_by_baa_pair", "_by_cred", "_by_user_lic", "_by_user_member", "_histories",
                 "_order", "latest_event_time", "size")  # fmt: skip

    def __init__(self) -> None:
        self._histories: dict[tuple[str, ...], _History] = {}
        self._by_user_member: defaultdict[str, set[tuple[str, ...]]] = defaultdict(set)
        self._by_baa_pair: defaultdict[tuple[str, str], set[tuple[str, ...]]] = defaultdict(set)
        self._by_user_lic: defaultdict[str, set[tuple[str, ...]]] = defaultdict(set)
        self._by_cred: defaultdict[tuple[str, str], set[tuple[str, ...]]] = defaultdict(set)
        self.size = 0
        self.latest_event_time: datetime | None = None
        #: Every change's (event_time, log, leaf), sorted: what "known at" cuts.
        self._order: list[_Key] = []

    def add(self, change: RegistryChangeRecord) -> None:
        """Add one appended change (a leaf seen twice is ignored)."""
        identity = change.identity
        if not self._histories.setdefault(identity, _History()).add(change):
            return
        self.size += 1
        bisect.insort(self._order, _order(change))
        if self.latest_event_time is None or change.event_time > self.latest_event_time:
            self.latest_event_time = change.event_time
        self._index(identity, change.record)

    def extend(self, changes: Iterable[RegistryChangeRecord]) -> None:
        for change in changes:
            self.add(change)

    def _index(self, identity: tuple[str, ...], record: RegistryRecord) -> None:
        match record:
            case Member():
                self._by_user_member[record.user_id].add(identity)
            case Baa():
                self._by_baa_pair[(record.facility_id, record.business_associate_id)].add(identity)
            case License():
                self._by_user_lic[record.user_id].add(identity)
            case Credential():
                self._by_cred[(record.user_id, record.facility_id)].add(identity)
            case Organization():
                pass

    def known_at(self, when: datetime) -> RegistryView:
        """The registry as known at ``when`` (an aware instant)."""
        return RegistryView(self, when)

    def known_key(self, when: datetime) -> tuple[int, _Key | None]:
        """What identifies the registry as known at ``when``: how many changes it holds
        and the last of them. Equal keys mean equal registries, even after changes were
        added (a change added later at or before ``when`` changes both), so an answer
        computed from the registry may be reused under the same key."""
        n = bisect.bisect_right(self._order, (when, 1 << 62, 1 << 62))
        return n, (self._order[n - 1] if n else None)

    def changes(self) -> list[RegistryChangeRecord]:
        """Every change, in (event_time, position) order."""
        every = [c for h in self._histories.values() for c in h.changes]
        return sorted(every, key=_order)

    # lookups used by RegistryView
    def _entry(self, identity: tuple[str, ...], when: datetime) -> RegistryEntry[Any] | None:
        history = self._histories.get(identity)
        change = None if history is None else history.at(when)
        if change is None:
            return None
        return RegistryEntry(
            record=change.record, position=change.position, event_time=change.event_time
        )

    def _entries(self, identities: Iterable[tuple[str, ...]], when: datetime) -> list[Any]:
        found = (self._entry(i, when) for i in sorted(identities))
        return [e for e in found if e is not None]


class RegistryView:
    """The registry as known at one instant. Records are returned whatever their
    validity period; callers check the period with ``in_period``."""

    __slots__ = ("_t", "when")

    def __init__(self, timeline: RegistryTimeline, when: datetime) -> None:
        self._t = timeline
        self.when = when

    def known_key(self) -> tuple[int, _Key | None]:
        """See ``RegistryTimeline.known_key``."""
        return self._t.known_key(self.when)

    def organization(self, organization_id: str) -> RegistryEntry[Organization] | None:
        return self._t._entry(("ORGANIZATION", organization_id), self.when)

    def memberships(self, user_id: str) -> tuple[RegistryEntry[Member], ...]:
        ids = self._t._by_user_member.get(user_id, ())
        return tuple(e for e in self._t._entries(ids, self.when) if e.record.user_id == user_id)

    def baas(self, facility_id: str, business_associate_id: str) -> tuple[RegistryEntry[Baa], ...]:
        ids = self._t._by_baa_pair.get((facility_id, business_associate_id), ())
        return tuple(
            e
            for e in self._t._entries(ids, self.when)
            if e.record.facility_id == facility_id
            and e.record.business_associate_id == business_associate_id
        )

    def licenses(self, user_id: str) -> tuple[RegistryEntry[License], ...]:
        ids = self._t._by_user_lic.get(user_id, ())
        return tuple(e for e in self._t._entries(ids, self.when) if e.record.user_id == user_id)

    def credentials(self, user_id: str, facility_id: str) -> tuple[RegistryEntry[Credential], ...]:
        ids = self._t._by_cred.get((user_id, facility_id), ())
        return tuple(
            e
            for e in self._t._entries(ids, self.when)
            if e.record.user_id == user_id and e.record.facility_id == facility_id
        )

    def snapshot(self) -> RegistrySnapshot:
        by_kind: defaultdict[str, list[RegistryEntry[Any]]] = defaultdict(list)
        for identity in sorted(self._t._histories):
            entry = self._t._entry(identity, self.when)
            if entry is not None:
                by_kind[identity[0]].append(entry)
        return RegistrySnapshot(
            as_of=self.when,
            organizations=tuple(by_kind["ORGANIZATION"]),
            baas=tuple(by_kind["BAA"]),
            members=tuple(by_kind["MEMBER"]),
            licenses=tuple(by_kind["LICENSE"]),
            credentials=tuple(by_kind["CREDENTIAL"]),
        )
