"""Leaves as events: their shape, their Kafka order, and the index row each one implies.

Invariant: every present leaf is decoded at most once; each index row is compared with the
leaf of the same ``leaf_index`` or reported (missing, orphan, duplicate, out of order), and
a mismatch names the column, never a value.  The composed ``EventCheck``s run here, after
the built-in checks of each leaf (``ledger.verify.checks``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ledger.audit.records import SchemaSet
from ledger.errors import LedgerError, MalformedInputError
from ledger.log.leaf import LEAF_VERSION, decode_leaf
from ledger.log.periods import split_origin
from ledger.verify.checks import EventCheck
from ledger.verify.findings import Findings
from ledger.verify.projection import cell_equal, project_event
from ledger.verify.sources import Merge

__all__ = ["EventChecker", "leaf_prefix", "leaf_shape", "log_position"]

Row = Mapping[str, object]


def log_position(origin: str) -> tuple[str, int] | None:
    """``(topic, partition)`` from an origin ``<ledger name>/<topic>/<partition>``, with or
    without a period label after it (docs/design/periods.md)."""
    parts = split_origin(origin)[0].rsplit("/", 2)
    if len(parts) != 3 or not parts[1] or not parts[2].isdigit() or not parts[2].isascii():
        return None
    return parts[1], int(parts[2])


def leaf_prefix(position: tuple[str, int] | None) -> bytes | None:
    """The first bytes every leaf of this log shares: version, topic length, topic, partition."""
    if position is None:
        return None
    topic = position[0].encode("utf-8")
    if len(topic) > 0xFFFF or position[1] > 0xFFFFFFFF:
        return None
    return (
        bytes([LEAF_VERSION])
        + len(topic).to_bytes(2, "big")
        + topic
        + position[1].to_bytes(4, "big")
    )


def _misplaced(
    f: Findings, position: tuple[str, int] | None, index: int, topic: str, partition: int
) -> None:
    if position is not None and (topic, partition) != position:
        f.add(
            "leaf_misplaced",
            f"leaf {index} records {topic!r} partition {partition}, "
            f"not this log's {position[0]!r} partition {position[1]}",
            leaf_index=index,
        )


def leaf_shape(f: Findings, position: tuple[str, int] | None, index: int, leaf: bytes) -> None:
    """A leaf that failed the cheap prefix test: say precisely what is wrong."""
    try:
        record = decode_leaf(leaf)
    except MalformedInputError as exc:
        f.add("leaf_malformed", f"leaf {index}: {exc}", leaf_index=index)
        return
    _misplaced(f, position, index, record.topic, record.partition)


class EventChecker:
    """Decodes each leaf and compares it with its index row (``rows``, when the index is
    checked) and with the composed checks."""

    def __init__(
        self,
        f: Findings,
        schemas: SchemaSet,
        position: tuple[str, int] | None,
        rows: Merge[Row] | None,
        checks: Sequence[EventCheck] = (),
    ) -> None:
        self.f = f
        self.schemas = schemas
        self.position = position
        self.rows = rows
        self.checks = tuple(checks)
        self.last_offset: int | None = None
        self.events_checked = 0

    def orphan_rows(self, index: int) -> None:
        """Leaf ``index`` is missing: any row for it is an orphan."""
        if self.rows is None:
            return
        for _ in self.rows.take(index):
            self.f.add(
                "index_orphan",
                f"index row for leaf {index}, which is not present",
                leaf_index=index,
            )
        self._late_rows()

    def _late_rows(self) -> None:
        if self.rows is None or not self.rows.late:
            return
        for key, _ in self.rows.late:
            self.f.add(
                "index_disorder",
                f"index row for leaf {key} is out of order and was not compared",
                leaf_index=key,
            )
        self.rows.late.clear()

    def check(self, index: int, leaf: bytes) -> None:
        """Leaf ``index`` (present, in sequence): decode, order, project, compare."""
        rows: list[Row] = []
        if self.rows is not None:
            rows = self.rows.take(index)
            self._late_rows()
        try:
            record = decode_leaf(leaf)
        except MalformedInputError as exc:
            self.f.add("leaf_malformed", f"leaf {index}: {exc}", leaf_index=index)
            self._extra_rows(index, rows[1:])
            return
        _misplaced(self.f, self.position, index, record.topic, record.partition)
        if self.last_offset is not None and record.offset <= self.last_offset:
            self.f.add(
                "leaf_offset_order",
                f"leaf {index} has Kafka offset {record.offset}, not above the previous "
                f"leaf's {self.last_offset}",
                leaf_index=index,
            )
        self.last_offset = record.offset
        try:
            name, event = self.schemas.decode(record.value)
            expected = project_event(name, event) if self.rows is not None else {}
        except LedgerError as exc:
            self.f.add("event_undecodable", f"leaf {index}: {exc}", leaf_index=index)
            self._extra_rows(index, rows[1:])
            return
        for extra in self.checks:
            extra.leaf(index, record, name, event)
        if self.rows is None:
            return
        if not rows:
            self.f.add("index_missing", f"no index row for leaf {index}", leaf_index=index)
            return
        self.events_checked += 1
        self._compare(index, rows[0], expected)
        for extra in self.checks:
            extra.row(index, rows[0], expected)
        self._extra_rows(index, rows[1:])

    def _compare(self, index: int, row: Row, expected: Mapping[str, object]) -> None:
        for column, want in expected.items():
            if column not in row:
                self.f.add(
                    "index_mismatch",
                    f"index row for leaf {index} has no {column} column",
                    leaf_index=index,
                )
            elif not cell_equal(column, want, row[column]):
                self.f.add(
                    "index_mismatch",
                    f"index row for leaf {index} disagrees with the leaf on {column}",
                    leaf_index=index,
                )

    def _extra_rows(self, index: int, extra: list[Row]) -> None:
        for _ in extra:
            self.f.add("index_duplicate", f"a second index row for leaf {index}", leaf_index=index)

    def finish(self, n: int) -> None:
        """After the last of the ``n`` leaves: rows left over, then the composed checks."""
        if self.rows is not None:
            self._late_rows()
            for key, _, late in self.rows.rest():
                if late:
                    self.f.add(
                        "index_disorder",
                        f"index row for leaf {key} is out of order and was not compared",
                        leaf_index=key,
                    )
                else:
                    self.f.add(
                        "index_orphan",
                        f"index row for leaf {key}, beyond the {n} leaves present",
                        leaf_index=key,
                    )
        for extra in self.checks:
            extra.finish()
