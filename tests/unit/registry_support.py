"""Registry fixtures for the rules' unit tests: changes built as ``parse_change`` returns
them (decoding is tested in test_registry_timeline.py), and access records as the
ledger decodes them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from ledger.audit.registry import (
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
from ledger.audit.rules import AppendedEvent, Position
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
