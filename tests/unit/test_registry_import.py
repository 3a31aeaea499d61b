"""``ledger registry import``'s checks against the stored registry: the stored registry's
live records (a retire withdraws), the ids it makes known, and every line the stored
records make wrong (a retire of nothing, a period overlapping a stored one, a stored
organization of the wrong kind), named by file and line. No Kafka or database here: the
stored changes are encoded messages as the ledger holds them."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ledgerctl.registryimport import lines_of, stored_problems, stored_registry
from producers import Codec, load_registry_files
from producers.registry import (
    Author,
    Baa,
    Credential,
    KnownRegistryIds,
    Organization,
    OrganizationKind,
    RegistryChange,
    RegistryKind,
    RegistryOperation,
    RegistryRecord,
    StateLicense,
    WorkforceMember,
)

AUTHOR = Author(user_id="officer", role="operator")
WHEN = datetime(2026, 6, 1, tzinfo=UTC)
HOSPITAL = Organization(
    organization_id="stmarys", name="St Mary's", organization_kind=OrganizationKind.FACILITY
)
GROUP = Organization(
    organization_id="nightrad",
    name="NightRad",
    organization_kind=OrganizationKind.BUSINESS_ASSOCIATE,
)
LEE = WorkforceMember(
    user_id="dr.lee", organization_id="nightrad", role="radiologist", employed_from=date(2023, 1, 1)
)
LICENSE = StateLicense(
    license_id="lic-1",
    user_id="dr.lee",
    state="CA",
    number="A1",
    valid_from=date(2024, 1, 1),
    valid_to=date(2025, 12, 31),
)
BAA = Baa(
    baa_id="baa-1",
    facility_id="stmarys",
    business_associate_id="nightrad",
    effective_from=date(2023, 1, 1),
    scope="reads",
)

LICENSE_HEADER = "kind,operation,license_id,user_id,state,number,valid_from,valid_to\n"


def stored(*changes: tuple[RegistryOperation, RegistryRecord]) -> list[bytes]:
    codec = Codec()
    return [
        codec.encode(
            RegistryChange(
                author=AUTHOR,
                record=record,
                operation=operation,
                event_time=WHEN,
                producer_id="registry-local",
                producer_seq=i,
            )
        )
        for i, (operation, record) in enumerate(changes)
    ]


UPSERT, RETIRE = RegistryOperation.UPSERT, RegistryOperation.RETIRE
BASE = stored((UPSERT, HOSPITAL), (UPSERT, GROUP), (UPSERT, LEE), (UPSERT, LICENSE), (UPSERT, BAA))


def problems(tmp_path: Path, text: str, values: list[bytes] = BASE) -> list[str]:
    """What an import of one CSV file would be refused for, as printed."""
    path = tmp_path / "import.csv"
    path.write_text(text)
    registry = stored_registry(values)
    changes = load_registry_files([path], author=AUTHOR, known=registry.known(), now=WHEN)
    return [str(p) for p in stored_problems(changes, lines_of([path]), registry)]


def test_the_stored_registry_is_the_last_change_per_record_and_a_retire_withdraws() -> None:
    renewed = dataclasses.replace(LICENSE, valid_to=date(2027, 12, 31))
    registry = stored_registry(
        [*BASE, *stored((UPSERT, renewed), (RETIRE, BAA), (RETIRE, dataclasses.replace(LEE)))]
    )
    assert registry.records[(RegistryKind.LICENSE, "lic-1")] == renewed
    assert (RegistryKind.BAA, "baa-1") not in registry.records
    assert registry.known() == KnownRegistryIds(
        organizations=frozenset({"stmarys", "nightrad"}), users=frozenset()
    )
    assert stored_registry(BASE).known().users == frozenset({"dr.lee"})


def test_a_renewal_after_the_stored_license_passes(tmp_path: Path) -> None:
    text = LICENSE_HEADER + "license,upsert,lic-2,dr.lee,CA,A2,2026-01-01,\n"
    assert problems(tmp_path, text) == []


def test_a_license_overlapping_a_stored_one_is_named_by_its_line(tmp_path: Path) -> None:
    text = (
        LICENSE_HEADER
        + "license,upsert,lic-2,dr.lee,CA,A2,2025-12-31,\n"  # shares the last day
        + "license,upsert,lic-3,dr.lee,NY,A3,2024-01-01,\n"  # another state: fine
    )
    path = tmp_path / "import.csv"
    assert problems(tmp_path, text) == [
        f"{path}:2: valid_from: overlaps the stored license 'lic-1' for the same user and state"
    ]


def test_replacing_or_retiring_the_stored_record_is_no_overlap(tmp_path: Path) -> None:
    replace = LICENSE_HEADER + "license,upsert,lic-1,dr.lee,CA,A1,2024-01-01,2026-12-31\n"
    assert problems(tmp_path, replace) == []
    retire_and_renew = (
        LICENSE_HEADER
        + "license,retire,lic-1,dr.lee,CA,A1,2024-01-01,2025-12-31\n"
        + "license,upsert,lic-2,dr.lee,CA,A2,2025-06-01,\n"
    )
    assert problems(tmp_path, retire_and_renew) == []


def test_a_retire_of_a_record_the_registry_does_not_hold_is_refused(tmp_path: Path) -> None:
    text = LICENSE_HEADER + "license,retire,lic-9,dr.lee,CA,A9,2024-01-01,\n"
    path = tmp_path / "import.csv"
    assert problems(tmp_path, text) == [
        f"{path}:2: operation: retires license 'lic-9', which the registry does not hold"
    ]
    # ... and so is one of a record already retired.
    gone = [*BASE, *stored((RETIRE, LICENSE))]
    text = LICENSE_HEADER + "license,retire,lic-1,dr.lee,CA,A1,2024-01-01,2025-12-31\n"
    assert len(problems(tmp_path, text, gone)) == 1


def test_a_baa_overlapping_a_stored_one_and_a_stored_org_of_the_wrong_kind(
    tmp_path: Path,
) -> None:
    text = (
        "kind,baa_id,facility_id,business_associate_id,effective_from,effective_to,scope\n"
        "baa,baa-2,stmarys,nightrad,2030-01-01,,more reads\n"  # the stored one is open
        "baa,baa-3,nightrad,nightrad,2030-01-01,,x\n"  # a business associate as facility
    )
    path = tmp_path / "import.csv"
    assert problems(tmp_path, text) == [
        f"{path}:2: effective_from: overlaps the stored baa 'baa-1' for the same facility "
        "and business associate",
        f"{path}:3: facility_id: 'nightrad' is a business_associate in the registry, not a "
        "covered_entity or facility",
    ]


def test_an_organization_defined_in_the_import_decides_its_own_kind(tmp_path: Path) -> None:
    orgs = tmp_path / "orgs.csv"
    orgs.write_text(
        "kind,organization_id,name,organization_kind\norganization,nightrad,NightRad,facility\n"
    )
    creds = tmp_path / "creds.csv"
    creds.write_text(
        "kind,credential_id,user_id,facility_id,privilege,valid_from,valid_to\n"
        "credential,cr-1,dr.lee,nightrad,reads,2024-01-01,\n"
    )
    registry = stored_registry(BASE)
    changes = load_registry_files([orgs, creds], author=AUTHOR, known=registry.known(), now=WHEN)
    assert stored_problems(changes, lines_of([orgs, creds]), registry) == []
    assert isinstance(changes[-1].record, Credential)


def test_stored_users_and_organizations_satisfy_references(tmp_path: Path) -> None:
    text = LICENSE_HEADER + "license,upsert,lic-2,dr.kim,CA,A2,2026-01-01,\n"
    from producers import RegistryFileError

    with pytest.raises(RegistryFileError) as caught:
        problems(tmp_path, text)
    assert "names user 'dr.kim', not a workforce member" in str(caught.value.problems[0])
    assert (
        problems(tmp_path, LICENSE_HEADER + "license,upsert,lic-2,dr.lee,TX,A2,2026-01-01,\n") == []
    )
