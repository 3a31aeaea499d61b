"""verify.js in Debian's Chromium against proofs made by the ledger's own code.

The leaves are real events encoded by the producer codec and framed by
``ledger.log.leaf``; the tree, the inclusion proofs, the signed checkpoint and the
tlog-proof come from ``ledger.log`` (the functions the API serves them with). Each altered
proof is first shown to be refused by the Python verifier too, so the browser is judged
on real tampering; then the page must say "not verified" with the reason.
"""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, Page

from integrations.simulator import Simulator
from ledger.errors import LedgerError
from ledger.log import merkle
from ledger.log.checkpoint import (
    Checkpoint,
    format_tlog_proof,
    parse_tlog_proof,
    sign_checkpoint,
    verify_tlog_proof,
)
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.log.note import Signer, Verifier
from ledger.log.types import RootHash
from producers.codec import Codec
from tests.verify_browser import (
    ProofHandler,
    chromium,
    click_position,
    click_verify,
    serving,
    verify_app,
)

NAME = "test.ledger.local"
TOPIC = "phi-access"
ORIGIN = f"{NAME}/{TOPIC}/0/2026-05"  # records stamped 1_780_000_000_000 ms
SIZE = 13
INDEX = 6


@dataclass(frozen=True, slots=True, kw_only=True)
class Tree:
    event_ids: list[str]
    leaves: list[bytes]
    signer: Signer

    def path(self, index: int, size: int = SIZE) -> tuple[bytes, ...]:
        hashes = [merkle.leaf_hash(leaf) for leaf in self.leaves[:size]]
        return merkle.inclusion_proof_from_leaves(index, hashes).hashes

    def note(self, size: int = SIZE, signers: tuple[Signer, ...] | None = None) -> str:
        root = RootHash(merkle.root_from_leaves(self.leaves[:size]))
        return sign_checkpoint(
            Checkpoint(origin=ORIGIN, size=size, root_hash=root), signers or (self.signer,)
        )

    def proof(
        self, index: int, *, size: int = SIZE, signers: tuple[Signer, ...] | None = None
    ) -> str:
        note = self.note(size, signers)
        return format_tlog_proof(index, self.path(index, size), note, self.leaves[index])

    @property
    def verifier(self) -> Verifier:
        return self.signer.verifier


@pytest.fixture(scope="module")
def tree() -> Tree:
    codec = Codec()
    events = list(Simulator(seed=4_160_000, patients=5).events(SIZE + 2))
    leaves, ids = [], []
    for offset, event in enumerate(events):
        stamped = dataclasses.replace(event, producer_id="verifyjs", producer_seq=offset + 1)
        record = KafkaRecord(
            topic=TOPIC, partition=0, offset=offset, timestamp_ms=1_780_000_000_000 + offset,
            timestamp_type=0, key=str(event.event_id).encode(), value=codec.encode(stamped),
        )  # fmt: skip
        leaves.append(encode_leaf(record))
        ids.append(str(event.event_id))
    return Tree(event_ids=ids, leaves=leaves, signer=Signer.from_seed(NAME, os.urandom(32)))


def _lines(proof: str) -> tuple[list[str], str]:
    head, _, note = proof.partition("\n\n")
    return head.split("\n"), note


