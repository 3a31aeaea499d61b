"""verify-core.js (the console's in-browser verifier) and witness cosignatures, in
Debian's Chromium with WebCrypto: litewitness's own cosignature (the torchwood vector)
verifies, and a tlog-proof is held to a k-of-n witness policy: enough valid cosignatures
pass, too few, a forged one, one copied from another checkpoint and one by an unknown
key do not (docs/design/witnesses.md)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Page

from integrations.simulator import Simulator
from ledger.http.console.verifierkeys import witness_policy_handler
from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, format_tlog_proof, sign_checkpoint
from ledger.log.cosignature import (
    WitnessKey,
    append_cosignatures,
    parse_cosignature_line,
    sign_cosignature,
    split_note,
)
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.log.note import Signer
from ledger.log.types import RootHash
from producers.codec import Codec
from tests.vectors._load import DATA_DIR, load_json
from tests.verify_browser import chromium, click_verify, serving, verify_app

VECTOR = load_json(DATA_DIR / "torchwood" / "litewitness_cosignature.json")
ORIGIN = "test.ledger.local/phi-access/0"
LOG = Signer.from_seed("test.ledger.local", os.urandom(32))
SEEDS = {name: os.urandom(32) for name in ("w1.example", "w2.example", "w3.example")}
KEYS = {
    name: WitnessKey.from_public_key(name, Signer.from_seed("x", seed).public_key).key
    for name, seed in SEEDS.items()
}


@pytest.fixture(scope="module")
async def page() -> AsyncIterator[Page]:
    async def no_proof(request: web.Request) -> web.Response:
        raise web.HTTPNotFound

    async with serving(verify_app(verifiers=[], proof=no_proof)) as base, chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{base}/page")
        yield page


async def run(page: Page, body: str, arg: Any) -> Any:
    return await page.evaluate(
        f"""async (arg) => {{
            const core = await import('/console/static/verify-core.js');
            {body}
        }}""",
        arg,
    )


def leaves(n: int) -> list[bytes]:
    return [
        encode_leaf(KafkaRecord(topic="phi-access", partition=0, offset=i, timestamp_ms=i,
                                timestamp_type=0, key=None, value=b"v%d" % i))
        for i in range(n)
    ]  # fmt: skip


LEAVES = leaves(5)


def note(size: int = 5) -> str:
    root = RootHash(merkle.root_from_leaves(LEAVES[:size]))
    return sign_checkpoint(Checkpoint(origin=ORIGIN, size=size, root_hash=root), [LOG])


def cosign(signed: str, name: str, seed: bytes | None = None) -> str:
    text = split_note(signed)[0]
    return sign_cosignature(text, name=name, seed=seed or SEEDS[name], timestamp=1_760_000_000)


def proof(signed: str, index: int = 2) -> str:
    hashes = [merkle.leaf_hash(leaf) for leaf in LEAVES]
    path = merkle.inclusion_proof_from_leaves(index, hashes).hashes
    return format_tlog_proof(index, path, signed, LEAVES[index])


async def verify(page: Page, text: str, keys: list[str], threshold: int) -> dict[str, Any]:
    result: dict[str, Any] = await run(
        page,
        """const r = await core.verifyTlogProof(arg.proof, [arg.log],
                                                {witnesses: {keys: arg.keys, threshold: arg.k}});
        return {ok: r.ok, reason: r.reason ?? null, by: r.witnessedBy ?? null};""",
        {"proof": text, "log": LOG.verifier.key, "keys": keys, "k": threshold},
    )
    return result


async def test_litewitness_cosignature_verifies_in_the_browser(page: Page) -> None:
    note_ = VECTOR["checkpoint_note"] + "".join(VECTOR["cosignature_lines"])
    got = await run(
        page,
        """const key = await core.parseWitnessKey(arg.vkey);
        const text = arg.note.slice(0, arg.note.lastIndexOf('\\n\\n') + 1);
        const by = await core.cosignedBy(arg.note, text, [key]);
        let altered;
        try { await core.cosignedBy(arg.note, text.replace('\\n1\\n', '\\n2\\n'), [key]);
              altered = 'accepted'; }
        catch (err) { altered = err.message; }
        return {by, altered};""",
        {"vkey": VECTOR["witness_vkey"], "note": note_},
    )
    assert got["by"] == ["example.com/witness"]
    assert "does not verify" in got["altered"]


async def test_a_note_key_is_not_a_witness_key(page: Page) -> None:
    got = await run(
        page,
        "try { await core.parseWitnessKey(arg); return 'accepted'; }"
        " catch (e) { return e.message; }",
        LOG.verifier.key,
    )
    assert got == "a witness key is not a cosignature/v1 key"


async def test_k_of_n_in_the_browser(page: Page) -> None:
    signed = note()
    two = append_cosignatures(signed, [cosign(signed, "w1.example"), cosign(signed, "w3.example")])
    keys = list(KEYS.values())
    ok = await verify(page, proof(two), keys, 2)
    assert ok["ok"], ok
    assert sorted(ok["by"]) == ["w1.example", "w3.example"]
    short = await verify(page, proof(two), keys, 3)
    assert short["ok"] is False
    assert short["reason"].startswith("the checkpoint is cosigned by 2 of the 3 witnesses")
    # No policy: the cosignature lines are ignored, the proof verifies as before.
    plain = await verify(page, proof(two), [], 0)
    assert plain["ok"], plain


async def test_forged_copied_and_unknown_cosignatures(page: Page) -> None:
    signed = note()
    keys = [KEYS["w1.example"], KEYS["w2.example"]]
    # w2's name and key hash, signed by another key: forged, and the check fails.
    stolen = parse_cosignature_line(cosign(signed, "w2.example", os.urandom(32)))
    assert stolen is not None
    w2_id = parse_cosignature_line(cosign(signed, "w2.example"))
    assert w2_id is not None
    forged = replace(stolen, key_id=w2_id.key_id).line
    got = await verify(page, proof(append_cosignatures(signed, [forged])), keys, 1)
    assert got["ok"] is False
    assert got["reason"].startswith("the cosignature by witness w2.example+")
    # A cosignature of the size-4 checkpoint copied onto the size-5 one.
    copied = cosign(note(4), "w1.example")
    got = await verify(page, proof(append_cosignatures(signed, [copied])), keys, 1)
    assert got["ok"] is False
    assert "does not verify" in got["reason"]
    # A valid cosignature by a key the policy does not name counts for nothing.
    unknown = cosign(signed, "w3.example")
    got = await verify(page, proof(append_cosignatures(signed, [unknown])), keys, 1)
    assert got["ok"] is False
    assert got["reason"].startswith("the checkpoint is cosigned by 0 of the 1 witnesses")


def event_leaf() -> tuple[str, list[bytes]]:
    """Three leaves of real events (the Verify button checks the proof's event id)."""
    codec = Codec()
    out = []
    events = list(Simulator(seed=18_001, patients=2).events(3))
    for offset, event in enumerate(events):
        stamped = replace(event, producer_id="witness", producer_seq=offset + 1)
        out.append(encode_leaf(KafkaRecord(
            topic="phi-access", partition=0, offset=offset, timestamp_ms=offset,
            timestamp_type=0, key=None, value=codec.encode(stamped),
        )))  # fmt: skip
    return str(events[1].event_id), out


@pytest.mark.parametrize(("threshold", "wanted"), [(1, "ok"), (2, "failed")])
async def test_the_verify_button_enforces_the_served_policy(threshold: int, wanted: str) -> None:
    event_id, event_leaves = event_leaf()
    root = RootHash(merkle.root_from_leaves(event_leaves))
    signed = sign_checkpoint(Checkpoint(origin=ORIGIN, size=3, root_hash=root), [LOG])
    cosigned = append_cosignatures(signed, [cosign(signed, "w1.example")])
    path = merkle.inclusion_proof_from_leaves(1, [merkle.leaf_hash(x) for x in event_leaves])
    tlog_proof = format_tlog_proof(1, path.hashes, cosigned, event_leaves[1])

    async def proof_handler(request: web.Request) -> web.Response:
        return web.Response(text=tlog_proof, content_type="text/plain")

    policy = witness_policy_handler([KEYS["w1.example"], KEYS["w2.example"]], threshold)
    app = verify_app(verifiers=[LOG.verifier], proof=proof_handler, event_ids=[event_id],
                     witnesses=policy)  # fmt: skip
    async with serving(app) as base, chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{base}/page")
        text, cls, _ = await click_verify(page, event_id)
    assert cls == wanted
    if wanted == "ok":
        assert text.endswith("cosigned by w1.example")
    else:
        assert "cosigned by 1 of the 2 witnesses required (w1.example)" in text
