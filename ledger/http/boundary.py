"""What every request must satisfy before its handler runs, and what every answer carries.

Invariant: a request names only query parameters its route declares in the OpenAPI
document (the one source of truth; anything else is 400 ``unknown_parameter`` naming it,
never silently ignored), and its raw path and query decode as strict UTF-8 (400
``invalid_utf8``, never rewritten to U+FFFD or kept percent-encoded). These checks run
inside the read-recording middleware, so a refused request is recorded like any other.
Every answer to an authenticated request is ``Cache-Control: private, no-store`` (it may
hold PHI); only an answer of a public route that says otherwise (a complete hash tile, a
checkpoint) may be cached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Final
from urllib.parse import unquote_to_bytes

from aiohttp import web

from ledger.http.common import PRINCIPAL, SETTINGS, error

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NO_STORE: Final = "private, no-store"
_TEMPLATE_REGEX: Final = re.compile(r"\{(\w+):[^}]*\}")
#: Where the stable code of a refusal goes in a FHIR OperationOutcome (issue.details).
ERROR_CODE_SYSTEM: Final = "https://philedger.example/fhir/CodeSystem/api-error"


def declared_parameters(document: Mapping[str, object]) -> dict[tuple[str, str], frozenset[str]]:
    """(METHOD, path template) -> the query parameters that operation declares."""
    paths = document.get("paths")
    out: dict[tuple[str, str], frozenset[str]] = {}
    if not isinstance(paths, dict):
        return out
    for template, ops in paths.items():
        for method, op in ops.items():
            params = op.get("parameters", []) if isinstance(op, dict) else []
            out[(method.upper(), template)] = frozenset(
                p["name"] for p in params if isinstance(p, dict) and p.get("in") == "query"
            )
    return out


def _operation(request: web.Request) -> tuple[str, str] | None:
    route = request.match_info.route
    resource = route.resource
    if request.match_info.http_exception is not None or resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    return method, _TEMPLATE_REGEX.sub(r"{\1}", resource.canonical)


def refusal(request: web.Request, status: int, code: str, message: str) -> web.Response:
    """A refusal in the route's dialect: a FHIR OperationOutcome under /fhir (the stable
    code in ``issue.details``), else the API's JSON error."""
    if request.path != "/fhir" and not request.path.startswith("/fhir/"):
        return error(status, code, message)
    issue = {
        "severity": "error",
        "code": {413: "too-long", 406: "not-supported"}.get(status, "invalid"),
        "details": {"coding": [{"system": ERROR_CODE_SYSTEM, "code": code}]},
        "diagnostics": message,
    }
    outcome = {"resourceType": "OperationOutcome", "issue": [issue]}
    return web.Response(
        text=json.dumps(outcome), status=status, content_type="application/fhir+json"
    )


def _undecodable(raw_query: str, raw_path: str = "") -> str | None:
    """The first path segment, query name or value that is not UTF-8 once
    percent-decoded, if any (the router and the query parser would keep or replace it)."""
    parts = raw_path.split("/") + [
        part for pair in raw_query.split("&") for part in pair.replace("+", " ").split("=", 1)
    ]
    for part in parts:
        try:
            unquote_to_bytes(part).decode("utf-8")
        except UnicodeDecodeError:
            return part
    return None


@web.middleware
async def parameters_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse undeclared query parameters and query text that is not UTF-8."""
    operation = _operation(request)
    if operation is None:  # 404/405: answered by the router
        return await handler(request)
    if _undecodable(request.rel_url.raw_query_string, request.rel_url.raw_path) is not None:
        return refusal(request, 400, "invalid_utf8", "the path or query is not valid UTF-8")
    table: dict[tuple[str, str], frozenset[str]] = request.app[SETTINGS]["parameters"]
    declared = table.get(operation, frozenset())
    unknown = sorted(set(request.query) - declared)
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:5])
        allowed = ", ".join(sorted(declared)) or "none"
        return refusal(
            request,
            400,
            "unknown_parameter",
            f"unknown query parameter(s) {shown}; this endpoint takes: {allowed}",
        )
    return await handler(request)


async def cache_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: answers to authenticated requests are never stored by a
    cache; other answers are not stored either unless their handler said otherwise."""
    if request.get(PRINCIPAL) is not None or "Cache-Control" not in response.headers:
        response.headers["Cache-Control"] = NO_STORE
