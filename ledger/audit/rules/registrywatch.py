"""The evaluator's registry: the registry log(s) read into one shared timeline, the
settle hold, the registry rules for one access, and late changes both ways.

Invariant: every pass reads the registry logs before any audit log, from the first leaf
on start (like the windows), so an access is checked against every change with a time
at or before its own that the ledger holds. A change read for the first time (at or
past its log's cursor) is checked against the stored alerts it would have prevented, and
the evidence and the registry log's cursor are committed together; an alert raised
later is checked against the changes already known. A failure forgets the timeline,
so the next pass rebuilds it and checks again whatever was not committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Final, Protocol

from ledger.audit.registry import (
    REGISTRY_CHANGE,
    RegistryChangeRecord,
    RegistryTimeline,
    parse_change,
)
from ledger.audit.rules.access import facility_id, user_id
from ledger.audit.rules.checklist import (
    ChecklistConfig,
    ChecklistMemo,
    access_instant,
    applies,
)
from ledger.audit.rules.config import RulesConfig
from ledger.audit.rules.latechanges import (
    LATER_ROLE,
    RULE_KINDS,
    AlertTarget,
    LaterIndex,
    Subject,
    covers,
    subject_of,
)
from ledger.audit.rules.model import AppendedEvent, Evidence, Finding, LeafBatch, Position
from ledger.audit.rules.registryrules import (
    DayKey,
    RegistryRule,
    build_registry_rules,
    checklist_config,
)
from ledger.errors import MalformedInputError

DEFAULT_BATCH = 2000


class RegistryStore(Protocol):
    """What the registry side needs from storage (``ledger.pg.compliance``)."""

    async def registry_log_ids(self) -> Sequence[int]: ...

    async def cursor(self, log_id: int) -> int: ...

    async def leaves(self, log_id: int, first: int, limit: int) -> LeafBatch: ...

    async def later_candidates(
        self,
        rule_ids: Sequence[str],
        users: Sequence[str],
        facilities: Sequence[str],
        since: datetime,
        until: datetime,
    ) -> Sequence[AlertTarget]:
        """Stored alerts of ``rule_ids`` about one of ``users`` or ``facilities`` whose
        triggering access happened in [since, until), with their alert ids."""
        ...

    async def commit_registry(
        self, log_id: int, next_leaf: int, evidence: Sequence[tuple[int, Position]]
    ) -> int:
        """Attach ``evidence`` (alert id, registry position; role later_registry_change)
        to stored alerts and move the registry log's cursor, in one transaction; the
        number of evidence rows newly attached."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryRead:
    """What reading the registry did in one pass."""

    logs: frozenset[int]
    changes: int
    annotated: int
    unreadable: int


#: A reader's registry cursor: no leaf is at or above it.
_NEVER: Final = 1 << 62
#: How long the writer keeps checking a change read lately against new alerts.
RECHECK_SECONDS: Final = 120.0


