"""`ledger serve --workers 2`: two API processes on one port, with a consumer, on a ledger
of their own. Both serve and record their reads under producer ids of their own (each
signed with its own key), a page token sealed by one opens on the other, each has its
ops listener (LEDGER_OPS_PORT + k), the console is not served, and SIGTERM stops the set
with status 0. A second worker without a key of its own refuses to start."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import own_ledger
from tests.e2e.conftest import LEDGER, free_port
from tests.support import ROOT, Stack

pytestmark = pytest.mark.e2e

PATIENT = "WORKERS-PAT-77"


@dataclass
class Served:
    url: str
    ops: int
    token: str
    api: subprocess.Popen[bytes]
    log: Path


def _sibling(key_file: str, suffix: str) -> Path:
    p = Path(key_file)
    return p.with_name(f"{p.stem}{suffix}{p.suffix}")


@pytest.fixture(scope="module")
def served(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    where = tmp_path_factory.mktemp("workers")
    with own_ledger(stack, f"{stack.database}_workers") as own:
        access, relay = own.topics(f"wk{uuid.uuid4().hex[:6]}")
        port, ops = free_port(), free_port()
        while ops + 1 == port:
            ops = free_port()
        env = own.env(
            LEDGER_ACCESS_TOPIC=access,
            LEDGER_RELAY_TOPIC=relay,
            LEDGER_REGISTRY_TOPIC=f"{access}-registry",
            LEDGER_CONSUMER_GROUP=f"t{own.run_id}-wk-{uuid.uuid4().hex[:8]}",
            LEDGER_SPOOL_DIR=str(where / "spool"),
        )
        subprocess.run([LEDGER, "topics"], env=env, check=True, cwd=ROOT, capture_output=True)
        key = Path(own.producer_key("ledger-api-wk"))
        mine = where / "api.key"
        shutil.copy(key, mine)
        shutil.copy(own.producer_key("ledger-api-wk-w1"), _sibling(str(mine), "-w1"))
        with contextlib.ExitStack() as files:
            consumer = subprocess.Popen(
                [LEDGER, "consume"], env=env, cwd=ROOT, stderr=subprocess.STDOUT,
                stdout=files.enter_context((where / "consumer.log").open("wb")),
            )  # fmt: skip
            api = subprocess.Popen(
                [LEDGER, "serve", "--port", str(port), "--workers", "2"],
                env={**env, "LEDGER_PRODUCER_KEY_FILE": str(mine), "LEDGER_OPS_PORT": str(ops)},
                cwd=ROOT, stderr=subprocess.STDOUT,
                stdout=files.enter_context((where / "api.log").open("wb")),
            )  # fmt: skip
            try:
                url = f"http://127.0.0.1:{port}"
                subprocess.run(
                    [LEDGER, "wait", "api", "--timeout", "60"], env={**env, "LEDGER_API_URL": url},
                    cwd=ROOT, check=True, capture_output=True,
                )  # fmt: skip
                yield Served(url, ops, own.tokens["admin"], api, where / "api.log")
            finally:
                for proc in (api, consumer):
                    if proc.poll() is None:
                        proc.terminate()
                        proc.wait(timeout=30)


async def _get(url: str, token: str | None = None) -> tuple[int, dict[str, object] | str]:
    """One request on a connection of its own (so the kernel may pick either worker)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.get(url) as resp,
    ):
        body = await resp.json() if resp.content_type == "application/json" else await resp.text()
        return resp.status, body


async def _reads(served: Served, want: int) -> list[dict[str, object]]:
    """The patient's history once ``want`` recorded reads are in it."""
    history = f"{served.url}/v1/patients/{PATIENT}/accesses?limit=1000"
    deadline = time.monotonic() + 60
    while True:
        status, body = await _get(history, served.token)
        assert status == 200, body
        assert isinstance(body, dict)
        accesses = body["accesses"]
        assert isinstance(accesses, list)
        if len(accesses) >= want or time.monotonic() > deadline:
            return accesses
        await asyncio.sleep(0.5)


def test_two_workers_serve_record_and_share_page_tokens(served: Served) -> None:
    async def scenario() -> None:
        # Fresh connections: the kernel spreads them over the workers listening. `ledger
        # wait api` returns once one worker listens, so ask until both have answered.
        producers: set[object] = set()
        sent, deadline = 0, time.monotonic() + 60
        while len(producers) < 2 and time.monotonic() < deadline:
            for _ in range(12):
                status, _ = await _get(f"{served.url}/v1/patients/{PATIENT}/accesses", served.token)
                assert status == 200
            sent += 12
            accesses = await _reads(served, sent)
            assert len(accesses) >= sent
            for a in accesses:
                status, detail = await _get(f"{served.url}/v1/events/{a['event_id']}", served.token)
                assert status == 200, detail
                assert isinstance(detail, dict)
                event = detail["event"]
                assert isinstance(event, dict)
                producers.add(event["producer_id"])
        # Each worker stamps (and signs) as a producer of its own.
        assert producers == {"ledger-api-wk", "ledger-api-wk-w1"}, producers

        # Page tokens sealed by one worker open on whichever worker gets the next page.
        history = f"{served.url}/v1/patients/{PATIENT}/accesses?limit=1"
        seen: list[object] = []
        status, page = await _get(history, served.token)
        for _ in range(10):
            assert status == 200, page
            assert isinstance(page, dict)
            listed = page["accesses"]
            assert isinstance(listed, list)
            seen.extend(a["event_id"] for a in listed)
            status, page = await _get(f"{history}&cursor={page['next_cursor']}", served.token)
        assert len(set(seen)) == len(seen) == 10

        for k in (0, 1):  # each worker's ops listener
            status, text = await _get(f"http://127.0.0.1:{served.ops + k}/metrics")
            assert status == 200
            assert "ledger_build_info" in str(text)
        status, _ = await _get(f"{served.url}/console/", served.token)
        assert status == 404  # sign-in sessions live in one process: no console here

    asyncio.run(scenario())
    served.api.send_signal(signal.SIGTERM)
    assert served.api.wait(timeout=30) == 0, served.log.read_text()[-2000:]


def test_a_worker_without_a_key_of_its_own_refuses_to_start(stack: Stack, tmp_path: Path) -> None:
    key = tmp_path / "lonely.key"
    shutil.copy(stack.producer_key("ledger-api-lonely"), key)
    env = stack.env(LEDGER_PRODUCER_KEY_FILE=str(key), LEDGER_SPOOL_DIR=str(tmp_path / "spool"))
    result = subprocess.run(
        [LEDGER, "serve", "--port", str(free_port()), "--workers", "2"],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "lonely-w1.key is missing" in result.stdout + result.stderr
