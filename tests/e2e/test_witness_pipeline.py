"""The whole path with an independent witness: events through Kafka, the real `ledger
consume` with LEDGER_WITNESSES naming a running litewitness, its checkpoints cosigned in
the background, and `ledger verify --witness` holding the export to k of n."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from integrations.simulator import Simulator
from ledger.log.cosignature import WitnessKey
from ledger.log.note import Signer
from ledger.pg.export import export_bundle
from producers import PhiAccessEvent
from tests.conftest import own_ledger
from tests.e2e.conftest import LEDGER, Pipeline, free_port
from tests.litewitness import Litewitness, litewitness
from tests.support import ROOT, Stack, live_origin

pytestmark = pytest.mark.e2e

EVENTS = 40


@pytest.fixture(scope="module")
def witnessed(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, Litewitness]]:
    """A consumer on a database of its own, submitting to one litewitness."""
    tmp = tmp_path_factory.mktemp("witness-e2e")
    with (
        own_ledger(stack, f"{stack.database}_wit{uuid.uuid4().hex[:6]}") as own,
        litewitness(tmp / "lw") as lw,
    ):
        access, relay = own.topics(f"wit{uuid.uuid4().hex[:6]}")
        env = own.env(
            LEDGER_ACCESS_TOPIC=access,
            LEDGER_RELAY_TOPIC=relay,
            LEDGER_REGISTRY_TOPIC=f"{access}-registry",
            LEDGER_TOPIC_PARTITIONS="1",
            LEDGER_CONSUMER_GROUP=f"t{own.run_id}-wit-{uuid.uuid4().hex[:8]}",
            LEDGER_WITNESSES=f"{lw.url} {lw.vkey}",
            LEDGER_WITNESS_SUBMIT_EVERY_MS="200",
        )
        subprocess.run([LEDGER, "topics"], env=env, check=True, cwd=ROOT, capture_output=True)
        # Each period's log is a new origin: a witness must know it before it cosigns.
        lw.add_log(live_origin(f"test.ledger.local/{access}/0"), [own.verifier_key])
        with (tmp / "consumer.log").open("wb") as out:
            consumer = subprocess.Popen(
                [LEDGER, "consume"], env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            port = free_port()  # no API: nothing reads (and so appends) behind the test
            yield Pipeline(own, env, access, relay, f"http://127.0.0.1:{port}", tmp), lw
        finally:
            consumer.terminate()
            try:
                consumer.wait(timeout=20)
            except subprocess.TimeoutExpired:
                consumer.kill()
                consumer.wait()


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)


async def cosigned_size(owner_url: str, origin: str) -> tuple[int, int | None]:
    """The log's newest checkpoint size and the largest size the witness cosigned."""
    conn = await asyncpg.connect(owner_url)
    try:
        row = await conn.fetchrow(
            """SELECT (SELECT max(size) FROM checkpoints c WHERE c.log_id = g.log_id) AS signed,
                      (SELECT max(size) FROM checkpoint_cosignatures w
                       WHERE w.log_id = g.log_id) AS cosigned
               FROM logs g WHERE g.origin = $1""",
            origin,
        )
    finally:
        await conn.close()
    if row is None or row["signed"] is None:
        return 0, None
    return int(row["signed"]), row["cosigned"]


async def test_the_consumer_gets_its_checkpoints_cosigned(
    witnessed: tuple[Pipeline, Litewitness], tmp_path: Path
) -> None:
    pipeline, lw = witnessed
    origin = live_origin(f"test.ledger.local/{pipeline.access_topic}/0")
    events = Simulator(seed=18_018, patients=3).events(EVENTS * 2)
    access = [e for e in events if isinstance(e, PhiAccessEvent)][:EVENTS]
    async with pipeline.emitter(f"wit-{uuid.uuid4().hex[:6]}") as emitter:
        for event in access:
            await emitter.emit(event)
        await emitter.flush()

    deadline = time.monotonic() + 90
    while True:
        signed, cosigned = await cosigned_size(pipeline.stack.owner_url, origin)
        if signed == len(access) and cosigned == signed:
            break
        if time.monotonic() > deadline:
            log = (pipeline.logs / "consumer.log").read_text()[-3000:]
            pytest.fail(f"size {signed}, cosigned {cosigned}; consumer log:\n{log}")
        await asyncio.sleep(0.2)
    assert f'"size":{len(access)}' in lw.list_logs().replace(" ", "")

    bundle = tmp_path / "bundle"
    await export_bundle(dsn=pipeline.stack.reader_url, path=bundle, ledger_name="test.ledger.local")
    other = WitnessKey.from_public_key(
        "other.witness", Signer.from_seed("x", b"\1" * 32).public_key
    )
    base = [LEDGER, "verify", "--bundle", str(bundle), "--key", pipeline.stack.verifier_key,
            "--no-check-index", "--witness", lw.vkey]  # fmt: skip
    ok = await asyncio.to_thread(run, base, pipeline.env)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    strict = [*base, "--witness", other.key, "--witness-threshold", "2"]
    failed = await asyncio.to_thread(run, strict, pipeline.env)
    assert failed.returncode == 1
    assert "checkpoint_unwitnessed" in failed.stdout
