"""The rows one partition batch adds, planned before any is written (no I/O).

Invariant: every fresh record of a batch ends in exactly one place: a new leaf (with its
index row and disclosed ranges), a counted duplicate (same event id, same bytes), or
quarantine (refused, or the same event id with other content: both versions, plus a
security alert). Leaf indexes are assigned gaplessly from the log's next leaf, in batch
order. The appender writes these rows, in one transaction, in ``ledger.pg.appender``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from ledger.audit.ingest import Accepted, AppendResult, BatchItem, IndexFields, Rejected
from ledger.log.leaf import KafkaRecord, decode_leaf
from ledger.log.merkle import leaf_hash

#: The appender's logger: these records are logged as the appender's, as before.
logger = logging.getLogger("ledger.pg.appender")

REASON_CONFLICT = "conflicting_event_id"
REASON_CONFLICT_ORIGINAL = "conflicting_event_id_original"

#: (log id, leaf index, leaf, leaf hash, period, seal id, seal entry):
#: ``sql.SIGNED_LEAF_COLUMNS``.
LeafRow = tuple[int, int, bytes, bytes, date, bytes | None, int | None]
#: An event already recorded: (log id, leaf index, leaf).
Recorded = tuple[int, int, bytes]


@dataclass(slots=True, kw_only=True)
class BatchRows:
    """Accumulates the rows of one batch as ``add`` classifies each fresh record."""

    log_id: int
    #: The first day of the log's period (the partition key of its rows).
    period: date
    topic: str
    partition: int
    #: The log's size before the batch: the first new leaf's index.
    next_leaf: int
    #: Events of this batch already recorded in some log, by event id.
    existing: Mapping[object, Recorded]
    leaves: list[LeafRow] = field(default_factory=list)
    events: list[tuple[object, ...]] = field(default_factory=list)
    disclosed: list[tuple[object, ...]] = field(default_factory=list)
    patients: list[tuple[object, ...]] = field(default_factory=list)
    quarantine: list[tuple[object, ...]] = field(default_factory=list)
    alerts: list[tuple[object, ...]] = field(default_factory=list)
    conflicts: int = 0
    duplicates: int = 0
    #: Events accepted earlier in this batch: (record, leaf index).
    seen_here: dict[object, tuple[KafkaRecord, int]] = field(default_factory=dict)

    @property
    def quarantined(self) -> int:
        """Records quarantined, counting a conflict once (its original is not a record
        of this batch)."""
        return len(self.quarantine) - self.conflicts

    def add(self, item: BatchItem) -> None:
        """Classify one fresh record: quarantine, duplicate, conflict or new leaf."""
        rec = item.record
        if isinstance(item, Rejected):
            self.quarantine.append(_quarantine_row(rec, item.reason, item.detail, item.envelope))
            if item.alert:
                self.alerts.append(_auth_alert(item))
            return
        prior, prior_log, prior_index = self._prior(item.index.event_id)
        if prior is not None:
            if prior.value == rec.value:
                self.duplicates += 1
            else:
                self._conflict(item, prior, prior_log, prior_index)
            return
        self._accept(item)

    def result(self, *, next_offset: int, skipped: int) -> AppendResult:
        return AppendResult(
            log_id=self.log_id,
            next_offset=next_offset,
            appended=len(self.leaves),
            duplicates=self.duplicates,
            quarantined=self.quarantined,
            skipped=skipped,
            first_leaf=self.next_leaf,
            alerts=len(self.alerts),
        )

    def _prior(self, event_id: object) -> tuple[KafkaRecord | None, int, int]:
        """The recorded version of an event id, if any, with its log and leaf index."""
        if event_id in self.existing:
            prior_log, prior_index, prior_leaf = self.existing[event_id]
            return decode_leaf(prior_leaf), prior_log, prior_index
        if event_id in self.seen_here:
            prior, prior_index = self.seen_here[event_id]
            return prior, self.log_id, prior_index
        return None, self.log_id, -1

    def _conflict(
        self, item: Accepted, prior: KafkaRecord, prior_log: int, prior_index: int
    ) -> None:
        # Same id, other content: never merge. Both versions go to quarantine (the
        # recorded one also stays in the ledger, which is append-only), and an
        # investigator gets a security alert.
        rec, event_id = item.record, item.index.event_id
        topic, partition = self.topic, self.partition
        where = f"log {prior_log} leaf {prior_index}"
        logger.critical(
            "SECURITY: event id %s re-sent with different content at %s/%d@%d "
            "(recorded at %s)",
            event_id, topic, partition, rec.offset, where,
        )  # fmt: skip
        self.quarantine.append(
            _quarantine_row(
                rec,
                REASON_CONFLICT,
                f"event id {event_id} is already recorded at {where} with different content",
            )
        )
        self.quarantine.append(
            _quarantine_row(
                prior,
                REASON_CONFLICT_ORIGINAL,
                f"the recorded version of event id {event_id} ({where}); a conflicting "
                f"version arrived at {topic}/{partition}@{rec.offset}",
            )
        )
        self.conflicts += 1
        self.alerts.append(
            (
                "event_id_conflict", event_id, prior_log, prior_index, topic,
                partition, rec.offset,
                f"event id {event_id} arrived again with different content; the "
                f"recorded version is {where}; both versions are in quarantine",
            )
        )  # fmt: skip

    def _accept(self, item: Accepted) -> None:
        index = self.next_leaf + len(self.leaves)
        f = item.index
        self.seen_here[f.event_id] = (item.record, index)
        sid, entry = item.seal_ref or (None, None)
        period = self.period
        self.leaves.append(
            (self.log_id, index, item.leaf, leaf_hash(item.leaf), period, sid, entry)
        )
        self.events.append((*_event_row(f, self.log_id, index), period))
        self.disclosed += [(f.event_id, *r, period) for r in f.disclosed]
        self.patients += [
            (f.event_id, pid, issuer, state, list(studies), period)
            for issuer, pid, state, studies in f.patients
        ]


def _event_row(f: IndexFields, log_id: int, index: int) -> tuple[object, ...]:
    """The event index row, in ``sql.EVENT_COLUMNS`` order but for the period (last)."""
    return (
        f.event_id,
        log_id,
        index,
        f.kind,
        f.event_time,
        f.producer_id,
        f.producer_seq,
        f.facility_id,
        f.patient_id,
        f.patient_issuer,
        f.patient_state,
        f.user_id,
        f.user_name,
        f.user_role,
        f.user_org,
        f.dicom_event_id,
        f.action,
        f.outcome,
        f.study_uid,
        f.accession,
        f.network_address,
        f.purpose_of_use,
    )


def _ts(record: KafkaRecord) -> datetime | None:
    """The Kafka timestamp as a datetime, or None when it is out of range (hostile input)."""
    try:
        return datetime.fromtimestamp(record.timestamp_ms / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _auth_alert(item: Rejected) -> tuple[object, ...]:
    """A security alert for a record that failed producer authentication."""
    rec = item.record
    logger.critical(
        "SECURITY: record at %s/%d@%d failed producer authentication (%s)",
        rec.topic, rec.partition, rec.offset, item.reason,
    )  # fmt: skip
    return (
        f"producer_auth_{item.reason}", None, None, None, rec.topic, rec.partition,
        rec.offset, f"{item.reason}: {item.detail}"[:2000],
    )  # fmt: skip


def _quarantine_row(
    rec: KafkaRecord, reason: str, detail: str, envelope: bytes | None = None
) -> tuple[object, ...]:
    return (
        rec.topic,
        rec.partition,
        rec.offset,
        _ts(rec),
        rec.key,
        rec.value,
        reason,
        detail[:2000],
        envelope,
    )
