"""A report sealed with the checkpoints it was computed against and a digest of its content.

Invariant: pure and deterministic. The canonical content of a report is its JSON
(``to_json``) plus the checkpoints it was computed against (``as_of_checkpoints``) and the
detached periods it could not read (``unreadable_periods``, empty when complete),
serialised by ``canonical_json`` (UTF-8, keys sorted, no whitespace) after every
``log_id`` key is removed (a database's own numbering of its logs; the origin names a log
everywhere, so a replayed ledger gives the same content). The digest is
``sha256:`` + the hex SHA-256 of those bytes. Nothing in the content depends on when it was
computed: "now" is an input every report prints (``requested_at``, ``as_of``). The format is
specified in docs/design/reports.md, "Reports as of checkpoints".
"""

from __future__ import annotations

import csv
import hashlib
import html
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Final, Generic, TypeVar

from ledger.audit.records import JsonValue
from ledger.audit.reports.compliance_model import ComplianceReport
from ledger.audit.reports.disclosures import DisclosureAccounting
from ledger.audit.reports.formats import Report, cell
from ledger.audit.reports.investigation import InvestigationReport
from ledger.audit.reports.relays import RelayReport
from ledger.audit.reports.render_csv import to_csv
from ledger.audit.reports.render_html import to_html
from ledger.audit.reports.render_json import to_json
from ledger.audit.reports.rows import ReportCheckpoint
from ledger.audit.unreadable import (
    UnreadablePeriod,
    banner,
    period_cells,
    periods_json,
    through,
    unreadable,
)
from ledger.errors import MalformedInputError

R = TypeVar("R", bound=Report)
#: The reports with a printable page.
H = TypeVar("H", DisclosureAccounting, ComplianceReport, InvestigationReport)

#: The key of the checkpoints a report was computed against, in its JSON.
AS_OF_KEY: Final = "as_of_checkpoints"
#: The key of the detached periods a report could not read, in its JSON.
UNREADABLE_KEY: Final = "unreadable_periods"
#: The key of the digest in a sealed report's JSON (not part of the digested content).
DIGEST_KEY: Final = "digest"
#: Keys removed from the content before it is digested (database-local numbering).
_LOCAL_KEYS: Final = frozenset({"log_id"})
#: The first cell of a CSV footer row naming a checkpoint, and of the digest's row.
CSV_CHECKPOINT_ROW: Final = "#as_of_checkpoint"
CSV_DIGEST_ROW: Final = "#digest"
#: The first cell of a CSV leading row naming a period the report could not read.
CSV_UNREADABLE_ROW: Final = "#unreadable_period"
#: How far around its window a relay report reads relay records (``ledger.pg.reports``:
#: ``RELAY_RECORD_LEAD`` before the start, ``DEFAULT_RELAY_RECORD_LAG`` after the end).
RELAY_READ_LEAD: Final = timedelta(days=1)
RELAY_READ_LAG: Final = timedelta(days=30)


@dataclass(frozen=True, slots=True, kw_only=True)
class Sealed(Generic[R]):
    """A report and the signed checkpoints (one per log, by origin) it was computed
    against: it read no leaf at or past their sizes."""

    report: R
    as_of: tuple[ReportCheckpoint, ...]
    #: The detached periods whose events the report could not read (by period).
    unreadable: tuple[UnreadablePeriod, ...] = ()


def event_range(report: Report) -> tuple[datetime, datetime]:
    """``[since, until)``: the event times a report reads."""
    if isinstance(report, InvestigationReport):
        return report.scope.start, report.scope.end
    if isinstance(report, DisclosureAccounting):
        return report.period_start, through(report.requested_at)
    if isinstance(report, RelayReport):
        return report.start - RELAY_READ_LEAD, report.end + RELAY_READ_LAG
    if isinstance(report, ComplianceReport):
        return report.start, report.end
    raise MalformedInputError(f"not a report: {type(report).__name__}")


def with_unreadable(sealed: Sealed[R], detached: Iterable[UnreadablePeriod]) -> Sealed[R]:
    """``sealed`` naming the ``detached`` periods its report's range overlaps."""
    since, until = event_range(sealed.report)
    return replace(sealed, unreadable=unreadable(detached, since, until))


def seal(report: R, as_of: tuple[ReportCheckpoint, ...]) -> Sealed[R]:
    origins = [c.origin for c in as_of]
    if len(set(origins)) != len(origins):
        raise MalformedInputError("two checkpoints given for one log")
    return Sealed(report=report, as_of=tuple(sorted(as_of, key=lambda c: c.origin)))


