"""HIPAA reports over HTTP: breach investigations, accountings of disclosures, relays,
compliance per facility and month.

Invariant: every report is computed by ``ledger.audit.reports`` from one consistent
snapshot (``ReportSource``) as of a set of signed checkpoints (``as_of=<origin>:<size>``,
repeatable; default the latest of each log), and every export (JSON, CSV or, for
accountings and compliance reports, HTML) carries those checkpoints and the digest of
the report's canonical content (also in the ``Report-Digest`` header); the scope of a
report and the checkpoints named are recorded with the read (it is part of the
AuditLogUsed event), refusals included. Every report names the detached periods its
range overlaps (``unreadable_periods``, ``ledger.http.unreadable``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Protocol, TypeVar

from aiohttp import web

from ledger.audit.reports import (
    DEFAULT_RELAY_DEADLINES,
    CheckpointRef,
    ComplianceReport,
    DisclosureAccounting,
    InvestigationReport,
    InvestigationScope,
    PatientRef,
    RelayReport,
    Sealed,
    digest,
    parse_as_of,
    parse_as_of_notes,
    sealed_csv,
    sealed_html,
    sealed_json,
)
from ledger.errors import MalformedInputError
from ledger.http.body import json_body
from ledger.http.common import (
    AUDIT_PARAMS,
    PATIENT,
    RESULTS,
    disclose,
    identifier,
    instant,
    optional_identifier,
    time_window,
)
from ledger.http.unreadable import mark, sealed_unreadable

MAX_BODY: Final = 64 * 1024
_FORMATS: Final = frozenset({"json", "csv", "html"})


class ReportSource(Protocol):
    async def sealed_investigation(
        self,
        scope: InvestigationScope,
        *,
        threshold: int = 500,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> Sealed[InvestigationReport]: ...

    async def sealed_disclosures(
        self,
        patient: PatientRef,
        *,
        now: datetime | None = None,
        lookback_years: int = 6,
        summarise_repeated: bool = False,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> Sealed[DisclosureAccounting]: ...

    async def sealed_relays(
        self,
        *,
        start: datetime,
        end: datetime,
        now: datetime | None = None,
        deadlines: Mapping[str, timedelta] = DEFAULT_RELAY_DEADLINES,
        facility: str | None = None,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> Sealed[RelayReport]: ...

    async def sealed_compliance(
        self,
        *,
        facility: str,
        month: str,
        at: datetime | None = None,
        as_of: Sequence[CheckpointRef] | None = None,
    ) -> Sealed[ComplianceReport]: ...


REPORTS: Final = web.AppKey("reports", ReportSource)
_R = TypeVar("_R", InvestigationReport, DisclosureAccounting, RelayReport, ComplianceReport)


def _format(request: web.Request, allowed: frozenset[str], default: str = "json") -> str:
    raw = request.query.get("format", default)
    if raw not in allowed:
        raise MalformedInputError(f"format must be one of {', '.join(sorted(allowed))}")
    return raw


#: The response header carrying the digest of the report's canonical content.
DIGEST_HEADER: Final = "Report-Digest"


def _as_of(request: web.Request) -> tuple[CheckpointRef, ...] | None:
    """The checkpoints named by ``as_of`` (repeatable) and given by ``as_of_note`` (the
    base64 of a signed note, repeatable), or None for the latest of each log. Every one
    named is recorded with the read, whether it is then accepted or refused."""
    raw = request.query.getall("as_of", [])
    notes = request.query.getall("as_of_note", [])
    if raw:
        request[AUDIT_PARAMS] = {**request.get(AUDIT_PARAMS, {}), "as_of": ",".join(raw)}
    refs = parse_as_of_notes(notes, parse_as_of(raw))
    if notes:
        given = ",".join(str(r) for r in refs if r.note is not None)
        request[AUDIT_PARAMS] = {**request.get(AUDIT_PARAMS, {}), "as_of_note": given}
    return refs or None


def _at(request: web.Request) -> datetime:
    """``at``: the time the report is made as of (default: now); a re-run passes the
    one the report printed."""
    raw = request.query.get("at")
    return datetime.now(UTC) if raw is None else instant(raw, "at")


def export(sealed: Sealed[_R], fmt: str, name: str) -> web.Response:
    headers = {DIGEST_HEADER: digest(sealed)}
    response: web.Response
    report = sealed.report
    if fmt == "csv":
        headers["Content-Disposition"] = f'attachment; filename="{name}.csv"'
        response = web.Response(text=sealed_csv(sealed), content_type="text/csv", headers=headers)
    elif fmt == "html" and isinstance(
        report, DisclosureAccounting | ComplianceReport | InvestigationReport
    ):
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'"
        page = sealed_html(Sealed(report=report, as_of=sealed.as_of, unreadable=sealed.unreadable))
        response = web.Response(text=page, content_type="text/html", headers=headers)
    else:
        body = sealed_json(sealed)
        response = web.Response(body=body, content_type="application/json", headers=headers)
    mark(response, sealed.unreadable)
    return response


def _strings(body: Mapping[str, object], key: str) -> tuple[str, ...]:
    value = body.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise MalformedInputError(f"{key} must be a list of strings")
    return tuple(value)


def investigation_scope(request: web.Request, body: object) -> InvestigationScope:
    """The scope of an investigation from a JSON object (the API's body, the console's
    form), recorded with the read whether it is then accepted or refused."""
    if not isinstance(body, dict):
        raise MalformedInputError("the body must be a JSON object (the scope)")
    unknown = sorted(set(body) - {"users", "facility", "network_addresses", "since", "until"})
    if unknown:
        raise MalformedInputError(f"unknown scope field(s): {', '.join(k[:40] for k in unknown)}")
    since, until = body.get("since"), body.get("until")
    if not isinstance(since, str) or not isinstance(until, str):
        raise MalformedInputError("since and until are required RFC 3339 timestamps")
    facility = body.get("facility")
    if facility is not None and not isinstance(facility, str):
        raise MalformedInputError("facility must be a string")
    users = _strings(body, "users")
    addresses = _strings(body, "network_addresses")
    request[AUDIT_PARAMS] = {
        **request.get(AUDIT_PARAMS, {}),
        "scope.since": since,
        "scope.until": until,
        "scope.users": ",".join(users),
        "scope.facility": facility or "",
        "scope.network_addresses": ",".join(addresses),
    }
    return InvestigationScope(
        start=instant(since, "since"),
        end=instant(until, "until"),
        users=users,
        facility=None if facility is None else identifier(facility, "facility"),
        network_addresses=addresses,
    )


async def investigation(request: web.Request) -> web.Response:
    """POST /v1/investigations: affected patients, per-state counts, timeline; JSON, CSV
    or a printable HTML page, each opening with the verdict in one sentence."""
    fmt = _format(request, _FORMATS)
    as_of = _as_of(request)
    body = await json_body(request, MAX_BODY)  # bounded after decoding; 413 past it
    scope = investigation_scope(request, body)
    sealed = await sealed_unreadable(
        request, await request.app[REPORTS].sealed_investigation(scope, as_of=as_of)
    )
    report = sealed.report
    request[RESULTS] = len(report.patients)
    disclose(request, (e.position for e in report.timeline))
    return export(sealed, fmt, "investigation")


async def sealed_accounting(
    request: web.Request, formats: frozenset[str] = _FORMATS, default: str = "json"
) -> tuple[str, Sealed[DisclosureAccounting]]:
    """The ``format`` asked for (one of ``formats``) and the accounting of disclosures of
    the route's patient (``issuer``, ``years``, ``at``, ``as_of``), named with the read as
    its patient (refusals included), its entries disclosed."""
    patient_id = identifier(request.match_info["patient_id"], "patient id")
    issuer = optional_identifier(request, "issuer")
    request[PATIENT] = (patient_id, issuer)
    fmt = _format(request, formats, default)
    as_of = _as_of(request)
    raw_years = request.query.get("years", "6")
    if raw_years not in {"1", "2", "3", "4", "5", "6"}:
        raise MalformedInputError("years must be 1 to 6 (164.528 allows up to six)")
    sealed = await request.app[REPORTS].sealed_disclosures(
        PatientRef(id=patient_id, issuer=issuer),
        now=_at(request),
        lookback_years=int(raw_years),
        as_of=as_of,
    )
    sealed = await sealed_unreadable(request, sealed)
    accounting = sealed.report
    request[RESULTS] = len(accounting.entries)
    disclose(request, (s.position for e in accounting.entries for s in e.sources))
    disclose(request, (x.source.position for x in accounting.excluded))
    return fmt, sealed


async def disclosures(request: web.Request) -> web.Response:
    """GET /v1/patients/{id}/disclosures: the 164.528 accounting, JSON, CSV or HTML."""
    fmt, sealed = await sealed_accounting(request)
    return export(sealed, fmt, "disclosures")


@dataclass(frozen=True, slots=True, kw_only=True)
class RelayWindow:
    """What a relay report is asked for: [start, end) as of ``now``, the deadlines."""

    start: datetime
    end: datetime
    now: datetime
    deadlines: Mapping[str, timedelta]
    facility: str | None
    as_of: tuple[CheckpointRef, ...] | None


def relay_window(request: web.Request, *, default_days: int = 30) -> RelayWindow:
    """``since``, ``until``, ``at``, ``deadline_<category>`` (minutes), ``facility`` and
    ``as_of`` of a relay report; the window defaults to the ``default_days`` before now."""
    as_of = _as_of(request)
    since, until = time_window(request)
    now = _at(request)
    end = until or now
    start = since or end - timedelta(days=default_days)
    if start >= end:
        raise MalformedInputError("since must be before until")
    deadlines = dict(DEFAULT_RELAY_DEADLINES)
    for category in deadlines:
        raw = request.query.get(f"deadline_{category.lower()}")
        if raw is not None:
            if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 30 * 24 * 60:
                raise MalformedInputError(
                    f"deadline_{category.lower()} must be whole minutes from 1 to 43200"
                )
            deadlines[category] = timedelta(minutes=int(raw))
    facility = optional_identifier(request, "facility")
    return RelayWindow(start=start, end=end, now=now, deadlines=deadlines, facility=facility,
                       as_of=as_of)  # fmt: skip


async def sealed_relays(
    request: web.Request,
    w: RelayWindow,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    as_of: Sequence[CheckpointRef] | None = None,
) -> Sealed[RelayReport]:
    """The relay report of ``w`` (or of [start, end) within it, as of ``as_of``), its
    exceptions disclosed with the read."""
    sealed = await request.app[REPORTS].sealed_relays(
        start=start or w.start, end=end or w.end, now=w.now, deadlines=w.deadlines,
        facility=w.facility, as_of=as_of if as_of is not None else w.as_of,
    )  # fmt: skip
    sealed = await sealed_unreadable(request, sealed)
    disclose(request, (x.position for x in sealed.report.exceptions))
    return sealed


async def relays(request: web.Request) -> web.Response:
    """GET /v1/reports/critical-results: timeliness per ACR category, and exceptions."""
    fmt = _format(request, frozenset({"json", "csv"}))
    sealed = await sealed_relays(request, relay_window(request))
    request[RESULTS] = sealed.report.relays
    return export(sealed, fmt, "critical-results")


async def compliance(request: web.Request) -> web.Response:
    """GET /v1/reports/compliance: one facility's month, item by item of the checklist."""
    fmt = _format(request, _FORMATS)
    as_of = _as_of(request)
    raw_facility, month = request.query.get("facility"), request.query.get("month")
    if raw_facility is None or month is None:
        raise MalformedInputError("facility and month (YYYY-MM) are required")
    at = request.query.get("at")
    sealed = await request.app[REPORTS].sealed_compliance(
        facility=identifier(raw_facility, "facility"),
        month=month,
        at=None if at is None else instant(at, "at"),
        as_of=as_of,
    )
    sealed = await sealed_unreadable(request, sealed)
    report = sealed.report
    request[RESULTS] = report.accesses_checked
    disclose(request, (x.position for x in report.exceptions))
    return export(sealed, fmt, f"compliance-{report.month}")
