"""Registry fixtures for the rules' unit tests: changes built as ``parse_change`` returns
them (decoding is tested in test_registry_timeline.py), and access records as the
ledger decodes them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from ledger.audit.registry import (
    REGISTRY_CHANGE,
    Baa,
    Credential,
    License,
    Member,
    Organization,
    OrgKind,
    RegistryChangeRecord,
    RegistryRecord,
    RegistryTimeline,
)
from ledger.audit.rules import AppendedEvent, Finding, LeafBatch, Position
from ledger.audit.rules.latechanges import AlertTarget
from ledger.audit.rules.model import PHI_ACCESS

#: The registry log's id in these tests.
REGISTRY_LOG = 90
#: An access at 10:00 UTC on 2026-03-02.
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
FACILITY = "stmarys"


def change(
    record: RegistryRecord, *, at: datetime = LONG_AGO, index: int, retire: bool = False
) -> RegistryChangeRecord:
    kind = {Organization: "ORGANIZATION", Baa: "BAA", Member: "MEMBER", License: "LICENSE",
            Credential: "CREDENTIAL"}[type(record)]  # fmt: skip
    return RegistryChangeRecord(
        position=Position(log_id=REGISTRY_LOG, leaf_index=index),
        event_time=at,
        operation="RETIRE" if retire else "UPSERT",
        kind=kind,
        record=record,
        author_user_id="alice",
        author_role="compliance",
    )


def org(org_id: str, kind: OrgKind = OrgKind.BUSINESS_ASSOCIATE) -> Organization:
    return Organization(organization_id=org_id, name=org_id.title(), kind=kind)


def member(
    user: str,
    org_id: str = "nightrad",
    *,
    role: str = "radiologist",
    shared: bool = False,
    start: date = date(2024, 1, 1),
    end: date | None = None,
) -> Member:
    return Member(user_id=user, organization_id=org_id, role=role, shared_or_generic=shared,
                  employed_from=start, employed_to=end)  # fmt: skip


def baa(
    ba: str = "nightrad",
    facility: str = FACILITY,
    *,
    start: date = date(2024, 1, 1),
    end: date | None = None,
    baa_id: str = "baa-1",
) -> Baa:
    return Baa(baa_id=baa_id, facility_id=facility, business_associate_id=ba,
               effective_from=start, effective_to=end, scope="reads")  # fmt: skip


def lic(
    user: str,
    state: str = "MA",
    *,
    start: date = date(2024, 1, 1),
    end: date | None = None,
    lic_id: str | None = None,
) -> License:
    return License(license_id=lic_id or f"lic-{user}-{state}", user_id=user, state=state,
                   number="N1", valid_from=start, valid_to=end)  # fmt: skip


def cred(
    user: str,
    facility: str = FACILITY,
    *,
    start: date = date(2024, 1, 1),
    end: date | None = None,
    cred_id: str | None = None,
) -> Credential:
    return Credential(credential_id=cred_id or f"cred-{user}-{facility}", user_id=user,
                      facility_id=facility, privilege="read", valid_from=start,
                      valid_to=end)  # fmt: skip


def timeline(*records: RegistryRecord | RegistryChangeRecord) -> RegistryTimeline:
    """A timeline of ``records`` (plain records are known since LONG_AGO), leaves 0, 1..."""
    t = RegistryTimeline()
    for i, r in enumerate(records):
        t.add(r if isinstance(r, RegistryChangeRecord) else change(r, index=i))
    return t


def clean_registry(*users: str) -> list[RegistryRecord]:
    """A teleradiology group with a BAA at the facility, and for each user a current
    radiologist membership, a Massachusetts license and a credential at the facility."""
    found: list[RegistryRecord] = [org("nightrad"), org(FACILITY, OrgKind.FACILITY), baa()]
    for u in users:
        found += [member(u), lic(u), cred(u)]
    return found


def access_record(
    user: str,
    patient: str | None = "P1",
    *,
    at: datetime = T0,
    facility: str = FACILITY,
    state: str | None = "MA",
    action: str = "R",
    study: bool = True,
    outcome: str = "SUCCESS",
    disclosed: tuple[str, ...] = (),
    encrypted: bool | None = True,
) -> dict[str, Any]:
    return {
        "event_time": at.isoformat(),
        "facility": {"id": facility, "name": None},
        "actor": {"user_id": user, "role": "radiologist"},
        "action": action,
        "outcome": outcome,
        "patient": None if patient is None else {"id": patient, "issuer": "MRN", "state": state},
        "study": {"uid": "2.25.1", "accession": None} if study else None,
        "purpose_of_use": "TREAT",
        "details": {},
        "disclosed": [{"id": d, "issuer": "MRN", "state": None, "studies": []} for d in disclosed],
        "transport": None
        if encrypted is None
        else {"channel": "DICOM_TLS" if encrypted else "DICOM", "encrypted": encrypted},
    }


def access(user: str, patient: str | None = "P1", *, log: int = 1, index: int = 0,
           **kw: Any) -> AppendedEvent:  # fmt: skip
    return AppendedEvent(
        position=Position(log_id=log, leaf_index=index),
        schema=PHI_ACCESS,
        record=access_record(user, patient, **kw),
    )


def registry_record(c: RegistryChangeRecord) -> dict[str, Any]:
    """The decoded RegistryChange record ``parse_change`` reads back as ``c``."""

    def day(d: date | None) -> str | None:
        return None if d is None else d.isoformat()

    r = c.record
    body: dict[str, Any]
    match r:
        case Organization():
            body = {"organization_id": r.organization_id, "name": r.name,
                    "organization_kind": r.kind.value}  # fmt: skip
        case Baa():
            body = {"baa_id": r.baa_id, "facility_id": r.facility_id,
                    "business_associate_id": r.business_associate_id,
                    "effective_from": day(r.effective_from), "effective_to": day(r.effective_to),
                    "scope": r.scope}  # fmt: skip
        case Member():
            body = {"user_id": r.user_id, "organization_id": r.organization_id, "role": r.role,
                    "shared_or_generic": r.shared_or_generic,
                    "employed_from": day(r.employed_from),
                    "employed_to": day(r.employed_to)}  # fmt: skip
        case License():
            body = {"license_id": r.license_id, "user_id": r.user_id, "state": r.state,
                    "number": r.number, "valid_from": day(r.valid_from),
                    "valid_to": day(r.valid_to)}  # fmt: skip
        case Credential():
            body = {"credential_id": r.credential_id, "user_id": r.user_id,
                    "facility_id": r.facility_id, "privilege": r.privilege,
                    "valid_from": day(r.valid_from), "valid_to": day(r.valid_to)}  # fmt: skip
    return {
        "event_time": c.event_time.isoformat(),
        "operation": c.operation,
        "kind": c.kind,
        "author": {"user_id": c.author_user_id, "role": c.author_role},
        c.kind.lower(): body,
    }


class MemoryStore:
    """The evaluator's storage in memory, as the database keeps it: alerts unique by key
    with ids in raise order, evidence rows unique per alert, one cursor per log."""

    def __init__(self) -> None:
        self.logs: dict[int, list[AppendedEvent]] = {REGISTRY_LOG: []}
        self.alerts: dict[tuple[str, int, int, int], int] = {}
        self.findings: dict[int, Finding] = {}
        self.evidence: dict[int, set[tuple[Position, str]]] = {}
        self.cursors: dict[int, int] = {}

    # appending, as the consumer would
    def append(self, log_id: int, record: dict[str, Any], schema: str = PHI_ACCESS) -> Position:
        leaves = self.logs.setdefault(log_id, [])
        pos = Position(log_id=log_id, leaf_index=len(leaves))
        leaves.append(AppendedEvent(position=pos, schema=schema, record=record))
        return pos

    def register(self, record: RegistryRecord, *, at: datetime = LONG_AGO) -> Position:
        index = len(self.logs[REGISTRY_LOG])
        c = change(record, at=at, index=index)
        return self.append(REGISTRY_LOG, registry_record(c), REGISTRY_CHANGE)

    # RulesStore
    async def log_ids(self) -> Sequence[int]:
        return list(self.logs)

    async def registry_log_ids(self) -> Sequence[int]:
        return [REGISTRY_LOG]

    async def cursor(self, log_id: int) -> int:
        return self.cursors.get(log_id, 0)

    async def leaves(self, log_id: int, first: int, limit: int) -> LeafBatch:
        events = tuple(self.logs[log_id][first : first + limit])
        return LeafBatch(events=events, next_leaf=first + len(events))

    async def commit(self, log_id: int, next_leaf: int, findings: Sequence[Finding]) -> int:
        raised = 0
        for f in findings:
            if f.key in self.alerts:
                continue
            alert_id = len(self.alerts) + 1
            self.alerts[f.key] = alert_id
            self.findings[alert_id] = f
            self.evidence[alert_id] = {(e.position, e.role) for e in f.evidence}
            raised += 1
        self.cursors[log_id] = max(self.cursors.get(log_id, 0), next_leaf)
        return raised

    # RegistryStore
    async def later_candidates(
        self,
        rule_ids: Sequence[str],
        users: Sequence[str],
        facilities: Sequence[str],
        since: datetime,
        until: datetime,
    ) -> Sequence[AlertTarget]:
        found = []
        for alert_id, f in self.findings.items():
            event = self.logs[f.trigger.log_id][f.trigger.leaf_index]
            t = event.event_time
            if f.rule_id not in rule_ids or not since <= t < until:
                continue
            if f.user_id in users or f.facility_id in facilities:
                found.append(AlertTarget(
                    rule_id=f.rule_id, user_id=f.user_id or "", facility_id=f.facility_id or "",
                    at=t, state=event.text("patient", "state"), alert_id=alert_id,
                ))  # fmt: skip
        return found

    async def commit_registry(
        self, log_id: int, next_leaf: int, evidence: Sequence[tuple[int, Position]]
    ) -> int:
        added = 0
        for alert_id, pos in evidence:
            row = (pos, "later_registry_change")
            if row not in self.evidence[alert_id]:
                self.evidence[alert_id].add(row)
                added += 1
        self.cursors[log_id] = max(self.cursors.get(log_id, 0), next_leaf)
        return added

    # reading back
    def raised(self) -> dict[tuple[str, int, int], set[tuple[Position, str]]]:
        """(rule, log, leaf) -> evidence, for every alert."""
        return {
            (key[0], key[2], key[3]): self.evidence[alert_id]
            for key, alert_id in self.alerts.items()
        }
