"""The compliance report: one facility's month, item by item of the teleradiology checklist.

Not imported by the package's ``__init__`` (it needs the rules and the registry, which
themselves import the reports): import it as ``ledger.audit.reports.compliance``.

Invariant: pure and deterministic. Every successful PHI access is held to the checklist
(``check_access``) against the registry as known at its own instant; the counts, the
exceptions and the alert each exception is matched to depend only on the accesses, the
registry changes, the alert rows and the cut-off ``at`` given, never on the order the
accesses are added in or on the clock. Design: docs/design/compliance.md, "The compliance
report".
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Final
from zoneinfo import ZoneInfo

from ledger.audit.query import LedgerPosition
from ledger.audit.registry import RegistryTimeline
from ledger.audit.reports.checks import check_identifier, check_instant
from ledger.audit.reports.compliance_model import (
    AlertStatus,
    ChecklistFacts,
    Closure,
    ComplianceException,
    ComplianceReport,
    ItemCount,
    RegistryLog,
)
from ledger.audit.reports.relays import RelayReport
from ledger.audit.rules.access import is_access, named_patient, patients_seen
from ledger.audit.rules.checklist import (
    Check,
    ChecklistConfig,
    Item,
    Outcome,
    access_day,
    applies,
    check_access,
)
from ledger.audit.rules.model import AppendedEvent, Position
from ledger.errors import MalformedInputError

#: The checklist items in the order the report lists them, with their plain titles.
ITEMS: Final[tuple[tuple[Check, str], ...]] = (
    (Check.BAA, "Business Associate Agreement in effect with the facility"),
    (Check.LICENSE, "Radiologist licensed in the patient's state"),
    (Check.CREDENTIAL, "Credential or privileges at the facility"),
    (Check.UNIQUE_USER, "Unique, current user account (not shared, unknown or ended)"),
    (Check.ENCRYPTED, "Encrypted transport"),
)
_ACCOUNT_RULES: Final = {
    "unknown": "account.unknown",
    "ended": "account.ended",
    "shared": "account.shared",
}
_ITEM_RULES: Final = {
    Check.BAA: "registry.baa_missing",
    Check.LICENSE: "registry.license_missing",
    Check.CREDENTIAL: "registry.credential_missing",
    Check.ENCRYPTED: "transport.unencrypted",
}
#: Every rule whose alerts an exception of the checklist can be matched to.
CHECKLIST_RULES: Final = tuple(sorted({*_ACCOUNT_RULES.values(), *_ITEM_RULES.values()}))
#: The rules that raise one alert per user and day (the first violating access), not one
#: per access (spec: one alert per (rule, user, facility[, state], day) per log).
DAILY_RULES: Final = frozenset(CHECKLIST_RULES) - {"transport.unencrypted"}
_MONTH: Final = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


def rule_for(check: Check, reason: str) -> str:
    """The rule id that raises an alert for an exception of ``check`` with ``reason``."""
    if check is Check.UNIQUE_USER:
        return _ACCOUNT_RULES.get(reason, "account.unknown")
    return _ITEM_RULES[check]


def month_window(month: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The instants [start, end) of calendar month ``YYYY-MM`` in ``zone``, in UTC."""
    m = _MONTH.fullmatch(month) if isinstance(month, str) else None
    if m is None or not 1970 <= int(m.group(1)) <= 8999:
        raise MalformedInputError("month must be YYYY-MM (1970-01 to 8999-12)")
    year, mon = int(m.group(1)), int(m.group(2))
    start = datetime(year, mon, 1, tzinfo=zone)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertRow:
    """An alert of a checklist rule at the facility, raised by the cut-off."""

    alert_id: int
    rule_id: str
    rule_version: int
    trigger: Position
    #: Its state at the cut-off (open, acknowledged, closed).
    state: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Pending:
    check: Check
    item: Item
    event: AppendedEvent
    day: date


