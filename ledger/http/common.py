"""Shared pieces of the HTTP API: app keys, errors, parameter parsing, JSON shapes.

Invariant: every parameter is validated here before it reaches a query, and every
failure leaves as a JSON error with a stable code; no text derived from request
values (PHI) is logged.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol
from urllib.parse import urlsplit

from aiohttp import web

from ledger.audit.auth import Principal, TokenDirectory
from ledger.audit.cursors import CODE as CURSOR_CODE
from ledger.audit.cursors import CursorKey
from ledger.audit.disclosure import NOTHING, Disclosure, of_positions
from ledger.audit.query import Cursor, LedgerPosition, LedgerReader, RowHistory, Snapshot
from ledger.audit.readlog import ReadRecorder
from ledger.audit.records import SchemaSet, StoredSchema
from ledger.errors import MalformedInputError


class SessionAuth(Protocol):
    """A second way to authenticate than a bearer token: the console's session cookie."""

    async def authenticate(self, request: web.Request) -> Principal | None:
        """The session's holder; None when the request carries no session (then the
        bearer token decides); raises ``AuthenticationError`` for a dead session and
        ``ForbiddenError`` for a change without its CSRF token."""
        ...


READER: Final = web.AppKey("reader", LedgerReader)
#: The reader again when it also returns histories as rows (checked once, at start).
ROW_READER: Final = web.AppKey("row_reader", RowHistory)
TOKENS: Final = web.AppKey("tokens", TokenDirectory)
RECORDER: Final = web.AppKey("recorder", ReadRecorder)
SCHEMAS: Final = web.AppKey("schemas", dict)
SETTINGS: Final = web.AppKey("settings", dict)
CURSORS: Final = web.AppKey("cursors", CursorKey)
SESSION_AUTH: Final = web.AppKey("session_auth", SessionAuth)

#: Base of the links the API writes when none is configured (``ledger serve`` derives one
#: from its bind address; ``LEDGER_PUBLIC_URL`` sets it).
DEFAULT_PUBLIC_URL: Final = "http://127.0.0.1:18080"

#: Request-scoped keys the handlers fill in for the read record (typed, as aiohttp
#: recommends for request storage).
PRINCIPAL: Final = web.RequestKey("ledger.principal", Principal)
RESULTS: Final = web.RequestKey("ledger.results", int)
#: The patient a history or event answer is about: (patient id, issuer or None).
PATIENT: Final = web.RequestKey[tuple[str, str | None]]("ledger.patient")
#: Set by ``ledger.http.proxies`` when a trusted proxy's forwarding headers are unusable.
FORWARDING_REFUSED: Final = web.RequestKey("ledger.forwarding_refused", str)
AUDIT_EVENT: Final = web.RequestKey("ledger.audit_event", uuid.UUID)
#: Extra parameters to record with the read (e.g. the scope in a POST body).
AUDIT_PARAMS: Final = web.RequestKey[dict[str, str]]("ledger.audit_params")
#: The ledger entries the answer returns (``ledger.audit.disclosure.Disclosure``), recorded with
#: the read so it shows up in the history of every patient they name.
DISCLOSED: Final = web.RequestKey("ledger.disclosed", Disclosure)

DEFAULT_PAGE: Final = 100
MAX_PAGE: Final = 1000
MAX_REQUEST_BYTES: Final = 1024 * 1024
#: Longest time window one query may span.
MAX_WINDOW: Final = timedelta(days=366 * 7)
_ID = re.compile(r"[^\x00-\x1f\x7f]{1,256}")
_MAX_INT = (1 << 63) - 1


def disclose(request: web.Request, positions: Iterable[LedgerPosition]) -> None:
    """Record that the answer returns the entries at these positions."""
    add_disclosure(request, of_positions((p.origin, p.leaf_index) for p in positions))


def add_disclosure(request: web.Request, disclosure: Disclosure) -> None:
    """Record that the answer returns these entries (added to any recorded before)."""
    request[DISCLOSED] = request.get(DISCLOSED, NOTHING).union(disclosure)


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


