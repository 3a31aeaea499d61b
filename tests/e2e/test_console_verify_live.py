"""verify.js in Chromium against proofs from the running `ledger serve`.

Events go through the real pipeline (emitter, Kafka, consumer, signed checkpoints); the
page's proofs come from the real API's `GET /v1/events/{id}/proof`. A page cannot send a
bearer token, so the page's server forwards the request with an investigator's token
(the console itself forwards with the session: docs/console.md). The same proof, altered
on the way, must make the page say "not verified". An auditor, who reads no event by id,
verifies by position through the PHI-free proof routes and the leaves.
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
from tests.verify_browser import (
    ProofHandler,
    chromium,
    click_position,
    click_verify,
    serving,
    verify_app,
)

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


def forward(api: aiohttp.ClientSession, base: str) -> ProofHandler:
    """Forward a GET (path and query) to the API with ``api``'s token."""

    async def handler(request: web.Request) -> web.Response:
        async with api.get(f"{base}{request.path_qs}") as resp:
            body = await resp.read()
            kind = resp.content_type
            return web.Response(body=body, status=resp.status, content_type=kind)

    return handler


async def test_an_auditor_verifies_by_position(pipeline: Pipeline, events: list[str]) -> None:
    async with (
        aiohttp.ClientSession(headers=pipeline.stack.auth("admin")) as admin,
        admin.get(f"{pipeline.api_url}/v1/events/{events[5]}") as resp,
    ):
        ledger = (await resp.json())["ledger"]
    log, index = ledger["log_id"], ledger["leaf_index"]
    async with aiohttp.ClientSession(headers=pipeline.stack.auth("auditor")) as api:
        to_api = forward(api, pipeline.api_url)
        routes = [
            (path, to_api)
            for path in (
                "/logs/{log}/checkpoint",
                "/v1/logs/{log}/proof/inclusion",
                "/v1/logs/{log}/leaves",
            )
        ]
        verifiers = parse_verifiers([pipeline.stack.verifier_key])
        app = verify_app(verifiers=verifiers, proof=to_api, routes=routes)
        async with serving(app) as base, chromium() as browser:
            page = await browser.new_page()
            await page.goto(f"{base}/page?pos={log}:{index}&id={events[5]}")
            by_position = await click_position(page, log, index)
            by_event = await click_verify(page, events[5])
    key = f"{verifiers[0].name}+{verifiers[0].key_id.hex()}"
    text, cls, _ = by_position
    assert cls == "ok", text
    assert text.startswith(f"verified: entry {index} of {ledger['origin']}, checkpoint size ")
    assert text.endswith(f", signed by {key}")
    # The auditor may not read the event's proof by id (it carries the entry: PHI by key).
    assert by_event[:2] == (
        "not verified: the ledger answered 403: the auditor role may not use this endpoint",
        "failed",
    )
