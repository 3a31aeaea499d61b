"""``ledger archive`` against the real PostgreSQL: a sealed month round-trips through the
archive and offline verification; tampered copies fail with the right finding; a period
whose logs are not all sealed, an unknown period and a non-empty target are refused."""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from consumers.classify import classify
from integrations.simulator import Simulator
from ledger.audit.ingest import Accepted, WriterSchemaInfo
from ledger.audit.producerauth import ProducerAuthenticator, RegisteredKey
from ledger.log.keys import load_signers
from ledger.log.leaf import KafkaRecord
from ledger.log.periods import PeriodLength
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from ledger.verify.bundle import BundleReader
from ledger.verify.bundle.archive import file_digests
from producers.codec import Codec
from producers.signing import load_producer_key
from tests.conftest import own_ledger
from tests.support import Stack, run_ledger, signed_headers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CODEC = Codec()
LEDGER = "test.ledger.local"
MONTHS = (("2026-10", 2026, 10, 30), ("2026-11", 2026, 11, 40), ("2026-12", 2026, 12, 5))


@pytest.fixture(scope="module")
def stack(stack: Stack) -> Iterator[Stack]:
    """This module's ledger, a database of its own: an archive takes every log of a month,
    and other tests' logs in the shared database would be in it (or keep it unsealed)."""
    with own_ledger(stack, f"{stack.database}_archive") as own:
        yield own


def _ms(year: int, month: int) -> int:
    return int(datetime(year, month, 10, tzinfo=UTC).timestamp() * 1000)


def _authenticator(key_file: str) -> ProducerAuthenticator:
    key = load_producer_key(key_file)
    return ProducerAuthenticator(
        [
            RegisteredKey(
                key_id=key.key_id,  # type: ignore[arg-type]
                producer_id=key.producer_id,
                public_key=key.public_key,
                created_at=datetime.now(UTC),
            )
        ]
    )


def _month(stack: Stack, topic: str, first: int, year: int, month: int, n: int) -> list[Accepted]:
    """``n`` signed simulator events at offsets ``first..``, broker-stamped in that month."""
    key_file = stack.producer_key("simulator")
    values = [
        CODEC.encode(e.stamped(producer_id="simulator", producer_seq=first + i))
        for i, e in enumerate(Simulator(seed=first).events(n))
    ]
    headers = signed_headers(key_file, [(topic, v) for v in values])
    auth = _authenticator(key_file)
    items = []
    for i, (value, header) in enumerate(zip(values, headers, strict=True)):
        record = KafkaRecord(
            topic=topic, partition=0, offset=first + i, timestamp_ms=_ms(year, month) + i,
            timestamp_type=1, key=b"k", value=value,
        )  # fmt: skip
        item = classify(record, CODEC, auth=auth, envelope=header[0][1])
        assert isinstance(item, Accepted), item
        items.append(item)
    return items


async def _seal(stack: Stack, topic: str) -> list[int]:
    """The checkpointer's sweep seals every closed log (this topic's October and
    November); December, still open, gets a checkpoint of what it holds."""
    signers = load_signers(stack.signer_key_file)
    pool = await asyncpg.create_pool(stack.appender_url, min_size=1, max_size=2)
    try:
        checkpointer = Checkpointer(pool=pool, signers=signers, policy=CheckpointPolicy())
        sealed = [s.log_id for s in await checkpointer.seal_closed_logs()]
        async with pool.acquire() as conn:
            logs = await conn.fetch(
                "SELECT log_id FROM logs WHERE topic = $1 ORDER BY period", topic
            )
        await checkpointer.checkpoint(int(logs[-1]["log_id"]), force=True)
    finally:
        await pool.close()
    return [int(g["log_id"]) for g in logs if int(g["log_id"]) in sealed]


