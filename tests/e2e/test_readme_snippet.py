"""The README's producer snippet runs as written against the real broker."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

import producers.emitter
from ledgerctl.settings import KafkaRole
from producers.codec import Codec
from producers.emitter import EmitterConfig
from producers.events import PhiAccessEvent
from producers.kafka_security import KafkaSecurity
from tests.support import ROOT, Stack

pytestmark = pytest.mark.e2e


async def test_readme_producer_snippet_emits_a_decodable_event(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_text()
    (snippet,) = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    topic = f"t{stack.run_id}-readme-{uuid.uuid4().hex[:6]}"
    from ledgerctl.infra import ensure_topics

    await ensure_topics(stack.kafka_bootstrap, (topic,), 1, stack.kafka(KafkaRole.ADMIN))

    # Run the snippet unchanged, except that its own import of EmitterConfig gets one
    # that sends to this session's topic (so the demo's topic is left alone) on this
    # session's broker, with the same principal's settings the snippet names (the
    # snippet's paths are relative to a checkout's root).
    def session_config(**kwargs: object) -> EmitterConfig:
        assert isinstance(kwargs["kafka_security"], KafkaSecurity)
        assert kwargs["kafka_security"].sasl_username == "ledger-simulator"
        assert kwargs["producer_key_file"] == "orthanc-01.key"
        kwargs.update(
            access_topic=topic,
            bootstrap_servers=stack.kafka_bootstrap,
            kafka_security=stack.kafka(KafkaRole.SIMULATOR),
        )
        return EmitterConfig(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(producers.emitter, "EmitterConfig", session_config)
    # The key file the snippet names, in the directory it runs in.
    shutil.copyfile(stack.producer_key("orthanc-01"), tmp_path / "orthanc-01.key")
    os.chmod(tmp_path / "orthanc-01.key", 0o600)
    monkeypatch.chdir(tmp_path)
    body = "async def _readme():\n" + "".join(f"    {line}\n" for line in snippet.splitlines())
    namespace: dict[str, object] = {}
    exec(compile(body, "README.md", "exec"), namespace)
    await asyncio.wait_for(namespace["_readme"](), timeout=30)  # type: ignore[operator]

    consumer = AIOKafkaConsumer(
        topic, **stack.kafka_client(KafkaRole.CONSUMER), auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        message = await asyncio.wait_for(consumer.getone(), timeout=30)
    finally:
        await consumer.stop()
    event = Codec().decode(message.value)
    assert isinstance(event, PhiAccessEvent)
    assert event.patient.id == "MRN1234567"
    assert event.producer_id == "orthanc-01"
    assert event.producer_seq == 0
    assert message.key == b"stmarys-boston|MRN1234567"
    assert [name for name, _ in message.headers] == ["philedger-auth"], "signed"
