"""The API's middleware chain: JSON errors, the read record, authentication.

Invariant: ``errors`` wraps ``read_audit`` wraps ``auth`` wraps the handler. So every
request to a non-public route, with or without a valid token, granted or refused
(401, 403), malformed (400) or unknown (404, 405), is recorded as an AuditLogUsed
event before its answer leaves; if it cannot be recorded the answer is 503 and no
data leaves (fail closed). Public routes are never recorded. Every request is bounded
in time (``REQUEST_TIMEOUT``), every failure is a JSON error, and nothing derived
from request values (paths and parameters hold patient and user ids) reaches the
service's log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from ledger.audit.auth import (
    AuthenticationError,
    ForbiddenError,
    Permission,
    Principal,
    TokenDirectory,
    bearer_token,
    token_hash,
)
from ledger.audit.disclosure import NOTHING, of_positions
from ledger.audit.query import LedgerPosition
from ledger.audit.readlog import MAX_PATH_CHARS, LedgerRead, clean_parameters, clean_text
from ledger.errors import (
    LedgerError,
    MalformedInputError,
    PushbackError,
    TooLargeError,
    UnavailableError,
)
from ledger.http.common import (
    AUDIT_EVENT,
    AUDIT_PARAMS,
    DISCLOSED,
    FORWARDING_REFUSED,
    PATIENT,
    PRINCIPAL,
    RECORDER,
    RESULTS,
    SESSION_AUTH,
    SETTINGS,
    TOKENS,
    error,
)

logger = logging.getLogger("ledger.http")

#: An HTTP method token as the AuditLogUsed schema records it.
_METHOD: Final = re.compile(r"[A-Z]{1,16}")

#: Longest a request may take before it is answered 503 (bounded work per request).
REQUEST_TIMEOUT: Final = 30.0

#: Subject and role recorded for a request without a valid token. Token subjects are
#: letters, digits and ``_ . @ -`` only, so no token holder can be confused with it.
ANONYMOUS: Final = "(anonymous)"
#: The recorded parameter saying why authentication failed: ``no_token``,
#: ``malformed_token`` or ``unknown_token`` (unknown, expired or revoked).
AUTH_FAILURE: Final = "auth.failure"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(request: web.Request, exc: BaseException) -> web.StreamResponse:
    """The JSON answer for an exception raised while handling ``request``."""
    if isinstance(exc, web.HTTPException):
        if exc.status >= 400 and exc.content_type != "application/json":
            resp = error(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
            if "Allow" in exc.headers:  # 405 says which methods the resource has
                resp.headers["Allow"] = exc.headers["Allow"]
            return resp
        return exc
    if isinstance(exc, AuthenticationError):
        resp = error(401, "unauthenticated", str(exc))
        resp.headers["WWW-Authenticate"] = 'Bearer realm="ledger"'
        return resp
    if isinstance(exc, ForbiddenError):
        return error(403, "forbidden", str(exc))
    if isinstance(exc, TooLargeError):
        return error(413, exc.code, str(exc))
    if isinstance(exc, MalformedInputError):
        return error(400, exc.code, str(exc))
    if isinstance(exc, PushbackError):
        resp = error(503, "overloaded", str(exc))
        resp.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return resp
    if isinstance(exc, UnavailableError):
        logger.warning("dependency unavailable for %s %s", request.method, _route_name(request))
        return error(503, "unavailable", "the ledger is unavailable; retry later")
    if isinstance(exc, LedgerError):
        logger.error("ledger error on %s: %s", _route_name(request), type(exc).__name__)
        return error(500, "internal", "internal error")
    if isinstance(exc, OSError | TimeoutError):
        logger.warning("I/O failure for %s: %s", _route_name(request), type(exc).__name__)
        return error(503, "unavailable", "the ledger is unavailable; retry later")
    # Deliberately no exception text: it may contain query parameters (PHI).
    logger.error("unhandled %s on %s", type(exc).__name__, _route_name(request))
    return error(500, "internal", "internal error")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except web.HTTPException as exc:
        response = error_response(request, exc)
        if response is exc:
            raise
        return response
    except Exception as exc:
        return error_response(request, exc)


def _route_name(request: web.Request) -> str:
    """The route's name, never the path (paths carry patient and user ids)."""
    info = request.match_info
    route = info.route if info is not None else None
    return (route.name or "?") if route is not None else "?"


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.match_info.http_exception is not None:
        # Unknown path or method: answer 404/405 only to an authenticated caller, so
        # the route map is not an oracle; public routes never reach this branch.
        await _authenticate(request)
        return await handler(request)
    permission = _route_permission(request)
    if permission is None:
        return await handler(request)
    who = await _authenticate(request)
    if not who.may(permission):
        raise ForbiddenError(f"the {who.role.value} role may not use this endpoint")
    return await handler(request)


def _route_permission(request: web.Request) -> Permission | None:
    table: dict[str, Permission | None] = request.app[SETTINGS]["permissions"]
    name = request.match_info.route.name
    if name is None or name not in table:
        # Every route is registered with a permission; an unnamed one is refused.
        raise ForbiddenError("this endpoint has no access rule")
    return table[name]