async def fill_months(stack: Stack, topic: str, months: list[tuple[int, int, int]]) -> None:
    """``(year, month, n)`` signed events per month, appended month by month, then the
    sweep seals every closed log."""
    async with PostgresAppender(
        dsn=stack.appender_url, ledger_name=LEDGER, period=PeriodLength.MONTH
    ) as appender:
        await appender.register_schemas([
            WriterSchemaInfo(fingerprint=s.fingerprint, full_name=s.full_name,
                             canonical_form=s.canonical_form, schema_json=s.schema_json)
            for s in CODEC.schemas
        ])  # fmt: skip
        first = 0
        for year, month, n in months:
            items = _month(stack, topic, first, year, month, n)
            await appender.append(topic=topic, partition=0, items=items)
            first += n
    assert len(await _seal(stack, topic)) == len(months) - 1


@pytest.fixture(scope="module")
async def three_months(stack: Stack) -> str:
    """A topic with logs in October, November (both sealed) and December (open)."""
    topic = f"t{stack.run_id}-archive-{uuid.uuid4().hex[:6]}"
    await fill_months(stack, topic, [(y, m, n) for _, y, m, n in MONTHS])
    return topic


def _archive(stack: Stack, out: Path, period: str = "2026-11") -> tuple[int, str, str]:
    done = run_ledger(
        stack.env(), "archive", "--period", period, "--out", str(out), "--reason", "IT-42"
    )
    return done.returncode, done.stdout, done.stderr


def _verify(stack: Stack, bundle: Path, *extra: str) -> tuple[int, dict[str, object]]:
    done = run_ledger(stack.env(), "verify", "--bundle", str(bundle), "--json", *extra)
    return done.returncode, json.loads(done.stdout)


def _kinds(result: dict[str, object]) -> set[str]:
    findings = result["findings"]
    assert isinstance(findings, list)
    return {f["kind"] for f in findings}


