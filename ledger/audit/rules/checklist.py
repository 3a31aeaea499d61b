"""The teleradiology checklist for one access, against the registry as known at its time.

Invariant: pure and deterministic: the outcome of each item depends only on the appended
record and the ``RegistryView`` it is given (the registry as known at the access's
instant), with periods compared on the access's calendar day in the configured time
zone. The registry rules raise alerts from it; the compliance report counts it. Each
outcome cites the registry positions it relied on, so it can be proven.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ledger.audit.registry import OrgKind, RegistryEntry, RegistryView, in_period
from ledger.audit.registry.model import Member
from ledger.audit.rules.access import is_access, patients_seen, succeeded
from ledger.audit.rules.model import AppendedEvent, Position
from ledger.errors import MalformedInputError

#: The actions that read or report a study (DICOM EventActionCode).
STUDY_ACTIONS: Final = frozenset({"R", "C", "U"})


class Check(StrEnum):
    """The checklist items a single access can be held to."""

    UNIQUE_USER = "unique_user"
    BAA = "baa"
    LICENSE = "license"
    CREDENTIAL = "credential"
    ENCRYPTED = "encrypted"


class Outcome(StrEnum):
    COVERED = "covered"
    EXCEPTION = "exception"
    #: The item does not apply to this access (e.g. a BAA for a facility's own staff).
    NOT_APPLICABLE = "not_applicable"
    #: The record lacks what the item needs (no patient state, no transport recorded).
    UNDECIDABLE = "undecidable"


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One item's outcome, why (a short code), and the registry positions behind it."""

    outcome: Outcome
    reason: str = ""
    registry: tuple[Position, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChecklistConfig:
    """What the registry items need beyond the registry itself."""

    timezone: str = "UTC"
    licensed_roles: tuple[str, ...] = ("radiologist",)
    credentialed_roles: tuple[str, ...] = ("radiologist",)
    ignore_users: tuple[str, ...] = ()
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "zone", ZoneInfo(self.timezone))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise MalformedInputError(f"unknown time zone {self.timezone!r}") from exc


def applies(event: AppendedEvent) -> bool:
    """Whether the checklist holds this event to account: a successful PHI access that
    reached at least one patient."""
    return is_access(event) and succeeded(event) and bool(patients_seen(event))


def access_instant(event: AppendedEvent) -> datetime:
    """The access's event time, aware (a time with no offset is read as UTC)."""
    at = event.event_time
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at


def access_day(event: AppendedEvent, config: ChecklistConfig) -> date:
    """The access's calendar day in the configured time zone."""
    return access_instant(event).astimezone(config.zone).date()


class ChecklistMemo:
    """``check_access`` remembered per what its registry items depend on: the user, the
    facility, the calendar day, the patient's state and whether the access reads or
    reports a study, and the registry as known at the access (``known_key``). The same
    answers as ``check_access``, without re-reading the registry for each of a user's
    accesses of the day; bounded (cleared when full)."""

    __slots__ = ("_config", "_limit", "_seen")

    def __init__(self, config: ChecklistConfig, *, limit: int = 50_000) -> None:
        self._config = config
        self._limit = limit
        self._seen: dict[tuple[object, ...], Mapping[Check, Item]] = {}

    def __len__(self) -> int:
        """How many answers are remembered."""
        return len(self._seen)

    def check(self, event: AppendedEvent, view: RegistryView) -> Mapping[Check, Item]:
        study = event.record.get("study") is not None and event.text("action") in STUDY_ACTIONS
        key = (
            event.text("actor", "user_id"), event.text("facility", "id"),
            access_day(event, self._config), event.text("patient", "state"), study,
            view.known_key(),
        )  # fmt: skip
        found = self._seen.get(key)
        if found is None:
            if len(self._seen) >= self._limit:
                self._seen.clear()
            found = check_access(event, view, self._config)
            self._seen[key] = found
            return found
        return {**found, Check.ENCRYPTED: _encrypted(event)}


def check_access(
    event: AppendedEvent, view: RegistryView, config: ChecklistConfig
) -> Mapping[Check, Item]:
    """Every item for one access (call only when ``applies``)."""
    day = access_day(event, config)
    user = event.text("actor", "user_id") or ""
    facility = event.text("facility", "id") or ""
    encrypted = _encrypted(event)
    if user in config.ignore_users:
        skip = Item(outcome=Outcome.NOT_APPLICABLE, reason="ignored_user")
        return {c: skip for c in Check if c is not Check.ENCRYPTED} | {Check.ENCRYPTED: encrypted}
    members = view.memberships(user)
    current = tuple(
        m for m in members if in_period(day, m.record.employed_from, m.record.employed_to)
    )
    return {
        Check.UNIQUE_USER: _unique_user(members, current),
        Check.BAA: _baa(view, facility, current, day),
        Check.LICENSE: _license(event, view, user, current, day, config),
        Check.CREDENTIAL: _credential(view, user, facility, current, day, config),
        Check.ENCRYPTED: encrypted,
    }