def public_base(url: str) -> str:
    """A validated public base URL (absolute http(s), no query or fragment), no trailing /."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise MalformedInputError(
            "the public URL must be an absolute http(s) URL without query or fragment, "
            "like https://ledger.example.org"
        )
    return url.rstrip("/")


def public_url(request: web.Request, path: str) -> str:
    """``path`` under the configured public base URL (never the request's Host)."""
    base: str = request.app[SETTINGS]["public_url"]
    return f"{base}{path}"


def seal_cursor(request: web.Request, cursor: Cursor, context: str) -> str:
    return request.app[CURSORS].seal(cursor, context=context)


def open_cursor(request: web.Request, token: str, context: str, current: Snapshot) -> Cursor:
    """The cursor sealed in ``token`` for the listing ``context``; refused if it pins any
    log beyond ``current`` (the signed sizes now), which no sealed cursor can do unless
    the key leaked or the database was rolled back."""
    cursor = request.app[CURSORS].open(token, context=context)
    if _beyond(cursor, current):
        raise MalformedInputError(
            "cursor pins log sizes beyond the signed checkpoints", code=CURSOR_CODE
        )
    return cursor


def _beyond(cursor: Cursor, current: Snapshot) -> bool:
    sizes = cursor.snapshot.sizes
    return any(n > current.size_of(log_id) for log_id, n in enumerate(sizes, start=1))


async def open_pinned(request: web.Request, token: str, context: str) -> tuple[Cursor, Snapshot]:
    """``open_cursor`` against the signed sizes now (also returned). Another API process (a
    worker beside this one) may have sealed the token against newer sizes than this
    process's cached snapshot holds: those are read again, uncached, before a refusal."""
    reader = request.app[READER]
    current = await reader.snapshot()
    cursor = request.app[CURSORS].open(token, context=context)
    if _beyond(cursor, current):
        current = await reader.snapshot(fresh=True)
        if _beyond(cursor, current):
            raise MalformedInputError(
                "cursor pins log sizes beyond the signed checkpoints", code=CURSOR_CODE
            )
    return cursor, current


def principal(request: web.Request) -> Principal:
    who: Principal = request[PRINCIPAL]
    return who


def identifier(value: str, name: str) -> str:
    # Blank ids are refused here, as the AuditLogUsed schema refuses them: else the
    # read could not be recorded and would fail closed (503) instead of answering 400.
    if not _ID.fullmatch(value) or not value.strip():
        raise MalformedInputError(f"{name} must be 1-256 printable characters, not all blank")
    return value


def optional_identifier(request: web.Request, name: str, label: str | None = None) -> str | None:
    raw = request.query.get(name)
    return None if raw is None else identifier(raw, label or name)


def page_limit(
    request: web.Request, *, default: int = DEFAULT_PAGE, maximum: int = MAX_PAGE
) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 6 or not 1 <= int(raw) <= maximum:
        raise MalformedInputError(f"limit must be an integer from 1 to {maximum}")
    return int(raw)


def integer(raw: str | None, name: str, *, minimum: int = 0, maximum: int = _MAX_INT) -> int:
    if raw is None:
        raise MalformedInputError(f"{name} is required")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 19 or (len(raw) > 1 and raw[0] == "0"):
        raise MalformedInputError(f"{name} must be a non-negative decimal integer")
    value = int(raw)
    if not minimum <= value <= maximum:
        raise MalformedInputError(f"{name} must be between {minimum} and {maximum}")
    return value


def instant(raw: str, name: str) -> datetime:
    """An RFC 3339 timestamp with an offset (or a bare date, meaning 00:00 UTC)."""
    if len(raw) > 40:
        raise MalformedInputError(f"{name} must be an RFC 3339 timestamp")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise MalformedInputError(
            f"{name} must be an RFC 3339 timestamp like 2026-01-05T08:00:00Z"
        ) from exc
    if value.tzinfo is None:
        if len(raw) == 10:  # a date
            value = value.replace(tzinfo=UTC)
        else:
            raise MalformedInputError(f"{name} must carry a UTC offset (Z or +hh:mm)")
    if not 1900 <= value.year <= 9000:
        raise MalformedInputError(f"{name} is out of range")
    return value.astimezone(UTC)


def time_window(
    request: web.Request, *, required: bool = False
) -> tuple[datetime | None, datetime | None]:
    """``since`` (inclusive) and ``until`` (exclusive) query parameters."""
    since_raw, until_raw = request.query.get("since"), request.query.get("until")
    since = None if since_raw is None else instant(since_raw, "since")
    until = None if until_raw is None else instant(until_raw, "until")
    if required and (since is None or until is None):
        raise MalformedInputError("since and until are required")
    if since is not None and until is not None:
        if since >= until:
            raise MalformedInputError("since must be before until")
        if until - since > MAX_WINDOW:
            raise MalformedInputError(f"the time window may span at most {MAX_WINDOW.days} days")
    return since, until


def event_id(raw: str) -> uuid.UUID:
    try:
        if len(raw) > 64:
            raise ValueError(raw[:8])
        return uuid.UUID(raw)
    except ValueError as exc:
        raise MalformedInputError("event id must be a UUID") from exc


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cell(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return b64(value)
    return value


def row_json(row: Mapping[str, object]) -> dict[str, object]:
    return {k: cell(v) for k, v in row.items()}


async def schema_set(app: web.Application, fingerprint: bytes) -> SchemaSet:
    """The writer schemas, reloaded when a message names one not seen yet."""
    cache: dict[str, SchemaSet] = app[SCHEMAS]
    current = cache.get("set")
    if current is None or current.name_of(fingerprint) is None:
        rows = await app[READER].writer_schemas()
        current = SchemaSet(
            StoredSchema(fingerprint=fp, full_name=name, schema_json=js) for fp, name, js in rows
        )
        cache["set"] = current
    return current
