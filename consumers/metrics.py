"""The consumer's Prometheus metrics: what it appended, duplicated and quarantined (by
reason), its batch and commit latency, its lag per partition, and per log the age of the
latest signed checkpoint and the leaves not yet under one; per witness and log, whether
submitting to it fails.

Invariant: labels are topics, partitions, log origins, witness names and quarantine reason
codes, never
an id from a record. Counters are read from ``ConsumerStats`` at scrape time, so they
cannot drift from what the consumer logs. docs/observability.md lists every metric.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator, Sequence

import asyncpg
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from consumers.consumer import LedgerConsumer
from ledger.pg.cosigner import Cosigner
from ledger.pg.status import LogIngestion, pooled_ingestion_status, unready_reason

#: Seconds: an append transaction is milliseconds to a few seconds under load.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ConsumerTimings:
    """The ``BatchTimings`` the consumer reports to: two histograms on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._batch = Histogram(
            "ledger_consumer_batch_seconds",
            "From a poll's return to its partition batch appended",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._commit = Histogram(
            "ledger_consumer_commit_seconds",
            "One append transaction (leaves, index rows, position) until committed",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )

    def batch(self, seconds: float) -> None:
        self._batch.observe(seconds)

    def commit(self, seconds: float) -> None:
        self._commit.observe(seconds)


class ConsumerCollector(Collector):
    """The consumer's counters and its lag per partition, read at scrape time."""

    def __init__(self, consumer: LedgerConsumer) -> None:
        self._consumer = consumer

    def collect(self) -> Iterator[Metric]:
        stats = self._consumer.stats
        for name, doc, value in (
            ("ledger_consumer_appended_events", "Events appended as leaves", stats.appended),
            ("ledger_consumer_duplicate_events", "Re-sent identical events", stats.duplicates),
            ("ledger_consumer_batches", "Partition batches appended", stats.batches),
            ("ledger_consumer_fenced_batches", "Batches dropped: another writer", stats.fenced),
            ("ledger_consumer_alerts_raised", "Security alerts raised", stats.alerts),
        ):
            counter = CounterMetricFamily(name, doc)
            counter.add_metric([], value)
            yield counter
        quarantined = CounterMetricFamily(
            "ledger_consumer_quarantined_events", "Records quarantined", labels=["reason"]
        )
        for reason, count in sorted(stats.by_reason.items()):
            quarantined.add_metric([reason], count)
        yield quarantined
        lag = GaugeMetricFamily(
            "ledger_consumer_lag_records",
            "Records in Kafka not yet in the ledger, per assigned partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), records in sorted(self._consumer.lag().items()):
            lag.add_metric([topic, str(partition)], records)
        yield lag


class LedgerCollector(Collector):
    """Per log: size, checkpoint age and unsigned leaves, as of the last ``refresh``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._logs: Sequence[LogIngestion] = ()

    async def refresh(self) -> None:
        self._logs = await pooled_ingestion_status(self._pool)

    def collect(self) -> Iterator[Metric]:
        labels = ["origin", "topic", "partition"]
        size = GaugeMetricFamily("ledger_log_size_leaves", "Leaves in the log", labels=labels)
        unsigned = GaugeMetricFamily(
            "ledger_log_unsigned_leaves",
            "Leaves not yet under a signed checkpoint (invisible in histories)",
            labels=labels,
        )
        age = GaugeMetricFamily(
            "ledger_checkpoint_age_seconds",
            "Age of the log's latest signed checkpoint (database clock)",
            labels=labels,
        )
        for log in self._logs:
            key = [log.origin, log.topic, str(log.partition)]
            size.add_metric(key, log.size)
            unsigned.add_metric(key, max(0, log.size - log.checkpoint_size))
            if log.checkpoint_age is not None:
                age.add_metric(key, log.checkpoint_age.total_seconds())
        yield from (size, unsigned, age)


class CosignerCollector(Collector):
    """Per witness and log: whether the last submission failed, and the size cosigned."""

    def __init__(self, cosigner: Cosigner) -> None:
        self._cosigner = cosigner

    def collect(self) -> Iterator[Metric]:
        labels = ["witness", "origin"]
        failing = GaugeMetricFamily(
            "ledger_witness_submission_failing",
            "1 when the last submission of the log's newest checkpoint to the witness failed",
            labels=labels,
        )
        cosigned = GaugeMetricFamily(
            "ledger_witness_cosigned_size",
            "The largest checkpoint size of the log the witness cosigned (this process)",
            labels=labels,
        )
        for outcome in list(self._cosigner.status.values()):
            key = [outcome.witness, outcome.origin]
            failing.add_metric(key, 0 if outcome.ok else 1)
            if outcome.ok:
                cosigned.add_metric(key, outcome.size)
        yield from (failing, cosigned)


#: A readiness check (``producers.ops.Check``): None when ready, else why not.
ReadyCheck = Callable[[], Awaitable[str | None]]


def database_check(pool: asyncpg.Pool) -> ReadyCheck:
    """A readiness check: the database answers on the process's pool."""
    return functools.partial(unready_reason, pool)


def kafka_check(consumer: LedgerConsumer) -> ReadyCheck:
    """A readiness check: the consumer's last poll reached Kafka."""

    async def kafka() -> str | None:
        if consumer.kafka_error is not None:
            return f"Kafka poll failing ({consumer.kafka_error})"
        if not await consumer.kafka_answers():
            return "no Kafka broker answers a metadata request"
        return None

    return kafka
