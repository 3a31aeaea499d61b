"""``ledger archive detach`` against the real PostgreSQL and Kafka: an archived, verified
month leaves the database with a signed record in the ledger; every other way out is
refused (by the command, and by the superuser's event trigger for the owner role)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from ledger.audit.unreadable import unreadable
from ledger.log.leaf import decode_leaf
from ledger.pg.appender import PostgresAppender
from ledger.pg.reader import PostgresReader
from producers.codec import Codec
from tests.conftest import own_ledger
from tests.e2e.conftest import free_port
from tests.integration.test_archive import _month, fill_months
from tests.support import ROOT, Stack, run_ledger

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CODEC = Codec()
LEDGER = "test.ledger.local"
# Old enough for the default live window (13 months): the command's own clock decides.
MONTHS = ((2025, 1, 20), (2025, 2, 30), (2025, 3, 5))


@dataclasses.dataclass(frozen=True)
class World:
    own: Stack
    topic: str
    archive: Path
    digest: str


def _detach(own: Stack, period: str, bundle: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_ledger(
        own.env(), "archive", "detach", "--period", period, "--bundle", str(bundle),
        "--copies", "vault A (WORM); tape 7", "--reason", "RET-2025-02", *extra,
    )  # fmt: skip


async def _fill(own: Stack, topic: str) -> None:
    """January and February sealed; March stays open."""
    await fill_months(own, topic, list(MONTHS))


async def _query(own: Stack, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(own.owner_url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def world(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with own_ledger(stack, f"{stack.database}_detach") as own:
        topic = f"t{own.run_id}-detach-{uuid.uuid4().hex[:6]}"
        asyncio.run(_fill(own, topic))
        archive = tmp_path_factory.mktemp("detach") / "2025-02"
        done = run_ledger(
            own.env(), "archive", "--period", "2025-02", "--out", str(archive),
            "--reason", "RET-2025-02",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        digest = hashlib.sha256((archive / "manifest.json").read_bytes()).hexdigest()
        # The consumer that appends the command line's records (the archive's read record
        # and the detach record) to this ledger.
        env = own.env(LEDGER_CONSUMER_GROUP=f"t{own.run_id}-detach-{uuid.uuid4().hex[:8]}")
        log = archive.parent / "consumer.log"
        consumer = subprocess.Popen(
            [str(Path(ROOT) / ".venv/bin/ledger"), "consume"], env=env, cwd=ROOT,
            stdout=log.open("wb"), stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield World(own=own, topic=topic, archive=archive, digest=digest)
        finally:
            consumer.terminate()
            consumer.wait(timeout=30)


def test_an_unverifiable_or_foreign_archive_is_refused(world: World, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(world.archive, tampered)
    [entries] = tampered.glob("logs/*/entries.bin")
    data = bytearray(entries.read_bytes())
    data[-3] ^= 0x01
    entries.write_bytes(bytes(data))
    done = _detach(world.own, "2025-02", tampered)
    assert done.returncode != 0
    assert "does not verify offline" in done.stderr
    foreign = _detach(world.own, "2025-01", world.archive)
    assert foreign.returncode != 0
    assert "the archive is of 2025-02, not of 2025-01" in foreign.stderr
    open_month = _detach(world.own, "2025-03", world.archive)
    assert open_month.returncode != 0
    assert "not sealed at its full size" in open_month.stderr
    assert asyncio.run(_query(world.own, "SELECT * FROM period_archives")) == []


def test_the_wrong_role_changes_nothing(world: World) -> None:
    """As the reader (no right to record a month or detach it), the detach is refused
    with a named error, no traceback, and the month stays whole."""
    done = run_ledger(
        {**world.own.env(), "DATABASE_URL": world.own.reader_url},
        "archive", "detach", "--period", "2025-02", "--bundle", str(world.archive),
        "--copies", "x", "--reason", "RET", "--record-timeout", "30",
    )  # fmt: skip
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert "was not detached" in done.stderr
    assert "nothing changed" in done.stderr
    assert asyncio.run(_query(world.own, "SELECT * FROM period_archives")) == []
    rows = asyncio.run(_query(world.own, "SELECT count(*) FROM leaves WHERE period = '2025-02-01'"))
    assert rows[0][0] == 30


def test_the_owner_cannot_take_a_month_out_by_hand(world: World) -> None:
    async def attempt(statement: str) -> str:
        conn = await asyncpg.connect(world.own.owner_url)
        try:
            await conn.execute(statement)
        except asyncpg.PostgresError as exc:
            return str(exc)
        finally:
            await conn.close()
        return "done"

    for statement in (
        "ALTER TABLE events DETACH PARTITION events_p2025_01",
        "DROP TABLE leaves_p2025_01",
        "ALTER TABLE tiles DETACH PARTITION tiles_p2025_02",
    ):
        refused = asyncio.run(attempt(statement))
        assert "is not archived: refused" in refused, (statement, refused)
    rows = asyncio.run(_query(world.own, "SELECT count(*) FROM events WHERE period = '2025-01-01'"))
    assert rows[0][0] == 20


def test_an_archived_month_leaves_with_a_signed_record(world: World) -> None:
    done = _detach(world.own, "2025-02", world.archive)
    assert done.returncode == 0, done.stderr
    assert f"archive sha256 {world.digest}" in done.stderr
    tables = done.stdout.rsplit(":", 1)[1].split()
    assert sorted(tables) == sorted(
        f"{t}_p2025_02" for t in ("read_disclosures", "event_patients", "events", "tiles", "leaves")
    )
    states = asyncio.run(
        _query(
            world.own, "SELECT * FROM period_archives WHERE period = '2025-02-01' ORDER BY state"
        )
    )
    assert [r["state"] for r in states] == ["archived", "detached"]
    row = states[0]
    assert (row["manifest_digest"].hex(), row["logs"], row["events"]) == (world.digest, 1, 30)
    assert row["copies"] == "vault A (WORM); tape 7"
    assert row["first_event_time"] is not None
    # The record is a leaf of the ledger (signed by its checkpoints) naming the month,
    # the archive's digest and where its copies are.
    record = asyncio.run(
        _query(
            world.own,
            "SELECT l.leaf FROM events e JOIN leaves l USING (log_id, leaf_index, period) "
            "WHERE e.event_id = $1",
            row["record_event_id"],
        )
    )
    assert len(record) == 1
    value = decode_leaf(bytes(record[0]["leaf"])).value
    assert world.digest.encode() in value
    assert b"2025-02" in value
    # The month's rows are gone from the ledger's tables; the detached tables remain, and
    # may be dropped now (its archive is recorded).
    left = asyncio.run(_query(world.own, "SELECT count(*) FROM leaves WHERE period = '2025-02-01'"))
    assert left[0][0] == 0
    kept = asyncio.run(_query(world.own, "SELECT count(*) FROM leaves_p2025_02"))
    assert kept[0][0] == 30
    asyncio.run(_query(world.own, "DROP TABLE leaves_p2025_02"))
    # Answers over a range that reached February now say they could not read it.
    detached = asyncio.run(_detached_periods(world.own))
    # (by the span of its events' times, which the simulator spreads beyond the month)
    first, last = row["first_event_time"], row["last_event_time"]
    assert [p.period for p in unreadable(detached, first, None)] == ["2025-02"]
    assert [p.period for p in unreadable(detached, None, last)] == ["2025-02"]
    assert unreadable(detached, last + timedelta(seconds=1), None) == ()
    assert unreadable(detached, None, first) == ()
    # The live ledger still verifies: the detached log is named with its archive (a
    # warning), every other log is checked; the monitor judges its head, not its leaves.
    with _serving(world.own) as env:
        verified = run_ledger(env, "verify", "--json")
        assert verified.returncode == 0, verified.stdout[-2000:] + verified.stderr[-2000:]
        result = json.loads(verified.stdout)
        warned = result["warnings"]
        assert [w["kind"] for w in warned if w["kind"] == "log_archived"] == ["log_archived"]
        assert "chain_unchecked" in {w["kind"] for w in warned}  # January's seal names it
        assert world.digest in json.dumps(warned)
        state = world.archive.parent / "monitor.json"
        watched = run_ledger(env, "monitor", "--once", "--state", str(state))
        assert watched.returncode == 0, watched.stdout + watched.stderr
    exported = world.archive.parent / "export-after"
    done = run_ledger(world.own.env(), "export", "--out", str(exported), "--reason", "RET")
    assert done.returncode == 0, done.stderr
    offline = run_ledger(world.own.env(), "verify", "--bundle", str(exported))
    assert offline.returncode == 0, offline.stdout[-2000:]
    # A new partition whose first record is stamped in the detached month does not reopen
    # it: its first log is this month's, and February gets no partition back.
    asyncio.run(_late_partition(world.own, f"{world.topic}-late"))
    origins = asyncio.run(
        _query(world.own, "SELECT origin FROM logs WHERE topic = $1", f"{world.topic}-late")
    )
    assert [r["origin"].rsplit("/", 1)[1] for r in origins] == [f"{datetime.now(UTC):%Y-%m}"]
    reattached = asyncio.run(
        _query(world.own, "SELECT count(*) FROM pg_class WHERE relname = 'events_p2025_02' "
               "AND relispartition")
    )  # fmt: skip
    assert reattached[0][0] == 0
    # Once is all: the month is detached already.
    again = _detach(world.own, "2025-02", world.archive)
    assert again.returncode != 0
    assert "2025-02 is detached already" in again.stderr


@contextlib.contextmanager
def _serving(own: Stack) -> Iterator[dict[str, str]]:
    """A `ledger serve` of this ledger; the environment that reaches it."""
    port = free_port()
    env = own.env(LEDGER_API_URL=f"http://127.0.0.1:{port}")
    proc = subprocess.Popen(
        [str(Path(ROOT) / ".venv/bin/ledger"), "serve", "--port", str(port)], env=env, cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert run_ledger(env, "wait", "api", "--timeout", "60").returncode == 0
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def _late_partition(own: Stack, topic: str) -> None:
    async with PostgresAppender(dsn=own.appender_url, ledger_name=LEDGER) as appender:
        await appender.append(topic=topic, partition=0, items=_month(own, topic, 0, 2025, 2, 1))


async def _detached_periods(own: Stack) -> object:
    async with PostgresReader(dsn=own.reader_url) as reader:
        return await reader.detached_periods()


def test_nothing_is_detached_while_the_record_is_not_in_the_ledger(
    stack: Stack, tmp_path: Path
) -> None:
    """The record must be appended before any partition leaves: with no consumer to
    append it, the command gives up and the month stays."""
    with own_ledger(stack, f"{stack.database}_nodetach") as own:
        topic = f"t{own.run_id}-nodetach-{uuid.uuid4().hex[:6]}"
        asyncio.run(_fill(own, topic))
        archive = tmp_path / "2025-02"
        done = run_ledger(
            own.env(), "archive", "--period", "2025-02", "--out", str(archive),
            "--reason", "RET",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        refused = _detach(own, "2025-02", archive, "--record-timeout", "3")
        assert refused.returncode != 0
        assert "nothing was detached" in refused.stderr
        assert asyncio.run(_query(own, "SELECT * FROM period_archives")) == []
        rows = asyncio.run(_query(own, "SELECT count(*) FROM leaves WHERE period = '2025-02-01'"))
        assert rows[0][0] == 30
