"""The console's sessions: server-side, in this process, behind an opaque cookie.

Invariant: the cookie carries only a random session id (256 bits); who the person is,
their role and their CSRF token live in this process's store. A session is dropped
after ``idle`` without a request, at sign-out, and when its holder signs in (a new id is
drawn at every sign-in, so a cookie planted before sign-in is never the signed-in
session). The store belongs to one API process: sessions do not survive a restart and
are not shared between API processes (docs/console.md, limits).
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Final

from aiohttp import web

from ledger.audit.auth import Principal

#: The session cookie's name (Path=/ so verify.js's same-origin fetches of /v1 carry it).
COOKIE: Final = "ledger_console"
#: Most sessions one process keeps; beyond it the least recently used are dropped.
MAX_SESSIONS: Final = 10_000


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """A signed-in person (``principal``), or a visitor before sign-in (None)."""

    session_id: str
    csrf: str
    principal: Principal | None
    last_seen: float
    #: OpenID Connect state, nonce and PKCE verifier of a sign-in under way.
    pending: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class SessionStore:
    """In-process sessions with an idle timeout (seconds)."""

    idle: float
    _sessions: dict[str, Session] = field(default_factory=dict)

    def get(self, session_id: str | None) -> Session | None:
        """The live session with this id, its idle clock restarted; None when unknown or
        idle too long (then it is dropped)."""
        if not session_id or len(session_id) > 128:
            return None
        found = self._sessions.pop(session_id, None)
        now = time.monotonic()
        if found is None or now - found.last_seen > self.idle:
            return None
        found = replace(found, last_seen=now)
        self._sessions[session_id] = found  # re-inserted last: most recently used
        return found

    def start(self, principal: Principal | None, pending: dict[str, str] | None = None) -> Session:
        """A new session under a new random id."""
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        session = Session(
            session_id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            principal=principal,
            last_seen=time.monotonic(),
            pending=dict(pending or {}),
        )
        self._sessions[session.session_id] = session
        return session

    def end(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def update(self, session: Session) -> None:
        if session.session_id in self._sessions:
            self._sessions[session.session_id] = session


def csrf_ok(session: Session | None, sent: str | None) -> bool:
    """Whether ``sent`` is this session's CSRF token (compared in constant time)."""
    if session is None or not sent:
        return False
    return hmac.compare_digest(session.csrf.encode(), sent.encode("utf-8", "replace"))


def set_cookie(response: web.StreamResponse, session: Session, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE,
        session.session_id,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=secure,
    )


def clear_cookie(response: web.StreamResponse, *, secure: bool) -> None:
    response.del_cookie(COOKIE, path="/", secure=secure, httponly=True, samesite="Strict")
