"""The registry as shown to people: narrowed by kind, user and facility, rendered as the
API's JSON, a CSV a spreadsheet cannot run, and a table with dates and open ends; and a
registry body parsed through the API's parser port, all of it or none."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import cast

import pytest
from rich.console import Console

from ledger.audit.registry import RegistryTimeline, parse_change
from ledger.audit.registrybook import (
    KnownIds,
    RegistryBodyError,
    RegistryLog,
    RegistryRead,
    known_ids,
)
from ledger.audit.registryview import KINDS, count, fields, narrowed, parse_kind, state_json
from ledger.errors import MalformedInputError
from ledgerctl.registryapi import EmittingRegistrySink, FileRegistryParser
from ledgerctl.registryshow import parse_as_of, print_table, render_csv, render_json
from producers import Credential, RegistryChange, RegistryOperation, WorkforceMember
from producers import RegistryRecord as PRecord
from tests.unit.test_registry_timeline import BAA, LIC, MEMBER, ORG, T0, leaf

ORIGIN = "test.ledger.local/compliance-registry/0"
NOTE = "test.ledger.local/compliance-registry/0\n6\nAAAA\n\n— key sig\n"
CRED = Credential(
    credential_id="cred-1",
    user_id="dr.lee",
    facility_id="stmarys",
    privilege="CT reads",
    valid_from=date(2024, 1, 1),
    valid_to=date(2026, 12, 31),
)
OTHER = WorkforceMember(
    user_id="tech.kim",
    organization_id="stmarys",
    role="technologist",
    shared_or_generic=True,
    employed_from=date(2020, 5, 1),
    employed_to=date(2025, 12, 31),
)


def registry() -> RegistryRead:
    """Six records upserted at T0 (leaves 0-5 of log 9); the license retired at T0+2h."""
    tl = RegistryTimeline()
    records: list[PRecord] = [ORG, MEMBER, OTHER, BAA, LIC, CRED]
    for i, record in enumerate(records):
        tl.add(parse_change(leaf(record, at=T0, index=i)))
    tl.add(
        parse_change(
            leaf(LIC, at=T0 + timedelta(hours=2), index=6, operation=RegistryOperation.RETIRE)
        )
    )
    log = RegistryLog(log_id=9, origin=ORIGIN, size=7, checkpoint=NOTE)
    return RegistryRead(timeline=tl, logs=(log,))


def test_narrowing_keeps_only_records_naming_the_user_or_facility() -> None:
    snap = registry().timeline.known_at(T0).snapshot()
    assert count(snap) == 6
    by_user = narrowed(snap, user="dr.lee")
    assert (len(by_user.members), len(by_user.licenses), len(by_user.credentials)) == (1, 1, 1)
    assert by_user.organizations == ()
    assert by_user.baas == ()
    by_facility = narrowed(snap, facility="stmarys")
    assert [e.record.user_id for e in by_facility.members] == ["tech.kim"]
    assert len(by_facility.baas) == 1
    assert len(by_facility.credentials) == 1
    assert by_facility.licenses == ()
    assert by_facility.organizations == ()
    both = narrowed(snap, user="dr.lee", facility="stmarys")
    assert count(both) == 1
    assert len(both.credentials) == 1
    only = narrowed(snap, kind="license")
    assert count(only) == 1
    assert len(only.licenses) == 1
    assert count(narrowed(snap, user="nobody")) == 0


def test_a_kind_is_one_of_five_in_any_case() -> None:
    assert parse_kind("BAA") == "baa"
    assert parse_kind(None) is None
    with pytest.raises(MalformedInputError, match="kind must be one of"):
        parse_kind("physician")


def test_the_state_json_names_the_checkpoint_and_each_records_change() -> None:
    read = registry()
    before = state_json(read, read.timeline.known_at(T0 + timedelta(hours=1)).snapshot())
    after = state_json(read, read.timeline.known_at(T0 + timedelta(hours=3)).snapshot())
    assert before["checkpoints"] == [{"log_id": 9, "origin": ORIGIN, "size": 7, "note": NOTE}]
    records = before["records"]
    assert isinstance(records, dict)
    assert set(records) == set(KINDS)
    (lic,) = records["license"]
    assert lic["license_id"] == "lic-1"
    assert lic["valid_to"] is None  # an open end
    assert lic["ledger"] == {"log_id": 9, "origin": ORIGIN, "leaf_index": 4}
    assert lic["known_since"] == T0.isoformat()
    after_records = after["records"]
    assert isinstance(after_records, dict)
    assert after_records["license"] == []  # retired at T0+2h
    assert after["as_of"] == (T0 + timedelta(hours=3)).isoformat()
    only = state_json(read, read.timeline.known_at(T0).snapshot(), kind="member")
    assert set(cast(dict[str, object], only["records"])) == {"member"}
    assert json.loads(render_json(read, read.timeline.known_at(T0).snapshot())) == state_json(
        read, read.timeline.known_at(T0).snapshot()
    )


def test_fields_use_the_registry_files_column_names() -> None:
    snap = registry().timeline.known_at(T0).snapshot()
    (member, other) = snap.members
    assert fields(member.record) == {
        "user_id": "dr.lee",
        "organization_id": "nightrad",
        "role": "radiologist",
        "shared_or_generic": False,
        "employed_from": "2023-01-01",
        "employed_to": None,
    }
    assert fields(snap.organizations[0].record)["organization_kind"] == "BUSINESS_ASSOCIATE"
    assert other.record.user_id == "tech.kim"


def test_csv_has_one_row_per_record_with_its_position_and_no_formula() -> None:
    read = registry()
    snap = read.timeline.known_at(T0).snapshot()
    rows = list(csv.DictReader(io.StringIO(render_csv(read, snap))))
    assert [r["kind"] for r in rows] == [
        "organization", "baa", "member", "member", "license", "credential",
    ]  # fmt: skip
    lic = rows[4]
    assert (lic["license_id"], lic["valid_to"], lic["log"], lic["leaf_index"]) == (
        "lic-1", "", ORIGIN, "4",
    )  # fmt: skip
    assert rows[2]["shared_or_generic"] == "false"
    one = render_csv(read, snap, "license").splitlines()
    assert (
        one[0]
        == "kind,license_id,user_id,state,number,valid_from,valid_to,known_since,log,leaf_index"
    )
    # A value a spreadsheet would run (a hostile producer's leaf) is quoted as text.
    evil = dataclasses.replace(LIC, number="=HYPERLINK(1)")
    tl = RegistryTimeline()
    tl.add(parse_change(leaf(evil, at=T0, index=0)))
    hostile = RegistryRead(timeline=tl, logs=read.logs)
    (row,) = csv.DictReader(io.StringIO(render_csv(hostile, tl.known_at(T0).snapshot())))
    assert row["number"] == "'=HYPERLINK(1)"


def test_the_table_shows_dates_open_ends_and_the_checkpoint() -> None:
    read = registry()
    out = Console(file=io.StringIO(), width=250, color_system=None)
    print_table(out, read, read.timeline.known_at(T0).snapshot())
    text = out.file.getvalue()  # type: ignore[attr-defined]
    assert f"read under the signed checkpoint {ORIGIN}:7" in text
    assert "2023-01-01" in text
    assert "open" in text  # dr.lee's employment and license have no end
    assert "2025-12-31" in text
    assert f"{ORIGIN} #4" in text
    assert "licenses (1)" in text
    empty = Console(file=io.StringIO(), width=250, color_system=None)
    print_table(
        empty,
        RegistryRead(timeline=RegistryTimeline(), logs=()),
        registry().timeline.known_at(T0).snapshot(),
        "baa",
    )
    assert "no registry log" in empty.file.getvalue()  # type: ignore[attr-defined]


def test_as_of_is_now_an_instant_with_an_offset_or_a_date() -> None:
    now = datetime(2026, 5, 1, tzinfo=UTC)
    assert parse_as_of(None, now=now) == now
    assert parse_as_of("now", now=now) == now
    assert parse_as_of("2026-03-01T12:00:00+02:00") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert parse_as_of("2026-03-01") == datetime(2026, 3, 1, tzinfo=UTC)
    for bad in ("yesterday", "2026-03-01T12:00:00", "2026-02-30"):
        with pytest.raises(MalformedInputError):
            parse_as_of(bad)


def test_known_ids_are_every_organization_and_member_ever_held() -> None:
    known = known_ids(registry())
    assert known.organizations == {"nightrad"}
    assert known.users == {"dr.lee", "tech.kim"}


GOOD_CSV = b"""kind,user_id,organization_id,role,shared_or_generic,employed_from,employed_to
member,dr.new,nightrad,radiologist,false,2024-01-01,
member,dr.old,nightrad,radiologist,false,2020-01-01,2023-12-31
"""


def test_a_good_body_becomes_every_change_authored_by_the_principal() -> None:
    parsed = FileRegistryParser().parse(
        GOOD_CSV,
        media="csv",
        author_user_id="officer-1",
        author_role="admin",
        known=KnownIds(organizations=frozenset({"nightrad"}), users=frozenset()),
    )
    assert len(parsed.changes) == 2
    assert {(c.author.user_id, c.author.role) for c in parsed.changes} == {("officer-1", "admin")}
    assert parsed.counts == (("member", "upsert", 2),)


def test_a_hostile_body_is_refused_whole_naming_every_bad_line() -> None:
    body = json.dumps(
        [
            {
                "kind": "organization",
                "organization_id": "ok",
                "name": "Fine",
                "organization_kind": "facility",
            },
            {
                "kind": "license",
                "license_id": "l1",
                "user_id": "ghost",
                "state": "ZZ",
                "number": "=cmd()",
                "valid_from": "2024-01-01",
                "valid_to": None,
            },
            {
                "kind": "baa",
                "baa_id": "b1",
                "facility_id": "ok",
                "business_associate_id": "nowhere",
                "effective_from": "2024-02-30",
                "effective_to": None,
                "scope": "reads",
            },
        ],
        indent=1,
    ).encode()
    with pytest.raises(RegistryBodyError) as refused:
        FileRegistryParser().parse(
            body, media="json", author_user_id="a", author_role="admin",
            known=KnownIds(organizations=frozenset(), users=frozenset()),
        )  # fmt: skip
    assert [(p.line, p.field) for p in refused.value.problems] == [
        (8, "state"),
        (8, "number"),
        (17, "effective_from"),
    ]
    assert "formula" in refused.value.problems[1].reason
    with pytest.raises(RegistryBodyError) as not_utf8:
        FileRegistryParser().parse(
            b"\xff\xfe k", media="csv", author_user_id="a", author_role="admin",
            known=KnownIds(organizations=frozenset(), users=frozenset()),
        )  # fmt: skip
    assert not_utf8.value.problems[0].line == 0


async def test_the_emitting_sink_hands_every_change_to_its_function() -> None:
    got: list[Sequence[RegistryChange]] = []

    async def emit(changes: Sequence[RegistryChange]) -> int:
        got.append(changes)
        return len(changes)

    parsed = FileRegistryParser().parse(
        GOOD_CSV, media="csv", author_user_id="o", author_role="admin",
        known=KnownIds(organizations=frozenset({"nightrad"}), users=frozenset()),
    )  # fmt: skip
    assert await EmittingRegistrySink(emit).submit(parsed.changes) == 2
    assert got == [parsed.changes]
