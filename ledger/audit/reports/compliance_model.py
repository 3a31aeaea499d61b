"""The compliance report's result: what each line of it says (built by ``compliance``).

Invariant: plain values with no dependency on the rules or the registry, so every export
(``render_compliance``) and the report union (``formats``) can name them without loading
the rules; every exception carries its ledger position and the registry positions behind
it. Design: docs/design/compliance.md, "The compliance report".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from ledger.audit.query import LedgerPosition
from ledger.audit.reports.relays import RelayReport


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecklistFacts:
    """The rules' configuration the report was computed with, as it prints it."""

    timezone: str
    licensed_roles: tuple[str, ...]
    credentialed_roles: tuple[str, ...]
    ignore_users: tuple[str, ...]


class AlertStatus(StrEnum):
    """How an exception stands with the alerts (what the privacy officer follows up)."""

    #: An alert was raised at this access.
    RAISED = "raised"
    #: Covered by the alert raised at the same user's first such access that day (the
    #: rule alerts once per user and day).
    SAME_DAY = "same_day"
    #: The rules evaluator had not reached this access by the report's cut-off.
    NOT_EVALUATED = "not_evaluated"
    #: The evaluator passed this access and raised nothing (the rule was not running, or
    #: the registry as the evaluator knew it differed; see the registry positions).
    NO_ALERT = "no_alert"


@dataclass(frozen=True, slots=True, kw_only=True)
class Closure:
    """An alert at the facility closed in the month (by the cut-off)."""

    alert_id: int
    rule_id: str
    disposition: str
    closed_at: datetime
    closed_by: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ItemCount:
    """One checklist item over the month's checked accesses."""

    #: The checklist item (``ledger.audit.rules.checklist.Check`` value).
    check: str
    title: str
    rule_ids: tuple[str, ...]
    covered: int
    exception: int
    not_applicable: int
    undecidable: int
    #: (outcome, reason, accesses), for every exception and undecidable reason.
    reasons: tuple[tuple[str, str, int], ...]
    #: Distinct alerts the item's exceptions are matched to.
    alerts: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplianceException:
    """One access that failed one item, with the alert it is matched to."""

    check: str
    reason: str
    rule_id: str
    event_id: str
    event_time: datetime
    position: LedgerPosition
    user_id: str
    #: The patient the access named (id, issuer), if any; ``patients`` it reached.
    patient_id: str | None
    patient_issuer: str | None
    patients: int
    registry: tuple[LedgerPosition, ...]
    alert_status: AlertStatus
    alert_id: int | None
    alert_state: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistryLog:
    """The registry log the report read, up to its checkpoint's size."""

    origin: str
    size: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ComplianceReport:
    """The result of ``ledger.audit.reports.compliance.build_compliance``."""

    facility: str
    month: str
    start: datetime
    end: datetime
    #: The cut-off for the alert store (alerts raised, triage recorded) and the relays'
    #: "now": a re-run passes the same.
    at: datetime
    config: ChecklistFacts
    registry: RegistryLog | None
    registry_changes: int
    accesses_recorded: int
    accesses_checked: int
    items: tuple[ItemCount, ...]
    exceptions: tuple[ComplianceException, ...]
    #: Per log: the first leaf the rules evaluator had not evaluated by the cut-off.
    evaluated_to: tuple[tuple[str, int], ...]
    relays: RelayReport
    ledger_reads: int
    closures: tuple[Closure, ...]