def _flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[len(raw) // 2] ^= 0x01
    return base64.b64encode(bytes(raw)).decode()


def tamper_path(proof: str) -> str:
    head, note = _lines(proof)
    head[-1] = _flip(head[-1])  # the last inclusion-path hash
    return "\n".join(head) + "\n\n" + note


def tamper_root(proof: str) -> str:
    head, note = _lines(proof)
    origin, size, root, rest = note.split("\n", 3)
    return "\n".join(head) + "\n\n" + "\n".join((origin, size, _flip(root), rest))


def tamper_entry(proof: str) -> str:
    head, note = _lines(proof)
    leaf = bytearray(base64.b64decode(head[1].removeprefix("extra ")))
    leaf[-5] ^= 0x20  # a byte of the event's Avro value, past its event id
    head[1] = "extra " + base64.b64encode(bytes(leaf)).decode()
    return "\n".join(head) + "\n\n" + note


def rename_signature(proof: str, name: str) -> str:
    """The same signature bytes, under another key name on the signature line."""
    return proof.replace(f"\u2014 {NAME} ", f"\u2014 {name} ")


@dataclass
class Served:
    proofs: dict[str, str | web.Response]


@pytest.fixture
async def served(tree: Tree) -> AsyncIterator[tuple[str, Served]]:
    state = Served(proofs={})

    async def proof(request: web.Request) -> web.StreamResponse:
        found = state.proofs.get(request.match_info["event_id"])
        if found is None:
            return web.json_response(
                {"error": {"code": "not_found", "message": "no event with that id"}},
                status=404,
            )
        if isinstance(found, web.Response):
            return found
        return web.Response(text=found, content_type="text/plain")

    app = verify_app(verifiers=[tree.verifier], proof=proof)
    async with serving(app) as base:
        yield base, state


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[BrowserContext]:
    async with chromium() as context:
        yield context


async def open_page(browser: BrowserContext, base: str, ids: list[str]) -> tuple[Page, list[str]]:
    page = await browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    query = "&".join(f"id={i}" for i in ids)
    await page.goto(f"{base}/page?{query}")  # module scripts have run once "load" fired
    return page, errors


def python_refuses(proof: str, verifier: Verifier) -> bool:
    """The ledger's own verifier refuses ``proof`` for the entry it carries."""
    try:
        verify_tlog_proof(proof, parse_tlog_proof(proof).extra or b"", [verifier])
    except LedgerError:
        return True
    return False


async def test_a_real_proof_verifies_in_the_browser(
    browser: BrowserContext, served: tuple[str, Served], tree: Tree
) -> None:
    base, state = served
    event = tree.event_ids[INDEX]
    state.proofs[event] = tree.proof(INDEX)
    assert verify_tlog_proof(state.proofs[event], tree.leaves[INDEX], [tree.verifier])
    page, errors = await open_page(browser, base, [event])
    text, cls, ms = await click_verify(page, event)
    assert text == (
        f"verified: entry {INDEX} of {ORIGIN}, checkpoint size {SIZE}, "
        f"signed by {tree.verifier.name}+{tree.verifier.key_id.hex()}"
    )
    assert cls == "ok"
    assert ms >= 0
    assert errors == []


async def test_every_position_of_every_tree_size_verifies(
    browser: BrowserContext, served: tuple[str, Served], tree: Tree
) -> None:
    """Left and right edges, perfect and ragged trees (sizes 1..SIZE)."""
    base, _ = served
    page, errors = await open_page(browser, base, [])
    keys = [tree.verifier.key]
    outcomes = []
    for size in range(1, SIZE + 1):
        for index in range(size):
            proof = tree.proof(index, size=size)
            outcomes.append(
                await page.evaluate(
                    """async ([proof, keys, id]) => {
                        const core = await import('/console/static/verify-core.js');
                        const r = await core.verifyTlogProof(proof, keys, {eventId: id});
                        return r.ok ? `${r.index}/${r.size}` : r.reason;
                    }""",
                    [proof, keys, tree.event_ids[index]],
                )
            )
    expected = [f"{i}/{s}" for s in range(1, SIZE + 1) for i in range(s)]
    assert outcomes == expected
    twice = await page.evaluate(
        """async ([proof, key]) => {
            const core = await import('/console/static/verify-core.js');
            return (await core.verifyTlogProof(proof, [key, key])).ok;
        }""",
        [tree.proof(INDEX), tree.verifier.key],
    )
    assert twice is True  # one key configured twice is not ambiguous
    assert errors == []


TAMPERED: dict[str, tuple[Callable[[Tree], str], str]] = {
    "inclusion path": (
        lambda t: tamper_path(t.proof(INDEX)),
        "not verified: the entry and its inclusion path do not lead to the checkpoint's "
        "signed root",
    ),
    "checkpoint root": (
        lambda t: tamper_root(t.proof(INDEX)),
        "not verified: the checkpoint's signature by {key} does not verify",
    ),
    "entry": (
        lambda t: tamper_entry(t.proof(INDEX)),
        "not verified: the entry and its inclusion path do not lead to the checkpoint's "
        "signed root",
    ),
    "another key": (
        lambda t: t.proof(INDEX, signers=(Signer.from_seed(NAME, b"\x07" * 32),)),
        "not verified: the checkpoint is signed by {other}, not by a verifier key of this "
        "console ({key})",
    ),
    "wrong key name": (
        lambda t: rename_signature(t.proof(INDEX), "other.ledger"),
        "not verified: the checkpoint is signed by other.ledger+{key_id}, not by a "
        "verifier key of this console ({key})",
    ),
    "another key's name": (
        lambda t: t.proof(INDEX, signers=(Signer.from_seed("other.ledger", b"\x07" * 32),)),
        "not verified: the checkpoint is signed by {other_named}, not by a verifier key "
        "of this console ({key})",
    ),
}


@pytest.mark.parametrize("what", list(TAMPERED))
async def test_an_altered_proof_is_not_verified(
    browser: BrowserContext, served: tuple[str, Served], tree: Tree, what: str
) -> None:
    base, state = served
    make, wanted = TAMPERED[what]
    event = tree.event_ids[INDEX]
    proof = make(tree)
    assert python_refuses(proof, tree.verifier)
    state.proofs[event] = proof
    page, errors = await open_page(browser, base, [event])
    text, cls, _ = await click_verify(page, event)
    v = tree.verifier
    other = Signer.from_seed(NAME, b"\x07" * 32).verifier
    other_named = Signer.from_seed("other.ledger", b"\x07" * 32).verifier
    assert text == wanted.format(
        key=f"{v.name}+{v.key_id.hex()}",
        key_id=v.key_id.hex(),
        other=f"{other.name}+{other.key_id.hex()}",
        other_named=f"{other_named.name}+{other_named.key_id.hex()}",
    )
    assert cls == "failed"
    assert errors == []


async def test_a_proof_of_another_event_is_not_verified(
    browser: BrowserContext, served: tuple[str, Served], tree: Tree
) -> None:
    """A valid proof, but of another entry than the one the page shows."""
    base, state = served
    asked, proven = tree.event_ids[INDEX], tree.event_ids[INDEX + 1]
    state.proofs[asked] = tree.proof(INDEX + 1)
    page, _ = await open_page(browser, base, [asked])
    text, cls, _ = await click_verify(page, asked)
    assert (text, cls) == (f"not verified: the proof is for event {proven}, not {asked}", "failed")


async def test_a_proof_that_does_not_carry_the_entry_is_not_verified(
    browser: BrowserContext, served: tuple[str, Served], tree: Tree
) -> None:
    base, state = served
    event = tree.event_ids[INDEX]
    head, note = _lines(tree.proof(INDEX))
    state.proofs[event] = "\n".join([head[0], *head[2:]]) + "\n\n" + note
    page, _ = await open_page(browser, base, [event])
    text, cls, _ = await click_verify(page, event)
    assert (text, cls) == ("not verified: the proof does not carry the entry", "failed")


@pytest.mark.parametrize(
    ("answer", "wanted"),
    [
        (
            web.json_response(
                {"error": {"code": "forbidden", "message": "the role may not read this"}},
                status=403,
            ),
            "not verified: the ledger answered 403: the role may not read this",
        ),
        (
            web.Response(text="<html>\n<p>Sign in</p>\n</html>\n", content_type="text/html"),
            "not verified: the proof does not start with c2sp.org/tlog-proof@v1",
        ),
        (
            web.Response(body=b"c2sp.org/tlog-proof@v1\n\xff\xfe\n", content_type="text/plain"),
            "not verified: the proof is not UTF-8 text",
        ),
    ],
    ids=["refused", "not-a-proof", "not-utf8"],
)
async def test_a_refused_or_malformed_answer_is_not_verified(
    browser: BrowserContext,
    served: tuple[str, Served],
    tree: Tree,
    answer: web.Response,
    wanted: str,
) -> None:
    base, state = served
    event = tree.event_ids[INDEX]
    state.proofs[event] = answer
    page, errors = await open_page(browser, base, [event])
    text, cls, _ = await click_verify(page, event)
    assert (text, cls) == (wanted, "failed")
    assert [e for e in errors if "403" not in e] == []  # the browser logs the 403 itself


async def test_an_unknown_event_is_not_verified(
    browser: BrowserContext, served: tuple[str, Served]
) -> None:
    base, _ = served
    event = "00000000-0000-4000-8000-000000000000"
    page, _ = await open_page(browser, base, [event])
    text, cls, _ = await click_verify(page, event)
    assert (text, cls) == ("not verified: the ledger answered 404: no event with that id", "failed")


async def test_without_a_verifier_key_nothing_is_verified(
    browser: BrowserContext, tree: Tree
) -> None:
    async def proof(request: web.Request) -> web.Response:
        return web.Response(text=tree.proof(INDEX), content_type="text/plain")

    event = tree.event_ids[INDEX]
    async with serving(verify_app(verifiers=[], proof=proof)) as base:
        page, _ = await open_page(browser, base, [event])
        text, cls, _ = await click_verify(page, event)
    assert (text, cls) == (
        "not verified: this console has no verifier key to check against",
        "failed",
    )


async def test_each_button_writes_to_its_own_result_and_a_second_click_checks_again(
    browser: BrowserContext, served: tuple[str, Served], tree: Tree
) -> None:
    base, state = served
    good, bad = tree.event_ids[2], tree.event_ids[3]
    state.proofs[good] = tree.proof(2)
    state.proofs[bad] = tamper_path(tree.proof(3))
    page, _ = await open_page(browser, base, [good, bad])
    assert (await click_verify(page, good))[1] == "ok"
    assert (await click_verify(page, bad))[1] == "failed"
    assert (await click_verify(page, good))[1] == "ok"
    state.proofs[good] = tamper_root(tree.proof(2))  # the server's answer changes
    assert (await click_verify(page, good))[1] == "failed"
    live = await page.locator("output.verify-result").evaluate_all(
        "els => els.map(e => e.getAttribute('aria-live'))"
    )
    assert live == ["polite", "polite"]


async def test_failed_verifier_key_fetches_are_not_verified_and_not_remembered(
    browser: BrowserContext, tree: Tree
) -> None:
    answers = [
        web.Response(text="oops", status=500),
        web.Response(text="<html>", content_type="text/html"),
        web.json_response({"keys": [tree.verifier.key]}),
        web.json_response([tree.verifier.key]),
    ]

    async def keys(request: web.Request) -> web.Response:
        return answers.pop(0)

    async def proof(request: web.Request) -> web.Response:
        return web.Response(text=tree.proof(INDEX), content_type="text/plain")

    event = tree.event_ids[INDEX]
    app = verify_app(verifiers=[], proof=proof, keys=keys)
    async with serving(app) as base:
        page, errors = await open_page(browser, base, [event])
        got = [await click_verify(page, event) for _ in range(4)]
    assert [(text, cls) for text, cls, _ in got] == [
        ("not verified: the ledger answered 500", "failed"),
        ("not verified: the verifier keys are not JSON", "failed"),
        ("not verified: the verifier keys are not a list of key strings", "failed"),
        (got[3][0], "ok"),  # a failed fetch is not remembered
    ]
    assert [e for e in errors if "500" not in e] == []


@dataclass
class ByPosition:
    """What the PHI-free proof routes and the leaves route answer (changed by tests)."""

    note: str
    leaves: list[bytes]
    skip: set[int]


def position_routes(tree: Tree, state: ByPosition) -> list[tuple[str, ProofHandler]]:
    async def checkpoint(request: web.Request) -> web.Response:
        return web.Response(text=state.note, content_type="text/plain")

    async def inclusion(request: web.Request) -> web.Response:
        index, size = int(request.query["index"]), int(request.query["tree_size"])
        hashes = [base64.b64encode(h).decode() for h in tree.path(index, size)]
        return web.json_response({"index": index, "tree_size": size, "hashes": hashes})

    async def leaves(request: web.Request) -> web.Response:
        start = int(request.query["start"])
        rows = [(i, state.leaves[i]) for i in range(start, SIZE) if i not in state.skip][:1]
        body = [{"index": i, "leaf": base64.b64encode(leaf).decode()} for i, leaf in rows]
        return web.json_response({"origin": ORIGIN, "leaves": body})

    return [
        ("/logs/{log}/checkpoint", checkpoint),
        ("/v1/logs/{log}/proof/inclusion", inclusion),
        ("/v1/logs/{log}/leaves", leaves),
    ]


async def test_by_position_an_entry_verifies_and_an_altered_one_does_not(
    browser: BrowserContext, tree: Tree
) -> None:
    """Roles that read no PHI by event id verify by log and leaf index."""
    state = ByPosition(note=tree.note(), leaves=list(tree.leaves), skip=set())

    async def no_proof(request: web.Request) -> web.Response:
        raise web.HTTPForbidden

    app = verify_app(verifiers=[tree.verifier], proof=no_proof, routes=position_routes(tree, state))
    async with serving(app) as base:
        page = await browser.new_page()
        positions = "&".join(f"pos=7:{i}" for i in (INDEX, SIZE + 1, 1, 2))
        await page.goto(f"{base}/page?{positions}")
        good = await click_position(page, 7, INDEX)
        unsigned = await click_position(page, 7, SIZE + 1)
        state.skip.add(1)  # a gap: the leaves route answers the next leaf
        gap = await click_position(page, 7, 1)
        state.leaves[2] = state.leaves[2][:-1] + bytes([state.leaves[2][-1] ^ 1])
        altered = await click_position(page, 7, 2)
        state.note = tamper_root(tree.proof(INDEX)).partition("\n\n")[2]
        tampered_note = await click_position(page, 7, INDEX)
    key = f"{tree.verifier.name}+{tree.verifier.key_id.hex()}"
    assert [(text, cls) for text, cls, _ in (good, unsigned, gap, altered, tampered_note)] == [
        (f"verified: entry {INDEX} of {ORIGIN}, checkpoint size {SIZE}, signed by {key}", "ok"),
        (f"not verified: entry {SIZE + 1} is not under a signed checkpoint yet", "failed"),
        ("not verified: the ledger did not return entry 1 and its proof", "failed"),
        (
            "not verified: the entry and its inclusion path do not lead to the checkpoint's "
            "signed root",
            "failed",
        ),
        (f"not verified: the checkpoint's signature by {key} does not verify", "failed"),
    ]
