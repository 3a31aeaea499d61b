"""Shared e2e fixtures: the real `ledger consume` and `ledger serve` processes.

One consumer and one API run for the whole session, against the session's scratch
database and fresh topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from ledgerctl.settings import KafkaRole
from producers.emitter import Emitter, EmitterConfig
from tests.ports import free_port
from tests.support import ROOT, Stack

LEDGER = str(Path(sys.executable).with_name("ledger"))
#: Seeds here are far from the small seeds of the unit and integration tests, because
#: event ids are unique across the whole ledger (a reused id is a duplicate or conflict).
E2E_SEED = 2_026_000


def install_or_skip(script: str, what: str, present: Callable[[], bool]) -> None:
    """Install Debian packages with ``deploy/local/<script> install`` unless ``present()``;
    skip the test when apt cannot (no network, not Debian)."""
    if present():
        return
    proc = subprocess.run(
        ["bash", str(ROOT / "deploy" / "local" / script), "install"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    if proc.returncode != 0 or not present():
        pytest.skip(
            f"{what} could not be installed with apt here: "
            + (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        )


@dataclass
class Pipeline:
    stack: Stack
    env: dict[str, str]
    access_topic: str
    relay_topic: str
    api_url: str
    logs: Path

    def emitter(self, producer_id: str) -> Emitter:
        return Emitter(
            EmitterConfig(
                bootstrap_servers=self.stack.kafka_bootstrap,
                producer_id=producer_id,
                access_topic=self.access_topic,
                relay_topic=self.relay_topic,
                producer_key_file=self.stack.producer_key(producer_id),
                kafka_security=self.stack.kafka(KafkaRole.SIMULATOR),
            )
        )


@pytest.fixture(scope="session")
def pipeline_stack(stack: Stack) -> Iterator[Stack]:
    """A database of the pipeline's own: its consumer signs every log of the database it
    writes, so it must not share one with tests that append and sign logs themselves."""
    from tests.conftest import own_ledger

    with own_ledger(stack, f"{stack.database}_e2e") as own:
        yield own


@pytest.fixture(scope="session")
def pipeline(pipeline_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    stack = pipeline_stack
    access_topic, relay_topic = stack.topics(f"e2e{uuid.uuid4().hex[:6]}")
    port = free_port()
    logs = tmp_path_factory.mktemp("e2e-logs")
    env = stack.env(
        LEDGER_ACCESS_TOPIC=access_topic,
        LEDGER_RELAY_TOPIC=relay_topic,
        LEDGER_REGISTRY_TOPIC=f"{access_topic}-registry",
        LEDGER_CONSUMER_GROUP=f"t{stack.run_id}-e2e-{uuid.uuid4().hex[:8]}",
        LEDGER_API_URL=f"http://127.0.0.1:{port}",
    )
    subprocess.run([LEDGER, "topics"], env=env, check=True, cwd=ROOT, capture_output=True)
    # The API's self-audit and its FHIR feed are producers of their own.
    api_env = {
        **env,
        "LEDGER_PRODUCER_KEY_FILE": stack.producer_key("ledger-api-e2e"),
        "LEDGER_FHIR_PRODUCER_KEY_FILE": stack.producer_key("ledger-fhir-e2e"),
        # Alert transitions are inserts: the API gets a role that may make them.
        "LEDGER_TRIAGE_URL": stack.appender_url,
    }
    with contextlib.ExitStack() as files:
        procs = [
            subprocess.Popen(
                command,
                env=api_env if name == "api" else env,
                cwd=ROOT,
                stdout=files.enter_context((logs / f"{name}.log").open("wb")),
                stderr=subprocess.STDOUT,
            )
            for name, command in (
                ("consumer", [LEDGER, "consume"]),
                ("api", [LEDGER, "serve", "--port", str(port)]),
            )
        ]
        yield from _running(
            procs,
            env,
            Pipeline(stack, env, access_topic, relay_topic, f"http://127.0.0.1:{port}", logs),
        )


def _running(
    procs: list[subprocess.Popen[bytes]], env: dict[str, str], pipeline: Pipeline
) -> Iterator[Pipeline]:
    try:
        subprocess.run([LEDGER, "wait", "api", "--timeout", "60"], env=env, check=True, cwd=ROOT)
        yield pipeline
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for p in procs:
            assert p.returncode is not None


@pytest.fixture
async def http(pipeline_stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    """An HTTP session authenticated with the pipeline's admin token."""
    async with aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(10), headers=pipeline_stack.auth("admin")
    ) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str, **params: str) -> tuple[int, dict]:  # type: ignore[type-arg]
    async with http.get(url, params=params) as resp:
        return resp.status, await resp.json()


async def wait_for_events(
    http: aiohttp.ClientSession, pipeline: Pipeline, ids: list[str], timeout: float = 60
) -> None:
    """Wait until every event is in the ledger and covered by a signed checkpoint (its
    proof is served), so access histories, which show signed entries only, include it."""
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while pending:
        async with http.get(f"{pipeline.api_url}/v1/events/{pending[-1]}/proof") as resp:
            status = resp.status
        if status == 200:
            pending.pop()
            continue
        if time.monotonic() > deadline:
            log = (pipeline.logs / "consumer.log").read_text()[-3000:]
            pytest.fail(f"{len(pending)} events never reached the ledger; consumer log:\n{log}")
        await asyncio.sleep(0.3)


@contextlib.contextmanager
def serving_api(pipeline: Pipeline, env: dict[str, str], log_name: str) -> Iterator[str]:
    """A `ledger serve` of its own on the pipeline's ledger with ``env`` added (its own
    producer keys, settings under test); its URL once it answers. Output goes to
    ``log_name`` in the pipeline's log directory."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**pipeline.env, **env, "LEDGER_API_URL": url}
    with (pipeline.logs / log_name).open("wb") as log:
        proc = subprocess.Popen([LEDGER, "serve", "--port", str(port)], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            subprocess.run(
                [LEDGER, "wait", "api", "--timeout", "60"], env=env, check=True, cwd=ROOT
            )
            yield url
        finally:
            proc.terminate()
            proc.wait(timeout=20)
