"""The breach investigation as a printable, self-contained HTML page (for counsel).

Invariant: no scripts and no external resources (a CSP forbids both), every value is
HTML-escaped, and the page opens with the report's plain sentence; codes are spelled out
(``ledger.audit.wording``) and ledger references go to an appendix.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Final

from ledger.audit import wording
from ledger.audit.reports.formats import investigation_summary
from ledger.audit.reports.investigation import InvestigationReport, TimelineEntry

_STYLE: Final = """
body{font-family:Georgia,serif;margin:2em auto;max-width:60em;color:#111}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;width:100%;font-size:.9em}
th,td{border:1px solid #555;padding:.35em .5em;text-align:left;vertical-align:top}
th{background:#eee}.ref{font-family:monospace;font-size:.75em;color:#444}
.verdict{font-size:1.15em;border:2px solid #111;padding:.6em}.flag{font-weight:bold}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = ["<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows]
    if not body:
        body = [f'<tr><td colspan="{len(header)}">{_e(empty)}</td></tr>']
    return (
        f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + ("\n</tbody>\n</table>\n")
    )


def investigation_html(report: InvestigationReport) -> str:
    r = report
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        "<title>Breach investigation</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        "<h1>Breach investigation</h1>\n"
        f'<p class="verdict">{_e(investigation_summary(r))}</p>\n'
        f"{_scope(r)}{_notices(r)}"
        "<h2>Affected residents by state</h2>\n"
        f"{_states(r)}"
        "<h2>Affected patients</h2>\n"
        f"{_patients(r)}{_truncated(r)}"
        "<h2>Appendix: the events in scope, with their ledger references</h2>\n"
        f"{_timeline(r.timeline)}"
        "</body>\n</html>\n"
    )


def _scope(r: InvestigationReport) -> str:
    s = r.scope
    lines = [f"From {_e(wording.when(s.start))} to {_e(wording.when(s.end))} (end excluded)"]
    if s.users:
        lines.append(f"Users: {_e(', '.join(s.users))}")
    if s.facility is not None:
        lines.append(f"Facility: {_e(s.facility)}")
    if s.network_addresses:
        lines.append(f"Network addresses: {_e(', '.join(s.network_addresses))}")
    return "<p>" + "<br>".join(lines) + "</p>\n"


def _notices(r: InvestigationReport) -> str:
    t = r.threshold
    if r.hhs_contemporaneous_notice:
        hhs = f"notify the Secretary now ({t} or more individuals)"
    elif r.hhs_contemporaneous_notice_possible:
        hhs = "possibly required: identify the patients that truncated answers did not list"
    else:
        hhs = f"fewer than {t} individuals: enter in the annual log (164.408(c))"
    media = [x.state for x in r.states if x.media_notice]
    return (
        "<ul>\n"
        f"<li>HHS, 45 CFR 164.408(b): {_e(hhs)}</li>\n"
        f"<li>Media, 45 CFR 164.406(a) (more than {_e(t)} residents of one state): "
        f"{_e(', '.join(media) or 'none')}</li>\n"
        f"<li>Individuals identified: {_e(r.individuals)}; without a recorded state: "
        f"{_e(r.unknown_state)}; not listed by truncated answers: {_e(r.unlisted_patients)}"
        "</li>\n</ul>\n"
    )


def _states(r: InvestigationReport) -> str:
    rows = [
        (
            _e(s.state),
            _e(s.residents),
            '<span class="flag">media notice</span>'
            if s.media_notice
            else ("possible: establish residence" if s.media_notice_possible else "no"),
        )
        for s in r.states
    ]
    if r.unknown_state:
        rows.append(("not recorded", _e(r.unknown_state), ""))
    return _table(("State", "Residents", "Media notice"), rows, "No state recorded.")


def _patients(r: InvestigationReport) -> str:
    rows = [
        (
            _e(p.patient_id if p.issuer is None else f"{p.patient_id} ({p.issuer})"),
            _e(p.state or "not recorded"),
            _e(wording.when(p.first_access)),
            _e(wording.when(p.last_access)),
            _e(", ".join(p.phi_kinds)),
            _e(p.events),
            _e(", ".join(p.users)),
        )
        for p in r.patients
    ]
    header = ("Patient", "State", "First access", "Last access", "Information", "Events", "By")
    return _table(header, rows, "No patient affected.")


def _truncated(r: InvestigationReport) -> str:
    if not r.truncated_answers:
        return ""
    rows = [
        (_e(wording.when(t.source.event_time)), _e(t.listed), _e(t.total), _ref(t.source.event_id))
        for t in r.truncated_answers
    ]
    return "<h2>Answers that returned patients they do not list</h2>\n" + _table(
        ("Time", "Listed", "Returned", "Event"), rows, ""
    )


def _ref(value: object) -> str:
    return f'<span class="ref">{_e(value)}</span>'


def _timeline(entries: Sequence[TimelineEntry]) -> str:
    rows = [
        (
            _e(wording.when(e.event_time)),
            _e(e.user_id),
            _e(wording.action(e.action)),
            _e(wording.outcome(e.outcome)),
            _e(wording.purpose(e.purpose_of_use)),
            _e(e.patient_id or ""),
            _ref(f"{e.event_id} @ {e.position.origin}#{e.position.leaf_index}")
            + ("" if e.covered else " (after the named checkpoint)"),
        )
        for e in entries
    ]
    header = ("Time", "User", "Action", "Outcome", "Purpose", "Patient", "Ledger reference")
    return _table(header, rows, "No events matched this scope.")