def canonical_json(value: JsonValue) -> bytes:
    """UTF-8 JSON with keys sorted and no insignificant whitespace (non-ASCII kept as is;
    floats as Python's shortest repr: the reports only hold whole or decimal seconds)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _checkpoint_json(c: ReportCheckpoint) -> dict[str, JsonValue]:
    return {
        "log_id": c.log_id,
        "origin": c.origin,
        "size": c.size,
        "root_hash": c.root_hash,
        "key_ids": list(c.key_ids),
        "note": c.note,
    }


def content(sealed: Sealed[R]) -> dict[str, JsonValue]:
    """The report's JSON with the checkpoints it was computed against."""
    body = to_json(sealed.report)
    if AS_OF_KEY in body or DIGEST_KEY in body or UNREADABLE_KEY in body:
        raise MalformedInputError("a report's JSON already holds the seal's keys")
    body[AS_OF_KEY] = [_checkpoint_json(c) for c in sealed.as_of]
    body[UNREADABLE_KEY] = periods_json(sealed.unreadable)
    return body


def _portable(value: JsonValue) -> JsonValue:
    if isinstance(value, dict):
        return {k: _portable(v) for k, v in value.items() if k not in _LOCAL_KEYS}
    if isinstance(value, list):
        return [_portable(v) for v in value]
    return value


def digest_of(body: dict[str, JsonValue]) -> str:
    """The digest of a report's JSON (with or without its ``digest`` key): what anyone
    holding the JSON recomputes to check it."""
    rest: JsonValue = {k: v for k, v in body.items() if k != DIGEST_KEY}
    return "sha256:" + hashlib.sha256(canonical_json(_portable(rest))).hexdigest()


def digest(sealed: Sealed[R]) -> str:
    return digest_of(content(sealed))


def sealed_json(sealed: Sealed[R]) -> bytes:
    """The report's JSON, its checkpoints and its digest, in canonical form."""
    body = content(sealed)
    body[DIGEST_KEY] = digest_of(body)
    return canonical_json(body)


def sealed_csv(sealed: Sealed[R]) -> str:
    """The report's CSV table, then one footer row per checkpoint (``#as_of_checkpoint``,
    origin, size, root hash, key ids) and a last row (``#digest``, the digest), each
    padded to the table's width so the file stays one rectangular table. A report that
    could not read some period opens with one row per period (``#unreadable_period``,
    period, state, archive digest, first and last event time) before its header."""
    table = to_csv(sealed.report)
    width = len(next(csv.reader([table.split("\r\n", 1)[0]])))
    lead: list[list[object]] = [[CSV_UNREADABLE_ROW, *period_cells(p)] for p in sealed.unreadable]
    rows: list[list[object]] = [
        [CSV_CHECKPOINT_ROW, c.origin, c.size, c.root_hash, ";".join(c.key_ids)]
        for c in sealed.as_of
    ]
    rows.append([CSV_DIGEST_ROW, digest(sealed)])
    return _rows(lead, width) + table + _rows(rows, width)


def _rows(rows: list[list[object]], width: int) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    for row in rows:
        padded = row + [""] * max(0, width - len(row))
        writer.writerow([cell(v) for v in padded])
    return out.getvalue()


_HTML_END: Final = "</body>\n</html>\n"
_HTML_BODY: Final = "<body>\n"


def sealed_html(sealed: Sealed[H]) -> str:
    """The printable accounting, compliance report or investigation, ending with the
    checkpoints it was computed against and its digest."""
    page = _with_banner(to_html(sealed.report), sealed.unreadable)
    items = "".join(
        f"<li>{_e(c.origin)} at size {_e(c.size)}, root hash {_e(c.root_hash)}, "
        f"signed by {_e(', '.join(c.key_ids))}</li>\n"
        for c in sealed.as_of
    )
    block = (
        '<div class="ref"><p>Computed against the signed checkpoints:</p>\n'
        f"<ul>\n{items}</ul>\n<p>Content digest: {_e(digest(sealed))}</p></div>\n"
    )
    return page[: -len(_HTML_END)] + block + _HTML_END


def _with_banner(page: str, periods: tuple[UnreadablePeriod, ...]) -> str:
    """The page opening with a banner naming the periods it does not include."""
    text = banner(periods)
    if text is None:
        return page
    block = (
        '<p class="unreadable" role="alert" style="border:2px solid #a00;color:#a00;'
        f'padding:.5em">{_e(text)}</p>\n'
    )
    head, found, rest = page.partition(_HTML_BODY)
    return head + found + block + rest if found else block + page


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
