"""Composition root of the consumer process, run by ``ledger consume`` (which reads the settings).

Invariant: the process wires exactly one appender, one checkpointer (holding the
signer keys), one codec and one consumer, and on SIGTERM/SIGINT finishes its
in-flight batch, then exits (at once while it is still trying to reach Kafka).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from consumers.consumer import (
    START_RETRY_MAX_SECONDS,
    START_RETRY_TOTAL_SECONDS,
    ConsumerConfig,
    LedgerConsumer,
)
from consumers.metrics import (
    ConsumerCollector,
    ConsumerTimings,
    CosignerCollector,
    LedgerCollector,
    database_check,
    kafka_check,
)
from ledger.errors import UnavailableError
from ledger.http.witnessclient import HttpWitnessTransport
from ledger.log.note import Signer
from ledger.log.periods import PeriodLength
from ledger.log.witness import Witness
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.cosigner import Cosigner
from ledger.pg.pool import PoolSettings
from producers.codec import Codec
from producers.kafka_security import KafkaSecurity
from producers.ops import OpsConfig, OpsServer, OpsState

logger = logging.getLogger("consumers")

#: The cyclic collector's young-generation threshold in the consumer process (Python's
#: default is 700 allocations). A poll of 10,000 records allocates a few hundred
#: thousand short-lived objects and makes almost no cycles, so the default ran ~500
#: young collections per 30,000 events, a tenth of the process's CPU
#: (benchmarks/producer_auth.py measured +15% events/s with this threshold).
GC_YOUNG_THRESHOLD = 100_000


def tune_gc() -> None:
    """Freeze what start-up built (modules, schemas, pools: never garbage) out of the
    collector's sight, and collect the young generation less often. Reference counting
    still frees every acyclic object at once; only cycles wait longer."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 50, 100)


async def run_consumer(
    *,
    bootstrap: str,
    topics: tuple[str, ...],
    relay_topics: frozenset[str],
    group_id: str,
    registry_topics: frozenset[str] = frozenset(),
    appender_dsn: str,
    ledger_name: str,
    signers: Sequence[Signer],
    policy: CheckpointPolicy,
    max_clock_skew_seconds: float = 300.0,
    session_timeout_ms: int = 10_000,
    group_instance_id: str | None = None,
    max_batch: int = 10_000,
    authenticate_producers: bool = True,
    kafka_security: KafkaSecurity | None = None,
    ops: OpsConfig | None = None,
    pool: PoolSettings | None = None,
    witnesses: WitnessSubmission | None = None,
    period: PeriodLength = PeriodLength.MONTH,
) -> None:
    """Consume until SIGTERM/SIGINT; with ``ops``, serve /metrics, /livez and /readyz;
    with ``witnesses``, submit new checkpoints to them in the background."""
    stop = _stop_on_signals()
    config = ConsumerConfig(
        bootstrap_servers=bootstrap,
        topics=topics,
        relay_topics=relay_topics,
        registry_topics=registry_topics,
        group_id=group_id,
        max_clock_skew_seconds=max_clock_skew_seconds,
        session_timeout_ms=session_timeout_ms,
        group_instance_id=group_instance_id,
        max_batch=max_batch,
        authenticate_producers=authenticate_producers,
        kafka_security=kafka_security or KafkaSecurity(),
    )
    appender = PostgresAppender(
        dsn=appender_dsn,
        ledger_name=ledger_name,
        pool=pool,
        period=period,
        reference_topics=registry_topics,
    )
    if not await _database_unless_stopped(appender, stop):
        logger.info("stopped before PostgreSQL could be reached")
        return
    checkpointer = Checkpointer(pool=appender.pool, signers=signers, policy=policy)
    state = OpsState()
    consumer = LedgerConsumer(
        config=config,
        appender=appender,
        codec=Codec(),
        checkpointer=checkpointer,
        key_source=appender,
        timings=ConsumerTimings(state.registry),
    )
    state.registry.register(ConsumerCollector(consumer))
    logs = LedgerCollector(appender.pool)
    state.registry.register(logs)
    state.refreshers.append(logs.refresh)
    state.checks.update(database=database_check(appender.pool), kafka=kafka_check(consumer))
    async with appender, _serving(ops, state), _cosigning(appender, witnesses, state):
        if not await _started_unless_stopped(consumer, stop):
            logger.info("stopped before Kafka could be reached")
            return
        try:
            tune_gc()
            logger.info("consuming %s as group %s", ",".join(topics), group_id)
            await _run_until(consumer, stop)
        finally:
            await consumer.stop()


