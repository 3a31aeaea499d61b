"""The API application: routes, their permissions, and the middleware chain.

Invariant: every route except ``/healthz`` and ``/openapi.json`` (which carry no
ledger data) requires a bearer token whose role holds the route's permission;
every authenticated request is recorded as an AuditLogUsed event before its answer
leaves (fail closed: 503 if it cannot be recorded); every request is bounded in
size (``client_max_size``) and in time (``REQUEST_TIMEOUT``); every failure is a
JSON error and nothing derived from request values reaches the service's log.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from aiohttp import web

from ledger.api import fhir, history, ops, proofs, reports
from ledger.api.common import (
    AUDIT_EVENT,
    AUDIT_PARAMS,
    DISCLOSED,
    MAX_REQUEST_BYTES,
    PATIENT,
    PRINCIPAL,
    READER,
    RECORDER,
    RESULTS,
    SCHEMAS,
    SETTINGS,
    TOKENS,
    error,
)
from ledger.auth import (
    AuthenticationError,
    ForbiddenError,
    Permission,
    Principal,
    TokenDirectory,
    bearer_token,
    token_hash,
)
from ledger.disclosure import NOTHING
from ledger.errors import LedgerError, MalformedInputError, PushbackError, UnavailableError
from ledger.query import LedgerReader
from ledger.readlog import (
    MAX_PATH_CHARS,
    LedgerRead,
    ReadRecorder,
    clean_parameters,
    clean_text,
)

logger = logging.getLogger("ledger.api")

#: An HTTP method token as the AuditLogUsed schema records it.
_METHOD: Final = re.compile(r"[A-Z]{1,16}")

#: Longest a request may take before it is answered 503 (bounded work per request).
REQUEST_TIMEOUT: Final = 30.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    method: str
    path: str
    handler: Handler
    permission: Permission | None  # None: public, carries no ledger data
    name: str


def _public_healthz() -> Handler:
    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    return healthz


def routes(extra: tuple[Route, ...] = ()) -> tuple[Route, ...]:
    """Every route of the API with the permission it requires."""
    P = Permission
    core = (
        Route(method="GET", path="/healthz", handler=_public_healthz(), permission=None,
              name="healthz"),
        Route(method="GET", path="/v1/patients/{patient_id}/accesses",
              handler=history.patient_accesses, permission=P.HISTORY, name="patient_accesses"),
        Route(method="GET", path="/v1/users/{user_id}/accesses",
              handler=history.user_accesses, permission=P.HISTORY, name="user_accesses"),
        Route(method="GET", path="/v1/studies/{study_uid}/accesses",
              handler=history.study_accesses, permission=P.HISTORY, name="study_accesses"),
        Route(method="GET", path="/v1/events/{event_id}", handler=history.event_detail,
              permission=P.HISTORY, name="event_detail"),
        Route(method="GET", path="/v1/events/{event_id}/proof", handler=proofs.event_proof,
              permission=P.PROOFS, name="event_proof"),
        Route(method="GET", path="/v1/logs", handler=proofs.list_logs, permission=P.PROOFS,
              name="list_logs"),
        Route(method="GET", path="/v1/logs/{log}/checkpoints", handler=proofs.checkpoints,
              permission=P.PROOFS, name="checkpoints"),
        Route(method="GET", path="/v1/logs/{log}/index", handler=proofs.index_rows,
              permission=P.PROOFS, name="index_rows"),
        Route(method="GET", path="/v1/logs/{log}/leaves", handler=proofs.leaves,
              permission=P.PROOFS, name="leaves"),
        Route(method="GET", path="/v1/logs/{log}/proof/inclusion",
              handler=proofs.inclusion_proof, permission=P.PROOFS, name="inclusion_proof"),
        Route(method="GET", path="/v1/logs/{log}/proof/consistency",
              handler=proofs.consistency_proof, permission=P.PROOFS, name="consistency_proof"),
        Route(method="GET", path="/v1/schemas", handler=proofs.writer_schemas,
              permission=P.PROOFS, name="writer_schemas"),
        Route(method="GET", path="/logs/{log}/checkpoint", handler=proofs.checkpoint,
              permission=P.PROOFS, name="checkpoint"),
        Route(method="GET", path="/logs/{log}/tile/{level}/{path:.+}", handler=proofs.tile,
              permission=P.PROOFS, name="tile"),
        Route(method="GET", path="/v1/quarantine", handler=ops.quarantine,
              permission=P.OPERATIONS, name="quarantine"),
        Route(method="GET", path="/v1/alerts", handler=ops.alerts, permission=P.OPERATIONS,
              name="alerts"),
    )  # fmt: skip
    return core + extra


def report_routes() -> tuple[Route, ...]:
    P = Permission
    return (
        Route(method="POST", path="/v1/investigations", handler=reports.investigation,
              permission=P.INVESTIGATE, name="investigation"),
        Route(method="GET", path="/v1/patients/{patient_id}/disclosures",
              handler=reports.disclosures, permission=P.COMPLIANCE, name="disclosures"),
        Route(method="GET", path="/v1/reports/critical-results", handler=reports.relays,
              permission=P.COMPLIANCE, name="critical_results"),
    )  # fmt: skip


def fhir_routes(*, writable: bool) -> tuple[Route, ...]:
    P = Permission
    read = (
        Route(method="GET", path="/fhir/AuditEvent", handler=fhir.search,
              permission=P.FHIR_READ, name="fhir_search"),
        Route(method="GET", path="/fhir/AuditEvent/{event_id}", handler=fhir.read,
              permission=P.FHIR_READ, name="fhir_read"),
    )  # fmt: skip
    if not writable:
        return read
    return (
        *read,
        Route(method="POST", path="/fhir/AuditEvent", handler=fhir.create,
              permission=P.FHIR_WRITE, name="fhir_create"),
    )  # fmt: skip


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
    if isinstance(exc, MalformedInputError):
        return error(400, "bad_request", str(exc))
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


async def _authenticate(request: web.Request) -> Principal:
    text = bearer_token(request.headers.get("Authorization"))
    tokens: TokenDirectory = request.app[TOKENS]
    who = await tokens.principal(token_hash(text))
    if who is None:
        raise AuthenticationError("the token is unknown, expired or revoked")
    request[PRINCIPAL] = who
    return who


@web.middleware
async def read_audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Record every authenticated request as an AuditLogUsed event before answering."""
    read_id = uuid.uuid4()
    request[AUDIT_EVENT] = read_id
    response: web.StreamResponse
    try:
        response = await asyncio.wait_for(handler(request), timeout=REQUEST_TIMEOUT)
    except TimeoutError:
        response = error(503, "timeout", f"the request took longer than {REQUEST_TIMEOUT:.0f}s")
    except Exception as exc:
        response = error_response(request, exc)
    who = request.get(PRINCIPAL)
    if who is None:
        if isinstance(response, web.HTTPException):
            raise response
        return response
    patient = request.get(PATIENT)
    read = LedgerRead(
        read_id=read_id,
        at=datetime.now(UTC),
        subject=who.subject,
        role=who.role.value,
        client=request.remote,
        method=request.method if _METHOD.fullmatch(request.method) else "INVALID",
        path=clean_text(request.path, MAX_PATH_CHARS),
        status=response.status,
        parameters=clean_parameters(
            {**{k: v for k, v in request.query.items()}, **request.get(AUDIT_PARAMS, {})}
        ),
        results=request.get(RESULTS),
        patient_id=None if patient is None else patient[0],
        patient_issuer=None if patient is None else patient[1],
        disclosed=request.get(DISCLOSED, NOTHING),
    )
    await request.app[RECORDER].record(read)  # raises UnavailableError: fail closed
    response.headers["Ledger-Audit-Event"] = str(read_id)
    if isinstance(response, web.HTTPException):
        raise response
    return response


