"""The rules evaluator: each log's appended events, in leaf order, through every rule.

Invariant: a log's findings depend only on that log's leaves (its order is total and is
what replay reproduces), so evaluating the same leaves gives the same findings, whatever
the batch sizes, restarts or other logs. The window state is rebuilt on start by
re-reading a log from its first leaf; findings decided at leaves below the stored cursor
were stored before and are not written again. A batch's findings and the cursor after it
are handed to the store together (``RulesStore.commit``: one transaction), and the store
absorbs any finding already stored (unique per rule, version and triggering position).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

from ledger.audit.rules.config import RulesConfig
from ledger.audit.rules.model import AppendedEvent, Finding, Rule

#: Leaves read per batch (one transaction each).
DEFAULT_BATCH: Final = 2000


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafBatch:
    """Leaves [first, next_leaf) of a log: the decodable ones as events; ``undecodable``
    counts those the stored writer schemas could not decode (``ledger verify`` names them)."""

    events: tuple[AppendedEvent, ...]
    next_leaf: int
    undecodable: int = 0


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
    """One log's window state, one per rule, fed in leaf order."""

    __slots__ = ("_rules", "_windows", "next_leaf")

    def __init__(self, rules: Sequence[Rule[Any]]) -> None:
        self._rules = tuple(rules)
        self._windows: list[Any] = [r.new_window() for r in self._rules]
        self.next_leaf = 0

    def evaluate(self, event: AppendedEvent) -> list[Finding]:
        found: list[Finding] = []
        for rule, window in zip(self._rules, self._windows, strict=True):
            found.extend(rule.evaluate(event, window))
        return found


@dataclass(frozen=True, slots=True, kw_only=True)
class PassSummary:
    """What one pass over every log did."""

    logs: int
    leaves: int
    raised: int
    undecodable: int


class Evaluator:
    """Runs the rules over every log of a store, from where each log's cursor stands."""

    def __init__(
        self, store: RulesStore, rules: Sequence[Rule[Any]], *, batch: int = DEFAULT_BATCH
    ) -> None:
        self._store = store
        self._rules = tuple(rules)
        self._batch = batch
        self._logs: dict[int, LogEvaluator] = {}

    async def run_pass(self) -> PassSummary:
        leaves = raised = undecodable = 0
        log_ids = sorted(await self._store.log_ids())
        for log_id in log_ids:
            n, r, u = await self._run_log(log_id)
            leaves, raised, undecodable = leaves + n, raised + r, undecodable + u
        return PassSummary(logs=len(log_ids), leaves=leaves, raised=raised, undecodable=undecodable)

    async def _run_log(self, log_id: int) -> tuple[int, int, int]:
        try:
            return await self._advance(log_id)
        except BaseException:
            # The windows may have seen leaves whose findings were not committed: forget
            # them, so the next pass rebuilds this log from its first leaf.
            self._logs.pop(log_id, None)
            raise

    async def _advance(self, log_id: int) -> tuple[int, int, int]:
        state = self._logs.setdefault(log_id, LogEvaluator(self._rules))
        cursor = await self._store.cursor(log_id)
        evaluated = raised = undecodable = 0
        while True:
            first = state.next_leaf
            batch = await self._store.leaves(log_id, first, self._batch)
            if batch.next_leaf <= first:
                return evaluated, raised, undecodable
            findings: list[Finding] = []
            for event in batch.events:
                decided = state.evaluate(event)
                if event.position.leaf_index >= cursor:
                    findings.extend(decided)
            state.next_leaf = batch.next_leaf
            if batch.next_leaf > cursor:
                raised += await self._store.commit(log_id, batch.next_leaf, findings)
                evaluated += batch.next_leaf - max(cursor, first)
                undecodable += batch.undecodable
                cursor = batch.next_leaf
