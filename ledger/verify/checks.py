"""The extension point: extra per-leaf and per-index-row checks composed into verification.

Invariant: an ``EventCheck`` only adds findings (through ``CheckContext.findings``, with a
kind registered in ``findings.FINDING_KINDS`` and a detail without event values); it never
raises because the data is bad and never changes what the built-in checks see.  Checks run
in leaf order, on every present leaf that decodes as an event, after the built-in checks
of that leaf; ``row`` runs only for a leaf with an index row (with ``check_index``).

How a new check plugs in (producer signatures, disclosed read ranges, ...): write a class
with the three methods of ``EventCheck`` in a module of its own, and pass a factory
``(CheckContext) -> EventCheck`` in ``checks=`` to ``verify_log`` / ``verify_bundle``
(``ledgerctl.verifying`` composes the list for the CLI).  The factory is called once per
log; it may read what else it needs from ``context.source`` (a ``BundleLogSource`` gives
its ``reader`` for the bundle's other files).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ledger.audit.records import JsonValue, SchemaSet
from ledger.log.leaf import KafkaRecord
from ledger.verify.findings import Findings
from ledger.verify.sources import LogSource

__all__ = ["CellCheck", "CheckContext", "EventCheck", "EventCheckFactory", "RowProblem"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckContext:
    """What a check of one log is given: the log, its source, the writer schemas, and the
    findings collector to report into (``findings.add(kind, detail, leaf_index=...)``)."""

    origin: str
    source: LogSource
    schemas: SchemaSet
    findings: Findings


class EventCheck(Protocol):
    def leaf(
        self, index: int, record: KafkaRecord, full_name: str, event: Mapping[str, JsonValue]
    ) -> None:
        """Leaf ``index``, decoded: its Kafka record and its event (``SchemaSet.decode``)."""

    def row(self, index: int, row: Mapping[str, object], expected: Mapping[str, JsonValue]) -> None:
        """The index row of leaf ``index``, with the columns its event projects to."""

    def finish(self) -> None:
        """After the last leaf: report what never matched (side-table rows left over...)."""


EventCheckFactory = Callable[[CheckContext], EventCheck]

#: What a cell check compares: (event schema name, decoded event, index row) -> a
#: description of the disagreement, without event values, or None when they agree.
RowProblem = Callable[[str, Mapping[str, JsonValue], Mapping[str, object]], str | None]


class CellCheck:
    """An ``EventCheck`` comparing one projected cell of each index row with its leaf's
    event (``problem``), reported as ``kind``; the cell lives in the row of the leaf it
    belongs to, so nothing can be left over at ``finish``."""

    def __init__(self, findings: Findings, *, kind: str, problem: RowProblem) -> None:
        self.findings = findings
        self._kind = kind
        self._problem = problem
        self._name: str | None = None
        self._event: Mapping[str, JsonValue] = {}
        self._index = -1

    def leaf(
        self, index: int, record: KafkaRecord, full_name: str, event: Mapping[str, JsonValue]
    ) -> None:
        self._index, self._name, self._event = index, full_name, event

    def row(self, index: int, row: Mapping[str, object], expected: Mapping[str, JsonValue]) -> None:
        if index != self._index or self._name is None:
            return  # leaf() always runs first for the same index; nothing to compare else
        problem = self._problem(self._name, self._event, row)
        if problem is not None:
            self.findings.add(self._kind, f"leaf {index}: {problem}", leaf_index=index)

    def finish(self) -> None:
        """Nothing is left over: the cell lives in the row of the leaf it belongs to."""