Members = tuple[RegistryEntry[Member], ...]


def _positions(entries: Members) -> tuple[Position, ...]:
    return tuple(sorted({e.position for e in entries}))


def _unique_user(members: Members, current: Members) -> Item:
    if not members:
        return Item(outcome=Outcome.EXCEPTION, reason="unknown")
    if not current:
        return Item(outcome=Outcome.EXCEPTION, reason="ended", registry=_positions(members))
    shared = tuple(m for m in current if m.record.shared_or_generic)
    if shared:
        return Item(outcome=Outcome.EXCEPTION, reason="shared", registry=_positions(shared))
    return Item(outcome=Outcome.COVERED, registry=_positions(current))


def _baa(view: RegistryView, facility: str, current: Members, day: date) -> Item:
    if not current:
        return Item(outcome=Outcome.NOT_APPLICABLE, reason="no_membership")
    associates: list[RegistryEntry[Member]] = []
    cited: set[Position] = set()
    for m in current:
        org_id = m.record.organization_id
        org = view.organization(org_id)
        if org_id == facility or (
            org is not None and org.record.kind is not OrgKind.BUSINESS_ASSOCIATE
        ):
            return Item(outcome=Outcome.NOT_APPLICABLE, reason="workforce")
        if org is None:  # an organization the registry does not know: not an associate
            return Item(outcome=Outcome.NOT_APPLICABLE, reason="unknown_organization")
        associates.append(m)
        cited |= {m.position, org.position}
    for m in associates:
        for baa in view.baas(facility, m.record.organization_id):
            if in_period(day, baa.record.effective_from, baa.record.effective_to):
                return Item(outcome=Outcome.COVERED, registry=(m.position, baa.position))
            cited.add(baa.position)  # a BAA known but not in effect (ended, or not begun)
    return Item(outcome=Outcome.EXCEPTION, reason="no_baa", registry=tuple(sorted(cited)))


def _roles(current: Members, wanted: tuple[str, ...]) -> Members:
    return tuple(m for m in current if m.record.role in wanted)


def _license(
    event: AppendedEvent,
    view: RegistryView,
    user: str,
    current: Members,
    day: date,
    config: ChecklistConfig,
) -> Item:
    readers = _roles(current, config.licensed_roles)
    if not readers or event.record.get("study") is None:
        return Item(outcome=Outcome.NOT_APPLICABLE)
    if event.text("action") not in STUDY_ACTIONS:
        return Item(outcome=Outcome.NOT_APPLICABLE)
    state = event.text("patient", "state")
    if state is None:
        return Item(outcome=Outcome.UNDECIDABLE, reason="no_patient_state")
    cited = set(_positions(readers))
    for lic in view.licenses(user):
        r = lic.record
        if r.state == state and in_period(day, r.valid_from, r.valid_to):
            return Item(outcome=Outcome.COVERED, registry=(lic.position,))
        if r.state == state:
            cited.add(lic.position)  # a license for the state, not valid on the day
    return Item(
        outcome=Outcome.EXCEPTION, reason=f"no_license:{state}", registry=tuple(sorted(cited))
    )


def _credential(
    view: RegistryView,
    user: str,
    facility: str,
    current: Members,
    day: date,
    config: ChecklistConfig,
) -> Item:
    practitioners = _roles(current, config.credentialed_roles)
    if not practitioners:
        return Item(outcome=Outcome.NOT_APPLICABLE)
    cited = set(_positions(practitioners))
    for cred in view.credentials(user, facility):
        r = cred.record
        if in_period(day, r.valid_from, r.valid_to):
            return Item(outcome=Outcome.COVERED, registry=(cred.position,))
        cited.add(cred.position)  # a credential at the facility, not valid on the day
    return Item(outcome=Outcome.EXCEPTION, reason="no_credential", registry=tuple(sorted(cited)))


def _encrypted(event: AppendedEvent) -> Item:
    transport = event.record.get("transport")
    if not isinstance(transport, Mapping):
        return Item(outcome=Outcome.UNDECIDABLE, reason="not_recorded")
    flag = transport.get("encrypted")
    if flag is True:
        return Item(outcome=Outcome.COVERED)
    if flag is False:
        return Item(outcome=Outcome.EXCEPTION, reason=str(transport.get("channel") or "plain"))
    return Item(outcome=Outcome.UNDECIDABLE, reason="not_recorded")
