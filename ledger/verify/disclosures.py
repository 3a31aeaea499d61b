"""The read-attribution check: each index row's ``disclosed`` cell against its leaf.

Invariant: a row's ``disclosed`` cell (the leaf's ``read_disclosures`` rows, rendered by
``ledger.audit.disclosure``) equals the ranges its AuditLogUsed v2 event carries, and is empty for
every other event; a disagreement is one ``disclosure_mismatch`` finding per leaf, counting
missing and extra ranges without naming them (no PHI).  A row without the column (a bundle
written before it existed) reads as disclosing nothing.  Plugged in as an ``EventCheck``
(``ledger.verify.checks``); it looks at rows only, so it needs ``check_index``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.audit import disclosure
from ledger.audit.records import JsonValue
from ledger.log.leaf import KafkaRecord
from ledger.verify.checks import CheckContext
from ledger.verify.findings import Findings

__all__ = ["DisclosureCheck", "disclosure_check"]


class DisclosureCheck:
    """Compares the ``disclosed`` cell of each index row with its leaf's event."""

    def __init__(self, findings: Findings) -> None:
        self.findings = findings
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
        problem = disclosure.check(self._name, self._event, row)
        if problem is not None:
            self.findings.add("disclosure_mismatch", f"leaf {index}: {problem}", leaf_index=index)

    def finish(self) -> None:
        """Nothing is left over: the ranges live in the row of the leaf they belong to."""


def disclosure_check(context: CheckContext) -> DisclosureCheck:
    """The ``EventCheckFactory`` for ``checks=`` (one check per log)."""
    return DisclosureCheck(context.findings)
