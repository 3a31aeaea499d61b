"""verify-core.js (the console's in-browser verifier) against the upstream vectors.

Run in Debian's Chromium, under the console's CSP, with WebCrypto doing every hash and
signature: transparency-dev/merkle's inclusion probes (testdata/inclusion/**, every
``wantErr`` probe refused, every other one accepted), its leaf and root constants, and
golang/mod's signed-note vectors (key hashes, an Ed25519 signature, unknown and bad keys).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Page

from ledger.log import merkle
from tests.vectors._load import GOLANG_MOD_DIR, MERKLE_DIR, load_json
from tests.verify_browser import chromium, serving, verify_app

INCLUSION_FILES = sorted((MERKLE_DIR / "testdata" / "inclusion").rglob("*.json"))
CONSTANTS = load_json(MERKLE_DIR / "testonly_constants.json")


@pytest.fixture(scope="module")
async def page() -> AsyncIterator[Page]:
    async def no_proof(request: web.Request) -> web.Response:
        raise web.HTTPNotFound

    async with serving(verify_app(verifiers=[], proof=no_proof)) as base, chromium() as browser:
        page = await browser.new_page()
        await page.goto(f"{base}/page")
        yield page


async def run(page: Page, body: str, arg: Any) -> Any:
    """Evaluate ``body`` (an async function of ``core``, ``arg``) in the page."""
    return await page.evaluate(
        f"""async (arg) => {{
            const core = await import('/console/static/verify-core.js');
            const b64 = (s) => s ? core.b64decode(s, 'vector') : new Uint8Array(0);
            const hex = (s) => Uint8Array.from((s.match(/../g) || []), (h) => parseInt(h, 16));
            const tohex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
            {body}
        }}""",
        arg,
    )


def test_all_inclusion_probes_are_here() -> None:
    assert len(INCLUSION_FILES) >= 90


async def test_inclusion_probes(page: Page) -> None:
    probes = []
    for path in INCLUSION_FILES:
        vec = load_json(path)
        index = vec["leafIndex"] if "leafIndex" in vec else vec["leafIdx"]
        probes.append(
            {
                "name": str(path.relative_to(MERKLE_DIR)),
                "leaf": vec["leafHash"] or "",
                "index": str(index),  # uint64: exact only as text
                "size": str(vec["treeSize"]),
                "proof": vec["proof"] or [],
                "root": vec["root"] or "",
                "wantErr": vec["wantErr"],
            }
        )
    outcomes = await run(
        page,
        """
        const out = {};
        for (const p of arg) {
            try {
                await core.verifyInclusion(b64(p.leaf), BigInt(p.index), BigInt(p.size),
                                           p.proof.map(b64), b64(p.root));
                out[p.name] = 'accepted';
            } catch (err) {
                out[p.name] = err instanceof core.VerifyError ? 'refused' : `threw ${err}`;
            }
        }
        return out;
        """,
        probes,
    )
    wanted = {p["name"]: "refused" if p["wantErr"] else "accepted" for p in probes}
    assert outcomes == wanted
    assert set(outcomes.values()) == {"accepted", "refused"}


async def test_leaf_hashes_and_roots_of_the_upstream_constants(page: Page) -> None:
    leaves = CONSTANTS["leaf_inputs_hex"]
    got = await run(
        page,
        "return Promise.all(arg.map(async (l) => tohex(await core.leafHash(hex(l)))));",
        leaves,
    )
    assert got == CONSTANTS["node_hashes_hex"][0]
    # Each leaf's path (made by the ledger) leads to upstream's root of every size.
    cases = []
    hashes = [merkle.leaf_hash(bytes.fromhex(x)) for x in leaves]
    for size in range(1, len(leaves) + 1):
        for index in range(size):
            path = merkle.inclusion_proof_from_leaves(index, hashes[:size]).hashes
            cases.append([hashes[index].hex(), index, size, [h.hex() for h in path]])
    roots = await run(
        page,
        """return Promise.all(arg.map(async ([leaf, i, n, path]) => tohex(
            await core.rootFromInclusionProof(hex(leaf), BigInt(i), BigInt(n), path.map(hex)))));
        """,
        cases,
    )
    assert roots == [CONSTANTS["root_hashes_hex"][size] for _, _, size, _ in cases]


NOTE = load_json(GOLANG_MOD_DIR / "note_test.json")


async def test_golang_mod_signed_note(page: Page) -> None:
    peter, enoch = NOTE["peter"], NOTE["enoch"]
    got = await run(
        page,
        """
        const peter = await core.parseVerifierKey(arg.peter);
        const enoch = await core.parseVerifierKey(arg.enoch);
        const attempt = async (note, keys) => {
            try {
                const opened = await core.openNote(note, keys);
                return [opened.text, opened.signer];
            } catch (err) {
                const refused = err instanceof core.VerifyError;
                return refused ? ['refused', err.message] : ['threw', `${err}`];
            }
        };
        return {
            ids: [tohex(peter.keyId), tohex(enoch.keyId)],
            signed: await attempt(arg.note, [peter]),
            cosigned_unknown: await attempt(arg.note + arg.enochLine, [peter]),
            only_unknown: await attempt(arg.note, [enoch]),
            tampered: await attempt(arg.note.replace('cryptography', 'Cryptography'), [peter]),
        };
        """,
        {
            "peter": peter["verifier_key"],
            "enoch": enoch["verifier_key"],
            "note": NOTE["signed_note"],
            "enochLine": enoch["signature_line"],
        },
    )
    assert got["ids"] == [peter["key_id_hex"], enoch["key_id_hex"]]
    assert got["signed"] == [NOTE["text"], f"PeterNeumann+{peter['key_id_hex']}"]
    assert got["cosigned_unknown"] == got["signed"]
    assert got["only_unknown"][0] == "refused"
    assert got["tampered"] == [
        "refused",
        f"the checkpoint's signature by PeterNeumann+{peter['key_id_hex']} does not verify",
    ]


async def test_golang_mod_bad_verifier_keys_are_refused(page: Page) -> None:
    keys = [bad["key"] for bad in NOTE["bad_verifier_keys"]]
    keys += [
        NOTE["peter"]["verifier_key"].replace("c74f20a3", "c74f20a4"),  # wrong key hash
        NOTE["peter"]["verifier_key"].replace("PeterNeumann", "Peter Neumann"),  # a space
        "PeterNeumann+c74f20a3",  # no key
        NOTE["peter"]["signer_key"],  # a private key is not a verifier key
    ]
    got = await run(
        page,
        """
        const out = [];
        for (const k of arg) {
            try { await core.parseVerifierKey(k); out.push('accepted'); }
            catch (err) { out.push(err instanceof core.VerifyError ? 'refused' : `threw ${err}`); }
        }
        return out;
        """,
        keys,
    )
    assert got == ["refused"] * len(keys)


async def test_a_malformed_configured_key_is_named_as_the_reason(page: Page) -> None:
    got = await run(
        page,
        "return (await core.verifyTlogProof('c2sp.org/tlog-proof@v1\\n', arg)).reason;",
        ["not a key"],
    )
    assert got == "a verifier key is not <name>+<key hash>+<key>"
