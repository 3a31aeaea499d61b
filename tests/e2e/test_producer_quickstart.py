"""The integrator's quickstart (docs/producer.md) and the ``producers`` docstring example run
as written against the real broker, consumer and API, and the event is found again.

Each snippet runs unchanged, except that ``EmitterConfig`` (imported from ``producers``)
is one that checks the snippet's own settings and then points them at this session's
broker, topics, principal, registered producer key and a scratch spool directory.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

import producers
from ledgerctl.settings import KafkaRole
from producers import EmitterConfig, KafkaSecurity, PhiAccessEvent
from tests.e2e.conftest import LEDGER, Pipeline, get_json, wait_for_events
from tests.support import ROOT

pytestmark = pytest.mark.e2e

GUIDE = ROOT / "docs" / "producer.md"


def quickstart_snippet() -> str:
    snippets: list[str] = re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)
    (snippet,) = snippets
    return snippet


def docstring_example() -> str:
    """The indented block after the first ``::`` of the ``producers`` docstring."""
    doc = producers.__doc__ or ""
    block = doc.split("::\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def session_config(
    pipeline: Pipeline, spool: Path, *, producer_id: str
) -> Callable[..., EmitterConfig]:
    """An ``EmitterConfig`` stand-in: the snippet's settings, aimed at this session."""

    def make(**kwargs: object) -> EmitterConfig:
        assert kwargs["producer_id"] == producer_id
        assert isinstance(kwargs["bootstrap_servers"], str)
        assert isinstance(kwargs["producer_key_file"], str)
        assert isinstance(kwargs["spool_dir"], str)
        security = kwargs.get("kafka_security")
        assert security is None or isinstance(security, KafkaSecurity)
        kwargs.update(
            bootstrap_servers=pipeline.stack.kafka_bootstrap,
            kafka_security=pipeline.stack.kafka(KafkaRole.SIMULATOR),
            producer_key_file=pipeline.stack.producer_key(producer_id),
            spool_dir=str(spool),
            access_topic=pipeline.access_topic,
            relay_topic=pipeline.relay_topic,
        )
        return EmitterConfig(**kwargs)  # type: ignore[arg-type]

    return make


async def test_quickstart_emits_an_event_the_api_and_the_cli_find(
    pipeline: Pipeline,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(
        producers, "EmitterConfig", session_config(pipeline, tmp_path, producer_id="pacs-01")
    )
    namespace: dict[str, object] = {}
    code = compile(quickstart_snippet(), str(GUIDE), "exec")
    await asyncio.to_thread(exec, code, namespace)
    event = namespace["event"]
    assert isinstance(event, PhiAccessEvent)

    await wait_for_events(http, pipeline, [str(event.event_id)])
    status, body = await get_json(
        http,
        f"{pipeline.api_url}/v1/patients/{event.patient.id}/accesses",
        issuer=event.patient.issuer or "",
    )
    assert status == 200
    (found,) = [a for a in body["accesses"] if a["event_id"] == str(event.event_id)]
    assert found["user"]["id"] == "rad004.kowalski"

    # The guide's command line, as written there.
    (command,) = re.findall(r"^ledger history .*$", GUIDE.read_text(), flags=re.M)
    args = command.split()[1:]
    proc = await asyncio.to_thread(
        subprocess.run,
        [LEDGER, *args],
        env=pipeline.env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "rad004.kowalski" in proc.stdout
    assert event.patient.id in proc.stdout


async def test_the_producers_docstring_example_runs(
    pipeline: Pipeline,
    http: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(
        producers, "EmitterConfig", session_config(pipeline, tmp_path, producer_id="viewer-01")
    )
    example = docstring_example()
    body = "async def _example():\n" + textwrap.indent(example, "    ")
    namespace: dict[str, object] = {}
    exec(compile(body, "producers/__init__.py", "exec"), namespace)
    await asyncio.wait_for(namespace["_example"](), timeout=60)  # type: ignore[operator]

    # The event is in the patient's history once a signed checkpoint covers it.
    deadline = time.monotonic() + 60
    while True:
        status, answer = await get_json(
            http, f"{pipeline.api_url}/v1/patients/MRN-1/accesses", issuer="stmarys-boston"
        )
        assert status == 200
        mine = [a for a in answer["accesses"] if a["user"]["id"] == "dr.smith"]
        if mine:
            break
        assert time.monotonic() < deadline, "the docstring's event never reached the ledger"
        await asyncio.sleep(0.3)
    assert mine[0]["kind"] == "phi_access"