def create_app(
    *,
    reader: LedgerReader,
    tokens: TokenDirectory,
    recorder: ReadRecorder,
    report_source: reports.ReportSource | None = None,
    fhir_submitter: fhir.FhirSubmitter | None = None,
    extra_routes: tuple[Route, ...] = (),
    openapi: dict[str, object] | None = None,
) -> web.Application:
    """The API application; the caller owns the lifecycles of what it passes in."""
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware, read_audit_middleware],
        client_max_size=MAX_REQUEST_BYTES,
    )
    app[READER] = reader
    app[TOKENS] = tokens
    app[RECORDER] = recorder
    app[SCHEMAS] = {}
    extra = extra_routes + fhir_routes(writable=fhir_submitter is not None)
    if report_source is not None:
        app[reports.REPORTS] = report_source
        extra += report_routes()
    if fhir_submitter is not None:
        app[fhir.FHIR_SUBMITTER] = fhir_submitter
    table = routes(extra)
    app[SETTINGS] = {"permissions": {r.name: r.permission for r in table}}
    for r in table:
        app.router.add_route(r.method, r.path, r.handler, name=r.name)
    if openapi is not None:
        document = openapi

        async def openapi_json(request: web.Request) -> web.Response:
            return web.json_response(document)

        app.router.add_get("/openapi.json", openapi_json, name="openapi")
        app[SETTINGS]["permissions"]["openapi"] = None
    return app
