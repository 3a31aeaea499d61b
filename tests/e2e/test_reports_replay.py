"""A report reproduced from a `ledger replay` of the ledger, as of the checkpoints it printed.

The session's pipeline (real Kafka, consumer and `ledger serve`) answers a breach
investigation as of its latest checkpoints; `ledger replay` rebuilds the ledger from the
Kafka topics into an empty database (which signs each log only at its full size); the
same investigation as of the printed checkpoints, given with their signed notes, has the
same digest there.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import subprocess
from datetime import timedelta

import aiohttp
import pytest

from integrations.simulator import Simulator
from ledger.audit.reports import InvestigationScope, digest, digest_of, refs_from_report
from ledger.log.note import parse_verifier_key
from ledger.pg.reports import PostgresReports
from producers.events import AuditEvent, Facility
from tests.conftest import drop_database
from tests.e2e.conftest import E2E_SEED, LEDGER, Pipeline, wait_for_events
from tests.support import ROOT, with_database

pytestmark = pytest.mark.e2e


async def test_a_replayed_ledger_reproduces_an_investigation_as_of_its_checkpoints(
    pipeline: Pipeline, http: aiohttp.ClientSession
) -> None:
    facility = f"e2e-asof-{secrets.token_hex(3)}"
    stream: list[AuditEvent] = [
        dataclasses.replace(e, facility=Facility(id=facility, name="As-of site"))
        for e in Simulator(seed=E2E_SEED + 700, patients=7).events(120, relay_every=15)
    ]
    async with pipeline.emitter("e2e-asof") as emitter:
        for event in stream:
            await emitter.emit(event)
        await emitter.flush()
    await wait_for_events(http, pipeline, [str(e.event_id) for e in stream])
    since = min(e.event_time for e in stream) - timedelta(seconds=1)
    until = max(e.event_time for e in stream) + timedelta(seconds=1)
    scope = {"facility": facility, "since": since.isoformat(), "until": until.isoformat()}
    async with http.post(f"{pipeline.api_url}/v1/investigations", json=scope) as resp:
        assert resp.status == 200, await resp.text()
        printed = await resp.json()
        header = resp.headers["Report-Digest"]
    assert printed["digest"] == header == digest_of(printed)
    assert len(printed["timeline"]) == len(stream)

    database = f"ledger_replay_asof_{secrets.token_hex(4)}"
    try:
        replayed = await asyncio.to_thread(
            subprocess.run,
            [LEDGER, "replay", "--database", database, "--timeout", "120", "--reason", "e2e"],
            env=pipeline.env, cwd=ROOT, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert replayed.returncode == 0, replayed.stdout + replayed.stderr
        async with PostgresReports(
            dsn=with_database(pipeline.stack.reader_url, database),
            ledger_name=pipeline.env["LEDGER_NAME"],
            verifiers=[parse_verifier_key(pipeline.stack.verifier_key)],
        ) as copy:
            again = await copy.sealed_investigation(
                InvestigationScope(start=since, end=until, facility=facility),
                as_of=refs_from_report(printed),
            )
        assert digest(again) == printed["digest"]
        assert [str(e.event_id) for e in again.report.timeline] == [
            t["event_id"] for t in printed["timeline"]
        ]
    finally:
        await drop_database(pipeline.stack.owner_url, database)
