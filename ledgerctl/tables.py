"""Human-readable tables of API answers (rich), for the CLI.

Invariant: tables render exactly what the API returned, and a proof is shown
as verified only after it was checked here, offline, against the configured
verifier keys (never on the API's word).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import aiohttp
from rich.console import Console
from rich.table import Table

from ledger.errors import VerificationError
from ledger.log.checkpoint import parse_tlog_proof, verify_tlog_proof
from ledger.log.leaf import decode_leaf
from ledger.log.note import Verifier
from ledgerctl.client import Api
from producers.codec import Codec


async def fetch_history(
    api: Api, patient_id: str, issuer: str | None, limit: int
) -> list[dict[str, object]]:
    params = {"limit": str(limit)}
    if issuer:
        params["issuer"] = issuer
    async with api.session() as session:
        url = f"{api.url}/v1/patients/{patient_id}/accesses"
        async with session.get(url, params=params, timeout=aiohttp.ClientTimeout(10)) as resp:
            resp.raise_for_status()
            body = await resp.json()
    return cast(list[dict[str, object]], body["accesses"])


def report_console() -> Console:
    """A console wide enough for the history table even when output is not a terminal."""
    console = Console()
    return console if console.is_terminal else Console(width=200)


def render_history(
    console: Console,
    patient_id: str,
    entries: list[dict[str, object]],
    *,
    title: str | None = None,
    caption: str | None = None,
    with_patient: bool = False,
) -> None:
    """The entries as a table, newest first, codes spelled out (``ledger.audit.wording``)."""
    from ledgerctl.histories import columns, get, readable_row

    origins = sorted({get(e, "ledger", "origin").split("/", 1)[0] for e in entries})
    table = Table(
        title=title
        or f"Access history of patient {patient_id}: {len(entries)} entries, newest first",
        caption=caption
        or f"ledger {', '.join(origins) or '-'}; position = topic/partition#leaf index; "
        "seen: named by the event, or disclosed (returned by a query or a read)",
        title_justify="left",
        caption_justify="left",
    )
    rows = [readable_row(e, with_patient=with_patient) for e in entries]
    for i, column in enumerate(columns(with_patient=with_patient)):
        # Ids are never cut: their column is as wide as the longest (up to 40), and
        # anything longer folds onto the next line instead of ending in an ellipsis.
        widest = max((len(r[i]) for r in rows), default=0)
        table.add_column(
            column,
            no_wrap=column in ("time (UTC)", "position"),
            overflow="fold",
            min_width=min(widest, 40) if column in ("user", "patient") else None,
        )
    for r in rows:
        table.add_row(*r)
    console.print(table)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenEntry:
    event_id: str
    origin: str
    leaf_index: int
    checkpoint_size: int
    root_b64: str


async def prove_entries(
    api: Api,
    entries: list[dict[str, object]],
    verifiers: Sequence[Verifier],
    *,
    timeout: float = 30.0,
) -> list[ProvenEntry]:
    """Fetch each entry's tlog-proof and verify it offline against our verifier keys.

    Also checks that the proven leaf really is the listed event (decoded from the leaf).
    Raises VerificationError on the first entry that does not verify.
    """
    codec = Codec()
    out: list[ProvenEntry] = []
    deadline = time.monotonic() + timeout
    async with api.session(timeout=aiohttp.ClientTimeout(10)) as session:
        for entry in entries:
            event_id = str(entry["event_id"])
            while True:
                async with session.get(f"{api.url}/v1/events/{event_id}/proof") as resp:
                    if resp.status == 503 and time.monotonic() < deadline:
                        await asyncio.sleep(0.3)  # not yet covered by a signed checkpoint
                        continue
                    resp.raise_for_status()
                    text = await resp.text()
                    break
            proof = parse_tlog_proof(text)
            if proof.extra is None:
                raise VerificationError(f"proof for {event_id} does not carry its entry")
            checkpoint = verify_tlog_proof(text, proof.extra, verifiers)
            event = codec.decode(decode_leaf(proof.extra).value)
            if str(event.event_id) != event_id:
                raise VerificationError(
                    f"the proven leaf is event {event.event_id}, not {event_id}"
                )
            out.append(
                ProvenEntry(
                    event_id=event_id,
                    origin=checkpoint.origin,
                    leaf_index=proof.index,
                    checkpoint_size=checkpoint.size,
                    root_b64=base64.b64encode(checkpoint.root_hash).decode(),
                )
            )
    return out


def render_proofs(
    console: Console, proven: list[ProvenEntry], verifiers: Sequence[Verifier]
) -> None:
    keys = ", ".join(f"{v.name}+{v.key_id.hex()}" for v in verifiers)
    latest: dict[str, ProvenEntry] = {}
    for p in proven:
        if p.origin not in latest or p.checkpoint_size > latest[p.origin].checkpoint_size:
            latest[p.origin] = p
    console.print(
        f"[green]Verified:[/green] all {len(proven)} entries above are proven included "
        f"(RFC 6962 inclusion proofs) under checkpoints signed by {keys}:"
    )
    for origin, p in sorted(latest.items()):
        console.print(f"  {origin}  size {p.checkpoint_size}  root {p.root_b64}")
