"""The running ledger's checkpoints, tiles and proofs, checked by independent code.

Checkpoints and proofs come from the real API over HTTP; Go's reference
implementation (golang.org/x/mod/sumdb/note and tlog) must accept them, and reject
them once altered. Roots are also recomputed from the C2SP entry bundles alone,
as any tiles client would.
"""

from __future__ import annotations

import asyncio
import base64
import struct
import time

import aiohttp
import pytest

from integrations.simulator import Simulator
from ledger.log import merkle, tiles
from ledger.log.checkpoint import open_checkpoint, parse_tlog_proof, verify_tlog_proof
from ledger.log.keys import parse_verifiers
from ledger.log.leaf import decode_leaf
from tests.e2e.conftest import E2E_SEED, Pipeline, get_json, wait_for_events
from tests.interop.go_verifier import go_verify
from tests.support import live_origin

pytestmark = pytest.mark.e2e


async def fetch(http: aiohttp.ClientSession, url: str) -> tuple[int, bytes]:
    async with http.get(url) as resp:
        return resp.status, await resp.read()


async def all_signed(
    http: aiohttp.ClientSession, pipeline: Pipeline, timeout: float = 30
) -> list[dict]:  # type: ignore[type-arg]
    """Wait until every log's checkpoint covers all its leaves; return the logs."""
    deadline = time.monotonic() + timeout
    while True:
        _, body = await get_json(http, f"{pipeline.api_url}/v1/logs")
        logs = [
            log
            for log in body["logs"]
            if log["topic"] in (pipeline.access_topic, pipeline.relay_topic)
        ]
        if logs and all(log["unsigned_leaves"] == 0 for log in logs):
            return logs
        if time.monotonic() > deadline:
            pytest.fail(f"checkpoints lag: {logs}")
        await asyncio.sleep(0.2)