class ComplianceTally:
    """The month's accesses at one facility, checked one at a time (the adapter feeds it
    leaf by leaf, so a busy month is never held in memory)."""

    def __init__(
        self,
        *,
        facility: str,
        month: str,
        timeline: RegistryTimeline,
        config: ChecklistConfig,
        origins: Mapping[int, str],
    ) -> None:
        self.facility = check_identifier("facility", facility)
        self.month = month
        self.start, self.end = month_window(month, config.zone)
        self._timeline = timeline
        self._config = config
        self._origins = dict(origins)
        self.recorded = 0
        self.checked = 0
        self._seen: set[Position] = set()
        self._outcomes: Counter[tuple[Check, Outcome, str]] = Counter()
        self._pending: list[_Pending] = []

    def add(self, event: AppendedEvent) -> None:
        """One PhiAccessEvent recorded at the facility in the month (any outcome); the
        same leaf given twice counts once; any other event is refused."""
        when = event.event_time
        when = when.replace(tzinfo=UTC) if when.tzinfo is None else when  # as the rules read it
        if not is_access(event) or event.text("facility", "id") != self.facility:
            raise MalformedInputError(f"leaf {event.position.leaf_index}: not an access here")
        if not self.start <= when < self.end:
            raise MalformedInputError(f"leaf {event.position.leaf_index}: not in {self.month}")
        if event.position in self._seen:
            return
        self._seen.add(event.position)
        self.recorded += 1
        if not applies(event):
            return
        self.checked += 1
        items = check_access(event, self._timeline.known_at(when), self._config)
        for check, item in items.items():
            keep = "" if item.outcome is Outcome.COVERED else item.reason
            self._outcomes[(check, item.outcome, keep)] += 1
            if item.outcome is Outcome.EXCEPTION:
                day = access_day(event, self._config)
                self._pending.append(_Pending(check=check, item=item, event=event, day=day))

    @property
    def config(self) -> ChecklistConfig:
        return self._config

    @property
    def registry_changes(self) -> int:
        return self._timeline.size

    def origin(self, log_id: int) -> str | None:
        return self._origins.get(log_id)

    def position(self, p: Position) -> LedgerPosition:
        origin = self._origins.get(p.log_id)
        if origin is None:
            raise MalformedInputError(f"no checkpoint names log {p.log_id}")
        return LedgerPosition(log_id=p.log_id, origin=origin, leaf_index=p.leaf_index)

    def counts(self, check: Check) -> Counter[tuple[Outcome, str]]:
        return Counter({(o, r): n for (c, o, r), n in self._outcomes.items() if c is check})

    def pending(self) -> list[_Pending]:
        order = [c for c, _ in ITEMS]
        return sorted(
            self._pending,
            key=lambda x: (x.event.event_time, x.event.position, order.index(x.check)),
        )


def build_compliance(
    tally: ComplianceTally,
    *,
    at: datetime,
    alerts: Iterable[AlertRow],
    evaluated_to: Mapping[int, int],
    relays: RelayReport,
    ledger_reads: int,
    closures: Iterable[Closure],
    registry: RegistryLog | None,
) -> ComplianceReport:
    """The report from a filled ``tally`` and what the alert store held at ``at``."""
    at = check_instant("at", at)
    by_trigger = {(a.rule_id, a.trigger): a for a in alerts if a.rule_id in CHECKLIST_RULES}
    exceptions = _match(tally, by_trigger, evaluated_to)
    items = tuple(_item(tally, check, title, exceptions) for check, title in ITEMS)
    return ComplianceReport(
        facility=tally.facility,
        month=tally.month,
        start=tally.start,
        end=tally.end,
        at=at,
        config=ChecklistFacts(
            timezone=tally.config.timezone,
            licensed_roles=tally.config.licensed_roles,
            credentialed_roles=tally.config.credentialed_roles,
            ignore_users=tally.config.ignore_users,
        ),
        registry=registry,
        registry_changes=tally.registry_changes,
        accesses_recorded=tally.recorded,
        accesses_checked=tally.checked,
        items=items,
        exceptions=exceptions,
        evaluated_to=_evaluated(tally, evaluated_to),
        relays=relays,
        ledger_reads=ledger_reads,
        closures=tuple(sorted(closures, key=lambda c: (c.closed_at, c.alert_id))),
    )


