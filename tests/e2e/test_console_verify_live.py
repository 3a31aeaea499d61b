"""verify.js in Chromium against proofs from the running `ledger serve`.

Events go through the real pipeline (emitter, Kafka, consumer, signed checkpoints); the
page's proofs come from the real API's `GET /v1/events/{id}/proof`. A page cannot send a
bearer token, so the page's server forwards the request with an investigator's token
(the console itself forwards with the session: docs/console.md). The same proof, altered
on the way, must make the page say "not verified".
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web

from integrations.simulator import Simulator
from ledger.log.keys import parse_verifiers
from tests.e2e.conftest import E2E_SEED, Pipeline, wait_for_events
from tests.verify_browser import chromium, click_verify, serving, verify_app

pytestmark = pytest.mark.e2e


def _flip_root(proof: str) -> str:
    head, _, note = proof.partition("\n\n")
    origin, size, root, rest = note.split("\n", 3)
    raw = bytearray(base64.b64decode(root))
    raw[0] ^= 0x80
    return f"{head}\n\n{origin}\n{size}\n{base64.b64encode(bytes(raw)).decode()}\n{rest}"


def _flip_entry(proof: str) -> str:
    lines = proof.split("\n")
    leaf = bytearray(base64.b64decode(lines[1].removeprefix("extra ")))
    leaf[-1] ^= 0x01
    lines[1] = "extra " + base64.b64encode(bytes(leaf)).decode()
    return "\n".join(lines)


@pytest.fixture(scope="module")
async def events(pipeline: Pipeline) -> list[str]:
    stream = list(Simulator(seed=E2E_SEED + 1_600, patients=4).events(24))
    async with pipeline.emitter("e2e-console-verify") as emitter:
        for event in stream:
            await emitter.emit(event)
        await emitter.flush()
    ids = [str(e.event_id) for e in stream]
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        await wait_for_events(http, pipeline, ids)
    return ids


async def test_the_page_verifies_a_live_proof_and_refuses_it_altered(
    pipeline: Pipeline, events: list[str]
) -> None:
    alter: dict[str, Callable[[str], str]] = {}
    fetched: list[int] = []

    async with aiohttp.ClientSession(headers=pipeline.stack.auth("investigator")) as api:

        async def proof(request: web.Request) -> web.Response:
            event = request.match_info["event_id"]
            async with api.get(f"{pipeline.api_url}/v1/events/{event}/proof") as resp:
                fetched.append(resp.status)
                text = await resp.text()
                if resp.status != 200:
                    return web.Response(text=text, status=resp.status, content_type="text/plain")
            return web.Response(text=alter.get(event, str)(text), content_type="text/plain")

        verifiers = parse_verifiers([pipeline.stack.verifier_key])
        app = verify_app(verifiers=verifiers, proof=proof, event_ids=events[:3])
        async with serving(app) as base, chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{base}/page")
            results = [await click_verify(page, e) for e in events[:3]]
            alter[events[0]] = _flip_root
            alter[events[1]] = _flip_entry
            altered = [await click_verify(page, e) for e in events[:2]]

    key = f"{verifiers[0].name}+{verifiers[0].key_id.hex()}"
    for text, cls, ms in results:
        assert cls == "ok", text
        assert text.startswith("verified: entry ")
        topics = (pipeline.access_topic, pipeline.relay_topic)
        assert any(f" of test.ledger.local/{t}/" in text for t in topics), text
        assert text.endswith(f", signed by {key}")
        assert ms >= 0
    assert altered == [
        (
            f"not verified: the checkpoint's signature by {key} does not verify",
            "failed",
            altered[0][2],
        ),
        (
            "not verified: the entry and its inclusion path do not lead to the checkpoint's "
            "signed root",
            "failed",
            altered[1][2],
        ),
    ]
    assert fetched == [200] * 5
