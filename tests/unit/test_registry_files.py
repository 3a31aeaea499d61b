"""Registry files: good CSV and JSON load whole; every refusal path names its line."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from producers import (
    Author,
    KnownRegistryIds,
    OrganizationKind,
    RegistryFileError,
    RegistryKind,
    RegistryOperation,
    RegistryProblem,
    StateLicense,
    load_registry_files,
)
from producers.registry import files as registry_files
from producers.registry import parse_registry_bytes

AUTHOR = Author(user_id="alice", role="compliance")
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

ORGS = """kind,operation,organization_id,name,organization_kind
organization,upsert,stmarys,St Mary's Hospital,facility
organization,,nightrad,NightRad Teleradiology,business_associate
"""
MEMBERS = """kind,user_id,organization_id,role,shared_or_generic,employed_from,employed_to
member,dr.lee,nightrad,radiologist,false,2023-01-01,
member,reading-room,stmarys,technologist,TRUE,2020-05-01,2025-12-31
"""
LICENSE_HEADER = "kind,license_id,user_id,state,number,valid_from,valid_to\n"
JSON_ITEMS: list[dict[str, object]] = [
    {
        "kind": "baa",
        "baa_id": "baa-1",
        "facility_id": "stmarys",
        "business_associate_id": "nightrad",
        "effective_from": "2023-01-01",
        "effective_to": None,
        "scope": "teleradiology reads",
    },
    {
        "kind": "license",
        "license_id": "lic-1",
        "user_id": "dr.lee",
        "state": "CA",
        "number": "A12345",
        "valid_from": "2022-01-01",
        "valid_to": "2027-03-31",
    },
    {
        "kind": "CREDENTIAL",
        "operation": "upsert",
        "credential_id": "cr-1",
        "user_id": "dr.lee",
        "facility_id": "stmarys",
        "privilege": "CT reads",
        "valid_from": "2023-01-01",
    },
]


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def good_files(tmp_path: Path) -> list[Path]:
    return [
        write(tmp_path, "orgs.csv", ORGS),
        write(tmp_path, "members.csv", MEMBERS),
        write(tmp_path, "more.json", json.dumps(JSON_ITEMS, indent=1)),
    ]


def load(*paths: Path, known: KnownRegistryIds | None = None) -> tuple[object, ...]:
    return load_registry_files(list(paths), author=AUTHOR, known=known, now=NOW)


def problems_of(*paths: Path, known: KnownRegistryIds | None = None) -> list[RegistryProblem]:
    with pytest.raises(RegistryFileError) as caught:
        load_registry_files(list(paths), author=AUTHOR, known=known, now=NOW)
    assert str(caught.value).startswith(f"{len(caught.value.problems)} problem(s)")
    return list(caught.value.problems)


def one_problem(*paths: Path, known: KnownRegistryIds | None = None) -> RegistryProblem:
    found = problems_of(*paths, known=known)
    assert len(found) == 1, found
    return found[0]


# --- good files ---------------------------------------------------------------------


def test_good_csv_and_json_files_load_in_the_order_they_apply(tmp_path: Path) -> None:
    changes = load_registry_files(good_files(tmp_path), author=AUTHOR, now=NOW)
    assert [(c.kind, c.record.record_id) for c in changes] == [
        (RegistryKind.ORGANIZATION, "stmarys"),
        (RegistryKind.ORGANIZATION, "nightrad"),
        (RegistryKind.MEMBER, "dr.lee@nightrad"),
        (RegistryKind.MEMBER, "reading-room@stmarys"),
        (RegistryKind.BAA, "baa-1"),
        (RegistryKind.LICENSE, "lic-1"),
        (RegistryKind.CREDENTIAL, "cr-1"),
    ]
    assert {c.event_time for c in changes} == {NOW}  # one import, one instant
    assert {c.author for c in changes} == {AUTHOR}
    assert len({c.event_id for c in changes}) == len(changes)
    org = changes[1].record
    assert getattr(org, "organization_kind", None) is OrganizationKind.BUSINESS_ASSOCIATE
    member = changes[3].record
    assert getattr(member, "shared_or_generic", None) is True
    assert getattr(member, "employed_to", None) == date(2025, 12, 31)
    assert changes[5].record == StateLicense(
        license_id="lic-1",
        user_id="dr.lee",
        state="CA",
        number="A12345",
        valid_from=date(2022, 1, 1),
        valid_to=date(2027, 3, 31),
    )


def test_a_bom_and_crlf_line_ends_are_accepted(tmp_path: Path) -> None:
    data = b"\xef\xbb\xbf" + ORGS.replace("\n", "\r\n").encode()
    changes = load(write(tmp_path, "orgs.csv", data))
    assert [c.record.record_id for c in changes] == ["stmarys", "nightrad"]


def test_names_the_registry_already_holds_may_be_referenced(tmp_path: Path) -> None:
    licenses = write(
        tmp_path, "lic.csv", LICENSE_HEADER + "license,lic-9,dr.kim,NY,77,2024-01-01,\n"
    )
    known = KnownRegistryIds(users=frozenset({"dr.kim"}))
    assert len(load(licenses, known=known)) == 1
    assert one_problem(licenses).reason == "names user 'dr.kim', not a workforce member"


def test_a_retire_line_is_loaded_as_retire(tmp_path: Path) -> None:
    orgs = write(tmp_path, "o.csv", ORGS.replace("organization,upsert,", "organization,RETIRE,"))
    changes = load(orgs)
    assert [c.operation for c in changes] == [RegistryOperation.RETIRE, RegistryOperation.UPSERT]


def test_periods_that_only_touch_do_not_overlap(tmp_path: Path) -> None:
    rows = (
        "license,lic-1,dr.lee,CA,1,2020-01-01,2021-12-31\n"
        "license,lic-2,dr.lee,CA,2,2022-01-01,\n"
        "license,lic-3,dr.lee,NY,3,2020-01-01,\n"
    )
    files = [*good_files(tmp_path)[:2], write(tmp_path, "lic.csv", LICENSE_HEADER + rows)]
    assert len(load(*files)) == 7


# --- whole-file refusals ------------------------------------------------------------


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    big = write(tmp_path, "big.csv", b"x" * (registry_files.MAX_FILE_BYTES + 1))
    found = one_problem(big)
    assert (found.line, found.field) == (0, "<file>")
    assert "larger than" in found.reason


def test_a_missing_file_or_another_suffix_is_refused(tmp_path: Path) -> None:
    assert "cannot be read" in one_problem(tmp_path / "absent.csv").reason
    assert "suffix '.xlsx'" in one_problem(write(tmp_path, "r.xlsx", ORGS)).reason


@pytest.mark.parametrize(
    ("bom", "encoding"),
    [(b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16"), (b"\x00\x00\xfe\xff", "UTF-32")],
)
def test_utf16_and_utf32_are_refused(tmp_path: Path, bom: bytes, encoding: str) -> None:
    found = one_problem(write(tmp_path, "o.csv", bom + ORGS.encode("utf-16-le")))
    assert found.reason == f"is {encoding} text: save it as UTF-8"


def test_bytes_that_are_not_utf8_are_refused_with_their_line(tmp_path: Path) -> None:
    data = ORGS.encode() + b"organization,,caf\xe9,Caf\xe9,facility\n"
    found = one_problem(write(tmp_path, "o.csv", data))
    assert (found.line, found.field) == (4, "<file>")
    assert "not UTF-8" in found.reason


# --- CSV refusals -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("organization_id,name,organization_kind", "no 'kind' column"),
        ("kind,organization_id,name,name,organization_kind", "names a column twice"),
        (
            "kind,organization_id,name,organisation_kind",
            "missing ['organization_kind'], unknown ['organisation_kind']",
        ),
    ],
)
def test_a_csv_header_of_no_kind_is_refused(tmp_path: Path, header: str, reason: str) -> None:
    found = one_problem(write(tmp_path, "o.csv", header + "\norganization,a,b,facility\n"))
    assert found.line == 1
    assert reason in found.reason


def test_an_empty_csv_is_refused(tmp_path: Path) -> None:
    assert "no header" in one_problem(write(tmp_path, "o.csv", "\n\n")).reason


def test_csv_line_refusals_each_name_their_line(tmp_path: Path) -> None:
    text = (
        ORGS
        + "organization,upsert,a,A\n"  # line 4: a field short
        + "baa,upsert,b,B,facility\n"  # line 5: another kind
        + "clinic,upsert,c,C,facility\n"  # line 6: no kind at all
        + "organization,delete,d,D,facility\n"  # line 7: no such operation
        + "organization,upsert,e,E,clinic\n"  # line 8: no such organization kind
    )
    found = problems_of(write(tmp_path, "o.csv", text))
    assert [(p.line, p.field) for p in found] == [
        (4, "<file>"),
        (5, "kind"),
        (6, "kind"),
        (7, "operation"),
        (8, "organization_kind"),
    ]
    assert found[0].reason == "has 4 fields; the header has 5"
    assert found[1].reason == "this file holds organization lines, not baa"


def test_a_quoted_cell_over_lines_reports_the_line_it_starts_on(tmp_path: Path) -> None:
    text = ORGS + 'organization,upsert,x,"two\nlines",clinic\n'
    found = one_problem(write(tmp_path, "o.csv", text))
    assert (found.line, found.field) == (4, "organization_kind")


def test_a_cell_over_the_csv_modules_limit_stops_the_file(tmp_path: Path) -> None:
    text = ORGS + "organization,upsert,x," + "n" * 200_000 + ",facility\n"
    found = one_problem(write(tmp_path, "o.csv", text))
    assert found.reason.startswith("is not valid CSV: field larger than field limit")
    assert found.line == 4


def test_more_lines_than_the_cap_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_files, "MAX_LINES", 1)
    found = one_problem(write(tmp_path, "o.csv", ORGS))
    assert (found.line, found.reason) == (3, "has more than 1 lines")


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t"])
def test_a_formula_in_a_cell_is_refused(tmp_path: Path, start: str) -> None:
    text = ORGS + f'organization,upsert,x,"{start}HYPERLINK(""http://evil"")",facility\n'
    found = one_problem(write(tmp_path, "o.csv", text))
    assert (found.line, found.field) == (4, "name")
    assert "a spreadsheet would run it as a formula" in found.reason


def test_every_bad_field_of_a_line_is_named(tmp_path: Path) -> None:
    row = "license,lic-2,dr.lee,ZZ,=1,2024-02-30,someday\n"
    found = problems_of(write(tmp_path, "l.csv", LICENSE_HEADER + row))
    assert [(p.line, p.field) for p in found] == [
        (2, "state"),
        (2, "number"),
        (2, "valid_from"),
        (2, "valid_to"),
    ]
    assert found[2].reason == "'2024-02-30' is not a calendar date"
    assert found[3].reason == "'someday' is not a date (YYYY-MM-DD)"


@pytest.mark.parametrize(
    ("row", "field", "reason"),
    [
        ("m,nightrad,radiologist,maybe,2023-01-01,", "shared_or_generic", "must be true or false"),
        ("m,nightrad,radiologist,false,,", "employed_from", "is required"),
        ("m,nightrad,,false,2023-01-01,", "role", "must not be empty"),
        (" m,nightrad,radiologist,false,2023-01-01,", "user_id", "must not start or end with"),
        ("m,nightrad,radiologist,false,2023-01-01,2022-12-31", "employed_to", "is before"),
        ("m,nightrad," + "r" * 300 + ",false,2023-01-01,", "role", "at most 256"),
        ("m,nightrad," + "r" * 5000 + ",false,2023-01-01,", "role", "at most 1024"),
    ],
)
def test_member_field_refusals(tmp_path: Path, row: str, field: str, reason: str) -> None:
    header = MEMBERS.splitlines()[0]
    files = [
        write(tmp_path, "o.csv", ORGS),
        write(tmp_path, "m.csv", f"{header}\nmember,{row}\n"),
    ]
    found = one_problem(*files)
    assert (found.file, found.line, found.field) == (str(files[1]), 2, field)
    assert reason in found.reason


# --- JSON refusals ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('{"kind": "baa"}', 1, "must be a JSON array of objects"),
        ("[\n1,\n", 3, "is not valid JSON"),
        ('[\n{"kind": "baa", "kind": "baa"}]', 2, "appears twice in one object"),
        ('[\n{"kind": "baa", "x": NaN}]', 2, "NaN is not a JSON value"),
        ("[\n" + "[" * 100_000, 2, "is not valid JSON"),
        ('[{"kind": "baa"} {"kind": "baa"}]', 1, "expected ',' or ']'"),
    ],
)
def test_malformed_json_is_refused_with_its_line(
    tmp_path: Path, text: str, line: int, reason: str
) -> None:
    found = problems_of(write(tmp_path, "r.json", text))[-1]
    assert (found.line, found.field) == (line, "<file>")
    assert reason in found.reason


def test_json_line_refusals_each_name_their_line(tmp_path: Path) -> None:
    items = [
        JSON_ITEMS[0],
        "baa-2",
        {**JSON_ITEMS[1], "expires": "2027-03-31"},
        {**JSON_ITEMS[2], "valid_from": 20230101},
        {k: v for k, v in JSON_ITEMS[1].items() if k != "kind"},
        {**JSON_ITEMS[1], "license_id": "lic-5", "valid_from": "2030-01-01", "valid_to": None},
    ]
    text = "[\n" + ",\n".join(json.dumps(i) for i in items) + "\n]\ntrailing"
    found = problems_of(write(tmp_path, "o.csv", ORGS), write(tmp_path, "r.json", text))
    assert [(p.line, p.field) for p in found] == [
        (3, "<file>"),
        (4, "expires"),
        (5, "valid_from"),
        (6, "kind"),
        (7, "user_id"),
        (9, "<file>"),
    ]
    assert found[0].reason == "holds a str, not an object"
    assert found[1].reason == "is not a field of a license"
    assert found[2].reason == "20230101 is not a date (YYYY-MM-DD)"
    assert found[4].reason == "names user 'dr.lee', not a workforce member"
    assert found[5].reason == "has text after the array"


def test_a_json_number_where_text_belongs_is_refused(tmp_path: Path) -> None:
    item = {**JSON_ITEMS[1], "number": 12345}
    found = problems_of(write(tmp_path, "r.json", json.dumps([item])))
    assert ("number", "must be text, not int") in [(p.field, p.reason) for p in found]


# --- cross-line refusals ------------------------------------------------------------


def test_a_duplicate_id_names_the_first_line(tmp_path: Path) -> None:
    files = [*good_files(tmp_path), write(tmp_path, "again.csv", ORGS)]
    found = problems_of(*files)
    assert [(p.file, p.line, p.field) for p in found] == [
        (str(files[3]), 2, "organization_id"),
        (str(files[3]), 3, "organization_id"),
    ]
    assert found[0].reason == f"duplicate organization 'stmarys' (first at {files[0]}:2)"


def test_a_member_twice_in_one_organization_is_a_duplicate(tmp_path: Path) -> None:
    text = MEMBERS + "member,dr.lee,nightrad,radiologist,false,2026-01-01,\n"
    found = one_problem(write(tmp_path, "o.csv", ORGS), write(tmp_path, "m.csv", text))
    assert (found.line, found.field) == (4, "user_id")
    assert "duplicate member 'dr.lee@nightrad'" in found.reason


def test_references_to_undefined_or_wrong_kinds_of_organization(tmp_path: Path) -> None:
    baas = [
        {**JSON_ITEMS[0], "baa_id": "b1", "facility_id": "nowhere"},
        {
            **JSON_ITEMS[0],
            "baa_id": "b2",
            "facility_id": "nightrad",
            "business_associate_id": "stmarys",
        },
        {**JSON_ITEMS[2], "facility_id": "nightrad"},
    ]
    files = [
        write(tmp_path, "o.csv", ORGS),
        write(tmp_path, "m.csv", MEMBERS),
        write(tmp_path, "b.json", "[\n" + ",\n".join(json.dumps(b) for b in baas) + "\n]"),
    ]
    found = problems_of(*files)
    assert [(p.line, p.field, p.reason) for p in found] == [
        (2, "facility_id", "names organization 'nowhere', not defined"),
        (3, "facility_id", "'nightrad' is a business_associate, not a covered_entity or facility"),
        (3, "business_associate_id", "'stmarys' is a facility, not a business_associate"),
        (4, "facility_id", "'nightrad' is a business_associate, not a covered_entity or facility"),
    ]
    known = KnownRegistryIds(organizations=frozenset({"nowhere"}))
    assert len(problems_of(*files, known=known)) == 3


def test_a_member_of_an_undefined_organization_is_refused(tmp_path: Path) -> None:
    found = one_problem(
        write(tmp_path, "m.csv", MEMBERS),
        write(tmp_path, "o.csv", ORGS.rsplit("organization,,", 1)[0]),
    )
    assert (found.line, found.field) == (2, "organization_id")


@pytest.mark.parametrize(
    ("second", "overlaps"),
    [
        ("2021-06-01,2021-06-30", True),  # inside
        ("2021-12-31,", True),  # shares the last day
        ("2019-01-01,2020-01-01", True),  # shares the first day
        ("2022-01-01,", False),
        ("2019-01-01,2019-12-31", False),
    ],
)
def test_overlapping_licenses_for_one_state_are_refused(
    tmp_path: Path, second: str, overlaps: bool
) -> None:
    rows = f"license,lic-1,dr.lee,CA,1,2020-01-01,2021-12-31\nlicense,lic-2,dr.lee,CA,2,{second}\n"
    files = [*good_files(tmp_path)[:2], write(tmp_path, "lic.csv", LICENSE_HEADER + rows)]
    if not overlaps:
        assert len(load(*files)) == 6
        return
    found = one_problem(*files)
    assert found.field == "valid_from"
    assert "for the same user and state" in found.reason


def test_overlapping_baas_and_credentials_are_refused(tmp_path: Path) -> None:
    items = [
        *JSON_ITEMS[:1],
        {**JSON_ITEMS[0], "baa_id": "baa-2", "effective_from": "2030-01-01"},
        JSON_ITEMS[2],
        {**JSON_ITEMS[2], "credential_id": "cr-2", "valid_to": "2023-01-01"},
        {**JSON_ITEMS[2], "credential_id": "cr-3", "privilege": "MR reads"},
    ]
    files = [*good_files(tmp_path)[:2], write(tmp_path, "r.json", json.dumps(items, indent=1))]
    found = problems_of(*files)
    assert [p.field for p in found] == ["effective_from", "valid_from"]
    assert "the same facility and business associate" in found[0].reason
    assert "the same user, facility and privilege" in found[1].reason


def test_one_bad_file_refuses_the_good_ones_too(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.csv", LICENSE_HEADER + "license,lic-2,dr.lee,ZZ,1,2024-01-01,\n")
    found = problems_of(*good_files(tmp_path), bad)
    assert {p.file for p in found} == {str(bad)}


def test_parse_registry_bytes_needs_no_file() -> None:
    rows, problems = parse_registry_bytes("upload.csv", ORGS.encode())
    assert (len(rows), problems) == (2, [])


def test_a_bad_quote_stops_the_csv_file(tmp_path: Path) -> None:
    text = ORGS + 'organization,upsert,"x"y,X,facility\norganization,upsert,z,Z,facility\n'
    found = one_problem(write(tmp_path, "o.csv", text))
    assert (found.line, found.field) == (4, "<file>")
    assert found.reason.startswith("is not valid CSV:")


def test_a_nul_in_a_cell_is_refused() -> None:
    data = b"kind,organization_id,name,organization_kind\norganization,a\x00b,N,facility\n"
    rows, problems = parse_registry_bytes("o.csv", data)
    assert rows == []
    assert [(p.line, p.field, p.reason) for p in problems] == [
        (2, "organization_id", "must not contain NUL characters")
    ]
