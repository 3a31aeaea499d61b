"""The registry rules: an access checked against the compliance registry as known at its
time, one alert per (rule, user, facility[, state], calendar day) per log.

Invariant: each rule reads only the checklist items ``check_access`` computed for the
access (one computation shared by all six) and its own per-log set of days already
alerted, so the same leaves give the same findings. The first violating access of a day
raises; later ones that day raise nothing (the compliance report counts them). Evidence:
the trigger and every registry position the item cites (role ``registry``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from ledger.audit.records import JsonValue
from ledger.audit.rules.access import facility_id, named_patient, patients_seen, user_id
from ledger.audit.rules.checklist import Check, ChecklistConfig, Item, Outcome, access_day
from ledger.audit.rules.config import RulesConfig
from ledger.audit.rules.model import AppendedEvent, Evidence, Finding, Severity

VERSION: Final = 1
REGISTRY_ROLE: Final = "registry"

#: (rule id, facility, user, state or "", ISO day) already alerted in one log.
DayKey = tuple[str, str, str, str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class _Spec:
    check: Check
    reason: str  # the item's reason (a prefix for the license's "no_license:<state>")
    what: str  # the summary's words


#: Each rule's checklist item and the exception it alerts on.
SPECS: Final[Mapping[str, _Spec]] = {
    "registry.baa_missing": _Spec(
        check=Check.BAA, reason="no_baa",
        what="as a member of a business associate with no BAA with the facility in effect",
    ),
    "registry.license_missing": _Spec(
        check=Check.LICENSE, reason="no_license:",
        what="with no license in the patient's state ({state}) valid",
    ),
    "registry.credential_missing": _Spec(
        check=Check.CREDENTIAL, reason="no_credential",
        what="with no credential or privilege at the facility valid",
    ),
    "account.shared": _Spec(
        check=Check.UNIQUE_USER, reason="shared", what="with a shared or generic account",
    ),
    "account.unknown": _Spec(
        check=Check.UNIQUE_USER, reason="unknown",
        what="with an account the registry does not know",
    ),
    "account.ended": _Spec(
        check=Check.UNIQUE_USER, reason="ended",
        what="with no employment in effect",
    ),
}  # fmt: skip


class RegistryRule:
    """One registry rule: an id, version 1, a severity and the settings it runs with."""

    __slots__ = ("_spec", "_thresholds", "id", "severity", "version")

    def __init__(self, rule_id: str, config: RulesConfig) -> None:
        self.id = rule_id
        self.version = VERSION
        self.severity: Severity = config.registry.severities[rule_id]
        self._spec = SPECS[rule_id]
        r = config.registry
        self._thresholds: dict[str, JsonValue] = {
            "timezone": config.timezone.key,
            "settle_seconds": r.settle.total_seconds(),
            "lookback_days": r.lookback.days,
            "ignore_users": list(r.ignore_users),
        }
        if self._spec.check is Check.LICENSE:
            self._thresholds["licensed_roles"] = list(r.licensed_roles)
        if self._spec.check is Check.CREDENTIAL:
            self._thresholds["credentialed_roles"] = list(r.credentialed_roles)

    @property
    def check(self) -> Check:
        return self._spec.check

    def thresholds(self) -> Mapping[str, JsonValue]:
        return dict(self._thresholds)

    def violated(self, item: Item) -> bool:
        return item.outcome is Outcome.EXCEPTION and (
            item.reason.startswith(self._spec.reason)
            if self._spec.reason.endswith(":")
            else item.reason == self._spec.reason
        )

    def decide(
        self,
        event: AppendedEvent,
        items: Mapping[Check, Item],
        alerted: set[DayKey],
        config: ChecklistConfig,
    ) -> Finding | None:
        """The finding ``event`` raises, given the days already alerted in its log."""
        item = items[self._spec.check]
        if not self.violated(item):
            return None
        state = item.reason.partition(":")[2]
        day = access_day(event, config).isoformat()
        key: DayKey = (self.id, facility_id(event) or "", user_id(event) or "", state, day)
        if key in alerted:
            return None
        alerted.add(key)
        return Finding(
            rule_id=self.id,
            rule_version=self.version,
            severity=self.severity,
            trigger=event.position,
            summary=self._summary(event, state, day, config),
            facility_id=facility_id(event),
            user_id=user_id(event),
            patient=named_patient(event),
            evidence=(
                Evidence(position=event.position, role="trigger"),
                *(Evidence(position=p, role=REGISTRY_ROLE) for p in item.registry),
            ),
            thresholds=self.thresholds(),
        )

    def _summary(self, event: AppendedEvent, state: str, day: str, c: ChecklistConfig) -> str:
        patient = named_patient(event)
        whose = (
            f"patient {patient.id}"
            if patient is not None
            else f"a query disclosing {len(patients_seen(event))} patient(s)"
        )
        what = self._spec.what.format(state=state)
        return (
            f"{user_id(event) or 'an unnamed user'} accessed {whose} at "
            f"{facility_id(event) or 'an unnamed facility'} {what} on {day} ({c.timezone}), "
            "as the registry was known at the access; the first such access that day"
        )


def build_registry_rules(config: RulesConfig) -> tuple[RegistryRule, ...]:
    """The six registry rules, configured."""
    return tuple(RegistryRule(rule_id, config) for rule_id in SPECS)


def checklist_config(config: RulesConfig) -> ChecklistConfig:
    """What ``check_access`` needs from the rules' configuration."""
    r = config.registry
    return ChecklistConfig(
        timezone=config.timezone.key,
        licensed_roles=r.licensed_roles,
        credentialed_roles=r.credentialed_roles,
        ignore_users=r.ignore_users,
    )
