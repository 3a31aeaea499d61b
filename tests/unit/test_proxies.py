"""The client address the self-audit records behind a reverse proxy: forwarded headers
count only from a configured proxy, a spoofed or malformed chain never names the client,
and a refusal is recorded (ledger.http.proxies; the API app in-process, its ports small
stand-ins as in test_console.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.audit.auth import Role
from ledger.errors import MalformedInputError
from ledger.http import create_app
from ledger.http.console import ConsoleConfig
from ledger.http.openapi import document
from ledger.http.proxies import TrustedProxies
from tests.unit.test_console import Reader, Recorder, Tokens, entry

Client = TestClient[Any, Any]


@asynccontextmanager
async def api(trusted: str) -> AsyncIterator[tuple[Client, Recorder, str]]:
    """The app behind ``trusted`` proxies; the test client connects from 127.0.0.1."""
    tokens, recorder = Tokens(), Recorder()
    app = create_app(
        reader=cast(Any, Reader([entry(1)])), tokens=tokens, recorder=recorder,
        openapi=document(), console=ConsoleConfig(verifier_keys=()),
        trusted_proxies=TrustedProxies.parse(trusted),
    )  # fmt: skip
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, recorder, tokens.add(Role.INVESTIGATOR, "ivy")
    finally:
        await client.close()


async def recorded_client(trusted: str, headers: dict[str, str]) -> tuple[int, str | None]:
    async with api(trusted) as (client, recorder, token):
        headers = {"Authorization": f"Bearer {token}", **headers}
        async with client.get("/v1/patients/P-1/accesses", headers=headers) as resp:
            status = resp.status
        return status, recorder.reads[-1].client


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "client"),
    [
        # No proxy configured: the header is the client's own claim, ignored.
        ("", "203.0.113.7", "127.0.0.1"),
        # From the trusted proxy: the address it saw.
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
        ("127.0.0.0/8, 10.0.0.0/8", "203.0.113.7", "203.0.113.7"),
        # A client that prepends a fake hop is still named by the proxy's own hop.
        ("127.0.0.1", "198.51.100.9, 203.0.113.7", "203.0.113.7"),
        # Through two trusted proxies: the first untrusted address from the right.
        ("127.0.0.1, 10.0.0.0/8", "198.51.100.9, 10.1.2.3", "198.51.100.9"),
        # A peer that is not a trusted proxy cannot name another address.
        ("10.0.0.0/8", "203.0.113.7", "127.0.0.1"),
    ],
)
async def test_the_recorded_client_is_the_real_one(
    trusted: str, forwarded_for: str, client: str
) -> None:
    status, recorded = await recorded_client(trusted, {"X-Forwarded-For": forwarded_for})
    assert status == 200
    assert recorded == client


@pytest.mark.parametrize("forwarded_for", ["not-an-address", "203.0.113.7, , x"])
async def test_a_malformed_chain_from_the_proxy_is_refused_and_recorded(
    forwarded_for: str,
) -> None:
    status, recorded = await recorded_client("127.0.0.1", {"X-Forwarded-For": forwarded_for})
    assert status == 400
    assert recorded == "127.0.0.1"  # the proxy's address: nothing better is known


async def test_a_repeated_header_from_the_proxy_is_refused_and_recorded() -> None:
    async with api("127.0.0.1") as (client, recorder, token):
        headers = [
            ("Authorization", f"Bearer {token}"),
            ("X-Forwarded-For", "203.0.113.7"),
            ("X-Forwarded-For", "198.51.100.9"),
        ]
        async with client.get("/v1/patients/P-1/accesses", headers=headers) as resp:
            assert resp.status == 400
            body = await resp.json()
        assert body["error"]["code"] == "malformed_forwarding"
        assert recorder.reads[-1].status == 400
        assert recorder.reads[-1].client == "127.0.0.1"


def secure_cookie(trusted: str, proto: str) -> Callable[[], Any]:
    async def check() -> bool:
        async with api(trusted) as (client, _, token):
            async with client.get("/console/sign-in") as resp:
                text = await resp.text()
            csrf = text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            async with client.post(
                "/console/sign-in",
                data={"csrf": csrf, "token": token, "next": "/console/"},
                headers={"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": proto},
                allow_redirects=False,
            ) as resp:
                assert resp.status == 303, await resp.text()
                return "Secure" in resp.headers["Set-Cookie"]

    return check


async def test_the_session_cookie_is_secure_when_the_proxy_terminated_tls() -> None:
    assert await secure_cookie("127.0.0.1", "https")() is True
    assert await secure_cookie("127.0.0.1", "http")() is False
    # An untrusted peer saying "https" does not make the plain connection secure.
    assert await secure_cookie("10.0.0.0/8", "https")() is False


@pytest.mark.parametrize("text", ["proxy.local", "10.0.0.0/33", "::1::"])
def test_a_bad_trusted_proxy_setting_is_refused(text: str) -> None:
    with pytest.raises(MalformedInputError, match="LEDGER_TRUSTED_PROXIES"):
        TrustedProxies.parse(text)


def test_the_setting_parses_addresses_and_networks() -> None:
    proxies = TrustedProxies.parse("10.0.0.5, 10.1.0.0/16 ::1")
    assert proxies.trusts("10.0.0.5")
    assert proxies.trusts("10.1.200.3")
    assert proxies.trusts("::1")
    assert not proxies.trusts("10.0.0.6")
    assert not proxies.trusts(None)
    assert not TrustedProxies.parse("").trusts("127.0.0.1")
