"""Reports as one CSV table each (RFC 4180, CRLF).

Invariant: a cell that a spreadsheet would run as a formula is neutralised with a
leading apostrophe (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from typing import Final

from ledger.audit.reports.affected import AffectedPatient
from ledger.audit.reports.compliance_model import ComplianceReport
from ledger.audit.reports.disclosures import DisclosureAccounting, DisclosureEntry
from ledger.audit.reports.formats import Report, cell, investigation_summary, iso, seconds
from ledger.audit.reports.investigation import InvestigationReport
from ledger.audit.reports.relays import RelayException, RelayReport
from ledger.audit.reports.render_compliance import compliance_csv
from ledger.errors import MalformedInputError


def _csv(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows([cell(v) for v in row] for row in rows)
    return out.getvalue()


_PATIENT_COLUMNS: Final = (
    "patient_id",
    "issuer",
    "state",
    "other_states",
    "first_access",
    "last_access",
    "phi_kinds",
    "events",
    "users",
    "facilities",
    "disclosed_events",
    "note",
)

#: The last row of an investigation's table when truncated answers left patients unlisted.
_UNLISTED_NOTE: Final = (
    "{n} more patient(s) returned by {k} truncated answer(s) are not listed (not "
    "identified; some may be above): see truncated_answers in the JSON report"
)


_DISCLOSURE_COLUMNS: Final = (
    "date",
    "recipient_name",
    "recipient_address",
    "recipient_organization",
    "description",
    "purpose",
    "purpose_code",
    "count",
    "last_date",
    "needs_review",
    "event_ids",
    "ledger_positions",
)


_RELAY_EXCEPTION_COLUMNS: Final = (
    "event_id",
    "origin",
    "leaf_index",
    "category",
    "facility_id",
    "patient_id",
    "issuer",
    "study_uid",
    "sender",
    "recipient",
    "recipient_role",
    "method",
    "identified_at",
    "communicated_at",
    "acknowledged_at",
    "deadline_seconds",
    "delay_seconds",
    "attempts",
    "issues",
)


def to_csv(report: Report) -> str:
    """One CSV table (RFC 4180, CRLF): an investigation's patients, an accounting's entries,
    a relay report's exceptions, or a compliance report's lines. Formula-like cells are
    prefixed with an apostrophe."""
    if isinstance(report, InvestigationReport):
        return _csv(_PATIENT_COLUMNS, _investigation_rows(report))
    if isinstance(report, DisclosureAccounting):
        return _csv(_DISCLOSURE_COLUMNS, (_disclosure_row(e) for e in report.entries))
    if isinstance(report, RelayReport):
        return _csv(_RELAY_EXCEPTION_COLUMNS, (_relay_exception_row(x) for x in report.exceptions))
    if isinstance(report, ComplianceReport):
        return compliance_csv(report)
    raise MalformedInputError(f"not a report: {type(report).__name__}")


def _investigation_rows(report: InvestigationReport) -> list[tuple[object, ...]]:
    """One row per affected patient; truncated answers add a row that says how many
    patients they returned unlisted (a count, never silently left out); then the verdict
    and the per-state counts (``#verdict``, ``#state`` rows)."""
    rows = [_patient_row(p) for p in report.patients]
    if report.unlisted_patients:
        note = _UNLISTED_NOTE.format(n=report.unlisted_patients, k=len(report.truncated_answers))
        rows.append(("",) * (len(_PATIENT_COLUMNS) - 1) + (note,))
    return rows + [_padded(r) for r in _verdict_rows(report)]


#: The first cell of the verdict row and of the per-state rows that follow the patients.
CSV_VERDICT_ROW: Final = "#verdict"
CSV_STATE_ROW: Final = "#state"


def _verdict_rows(report: InvestigationReport) -> list[tuple[object, ...]]:
    """The opening sentence, then per state: residents, media notice (164.406(a)) and
    whether it is possible; the patients without a recorded state as state ``unknown``."""
    rows: list[tuple[object, ...]] = [(CSV_VERDICT_ROW, investigation_summary(report))]
    rows += [
        (
            CSV_STATE_ROW,
            s.state,
            s.residents,
            "media notice" if s.media_notice else "no media notice",
            "media notice possible" if s.media_notice_possible else "",
        )
        for s in report.states
    ]
    if report.unknown_state:
        rows.append((CSV_STATE_ROW, "unknown", report.unknown_state, "", ""))
    return rows


def _padded(row: tuple[object, ...]) -> tuple[object, ...]:
    return row + ("",) * (len(_PATIENT_COLUMNS) - len(row))


def _patient_row(p: AffectedPatient) -> tuple[object, ...]:
    return (
        p.patient_id,
        p.issuer,
        p.state,
        ";".join(p.other_states),
        iso(p.first_access),
        iso(p.last_access),
        ";".join(p.phi_kinds),
        p.events,
        ";".join(p.users),
        ";".join(p.facilities),
        p.disclosed_events,
        "",
    )


def _disclosure_row(e: DisclosureEntry) -> tuple[object, ...]:
    return (
        iso(e.disclosed_at),
        e.recipient_name,
        e.recipient_address,
        e.recipient_organization,
        e.description,
        e.purpose,
        e.purpose_code,
        e.count,
        iso(e.last_disclosed_at),
        "yes" if e.needs_review else "no",
        ";".join(str(s.event_id) for s in e.sources),
        ";".join(f"{s.position.origin}#{s.position.leaf_index}" for s in e.sources),
    )


def _relay_exception_row(x: RelayException) -> tuple[object, ...]:
    return (
        x.event_id,
        x.position.origin,
        x.position.leaf_index,
        x.category,
        x.facility_id,
        x.patient_id,
        x.patient_issuer,
        x.study_uid,
        x.sender_user_id,
        x.recipient_name,
        x.recipient_role,
        x.method,
        iso(x.identified_at),
        iso(x.communicated_at),
        iso(x.acknowledged_at),
        seconds(x.deadline),
        seconds(x.delay),
        x.attempts,
        ";".join(x.issues),
    )