def _evaluated(tally: ComplianceTally, to: Mapping[int, int]) -> tuple[tuple[str, int], ...]:
    named = ((tally.origin(log), n) for log, n in to.items())
    return tuple(sorted((o, n) for o, n in named if o is not None))


def _day_key(p: _Pending, rule_id: str) -> tuple[object, ...]:
    state = p.item.reason if p.check is Check.LICENSE else ""
    user = p.event.text("actor", "user_id") or ""
    return (rule_id, p.event.position.log_id, user, p.day, state)


def _match(
    tally: ComplianceTally,
    by_trigger: Mapping[tuple[str, Position], AlertRow],
    evaluated_to: Mapping[int, int],
) -> tuple[ComplianceException, ...]:
    pending = tally.pending()
    daily: dict[tuple[object, ...], AlertRow] = {}
    for p in pending:
        rule = rule_for(p.check, p.item.reason)
        own = by_trigger.get((rule, p.event.position))
        if own is not None and rule in DAILY_RULES:
            daily.setdefault(_day_key(p, rule), own)
    out: list[ComplianceException] = []
    for p in pending:
        rule = rule_for(p.check, p.item.reason)
        alert = by_trigger.get((rule, p.event.position))
        status = AlertStatus.RAISED
        if alert is None and rule in DAILY_RULES:
            alert = daily.get(_day_key(p, rule))
            status = AlertStatus.SAME_DAY
        if alert is None:
            reached = evaluated_to.get(p.event.position.log_id, 0)
            late = p.event.position.leaf_index >= reached
            status = AlertStatus.NOT_EVALUATED if late else AlertStatus.NO_ALERT
        out.append(_exception(tally, p, rule, status, alert))
    return tuple(out)


def _exception(
    tally: ComplianceTally,
    p: _Pending,
    rule: str,
    status: AlertStatus,
    alert: AlertRow | None,
) -> ComplianceException:
    e = p.event
    named = named_patient(e)
    return ComplianceException(
        check=p.check.value,
        reason=p.item.reason,
        rule_id=rule,
        event_id=e.text("event_id") or "",
        event_time=e.event_time.astimezone(UTC),
        position=tally.position(e.position),
        user_id=e.text("actor", "user_id") or "",
        patient_id=None if named is None else named.id,
        patient_issuer=None if named is None else named.issuer,
        patients=len(patients_seen(e)),
        registry=tuple(tally.position(r) for r in p.item.registry),
        alert_status=status,
        alert_id=None if alert is None else alert.alert_id,
        alert_state=None if alert is None else alert.state,
    )


def _item(
    tally: ComplianceTally,
    check: Check,
    title: str,
    exceptions: tuple[ComplianceException, ...],
) -> ItemCount:
    counts = tally.counts(check)

    def total(outcome: Outcome) -> int:
        return sum(n for (o, _), n in counts.items() if o is outcome)

    rules = sorted(_ACCOUNT_RULES.values()) if check is Check.UNIQUE_USER else [_ITEM_RULES[check]]
    return ItemCount(
        check=check.value,
        title=title,
        rule_ids=tuple(rules),
        covered=total(Outcome.COVERED),
        exception=total(Outcome.EXCEPTION),
        not_applicable=total(Outcome.NOT_APPLICABLE),
        undecidable=total(Outcome.UNDECIDABLE),
        reasons=tuple(sorted((o.value, r, n) for (o, r), n in counts.items() if r)),
        alerts=len(
            {x.alert_id for x in exceptions if x.check == check.value and x.alert_id is not None}
        ),
    )
