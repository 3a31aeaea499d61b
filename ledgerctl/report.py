"""Human-readable reports of API answers (rich tables).

Invariant: reports render exactly what the API returned; nothing is computed
here that the API did not say.
"""

from __future__ import annotations

from typing import cast

import aiohttp
from rich.console import Console
from rich.table import Table


async def fetch_history(
    api_url: str, patient_id: str, issuer: str | None, limit: int
) -> list[dict[str, object]]:
    params = {"limit": str(limit)}
    if issuer:
        params["issuer"] = issuer
    async with aiohttp.ClientSession() as session:
        url = f"{api_url}/v1/patients/{patient_id}/accesses"
        async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(10)) as resp:
            resp.raise_for_status()
            body = await resp.json()
    return cast(list[dict[str, object]], body["accesses"])


def _get(entry: dict[str, object], *path: str) -> str:
    value: object = entry
    for key in path:
        if not isinstance(value, dict):
            return ""
        value = value.get(key)
    return "" if value is None else str(value)


def report_console() -> Console:
    """A console wide enough for the history table even when output is not a terminal."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def _position(entry: dict[str, object]) -> str:
    origin = _get(entry, "ledger", "origin")
    log = origin.split("/", 1)[1] if "/" in origin else origin
    return f"{log}#{_get(entry, 'ledger', 'leaf_index')}"


def render_history(console: Console, patient_id: str, entries: list[dict[str, object]]) -> None:
    origins = sorted({_get(e, "ledger", "origin").split("/", 1)[0] for e in entries})
    table = Table(
        title=f"Access history of patient {patient_id}: {len(entries)} entries, newest first",
        caption=f"ledger {', '.join(origins) or '-'}; position = topic/partition#leaf index",
        title_justify="left",
        caption_justify="left",
    )
    for column in (
        "time (UTC)",
        "user",
        "role",
        "event",
        "action",
        "outcome",
        "accession",
        "facility",
        "from",
        "purpose",
        "position",
    ):
        table.add_column(column, no_wrap=column in ("time (UTC)", "position"))
    for e in entries:
        table.add_row(
            _get(e, "time")[:19].replace("T", " "),
            _get(e, "user", "name") or _get(e, "user", "id"),
            _get(e, "user", "role"),
            _get(e, "event", "name"),
            _get(e, "action"),
            _get(e, "outcome"),
            _get(e, "study", "accession"),
            _get(e, "facility"),
            _get(e, "network_address"),
            _get(e, "purpose_of_use"),
            _position(e),
        )
    console.print(table)