class RegistryWatch:
    """The registry rules and their registry, shared by every audit log."""

    def __init__(
        self,
        store: RegistryStore,
        config: RulesConfig,
        *,
        batch: int = DEFAULT_BATCH,
        writer: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        #: Whether this watch owns the registry logs' cursors and late-change evidence
        #: (one evaluator process of several sharing the audit logs does; the others
        #: only read the registry into their timeline).
        self._writer = writer
        self._clock = clock
        #: Changes read lately (monotonic time read, change): checked again for alerts
        #: another evaluator process may have committed after this one first looked.
        self._recent: list[tuple[float, RegistryChangeRecord]] = []
        self._rules: tuple[RegistryRule, ...] = build_registry_rules(config)
        self._checklist: ChecklistConfig = checklist_config(config)
        self._settle = config.registry.settle
        self._lookback = config.registry.lookback
        self._batch = batch
        self._reset()

    def _reset(self) -> None:
        self.timeline = RegistryTimeline()
        self._memo = ChecklistMemo(self._checklist)
        self._later = LaterIndex()
        self._earliest: datetime | None = None
        self._next: dict[int, int] = {}

    # ------------------------------------------------------------ reading

    async def read(self) -> RegistryRead:
        """Read every registry log's new leaves into the timeline (call first each pass)."""
        try:
            return await self._read()
        except BaseException:
            self._reset()
            raise

    async def _read(self) -> RegistryRead:
        log_ids = frozenset(await self._store.registry_log_ids())
        changes = annotated = unreadable = 0
        for log_id in sorted(log_ids):
            # A reader never writes the registry log's cursor: nothing is new to it.
            cursor = await self._store.cursor(log_id) if self._writer else _NEVER
            while True:
                first = self._next.get(log_id, 0)
                batch = await self._store.leaves(log_id, first, self._batch)
                if batch.next_leaf <= first:
                    break
                new: list[RegistryChangeRecord] = []
                for event in batch.events:
                    change = _parse(event)
                    if change is None:
                        if event.position.leaf_index >= cursor:
                            unreadable += 1
                        continue
                    self._add(change)
                    if event.position.leaf_index >= cursor:
                        new.append(change)
                self._next[log_id] = batch.next_leaf
                if batch.next_leaf > cursor:
                    evidence = await self._late_evidence(new)
                    annotated += await self._store.commit_registry(
                        log_id, batch.next_leaf, evidence
                    )
                    changes += len(new)
                    unreadable += batch.undecodable
                    cursor = batch.next_leaf
                    self._recent += [(self._clock(), c) for c in new]
            if self._writer and cursor != _NEVER:
                annotated += await self._recheck(log_id, cursor)
        return RegistryRead(
            logs=log_ids, changes=changes, annotated=annotated, unreadable=unreadable
        )

    async def _recheck(self, log_id: int, cursor: int) -> int:
        """Late-change evidence for the changes read in the last ``RECHECK_SECONDS``,
        again: with several evaluator processes, an alert can be committed by another
        one just after this one looked (idempotent: evidence already stored is kept)."""
        horizon = self._clock() - RECHECK_SECONDS
        self._recent = [(t, c) for t, c in self._recent if t >= horizon]
        mine = [c for _, c in self._recent if c.position.log_id == log_id]
        if not mine:
            return 0
        evidence = await self._late_evidence(mine)
        return await self._store.commit_registry(log_id, cursor, evidence) if evidence else 0

    def _add(self, change: RegistryChangeRecord) -> None:
        self.timeline.add(change)
        self._later.add(change)
        if self._earliest is None or change.event_time < self._earliest:
            self._earliest = change.event_time

    async def _late_evidence(
        self, new: Sequence[RegistryChangeRecord]
    ) -> list[tuple[int, Position]]:
        subjects = [(s, c) for c in new if (s := subject_of(c)) is not None]
        if not subjects:
            return []
        users = sorted({s[1] for s, _ in subjects if s[0] == "user"})
        facilities = sorted({s[1] for s, _ in subjects if s[0] == "facility"})
        since = min(c.event_time for _, c in subjects) - self._lookback
        until = max(c.event_time for _, c in subjects)
        targets = await self._store.later_candidates(
            sorted(RULE_KINDS), users, facilities, since, until
        )
        by_subject: dict[Subject, list[RegistryChangeRecord]] = {}
        for subject, change in subjects:
            by_subject.setdefault(subject, []).append(change)
        found: set[tuple[int, Position]] = set()
        for target in targets:
            mine = by_subject.get(target.subject, [])
            if target.alert_id is None or not mine:
                continue
            view = self.timeline.known_at(target.at)
            found.update(
                (target.alert_id, c.position)
                for c in mine
                if covers(c, target, view, self._checklist, self._lookback)
            )
        return sorted(found)

    # --------------------------------------------------------- evaluating

    def needs(self, event: AppendedEvent) -> bool:
        """Whether the registry rules hold ``event`` to account (so it waits to settle)."""
        return applies(event) and user_id(event) not in self._checklist.ignore_users

    def settled(self, event: AppendedEvent, now: datetime) -> bool:
        """Whether the registry is known complete up to the access's time: a change at or
        after it has been read, or the settle time has passed on the wall clock. A ledger
        with no registry log at all waits for nothing (no registry is in use)."""
        if not self._next:
            return True
        t = access_instant(event)
        latest = self.timeline.latest_event_time
        return (latest is not None and latest >= t) or now >= t + self._settle

    def evaluate(self, event: AppendedEvent, alerted: set[DayKey]) -> list[Finding]:
        """The registry rules' findings for one access (``alerted``: the log's days)."""
        if not self.needs(event):
            return []
        t = access_instant(event)
        if self._earliest is None or self._earliest > t:
            return []  # no registry known yet at the access: nothing to hold it to
        view = self.timeline.known_at(t)
        items = self._memo.check(event, view)
        found: list[Finding] = []
        for rule in self._rules:
            finding = rule.decide(event, items, alerted, self._checklist)
            if finding is None:
                continue
            target = AlertTarget(
                rule_id=rule.id,
                user_id=user_id(event) or "",
                facility_id=facility_id(event) or "",
                at=t,
                state=event.text("patient", "state"),
            )
            later = self._later.after(target.subject, t, t + self._lookback)
            found.append(_with_later(finding, (
                c.position for c in later
                if covers(c, target, view, self._checklist, self._lookback)
            )))  # fmt: skip
        return found


def _parse(event: AppendedEvent) -> RegistryChangeRecord | None:
    if event.schema != REGISTRY_CHANGE:
        return None  # the consumer quarantines anything else on the registry topic
    try:
        return parse_change(event)
    except MalformedInputError:
        return None


def _with_later(finding: Finding, positions: Iterable[Position]) -> Finding:
    later = tuple(Evidence(position=p, role=LATER_ROLE) for p in sorted(set(positions)))
    return replace(finding, evidence=(*finding.evidence, *later)) if later else finding
