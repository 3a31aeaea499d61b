"""``ledger history``: a patient's, a user's, a study's or an accession's history, every
page, as a table or CSV, with the codes spelled out.

Invariant: the entries are exactly those the API answered (which records each page it
served), every page followed to its end within the snapshot the first page pinned (the
cursor carries it), and none dropped except the self-audit rows the caller asked to hide.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal
from urllib.parse import quote

import aiohttp

from ledger.audit import wording
from ledger.audit.reports.formats import cell
from ledgerctl.client import Api
from ledgerctl.unreadable import merge

Json = dict[str, object]
Subject = Literal["patient", "user", "study", "accession"]

_PATHS: Final = {
    "patient": "patients",
    "user": "users",
    "study": "studies",
    "accession": "accessions",
}
#: The largest page the API serves.
PAGE: Final = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryRequest:
    """Whose history, narrowed how (``qualifier``: the patient's issuer or the study's
    accession), and at most how many entries (None: every page)."""

    subject: Subject
    id: str
    qualifier: str | None = None
    since: str | None = None
    until: str | None = None
    limit: int | None = None
    #: Entries per request (the API serves at most ``PAGE``).
    page_size: int = PAGE

    def describe(self) -> str:
        """ "patient MRN-1 (issuer stmarys)", "user rad003.brenan", "study 1.2.3"."""
        text = f"{self.subject} {self.id}"
        if self.qualifier:
            text += f" ({'issuer' if self.subject == 'patient' else 'accession'} {self.qualifier})"
        return text

    def window(self) -> str:
        if self.since and self.until:
            return f" from {self.since} until {self.until}"
        if self.since:
            return f" since {self.since}"
        return f" until {self.until}" if self.until else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class History:
    entries: list[Json]
    pages: int
    #: Self-audit rows left out on request.
    hidden: int = 0
    #: The detached periods the API could not read (``unreadable_periods``, once each).
    unreadable: list[Json] = field(default_factory=list)


async def fetch_pages(api: Api, req: HistoryRequest) -> History:
    """Every page of the history (following ``next_cursor`` until there is none), or the
    first ``req.limit`` entries. A 400 becomes ``ValueError`` with the API's message."""
    url = f"{api.url}/v1/{_PATHS[req.subject]}/{quote(req.id, safe='')}/accesses"
    base: dict[str, str] = {}
    if req.qualifier:
        base["issuer" if req.subject == "patient" else "accession"] = req.qualifier
    for name, value in (("since", req.since), ("until", req.until)):
        if value is not None:
            base[name] = value
    entries: list[Json] = []
    unreadable: list[Json] = []
    pages, cursor = 0, None
    async with api.session(timeout=aiohttp.ClientTimeout(total=60)) as session:
        while req.limit is None or len(entries) < req.limit:
            want = (
                req.page_size if req.limit is None else min(req.page_size, req.limit - len(entries))
            )
            params = {**base, "limit": str(want)} | ({"cursor": cursor} if cursor else {})
            async with session.get(url, params=params) as resp:
                if resp.status == 400:
                    raise ValueError(_message(await resp.json(content_type=None)))
                resp.raise_for_status()
                body = await resp.json()
            pages += 1
            entries += [e for e in body.get("accesses", []) if isinstance(e, dict)]
            merge(unreadable, body.get("unreadable_periods"))
            cursor = body.get("next_cursor")
            if not cursor:
                break
    return History(entries=entries, pages=pages, unreadable=unreadable)


def _message(body: object) -> str:
    problem = body.get("error") if isinstance(body, dict) else None
    return str(problem.get("message") if isinstance(problem, dict) else body)


def hide_self_audit(history: History) -> History:
    """The history without the ledger's own read records (kind ``audit_log_used``)."""
    kept = [e for e in history.entries if e.get("kind") != wording.SELF_AUDIT_KIND]
    return History(entries=kept, pages=history.pages, hidden=len(history.entries) - len(kept),
                   unreadable=history.unreadable)  # fmt: skip


