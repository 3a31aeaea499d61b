"""An independent witness (litewitness v0.6.1, torchwood) cosigns the ledger's checkpoints,
and refuses when the ledger tries to fork or roll back (docs/design/witnesses.md)."""

from __future__ import annotations

import logging
import os
import random
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import pytest
from typer.testing import CliRunner

from consumers.metrics import CosignerCollector
from ledger.http.witnessclient import HttpWitnessTransport
from ledger.log.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ledger.log.cosignature import (
    WitnessKey,
    WitnessPolicy,
    check_cosignatures,
    parse_cosignature_line,
    parse_witness_key,
    sign_cosignature,
    split_note,
)
from ledger.log.note import Signer, generate_signer, parse_signer_key
from ledger.log.types import RootHash
from ledger.log.witness import (
    Conflict,
    Cosigned,
    Refused,
    Witness,
    add_checkpoint_body,
    read_answer,
)
from ledger.pg import sql, tree
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.pg.cosigner import Cosigner
from ledger.pg.export import export_bundle
from ledger.pg.reader import PostgresReader
from ledger.verify import verify_bundle
from ledgerctl.cli import app
from tests.conftest import own_ledger
from tests.litewitness import Litewitness, litewitness
from tests.support import Stack, synthetic_batch

pytestmark = pytest.mark.integration

POLICY = CheckpointPolicy(every_leaves=1, every_ms=0)


@pytest.fixture
async def appender(stack: Stack) -> AsyncIterator[PostgresAppender]:
    async with PostgresAppender(dsn=stack.appender_url, ledger_name="test.ledger.local") as a:
        yield a


@pytest.fixture
def lw(tmp_path: Path) -> Iterator[Litewitness]:
    with litewitness(tmp_path / "lw") as running:
        yield running


@pytest.fixture
async def transport() -> AsyncIterator[HttpWitnessTransport]:
    async with HttpWitnessTransport() as t:
        yield t


class Log:
    """One scratch log, its signer, and the witness set up to know it."""

    def __init__(self, appender: PostgresAppender, lw: Litewitness) -> None:
        self.appender = appender
        self.lw = lw
        self.topic = f"witness-{uuid.uuid4().hex[:8]}"
        signer_key, self.vkey = generate_signer("test.ledger.local")
        self.signer: Signer = parse_signer_key(signer_key)
        self.size = 0
        self.log_id = 0
        self.origin = ""

    async def grow(self, n: int) -> None:
        items = synthetic_batch(self.topic, self.size, n, random.Random(f"{self.topic}{self.size}"))
        result = await self.appender.append(topic=self.topic, partition=0, items=items)
        self.log_id, self.size = result.log_id, self.size + n
        async with self.appender.pool.acquire() as conn:
            row = await conn.fetchrow(sql.LOG_BY_ID, self.log_id)
        self.origin = str(row["origin"])

    async def checkpoint(self, size: int | None = None) -> None:
        cp = Checkpointer(pool=self.appender.pool, signers=[self.signer], policy=POLICY)
        assert await cp.checkpoint(self.log_id, size=size) is not None

    async def note_at(self, size: int, root: bytes | None = None) -> str:
        """A checkpoint of ``size`` signed by the log's key (the true root unless given)."""
        async with self.appender.pool.acquire() as conn:
            if root is None:
                current = await tree.log_size(conn, self.log_id)
                root = await tree.root_at(conn, self.log_id, size, current)
        cp = Checkpoint(origin=self.origin, size=size, root_hash=RootHash(root))
        return sign_checkpoint(cp, [self.signer])

    async def proof(self, old: int, size: int) -> tuple[bytes, ...]:
        async with self.appender.pool.acquire() as conn:
            current = await tree.log_size(conn, self.log_id)
            return await tree.consistency_hashes(conn, self.log_id, old, size, current)

    def witness(self) -> Witness:
        return Witness(url=self.lw.url, key=parse_witness_key(self.lw.vkey))

    def cosigner(self, transport: HttpWitnessTransport) -> Cosigner:
        return Cosigner(pool=self.appender.pool, witnesses=[self.witness()], transport=transport)


