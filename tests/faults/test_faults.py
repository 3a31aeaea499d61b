"""Faults during a stream of events: the ledger neither loses nor duplicates anything.

Each test streams FAULT_EVENTS simulated events through a real producer process, with
injected bad records, while it SIGKILLs consumers, restarts the broker or restarts
PostgreSQL; then it checks the invariants itself (see conftest.py).
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.conftest import EVENTS, FaultLedger, kill, read_ids
from tests.support import ROOT

pytestmark = pytest.mark.faults

DEPLOY = ROOT / "deploy" / "local"


def wait(proc: subprocess.Popen[bytes], timeout: float, ledger: FaultLedger, name: str) -> None:
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} did not finish in {timeout}s:\n{ledger.log_tail(name)}")
    assert code == 0, f"{name} exited {code}:\n{ledger.log_tail(name)}"


def stream_timeout() -> float:
    return 120 + EVENTS / 1000


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
    await fault_ledger.wait_for_ids(ids, timeout=stream_timeout())
    await asyncio.sleep(2)  # let checkpoints catch up before checking
    await fault_ledger.check_invariants(ids)
    fault_ledger.verify()
    # Every consumer process that was killed had claimed logs: the partitions really moved.
    assert await fault_ledger.writers() >= kills + 1


async def test_kafka_broker_restart_mid_stream(fault_ledger: FaultLedger, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    fault_ledger.consumer()
    producer = fault_ledger.simulate(EVENTS, seed=4402, ids=ids_file)
    await fault_ledger.inject_bad_records(5)
    await asyncio.sleep(1.5)
    try:
        stopped = await asyncio.to_thread(
            subprocess.run, [DEPLOY / "kafka.sh", "stop"], capture_output=True, timeout=60
        )
        assert stopped.returncode == 0
        await asyncio.sleep(3)
    finally:
        started = await asyncio.to_thread(
            subprocess.run, [DEPLOY / "kafka.sh", "start"], capture_output=True, timeout=180
        )
        assert started.returncode == 0, started.stderr
    await fault_ledger.inject_bad_records(5)
    wait(producer, stream_timeout(), fault_ledger, "simulate")
    ids = read_ids(ids_file)
    await fault_ledger.wait_for_ids(ids, timeout=stream_timeout())
    await asyncio.sleep(2)
    await fault_ledger.check_invariants(ids)
    fault_ledger.verify()


async def test_postgres_restart_mid_stream(fault_ledger: FaultLedger, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    fault_ledger.consumer()
    producer = fault_ledger.simulate(EVENTS, seed=4403, ids=ids_file)
    await fault_ledger.inject_bad_records(5)
    await asyncio.sleep(1.5)
    started_at = time.monotonic()
    try:
        stopped = await asyncio.to_thread(
            subprocess.run, [DEPLOY / "postgres.sh", "stop"], capture_output=True, timeout=60
        )
        assert stopped.returncode == 0
        await asyncio.sleep(3)
    finally:
        started = await asyncio.to_thread(
            subprocess.run, [DEPLOY / "postgres.sh", "start"], capture_output=True, timeout=120
        )
        assert started.returncode == 0, started.stderr
    assert time.monotonic() - started_at >= 3
    wait(producer, stream_timeout(), fault_ledger, "simulate")
    ids = read_ids(ids_file)
    await fault_ledger.wait_for_ids(ids, timeout=stream_timeout())
    await asyncio.sleep(2)
    await fault_ledger.check_invariants(ids)
    fault_ledger.verify()
