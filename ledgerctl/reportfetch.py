"""Reports read through the API, as the API answered them, with their seal.

Invariant: the CLI never recomputes a report: it prints the bytes the API answered
(which records the read) and the checkpoints and digest that answer carries; a 400 (a
refused scope or checkpoint) becomes ``ValueError`` with the API's message.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import aiohttp

from ledgerctl.client import Api

Json = dict[str, object]
#: The header the API sends the report's digest in.
DIGEST_HEADER = "Report-Digest"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A report as the API answered it: the body verbatim and its digest."""

    body: bytes
    digest: str
    #: The ``Unreadable-Periods`` header: the periods the report could not read.
    unreadable: str = ""

    def unreadable_lines(self) -> list[str]:
        """What the report could not read, one line per period (its JSON's details when
        the answer is JSON, else the header's labels)."""
        from ledgerctl.unreadable import header_lines, period_lines

        try:
            body = json.loads(self.body)
        except ValueError:
            body = None
        if isinstance(body, dict) and "unreadable_periods" in body:
            return period_lines(body["unreadable_periods"])
        return header_lines(self.unreadable)


async def fetch_report(
    api: Api,
    path: str,
    params: Sequence[tuple[str, str]],
    *,
    scope: Json | None = None,
) -> Answer:
    """GET ``path`` (or POST ``scope`` to it) with ``params``; the body and the digest."""
    async with api.session(timeout=aiohttp.ClientTimeout(total=120)) as session:
        method = session.get if scope is None else session.post
        async with method(f"{api.url}{path}", params=list(params), json=scope) as resp:
            if resp.status == 400:
                raise ValueError(_message(await resp.read()))
            resp.raise_for_status()
            return Answer(
                body=await resp.read(),
                digest=resp.headers.get(DIGEST_HEADER, ""),
                unreadable=resp.headers.get("Unreadable-Periods", ""),
            )


def _message(raw: bytes) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")[:500]
    problem = body.get("error") if isinstance(body, dict) else None
    message = problem.get("message") if isinstance(problem, dict) else None
    return str(message or body)


def as_of_params(
    as_of: Sequence[str] | None, report_file: Path | None = None
) -> list[tuple[str, str]]:
    """``as_of`` per ``<origin>:<size>``, and ``as_of_note`` per checkpoint a saved report
    (its JSON) names: its signed notes, which a replayed copy checks against its leaves."""
    params = [("as_of", a) for a in as_of or ()]
    if report_file is not None:
        try:
            body = json.loads(report_file.read_bytes())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{report_file}: not a saved JSON report ({exc})") from exc
        cps = body.get("as_of_checkpoints") if isinstance(body, dict) else None
        notes = [c.get("note") for c in cps if isinstance(c, dict)] if isinstance(cps, list) else []
        if not notes or not all(isinstance(n, str) for n in notes):
            raise ValueError(f"{report_file}: the report names no checkpoints")
        params += [("as_of_note", base64.b64encode(str(n).encode()).decode()) for n in notes]
    return params


def seal_lines(report: Json, digest: str) -> list[str]:
    """What a report was computed against, its digest, and how to re-run it."""
    cps = report.get("as_of_checkpoints")
    named = [c for c in cps if isinstance(c, dict)] if isinstance(cps, list) else []
    lines = [
        f"as of checkpoint {c.get('origin')}:{c.get('size')} root {c.get('root_hash')} "
        f"signed by {', '.join(str(k) for k in cast(list[object], c.get('key_ids') or []))}"
        for c in named
    ]
    lines.append(f"digest: {digest or report.get('digest')}")
    again = " ".join(f"--as-of {c.get('origin')}:{c.get('size')}" for c in named)
    cut_off = report.get("at")  # the compliance report's cut-off: a re-run passes it back
    if again and isinstance(cut_off, str):
        again += f" --at {cut_off}"
    lines.append(f"re-run as of the same checkpoints: {again or '(no signed checkpoint yet)'}")
    return lines
