"""The console's HTML: Jinja2 templates with autoescaping, and the headers of every page.

Invariant: every value reaches a page through a template with autoescaping on (HTML and
SVG alike), and every answer under /console/ carries the strict Content-Security-Policy
(no inline script or style, nothing from another host), so an event field holding
markup is shown as text and can never run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import jinja2
from aiohttp import web

from ledger.audit import wording
from ledger.audit.auth import Permission, Principal

TEMPLATES: Final = Path(__file__).with_name("templates")
STATIC: Final = Path(__file__).with_name("static")

CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: Final = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_ENV: Final = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html", "svg"), default=True),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


_ENV.filters["when"] = _when
_ENV.filters["purpose"] = wording.purpose


def menu(who: Principal | None) -> list[tuple[str, str]]:
    """The pages this person's role may open (a page it may not use is not shown)."""
    if who is None:
        return []
    items = [("/console/", "Home")]
    if who.may(Permission.HISTORY):
        items.append(("/console/search", "Search"))
    if who.may(Permission.ALERTS):
        items.append(("/console/alerts", "Alerts"))
    if who.may(Permission.INVESTIGATE):
        items.append(("/console/investigations", "Breach investigation"))
    if who.may(Permission.COMPLIANCE):
        items.append(("/console/disclosures", "Disclosures"))
        items.append(("/console/relays", "Relays"))
    items.append(("/console/integrity", "Integrity"))
    return items


def page(
    template: str,
    *,
    who: Principal | None,
    status: int = 200,
    csrf: str = "",
    **values: Any,
) -> web.Response:
    """A rendered page with the console's headers."""
    text = _ENV.get_template(template).render(who=who, menu=menu(who), csrf=csrf, **values)
    response = web.Response(text=text, status=status, content_type="text/html")
    return response


def svg(template: str, values: Mapping[str, Any]) -> web.Response:
    text = _ENV.get_template(template).render(**values)
    return web.Response(text=text, content_type="image/svg+xml")


def secure_headers(response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