async def new_log(appender: PostgresAppender, lw: Litewitness, leaves: int) -> Log:
    log = Log(appender, lw)
    await log.grow(leaves)
    lw.add_log(log.origin, [log.vkey])
    return log


async def served_note(owner: asyncpg.Connection, log_id: int, size: int) -> str:
    rows = await owner.fetch(sql.EXPORT_CHECKPOINTS, log_id)
    return next(str(r["note"]) for r in rows if int(r["size"]) == size)


async def test_litewitness_cosigns_each_new_checkpoint(
    appender: PostgresAppender, lw: Litewitness, transport: HttpWitnessTransport,
    owner_conn: asyncpg.Connection, stack: Stack,
) -> None:  # fmt: skip
    log = await new_log(appender, lw, 300)
    await log.checkpoint()
    cosigner = log.cosigner(transport)
    mine = [o for o in await cosigner.sweep() if o.log_id == log.log_id]
    assert [(o.ok, o.size) for o in mine] == [(True, 300)]

    await log.grow(45)
    await log.checkpoint()
    # A new cosigner (a restarted consumer) starts from what the database holds: old 300.
    mine = [o for o in await log.cosigner(transport).sweep() if o.log_id == log.log_id]
    assert [(o.ok, o.size) for o in mine] == [(True, 345)]
    assert '"size":345' in lw.list_logs().replace(" ", "")

    policy = WitnessPolicy(witnesses=(parse_witness_key(lw.vkey),), threshold=1)
    for size in (300, 345):
        note = await served_note(owner_conn, log.log_id, size)
        assert check_cosignatures(note, policy).satisfied
    # What the API serves (the reader): the checkpoint with the witness's line appended,
    # still opened by the log's own key (the cosignature is an unknown key to it).
    async with PostgresReader(dsn=stack.reader_url) as reader:
        latest = await reader.latest_checkpoint(log.log_id)
        listed = await reader.checkpoints(log.log_id, after=0, limit=10)
    assert latest is not None
    assert latest.note.count("\u2014 ") == 2
    assert check_cosignatures(latest.note, policy).satisfied
    assert open_checkpoint(latest.note, [log.signer.verifier]).size == 345
    assert [c.note for c in listed][-1] == latest.note
    # Nothing new: nothing is submitted again.
    assert [o for o in await cosigner.sweep() if o.log_id == log.log_id] == []


async def test_litewitness_refuses_a_fork(
    appender: PostgresAppender, lw: Litewitness, transport: HttpWitnessTransport,
    owner_conn: asyncpg.Connection,
) -> None:  # fmt: skip
    log = await new_log(appender, lw, 260)
    await log.checkpoint()
    assert [o.ok for o in await log.cosigner(transport).sweep() if o.log_id == log.log_id] == [True]
    witness = log.witness()

    # Another checkpoint of the size the witness already cosigned, signed by the log's key.
    fork = await log.note_at(260, root=bytes(32))
    answer = await transport.post(
        lw.url + "/add-checkpoint", add_checkpoint_body(260, (), fork), timeout=10
    )
    refused = read_answer(answer, fork, witness.key)
    assert isinstance(refused, Refused)
    assert refused.status == 422

    # The operator signs a larger checkpoint whose root is not an extension of 260: the
    # consistency proof from the real tree does not lead to it, and the witness refuses.
    await log.grow(20)
    forged = await log.note_at(280, root=bytes(range(32)))
    await owner_conn.execute(
        "INSERT INTO checkpoints (log_id, size, root_hash, note) VALUES ($1, 280, $2, $3)",
        log.log_id, bytes(range(32)), forged,
    )  # fmt: skip
    mine = [o for o in await log.cosigner(transport).sweep() if o.log_id == log.log_id]
    assert [(o.ok, o.size) for o in mine] == [(False, 280)]
    assert "HTTP 422" in mine[0].detail
    stored = await owner_conn.fetchval(
        "SELECT count(*) FROM checkpoint_cosignatures WHERE log_id = $1 AND size = 280",
        log.log_id,
    )
    assert stored == 0
    assert '"size":260' in lw.list_logs().replace(" ", "")


