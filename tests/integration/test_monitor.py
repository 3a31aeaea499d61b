"""`ledger monitor` against a real `ledger serve` on a scratch ledger, and tampering fronts.

Leaves are appended and checkpoints signed (with the session's real signing key) straight
into a database of this module's own; the API is the real process.  Each tampering is a
tiny aiohttp front in the test that passes every request to the real API and alters one
kind of answer: a forked checkpoint signed by the real key, an old checkpoint (rollback),
hidden leaves (truncation), an altered leaf or consistency proof, a log it does not list.
A stalled checkpointer is real: leaves are appended and nothing signs them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.keys import load_signers
from ledger.log.types import RootHash
from ledger.pg.appender import PostgresAppender
from ledger.pg.checkpointer import Checkpointer, CheckpointPolicy
from tests.atna_pki import make_pki
from tests.conftest import own_ledger
from tests.e2e.conftest import LEDGER, free_port
from tests.integration.test_alert_delivery import SECRET, Receiver
from tests.support import ROOT, SYNTHETIC_PERIOD, Stack, synthetic_batch

pytestmark = pytest.mark.integration

Alter = Callable[[web.Request, bytes], Awaitable[bytes | None]]


@dataclass(frozen=True)
class Ledger:
    stack: Stack
    api_url: str
    env: dict[str, str]


@pytest.fixture(scope="module")
def ledger(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledger]:
    """A scratch ledger of this module's own and a real `ledger serve` reading it."""
    with own_ledger(stack, f"{stack.database}_mon{uuid.uuid4().hex[:6]}") as own:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        env = own.env(LEDGER_API_URL=url, LEDGER_API_TOKEN=own.tokens["auditor"])
        log = (tmp_path_factory.mktemp("monitor") / "api.log").open("wb")
        api = subprocess.Popen(
            [LEDGER, "serve", "--port", str(port)], env=env, cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            subprocess.run([LEDGER, "wait", "api", "--timeout", "60"], env=env, check=True)
            yield Ledger(stack=own, api_url=url, env=env)
        finally:
            api.terminate()
            api.wait(timeout=20)
            log.close()


@dataclass
class Log:
    """One log of the scratch ledger: appended and signed from the test."""

    ledger: Ledger
    topic: str
    appender: PostgresAppender
    checkpointer: Checkpointer
    size: int = 0
    log_id: int = 0

    @property
    def origin(self) -> str:
        return f"test.ledger.local/{self.topic}/0/{SYNTHETIC_PERIOD}"

    async def grow(self, n: int, *, sign: bool = True) -> None:
        items = synthetic_batch(
            self.topic, self.size, n, random.Random(f"{self.topic}.{self.size}")
        )
        result = await self.appender.append(topic=self.topic, partition=0, items=items)
        self.log_id, self.size = result.log_id, self.size + n
        if sign:
            assert await self.checkpointer.checkpoint(self.log_id, force=True) is not None

    def sign(self, size: int, root: bytes) -> str:
        cp = Checkpoint(origin=self.origin, size=size, root_hash=RootHash(root))
        return sign_checkpoint(cp, load_signers(self.ledger.stack.signer_key_file))


@pytest.fixture
async def log(ledger: Ledger) -> AsyncIterator[Log]:
    async with PostgresAppender(
        dsn=ledger.stack.appender_url, ledger_name="test.ledger.local"
    ) as appender:
        signers = load_signers(ledger.stack.signer_key_file)
        policy = CheckpointPolicy(every_leaves=1, every_ms=0)
        cp = Checkpointer(pool=appender.pool, signers=signers, policy=policy)
        made = Log(ledger, f"mon-{uuid.uuid4().hex[:8]}", appender, cp)
        await made.grow(300)
        yield made
        await made.checkpointer.checkpoint(made.log_id, force=True)  # leave nothing unsigned


async def monitor(ledger: Ledger, state: Path, *args: str, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        LEDGER, "monitor", "--once", "--state", str(state), *args,
        env={**ledger.env, **env}, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


def findings(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("FINDING ")]


def kept(state: Path, origin: str) -> int:
    return int(json.loads(state.read_text())["logs"][origin]["size"])


@contextlib.asynccontextmanager
async def front(upstream: str, alter: Alter) -> AsyncIterator[str]:
    """An HTTP front passing every request to ``upstream``; ``alter`` may rewrite the body
    of an answer (None: leave it)."""

    async def relay(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{upstream}{request.path_qs}", headers=headers) as resp,
        ):
            body, status, kind = await resp.read(), resp.status, resp.content_type
        changed = await alter(request, body) if status == 200 else None
        return web.Response(body=body if changed is None else changed, status=status,
                            content_type=kind)  # fmt: skip

    app = web.Application()
    app.router.add_route("GET", "/{tail:.*}", relay)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def served_note(log: Log) -> str:
    headers = log.ledger.stack.auth("auditor")
    url = f"{log.ledger.api_url}/logs/{log.log_id}/checkpoint"
    async with aiohttp.ClientSession(headers=headers) as http, http.get(url) as resp:
        return await resp.text()


async def test_a_clean_ledger_has_no_finding_and_the_state_advances(
    log: Log, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    code, out = await monitor(log.ledger, state)
    assert (code, findings(out)) == (0, []), out
    assert kept(state, log.origin) == 300
    assert os.stat(state).st_mode & 0o777 == 0o600
    await log.grow(40)
    code, out = await monitor(log.ledger, state)
    assert (code, findings(out)) == (0, []), out
    assert f"OK {log.origin}: verified 300 -> 340" in out
    assert kept(state, log.origin) == 340


async def test_a_fork_signed_by_the_real_key_is_caught(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert (await monitor(log.ledger, state))[0] == 0
    forked = log.sign(300, bytes(32))  # same size, another root, the real signing key

    async def fork(request: web.Request, body: bytes) -> bytes | None:
        return forked.encode() if request.path == f"/logs/{log.log_id}/checkpoint" else None

    async with front(log.ledger.api_url, fork) as url:
        code, out = await monitor(log.ledger, state, "--endpoint", url)
    assert code == 1, out
    assert [f for f in findings(out) if log.origin in f] == [
        f"FINDING fork log {log.origin} at {url}: serves a signed checkpoint of size 300 whose "
        "root differs from the one verified earlier at that size: two histories are signed"
    ]
    assert kept(state, log.origin) == 300

    await log.grow(10)
    await log.grow(10)  # signed at 310 and 320: the front forks the one at 310
    forked_310 = log.sign(310, bytes(32))

    async def fork_history(request: web.Request, body: bytes) -> bytes | None:
        if request.path != f"/v1/logs/{log.log_id}/checkpoints":
            return None
        doc = json.loads(body)
        for c in doc["checkpoints"]:
            c["note"] = forked_310 if c["size"] == 310 else c["note"]
        return json.dumps(doc).encode()

    async with front(log.ledger.api_url, fork_history) as url:
        code, out = await monitor(log.ledger, state, "--endpoint", url)
    assert code == 1, out
    assert findings(out) == [
        f"FINDING fork log {log.origin} at {url}: its checkpoint history holds a signed "
        "checkpoint of size 310 whose root the log's leaves do not give: two histories are signed"
    ]
    assert kept(state, log.origin) == 300
    code, out = await monitor(log.ledger, state)  # the real history is one history
    assert (code, findings(out)) == (0, []), out
    assert kept(state, log.origin) == 320


async def test_a_rollback_to_an_older_checkpoint_is_caught(log: Log, tmp_path: Path) -> None:
    old = await served_note(log)
    await log.grow(20)
    state = tmp_path / "state.json"
    assert (await monitor(log.ledger, state))[0] == 0
    assert kept(state, log.origin) == 320

    async def rollback(request: web.Request, body: bytes) -> bytes | None:
        return old.encode() if request.path == f"/logs/{log.log_id}/checkpoint" else None

    async with front(log.ledger.api_url, rollback) as url:
        code, out = await monitor(log.ledger, state, "--endpoint", url)
    assert code == 1, out
    assert [f.split(": ")[0] for f in findings(out)] == [
        f"FINDING rollback log {log.origin} at {url}"
    ]
    assert "smaller than the 320 verified earlier" in out

    async def unsigned(request: web.Request, body: bytes) -> bytes | None:
        if request.path == f"/logs/{log.log_id}/checkpoint":
            raise web.HTTPNotFound()  # as if no checkpoint had ever been signed
        return None

    async with front(log.ledger.api_url, unsigned) as url:
        code, out = await monitor(log.ledger, state, "--endpoint", url)
    assert code == 1, out
    assert findings(out) == [
        f"FINDING rollback log {log.origin} at {url}: serves no signed checkpoint, yet 320 "
        "leaves were verified earlier: the log was truncated or rolled back"
    ]
    assert kept(state, log.origin) == 320


async def test_a_truncated_log_is_caught(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert (await monitor(log.ledger, state))[0] == 0
    await log.grow(20)  # signed at 320; the front serves only leaves below 310

    async def hide(request: web.Request, body: bytes) -> bytes | None:
        if request.path.startswith(f"/logs/{log.log_id}/tile/entries/"):
            raise web.HTTPNotFound()  # so the leaves route is read, which shows the gap
        if request.path == f"/v1/logs/{log.log_id}/leaves":
            rows = json.loads(body)
            rows["leaves"] = [r for r in rows["leaves"] if int(r["index"]) < 310]
            return json.dumps(rows).encode()
        return None

    async with front(log.ledger.api_url, hide) as url:
        code, out = await monitor(log.ledger, state, "--endpoint", url)
    assert code == 1, out
    assert findings(out) == [
        f"FINDING leaves_missing log {log.origin} at {url}: leaf 310 is not served, yet the "
        "signed checkpoint of size 320 covers it: the log was truncated or rows were removed"
    ]
    assert kept(state, log.origin) == 300


async def test_an_altered_leaf_and_a_bad_consistency_proof_are_caught(
    log: Log, tmp_path: Path
) -> None:
    state = tmp_path / "state.json"
    assert (await monitor(log.ledger, state))[0] == 0
    await log.grow(20)

    async def alter(request: web.Request, body: bytes) -> bytes | None:
        if request.path.startswith(f"/logs/{log.log_id}/tile/entries/"):
            return body[:-1] + bytes([body[-1] ^ 1])  # the last leaf's last byte
        if request.path == f"/v1/logs/{log.log_id}/proof/consistency":
            doc = json.loads(body)
            doc["hashes"][0] = base64.b64encode(bytes(32)).decode()
            return json.dumps(doc).encode()
        return None

    async with front(log.ledger.api_url, alter) as url:
        code, out = await monitor(log.ledger, state, "--endpoint", url)
    assert code == 1, out
    kinds = sorted(f.split()[1] for f in findings(out))
    assert kinds == ["consistency_proof_invalid", "entries_mismatch"], out
    assert kept(state, log.origin) == 300
    code, out = await monitor(log.ledger, state)  # the real API: the same leaves verify
    assert (code, findings(out)) == (0, []), out
    assert kept(state, log.origin) == 320


async def test_a_hash_tile_that_is_not_its_leaves_is_caught(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "state.json"

    async def bad_tile(request: web.Request, body: bytes) -> bytes | None:
        if request.path == f"/logs/{log.log_id}/tile/0/000":
            return body[:32] + bytes(32) + body[64:]  # leaf 1's hash replaced
        return None

    async with front(log.ledger.api_url, bad_tile) as url:
        code, out = await monitor(log.ledger, state, "--endpoint", url)
    assert code == 1, out
    assert findings(out) == [
        f"FINDING tile_mismatch log {log.origin} at {url}: hash tile 0/0 (leaves 0..255) "
        "differs from the hashes of its leaves: proofs computed from it are wrong"
    ]
    assert kept(state, log.origin) == 0  # nothing of the log is taken as verified


async def test_a_stalled_checkpointer_is_caught(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    await log.grow(25, sign=False)  # appended, never signed
    code, out = await monitor(log.ledger, state, "--stall-after", "0")
    assert (code, findings(out)) == (0, []), out  # first sighting: the signer gets a round
    code, out = await monitor(log.ledger, state, "--stall-after", "0")
    assert code == 1, out
    (line,) = findings(out)
    assert line.startswith(f"FINDING stall log {log.origin} at {log.ledger.api_url}: ")
    assert "stayed at size 300" in line
    assert "25 unsigned leaves" in line
    code, out = await monitor(log.ledger, state)  # the default stall age is not reached
    assert (code, findings(out)) == (0, []), out
    await log.checkpointer.checkpoint(log.log_id, force=True)
    code, out = await monitor(log.ledger, state, "--stall-after", "0")
    assert (code, findings(out)) == (0, []), out
    assert kept(state, log.origin) == 325


async def test_two_endpoints_serving_different_views_are_caught(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    assert (await monitor(log.ledger, state))[0] == 0
    await log.grow(20)
    forked = log.sign(320, bytes(32))

    async def other_view(request: web.Request, body: bytes) -> bytes | None:
        return forked.encode() if request.path == f"/logs/{log.log_id}/checkpoint" else None

    real = log.ledger.api_url
    async with front(real, other_view) as url:
        code, out = await monitor(log.ledger, state, "--endpoint", real, "--endpoint", url)
    assert code == 1, out
    assert [f.split(": ")[0] for f in findings(out)] == [
        f"FINDING split_view log {log.origin} at {url}"
    ]
    assert kept(state, log.origin) == 300

    async def unlisted(request: web.Request, body: bytes) -> bytes | None:
        if request.path != "/v1/logs":
            return None
        doc = json.loads(body)
        doc["logs"] = [entry for entry in doc["logs"] if entry["origin"] != log.origin]
        return json.dumps(doc).encode()

    async with front(real, unlisted) as url:
        code, out = await monitor(log.ledger, state, "--endpoint", real, "--endpoint", url)
    assert code == 1, out
    assert findings(out) == [
        f"FINDING split_view log {log.origin} at {url}: does not list this log, which {real} lists"
    ]
    async with front(real, lambda request, body: asyncio.sleep(0, None)) as url:
        endpoints = f"{real}/, {url}"  # LEDGER_MONITOR_ENDPOINTS: comma-separated
        code, out = await monitor(log.ledger, state, LEDGER_MONITOR_ENDPOINTS=endpoints)
    assert (code, findings(out)) == (0, []), out  # two honest endpoints agree
    assert kept(state, log.origin) == 320


async def test_each_finding_is_alerted_once_to_the_alert_destinations(
    log: Log, tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    secret = tmp_path / "siem.secret"
    secret.write_bytes(SECRET + b"\n")
    os.chmod(secret, 0o600)
    port = free_port()
    destinations = tmp_path / "delivery.toml"
    destinations.write_text(
        f'[destination.siem]\nurl = "https://localhost:{port}/hook"\n'
        f'secret_file = "{secret}"\nca_file = "{pki.server_cert}"\nbackoff_seconds = 0.01\n'
    )
    state = tmp_path / "state.json"
    assert (await monitor(log.ledger, state))[0] == 0
    forked = log.sign(300, bytes(32))

    async def fork(request: web.Request, body: bytes) -> bytes | None:
        return forked.encode() if request.path == f"/logs/{log.log_id}/checkpoint" else None

    receiver = Receiver(pki, port)
    receiver.start()
    try:
        async with front(log.ledger.api_url, fork) as url:
            args = ("--endpoint", url, "--destinations", str(destinations))
            first = await monitor(log.ledger, state, *args)
            second = await monitor(log.ledger, state, *args)
    finally:
        receiver.stop()
    assert first[0] == second[0] == 1
    assert len(findings(second[1])) == 1  # still reported every round ...
    assert receiver.bad_signatures == 0
    assert list(receiver.seen.values()) == [1]  # ... but alerted once
    (body,) = receiver.alerts.values()
    assert body["monitor_finding"]["kind"] == "fork"  # type: ignore[index]
    assert body["monitor_finding"]["log"] == log.origin  # type: ignore[index]
    assert SECRET.decode() not in first[1] + second[1]


async def test_continuous_mode_follows_the_log_until_a_signal(log: Log, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    proc = await asyncio.create_subprocess_exec(
        LEDGER, "monitor", "--state", str(state), "--interval", "0.1",
        env=log.ledger.env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []

    async def until(text: str) -> None:
        while not any(text in line for line in seen):
            line = (await proc.stdout.readline()).decode()  # type: ignore[union-attr]
            assert line, "\n".join(seen)  # the monitor ended early
            seen.append(line)

    try:
        await until("ROUND OK")
        await log.grow(10)
        await until(f"OK {log.origin}: verified 300 -> 310")
    finally:
        proc.terminate()
        rest = (await proc.stdout.read()).decode()
        await proc.wait()
    assert proc.returncode == 0, "".join(seen) + rest
    assert not [line for line in seen if line.startswith("FINDING")]
    assert kept(state, log.origin) == 310
