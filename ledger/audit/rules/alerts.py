"""Stored alerts as triage reads them: the alert, its evidence and its transitions.

Invariant: read models only; an alert's state is its latest transition.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from ledger.audit.records import JsonValue
from ledger.audit.rules.latechanges import LATER_ROLE
from ledger.audit.rules.triage import AlertState, Disposition

#: What an alert says of each registry change known after its access that would have
#: prevented it (docs/design/compliance.md, "Registry rules and late registry changes").
LATER_NOTE: Final = "covered by a registry change known later"


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertFilter:
    state: AlertState | None = None
    rule_id: str | None = None
    user_id: str | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredAlert:
    alert_id: int
    rule_id: str
    rule_version: int
    severity: str
    facility_id: str | None
    user_id: str | None
    patient_id: str | None
    patient_issuer: str | None
    summary: str
    log_id: int
    origin: str
    leaf_index: int
    thresholds: Mapping[str, JsonValue]
    raised_at: datetime
    state: AlertState
    disposition: Disposition | None
    #: The sequence number of the latest transition (the next one is seq + 1).
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredEvidence:
    log_id: int
    origin: str
    leaf_index: int
    role: str


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredTransition:
    seq: int
    state: AlertState
    disposition: Disposition | None
    note: str
    by: str
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertDetail:
    alert: StoredAlert
    evidence: tuple[StoredEvidence, ...]
    transitions: tuple[StoredTransition, ...]

    def notes(self) -> tuple[str, ...]:
        """One line per registry change known later that covers the alert's access."""
        return tuple(
            f"{LATER_NOTE}: log {e.origin} leaf {e.leaf_index}"
            for e in self.evidence
            if e.role == LATER_ROLE
        )