def _is_public(request: web.Request) -> bool:
    """A registered route that needs no permission (it carries no PHI)."""
    if request.match_info.http_exception is not None:
        return False
    table: dict[str, Permission | None] = request.app[SETTINGS]["permissions"]
    name = request.match_info.route.name
    return name is not None and name in table and table[name] is None


async def _authenticate(request: web.Request) -> Principal:
    header = request.headers.get("Authorization")
    sessions = request.app.get(SESSION_AUTH)
    if header is None and sessions is not None:
        # The console's session cookie (docs/console.md): checked like a token, and a
        # refusal is recorded like one.
        who = await sessions.authenticate(request)
        if who is not None:
            request[PRINCIPAL] = who
            return who
    try:
        text = bearer_token(header)
    except AuthenticationError:
        # Why it failed goes into the record; the header's text never does.
        failure = "no_token" if header is None else "malformed_token"
        request[AUDIT_PARAMS] = {AUTH_FAILURE: failure}
        raise
    tokens: TokenDirectory = request.app[TOKENS]
    who = await tokens.principal(token_hash(text))
    if who is None:
        request[AUDIT_PARAMS] = {AUTH_FAILURE: "unknown_token"}
        raise AuthenticationError("the token is unknown, expired or revoked")
    request[PRINCIPAL] = who
    return who


@web.middleware
async def read_audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every request to a non-public route as an AuditLogUsed event before its
    answer leaves: served, refused (401, 403), malformed (400) and unknown (404, 405)
    alike. Runs outside ``auth_middleware``, so a refusal is recorded too."""
    refused = request.get(FORWARDING_REFUSED)
    if _is_public(request):
        if refused:
            return error(400, "malformed_forwarding", refused)
        async with asyncio.timeout(REQUEST_TIMEOUT):
            return await handler(request)
    read_id = uuid.uuid4()
    request[AUDIT_EVENT] = read_id
    response: web.StreamResponse
    try:
        if refused:
            response = error(400, "malformed_forwarding", refused)
        else:
            # A deadline on this task, not a task of its own per request (as wait_for).
            async with asyncio.timeout(REQUEST_TIMEOUT):
                response = await handler(request)
    except TimeoutError:
        response = error(503, "timeout", f"the request took longer than {REQUEST_TIMEOUT:.0f}s")
    except Exception as exc:
        response = error_response(request, exc)
    # Raises UnavailableError when the record cannot be handed over: fail closed (503).
    await request.app[RECORDER].record(_read_of(request, read_id, response.status))
    response.headers["Ledger-Audit-Event"] = str(read_id)
    if isinstance(response, web.HTTPException):
        raise response
    return response


def _read_of(request: web.Request, read_id: uuid.UUID, status: int) -> LedgerRead:
    """The record of one request; a caller without a valid token is ``(anonymous)``."""
    who: Principal | None = request.get(PRINCIPAL)
    patient = request.get(PATIENT)
    return LedgerRead(
        read_id=read_id,
        at=datetime.now(UTC),
        subject=ANONYMOUS if who is None else who.subject,
        role=ANONYMOUS if who is None else who.role.value,
        client=request.remote,
        method=request.method if _METHOD.fullmatch(request.method) else "INVALID",
        path=clean_text(request.path, MAX_PATH_CHARS),
        status=status,
        parameters=clean_parameters(
            {**{k: v for k, v in request.query.items()}, **request.get(AUDIT_PARAMS, {})}
        ),
        results=request.get(RESULTS),
        patient_id=None if patient is None else patient[0],
        patient_issuer=None if patient is None else patient[1],
        disclosed=request.get(DISCLOSED, NOTHING),
    )


async def record_entry(
    request: web.Request,
    *,
    method: str,
    path: str,
    parameters: Mapping[str, list[str]],
    status: int,
    results: int | None,
    patient: tuple[str, str | None] | None,
    disclosed: Iterable[LedgerPosition],
) -> uuid.UUID:
    """Record one read made inside ``request`` (a FHIR batch entry) as its own AuditLogUsed
    event, by the same caller from the same address; raises ``UnavailableError`` (fail
    closed) when it cannot be handed over. Returns the record's id."""
    who: Principal | None = request.get(PRINCIPAL)
    read_id = uuid.uuid4()
    await request.app[RECORDER].record(
        LedgerRead(
            read_id=read_id,
            at=datetime.now(UTC),
            subject=ANONYMOUS if who is None else who.subject,
            role=ANONYMOUS if who is None else who.role.value,
            client=request.remote,
            method=method if _METHOD.fullmatch(method) else "INVALID",
            path=clean_text(path, MAX_PATH_CHARS),
            status=status,
            parameters=clean_parameters({k: v[0] for k, v in parameters.items() if v}),
            results=results,
            patient_id=None if patient is None else patient[0],
            patient_issuer=None if patient is None else patient[1],
            disclosed=of_positions((p.origin, p.leaf_index) for p in disclosed),
        )
    )
    return read_id
