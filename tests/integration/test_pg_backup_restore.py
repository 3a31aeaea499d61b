"""The runbook's "Back up and restore" (docs/operations.md), step by step, as a test.

A ledger runs on a cluster of the test's own (the real ``ledger consume`` and ``ledger
serve``); its tree heads are published (``ledger verify --heads-out``); ``pg_dump``
backs it up; more events arrive and a second set of heads is published; the cluster is
lost. A fresh cluster gets the roles, an empty database and ``pg_restore``. Then:
``ledger migrate`` has nothing to do; ``ledger verify --trusted-checkpoint`` proves the
restored ledger against the heads published before the backup, and catches that it is
behind the heads published after it; once the consumer has re-read from Kafka what came
after the backup (its positions are in the restored database), the ledger reproduces
those later heads too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import re
import time
from collections.abc import Sequence
from pathlib import Path

import aiohttp
import pytest

from integrations.simulator import Simulator
from ledgerctl.settings import KafkaRole
from producers.emitter import Emitter, EmitterConfig
from producers.events import CriticalResultRelay, PhiAccessEvent
from tests.pgcluster import cluster_home, new_cluster, running
from tests.pgledger import ledger_services, ledger_stack
from tests.support import Stack, run_ledger

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

Events = Sequence[PhiAccessEvent | CriticalResultRelay]


async def emit_and_wait(stack: Stack, api: str, events: Events) -> None:
    """Emit ``events`` and wait until each one's proof is served."""
    access, relay = stack.topics("default")
    config = EmitterConfig(
        bootstrap_servers=stack.kafka_bootstrap,
        producer_id="backup-host",
        access_topic=access,
        relay_topic=relay,
        producer_key_file=stack.producer_key("backup-host"),
        kafka_security=stack.kafka(KafkaRole.SIMULATOR),
    )
    async with Emitter(config) as emitter:
        for event in events:
            await emitter.emit(event)
        await emitter.flush()
    await proven(stack, api, events)


async def proven(stack: Stack, api: str, events: Events, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(headers=stack.auth("admin")) as http:
        for event in events:
            while True:
                async with http.get(f"{api}/v1/events/{event.event_id}/proof") as resp:
                    if resp.status == 200:
                        break
                if time.monotonic() > deadline:
                    pytest.fail(f"event {event.event_id} was never proven")
                await asyncio.sleep(0.3)


def verify(stack: Stack, api: str, *args: str) -> tuple[int, str]:
    done = run_ledger(stack.env(LEDGER_API_URL=api), "verify", "--api", api, *args)
    return done.returncode, done.stdout + done.stderr


def publish(stack: Stack, api: str, where: Path) -> list[Path]:
    """``ledger verify --heads-out``: the tree heads an operator publishes (keeps apart)."""
    code, out = verify(stack, api, "--heads-out", str(where))
    assert code == 0, out
    heads = sorted(where.glob("*.checkpoint"))
    assert heads
    return heads


async def test_a_restored_ledger_proves_itself_against_checkpoints_published_before_the_backup(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    sim = Simulator(seed=7_318_000, patients=4)
    before, after = list(sim.events(40)), list(sim.events(20))
    dump = tmp_path / "ledger.dump"
    with cluster_home("ledger-pg-backup-") as top:
        old = new_cluster(top, "old")
        with running(old):
            old.create_ledger()
            stack = ledger_stack(old, stack_env, tmp_path)
            with ledger_services(stack, tmp_path / "logs-old") as api:
                await emit_and_wait(stack, api, before)
                published_before = publish(stack, api, tmp_path / "published-1")
                # The backup: a consistent snapshot of the whole database, taken live.
                old.client("pg_dump", "--format=custom", f"--file={dump}", "ledger")
                await emit_and_wait(stack, api, after)
                published_after = publish(stack, api, tmp_path / "published-2")
            old.stop("immediate")  # the disaster

        new = new_cluster(top, "new", password=old.password)
        with running(new):
            # The restore: roles first (deploy/local/postgres.sh does the same), an empty
            # database owned by ledger_owner, then pg_restore as ledger_owner.
            # The roles also put pg_partman and the detach guard in template1 (the
            # superuser's step), so the dump's schema partman, the extension's comment and
            # the guard's function and event trigger are left out of the restore
            # (docs/operations.md): ledger_owner may create none of them.
            new.create_roles()
            new.psql("CREATE DATABASE ledger OWNER ledger_owner")
            toc = new.client("pg_restore", "--list", str(dump)).splitlines()
            listing = tmp_path / "restore.list"
            listing.write_text(
                "\n".join(
                    line
                    for line in toc
                    if not re.search(
                        r" SCHEMA - partman | COMMENT - EXTENSION pg_partman|ledger_detach_guard",
                        line,
                    )
                )
                + "\n"
            )
            new.client("pg_restore", "--exit-on-error", f"--use-list={listing}",
                       "--dbname=ledger", str(dump))  # fmt: skip
            restored = dataclasses.replace(
                stack,
                owner_url=new.url("ledger_owner"),
                appender_url=new.url("ledger_appender"),
                reader_url=new.url("ledger_reader"),
            )
            migrated = run_ledger(restored.env(), "migrate")
            assert migrated.returncode == 0, migrated.stderr
            assert "none (up to date)" in migrated.stderr

            with ledger_services(restored, tmp_path / "logs-new", consume=False) as api:
                code, out = verify(restored, api, *trusting(published_before))
                assert code == 0, out
                # Behind the heads published after the backup: caught, not passed.
                code, out = verify(restored, api, *trusting(published_after))
                assert code == 1, out
                assert "truncated or rolled back" in out or "does not have" in out, out

            with ledger_services(restored, tmp_path / "logs-new2") as api:
                await proven(restored, api, after)  # re-read from Kafka
                code, out = await reproduces(restored, api, published_before + published_after)
                assert code == 0, out


def trusting(heads: Sequence[Path]) -> list[str]:
    return [arg for head in heads for arg in ("--trusted-checkpoint", str(head))]


async def reproduces(
    stack: Stack, api: str, heads: Sequence[Path], timeout: float = 120
) -> tuple[int, str]:
    """``ledger verify`` trusting ``heads``, until every log has been signed far enough
    to cover them (the consumer signs the re-read tail of each log in turn)."""
    deadline = time.monotonic() + timeout
    while True:
        code, out = await asyncio.to_thread(verify, stack, api, *trusting(heads))
        if code == 0 or time.monotonic() > deadline:
            return code, out
        await asyncio.sleep(1)