async def test_litewitness_refuses_a_rollback(
    appender: PostgresAppender, lw: Litewitness, transport: HttpWitnessTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    log = await new_log(appender, lw, 300)
    witness = log.witness()
    # The witness is shown (by a replica, or before a restore) the checkpoint of size 300.
    at_300 = await log.note_at(300)
    answer = await transport.post(
        lw.url + "/add-checkpoint", add_checkpoint_body(0, (), at_300), timeout=10
    )
    assert isinstance(read_answer(answer, at_300, witness.key), Cosigned)

    # Asked to go back to 200 from what it holds: 400; from a smaller "old": 409 naming 300.
    at_200 = await log.note_at(200)
    back = await transport.post(
        lw.url + "/add-checkpoint", add_checkpoint_body(300, (), at_200), timeout=10
    )
    assert back.status == 400
    stale = await transport.post(
        lw.url + "/add-checkpoint", add_checkpoint_body(0, (), at_200), timeout=10
    )
    assert read_answer(stale, at_200, witness.key) == Conflict(known_size=300)

    # The ledger's own newest checkpoint is 200 (rolled back): the cosigner learns from the
    # 409 that the witness holds 300 and reports it instead of asking for a rollback.
    await log.checkpoint(size=200)
    cosigner = log.cosigner(transport)
    with caplog.at_level(logging.WARNING, logger="ledger.pg.cosigner"):
        mine = [o for o in await cosigner.sweep() if o.log_id == log.log_id]
        assert [(o.ok, o.size, o.alarm) for o in mine] == [(False, 200, True)]
        assert "witness holds size 300, beyond our 200" in mine[0].detail
        await cosigner.sweep()  # the same state again: not logged again
    alarms = [
        r for r in caplog.records if r.levelno == logging.CRITICAL and log.origin in r.getMessage()
    ]
    assert len(alarms) == 1


async def test_an_unreachable_witness_is_reported_not_raised(
    appender: PostgresAppender, lw: Litewitness, transport: HttpWitnessTransport
) -> None:
    log = await new_log(appender, lw, 10)
    await log.checkpoint()
    gone = Witness(url="http://127.0.0.1:9", key=parse_witness_key(lw.vkey))
    cosigner = Cosigner(pool=appender.pool, witnesses=[gone], transport=transport, timeout=2)
    mine = [o for o in await cosigner.sweep() if o.log_id == log.log_id]
    assert [(o.ok, o.detail) for o in mine] == [(False, "HTTP 0: connect")]
    assert cosigner.status[(gone.key.key, log.log_id)].ok is False
    # The consumer's /metrics says so, per witness and log.
    failing = next(m for m in CosignerCollector(cosigner).collect()
                   if m.name == "ledger_witness_submission_failing")  # fmt: skip
    values = {(s.labels["witness"], s.labels["origin"]): s.value for s in failing.samples}
    assert values[(gone.name, log.origin)] == 1


@pytest.fixture
def own(stack: Stack) -> Iterator[Stack]:
    """A ledger of the test's own: its export holds this test's log only. On the session's
    shared ledger the export (and `ledger verify` of it) grew with every test the worker
    had run before: 5.6 s in one CI run, 31 s in the next."""
    with own_ledger(stack, f"ledger_witness_{uuid.uuid4().hex[:8]}") as ledger:
        yield ledger


async def test_verify_enforces_k_of_n_on_litewitness_cosignatures(
    own: Stack, lw: Litewitness, transport: HttpWitnessTransport, tmp_path: Path
) -> None:
    async with PostgresAppender(dsn=own.appender_url, ledger_name="test.ledger.local") as appender:
        owner_conn = await asyncpg.connect(own.owner_url)
        try:
            await _k_of_n(own, appender, owner_conn, lw, transport, tmp_path)
        finally:
            await owner_conn.close()


async def _k_of_n(
    stack: Stack, appender: PostgresAppender, owner_conn: asyncpg.Connection,
    lw: Litewitness, transport: HttpWitnessTransport, tmp_path: Path,
) -> None:  # fmt: skip
    with litewitness(tmp_path / "lw2", name="witness.test.local/w2") as lw2:
        log = await new_log(appender, lw, 270)
        lw2.add_log(log.origin, [log.vkey])
        await log.checkpoint()
        both = [log.witness(), Witness(url=lw2.url, key=parse_witness_key(lw2.vkey))]
        cosigner = Cosigner(pool=appender.pool, witnesses=both, transport=transport)
        mine = [o for o in await cosigner.sweep() if o.log_id == log.log_id]
        assert [o.ok for o in mine] == [True, True]

    w1, w2 = (parse_witness_key(k) for k in (lw.vkey, lw2.vkey))
    stranger_seed = os.urandom(32)
    w3 = WitnessKey.from_public_key(
        "witness.test.local/w3", Signer.from_seed("x", stranger_seed).public_key
    )

    async def export() -> Path:
        """The test's ledger, exported once per state."""
        path = tmp_path / f"bundle-{uuid.uuid4().hex[:6]}"
        await export_bundle(dsn=stack.reader_url, path=path, ledger_name="test.ledger.local")
        return path

    def verify(bundle: Path, policy: WitnessPolicy) -> list[tuple[str, int | None]]:
        [report] = verify_bundle(
            bundle, [log.signer.verifier], check_index=False, log_ids={log.log_id},
            witnesses=policy,
        )  # fmt: skip
        return [(f.kind, f.checkpoint_size) for f in report.findings]

    bundle = await export()
    assert verify(bundle, WitnessPolicy(witnesses=(w1, w2, w3), threshold=2)) == []
    # The same through `ledger verify`.
    args = ["verify", "--bundle", str(bundle), "--key", log.vkey, "--no-check-index"]
    strict = [*args, "--witness", w1.key, "--witness", w3.key, "--witness-threshold", "2"]
    ran = CliRunner().invoke(app, [*args, "--witness", w1.key, "--witness-threshold", "1"])
    failed = CliRunner().invoke(app, strict)
    assert "checkpoint_unwitnessed" in failed.output
    assert "checkpoint_unwitnessed" not in ran.output
    # w2's real cosignature counts for nothing when the auditor does not name w2's key.
    assert verify(bundle, WitnessPolicy(witnesses=(w1, w3), threshold=2)) == [
        ("checkpoint_unwitnessed", 270)
    ]

    # The operator grows the log past what the witnesses saw and forges their lines.
    await log.grow(5)
    await log.checkpoint()
    text = split_note(await log.note_at(275))[0]
    for name, key_id in ((w1.name, w1.key_id), (w2.name, w2.key_id)):
        fake = parse_cosignature_line(
            sign_cosignature(text, name=name, seed=stranger_seed, timestamp=1_760_000_000)
        )
        assert fake is not None
        line = replace(fake, key_id=key_id).line
        await owner_conn.execute(
            sql.INSERT_COSIGNATURE, log.log_id, 275, name, key_id, fake.timestamp, line
        )
    findings = verify(await export(), WitnessPolicy(witnesses=(w1, w2, w3), threshold=2))
    assert findings == [
        ("cosignature_invalid", 275),
        ("cosignature_invalid", 275),
        ("checkpoint_unwitnessed", 275),
    ]
