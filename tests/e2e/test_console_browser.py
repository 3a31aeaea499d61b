"""The console in a real browser (Debian's Chromium, driven by Playwright) against a real
`ledger serve` and consumer on a scratch ledger: sign in with a token and through a local
OpenID Connect issuer, find a patient and see exactly the events emitted for them, be
refused as the wrong role, sign out; CSRF, session fixation, XSS through an event field
and the CSP header. Screenshots of the main pages go to docs/console/ with
LEDGER_SCREENSHOTS=docs (`make screenshots`).
"""

from __future__ import annotations

import base64
import contextlib
import csv
import hashlib
import io
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp
import pytest
from aiohttp import web
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from ledger.http.console.render import CSP
from producers.events import Actor, EventAction, Facility, Patient, PhiAccessEvent, Study
from tests.e2e.conftest import Pipeline, free_port, serving_api, wait_for_events
from tests.support import ROOT

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
#: Where the screenshots go: docs/console/ with LEDGER_SCREENSHOTS=docs (what the README
#: shows; `make screenshots`), else a scratch directory, so a test run leaves the
#: working tree clean.
SHOTS = (
    ROOT / "docs" / "console"
    if os.environ.get("LEDGER_SCREENSHOTS") == "docs"
    else Path(tempfile.mkdtemp(prefix="ledger-console-shots-"))
)
HOSTILE = '<script>alert("xss")</script>'
CLIENT_ID, CLIENT_SECRET = "ledger-console", secrets.token_urlsafe(24)


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@dataclass
class Issuer:
    """A tiny OpenID Connect issuer in the test process: it signs in "oidc.ivy" with the
    role claim "ledger-investigators" without asking, and checks PKCE and the secret."""

    url: str
    key: RSAKey
    codes: dict[str, dict[str, str]]

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/.well-known/openid-configuration", self.metadata)
        app.router.add_get("/authorize", self.authorize)
        app.router.add_post("/token", self.token)
        app.router.add_get("/jwks", self.jwks)
        return app

    async def metadata(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.url,
                "authorization_endpoint": f"{self.url}/authorize",
                "token_endpoint": f"{self.url}/token",
                "jwks_uri": f"{self.url}/jwks",
                "response_types_supported": ["code"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("client_id") != CLIENT_ID or q.get("code_challenge_method") != "S256":
            return web.Response(status=400, text="bad request")
        code = secrets.token_urlsafe(16)
        self.codes[code] = {"challenge": q["code_challenge"], "nonce": q["nonce"],
                            "redirect": q["redirect_uri"]}  # fmt: skip
        raise web.HTTPFound(f"{q['redirect_uri']}?{urlencode({'code': code, 'state': q['state']})}")

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        auth = aiohttp.BasicAuth.decode(request.headers.get("Authorization", ""))
        grant = self.codes.pop(str(form.get("code")), None)
        if (auth.login, auth.password) != (CLIENT_ID, CLIENT_SECRET) or grant is None:
            return web.json_response({"error": "invalid_grant"}, status=400)
        if _s256(str(form.get("code_verifier"))) != grant["challenge"]:
            return web.json_response({"error": "invalid_grant"}, status=400)
        now = int(__import__("time").time())
        claims = {
            "iss": self.url, "sub": "u-1234", "aud": CLIENT_ID, "iat": now, "exp": now + 300,
            "nonce": grant["nonce"], "preferred_username": "oidc.ivy",
            "roles": ["staff", "ledger-investigators"],
        }  # fmt: skip
        id_token = jwt.encode({"alg": "RS256", "kid": "k1"}, claims, self.key)
        return web.json_response({"access_token": "opaque", "token_type": "Bearer",
                                  "id_token": id_token})  # fmt: skip

    async def jwks(self, request: web.Request) -> web.Response:
        return web.json_response(KeySet([self.key]).as_dict(private=False))


@dataclass
class Console:
    url: str
    tokens: dict[str, str]
    pipeline: Pipeline


@pytest.fixture(scope="module")
async def issuer() -> AsyncIterator[Issuer]:
    port = free_port()
    found = Issuer(
        f"http://127.0.0.1:{port}", RSAKey.generate_key(2048, parameters={"kid": "k1"}), {}
    )
    runner = web.AppRunner(found.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield found
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
def console(
    pipeline: Pipeline, issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    """A `ledger serve` of its own (the pipeline's ledger and topics) with OIDC set."""
    stack = pipeline.stack
    secret = tmp_path_factory.mktemp("oidc") / "client-secret"
    secret.write_text(CLIENT_SECRET)
    env = {
        "LEDGER_PRODUCER_KEY_FILE": stack.producer_key("ledger-api-console"),
        "LEDGER_FHIR_PRODUCER_KEY_FILE": stack.producer_key("ledger-fhir-console"),
        "LEDGER_OIDC_ISSUER": issuer.url,
        "LEDGER_OIDC_CLIENT_ID": CLIENT_ID,
        "LEDGER_OIDC_CLIENT_SECRET_FILE": str(secret),
        "LEDGER_OIDC_ROLE_MAP": "ledger-admins=admin,ledger-investigators=investigator",
    }
    with serving_api(pipeline, env, "console-api.log") as url:
        yield Console(url, dict(stack.tokens), pipeline)


@dataclass
class Emitted:
    patient: str
    user: str
    study: str
    ids: set[str]


@pytest.fixture(scope="module")
async def emitted(console: Console) -> Emitted:
    run = secrets.token_hex(3)
    patient, user, study = (
        f"MRN-CONSOLE-{run}",
        f"rad.console.{run}",
        f"1.2.826.0.1.16.{int(run, 16)}",
    )
    facility = Facility(id=f"console-{run}")
    events = [
        PhiAccessEvent(
            facility=facility,
            actor=Actor(user_id=user, role="radiologist", name="Dr Ada Console"),
            dicom_event_id="110110",
            action=EventAction.READ,
            patient=Patient(id=patient, state="CA"),
            study=Study(uid=study, accession=f"ACC{run}"),
            network_address="10.1.2.3",
            purpose_of_use="TREAT",
        ),
        PhiAccessEvent(
            facility=facility,
            actor=Actor(user_id=f"snoop.{run}", role="clerk", name=HOSTILE),
            dicom_event_id="110110",
            action=EventAction.READ,
            patient=Patient(id=patient),
        ),
        PhiAccessEvent(
            facility=facility,
            actor=Actor(user_id=user, role="radiologist"),
            dicom_event_id="110110",
            action=EventAction.UPDATE,
            patient=Patient(id=patient),
            study=Study(uid=study),
        ),
    ]
    async with console.pipeline.emitter(f"e2e-console-{run}") as emitter:
        for e in events:
            await emitter.emit(e)
        await emitter.flush()
    ids = [str(e.event_id) for e in events]
    headers = {"Authorization": f"Bearer {console.tokens['admin']}"}
    async with aiohttp.ClientSession(headers=headers, timeout=aiohttp.ClientTimeout(10)) as http:
        await wait_for_events(http, console.pipeline, ids)
    return Emitted(patient=patient, user=user, study=study, ids=set(ids))


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Any]:
    """A fresh Chromium profile (user data dir) per use; never a downloaded browser."""
    from playwright.async_api import async_playwright

    if not Path(CHROMIUM).exists():  # noqa: ASYNC240 - once, before the browser starts
        pytest.skip("Debian's chromium is not installed (deploy/local/stack.sh infra installs it)")
    with tempfile.TemporaryDirectory(prefix="console-chromium-") as profile:
        async with async_playwright() as p:
            context = await p.chromium.launch_persistent_context(
                profile, executable_path=CHROMIUM, args=ARGS, headless=True,
                viewport={"width": 1280, "height": 900},
            )  # fmt: skip
            try:
                yield context
            finally:
                await context.close()


class Watch:
    """Every console answer the page received, and any dialog a script opened."""

    def __init__(self, page: Any) -> None:
        self.answers: list[tuple[str, int, str | None]] = []
        self.dialogs: list[str] = []
        page.on("response", lambda r: self.answers.append(
            (r.url, r.status, r.headers.get("content-security-policy"))))  # fmt: skip
        page.on("dialog", lambda d: self.dialogs.append(d.message))

    def console_answers(self) -> list[tuple[str, int, str | None]]:
        return [a for a in self.answers if urlsplit(a[0]).path.startswith("/console/")]


async def sign_in(page: Any, console: Console, role: str, *, shot: str | None = None) -> None:
    await page.goto(f"{console.url}/console/")
    assert urlsplit(page.url).path == "/console/sign-in"
    await page.get_by_label("Your API token").fill(console.tokens[role])
    if shot:
        await page.screenshot(path=str(SHOTS / shot))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{console.url}/console/")


def nav(page: Any) -> Any:
    return page.get_by_role("navigation", name="Console")


async def shown_ids(page: Any) -> set[str]:
    return set(
        await page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.eventId)")
    )


async def test_find_a_patient_see_exactly_their_events_and_sign_out(
    console: Console, emitted: Emitted
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    async with browser() as context:
        page = await context.new_page()
        watch = Watch(page)
        await sign_in(page, console, "investigator", shot="sign-in.png")
        await nav(page).get_by_role("link", name="Search").click()
        await page.get_by_label("Patient id").check()
        await page.get_by_label("Id, UID or accession number").fill(emitted.patient)
        await page.screenshot(path=str(SHOTS / "search.png"))
        await page.get_by_role("button", name="Search").click()
        await page.wait_for_url(f"**/console/patients/{emitted.patient}")
        # By default the ledger's own reads naming the patient are shown too.
        assert emitted.ids <= await shown_ids(page)
        await page.get_by_label("Hide the ledger's own audit rows (reads of the ledger)").check()
        await page.get_by_role("button", name="Apply filters").click()
        await page.wait_for_url("**self_audit=hide**")
        assert await shown_ids(page) == emitted.ids
        assert await page.locator("button.verify").count() == 3
        # The hostile user name is text: shown as typed, and no script ran.
        assert await page.get_by_text(HOSTILE, exact=True).count() == 1
        assert watch.dialogs == []
        await page.screenshot(path=str(SHOTS / "patient-history.png"), full_page=True)
        await page.set_viewport_size({"width": 390, "height": 844})
        await page.screenshot(path=str(SHOTS / "patient-history-390.png"), full_page=True)
        await page.set_viewport_size({"width": 1280, "height": 900})
        # CSV export of the same listing.
        async with page.expect_download() as info:
            await page.get_by_role("link", name="Download CSV").click()
        download = await info.value
        text = Path(await download.path()).read_text()  # noqa: ASYNC240
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == 3
        assert {r["event_id"] for r in rows} == emitted.ids
        assert {r["purpose"] for r in rows if r["purpose_code"] == "TREAT"} == {"treatment"}
        # The user's activity and the study's history.
        await page.goto(f"{console.url}/console/users/{emitted.user}")
        # The user's two accesses to the patient are in their activity.
        assert len(await shown_ids(page) & emitted.ids) == 2
        await page.screenshot(path=str(SHOTS / "user-activity.png"), full_page=True)
        await page.goto(f"{console.url}/console/studies/{emitted.study}?self_audit=hide")
        assert len(await shown_ids(page)) == 2
        await page.screenshot(path=str(SHOTS / "study.png"), full_page=True)
        # The alerts queue opens for the investigator (the privacy officer's work).
        await nav(page).get_by_role("link", name="Alerts").click()
        await page.get_by_role("heading", name="Compliance alerts").wait_for()
        await page.screenshot(path=str(SHOTS / "alerts.png"), full_page=True)
        # Every console answer carried the CSP (pages, the chart, the stylesheet).
        answers = watch.console_answers()
        assert answers
        assert all(csp == CSP for _, _, csp in answers), answers
        # Sign out: the pages ask for a sign-in again.
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url("**/console/sign-in?signed_out=1")
        await page.goto(f"{console.url}/console/patients/{emitted.patient}")
        assert urlsplit(page.url).path == "/console/sign-in"
        assert watch.dialogs == []


async def test_the_wrong_role_sees_no_history_and_is_refused(
    console: Console, emitted: Emitted
) -> None:
    async with browser() as context:
        page = await context.new_page()
        await sign_in(page, console, "auditor")
        assert await nav(page).get_by_role("link", name="Search").count() == 0
        answer = await page.goto(f"{console.url}/console/patients/{emitted.patient}")
        assert answer.status == 403
        assert answer.headers["content-security-policy"] == CSP
        await page.get_by_role("heading", name="Not for your role").wait_for()
        await page.screenshot(path=str(SHOTS / "refused.png"))
        # The auditor's pages: the ledger's integrity, with the quarantine.
        await nav(page).get_by_role("link", name="Integrity").click()
        await page.get_by_role("heading", name="Ledger integrity").wait_for()
        await page.get_by_role("heading", name="Quarantine").wait_for()
        assert await page.locator("tbody tr").count() >= 1
        assert await nav(page).get_by_role("link", name="Alerts").count() == 0
        await page.screenshot(path=str(SHOTS / "integrity.png"), full_page=True)


async def test_a_change_without_the_csrf_token_is_refused(console: Console) -> None:
    async with browser() as context:
        page = await context.new_page()
        await sign_in(page, console, "investigator")
        forged = await context.request.post(f"{console.url}/console/sign-out",
                                            form={"csrf": "forged"}, max_redirects=0)  # fmt: skip
        assert forged.status == 403
        missing = await context.request.post(
            f"{console.url}/console/sign-out", form={}, max_redirects=0
        )
        assert missing.status == 403
        # Still signed in: the forged sign-out changed nothing.
        answer = await page.goto(f"{console.url}/console/")
        assert answer.status == 200
        assert urlsplit(page.url).path == "/console/"


async def test_the_pre_login_cookie_is_not_the_signed_in_session(console: Console) -> None:
    async with browser() as context:
        page = await context.new_page()
        await page.goto(f"{console.url}/console/sign-in")
        before = {c["name"]: c["value"] for c in await context.cookies()}["ledger_console"]
        await sign_in(page, console, "investigator")
        cookies = {c["name"]: c for c in await context.cookies()}
        after = cookies["ledger_console"]
        assert after["value"] != before
        assert after["httpOnly"] is True
        assert after["sameSite"] == "Strict"
    # A browser holding only the pre-login id (planted by an attacker) is not signed in.
    async with browser() as context:
        await context.add_cookies([{"name": "ledger_console", "value": before, "url": console.url}])
        page = await context.new_page()
        await page.goto(f"{console.url}/console/")
        assert urlsplit(page.url).path == "/console/sign-in"


async def test_sign_in_through_the_openid_connect_issuer(console: Console, issuer: Issuer) -> None:
    async with browser() as context:
        page = await context.new_page()
        await page.goto(f"{console.url}/console/sign-in")
        await page.get_by_role("link", name="Sign in with your organization's account").click()
        await page.wait_for_url(f"{console.url}/console/")
        await page.get_by_text("oidc.ivy (investigator)").wait_for()
        assert await nav(page).get_by_role("link", name="Search").count() == 1
        await page.screenshot(path=str(SHOTS / "home-oidc.png"))
    # A callback that does not come back to the browser that started the sign-in is refused.
    async with browser() as context:
        page = await context.new_page()
        await page.goto(f"{console.url}/console/oidc/start")
        await page.wait_for_url(f"{console.url}/console/")
        await context.clear_cookies()
        await page.goto(f"{console.url}/console/sign-in")
        answer = await page.goto(f"{console.url}/console/oidc/callback?code=x&state=forged")
        assert answer.status == 401
        await page.get_by_text("did not come back to the browser that started it").wait_for()