def empty_warning(req: HistoryRequest, history: History) -> str | None:
    """The warning for a history that shows nothing, never a silent empty table."""
    if history.entries:
        return None
    text = f"no events for {req.describe()}{req.window()}"
    if history.hidden:
        text += f" except {wording.count(history.hidden, 'ledger self-audit row')} (hidden)"
    return text


def get(entry: Json, *path: str) -> str:
    value: object = entry
    for key in path:
        if not isinstance(value, dict):
            return ""
        value = value.get(key)
    return "" if value is None else str(value)


def position(entry: Json) -> str:
    origin = get(entry, "ledger", "origin")
    log = origin.split("/", 1)[1] if "/" in origin else origin
    return f"{log}#{get(entry, 'ledger', 'leaf_index')}"


def patient(entry: Json) -> str:
    pid, issuer = get(entry, "patient", "id"), get(entry, "patient", "issuer")
    return f"{pid} ({issuer})" if pid and issuer else pid


def readable_row(entry: Json, *, with_patient: bool) -> list[str]:
    """One table row: time, who, what (spelled out), whom, where, ledger position."""
    kind = entry.get("kind")
    what = get(entry, "event", "name") or wording.kind(str(kind))
    action = get(entry, "action")
    row = [
        get(entry, "time")[:19].replace("T", " "),
        get(entry, "user", "name") or get(entry, "user", "id"),
        get(entry, "user", "role"),
        what if kind != wording.SELF_AUDIT_KIND else f"{what} (ledger self-audit)",
        wording.action(action) if action else "",
        wording.outcome(get(entry, "outcome") or None),
        wording.purpose(get(entry, "purpose_of_use") or None),
        get(entry, "attribution"),
    ]
    if with_patient:
        row.append(patient(entry))
    return [
        *row,
        get(entry, "study", "accession"),
        get(entry, "facility"),
        get(entry, "network_address"),
        position(entry),
    ]


def columns(*, with_patient: bool) -> list[str]:
    head = ["time (UTC)", "user", "role", "event", "action", "outcome", "purpose", "seen"]
    return (
        head
        + (["patient"] if with_patient else [])
        + [
            "accession",
            "facility",
            "from",
            "position",
        ]
    )


CSV_COLUMNS: Final = (
    "time",
    "kind",
    "user_id",
    "user_name",
    "user_role",
    "event",
    "action",
    "action_code",
    "outcome",
    "outcome_code",
    "purpose",
    "purpose_code",
    "attribution",
    "patient_id",
    "patient_issuer",
    "study_uid",
    "accession",
    "facility",
    "network_address",
    "event_id",
    "origin",
    "leaf_index",
)


def csv_text(entries: Iterable[Json]) -> str:
    """The history as CSV (RFC 4180, CRLF): codes spelled out next to the codes
    themselves; formula-like cells neutralised."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        action, outcome, purpose = get(e, "action"), get(e, "outcome"), get(e, "purpose_of_use")
        writer.writerow(
            cell(v)
            for v in (
                get(e, "time"),
                wording.kind(get(e, "kind")),
                get(e, "user", "id"),
                get(e, "user", "name"),
                get(e, "user", "role"),
                get(e, "event", "name"),
                wording.action(action) if action else "",
                action,
                wording.outcome(outcome or None),
                outcome,
                wording.purpose(purpose or None),
                purpose,
                get(e, "attribution"),
                get(e, "patient", "id"),
                get(e, "patient", "issuer"),
                get(e, "study", "uid"),
                get(e, "study", "accession"),
                get(e, "facility"),
                get(e, "network_address"),
                get(e, "event_id"),
                get(e, "ledger", "origin"),
                get(e, "ledger", "leaf_index"),
            )
        )
    return out.getvalue()


def caption(history: History, origins: Sequence[str]) -> str:
    hidden = (
        f"; {wording.count(history.hidden, 'ledger self-audit row')} hidden"
        if history.hidden
        else ""
    )
    return (
        f"{wording.count(history.pages, 'page')} read{hidden}; ledger {', '.join(origins) or '-'}; "
        "position = topic/partition#leaf index; seen: named by the event, or disclosed "
        "(returned by a query or a read)"
    )
