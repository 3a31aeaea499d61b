"""Page tokens (cursors) sealed with a server-side HMAC-SHA256 key.

Invariant: a cursor is accepted only if this server's key MAC'd it for the same listing
(the context names the route and its filters); a cursor's snapshot (the signed log sizes
a listing is pinned to) therefore cannot be forged, moved or carried to another listing,
so a page never shows a leaf that no signed checkpoint covers. With no key configured
each process draws its own: cursors then do not survive a restart and are not accepted
by another API instance (the client starts the listing again).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from pathlib import Path
from typing import Final

from ledger.audit.query import Cursor
from ledger.errors import MalformedInputError

#: Smallest key accepted from a file: 32 bytes, or 32 characters of a printable secret.
MIN_KEY_BYTES: Final = 32
_TAG_BYTES: Final = 32
_DOMAIN: Final = b"philedger cursor v1\x00"
#: Longest token accepted (a snapshot names every log; 512 logs fit well within this).
MAX_TOKEN_CHARS: Final = 16_384
CODE: Final = "invalid_cursor"


class CursorKey:
    """Seals and opens cursors; the key never leaves this object."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise MalformedInputError(f"a cursor key needs at least {MIN_KEY_BYTES} bytes")
        self._key = key

    @classmethod
    def generate(cls) -> CursorKey:
        """A key for this process only (cursors die with the process)."""
        return cls(secrets.token_bytes(MIN_KEY_BYTES))

    @classmethod
    def from_file(cls, path: Path) -> CursorKey:
        """The key in ``path`` (any bytes, surrounding whitespace ignored)."""
        try:
            data = path.read_bytes().strip()
        except OSError as exc:
            raise MalformedInputError(f"cannot read the cursor key file {path}") from exc
        return cls(data)

    def __repr__(self) -> str:
        return "CursorKey(<secret>)"

    def _tag(self, context: str, payload: bytes) -> bytes:
        message = _DOMAIN + context.encode("utf-8", "backslashreplace") + b"\x00" + payload
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def seal(self, cursor: Cursor, *, context: str) -> str:
        """The opaque page token of ``cursor`` for the listing named by ``context``."""
        payload = cursor.encode().encode("ascii")
        token = self._tag(context, payload) + payload
        return base64.urlsafe_b64encode(token).decode("ascii").rstrip("=")

    def open(self, token: str, *, context: str) -> Cursor:
        """The cursor in ``token``; ``MalformedInputError`` (code ``invalid_cursor``) unless
        this key sealed it for ``context``."""
        if len(token) > MAX_TOKEN_CHARS:
            raise MalformedInputError("cursor is too long", code=CODE)
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, binascii.Error) as exc:
            raise MalformedInputError("cursor is not one this API issued", code=CODE) from exc
        tag, payload = raw[:_TAG_BYTES], raw[_TAG_BYTES:]
        if len(tag) != _TAG_BYTES or not hmac.compare_digest(tag, self._tag(context, payload)):
            raise MalformedInputError(
                "cursor is not one this API issued for this listing (or the API restarted "
                "with another key): start the listing again",
                code=CODE,
            )
        try:
            return Cursor.decode(payload.decode("ascii"))
        except (UnicodeDecodeError, MalformedInputError) as exc:
            raise MalformedInputError("cursor is not one this API issued", code=CODE) from exc
