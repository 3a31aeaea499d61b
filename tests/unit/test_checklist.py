"""The checklist for one access (``check_access``): each item covered, an exception, not
applicable or undecidable exactly as spec15 section 4 says, on the access's calendar day
in the configured time zone, citing the registry positions it relied on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from ledger.audit.registry import OrgKind, RegistryChangeRecord, RegistryRecord
from ledger.audit.rules import AppendedEvent, Position
from ledger.audit.rules.checklist import (
    Check,
    ChecklistConfig,
    Item,
    Outcome,
    access_day,
    applies,
    check_access,
)
from ledger.errors import MalformedInputError
from tests.unit.registry_support import (
    FACILITY,
    REGISTRY_LOG,
    T0,
    access,
    baa,
    change,
    clean_registry,
    cred,
    lic,
    member,
    org,
    timeline,
)

CONFIG = ChecklistConfig()


def at(i: int) -> Position:
    return Position(log_id=REGISTRY_LOG, leaf_index=i)


def items(
    records: Sequence[RegistryRecord | RegistryChangeRecord],
    event: AppendedEvent | None = None,
    config: ChecklistConfig = CONFIG,
) -> Mapping[Check, Item]:
    tl = timeline(*records)
    return check_access(event or access("dr.lee"), tl.known_at(T0), config)


def test_a_clean_access_is_covered_on_every_item_citing_what_covers_it() -> None:
    found = items(clean_registry("dr.lee"))
    assert {c: i.outcome for c, i in found.items()} == {c: Outcome.COVERED for c in Check}
    # registry: 0 nightrad, 1 stmarys, 2 baa, 3 member, 4 license, 5 credential
    assert found[Check.UNIQUE_USER].registry == (at(3),)
    assert found[Check.BAA].registry == (at(3), at(2))
    assert found[Check.LICENSE].registry == (at(4),)
    assert found[Check.CREDENTIAL].registry == (at(5),)


def test_only_successful_accesses_that_reach_a_patient_are_held_to_the_checklist() -> None:
    assert applies(access("dr.lee"))
    assert applies(access("dr.lee", None, disclosed=("P7",)))
    assert not applies(access("dr.lee", None))
    assert not applies(access("dr.lee", outcome="SERIOUS_FAILURE"))


def test_unique_user_unknown_ended_not_started_and_shared() -> None:
    base = clean_registry()
    unknown = items(base)[Check.UNIQUE_USER]
    assert (unknown.outcome, unknown.reason, unknown.registry) == (Outcome.EXCEPTION, "unknown", ())
    ended = items([*base, member("dr.lee", end=date(2026, 3, 1))])[Check.UNIQUE_USER]
    assert (ended.outcome, ended.reason, ended.registry) == (Outcome.EXCEPTION, "ended", (at(3),))
    later = items([*base, member("dr.lee", start=date(2026, 3, 3))])[Check.UNIQUE_USER]
    assert (later.outcome, later.reason) == (Outcome.EXCEPTION, "ended")
    shared = items([*base, member("reading-room", shared=True)],
                   access("reading-room"))[Check.UNIQUE_USER]  # fmt: skip
    assert (shared.outcome, shared.reason, shared.registry) == (
        Outcome.EXCEPTION, "shared", (at(3),)
    )  # fmt: skip


def test_employment_ending_on_the_access_day_still_covers_it() -> None:
    found = items([*clean_registry(), member("dr.lee", end=T0.date())])
    assert found[Check.UNIQUE_USER].outcome is Outcome.COVERED


def test_baa_missing_for_a_business_associate_and_after_a_baa_ended() -> None:
    no_baa = [org("nightrad"), member("dr.lee")]
    found = items(no_baa)[Check.BAA]
    assert (found.outcome, found.reason) == (Outcome.EXCEPTION, "no_baa")
    assert found.registry == (at(0), at(1))  # the organization and the membership
    ended = items([*no_baa, baa(end=date(2026, 3, 1))])[Check.BAA]
    assert (ended.outcome, ended.reason) == (Outcome.EXCEPTION, "no_baa")
    assert ended.registry == (at(0), at(1), at(2))  # ... and the BAA that ended
    other_facility = items([*no_baa, baa(facility="elsewhere")])[Check.BAA]
    assert other_facility.outcome is Outcome.EXCEPTION
    assert items([*no_baa, baa(end=T0.date())])[Check.BAA].outcome is Outcome.COVERED


def test_baa_does_not_apply_to_the_facilitys_own_or_a_covered_entitys_workforce() -> None:
    own = items([org(FACILITY, OrgKind.FACILITY), member("dr.lee", FACILITY)])[Check.BAA]
    assert (own.outcome, own.reason) == (Outcome.NOT_APPLICABLE, "workforce")
    ce = items([org("health", OrgKind.COVERED_ENTITY), member("dr.lee", "health")])[Check.BAA]
    assert (ce.outcome, ce.reason) == (Outcome.NOT_APPLICABLE, "workforce")
    # a member of a business associate AND of a covered entity: not all associates
    both = [org("nightrad"), org("health", OrgKind.COVERED_ENTITY), member("dr.lee"),
            member("dr.lee", "health")]  # fmt: skip
    assert items(both)[Check.BAA].outcome is Outcome.NOT_APPLICABLE
    # an organization the registry does not know is not a business associate
    unknown = items([member("dr.lee")])[Check.BAA]
    assert (unknown.outcome, unknown.reason) == (Outcome.NOT_APPLICABLE, "unknown_organization")
    # no membership on the day: the unique-user item says so, not the BAA item
    assert items([org("nightrad")])[Check.BAA].outcome is Outcome.NOT_APPLICABLE


def test_license_needed_for_a_radiologists_read_or_report_in_the_patients_state() -> None:
    base = [*clean_registry()[:3], member("dr.lee"), cred("dr.lee")]
    missing = items(base)[Check.LICENSE]
    assert (missing.outcome, missing.reason) == (Outcome.EXCEPTION, "no_license:MA")
    other_state = items([*base, lic("dr.lee", "NY")])[Check.LICENSE]
    assert other_state.outcome is Outcome.EXCEPTION
    expired = items([*base, lic("dr.lee", end=date(2026, 3, 1))])[Check.LICENSE]
    assert expired.outcome is Outcome.EXCEPTION
    assert expired.registry == (at(3), at(5))  # the membership and the expired license
    for action in ("R", "C", "U"):
        assert items(base, access("dr.lee", action=action))[Check.LICENSE].outcome is (
            Outcome.EXCEPTION
        )
    assert items(base, access("dr.lee", action="D"))[Check.LICENSE].outcome is (
        Outcome.NOT_APPLICABLE
    )
    assert items(base, access("dr.lee", study=False))[Check.LICENSE].outcome is (
        Outcome.NOT_APPLICABLE
    )
    no_state = items(base, access("dr.lee", state=None))[Check.LICENSE]
    assert (no_state.outcome, no_state.reason) == (Outcome.UNDECIDABLE, "no_patient_state")


def test_license_and_credential_only_for_the_configured_roles() -> None:
    tech = [*clean_registry()[:3], member("dr.lee", role="technologist")]
    found = items(tech)
    assert found[Check.LICENSE].outcome is Outcome.NOT_APPLICABLE
    assert found[Check.CREDENTIAL].outcome is Outcome.NOT_APPLICABLE
    techs = ChecklistConfig(licensed_roles=("technologist",), credentialed_roles=("technologist",))
    found = items(tech, config=techs)
    assert found[Check.LICENSE].outcome is Outcome.EXCEPTION
    assert found[Check.CREDENTIAL].outcome is Outcome.EXCEPTION


def test_credential_at_the_events_facility_valid_on_the_day() -> None:
    base = [*clean_registry()[:3], member("dr.lee"), lic("dr.lee")]
    missing = items(base)[Check.CREDENTIAL]
    assert (missing.outcome, missing.reason) == (Outcome.EXCEPTION, "no_credential")
    assert items([*base, cred("dr.lee", "elsewhere")])[Check.CREDENTIAL].outcome is (
        Outcome.EXCEPTION
    )
    later = items([*base, cred("dr.lee", start=date(2026, 3, 3))])[Check.CREDENTIAL]
    assert later.outcome is Outcome.EXCEPTION
    assert later.registry == (at(3), at(5))
    assert items([*base, cred("dr.lee")])[Check.CREDENTIAL].outcome is Outcome.COVERED


def test_the_registry_is_asked_as_known_at_the_access() -> None:
    late = change(lic("dr.lee"), at=T0 + timedelta(seconds=1), index=9)
    tl = timeline(*clean_registry()[:3], member("dr.lee"), cred("dr.lee"), late)
    assert check_access(access("dr.lee"), tl.known_at(T0), CONFIG)[Check.LICENSE].outcome is (
        Outcome.EXCEPTION
    )
    just_in_time = change(lic("dr.lee"), at=T0, index=9)
    tl = timeline(*clean_registry()[:3], member("dr.lee"), cred("dr.lee"), just_in_time)
    assert check_access(access("dr.lee"), tl.known_at(T0), CONFIG)[Check.LICENSE].outcome is (
        Outcome.COVERED
    )


def test_the_day_is_the_access_day_in_the_configured_time_zone() -> None:
    # 02:00 UTC on March 3 is still March 2 in Boston: the license ending on March 2 covers it
    night = access("dr.lee", at=datetime(2026, 3, 3, 2, 0, tzinfo=UTC))
    boston = ChecklistConfig(timezone="America/New_York")
    assert access_day(night, boston) == date(2026, 3, 2)
    assert access_day(night, CONFIG) == date(2026, 3, 3)
    records = [*clean_registry()[:3], member("dr.lee"), cred("dr.lee"),
               lic("dr.lee", end=date(2026, 3, 2))]  # fmt: skip
    tl = timeline(*records)
    when = night.event_time
    assert check_access(night, tl.known_at(when), boston)[Check.LICENSE].outcome is (
        Outcome.COVERED
    )
    assert check_access(night, tl.known_at(when), CONFIG)[Check.LICENSE].outcome is (
        Outcome.EXCEPTION
    )


def test_an_unknown_time_zone_is_refused() -> None:
    with pytest.raises(MalformedInputError, match="time zone"):
        ChecklistConfig(timezone="Mars/Olympus_Mons")


def test_ignored_users_are_held_to_no_registry_item() -> None:
    found = items(clean_registry(), access("pacs-system"),
                  ChecklistConfig(ignore_users=("pacs-system",)))  # fmt: skip
    assert {c: i.reason for c, i in found.items() if c is not Check.ENCRYPTED} == {
        c: "ignored_user" for c in Check if c is not Check.ENCRYPTED
    }
    assert found[Check.ENCRYPTED].outcome is Outcome.COVERED


def test_encrypted_item_reads_the_recorded_transport() -> None:
    reg = clean_registry("dr.lee")
    plain = items(reg, access("dr.lee", encrypted=False))[Check.ENCRYPTED]
    assert (plain.outcome, plain.reason) == (Outcome.EXCEPTION, "DICOM")
    unknown = items(reg, access("dr.lee", encrypted=None))[Check.ENCRYPTED]
    assert (unknown.outcome, unknown.reason) == (Outcome.UNDECIDABLE, "not_recorded")
