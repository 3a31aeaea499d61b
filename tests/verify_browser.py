"""Driving Debian's Chromium for the console's in-browser verification (verify.js).

Playwright for Python drives the system browser (``/usr/bin/chromium``) through
``executable_path``; nothing is downloaded. Each browser gets a fresh profile. The test
server here serves the console's real static files and verifier-key handler, a page
wired as the console renders entries (spec: docs/console.md), under the console's CSP,
and whatever ``/v1/events/{id}/proof`` answer a test plugs in.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from html import escape
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import BrowserContext, Page, async_playwright

from ledger.http.console import staticfiles, verifierkeys
from ledger.log.note import Verifier

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip
#: The console's Content-Security-Policy (spec16): verify.js must work under it.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)

ProofHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def require_chromium() -> None:
    if not CHROMIUM.exists() or shutil.which(str(CHROMIUM)) is None:
        pytest.skip("Debian's Chromium is not installed (apt-get install chromium)")


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[BrowserContext]:
    """A headless Chromium with a fresh, throwaway profile."""
    require_chromium()
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        async with async_playwright() as pw:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=str(CHROMIUM),
                args=list(CHROMIUM_ARGS),
                headless=True,
            )
            try:
                yield context
            finally:
                await context.close()


def page_html(event_ids: Sequence[str], positions: Sequence[str] = ()) -> str:
    """Entries as the console renders them: a Verify button and its result element, by
    event id, or by position (``"<log id>:<leaf index>"``, for roles without event reads)."""
    rows = [
        f'<li><span>{escape(e)}</span> <button type="button" class="verify" '
        f'data-event-id="{escape(e)}" id="v{n}">Verify</button> '
        f'<output class="verify-result" for="v{n}"></output></li>'
        for n, e in enumerate(event_ids)
    ]
    for n, position in enumerate(positions):
        log, _, index = position.partition(":")
        rows.append(
            f'<li><button type="button" class="verify" data-log-id="{escape(log)}" '
            f'data-leaf-index="{escape(index)}" id="p{n}">Verify</button>'
            f'<span>entry {escape(index)}</span><output class="verify-result"></output></li>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>verify</title>'
        '<link rel="icon" href="data:,">'
        '<script type="module" src="/console/static/verify.js"></script></head>'
        f"<body><ul>{''.join(rows)}</ul></body></html>"
    )


def verify_app(
    *,
    verifiers: Sequence[Verifier],
    proof: ProofHandler,
    event_ids: Sequence[str] = (),
    keys: ProofHandler | None = None,
    routes: Sequence[tuple[str, ProofHandler]] = (),
    witnesses: ProofHandler | None = None,
) -> web.Application:
    """The page, the console's static files and verifier keys (or ``keys``: another
    answer), the witness policy (``witnesses``; default: none required), ``proof`` for
    ``GET /v1/events/{event_id}/proof``, and ``routes`` (GET)."""

    async def page(request: web.Request) -> web.Response:
        ids = request.query.getall("id", list(event_ids))
        return web.Response(
            text=page_html(ids, request.query.getall("pos", [])),
            content_type="text/html",
            headers={"Content-Security-Policy": CSP},
        )

    app = web.Application()
    app.router.add_get("/page", page)
    app.router.add_get(staticfiles.PATH, staticfiles.static_file)
    app.router.add_get(verifierkeys.PATH, keys or verifierkeys.verifier_keys_handler(verifiers))
    app.router.add_get(
        verifierkeys.WITNESS_PATH, witnesses or verifierkeys.witness_policy_handler()
    )
    app.router.add_get("/v1/events/{event_id}/proof", proof)
    for path, handler in routes:
        app.router.add_get(path, handler)
    return app


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on 127.0.0.1 (a secure context, so WebCrypto is there); the base URL."""
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def click_verify(page: Page, event_id: str) -> tuple[str, str, float]:
    """Click the entry's Verify button; its result's text, class and data-verify-ms."""
    return await click_button(page, f'button.verify[data-event-id="{event_id}"]')


async def click_position(page: Page, log: int, index: int) -> tuple[str, str, float]:
    """The same for a button by position (its result is the next result element)."""
    return await click_button(
        page, f'button.verify[data-log-id="{log}"][data-leaf-index="{index}"]'
    )


async def click_button(page: Page, selector: str) -> tuple[str, str, float]:
    button = page.locator(selector)
    result = button.locator("xpath=following-sibling::output[1]")
    await button.click()
    # A selector wait, not wait_for_function: the page's CSP forbids eval.
    await result.and_(
        page.locator('[data-verify-state="ok"], [data-verify-state="failed"]')
    ).wait_for(state="attached")
    classes = (await result.get_attribute("class") or "").split()
    state = "ok" if "ok" in classes else "failed" if "failed" in classes else "?"
    ms = float(await result.get_attribute("data-verify-ms") or "nan")
    return await result.inner_text(), state, ms
