"""Fault-injection harness: real `ledger` processes against the real broker and database.

Each test gets its own database and topics, runs the simulator as a separate producer
process, injects faults (SIGKILL, broker and database restarts), and then checks the
invariants itself: every produced event id is in the ledger exactly once, quarantine
holds exactly the injected bad records, every log's leaf indexes are gapless, and every
checkpoint verifies and is consistent with the others (`ledger export` + `ledger verify`).

Scale: FAULT_EVENTS events per test (default 20,000 for CI; `make chaos` runs 100,000).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from ledger.pg.migrate import apply_migrations
from ledgerctl.infra import ensure_topics
from ledgerctl.settings import KafkaRole
from tests.conftest import drop_database
from tests.private_pg import PrivatePostgres, private_postgres
from tests.support import ROOT, Stack, kafka_proxy, with_database
from tests.tcp_proxy import KafkaProxy

LEDGER = str(Path(sys.executable).with_name("ledger"))
EVENTS = int(os.environ.get("FAULT_EVENTS", "20000"))
RATE = float(os.environ.get("FAULT_RATE", "4000"))


@dataclass
class FaultLedger:
    stack: Stack
    database: str
    env: dict[str, str]
    topics: tuple[str, str]
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    injected: set[tuple[int, int]] = field(default_factory=set)
    #: The server's own cluster when the test may restart it (``private_pg_ledger``).
    postgres: PrivatePostgres | None = None

    @property
    def owner_url(self) -> str:
        return with_database(self.stack.owner_url, self.database)

    def key_env(self, producer_id: str) -> dict[str, str]:
        """This ledger's environment, signing as ``producer_id`` (registered here)."""
        own = dataclasses.replace(self.stack, owner_url=self.owner_url, database=self.database)
        return {**self.env, "LEDGER_PRODUCER_KEY_FILE": own.producer_key(producer_id)}

    def spawn(
        self, name: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(
            [LEDGER, *args], env=env or self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self.processes.append(proc)
        return proc

    def consumer(self, name: str = "consumer") -> subprocess.Popen[bytes]:
        return self.spawn(name, "consume")

    def simulate(
        self, events: int, seed: int, ids: Path, *extra: str, bootstrap: str | None = None
    ) -> subprocess.Popen[bytes]:
        """`ledger simulate` as a separate producer host (optionally via another bootstrap)."""
        env = self.key_env(f"faults-{seed}")
        if bootstrap is not None:
            env["KAFKA_BOOTSTRAP"] = bootstrap
        return self.spawn(
            "simulate", "simulate", "--events", str(events), "--rate", str(RATE),
            "--seed", str(seed), "--ids-out", str(ids), "--producer-id", f"faults-{seed}",
            *extra, env=env,
        )  # fmt: skip

    def proxy(self) -> KafkaProxy:
        """A cuttable loopback proxy in front of the broker, for one producer host."""
        return kafka_proxy(self.stack.kafka_bootstrap)

    def log_tail(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    async def inject_bad_records(self, count: int) -> None:
        """Send undecodable records to the access topic; remember where they landed."""
        producer = AIOKafkaProducer(**self.stack.kafka_client(KafkaRole.SIMULATOR))
        await producer.start()
        try:
            for i in range(count):
                meta = await producer.send_and_wait(
                    self.topics[0], value=b"\x00injected-bad-record-%d" % i, key=b"k%d" % i
                )
                self.injected.add((meta.partition, meta.offset))
        finally:
            await producer.stop()

    async def count_ids(self, ids: list[uuid.UUID]) -> tuple[int, int]:
        conn = await asyncpg.connect(self.owner_url)
        try:
            row = await conn.fetchrow(
                "SELECT count(*), count(DISTINCT event_id) FROM events "
                "WHERE event_id = ANY($1::uuid[])",
                ids,
            )
            return int(row[0]), int(row[1])
        finally:
            await conn.close()

    async def wait_for_ids(self, ids: list[uuid.UUID], timeout: float) -> None:
        """Until every id is in the ledger and every injected record in quarantine: bad
        records injected after the stream's last event (a consumer killed at the end
        holds its partitions until its session times out) come later than the ids."""
        deadline = time.monotonic() + timeout
        while True:
            _, distinct = await self.count_ids(ids)
            quarantined = await self.quarantined()
            if distinct == len(ids) and self.injected <= quarantined:
                return
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{len(ids) - distinct} of {len(ids)} events never reached the ledger, "
                    f"{len(self.injected - quarantined)} injected record(s) never quarantined\n"
                    f"consumer log:\n{self.log_tail('consumer')}"
                )
            await asyncio.sleep(0.5)

    async def quarantined(self) -> set[tuple[int, int]]:
        """(partition, offset) of every quarantined record of the access topic."""
        conn = await asyncpg.connect(self.owner_url)
        try:
            rows = await conn.fetch(
                "SELECT kafka_partition, kafka_offset FROM quarantine WHERE topic = $1",
                self.topics[0],
            )
            return {(r["kafka_partition"], r["kafka_offset"]) for r in rows}
        finally:
            await conn.close()

    async def present(self, ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these ids are in the ledger."""
        conn = await asyncpg.connect(self.owner_url)
        try:
            rows = await conn.fetch(
                "SELECT event_id FROM events WHERE event_id = ANY($1::uuid[])", ids
            )
            return {r["event_id"] for r in rows}
        finally:
            await conn.close()

    async def check_invariants(
        self, ids: list[uuid.UUID], *, extra_ok: set[uuid.UUID] | None = None
    ) -> None:
        """``ids`` must each be in the ledger exactly once; ``extra_ok`` may be too."""
        expected = set(ids) | (extra_ok or set())
        total, distinct = await self.count_ids(list(expected))
        assert (total, distinct) == (len(expected), len(expected)), "every event exactly once"
        assert set(ids) <= await self.present(list(expected))
        conn = await asyncpg.connect(self.owner_url)
        try:
            others = await conn.fetchval(
                "SELECT count(*) FROM quarantine WHERE topic <> $1", self.topics[0]
            )
            gaps = await conn.fetch(
                "SELECT log_id, count(*) AS n, max(leaf_index) + 1 AS size FROM leaves "
                "GROUP BY log_id HAVING count(*) <> max(leaf_index) + 1"
            )
            positions = await conn.fetch(
                "SELECT g.kafka_partition, max(p.next_offset) AS next_offset, "
                "sum(p.appended + p.duplicates + p.quarantined) AS accounted "
                "FROM ingest_positions p JOIN logs g USING (log_id) WHERE g.topic = $1 "
                "GROUP BY g.kafka_partition",
                self.topics[0],
            )
        finally:
            await conn.close()
        quarantined = await self.quarantined()
        assert quarantined == self.injected, "quarantine holds exactly the injected records"
        assert others == 0
        assert gaps == [], "leaf indexes are gapless"
        for p in positions:
            # every consumed offset is exactly one of appended, duplicate or quarantined
            assert p["accounted"] == p["next_offset"], dict(p)

    async def writers(self) -> int:
        """How many distinct consumer processes ever claimed a log (rebalance evidence)."""
        conn = await asyncpg.connect(self.owner_url)
        try:
            return int(await conn.fetchval("SELECT count(DISTINCT writer_id) FROM log_writers"))
        finally:
            await conn.close()

    def verify(self) -> None:
        bundle = self.workdir / f"bundle-{secrets.token_hex(3)}"
        exported = subprocess.run(
            [LEDGER, "export", "--out", str(bundle), "--reason", "fault test"],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert exported.returncode == 0, exported.stderr
        verified = subprocess.run(
            [LEDGER, "verify", "--bundle", str(bundle)], env=self.env, cwd=ROOT,
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert verified.returncode == 0, verified.stdout[-4000:] + verified.stderr[-2000:]
        assert "FAIL" not in verified.stdout


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(timeout=30)


@pytest.fixture
def fault_ledger(stack: Stack, tmp_path: Path) -> Iterator[FaultLedger]:
    with scratch_fault_ledger(stack, tmp_path) as ledger:
        yield ledger


@pytest.fixture
def private_pg_ledger(stack: Stack, tmp_path: Path) -> Iterator[FaultLedger]:
    """A fault ledger whose database lives on a PostgreSQL cluster of its own, for a test
    that restarts the server: the shared one serves the rest of the suite meanwhile."""
    with private_postgres("ledger-faults-pg-") as pg:
        # Its `ledger` database stands in for the session's: migrated, so the keys that
        # `Stack.env` registers for the CLI and the API have a ledger to go to.
        apply_migrations(pg.url("ledger_owner"))
        on_private = dataclasses.replace(
            stack,
            owner_url=pg.url("ledger_owner"),
            appender_url=pg.url("ledger_appender"),
            reader_url=pg.url("ledger_reader"),
            database="ledger",
        )
        with scratch_fault_ledger(on_private, tmp_path) as ledger:
            ledger.postgres = pg
            yield ledger


@contextlib.contextmanager
def scratch_fault_ledger(stack: Stack, tmp_path: Path) -> Iterator[FaultLedger]:
    """Its own database on ``stack``'s PostgreSQL, its own topics on its broker."""
    database = f"ledger_faults_{secrets.token_hex(4)}"
    topics = stack.topics(f"faults{secrets.token_hex(3)}")

    async def setup() -> None:
        conn = await asyncpg.connect(stack.owner_url)
        try:
            await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
        await ensure_topics(stack.kafka_bootstrap, topics, 4, stack.kafka(KafkaRole.ADMIN))

    asyncio.run(setup())
    apply_migrations(with_database(stack.owner_url, database))
    own = dataclasses.replace(
        stack, owner_url=with_database(stack.owner_url, database), database=database
    )
    env = stack.env(
        # `ledger export`'s own read record is signed by a key this ledger trusts.
        LEDGER_CLI_PRODUCER_KEY_FILE=own.producer_key("ledger-cli"),
        DATABASE_URL=with_database(stack.owner_url, database),
        LEDGER_APPENDER_URL=with_database(stack.appender_url, database),
        LEDGER_READER_URL=with_database(stack.reader_url, database),
        LEDGER_ACCESS_TOPIC=topics[0],
        LEDGER_RELAY_TOPIC=topics[1],
        LEDGER_CONSUMER_GROUP=f"t{stack.run_id}-faults-{secrets.token_hex(4)}",
        LEDGER_CONSUMER_SESSION_TIMEOUT_MS="6000",  # the broker's minimum: faster recovery
    )
    ledger = FaultLedger(stack=stack, database=database, env=env, topics=topics, workdir=tmp_path)
    try:
        yield ledger
    finally:
        for proc in ledger.processes:
            kill(proc, signal.SIGTERM)

        asyncio.run(drop_database(stack.owner_url, database))


def read_ids(path: Path) -> list[uuid.UUID]:
    return [uuid.UUID(line) for line in path.read_text().split()]
