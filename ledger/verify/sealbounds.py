"""The Kafka offsets of a sealed log lie where its partition's chain of periods says.

Invariant: every decoded leaf of a log whose bundle records a first offset has a Kafka
offset at or past it, and every leaf of a sealed log has an offset before the one its
seal says the next log starts at; the first leaf out of bounds on each side is one
``chain_offset_mismatch`` finding. The seal is read without checking its signature
(``ledger.verify.seals`` does, as ``seal_invalid``): only its offset bounds the leaves.
Plugged in as an ``EventCheck``; a source that is not a bundle is not checked.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledger.audit.records import JsonValue
from ledger.errors import LedgerError
from ledger.log.cosignature import split_note
from ledger.log.leaf import KafkaRecord
from ledger.log.seal import parse_seal
from ledger.verify.bundles import BundleLogSource
from ledger.verify.checks import CheckContext
from ledger.verify.findings import Findings

__all__ = ["SealBoundsCheck", "seal_bounds_check"]


class SealBoundsCheck:
    """Reports the first leaf before the log's first offset and the first at or past
    its seal's next first offset."""

    def __init__(self, findings: Findings, first: int | None, end: int | None) -> None:
        self._findings = findings
        self._first = first
        self._end = end
        self._early = self._late = False

    def leaf(
        self, index: int, record: KafkaRecord, full_name: str, event: Mapping[str, JsonValue]
    ) -> None:
        offset = record.offset
        if self._first is not None and offset < self._first and not self._early:
            self._early = True
            self._findings.add(
                "chain_offset_mismatch",
                f"leaf {index} is Kafka offset {offset}, before the log's first offset "
                f"{self._first}",
                leaf_index=index,
            )
        if self._end is not None and offset >= self._end and not self._late:
            self._late = True
            self._findings.add(
                "chain_offset_mismatch",
                f"leaf {index} is Kafka offset {offset}, at or past {self._end} where the "
                "seal says the next log starts",
                leaf_index=index,
            )

    def row(self, index: int, row: Mapping[str, object], expected: Mapping[str, JsonValue]) -> None:
        """Rows carry no offset."""

    def finish(self) -> None:
        """Nothing is left over."""


def seal_bounds_check(context: CheckContext) -> SealBoundsCheck:
    """The ``EventCheckFactory`` for ``checks=`` (one check per log)."""
    source = context.source
    if not isinstance(source, BundleLogSource):
        return SealBoundsCheck(context.findings, None, None)
    log = source.reader.log(source.log_id)
    end: int | None = None
    try:
        stored = source.reader.seal(source.log_id)
        if stored is not None:
            end = parse_seal(split_note(stored.note)[0]).next_first_offset
    except LedgerError:
        end = None  # an unreadable seal is seal_invalid (ledger.verify.seals)
    return SealBoundsCheck(context.findings, log.first_offset, end)