def entries_of(bundle: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(bundle):
        (n,) = struct.unpack_from(">H", bundle, pos)
        out.append(bundle[pos + 2 : pos + 2 + n])
        pos += 2 + n
    assert pos == len(bundle)
    return out


async def leaves_via_tiles(http: aiohttp.ClientSession, base: str, size: int) -> list[bytes]:
    leaves: list[bytes] = []
    for index in range((size + 255) // 256):
        width = min(256, size - index * 256)
        status, body = await fetch(http, f"{base}/{tiles.entries_path(index, width)}")
        assert status == 200, (index, width)
        leaves += entries_of(body)
    return leaves


@pytest.fixture(scope="module")
async def signed_stream(pipeline: Pipeline) -> list[str]:
    """Emit 700 events in two bursts, each fully ingested and signed before the next,
    so every busy log has at least two checkpoints to prove consistent."""
    stream = list(Simulator(seed=E2E_SEED + 100, patients=12).events(700))
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        for burst in (stream[:350], stream[350:]):
            async with pipeline.emitter("e2e-verifiable") as emitter:
                for event in burst:
                    await emitter.emit(event)
                await emitter.flush()
            await wait_for_events(http, pipeline, [str(e.event_id) for e in burst])
            await all_signed(http, pipeline)
    return [str(e.event_id) for e in stream]


async def test_checkpoints_are_signed_and_roots_match_the_entry_bundles(
    pipeline: Pipeline, http: aiohttp.ClientSession, signed_stream: list[str]
) -> None:
    verifiers = parse_verifiers([pipeline.stack.verifier_key])
    logs = await all_signed(http, pipeline)
    assert sum(log["size"] for log in logs) >= len(signed_stream)
    for log in logs:
        base = f"{pipeline.api_url}/logs/{log['id']}"
        status, note = await fetch(http, f"{base}/checkpoint")
        assert status == 200
        cp = open_checkpoint(note.decode(), verifiers)
        base_origin = f"test.ledger.local/{log['topic']}/{log['partition']}"
        assert cp.origin == log["origin"] == live_origin(base_origin)
        leaves = await leaves_via_tiles(http, base, cp.size)
        assert merkle.root_from_leaves(leaves) == cp.root_hash
        # Every leaf commits to its Kafka coordinates.
        assert [decode_leaf(leaf).offset for leaf in leaves] == sorted(
            decode_leaf(leaf).offset for leaf in leaves
        )
        # Full hash tiles hold exactly the leaf hashes.
        if cp.size >= 256:
            status, tile = await fetch(http, f"{base}/{tiles.tile_path(0, 0)}")
            assert status == 200
            assert tile == b"".join(merkle.leaf_hash(leaf) for leaf in leaves[:256])


async def test_go_reference_implementation_accepts_live_proofs_and_rejects_altered_ones(
    pipeline: Pipeline, http: aiohttp.ClientSession, signed_stream: list[str]
) -> None:
    logs = await all_signed(http, pipeline)
    log = max(logs, key=lambda entry: entry["size"])
    base = f"{pipeline.api_url}/logs/{log['id']}"
    api = f"{pipeline.api_url}/v1/logs/{log['id']}"
    _, history = await get_json(http, f"{api}/checkpoints")
    notes = [c["note"] for c in history["checkpoints"]]
    sizes = [c["size"] for c in history["checkpoints"]]
    assert sizes == sorted(sizes)
    assert len(notes) >= 2
    size = sizes[-1]
    leaves = await leaves_via_tiles(http, base, size)

    inclusion = []
    for index in sorted({0, 1, size // 3, size // 2, size - 1}):
        _, proof = await get_json(
            http, f"{api}/proof/inclusion", index=str(index), tree_size=str(size)
        )
        leaf_b64 = base64.b64encode(leaves[index]).decode()
        inclusion.append(
            {"note_index": len(notes) - 1, "leaf_b64": leaf_b64, "index": index,
             "proof": proof["hashes"]}
        )  # fmt: skip
    consistency = []
    for i, first in enumerate(sizes[:-1]):
        _, proof = await get_json(
            http, f"{api}/proof/consistency", first=str(first), second=str(size)
        )
        consistency.append({"old": i, "new": len(notes) - 1, "proof": proof["hashes"]})
    async with http.get(f"{pipeline.api_url}/v1/events/{signed_stream[0]}/proof") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Disposition"].endswith('.tlog-proof"')
        tlog_proof = await resp.text()
    entry = parse_tlog_proof(tlog_proof).extra
    assert entry is not None
    payload = {
        "verifier_keys": [pipeline.stack.verifier_key],
        "checkpoints": [{"note": n} for n in notes],
        "inclusion": inclusion,
        "consistency": consistency,
        "tlog_proofs": [{"text": tlog_proof, "leaf_b64": base64.b64encode(entry).decode()}],
    }
    result = go_verify(payload)
    assert [c["ok"] for c in result["checkpoints"]] == [True] * len(notes)
    assert [c["ok"] for c in result["inclusion"]] == [True] * len(inclusion)
    assert [c["ok"] for c in result["consistency"]] == [True] * len(consistency)
    assert [c["ok"] for c in result["tlog_proofs"]] == [True]
    # Our own offline check agrees, from the file alone.
    verify_tlog_proof(tlog_proof, entry, parse_verifiers([pipeline.stack.verifier_key]))

    # Altered: a root byte in the checkpoint, a bit in a proof hash, the wrong leaf.
    forged = notes[-1].replace(notes[-1].split("\n")[1], str(size + 1), 1)
    flipped = inclusion[0] | {
        "proof": [_flip(inclusion[0]["proof"][0]), *inclusion[0]["proof"][1:]]
    }
    index = parse_tlog_proof(tlog_proof).index
    wrong_index = tlog_proof.replace(f"index {index}\n", f"index {index + 1}\n", 1)
    wrong_leaf = inclusion[0] | {"leaf_b64": base64.b64encode(leaves[0] + b"x").decode()}
    bad_consistency = [c | {"proof": [_flip(c["proof"][0]), *c["proof"][1:]]} for c in consistency]
    altered = go_verify(
        payload
        | {
            "checkpoints": [*payload["checkpoints"], {"note": forged}],
            "inclusion": [flipped, wrong_leaf],
            "consistency": bad_consistency,
            "tlog_proofs": [{"text": wrong_index, "leaf_b64": base64.b64encode(entry).decode()}],
        }
    )
    assert altered["checkpoints"][-1]["ok"] is False
    assert [c["ok"] for c in altered["inclusion"]] == [False, False]
    assert [c["ok"] for c in altered["consistency"]] == [False] * len(consistency)
    assert [c["ok"] for c in altered["tlog_proofs"]] == [False]


def _flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[0] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/logs/1/tile/0/abc", 400),
        ("/logs/1/tile/0/x000/001", 400),
        ("/logs/1/tile/0/001.p/0", 400),
        ("/logs/1/tile/0/001.p/300", 400),
        ("/logs/1/tile/99/000", 400),
        ("/logs/1/tile/0/x999/999", 404),
        ("/logs/999999/checkpoint", 404),
        ("/logs/-1/checkpoint", 400),
        ("/v1/logs/1/proof/inclusion?index=5&tree_size=3", 400),
        ("/v1/logs/1/proof/inclusion?index=0&tree_size=99999999999", 400),
        ("/v1/logs/1/proof/inclusion?index=abc&tree_size=1", 400),
        ("/v1/logs/1/proof/inclusion?index=0", 400),
        ("/v1/logs/1/proof/consistency?first=0&second=1", 400),
        ("/v1/logs/1/proof/consistency?first=3&second=2", 400),
        ("/v1/logs/1/proof/consistency?first=01&second=2", 400),
        ("/v1/events/not-a-uuid/proof", 400),
        ("/v1/events/00000000-0000-0000-0000-000000000000/proof", 404),
    ],
)
async def test_hostile_proof_and_tile_requests_get_clear_errors(
    pipeline: Pipeline,
    http: aiohttp.ClientSession,
    signed_stream: list[str],
    path: str,
    status: int,
) -> None:
    async with http.get(pipeline.api_url + path) as resp:
        assert resp.status == status, await resp.text()
        body = await resp.json()
        assert body["error"]["message"]
