"""A simulated teleradiology world's compliance registry: who works where, under which
agreement, licensed where, credentialed at which facility.

Invariant: pure and deterministic (a seed's world is always the same), and every clean
user is compliant on every day of the span: a facility's own staff, the health system's
(a covered entity's) administrators, or a teleradiology business associate's
radiologists with a BAA with every facility they read for, licensed in every state of
those facilities' patients and credentialed at each. The records of the users that
planted violations need (``simplants``) are here too, each wrong in exactly one way.
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

from integrations.simulator import _STATES_BY_FACILITY, FACILITIES, _name, make_npi
from producers import (
    Actor,
    Baa,
    Credential,
    Organization,
    OrganizationKind,
    RegistryRecord,
    StateLicense,
    WorkforceMember,
)

#: The health system that owns the facilities (a covered entity): its PACS administrators.
HEALTH_SYSTEM: Final = Organization(
    organization_id="harbor-health",
    name="Harbor Health System",
    organization_kind=OrganizationKind.COVERED_ENTITY,
)
#: The teleradiology group: a business associate with a BAA with every facility.
TELERAD: Final = Organization(
    organization_id="nocturne-telerad",
    name="Nocturne Teleradiology Group",
    organization_kind=OrganizationKind.BUSINESS_ASSOCIATE,
)
#: Business associates of planted violations: one never had a BAA, one's BAA ended.
NO_BAA_GROUP: Final = Organization(
    organization_id="shadow-reads",
    name="Shadow Reads LLC",
    organization_kind=OrganizationKind.BUSINESS_ASSOCIATE,
)
ENDED_BAA_GROUP: Final = Organization(
    organization_id="dawn-imaging",
    name="Dawn Imaging Partners",
    organization_kind=OrganizationKind.BUSINESS_ASSOCIATE,
)
#: A user's working hours: this many hours from its shift's start (UTC).
SHIFT_HOURS: Final = 8
_NIGHT_STARTS: Final = (18, 20, 22, 0)
_DAY_STARTS: Final = (6, 7, 8, 9, 10)
#: Roles of clean users, in the order users are dealt (about 30% teleradiologists).
_ROLE_CYCLE: Final = (
    "telerad",
    "technologist",
    "referring-physician",
    "telerad",
    "staff-radiologist",
    "referring-physician",
    "technologist",
    "telerad",
    "pacs-admin",
    "referring-physician",
)
ALL_STATES: Final = tuple(sorted({s for states in _STATES_BY_FACILITY.values() for s in states}))


@dataclass(frozen=True, slots=True, kw_only=True)
class SimUser:
    """A workforce member as the stream uses it: the actor on its events, where it works
    (facility ids) and when (its shift's first UTC hour)."""

    actor: Actor
    facilities: tuple[str, ...]
    shift_start: int


@dataclass(frozen=True, slots=True, kw_only=True)
class World:
    """The registry's records (in the order they can be applied) and the clean users."""

    first_day: date
    records: tuple[RegistryRecord, ...]
    users: tuple[SimUser, ...]

    def user(self, user_id: str) -> SimUser:
        return next(u for u in self.users if u.actor.user_id == user_id)

    def of_role(self, role: str) -> tuple[SimUser, ...]:
        return tuple(u for u in self.users if u.actor.role == role)


def facility_of(facility_id: str) -> int:
    return next(i for i, f in enumerate(FACILITIES) if f.id == facility_id)


class _Registry:
    """Collects records; ids are dealt in order, so a seed's records never change."""

    def __init__(self, first_day: date) -> None:
        self.first_day = first_day
        self.since = first_day - timedelta(days=730)
        self.orgs: list[RegistryRecord] = []
        self.members: list[RegistryRecord] = []
        self.baas: list[RegistryRecord] = []
        self.licenses: list[RegistryRecord] = []
        self.credentials: list[RegistryRecord] = []

    def member(self, user: str, org: str, role: str, *, shared: bool = False,
               until: date | None = None) -> None:  # fmt: skip
        self.members.append(
            WorkforceMember(
                user_id=user,
                organization_id=org,
                role=role,
                employed_from=self.since,
                shared_or_generic=shared,
                employed_to=until,
            )
        )

    def license(self, user: str, state: str, *, until: date | None = None) -> None:
        n = len(self.licenses) + 1
        self.licenses.append(
            StateLicense(
                license_id=f"lic-{n:05d}",
                user_id=user,
                state=state,
                number=f"{state}{n:06d}",
                valid_from=self.since,
                valid_to=until,
            )
        )

    def credential(self, user: str, facility: str) -> None:
        n = len(self.credentials) + 1
        self.credentials.append(
            Credential(
                credential_id=f"cred-{n:05d}",
                user_id=user,
                facility_id=facility,
                privilege="diagnostic radiology reads",
                valid_from=self.since,
            )
        )

    def baa(self, facility: str, associate: str, *, until: date | None = None) -> None:
        self.baas.append(
            Baa(
                baa_id=f"baa-{facility}-{associate}",
                facility_id=facility,
                business_associate_id=associate,
                effective_from=self.since,
                effective_to=until,
                scope="teleradiology reads and reports",
            )
        )

    def records(self) -> tuple[RegistryRecord, ...]:
        return (*self.orgs, *self.members, *self.baas, *self.licenses, *self.credentials)


def build_world(rng: random.Random, *, users: int, first_day: date) -> World:
    """``users`` clean users (at least 10) and every record the registry holds."""
    reg = _Registry(first_day)
    reg.orgs += [
        *(Organization(organization_id=f.id, name=f.name or f.id,
                       organization_kind=OrganizationKind.FACILITY) for f in FACILITIES),
        HEALTH_SYSTEM, TELERAD, NO_BAA_GROUP, ENDED_BAA_GROUP,
    ]  # fmt: skip
    for f in FACILITIES:
        reg.baa(f.id, TELERAD.organization_id)
    clean = [_clean_user(rng, reg, i) for i in range(max(users, len(_ROLE_CYCLE)))]
    add_plant_records(reg)
    return World(first_day=first_day, records=reg.records(), users=tuple(clean))


def _clean_user(rng: random.Random, reg: _Registry, i: int) -> SimUser:
    kind = _ROLE_CYCLE[i % len(_ROLE_CYCLE)]
    home = FACILITIES[(i // len(_ROLE_CYCLE) + i) % len(FACILITIES)].id
    name = _name(rng)
    user_id = f"u{i:04d}.{name.split()[1].lower()}"
    everywhere = tuple(f.id for f in FACILITIES)
    if kind == "telerad":
        org, role, where, start = TELERAD.organization_id, "radiologist", everywhere, None
        for state in ALL_STATES:
            reg.license(user_id, state)
        for f in everywhere:
            reg.credential(user_id, f)
    elif kind == "staff-radiologist":
        org, role, where, start = home, "radiologist", (home,), None
        for state in _STATES_BY_FACILITY[home]:
            reg.license(user_id, state)
        reg.credential(user_id, home)
    elif kind == "pacs-admin":
        org, role, where, start = HEALTH_SYSTEM.organization_id, kind, everywhere, 8
    else:
        org, role, where, start = home, kind, (home,), None
    reg.member(user_id, org, role)
    if start is None:
        starts = _NIGHT_STARTS if kind == "telerad" else _DAY_STARTS
        start = starts[i % len(starts)]
    actor = Actor(
        user_id=user_id,
        name=name,
        role=role,
        organization=org,
        npi=make_npi(rng) if role in ("radiologist", "referring-physician") else None,
    )
    return SimUser(actor=actor, facilities=where, shift_start=start)


#: Users of planted violations: (user id, organization, role). Facility staff work at
#: ``PLANT_FACILITY``; ``plant-unknown`` is in no organization at all.
PLANT_FACILITY: Final = FACILITIES[0].id
OTHER_FACILITY: Final = FACILITIES[1].id
PLANT_USERS: Final = (
    ("plant-baa-none", NO_BAA_GROUP.organization_id, "radiologist"),
    ("plant-baa-ended", ENDED_BAA_GROUP.organization_id, "radiologist"),
    ("plant-lic-none", PLANT_FACILITY, "radiologist"),
    ("plant-lic-expired", PLANT_FACILITY, "radiologist"),
    ("plant-cred-none", TELERAD.organization_id, "radiologist"),
    ("plant-shared", PLANT_FACILITY, "technologist"),
    ("plant-unknown", "", "radiologist"),
    ("plant-ended", PLANT_FACILITY, "technologist"),
    ("plant-own", PLANT_FACILITY, "referring-physician"),
    ("plant-coworker", PLANT_FACILITY, "referring-physician"),
    ("plant-vip", PLANT_FACILITY, "referring-physician"),
    ("plant-bulk", HEALTH_SYSTEM.organization_id, "pacs-admin"),
    ("plant-breakglass", PLANT_FACILITY, "referring-physician"),
    ("plant-http", PLANT_FACILITY, "referring-physician"),
)
#: The plant facility's patients' states: licensed in the first, the patient in the second.
PLANT_STATES: Final = _STATES_BY_FACILITY[PLANT_FACILITY]


def add_plant_records(reg: _Registry) -> None:
    """Each plant user is registered as a clean one would be, but for its one fault."""
    day0 = reg.first_day
    reg.baa(PLANT_FACILITY, ENDED_BAA_GROUP.organization_id, until=day0 + timedelta(days=3))
    for user, org, role in PLANT_USERS:
        if not org:
            continue  # plant-unknown
        shared = user == "plant-shared"
        until = day0 + timedelta(days=4) if user == "plant-ended" else None
        reg.member(user, org, role, shared=shared, until=until)
        if role != "radiologist":
            continue
        if user == "plant-lic-none":
            reg.license(user, PLANT_STATES[0])  # the patient lives in PLANT_STATES[1]
        elif user == "plant-lic-expired":
            reg.license(user, PLANT_STATES[1], until=day0 + timedelta(days=2))
        else:
            reg.license(user, PLANT_STATES[1])
        # plant-cred-none is credentialed elsewhere only
        reg.credential(user, OTHER_FACILITY if user == "plant-cred-none" else PLANT_FACILITY)


_COLUMNS: Final = {
    Organization: ("organization_id", "name", "organization_kind"),
    WorkforceMember: (
        "user_id", "organization_id", "role", "shared_or_generic", "employed_from", "employed_to",
    ),
    Baa: (
        "baa_id", "facility_id", "business_associate_id", "effective_from", "effective_to",
        "scope",
    ),
    StateLicense: ("license_id", "user_id", "state", "number", "valid_from", "valid_to"),
    Credential: (
        "credential_id", "user_id", "facility_id", "privilege", "valid_from", "valid_to",
    ),
}  # fmt: skip
#: File name and ``kind`` cell of each record type (docs/design/compliance-registry.md).
REGISTRY_FILES: Final = {
    Organization: ("organizations.csv", "organization"),
    WorkforceMember: ("members.csv", "member"),
    Baa: ("baas.csv", "baa"),
    StateLicense: ("licenses.csv", "license"),
    Credential: ("credentials.csv", "credential"),
}


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, date):
        return value.isoformat()
    text = str(value)
    return text.lower() if isinstance(value, OrganizationKind) else text


def registry_csv(records: Iterable[RegistryRecord]) -> dict[str, str]:
    """The registry as CSV files (name -> text), one kind per file, in the import format."""
    out: dict[str, str] = {}
    for cls, (name, kind) in REGISTRY_FILES.items():
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        columns = _COLUMNS[cls]
        writer.writerow(("kind", "operation", *columns))
        for r in records:
            if type(r) is cls:
                writer.writerow((kind, "upsert", *(_cell(getattr(r, c)) for c in columns)))
        out[name] = buf.getvalue()
    return out


def watchlist_csv(rows: Sequence[tuple[str, str, str, str, str]]) -> str:
    """The privacy watch list: ``list,patient_id,issuer,user_id,note`` lines."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("list", "patient_id", "issuer", "user_id", "note"))
    writer.writerows(rows)
    return buf.getvalue()
