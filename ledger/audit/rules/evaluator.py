"""The rules evaluator: each log's appended events, in leaf order, through every rule.

Invariant: a log's findings depend only on that log's leaves (its order is total and is
what replay reproduces) and, for the registry rules, on the registry changes whose own
time is at or before each access, so evaluating the same leaves gives the same findings,
whatever the batch sizes, restarts or other logs. The window state is rebuilt on start
by re-reading a log from its first leaf; findings decided at leaves below the stored
cursor were stored before and are not written again. A batch's findings and the cursor
after it are handed to the store together (``RulesStore.commit``: one transaction), and
the store absorbs any finding already stored (unique per rule, version and triggering
position). With a ``RegistryWatch``, each pass reads the registry logs first, and a log
stops (its cursor not advanced) at the first access the registry rules must wait for
(the settle hold, docs/design/compliance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Protocol

from ledger.audit.rules.config import RulesConfig
from ledger.audit.rules.model import AppendedEvent, Finding, LeafBatch, Rule

if TYPE_CHECKING:  # the registry modules import ledger.audit.registry, which imports us
    from ledger.audit.rules.registryrules import DayKey
    from ledger.audit.rules.registrywatch import RegistryWatch

#: Leaves read per batch (one transaction each).
DEFAULT_BATCH: Final = 2000

__all__ = ["DEFAULT_BATCH", "Evaluator", "LeafBatch", "LogEvaluator", "PassSummary",
           "RulesStore", "build_rules"]  # fmt: skip


class RulesStore(Protocol):
    """What the evaluator needs from storage (implemented in ``ledger.pg.compliance``)."""

    async def log_ids(self) -> Sequence[int]: ...

    async def cursor(self, log_id: int) -> int:
        """The first leaf of ``log_id`` not yet evaluated (0 when never evaluated)."""
        ...

    async def leaves(self, log_id: int, first: int, limit: int) -> LeafBatch: ...

    async def commit(self, log_id: int, next_leaf: int, findings: Sequence[Finding]) -> int:
        """Store the findings not stored yet, their evidence, their open transition and
        the cursor, in one transaction; the number of alerts newly raised."""
        ...


def build_rules(config: RulesConfig) -> tuple[Rule[Any], ...]:
    """The rules that need no registry, configured."""
    from ledger.audit.rules.breakglass import BreakGlassUnjustified
    from ledger.audit.rules.bulk import BulkAccess
    from ledger.audit.rules.relays import RelayLate
    from ledger.audit.rules.transport import TransportUnencrypted

    rules: tuple[Rule[Any], ...] = (
        BulkAccess(config.bulk),
        BreakGlassUnjustified(config.breakglass),
        RelayLate(config.relay_late),
        TransportUnencrypted(config.transport),
    )
    return rules + _session4_rules(config)


def _session4_rules(config: RulesConfig) -> tuple[Rule[Any], ...]:
    """Watch lists, unusual hours and relay deadlines (docs/design/compliance.md)."""
    from ledger.audit.rules.hours import UnusualHours
    from ledger.audit.rules.privacy import CoworkerRecord, OwnRecord, VipRecord
    from ledger.audit.rules.relay_deadlines import RelayNoReadback, RelayOverdue

    lists, zone, deadlines = config.privacy, config.timezone, config.relay_late.deadlines
    return (
        OwnRecord(lists.watchlist, lists.own_record_severity, zone),
        CoworkerRecord(lists.watchlist, lists.coworker_record_severity, zone),
        VipRecord(lists.watchlist, lists.vip_record_severity, zone),
        UnusualHours(config.unusual_hours, zone),
        RelayOverdue(config.relay_overdue, deadlines),
        RelayNoReadback(config.relay_no_readback, deadlines),
    )


class LogEvaluator:
    """One log's window state, one per rule, fed in leaf order; with a registry, the
    days the registry rules already alerted in this log."""

    __slots__ = ("_registry", "_rules", "_windows", "alerted", "next_leaf")

    def __init__(self, rules: Sequence[Rule[Any]], registry: RegistryWatch | None = None) -> None:
        self._rules = tuple(rules)
        self._windows: list[Any] = [r.new_window() for r in self._rules]
        self._registry = registry
        self.alerted: set[DayKey] = set()
        self.next_leaf = 0

    def evaluate(self, event: AppendedEvent) -> list[Finding]:
        found: list[Finding] = []
        for rule, window in zip(self._rules, self._windows, strict=True):
            found.extend(rule.evaluate(event, window))
        if self._registry is not None:
            found.extend(self._registry.evaluate(event, self.alerted))
        return found

    def idle(self, now: datetime) -> list[Finding]:
        """What the rules with a wall-clock deadline (``idle``) raise in a log that has
        nothing more to read."""
        found: list[Finding] = []
        for rule, window in zip(self._rules, self._windows, strict=True):
            idle = getattr(rule, "idle", None)
            if idle is not None:
                found.extend(idle(now, window))
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class PassSummary:
    """What one pass over every log did (``held``: audit logs stopped by the settle hold;
    ``registry_changes``: registry changes read for the first time, ``annotated``: late
    registry-change evidence attached to alerts already stored)."""

    logs: int
    leaves: int
    raised: int
    undecodable: int
    held: int = 0
    registry_changes: int = 0
    annotated: int = 0


def _now() -> datetime:
    return datetime.now(UTC)


class Evaluator:
    """Runs the rules over every log of a store, from where each log's cursor stands."""

    def __init__(
        self,
        store: RulesStore,
        rules: Sequence[Rule[Any]],
        *,
        batch: int = DEFAULT_BATCH,
        registry: RegistryWatch | None = None,
        clock: Callable[[], datetime] = _now,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        index, count = shard
        if not 0 <= index < count:
            raise ValueError(f"shard {index} of {count}")
        #: This evaluator's audit logs: those whose id is ``index`` modulo ``count``
        #: (several processes share the logs; a log's findings depend on it alone).
        self._shard = shard
        self._store = store
        self._rules = tuple(rules)
        self._batch = batch
        self._registry = registry
        self._clock = clock
        self._logs: dict[int, LogEvaluator] = {}

    async def run_pass(self) -> PassSummary:
        # The clock is read before the registry: an access is settled only if the settle
        # time had passed when the registry was read.
        now = self._clock()
        registry_logs: frozenset[int] = frozenset()
        changes = annotated = undecodable = 0
        if self._registry is not None:
            read = await self._registry.read()
            registry_logs, changes, annotated = read.logs, read.changes, read.annotated
            undecodable = read.unreadable
        leaves = raised = held = 0
        index, count = self._shard
        audit_logs = set(await self._store.log_ids()) - registry_logs
        log_ids = sorted(log_id for log_id in audit_logs if log_id % count == index)
        for log_id in log_ids:
            n, r, u, h = await self._run_log(log_id, now)
            leaves, raised, undecodable, held = leaves + n, raised + r, undecodable + u, held + h
        return PassSummary(
            logs=len(log_ids) + len(registry_logs), leaves=leaves, raised=raised,
            undecodable=undecodable, held=held, registry_changes=changes, annotated=annotated,
        )  # fmt: skip

    async def _run_log(self, log_id: int, now: datetime) -> tuple[int, int, int, int]:
        try:
            return await self._advance(log_id, now)
        except BaseException:
            # The windows may have seen leaves whose findings were not committed: forget
            # them, so the next pass rebuilds this log from its first leaf.
            self._logs.pop(log_id, None)
            raise

    def _waits(self, event: AppendedEvent, cursor: int, now: datetime) -> bool:
        """Whether ``event`` must wait for the registry (never below the cursor: it was
        settled when it was first evaluated)."""
        reg = self._registry
        return (
            reg is not None
            and event.position.leaf_index >= cursor
            and reg.needs(event)
            and not reg.settled(event, now)
        )

    async def _advance(self, log_id: int, now: datetime) -> tuple[int, int, int, int]:
        state = self._logs.setdefault(log_id, LogEvaluator(self._rules, self._registry))
        cursor = await self._store.cursor(log_id)
        evaluated = raised = undecodable = 0
        while True:
            first = state.next_leaf
            batch = await self._store.leaves(log_id, first, self._batch)
            if batch.next_leaf <= first:
                if first >= cursor:  # the windows hold every leaf evaluated so far
                    due = state.idle(now)
                    if due:
                        raised += await self._store.commit(log_id, first, due)
                return evaluated, raised, undecodable, 0
            findings: list[Finding] = []
            stop, seen = batch.next_leaf, 0
            for event in batch.events:
                if self._waits(event, cursor, now):
                    stop = event.position.leaf_index
                    break
                seen += 1
                decided = state.evaluate(event)
                if event.position.leaf_index >= cursor:
                    findings.extend(decided)
            state.next_leaf = stop
            if stop > cursor:
                raised += await self._store.commit(log_id, stop, findings)
                evaluated += stop - max(cursor, first)
                # the leaves in [first, stop) that are not events could not be decoded
                undecodable += batch.undecodable if stop == batch.next_leaf else stop - first - seen
                cursor = stop
            if stop < batch.next_leaf:
                return evaluated, raised, undecodable, 1
