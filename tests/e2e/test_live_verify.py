"""`ledger verify --api` against a ledger that keeps appending while it is verified.

The real consumer and API run on a database of this module's own (tampering there harms
no other test), a producer appends at a steady rate for the whole verification (and the
verifier's own reads are audited, so they append too).  A healthy ledger verifies with no
finding; a leaf, then an index row, tampered in the database while appends continue is
the one finding, named by its log and leaf index; a wrong key is one finding; the tree
heads an auditor keeps verify as trusted checkpoints on the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from integrations.simulator import Simulator
from ledger.log.note import generate_signer
from tests.conftest import own_ledger
from tests.e2e.conftest import (
    E2E_SEED,
    LEDGER,
    Pipeline,
    _running,
    free_port,
    get_json,
    wait_for_events,
)
from tests.support import ROOT, Stack, superuser_url, with_database

pytestmark = pytest.mark.e2e

SEEDED = 8000  # events in the ledger before the first verification
RATE = 1500  # events per second appended during every verification


@pytest.fixture(scope="module")
def live(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Consumer and API processes on a fresh database and fresh topics."""
    with own_ledger(stack, f"{stack.database}_live{uuid.uuid4().hex[:6]}") as own:
        access, relay = own.topics(f"live{uuid.uuid4().hex[:6]}")
        port = free_port()
        logs = tmp_path_factory.mktemp("live-logs")
        env = own.env(
            LEDGER_ACCESS_TOPIC=access,
            LEDGER_RELAY_TOPIC=relay,
            LEDGER_TOPIC_PARTITIONS="2",
            LEDGER_CONSUMER_GROUP=f"t{own.run_id}-live-{uuid.uuid4().hex[:8]}",
            LEDGER_API_URL=f"http://127.0.0.1:{port}",
            LEDGER_API_TOKEN=own.tokens["auditor"],  # what an auditor holds
        )
        subprocess.run([LEDGER, "topics"], env=env, check=True, cwd=ROOT, capture_output=True)
        with contextlib.ExitStack() as files:
            procs = [
                subprocess.Popen(
                    command,
                    env=env,
                    cwd=ROOT,
                    stderr=subprocess.STDOUT,
                    stdout=files.enter_context((logs / f"{name}.log").open("wb")),
                )
                for name, command in (
                    ("consumer", [LEDGER, "consume"]),
                    ("api", [LEDGER, "serve", "--port", str(port)]),
                )
            ]
            pipeline = Pipeline(own, env, access, relay, f"http://127.0.0.1:{port}", logs)
            yield from _running(procs, env, pipeline)


@pytest.fixture(scope="module")
async def seeded(live: Pipeline) -> Pipeline:
    events = list(Simulator(seed=E2E_SEED + 7000, patients=30).events(SEEDED))
    async with live.emitter("live-seed") as emitter:
        for event in events:
            await emitter.emit(event)
        await emitter.flush()
    async with aiohttp.ClientSession(headers=live.stack.auth()) as http:
        await wait_for_events(http, live, [str(e.event_id) for e in events[-50:]], timeout=180)
    return live


@dataclasses.dataclass
class Appending:
    sent: int = 0


