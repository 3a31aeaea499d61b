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

__all__ = ["CheckContext", "EventCheck", "EventCheckFactory"]


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
