"""``GET /console/static/{name}``: the console's own assets, from this package only.

Invariant: only a plain file name directly in ``static/`` with a known suffix is served
(no path separator, no dot-file, no other directory), so the route can never read
anything else; every answer says ``nosniff`` so a file is only ever run as its type.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from aiohttp import web

STATIC_DIR: Final = Path(__file__).parent / "static"
PATH: Final = "/console/static/{name}"
_TYPES: Final = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".woff2": "font/woff2",
}
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9]+)+")


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    kind = _TYPES.get(Path(name).suffix)
    path = STATIC_DIR / name
    if kind is None or not _NAME.fullmatch(name) or not path.is_file():
        raise web.HTTPNotFound(
            text='{"error": {"code": "not_found", "message": "no such console asset"}}',
            content_type="application/json",
        )
    return web.Response(
        body=path.read_bytes(),
        headers={
            "Content-Type": kind,
            "Cache-Control": "no-cache",
            "X-Content-Type-Options": "nosniff",
        },
    )
