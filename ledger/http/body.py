"""Request bodies: read with a bound on the decoded bytes, parsed as strict JSON.

Invariant: every handler reads its body through ``json_body``. At most ``limit`` bytes
are read after transfer and content decoding (chunked, gzip, deflate, ...), and reading
stops at the first byte past the limit (``TooLargeError``: 413), so neither a missing
Content-Length nor a compression bomb gets past it; a coding the server does not decode
is refused, not parsed as if it were plain text. The body must be UTF-8 (no charset,
or utf-8), nest at most ``MAX_DEPTH`` deep and hold no lone surrogate; each refusal is a
``MalformedInputError`` (400) with a stable code, never a 500.
"""

from __future__ import annotations

import json
import re
from typing import Final

from aiohttp import web

from ledger.errors import MalformedInputError, TooLargeError

#: Deepest nesting of arrays and objects a body may have (scopes and FHIR resources need
#: well under 20).
MAX_DEPTH: Final = 64
_UTF8: Final = frozenset({"utf-8", "utf8"})
#: Content codings aiohttp decodes before the handler reads (one coding, not a list).
_DECODED: Final = frozenset({"", "identity", "gzip", "deflate", "br", "zstd"})
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The decoded body, refused (``TooLargeError``) as soon as it passes ``limit`` bytes."""
    codings = request.headers.getall("Content-Encoding", [])
    if len(codings) > 1 or (codings and codings[0].strip().lower() not in _DECODED):
        raise MalformedInputError(
            "Content-Encoding must be one of gzip, deflate, br, zstd or identity",
            code="unsupported_encoding",
        )
    too_large = TooLargeError(f"the body may be at most {limit} bytes", code="body_too_large")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    body = bytearray()
    # request.content yields the body after chunked and Content-Encoding decoding.
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _check(value: object) -> None:
    """Refuse nesting deeper than ``MAX_DEPTH`` and strings (keys too) with a lone surrogate
    (a "\\ud800" escape decodes to one, and no UTF-8 store or encoder accepts it)."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_DEPTH:
                raise MalformedInputError(
                    f"the body nests arrays and objects more than {MAX_DEPTH} deep",
                    code="too_deep",
                )
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
        elif isinstance(item, str) and _SURROGATE.search(item):
            raise MalformedInputError(
                "the body holds a lone surrogate (an unpaired \\ud800-\\udfff escape)",
                code="lone_surrogate",
            )


def parse_json(data: bytes, charset: str | None) -> object:
    """The JSON value in ``data``; ``MalformedInputError`` with a stable code otherwise."""
    if charset is not None and charset.strip().lower() not in _UTF8:
        raise MalformedInputError(
            "the body must be UTF-8 (charset=utf-8 or none)", code="unsupported_charset"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedInputError("the body is not valid UTF-8", code="invalid_utf8") from exc
    try:
        value = json.loads(text)
    except RecursionError as exc:  # the parser's own guard, far below the stack's end
        raise MalformedInputError(
            f"the body nests arrays and objects more than {MAX_DEPTH} deep", code="too_deep"
        ) from exc
    except ValueError as exc:
        raise MalformedInputError("the body is not JSON", code="invalid_json") from exc
    _check(value)
    return value


async def json_body(request: web.Request, limit: int) -> object:
    """Read (bounded) and parse the JSON body of ``request``."""
    return parse_json(await read_bounded(request, limit), request.charset)