@pytest.fixture(scope="module")
def november(stack: Stack, three_months: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("archives") / "2026-11"
    code, stdout, stderr = _archive(stack, out)
    assert code == 0, stderr
    digest = hashlib.sha256((out / "manifest.json").read_bytes()).hexdigest()
    assert f"manifest sha256 {digest}" in stdout
    return out


def _copy(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(bundle, target)
    return target


def test_a_sealed_month_round_trips_and_verifies_offline(november: Path, stack: Stack) -> None:
    manifest = json.loads((november / "manifest.json").read_text())
    assert manifest["format"] == "phi-ledger-archive/v1"
    assert manifest["period"] == {"label": "2026-11", "start": "2026-11-01", "end": "2026-12-01"}
    [log] = [g for g in manifest["logs"] if g["origin"].endswith("/0/2026-11")]
    assert (log["size"], log["first_offset"], log["period"]) == (40, 30, "2026-11-01")
    assert set(manifest["files"]) == set(file_digests(november))
    previous = (november / "previous-seals.jsonl").read_text().splitlines()
    assert [json.loads(p)["next_first_offset"] for p in previous] == [30]
    code, result = _verify(stack, november)
    assert code == 0, result["findings"]
    assert result["verdict"] == "ok"
    assert not result["warnings"]
    heads = {g["origin"]: g["head"] for g in result["logs"] if g["head"]}
    assert heads[log["origin"]]["size"] == 40
    code, parallel = _verify(stack, november, "--jobs", "2")
    assert code == 0, parallel["findings"]


def test_a_flipped_leaf_byte_fails(november: Path, stack: Stack, tmp_path: Path) -> None:
    bundle = _copy(november, tmp_path)
    [entries] = bundle.glob("logs/*/entries.bin")
    data = bytearray(entries.read_bytes())
    data[-3] ^= 0x01
    entries.write_bytes(bytes(data))
    code, result = _verify(stack, bundle)
    assert code == 1
    assert {"archive_file_digest", "checkpoint_root_mismatch"} <= _kinds(result)


def test_a_removed_seal_fails(november: Path, stack: Stack, tmp_path: Path) -> None:
    bundle = _copy(november, tmp_path)
    [seal] = bundle.glob("logs/*/seal.json")
    seal.unlink()
    code, result = _verify(stack, bundle)
    assert code == 1
    assert _kinds(result) == {"archive_file_missing", "seal_missing"}


def test_verifying_with_another_key_fails(november: Path, stack: Stack) -> None:
    from ledger.log.note import generate_signer

    _, other = generate_signer(LEDGER)
    code, result = _verify(stack, november, "--key", other)
    assert code == 1
    assert "verifier_key_unknown" in _kinds(result)


def test_a_period_with_an_open_log_is_refused(
    three_months: str, stack: Stack, tmp_path: Path
) -> None:
    code, _, stderr = _archive(stack, tmp_path / "dec", "2026-12")
    assert code == 1
    assert "2026-12 is not sealed yet" in stderr
    assert f"{three_months}/0/2026-12" in stderr
    assert not (tmp_path / "dec").exists()


def test_an_unknown_period_and_a_full_target_are_refused(
    three_months: str, stack: Stack, tmp_path: Path
) -> None:
    code, _, stderr = _archive(stack, tmp_path / "old", "2019-01")
    assert code == 1
    assert "no log belongs to period 2019-01" in stderr
    full = tmp_path / "full"
    full.mkdir(mode=0o700)
    (full / "x").write_text("x")
    code, _, stderr = _archive(stack, full)
    assert code == 1
    assert "not an empty directory" in stderr
    code, _, stderr = _archive(stack, tmp_path / "day", "2026-11-01")
    assert code == 1
    assert "not day logs" in stderr


def test_an_export_of_the_live_ledger_checks_the_seals(
    three_months: str, stack: Stack, tmp_path: Path
) -> None:
    bundle = tmp_path / "export"
    done = run_ledger(stack.env(), "export", "--out", str(bundle), "--reason", "IT-43")
    assert done.returncode == 0, done.stderr
    seals = sorted(p.parent.name for p in bundle.glob("logs/*/seal.json"))
    assert len(seals) >= 2
    code, result = _verify(stack, bundle)
    ours = [f for f in result["findings"] if three_months in f["log"]]
    assert not ours, ours
    assert not [w for w in result["warnings"] if three_months in w["log"]]
    del code  # other tests' logs in this session's database are not this test's to judge


class _KeptReads:
    def __init__(self) -> None:
        self.reads: list[object] = []

    async def record(self, read: object) -> None:
        self.reads.append(read)


async def test_verify_through_the_api_checks_the_seals(
    three_months: str, stack: Stack, tmp_path: Path
) -> None:
    """What `ledger verify --api` downloads carries each log's period and seal."""
    from aiohttp.test_utils import TestServer

    from ledger.http import create_app
    from ledger.log.note import parse_verifier_key
    from ledger.pg.reader import PostgresReader
    from ledger.verify import verify_bundle
    from ledgerctl.client import Api
    from ledgerctl.fetch import download_bundle

    verifier = parse_verifier_key(stack.verifier_key)
    async with PostgresReader(dsn=stack.reader_url) as reader:
        app = create_app(reader=reader, tokens=reader, recorder=_KeptReads())  # type: ignore[arg-type]
        async with TestServer(app) as server:
            api = Api(url=str(server.make_url("")).rstrip("/"), token=stack.tokens["admin"])
            assert await download_bundle(api, tmp_path / "b", ledger_name=LEDGER) is None
    ours = [g for g in BundleReader(tmp_path / "b").logs if three_months in g.origin]
    assert [g.period for g in ours] == ["2026-10-01", "2026-11-01", "2026-12-01"]
    sealed = [BundleReader(tmp_path / "b").seal(g.log_id) is not None for g in ours]
    assert sealed == [True, True, False]
    reports = [r for r in verify_bundle(tmp_path / "b", [verifier]) if three_months in r.origin]
    assert len(reports) == 3
    assert all(r.ok for r in reports), [r.findings for r in reports]
    assert not any(r.warnings for r in reports)
