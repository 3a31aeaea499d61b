"""The compliance report as JSON-safe data, one CSV table and a printable HTML page.

Invariant: the same report always gives the same bytes; every exception carries its ledger
position; a CSV cell a spreadsheet would run as a formula is neutralised (``cell``) and
every HTML value is escaped; the page has no scripts and no external resources.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Sequence
from typing import Final

from ledger.audit.query import LedgerPosition
from ledger.audit.records import JsonValue
from ledger.audit.reports.compliance_model import (
    AlertStatus,
    ComplianceException,
    ComplianceReport,
    ItemCount,
)
from ledger.audit.reports.formats import cell, iso, seconds
from ledger.audit.reports.relays import CategoryStats

#: What each alert status means, in the report's words.
ALERT_STATUS_TEXT: Final = {
    AlertStatus.RAISED: "alert raised at this access",
    AlertStatus.SAME_DAY: "covered by the alert raised at this user's first such access that day",
    AlertStatus.NOT_EVALUATED: "no alert yet: the rules evaluator had not reached this access",
    AlertStatus.NO_ALERT: "no alert: the evaluator raised none (rule not running, or the "
    "registry it knew differed)",
}


def _pos(p: LedgerPosition) -> dict[str, JsonValue]:
    return {"log_id": p.log_id, "origin": p.origin, "leaf_index": p.leaf_index}


def compliance_json(r: ComplianceReport) -> dict[str, JsonValue]:
    c = r.config
    return {
        "report": "compliance",
        "facility": r.facility,
        "month": r.month,
        "timezone": c.timezone,
        "start": iso(r.start),
        "end": iso(r.end),
        "at": iso(r.at),
        "config": {
            "timezone": c.timezone,
            "licensed_roles": list(c.licensed_roles),
            "credentialed_roles": list(c.credentialed_roles),
            "ignore_users": list(c.ignore_users),
            "relay_deadlines_seconds": {k: seconds(v) for k, v in r.relays.deadlines},
        },
        "registry": None
        if r.registry is None
        else {"origin": r.registry.origin, "size": r.registry.size},
        "registry_changes": r.registry_changes,
        "accesses": {"recorded": r.accesses_recorded, "checked": r.accesses_checked},
        "items": [_item_json(i) for i in r.items],
        "exceptions": [_exception_json(x) for x in r.exceptions],
        "evaluated_to": [{"origin": o, "next_leaf": n} for o, n in r.evaluated_to],
        "relays": {
            "relays": r.relays.relays,
            "categories": [_category_json(s) for s in r.relays.categories],
        },
        "audit_of_access": {
            "accesses_recorded": r.accesses_recorded,
            "ledger_reads": r.ledger_reads,
        },
        "breach_process": {
            "closed": {k: v for k, v in _closed_counts(r).items()},
            "breach_investigations": [
                {
                    "alert_id": x.alert_id,
                    "rule_id": x.rule_id,
                    "closed_at": iso(x.closed_at),
                    "closed_by": x.closed_by,
                }
                for x in r.closures
                if x.disposition == "breach_investigation"
            ],
        },
    }


def _closed_counts(r: ComplianceReport) -> dict[str, int]:
    out = {"false_positive": 0, "policy_violation": 0, "breach_investigation": 0}
    for x in r.closures:
        out[x.disposition] = out.get(x.disposition, 0) + 1
    return out


def _item_json(i: ItemCount) -> dict[str, JsonValue]:
    return {
        "item": i.check,
        "title": i.title,
        "rule_ids": list(i.rule_ids),
        "covered": i.covered,
        "exception": i.exception,
        "not_applicable": i.not_applicable,
        "undecidable": i.undecidable,
        "reasons": [{"outcome": o, "reason": why, "accesses": n} for o, why, n in i.reasons],
        "alerts": i.alerts,
    }


def _exception_json(x: ComplianceException) -> dict[str, JsonValue]:
    return {
        "item": x.check,
        "reason": x.reason,
        "rule_id": x.rule_id,
        "event_id": x.event_id,
        "time": iso(x.event_time),
        "ledger": _pos(x.position),
        "user_id": x.user_id,
        "patient": None
        if x.patient_id is None
        else {"patient_id": x.patient_id, "issuer": x.patient_issuer},
        "patients": x.patients,
        "registry": [_pos(p) for p in x.registry],
        "alert": {"status": x.alert_status.value, "alert_id": x.alert_id, "state": x.alert_state},
    }


def _category_json(s: CategoryStats) -> dict[str, JsonValue]:
    return {
        "category": s.category,
        "deadline_seconds": seconds(s.deadline),
        "relays": s.relays,
        "met": s.on_time,
        "missed": s.late,
        "overdue": s.overdue,
        "pending": s.pending,
        "no_read_back": s.no_read_back,
    }


COMPLIANCE_COLUMNS: Final = (
    "section",
    "item",
    "measure",
    "count",
    "time",
    "origin",
    "leaf_index",
    "event_id",
    "user_id",
    "patient_id",
    "issuer",
    "reason",
    "rule_id",
    "alert_id",
    "alert_status",
)


def compliance_rows(r: ComplianceReport) -> list[tuple[object, ...]]:
    """Summary rows (section, item, measure, count) then one row per exception."""
    pad: tuple[object, ...] = ("",) * (len(COMPLIANCE_COLUMNS) - 4)
    rows: list[tuple[object, ...]] = [
        ("scope", "facility", r.facility, "", *pad),
        ("scope", "month", r.month, "", *pad),
        ("scope", "timezone", r.config.timezone, "", *pad),
        ("scope", "at", iso(r.at), "", *pad),
        ("audit", "accesses", "recorded", r.accesses_recorded, *pad),
        ("audit", "accesses", "checked", r.accesses_checked, *pad),
        ("audit", "ledger_reads", "recorded", r.ledger_reads, *pad),
    ]
    for i in r.items:
        for measure, n in (
            ("covered", i.covered),
            ("exception", i.exception),
            ("not_applicable", i.not_applicable),
            ("undecidable", i.undecidable),
        ):
            rows.append(("checklist", i.check, measure, n, *pad))
        for outcome, why, n in i.reasons:
            rows.append(("checklist", i.check, f"{outcome}:{why}", n, *pad))
    for s in r.relays.categories:
        for measure, n in (("met", s.on_time), ("missed", s.late), ("overdue", s.overdue),
                           ("pending", s.pending), ("no_read_back", s.no_read_back)):  # fmt: skip
            rows.append(("relays", s.category, measure, n, *pad))
    for disposition, n in _closed_counts(r).items():
        rows.append(("breach_process", "closed", disposition, n, *pad))
    rows.extend(_exception_row(x) for x in r.exceptions)
    return rows


def _exception_row(x: ComplianceException) -> tuple[object, ...]:
    return (
        "exception",
        x.check,
        "",
        "",
        iso(x.event_time),
        x.position.origin,
        x.position.leaf_index,
        x.event_id,
        x.user_id,
        x.patient_id,
        x.patient_issuer,
        x.reason,
        x.rule_id,
        x.alert_id,
        x.alert_status.value,
    )


def compliance_csv(r: ComplianceReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
    writer.writerow(COMPLIANCE_COLUMNS)
    writer.writerows([cell(v) for v in row] for row in compliance_rows(r))
    return out.getvalue()


# ------------------------------------------------------------------ HTML

_STYLE: Final = """
body{font-family:Georgia,serif;margin:2em auto;max-width:70em;color:#111}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;width:100%;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #555;padding:.3em .45em;text-align:left;vertical-align:top}
th{background:#eee}td.n{text-align:right}.ref{font-family:monospace;font-size:.75em;color:#444}
"""


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _table(header: Sequence[str], rows: Iterable[Sequence[object]], empty: str) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = (
        "\n".join("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in row) + "</tr>" for row in rows)
        or f'<tr><td colspan="{len(header)}">{_e(empty)}</td></tr>'
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>\n"


def compliance_html(r: ComplianceReport) -> str:
    """The report as a printable, self-contained page (every value escaped)."""
    c = r.config
    registry = (
        "none (no registry log was signed)"
        if r.registry is None
        else f"{r.registry.origin} up to size {r.registry.size} ({r.registry_changes} changes)"
    )
    items = _table(
        ("Checklist item", "Covered", "Exceptions", "Not applicable", "Undecidable", "Why",
         "Alerts", "Rules"),
        ((i.title, i.covered, i.exception, i.not_applicable, i.undecidable,
          "; ".join(f"{o} {why}: {n}" for o, why, n in i.reasons), i.alerts,
          ", ".join(i.rule_ids)) for i in r.items),
        "No checklist item.",
    )  # fmt: skip
    exceptions = _table(
        ("Time (UTC)", "Item", "Why", "User", "Patient", "Alert", "Ledger reference"),
        ((iso(x.event_time), x.check, x.reason, x.user_id,
          x.patient_id or "",
          (f"#{x.alert_id} ({x.alert_state}) " if x.alert_id is not None else "")
          + ALERT_STATUS_TEXT[x.alert_status],
          f"{x.event_id} @ {x.position.origin}#{x.position.leaf_index}") for x in r.exceptions),
        "No exception this month.",
    )  # fmt: skip
    relays = _table(
        ("ACR category", "Deadline (s)", "Relays", "Met", "Missed", "Overdue", "Pending",
         "No read-back"),
        ((s.category, seconds(s.deadline), s.relays, s.on_time, s.late, s.overdue, s.pending,
          s.no_read_back) for s in r.relays.categories),
        "No critical-result relay this month.",
    )  # fmt: skip
    closed = _closed_counts(r)
    breach = _table(
        ("Alert", "Rule", "Closed at (UTC)", "Closed by"),
        ((x.alert_id, x.rule_id, iso(x.closed_at), x.closed_by)
         for x in r.closures if x.disposition == "breach_investigation"),
        "No alert was closed with a breach investigation opened this month.",
    )  # fmt: skip
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" '
        "content=\"default-src 'none'; style-src 'unsafe-inline'\">\n"
        "<title>Compliance report</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        f"<h1>Compliance report: {_e(r.facility)}, {_e(r.month)}</h1>\n"
        f"<p>Month in time zone {_e(c.timezone)}: {_e(iso(r.start))} to {_e(iso(r.end))} "
        f"(UTC)<br>Alerts and triage as recorded by {_e(iso(r.at))}<br>"
        f"Registry: {_e(registry)}<br>"
        f"Licensed roles: {_e(', '.join(c.licensed_roles))}; credentialed roles: "
        f"{_e(', '.join(c.credentialed_roles))}</p>\n"
        f"<h2>Checklist ({_e(r.accesses_checked)} successful PHI accesses checked)</h2>\n"
        f"{items}<h2>Exceptions</h2>\n{exceptions}"
        f"<h2>Critical-result relays</h2>\n{relays}"
        f"<h2>Audit of access</h2>\n<p>{_e(r.accesses_recorded)} accesses recorded at this "
        f"facility; {_e(r.ledger_reads)} reads of the audit ledger recorded (all "
        "facilities).</p>\n"
        f"<h2>Breach process</h2>\n<p>Alerts closed this month: "
        f"{_e(closed['false_positive'])} false positive, {_e(closed['policy_violation'])} "
        f"policy violation, {_e(closed['breach_investigation'])} breach investigation "
        f"opened.</p>\n{breach}"
        "</body>\n</html>\n"
    )