@contextlib.asynccontextmanager
async def appending(pipeline: Pipeline, seed: int) -> AsyncIterator[Appending]:
    """A producer emitting ``RATE`` events per second until the block exits."""
    state = Appending()
    stop = asyncio.Event()
    started = asyncio.Event()

    async def produce() -> None:
        sim = Simulator(seed=seed, patients=30)
        async with pipeline.emitter(f"live-{seed}") as emitter:
            while not stop.is_set():
                for event in sim.events(RATE // 10):
                    await emitter.emit(event)
                    state.sent += 1
                await emitter.flush()
                started.set()
                await asyncio.sleep(0.1)

    task = asyncio.create_task(produce())
    try:
        waiting = asyncio.create_task(started.wait())  # appending before the verifier starts
        await asyncio.wait([waiting, task], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # the producer failed: raise its error
        yield state
    finally:
        stop.set()
        await task


async def verify(pipeline: Pipeline, *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        LEDGER, "verify", "--api", pipeline.api_url, *args,
        env=pipeline.env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def verify_while_appending(pipeline: Pipeline, seed: int, *args: str) -> tuple[int, str]:
    async with appending(pipeline, seed) as producer:
        before = producer.sent
        code, out = await verify(pipeline, *args)
        during = producer.sent - before
    assert during > 0, "the producer must have appended while the verifier ran"
    return code, out


async def sizes(pipeline: Pipeline) -> dict[str, int]:
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        _, body = await get_json(http, f"{pipeline.api_url}/v1/logs")
    return {log["origin"]: log["size"] for log in body["logs"]}


def findings(out: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    document = json.loads(out[: out.rindex("}") + 1])
    return document, document["findings"]


async def test_a_ledger_appending_while_verified_has_no_finding(
    seeded: Pipeline, tmp_path: Path
) -> None:
    before = await sizes(seeded)
    code, out = await verify_while_appending(seeded, E2E_SEED + 7100, "--heads-out", str(tmp_path))
    assert code == 0, out
    lines = out.strip().splitlines()
    assert lines[-1].startswith("VERDICT OK"), out
    assert "index_orphan" not in out
    assert "checkpoint_beyond_log" not in out
    # "tree head <origin>: size <n> root <base64>", one per log the verifier listed
    heads = [line.split() for line in lines if line.startswith("tree head ") and " size " in line]
    pinned = {words[2].rstrip(":"): int(words[4]) for words in heads}
    # Every log with entries; the registry's log is there too, empty (no change imported).
    assert {origin for origin, size in before.items() if size} <= set(pinned)
    assert len(pinned) >= 3  # 2 access partitions + the relay log(s)
    kept = await asyncio.to_thread(lambda: sorted(tmp_path.glob("*.checkpoint")))
    assert len(kept) == len(pinned)
    # The logs went on growing beyond what was pinned and checked.
    grown = await sizes(seeded)
    assert sum(grown[origin] for origin in pinned) > sum(pinned.values())

    # Next run: the heads kept from this one are trusted checkpoints, still reproduced.
    code, out = await verify_while_appending(
        seeded, E2E_SEED + 7200, "--json", "--trusted-checkpoint", str(tmp_path)
    )
    document, found = findings(out)
    assert (code, found, document["verdict"]) == (0, [], "ok"), out
    heads_now = {log["origin"]: log["head"]["size"] for log in document["logs"] if log["head"]}
    assert all(heads_now[origin] >= size for origin, size in pinned.items())


async def _busiest(pipeline: Pipeline) -> tuple[int, str]:
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        _, body = await get_json(http, f"{pipeline.api_url}/v1/logs")
    log = max(body["logs"], key=lambda entry: entry["checkpoint_size"])
    assert log["checkpoint_size"] > 300
    return int(log["id"]), str(log["origin"])


@contextlib.asynccontextmanager
async def tampered(
    pipeline: Pipeline, statement: str, restore: str, *args: object
) -> AsyncIterator[None]:
    """Run ``statement`` as the cluster superuser with the no-mutation triggers off (what a
    DBA can do), and ``restore`` afterwards so the next test starts from a healthy ledger."""
    su = await asyncpg.connect(
        with_database(superuser_url(pipeline.stack), pipeline.stack.database)
    )
    try:
        async with su.transaction():
            await su.execute("SET LOCAL session_replication_role = replica")
            saved = await su.fetchval(statement, *args)
        yield
        async with su.transaction():
            await su.execute("SET LOCAL session_replication_role = replica")
            await su.execute(restore, *args, saved)
    finally:
        await su.close()


async def test_a_leaf_tampered_while_appending_is_the_one_finding(seeded: Pipeline) -> None:
    log_id, origin = await _busiest(seeded)
    flip = (
        "UPDATE leaves SET leaf = overlay(leaf placing set_byte('\\x00'::bytea, 0, "
        "get_byte(leaf, length(leaf) - 1) # 1) from length(leaf) for 1) "
        "WHERE log_id = $1 AND leaf_index = 100 RETURNING (SELECT leaf FROM leaves "
        "WHERE log_id = $1 AND leaf_index = 100)"
    )
    restore = "UPDATE leaves SET leaf = $2 WHERE log_id = $1 AND leaf_index = 100"
    async with tampered(seeded, flip, restore, log_id):
        code, out = await verify_while_appending(seeded, E2E_SEED + 7300, "--json")
    document, found = findings(out)
    assert code == 1, out
    assert document["verdict"] == "failed"
    assert {(f["log"], f["leaf_index"]) for f in found} == {(origin, 100)}, found
    kinds = [f["kind"] for f in found]
    # The leaf against its tile, ONE root finding however many checkpoints the leaf breaks,
    # and (depending on the byte) what the altered event no longer says.
    assert kinds.count("leaf_hash_mismatch") == 1, found
    assert kinds.count("checkpoint_root_mismatch") == 1, found
    assert len(kinds) - 2 == kinds.count("index_mismatch") + kinds.count("event_undecodable") <= 1


async def test_an_index_row_tampered_while_appending_is_the_one_finding(
    seeded: Pipeline,
) -> None:
    log_id, origin = await _busiest(seeded)
    rewrite = (
        "UPDATE events SET user_id = 'innocent.bystander' WHERE log_id = $1 AND leaf_index = 42 "
        "RETURNING (SELECT user_id FROM events WHERE log_id = $1 AND leaf_index = 42)"
    )
    restore = "UPDATE events SET user_id = $2 WHERE log_id = $1 AND leaf_index = 42"
    async with tampered(seeded, rewrite, restore, log_id):
        code, out = await verify_while_appending(seeded, E2E_SEED + 7400, "--json")
    _, found = findings(out)
    assert code == 1, out
    assert [(f["kind"], f["log"], f["leaf_index"]) for f in found] == [
        ("index_mismatch", origin, 42)
    ], found
    assert "user_id" in found[0]["detail"]


async def test_a_wrong_key_is_one_finding_naming_both_keys(seeded: Pipeline) -> None:
    _, wrong = generate_signer("test.ledger.local")
    code, out = await verify(seeded, "--json", "--key", wrong)
    _, found = findings(out)
    assert code == 1, out
    [finding] = found
    assert finding["kind"] == "verifier_key_unknown"
    right_id = seeded.stack.verifier_key.split("+")[1]
    wrong_id = wrong.split("+")[1]
    assert f"signed by key test.ledger.local+{right_id}" in finding["detail"]
    assert f"you gave test.ledger.local+{wrong_id}" in finding["detail"]
