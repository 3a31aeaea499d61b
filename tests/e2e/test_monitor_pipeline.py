"""`ledger monitor` against the real pipeline: Kafka, the consumer (which signs), the API.

A healthy ledger that grows between rounds has no finding and the remembered sizes only
grow; the monitor's own reads of entry bundles are recorded like any read, so they show
up in the access history of the patients whose entries it read (as the auditor's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from integrations.simulator import Simulator
from producers.events import Patient, PhiAccessEvent
from tests.e2e.conftest import E2E_SEED, LEDGER, Pipeline, get_json, wait_for_events
from tests.support import ROOT

pytestmark = pytest.mark.e2e


async def _emit(pipeline: Pipeline, patient: str, n: int, seed: int) -> None:
    template = [
        e for e in Simulator(seed=seed, patients=3).events(40, relay_every=0)
        if isinstance(e, PhiAccessEvent)
    ][:n]  # fmt: skip
    events = [
        dataclasses.replace(e, event_id=uuid.uuid4(), patient=Patient(id=patient)) for e in template
    ]
    async with pipeline.emitter(f"e2e-monitor-{seed}") as emitter:
        for event in events:
            await emitter.emit(event)
        await emitter.flush()
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        await wait_for_events(http, pipeline, [str(e.event_id) for e in events], timeout=120)


async def _monitor(pipeline: Pipeline, state: Path) -> tuple[int, str]:
    env = {**pipeline.env, "LEDGER_API_TOKEN": pipeline.stack.tokens["auditor"]}
    proc = await asyncio.create_subprocess_exec(
        LEDGER, "monitor", "--once", "--state", str(state), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


def _sizes(state: Path) -> dict[str, int]:
    return {o: int(e["size"]) for o, e in json.loads(state.read_text())["logs"].items()}


async def test_the_monitor_follows_a_live_ledger_and_its_reads_are_recorded(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    patient = f"MRN-MON-{secrets.token_hex(3)}"
    await _emit(pipeline, patient, 10, E2E_SEED + 8100)
    state = tmp_path / "state.json"
    code, out = await _monitor(pipeline, state)
    assert code == 0, out
    assert "FINDING" not in out
    first = _sizes(state)
    assert sum(first.values()) >= 10
    await _emit(pipeline, patient, 10, E2E_SEED + 8200)
    code, out = await _monitor(pipeline, state)
    assert code == 0, out
    assert "FINDING" not in out
    second = _sizes(state)
    assert all(second[origin] >= size for origin, size in first.items())
    assert sum(second.values()) >= sum(first.values()) + 10
    # The monitor read the entries of this patient: the API recorded it as a disclosure.
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        deadline = time.monotonic() + 120
        while True:
            status, body = await get_json(
                http, f"{pipeline.api_url}/v1/patients/{patient}/accesses", limit="1000"
            )
            assert status == 200, body
            readers = {e["user"]["id"] for e in body["accesses"] if e["attribution"] == "disclosed"}
            if "test-auditor" in readers:
                break
            assert time.monotonic() < deadline, f"no recorded read by the monitor: {readers}"
            await asyncio.sleep(0.5)
