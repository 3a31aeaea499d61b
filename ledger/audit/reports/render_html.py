"""The accounting of disclosures as a printable, self-contained HTML page.

Invariant: no scripts and no external resources (a CSP forbids both), and every value
is HTML-escaped. The page is built by string concatenation; tests pin it byte for byte.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Final

from ledger.audit import wording
from ledger.audit.reports.compliance_model import ComplianceReport
from ledger.audit.reports.disclosures import (
    DisclosureAccounting,
    DisclosureEntry,
    group_repeats,
)
from ledger.audit.reports.investigation import InvestigationReport
from ledger.audit.reports.render_compliance import compliance_html
from ledger.audit.reports.render_investigation import investigation_html
from ledger.errors import MalformedInputError

_HTML_STYLE: Final = """
body{font-family:Georgia,serif;margin:2em auto;max-width:60em;color:#111}
h1{font-size:1.4em}table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border:1px solid #555;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#eee}.ref{font-family:monospace;font-size:.75em;color:#444}
.draft{border:2px solid #a00;color:#a00;padding:.5em;margin:1em 0}
@media print{.draft{border-color:#000;color:#000}}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _day(value: datetime) -> str:
    """A readable day: "6 December 2026"."""
    return wording.date(value)


def to_html(accounting: DisclosureAccounting | ComplianceReport | InvestigationReport) -> str:
    """The accounting (or a compliance report: ``compliance_html``; an investigation:
    ``investigation_html``) as a printable,
    self-contained HTML page (no scripts, no external resources; a CSP forbids both).
    Every value is HTML-escaped. The excluded disclosures are not shown: they are the
    privacy officer's worksheet (``to_json``), not the individual's accounting. A page
    with entries needing review is marked DRAFT."""
    if isinstance(accounting, ComplianceReport):
        return compliance_html(accounting)
    if isinstance(accounting, InvestigationReport):
        return investigation_html(accounting)
    if not isinstance(accounting, DisclosureAccounting):
        raise MalformedInputError("to_html renders an accounting of disclosures")
    a = accounting
    patient = a.patient.id if a.patient.issuer is None else f"{a.patient.id} ({a.patient.issuer})"
    # The patient's page groups repeat disclosures (164.528(b)(3)); the JSON and CSV keep
    # one line per disclosure for the privacy officer.
    entries = tuple(group_repeats(list(a.entries)))
    rows = [_html_row(n, e) for n, e in enumerate(entries, start=1)]
    body = (
        "\n".join(rows)
        if rows
        else '<tr><td colspan="6">No disclosures to account for in this period.</td></tr>'
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        "<title>Accounting of disclosures of protected health information</title>\n"
        f"<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
        "<h1>Accounting of disclosures of protected health information</h1>\n"
        f"{_draft(a.needs_review)}"
        f"<p>Patient: {_e(patient)}<br>"
        f"Period: {_e(_day(a.period_start))} to {_e(_day(a.requested_at))}<br>"
        f"Requested: {_e(wording.when(a.requested_at))}</p>\n"
        "<table>\n<thead><tr><th>No.</th><th>Date</th><th>Recipient</th><th>Address</th>"
        "<th>Information disclosed</th><th>Purpose</th></tr></thead>\n"
        f"<tbody>\n{body}\n</tbody>\n</table>\n"
        f"{_FOOTER}{_appendix(entries)}"
        "</body>\n</html>\n"
    )


_FOOTER: Final = (
    "<p>This accounting lists disclosures of your protected health information made in the "
    "period above, as 45 CFR 164.528 requires. It does not list disclosures for treatment, "
    "payment or health care operations, disclosures to you or made with your "
    "authorization, or the other disclosures 45 CFR 164.528(a)(1) excepts. Each "
    "numbered line's audit records are listed in the appendix; each can be verified "
    "against the signed audit log.</p>\n"
)


def _html_row(n: int, e: DisclosureEntry) -> str:
    """One table row: number, date (and the repeats it stands for), recipient, what, why."""
    recipient = (
        "<br>".join(_e(v) for v in (e.recipient_name, e.recipient_organization) if v)
        or "Not recorded"
    )
    date_cell = _e(_day(e.disclosed_at))
    if e.count > 1:
        date_cell += f"<br>{_e(e.count)} disclosures, the last on {_e(_day(e.last_disclosed_at))}"
    return (
        "<tr>"
        f"<td>{n}</td><td>{date_cell}</td><td>{recipient}</td>"
        f"<td>{_e(e.recipient_address) or 'Not recorded'}</td>"
        f"<td>{_e(e.description)}</td><td>{_e(e.purpose)}</td>"
        "</tr>"
    )


def _appendix(entries: tuple[DisclosureEntry, ...]) -> str:
    """The audit records behind each numbered line, for the privacy office."""
    if not entries:
        return ""
    items = "".join(
        f'<li value="{n}" class="ref">'
        + "<br>".join(
            f"{_e(s.event_id)} @ {_e(s.position.origin)}#{_e(s.position.leaf_index)}"
            for s in e.sources
        )
        + "</li>\n"
        for n, e in enumerate(entries, start=1)
    )
    return f"<h2>Appendix: audit record references</h2>\n<ol>\n{items}</ol>\n"


def _draft(needs_review: int) -> str:
    """The DRAFT banner of a page with entries a privacy officer must review first."""
    n = needs_review
    return (
        f'<p class="draft">DRAFT: {_e(n)} {"entry needs" if n == 1 else "entries need"} '
        "review by the privacy officer before this accounting is released.</p>\n"
        if n
        else ""
    )
