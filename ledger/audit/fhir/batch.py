"""Batch Bundles posted at the FHIR base: which reads they ask for.

Invariant: only a ``batch`` Bundle of at most ``MAX_BATCH_ENTRIES`` entries is accepted
(a ``transaction`` is ``not_supported``, anything else malformed); each entry becomes one
``EntryRequest``: a read the server answers and records on its own, or a per-entry refusal
(a method other than GET, a URL outside this server's FHIR base). No entry can reach a
route other than ``metadata``, ``AuditEvent`` and ``AuditEvent/{id}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import parse_qsl, urlsplit

from ledger.errors import MalformedInputError

__all__ = [
    "MAX_BATCH_ENTRIES",
    "NOT_SUPPORTED",
    "EntryRequest",
    "batch_requests",
]

#: Most entries in one batch (each is a read of the ledger, recorded on its own).
MAX_BATCH_ENTRIES: Final = 50
#: The error code (HTTP 422) of a transaction Bundle.
NOT_SUPPORTED: Final = "not_supported"
_MAX_URL: Final = 16_384

Target = Literal["search", "read", "metadata"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryRequest:
    """One batch entry: ``target`` None means the entry is refused with ``status`` (an HTTP
    status line) and ``problem``; ``path`` and ``params`` are what gets recorded."""

    method: str
    path: str
    params: Mapping[str, list[str]] = field(default_factory=dict)
    target: Target | None = None
    event_id: str | None = None
    status: str | None = None
    problem: str | None = None


def _refused(method: str, path: str, status: str, problem: str) -> EntryRequest:
    return EntryRequest(method=method, path=path, status=status, problem=problem)


def _relative(url: str, base_url: str) -> str | None:
    """``AuditEvent?x`` for ``AuditEvent?x``, ``/AuditEvent?x`` or ``<base>/AuditEvent?x``."""
    if url.startswith(base_url + "/"):
        return url[len(base_url) + 1 :]
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return None
    return url.removeprefix("/")


def _params(query: str) -> dict[str, list[str]]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=False, errors="strict")
    except UnicodeDecodeError as exc:
        raise MalformedInputError("the query is not valid UTF-8", code="invalid_utf8") from exc
    params: dict[str, list[str]] = {}
    for key, value in pairs:
        params.setdefault(key, []).append(value)
    return params


def _entry(raw: object, base_url: str) -> EntryRequest:
    request = raw.get("request") if isinstance(raw, dict) else None
    if not isinstance(request, dict):
        return _refused("INVALID", "/fhir", "400 Bad Request", "entry.request is missing")
    method, url = request.get("method"), request.get("url")
    if not isinstance(method, str) or not isinstance(url, str) or not url or len(url) > _MAX_URL:
        return _refused("INVALID", "/fhir", "400 Bad Request", "entry.request needs method, url")
    method = method if method.isascii() and method.isalpha() and len(method) <= 16 else "INVALID"
    relative = _relative(url, base_url)
    if relative is None:
        return _refused(method, "/fhir", "400 Bad Request", "the url is not under this server")
    target, _, query = relative.partition("?")
    path = f"/fhir/{target}"
    if method != "GET":
        return _refused(method, path, "405 Method Not Allowed", "a batch here holds GET only")
    try:
        params = _params(query)
    except MalformedInputError as exc:
        return _refused(method, path, "400 Bad Request", str(exc))
    segments = target.split("/")
    if target == "metadata":
        return EntryRequest(method=method, path=path, params=params, target="metadata")
    if target == "AuditEvent":
        return EntryRequest(method=method, path=path, params=params, target="search")
    if len(segments) == 2 and segments[0] == "AuditEvent" and segments[1]:
        return EntryRequest(
            method=method, path=path, params=params, target="read", event_id=segments[1]
        )
    return EntryRequest(
        method=method, path=path, params=params, status="404 Not Found", problem="no such route"
    )


def batch_requests(document: Mapping[str, object], *, base_url: str) -> list[EntryRequest]:
    """The entries of a batch Bundle; raises ``MalformedInputError`` for anything else."""
    if document.get("resourceType") != "Bundle":
        raise MalformedInputError("POST at the FHIR base takes a batch Bundle")
    kind = document.get("type")
    if kind == "transaction":
        raise MalformedInputError(
            "transaction Bundles are not supported: send a batch of GET entries",
            code=NOT_SUPPORTED,
        )
    if kind != "batch":
        raise MalformedInputError("Bundle.type must be batch")
    entries = document.get("entry", [])
    if not isinstance(entries, list):
        raise MalformedInputError("Bundle.entry must be a list")
    if len(entries) > MAX_BATCH_ENTRIES:
        raise MalformedInputError(
            f"the batch has {len(entries)} entries; at most {MAX_BATCH_ENTRIES}",
            code="too_many_entries",
        )
    return [_entry(e, base_url.rstrip("/")) for e in entries]
