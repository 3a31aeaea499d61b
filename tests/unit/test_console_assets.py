"""The console's asset route and verifier-key route (ledger/http/console)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ledger.http.console import staticfiles, verifierkeys
from ledger.log.note import Signer


@pytest.fixture
async def client() -> AsyncIterator[TestClient[web.Request, web.Application]]:
    app = web.Application()
    app.router.add_get(staticfiles.PATH, staticfiles.static_file)
    keys = [Signer.from_seed(n, bytes([i]) * 32).verifier for i, n in enumerate(("a.b", "c"))]
    app.router.add_get(verifierkeys.PATH, verifierkeys.verifier_keys_handler([*keys, keys[0]]))
    async with TestClient(TestServer(app)) as c:
        yield c


async def test_verify_js_is_served_as_javascript(
    client: TestClient[web.Request, web.Application],
) -> None:
    for name in ("verify.js", "verify-core.js"):
        resp = await client.get(f"/console/static/{name}")
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert await resp.read() == (staticfiles.STATIC_DIR / name).read_bytes()


@pytest.mark.parametrize(
    "name",
    [
        "missing.js",  # not there
        "..%2F__init__.py",  # out of the directory, encoded
        "%2E%2E%2Fverifierkeys.py",
        "__init__.py",  # not an asset type
        ".hidden.js",  # a dot-file
        "verify.js.map",  # unknown suffix
    ],
)
async def test_anything_but_an_asset_is_not_found(
    client: TestClient[web.Request, web.Application], name: str
) -> None:
    resp = await client.get(f"/console/static/{name}")
    assert resp.status == 404


async def test_verifier_keys_are_the_configured_key_strings_each_once(
    client: TestClient[web.Request, web.Application],
) -> None:
    resp = await client.get("/console/verifier-keys")
    assert resp.status == 200
    keys = await resp.json()
    assert [k.split("+")[0] for k in keys] == ["a.b", "c"]
    assert keys[0] == Signer.from_seed("a.b", bytes([0]) * 32).verifier.key


async def test_no_configured_key_is_an_empty_list() -> None:
    app = web.Application()
    app.router.add_get(verifierkeys.PATH, verifierkeys.verifier_keys_handler([]))
    async with TestClient(TestServer(app)) as c:
        resp = await c.get("/console/verifier-keys")
        assert (resp.status, await resp.json()) == (200, [])
