"""``ledger status``: the ingestion lag per partition and the signing state per log.

Invariant: every number is read, none estimated: Kafka's end offset per partition (as the
consumer principal sees it), the next offset the ledger ingested (stored with the leaves,
in the same transaction), the log's size and its latest signed checkpoint; a source that
cannot be read is shown as unknown, never as zero lag.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ledger.audit import wording
from ledger.pg.status import LogIngestion
from producers.kafka_security import KafkaSecurity, client_kwargs


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionStatus:
    topic: str
    partition: int
    #: Kafka's end offset (None: Kafka could not be read).
    end_offset: int | None
    #: The next offset the ledger will read (0: nothing ingested, no log yet).
    ingested: int
    log: LogIngestion | None

    @property
    def lag(self) -> int | None:
        return None if self.end_offset is None else max(0, self.end_offset - self.ingested)


async def end_offsets(
    bootstrap: str, topics: Sequence[str], security: KafkaSecurity, *, timeout_ms: int = 10_000
) -> dict[tuple[str, int], int]:
    """Kafka's end offset of every partition of ``topics`` (topics that do not exist are
    left out)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=timeout_ms, **client_kwargs(security)
    )
    await admin.start()
    try:
        described = await admin.describe_topics(list(topics))
    finally:
        await admin.close()
    parts = [
        TopicPartition(str(t["topic"]), int(p["partition"]))
        for t in described
        if not t.get("error_code")
        for p in t.get("partitions", ())
    ]
    if not parts:
        return {}
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        request_timeout_ms=timeout_ms,
        **client_kwargs(security),
    )
    await consumer.start()
    try:
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
    return {(tp.topic, tp.partition): int(n) for tp, n in ends.items()}


def combine(
    logs: Sequence[LogIngestion], ends: dict[tuple[str, int], int] | None, topics: Sequence[str]
) -> list[PartitionStatus]:
    """One row per partition Kafka has or the ledger has a log of, by topic and partition."""
    by_key = {(g.topic, g.partition): g for g in logs}
    keys = set(by_key) | {k for k in (ends or {}) if k[0] in topics}
    return [
        PartitionStatus(
            topic=t,
            partition=p,
            end_offset=None if ends is None else ends.get((t, p)),
            ingested=by_key[(t, p)].next_offset if (t, p) in by_key else 0,
            log=by_key.get((t, p)),
        )
        for t, p in sorted(keys)
    ]


COLUMNS = (
    "topic",
    "partition",
    "end offset (Kafka)",
    "ingested offset (ledger)",
    "lag (records)",
    "log size",
    "signed size",
    "unsigned leaves",
    "last checkpoint",
)


def row(s: PartitionStatus) -> list[str]:
    g = s.log
    unknown = "unknown"
    return [
        s.topic,
        str(s.partition),
        unknown if s.end_offset is None else str(s.end_offset),
        str(s.ingested),
        unknown if s.lag is None else str(s.lag),
        "no log yet" if g is None else str(g.size),
        "" if g is None else str(g.checkpoint_size),
        "" if g is None else str(g.size - g.checkpoint_size),
        "" if g is None else wording.age(g.checkpoint_age),
    ]


def summary(rows: Sequence[PartitionStatus], *, stale: timedelta) -> list[str]:
    """Plain sentences: total lag, logs with unsigned leaves and an old checkpoint."""
    lags = [r.lag for r in rows]
    out = []
    if any(x is None for x in lags):
        out.append("Kafka's end offsets could not be read: the lag is unknown")
    else:
        total = sum(x for x in lags if x is not None)
        behind = sum(1 for x in lags if x)
        out.append(
            "ingestion is up to date"
            if total == 0
            else f"{wording.count(total, 'record')} not ingested yet, in "
            f"{wording.count(behind, 'partition')}"
        )
    for r in rows:
        g = r.log
        if (
            g is not None
            and g.size > g.checkpoint_size
            and (g.checkpoint_age is None or g.checkpoint_age > stale)
        ):
            unsigned = wording.count(g.size - g.checkpoint_size, "unsigned leaf", "unsigned leaves")
            out.append(
                f"{g.origin}: {unsigned}, last checkpoint {wording.age(g.checkpoint_age)}: "
                "is the consumer signing?"
            )
    return out