async def _database_unless_stopped(appender: PostgresAppender, stop: asyncio.Event) -> bool:
    """Start ``appender``'s pool; while PostgreSQL cannot be reached (a consumer started,
    or restarted by its supervisor, while the database restarts), retry with a growing
    pause, logging each failure, for up to START_RETRY_TOTAL_SECONDS, as for Kafka; then
    the error stands. False when SIGTERM/SIGINT came first."""
    loop = asyncio.get_running_loop()
    deadline, pause = loop.time() + START_RETRY_TOTAL_SECONDS, 0.5
    while not stop.is_set():
        try:
            await appender.start()
            return True
        except UnavailableError as exc:
            if loop.time() + pause > deadline:
                raise
            logger.warning("PostgreSQL unreachable (%s); retrying in %.1f s", exc, pause)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)
        pause = min(pause * 2, START_RETRY_MAX_SECONDS)
    return False


async def _started_unless_stopped(consumer: LedgerConsumer, stop: asyncio.Event) -> bool:
    """Start ``consumer``; False when SIGTERM/SIGINT came first (the start retries an
    unreachable broker for minutes, and a supervisor's stop must not wait for that)."""
    starting = asyncio.create_task(consumer.start())
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if starting.done():
        starting.result()  # a failed start raises here
        return True
    starting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await starting
    await consumer.stop()
    return False


@dataclass(frozen=True, slots=True, kw_only=True)
class WitnessSubmission:
    """The witnesses new checkpoints go to, how often, and each request's time limit."""

    witnesses: tuple[Witness, ...]
    every_seconds: float = 1.0
    timeout_seconds: float = 10.0


@contextlib.asynccontextmanager
async def _cosigning(
    appender: PostgresAppender, config: WitnessSubmission | None, state: OpsState
) -> AsyncIterator[None]:
    """The cosigner's sweep loop, beside the consumer for the block (never in its path: a
    slow or failing witness delays no append and no checkpoint)."""
    if config is None or not config.witnesses:
        yield
        return
    async with HttpWitnessTransport() as transport:
        cosigner = Cosigner(
            pool=appender.pool,
            witnesses=config.witnesses,
            transport=transport,
            timeout=config.timeout_seconds,
        )
        state.registry.register(CosignerCollector(cosigner))
        done = asyncio.Event()
        task = asyncio.create_task(cosigner.run(done, config.every_seconds))
        logger.info("submitting checkpoints to %d witness(es)", len(config.witnesses))
        try:
            yield
        finally:
            done.set()
            await asyncio.gather(task, return_exceptions=True)


@contextlib.asynccontextmanager
async def _serving(ops: OpsConfig | None, state: OpsState) -> AsyncIterator[None]:
    """The ops listener for the block, when configured (started before Kafka is reached,
    so /livez answers while the consumer waits for the broker)."""
    if ops is None:
        yield
        return
    async with OpsServer(ops, state):
        yield


def _stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets (the process's only way to stop)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _run_until(consumer: LedgerConsumer, stop: asyncio.Event) -> None:
    """Run ``consumer`` until ``stop`` is set or it fails; finish its batch; re-raise a failure."""
    runner = asyncio.create_task(consumer.run())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    await consumer.stop()
    stopper.cancel()
    failure = (await asyncio.gather(runner, return_exceptions=True))[0]
    logger.info("consumer stopped: %s", consumer.stats)
    if isinstance(failure, BaseException):
        raise failure
