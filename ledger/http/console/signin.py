"""Signing in and out of the console: an API token, or an OpenID Connect issuer.

Invariant: a token is accepted exactly when the API would accept it as a bearer token
(same format check, same directory), and every sign-in, granted or refused, is recorded
as the API records a request (a refusal as a 401 with ``auth.failure``). A sign-in
always draws a new session id and drops the one used before it (no fixation); each form
carries the pre-login session's CSRF token.
"""

from __future__ import annotations

import hmac
from typing import Final

from aiohttp import web

from ledger.audit.auth import AuthenticationError, Principal, bearer_token, token_hash
from ledger.errors import UnavailableError
from ledger.http.common import PRINCIPAL, SETTINGS, TOKENS
from ledger.http.console.guard import CONSOLE, current_session, is_secure, see_other
from ledger.http.console.oidc import OidcError
from ledger.http.console.render import page
from ledger.http.console.sessions import Session, clear_cookie, csrf_ok, set_cookie
from ledger.http.middleware import AUTH_FAILURE, record_entry

HOME: Final = "/console/"


def _next(raw: object) -> str:
    """Where to go after sign-in: a console path only (no open redirect)."""
    if isinstance(raw, str) and raw.startswith("/console/") and "//" not in raw and "\\" not in raw:
        return raw[:1000]
    return HOME


def _pre_login(request: web.Request) -> Session:
    found = current_session(request)
    if found is not None and found.principal is None:
        return found
    return request.app[CONSOLE].store.start(None)


def _form(
    request: web.Request,
    session: Session,
    *,
    status: int = 200,
    message: str = "",
    next_path: str = HOME,
) -> web.Response:
    response = page(
        "signin.html",
        who=None,
        status=status,
        csrf=session.csrf,
        message=message,
        next_path=next_path,
        oidc=request.app[CONSOLE].oidc is not None,
    )
    set_cookie(response, session, secure=is_secure(request))
    return response


async def sign_in_form(request: web.Request) -> web.Response:
    found = current_session(request)
    if found is not None and found.principal is not None:
        return see_other(_next(request.query.get("next")))
    message = "You have signed out." if "signed_out" in request.query else ""
    return _form(
        request, _pre_login(request), message=message, next_path=_next(request.query.get("next"))
    )


async def _record(request: web.Request, status: int, failure: str | None = None) -> None:
    params = {} if failure is None else {AUTH_FAILURE: [failure]}
    await record_entry(
        request,
        method=request.method,
        path=request.path,
        parameters=params,
        status=status,
        results=None,
        patient=None,
        disclosed=(),
    )


def _signed_in(
    request: web.Request, who: Principal, before: Session | None, to: str
) -> web.Response:
    store = request.app[CONSOLE].store
    if before is not None:
        store.end(before.session_id)
    session = store.start(who)
    response = see_other(to)
    set_cookie(response, session, secure=is_secure(request))
    return response


async def sign_in(request: web.Request) -> web.Response:
    form = await request.post()
    before = current_session(request)
    sent, text = form.get("csrf"), form.get("token")
    next_path = _next(form.get("next"))
    if before is None or not csrf_ok(before, sent if isinstance(sent, str) else None):
        await _record(request, 403, "csrf")
        return _form(
            request,
            _pre_login(request),
            status=403,
            next_path=next_path,
            message="The form had expired or did not come from this console; try again.",
        )
    try:
        token = bearer_token("Bearer " + text.strip() if isinstance(text, str) else None)
    except AuthenticationError:
        await _record(request, 401, "malformed_token" if text else "no_token")
        return _form(
            request,
            before,
            status=401,
            next_path=next_path,
            message="That is not a token this ledger issued.",
        )
    who = await request.app[TOKENS].principal(token_hash(token))
    if who is None:
        await _record(request, 401, "unknown_token")
        return _form(
            request,
            before,
            status=401,
            next_path=next_path,
            message="That token is unknown, expired or revoked.",
        )
    request[PRINCIPAL] = who
    await _record(request, 303)
    return _signed_in(request, who, before, next_path)


async def sign_out(request: web.Request) -> web.Response:
    form = await request.post()
    session = current_session(request)
    sent = form.get("csrf")
    if session is None or session.principal is None:
        return see_other("/console/sign-in")
    request[PRINCIPAL] = session.principal
    if not csrf_ok(session, sent if isinstance(sent, str) else None):
        await _record(request, 403, "csrf")
        return page(
            "error.html",
            who=session.principal,
            status=403,
            title="Not signed out",
            message="The form did not come from this console.",
        )
    await _record(request, 303)
    request.app[CONSOLE].store.end(session.session_id)
    response = see_other("/console/sign-in?signed_out=1")
    clear_cookie(response, secure=is_secure(request))
    return response


async def oidc_start(request: web.Request) -> web.Response:
    client = request.app[CONSOLE].oidc
    if client is None:
        return see_other("/console/sign-in")
    session = _pre_login(request)
    redirect = f"{request.app[SETTINGS]['public_url']}/console/oidc/callback"
    start = await client.start(redirect)
    request.app[CONSOLE].store.update(
        Session(
            session_id=session.session_id,
            csrf=session.csrf,
            principal=None,
            last_seen=session.last_seen,
            pending=start.pending,
        )
    )
    response = see_other(start.url)
    set_cookie(response, session, secure=is_secure(request))
    return response


async def oidc_callback(request: web.Request) -> web.Response:
    client = request.app[CONSOLE].oidc
    session = current_session(request)
    if client is None:
        return see_other("/console/sign-in")
    if session is None and "hop" not in request.query:
        # The issuer's redirect is cross-site: a SameSite=Strict cookie is not sent with
        # it. One same-site hop (a meta refresh, no script) brings the cookie along.
        return page("hop.html", who=None, target=request.path_qs + "&hop=1")
    pending = {} if session is None else session.pending
    state, code = request.query.get("state", ""), request.query.get("code", "")
    if not pending or not code or not hmac.compare_digest(state, pending.get("state", "")):
        await _record(request, 401, "oidc_state")
        fresh = _pre_login(request)
        return _form(
            request,
            fresh,
            status=401,
            message="The sign-in did not come back "
            "to the browser that started it, or took too long; start again.",
        )
    try:
        who = await client.finish(pending, code)
    except OidcError as exc:
        await _record(request, 401, "oidc_refused")
        return _form(request, _pre_login(request), status=401, message=str(exc))
    except UnavailableError:
        await _record(request, 503, "oidc_unreachable")
        return _form(
            request,
            _pre_login(request),
            status=503,
            message="The OpenID issuer cannot be reached just now.",
        )
    request[PRINCIPAL] = who
    await _record(request, 303)
    return _signed_in(request, who, session, HOME)
