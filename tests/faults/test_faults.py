"""Faults during a stream of events: the ledger neither loses nor duplicates anything.

Each test streams FAULT_EVENTS simulated events through a real producer process, with
injected bad records, while it SIGKILLs consumers, restarts PostgreSQL (a cluster of the
test's own) or cuts a producer off the broker; then it checks the invariants itself (see
conftest.py). Restarting Kafka is in test_kafka_cluster.py, on a cluster of its own: no
test here stops a server the rest of the suite shares (the suite runs in two processes).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.faults.conftest import EVENTS, LEDGER, FaultLedger, kill, read_ids
from tests.support import ROOT

pytestmark = pytest.mark.faults


def wait(proc: subprocess.Popen[bytes], timeout: float, ledger: FaultLedger, name: str) -> None:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} did not finish in {timeout}s:\n{ledger.log_tail(name)}")
    assert code == 0, f"{name} exited {code}:\n{ledger.log_tail(name)}"


def stream_timeout() -> float:
    return 120 + EVENTS / 1000


async def settle_and_check(fault_ledger: FaultLedger, ids: list[uuid.UUID]) -> None:
    """Wait for every id, let the checkpoints catch up, then check every invariant."""
    await fault_ledger.wait_for_ids(ids, timeout=stream_timeout())
    await asyncio.sleep(2)
    await fault_ledger.check_invariants(ids)
    fault_ledger.verify()


async def test_consumers_sigkilled_repeatedly_mid_batch(
    fault_ledger: FaultLedger, tmp_path: Path
) -> None:
    ids_file = tmp_path / "ids.txt"
    await fault_ledger.inject_bad_records(10)
    producer = fault_ledger.simulate(EVENTS, seed=4401, ids=ids_file)
    rng = random.Random(7)
    kills = 0
    # Two consumers of one group share the partitions; one of them dies again and again,
    # at random moments (usually mid-batch), and rebalances move partitions around.
    steady = fault_ledger.consumer("consumer")
    deadline = time.monotonic() + 30
    while await fault_ledger.writers() == 0:  # the steady consumer holds every log first
        if time.monotonic() > deadline:
            pytest.fail(
                f"the first consumer got no partitions:\n{fault_ledger.log_tail('consumer')}"
            )
        await asyncio.sleep(0.05)
    while producer.poll() is None or kills < 4:
        before = await fault_ledger.writers()
        victim = fault_ledger.consumer("victim")
        # Kill it only once the rebalance gave it partitions (it claimed a log), at a
        # random moment while it appends: usually mid-batch.
        deadline = time.monotonic() + 30
        while await fault_ledger.writers() == before:
            if time.monotonic() > deadline:
                pytest.fail(f"a new consumer got no partitions:\n{fault_ledger.log_tail('victim')}")
            await asyncio.sleep(0.05)
        await asyncio.sleep(rng.uniform(0.05, 1.0))
        kill(victim)
        kills += 1
        if kills == 3:
            await fault_ledger.inject_bad_records(10)
        if kills == 5:
            kill(steady)  # the whole group down at once, mid-stream
            steady = fault_ledger.consumer("consumer")
    wait(producer, stream_timeout(), fault_ledger, "simulate")
    ids = read_ids(ids_file)
    assert len(ids) == EVENTS
    await settle_and_check(fault_ledger, ids)
    # Every consumer process that was killed had claimed logs: the partitions really moved.
    assert await fault_ledger.writers() >= kills + 1


async def test_postgres_restart_mid_stream(private_pg_ledger: FaultLedger, tmp_path: Path) -> None:
    # The ledger's own cluster: the shared server keeps serving the rest of the suite.
    ledger, postgres = private_pg_ledger, private_pg_ledger.postgres
    assert postgres is not None
    ids_file = tmp_path / "ids.txt"
    ledger.consumer()
    producer = ledger.simulate(EVENTS, seed=4403, ids=ids_file)
    await ledger.inject_bad_records(5)
    await asyncio.sleep(1.5)
    started_at = time.monotonic()
    try:
        await asyncio.to_thread(postgres.script, "stop")
        await asyncio.sleep(3)
    finally:
        await asyncio.to_thread(postgres.script, "start")
    assert time.monotonic() - started_at >= 3
    wait(producer, stream_timeout(), ledger, "simulate")
    ids = read_ids(ids_file)
    await settle_and_check(ledger, ids)


async def test_producer_cut_off_from_the_broker(fault_ledger: FaultLedger, tmp_path: Path) -> None:
    """The producer's host loses the network to Kafka for a while; nothing is lost."""
    ids_file = tmp_path / "ids.txt"
    fault_ledger.consumer()
    async with fault_ledger.proxy() as proxy:
        producer = fault_ledger.simulate(EVENTS, 4404, ids_file, bootstrap=proxy.bootstrap)
        await fault_ledger.inject_bad_records(5)
        await asyncio.sleep(1.5)
        await proxy.cut()
        await asyncio.sleep(4)
        await proxy.restore()
        await asyncio.to_thread(wait, producer, stream_timeout(), fault_ledger, "simulate")
    ids = read_ids(ids_file)
    await settle_and_check(fault_ledger, ids)


async def test_producer_host_killed_while_spooling(
    fault_ledger: FaultLedger, tmp_path: Path
) -> None:
    """Kafka is unreachable, the producer spools, then its host is SIGKILLed. After the
    spool is drained, every event whose emit() had returned is in the ledger exactly
    once, and the ledger holds a gapless prefix of the stream (nothing in between lost)."""
    planned_file, accepted_file = tmp_path / "planned.txt", tmp_path / "accepted.txt"
    fault_ledger.consumer()
    async with fault_ledger.proxy() as proxy:
        host = fault_ledger.simulate(
            EVENTS, 4405, planned_file, "--accepted-out", str(accepted_file),
            bootstrap=proxy.bootstrap,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while _lines(accepted_file) < 500:  # the host is up and emitting through the proxy
            if host.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"the producer host did not start:\n{fault_ledger.log_tail('simulate')}"
                )
            await asyncio.sleep(0.1)
        await proxy.cut()
        spooling_since = _lines(accepted_file)
        await asyncio.sleep(4)  # after max_block_seconds the host accepts events into its spool
        kill(host)
        accepted = read_ids(accepted_file)
        assert len(accepted) > spooling_since, "the host accepted events while cut off"
        await proxy.restore()
    drained = await asyncio.to_thread(
        subprocess.run,
        [LEDGER, "spool", "drain", "--producer-id", "faults-4405", "--timeout", "120"],
        env=fault_ledger.key_env("faults-4405"), cwd=ROOT, capture_output=True, text=True,
        timeout=180,
    )  # fmt: skip
    assert drained.returncode == 0, drained.stderr
    planned = read_ids(planned_file)
    await fault_ledger.wait_for_ids(accepted, timeout=stream_timeout())
    await asyncio.sleep(2)
    in_ledger = await fault_ledger.present(planned)
    # every accepted event, exactly once...
    await fault_ledger.check_invariants(accepted, extra_ok=in_ledger)
    # ...and what reached the ledger is a prefix of the stream: no hole, no loss.
    assert set(planned[: len(in_ledger)]) == in_ledger
    fault_ledger.verify()


def _lines(path: Path) -> int:
    return len(path.read_text().split()) if path.exists() else 0
