"""Reports as JSON-safe data (times ISO 8601 UTC, durations in seconds).

Invariant: the same report always gives the same data; every event carries its ledger
position.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.audit.query import LedgerPosition
from ledger.audit.records import JsonValue
from ledger.audit.reports.affected import AffectedPatient
from ledger.audit.reports.compliance_model import ComplianceReport
from ledger.audit.reports.disclosures import DisclosureAccounting, DisclosureEntry
from ledger.audit.reports.formats import Report, investigation_summary, iso, seconds
from ledger.audit.reports.investigation import (
    InvestigationReport,
    InvestigationScope,
    StateCount,
    TimelineEntry,
    TruncatedAnswer,
)
from ledger.audit.reports.relays import CategoryStats, DurationStats, RelayException, RelayReport
from ledger.audit.reports.render_compliance import compliance_json
from ledger.audit.reports.rows import EventRef
from ledger.errors import MalformedInputError


def _pos(p: LedgerPosition) -> dict[str, JsonValue]:
    return {"log_id": p.log_id, "origin": p.origin, "leaf_index": p.leaf_index}


def _event_ref_json(e: EventRef) -> dict[str, JsonValue]:
    return {"event_id": str(e.event_id), "time": iso(e.event_time), "ledger": _pos(e.position)}


def _strs(values: Iterable[str]) -> list[JsonValue]:
    return [str(v) for v in values]


def _dstats(s: DurationStats | None) -> JsonValue:
    if s is None:
        return None
    return {
        "count": s.count,
        "median_seconds": seconds(s.median),
        "p90_seconds": seconds(s.p90),
        "max_seconds": seconds(s.max),
    }


def to_json(report: Report) -> dict[str, JsonValue]:
    """The report as JSON-safe data (times ISO 8601 UTC, durations in seconds)."""
    if isinstance(report, InvestigationReport):
        return _investigation_json(report)
    if isinstance(report, DisclosureAccounting):
        return _disclosures_json(report)
    if isinstance(report, RelayReport):
        return _relays_json(report)
    if isinstance(report, ComplianceReport):
        return compliance_json(report)
    raise MalformedInputError(f"not a report: {type(report).__name__}")


def _investigation_json(r: InvestigationReport) -> dict[str, JsonValue]:
    return {
        "report": "breach-investigation",
        "summary": investigation_summary(r),
        "scope": _scope_json(r.scope),
        "notification": _notification_json(r),
        "states": [_state_json(x) for x in r.states],
        "patients": [_patient_json(p) for p in r.patients],
        "attempted_only": [{"patient_id": p.id, "issuer": p.issuer} for p in r.attempted_only],
        "timeline": [_timeline_json(e) for e in r.timeline],
        "checkpoints": [
            {"log_id": c.log_id, "origin": c.origin, "size": c.size, "note": c.note}
            for c in r.checkpoints
        ],
        "uncovered_events": r.uncovered_events,
        "truncated_answers": [_truncated_json(t) for t in r.truncated_answers],
    }


def _truncated_json(t: TruncatedAnswer) -> dict[str, JsonValue]:
    return {**_event_ref_json(t.source), "listed": t.listed, "total": t.total}


def _scope_json(s: InvestigationScope) -> dict[str, JsonValue]:
    return {
        "start": iso(s.start),
        "end": iso(s.end),
        "users": _strs(s.users),
        "facility": s.facility,
        "network_addresses": _strs(s.network_addresses),
    }


def _notification_json(r: InvestigationReport) -> dict[str, JsonValue]:
    return {
        "threshold": r.threshold,
        "individuals": r.individuals,
        "unknown_state": r.unknown_state,
        "unlisted_patients": r.unlisted_patients,
        "individuals_at_most": r.individuals_at_most,
        "hhs_contemporaneous_notice": r.hhs_contemporaneous_notice,
        "hhs_contemporaneous_notice_possible": r.hhs_contemporaneous_notice_possible,
        "hhs_rule": f"45 CFR 164.408(b): {r.threshold} or more individuals, all states "
        "together; otherwise the annual log of 164.408(c)",
        "media_notice_states": _strs(x.state for x in r.states if x.media_notice),
        "media_rule": f"45 CFR 164.406(a): more than {r.threshold} residents of one "
        "State or jurisdiction",
    }


def _state_json(x: StateCount) -> dict[str, JsonValue]:
    return {
        "state": x.state,
        "residents": x.residents,
        "media_notice": x.media_notice,
        "media_notice_possible": x.media_notice_possible,
    }


def _patient_json(p: AffectedPatient) -> dict[str, JsonValue]:
    return {
        "patient_id": p.patient_id,
        "issuer": p.issuer,
        "state": p.state,
        "other_states": _strs(p.other_states),
        "first_access": iso(p.first_access),
        "last_access": iso(p.last_access),
        "phi_kinds": _strs(p.phi_kinds),
        "events": p.events,
        "disclosed_events": p.disclosed_events,
        "users": _strs(p.users),
        "facilities": _strs(p.facilities),
    }


def _timeline_json(e: TimelineEntry) -> dict[str, JsonValue]:
    return {
        "event_id": str(e.event_id),
        "time": iso(e.event_time),
        "kind": e.kind,
        "ledger": _pos(e.position),
        "covered": e.covered,
        "completed": e.completed,
        "user_id": e.user_id,
        "user_role": e.user_role,
        "facility_id": e.facility_id,
        "patient_id": e.patient_id,
        "patient_issuer": e.patient_issuer,
        "dicom_event_id": e.dicom_event_id,
        "event_type_code": e.event_type_code,
        "action": e.action,
        "outcome": e.outcome,
        "study_uid": e.study_uid,
        "network_address": e.network_address,
        "purpose_of_use": e.purpose_of_use,
        "phi_kinds": _strs(e.phi_kinds),
        "disclosed_patients": e.disclosed_patients,
        "disclosed_total": e.disclosed_total,
    }


def _disclosure_json(e: DisclosureEntry) -> dict[str, JsonValue]:
    return {
        "date": iso(e.disclosed_at),
        "recipient": {
            "name": e.recipient_name,
            "address": e.recipient_address,
            "organization": e.recipient_organization,
        },
        "description": e.description,
        "purpose": e.purpose,
        "purpose_code": e.purpose_code,
        "citation": e.citation,
        "needs_review": e.needs_review,
        "count": e.count,
        "last_date": iso(e.last_disclosed_at),
        "sources": [_event_ref_json(x) for x in e.sources],
    }


def _disclosures_json(a: DisclosureAccounting) -> dict[str, JsonValue]:
    return {
        "report": "accounting-of-disclosures",
        "patient": {"id": a.patient.id, "issuer": a.patient.issuer},
        "requested_at": iso(a.requested_at),
        "period_start": iso(a.period_start),
        "needs_review": a.needs_review,
        "entries": [_disclosure_json(e) for e in a.entries],
        "excluded": [
            {
                "source": _event_ref_json(x.source),
                "purpose_code": x.purpose_code,
                "reason": x.reason,
            }
            for x in a.excluded
        ],
    }


def _relays_json(r: RelayReport) -> dict[str, JsonValue]:
    return {
        "report": "critical-result-relays",
        "start": iso(r.start),
        "end": iso(r.end),
        "as_of": iso(r.now),
        "facility": r.facility,
        "deadlines_seconds": {c: seconds(d) for c, d in r.deadlines},
        "relays": r.relays,
        "categories": [_category_json(c) for c in r.categories],
        "exceptions": [_relay_exception_json(x) for x in r.exceptions],
    }


def _category_json(c: CategoryStats) -> dict[str, JsonValue]:
    return {
        "category": c.category,
        "deadline_seconds": seconds(c.deadline),
        "relays": c.relays,
        "communicated": c.communicated,
        "acknowledged": c.acknowledged,
        "on_time": c.on_time,
        "late": c.late,
        "overdue": c.overdue,
        "pending": c.pending,
        "no_read_back": c.no_read_back,
        "identified_to_communicated": _dstats(c.identified_to_communicated),
        "identified_to_acknowledged": _dstats(c.identified_to_acknowledged),
    }


def _relay_exception_json(x: RelayException) -> dict[str, JsonValue]:
    return {
        "event_id": str(x.event_id),
        "ledger": _pos(x.position),
        "superseded": _strs(str(u) for u in x.superseded),
        "category": x.category,
        "facility_id": x.facility_id,
        "patient_id": x.patient_id,
        "patient_issuer": x.patient_issuer,
        "study_uid": x.study_uid,
        "sender_user_id": x.sender_user_id,
        "recipient": {"name": x.recipient_name, "role": x.recipient_role},
        "method": x.method,
        "identified_at": iso(x.identified_at),
        "communicated_at": iso(x.communicated_at),
        "acknowledged_at": iso(x.acknowledged_at),
        "deadline_seconds": seconds(x.deadline),
        "delay_seconds": seconds(x.delay),
        "attempts": x.attempts,
        "issues": _strs(x.issues),
    }
