"""Who is signed in to the console, and what every console answer looks like.

Invariant: the session cookie authenticates like a bearer token (the API's middleware
asks ``ConsoleSessions`` when no Authorization header is sent), so a console page is
granted, refused and recorded exactly as an API read is. The cookie authenticates GETs
anywhere (verify.js reads /v1 with it) but a change only under /console/, and only with
the session's CSRF token. Every answer under /console/ is HTML with the CSP; a refusal
is a page (403, 404, 503 "ledger unreachable"), and a request without a live session is
sent to the sign-in page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode

from aiohttp import web

from ledger.audit.auth import AuthenticationError, ForbiddenError, Principal
from ledger.http.common import AUDIT_PARAMS, PRINCIPAL, SETTINGS
from ledger.http.console.oidc import OidcClient, OidcConfig
from ledger.http.console.render import page, secure_headers
from ledger.http.console.sessions import COOKIE, Session, SessionStore, csrf_ok
from ledger.http.middleware import AUTH_FAILURE, Handler

#: The request key holding the console session (set by ``ConsoleSessions``).
SESSION: Final = web.RequestKey("ledger.console_session", Session)
#: Console routes that answer JSON or files, never an HTML page.
_RAW: Final = ("/console/static/", "/console/verifier-keys", "/console/witness-policy")
_SAFE: Final = frozenset({"GET", "HEAD"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsoleConfig:
    """The console's settings (docs/console.md)."""

    #: A session unused this long ends (LEDGER_CONSOLE_IDLE_MINUTES).
    idle_minutes: float = 30.0
    #: The ledger's verifier keys (C2SP vkey strings), served to verify.js.
    verifier_keys: tuple[str, ...] = ()
    #: The witness policy verify.js enforces (LEDGER_WITNESSES' keys, k of them; none: off).
    witness_keys: tuple[str, ...] = ()
    witness_threshold: int = 0
    oidc: OidcConfig | None = None
    #: Who sends an accounting of disclosures, and how to reach them (the letterhead:
    #: LEDGER_FACILITY_NAME, LEDGER_FACILITY_CONTACT).
    facility_name: str | None = None
    facility_contact: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Console:
    config: ConsoleConfig
    store: SessionStore
    oidc: OidcClient | None


CONSOLE: Final = web.AppKey("console", Console)


class ConsoleSessions:
    """``SessionAuth`` over the console's session store."""

    def __init__(self, store: SessionStore) -> None:
        self._store = store

    async def authenticate(self, request: web.Request) -> Principal | None:
        sid = request.cookies.get(COOKIE)
        if sid is None:
            return None
        if request.method not in _SAFE and not request.path.startswith("/console/"):
            return None  # a cookie never authorizes an API change: the token decides
        session = self._store.get(sid)
        if session is None or session.principal is None:
            request[AUDIT_PARAMS] = {AUTH_FAILURE: "no_session"}
            raise AuthenticationError("the console session has ended; sign in again")
        request[PRINCIPAL] = session.principal
        request[SESSION] = session
        if request.method not in _SAFE:
            form = await request.post()
            sent = form.get("csrf")
            if not csrf_ok(session, sent if isinstance(sent, str) else None):
                request[AUDIT_PARAMS] = {"csrf": "refused"}
                raise ForbiddenError("the form's CSRF token is missing or wrong")
        return session.principal


def current_session(request: web.Request) -> Session | None:
    """The live session of this request (signed in or not), without recording."""
    found: Session | None = request.get(SESSION)
    if found is None:
        found = request.app[CONSOLE].store.get(request.cookies.get(COOKIE))
    return found


def is_secure(request: web.Request) -> bool:
    """Whether cookies must be ``Secure``: TLS here, or an https public URL (a proxy)."""
    public: str = request.app[SETTINGS]["public_url"]
    return request.secure or public.startswith("https://")


def see_other(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


_MESSAGES: Final = {
    403: ("Not for your role", "Your role may not use this page or action."),
    404: ("Not found", "There is no such page."),
    405: ("Not allowed", "This page does not take that kind of request."),
    503: (
        "The ledger cannot be reached",
        "The ledger's database or message log is unreachable just now, so nothing can "
        "be shown or recorded. Nothing is lost; try again in a minute.",
    ),
}


def _error_page(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    status = response.status
    if status == 401 and request.method in _SAFE:
        target = "/console/sign-in"
        if request.path.startswith("/console/") and "//" not in request.path:
            target += "?" + urlencode({"next": request.path_qs[:1000]})
        redirect = see_other(target)
        if "Ledger-Audit-Event" in response.headers:
            redirect.headers["Ledger-Audit-Event"] = response.headers["Ledger-Audit-Event"]
        return redirect
    title, text = _MESSAGES.get(status, ("Cannot do that", ""))
    if not text and isinstance(response, web.Response) and response.body is not None:
        try:
            body = json.loads(bytes(response.body))  # type: ignore[arg-type]
            text = str(body["error"]["message"])
        except (ValueError, KeyError, TypeError):
            text = "The request was refused."
    html = page("error.html", who=request.get(PRINCIPAL), status=status, title=title, message=text)
    for name in ("Ledger-Audit-Event", "Retry-After", "Allow"):
        if name in response.headers:
            html.headers[name] = response.headers[name]
    return html


def _without_blanks(request: web.Request) -> web.Response | None:
    """A GET whose form left fields blank is sent to the same page without them."""
    if request.method != "GET" or not any(v == "" for v in request.query.values()):
        return None
    kept = [(k, v) for k, v in request.query.items() if v != ""]
    return see_other(request.path + ("?" + urlencode(kept) if kept else ""))


@web.middleware
async def console_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Outermost: the console's pages for refusals, and its headers on every answer."""
    if request.path != "/console" and not request.path.startswith("/console/"):
        return await handler(request)
    response: web.StreamResponse
    cleaned = _without_blanks(request)
    if cleaned is not None:
        response = cleaned
    else:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            if exc.status < 400:
                secure_headers(exc)
                raise
            response = exc
    if (
        response.status >= 400
        and not request.path.startswith(_RAW)
        and response.content_type != "text/html"
    ):
        response = _error_page(request, response)
    secure_headers(response)
    return response
