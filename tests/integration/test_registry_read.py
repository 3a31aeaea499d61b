"""The registry read from a real scratch ledger: real RegistryChange leaves appended and
signed, read whole below the signed checkpoint (or the current size), as known at two
times; and the /v1/registry API in process on real PostgreSQL: the state and the paged
history with their checkpoint, writes refused to roles without ``registry_write``, a
hostile file refused whole naming every bad line with nothing emitted, a good one
emitted authored by the token's subject, and every request recorded."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.audit.disclosure import LeafRange
from ledger.audit.readlog import LedgerRead
from ledger.http import create_app
from ledger.http.registry import RegistryWrites
from ledger.pg.reader import PostgresReader
from ledger.pg.registrybook import PostgresRegistry
from ledgerctl.registryapi import FileRegistryParser
from producers import (
    Author,
    Baa,
    Organization,
    OrganizationKind,
    RegistryChange,
    RegistryOperation,
    RegistryRecord,
    StateLicense,
    WorkforceMember,
)
from tests.registry_leaves import append_registry
from tests.support import Stack

pytestmark = pytest.mark.integration

T1 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
T2 = T1 + timedelta(days=10)
AUTHOR = Author(user_id="officer", role="compliance")


def first_changes(tag: str) -> list[RegistryChange]:
    """At T1: a teleradiology group, its radiologist, a BAA with a facility, a license."""
    group = f"nightrad-{tag}"
    records: list[RegistryRecord] = [
        Organization(organization_id=f"stmarys-{tag}", name="St Mary's",
                     organization_kind=OrganizationKind.FACILITY),
        Organization(organization_id=group, name="NightRad",
                     organization_kind=OrganizationKind.BUSINESS_ASSOCIATE),
        WorkforceMember(user_id=f"dr.lee-{tag}", organization_id=group, role="radiologist",
                        shared_or_generic=False, employed_from=date(2023, 1, 1)),
        Baa(baa_id=f"baa-{tag}", facility_id=f"stmarys-{tag}", business_associate_id=group,
            effective_from=date(2023, 1, 1), effective_to=None, scope="reads"),
        StateLicense(license_id=f"lic-{tag}", user_id=f"dr.lee-{tag}", state="MA",
                     number="A1", valid_from=date(2024, 1, 1), valid_to=None),
    ]  # fmt: skip
    return [RegistryChange(author=AUTHOR, record=r, event_time=T1) for r in records]


def second_changes(tag: str) -> list[RegistryChange]:
    """At T2: the BAA ends on 2026-03-31 and the license is retired."""
    first = first_changes(tag)
    baa, lic = first[3].record, first[4].record
    assert isinstance(baa, Baa)
    return [
        RegistryChange(author=AUTHOR, record=replace(baa, effective_to=date(2026, 3, 31)),
                       event_time=T2),
        RegistryChange(author=AUTHOR, record=lic, operation=RegistryOperation.RETIRE,
                       event_time=T2),
    ]  # fmt: skip


@dataclass(frozen=True)
class World:
    tag: str
    topic: str
    log_id: int
    origin: str


@pytest.fixture(scope="module")
async def world(stack: Stack) -> World:
    tag = secrets.token_hex(3)
    topic = f"regread-{tag}-registry"
    log_id = await append_registry(
        stack.appender_url, topic, first_changes(tag), signer_key_file=stack.signer_key_file
    )
    await append_registry(
        stack.appender_url, topic, second_changes(tag), first_offset=5,
        signer_key_file=stack.signer_key_file,
    )  # fmt: skip
    return World(tag=tag, topic=topic, log_id=log_id, origin=f"test.ledger.local/{topic}/0")


async def test_the_registry_as_known_at_two_times_from_its_signed_leaves(
    stack: Stack, world: World
) -> None:
    async with PostgresRegistry(dsn=stack.reader_url, registry_topic=world.topic) as book:
        read = await book.read()
        ((log),) = read.logs
        assert (log.log_id, log.origin, log.size) == (world.log_id, world.origin, 7)
        assert log.checkpoint is not None
        assert log.checkpoint.startswith(f"{world.origin}\n7\n")
        assert read.undecodable == 0
        before = read.timeline.known_at(T1 + timedelta(days=1)).snapshot()
        after = read.timeline.known_at(T2).snapshot()
        (baa_before,) = before.baas
        (baa_after,) = after.baas
        assert baa_before.record.effective_to is None
        assert baa_before.position.leaf_index == 3
        assert baa_after.record.effective_to == date(2026, 3, 31)
        assert baa_after.position.leaf_index == 5
        assert len(before.licenses) == 1
        assert after.licenses == ()
        assert read.timeline.known_at(T1 - timedelta(seconds=1)).snapshot().organizations == ()
        # The same sizes: the same read, from the cache.
        assert await book.read() is read


async def test_unsigned_leaves_are_read_only_when_asked_and_then_incrementally(
    stack: Stack,
) -> None:
    tag = secrets.token_hex(3)
    topic = f"regread-{tag}-registry"
    await append_registry(
        stack.appender_url, topic, first_changes(tag)[:2], signer_key_file=stack.signer_key_file
    )
    async with PostgresRegistry(dsn=stack.reader_url, registry_topic=topic) as book:
        signed = await book.read()
        assert signed.timeline.size == 2
        await append_registry(stack.appender_url, topic, first_changes(tag)[2:], first_offset=2)
        assert (await book.read()).timeline.size == 2  # nothing new is signed
        current = await book.read(signed=False)
        assert current.timeline.size == 5
        assert current.logs[0].checkpoint is None
        assert (await book.read()).timeline.size == 2
    async with PostgresRegistry(dsn=stack.reader_url, registry_topic="no-such-topic") as empty:
        nothing = await empty.read()
        assert nothing.logs == ()
        assert nothing.timeline.size == 0


# ----------------------------------------------------------------------------- the API


class KeptReads:
    def __init__(self) -> None:
        self.reads: list[LedgerRead] = []

    async def record(self, read: LedgerRead) -> None:
        self.reads.append(read)


class KeptChanges:
    """A ``RegistrySink`` that keeps what it was given (the emitter's own tests cover
    Kafka): what the API would have emitted."""

    def __init__(self) -> None:
        self.batches: list[Sequence[RegistryChange]] = []

    async def submit(self, changes: Sequence[RegistryChange]) -> int:
        self.batches.append(changes)
        return len(changes)


@dataclass
class Api:
    client: TestClient  # type: ignore[type-arg]
    reads: KeptReads
    sink: KeptChanges


@pytest.fixture
async def api(stack: Stack, world: World) -> AsyncIterator[Api]:
    reads, sink = KeptReads(), KeptChanges()
    async with (
        PostgresReader(dsn=stack.reader_url) as reader,
        PostgresRegistry(dsn=stack.reader_url, registry_topic=world.topic) as book,
    ):
        app = create_app(
            reader=reader, tokens=reader, recorder=reads, registry_book=book,
            registry_writes=RegistryWrites(parser=FileRegistryParser(), sink=sink),
        )  # fmt: skip
        async with TestClient(TestServer(app)) as client:
            yield Api(client=client, reads=reads, sink=sink)


async def test_the_state_as_of_two_times_names_its_checkpoint_and_positions(
    api: Api, stack: Stack, world: World
) -> None:
    headers = stack.auth("auditor")
    resp = await api.client.get("/v1/registry", params={"as_of": "2026-03-02T00:00:00Z"},
                                headers=headers)  # fmt: skip
    assert resp.status == 200, await resp.text()
    before = await resp.json()
    resp = await api.client.get("/v1/registry", params={"as_of": T2.isoformat()}, headers=headers)
    after = await resp.json()
    assert before["checkpoints"][0]["origin"] == world.origin
    assert before["checkpoints"][0]["size"] == 7
    assert before["checkpoints"][0]["note"].startswith(f"{world.origin}\n7\n")
    (baa,) = before["records"]["baa"]
    assert baa["effective_to"] is None
    assert baa["ledger"] == {"log_id": world.log_id, "origin": world.origin, "leaf_index": 3}
    assert after["records"]["baa"][0]["effective_to"] == "2026-03-31"
    assert len(before["records"]["license"]) == 1
    assert after["records"]["license"] == []
    # Narrowed: one user's records; one kind.
    resp = await api.client.get(
        "/v1/registry", params={"user": f"dr.lee-{world.tag}", "as_of": "2026-03-02"},
        headers=stack.auth("investigator"),
    )  # fmt: skip
    mine = (await resp.json())["records"]
    assert (len(mine["member"]), len(mine["license"]), mine["organization"]) == (1, 1, [])
    resp = await api.client.get("/v1/registry", params={"kind": "organization"}, headers=headers)
    assert set((await resp.json())["records"]) == {"organization"}
    resp = await api.client.get("/v1/registry", params={"kind": "nurse"}, headers=headers)
    assert resp.status == 400
    # Every read is recorded, disclosing the registry log up to the checkpoint read.
    assert [r.status for r in api.reads.reads] == [200, 200, 200, 200, 400]
    first = api.reads.reads[0]
    assert first.disclosed.ranges == (LeafRange(origin=world.origin, start=0, end=7),)
    assert first.results == 5
    assert first.parameters["as_of"] == "2026-03-02T00:00:00Z"


async def test_the_history_pages_in_the_order_the_registry_applies(
    api: Api, stack: Stack, world: World
) -> None:
    headers = stack.auth("investigator")
    resp = await api.client.get("/v1/registry/changes", params={"limit": "4"}, headers=headers)
    page1 = await resp.json()
    assert resp.status == 200, page1
    assert [c["ledger"]["leaf_index"] for c in page1["changes"]] == [0, 1, 2, 3]
    assert page1["changes"][0]["author"] == {"user_id": "officer", "role": "compliance"}
    resp = await api.client.get(
        "/v1/registry/changes", params={"limit": "4", "cursor": page1["next_cursor"]},
        headers=headers,
    )  # fmt: skip
    page2 = await resp.json()
    assert [(c["ledger"]["leaf_index"], c["operation"]) for c in page2["changes"]] == [
        (4, "upsert"), (5, "upsert"), (6, "retire"),
    ]  # fmt: skip
    assert page2["next_cursor"] is None
    resp = await api.client.get(
        "/v1/registry/changes", params={"since": T2.isoformat()}, headers=headers
    )
    assert [c["kind"] for c in (await resp.json())["changes"]] == ["baa", "license"]
    resp = await api.client.get(
        "/v1/registry/changes",
        params={"since": T2.isoformat(), "cursor": page1["next_cursor"]},
        headers=headers,
    )
    assert resp.status == 400  # a cursor is bound to its filters


GOOD = b"""kind,user_id,organization_id,role,shared_or_generic,employed_from,employed_to
member,dr.new,{group},radiologist,false,2024-01-01,
"""

HOSTILE = b"""kind,license_id,user_id,state,number,valid_from,valid_to
license,l1,dr.nobody,MA,A1,2024-01-01,
license,l2,dr.x,ZZ,=cmd|' /C calc'!A0,2024-01-01,
license,l3,dr.y,MA,B2,2024-05-01,2024-04-01
license,l1,dr.z,MA,C3,2024-01-01,
"""


async def test_writes_are_the_admins_and_refused_roles_are_recorded(
    api: Api, stack: Stack, world: World
) -> None:
    body = GOOD.replace(b"{group}", f"nightrad-{world.tag}".encode())
    for role in ("investigator", "auditor"):
        resp = await api.client.post(
            "/v1/registry/changes", data=body,
            headers={**stack.auth(role), "Content-Type": "text/csv"},
        )  # fmt: skip
        assert resp.status == 403
    assert api.sink.batches == []
    assert [(r.role, r.method, r.status) for r in api.reads.reads] == [
        ("investigator", "POST", 403), ("auditor", "POST", 403),
    ]  # fmt: skip
    csv = {**stack.auth("admin"), "Content-Type": "text/csv"}
    resp = await api.client.post("/v1/registry/changes", data=body, headers=csv)
    answer = await resp.json()
    assert resp.status == 202, answer
    assert answer["submitted"] == 1
    assert answer["changes"] == [{"kind": "member", "operation": "upsert", "count": 1}]
    ((change,),) = api.sink.batches
    assert (change.author.user_id, change.author.role) == ("test-admin", "admin")
    assert api.reads.reads[-1].parameters["format"] == "csv"


async def test_a_hostile_file_is_refused_whole_naming_every_bad_line(
    api: Api, stack: Stack
) -> None:
    resp = await api.client.post(
        "/v1/registry/changes", data=HOSTILE,
        headers={**stack.auth("admin"), "Content-Type": "text/csv"},
    )  # fmt: skip
    assert resp.status == 400
    assert resp.content_type == "application/problem+json"
    problem = await resp.json()
    assert problem["status"] == 400
    lines = sorted({p["line"] for p in problem["problems"]})
    assert lines == [2, 3, 4, 5]  # every data line: unknown user, state+formula, period, dup
    by_line = {p["line"]: p for p in problem["problems"]}
    assert "dr.nobody" in by_line[2]["reason"]
    assert {p["field"] for p in problem["problems"] if p["line"] == 3} >= {"state", "number"}
    assert api.sink.batches == []  # nothing applied
    assert api.reads.reads[-1].status == 400
    # Not a registry format; JSON that is not an array of records.
    plain = {**stack.auth("admin"), "Content-Type": "text/plain"}
    resp = await api.client.post("/v1/registry/changes", data=b"x", headers=plain)
    assert resp.status == 415
    resp = await api.client.post("/v1/registry/changes", json={}, headers=stack.auth("admin"))
    assert resp.status == 400
    assert (await resp.json())["problems"][0]["line"] >= 0
    # A file that changes nothing (an empty array, a header alone) is refused too.
    resp = await api.client.post("/v1/registry/changes", json=[], headers=stack.auth("admin"))
    assert resp.status == 400
    assert (await resp.json())["problems"] == [
        {"line": 0, "field": "<file>", "reason": "holds no change: nothing to apply"}
    ]
    assert api.sink.batches == []


async def test_without_a_sink_a_good_file_is_503_and_a_bad_one_still_named(
    stack: Stack, world: World
) -> None:
    reads = KeptReads()
    async with (
        PostgresReader(dsn=stack.reader_url) as reader,
        PostgresRegistry(dsn=stack.reader_url, registry_topic=world.topic) as book,
    ):
        app = create_app(
            reader=reader, tokens=reader, recorder=reads, registry_book=book,
            registry_writes=RegistryWrites(parser=FileRegistryParser(), sink=None),
        )  # fmt: skip
        csv = {**stack.auth("admin"), "Content-Type": "text/csv"}
        async with TestClient(TestServer(app)) as client:
            good = GOOD.replace(b"{group}", f"nightrad-{world.tag}".encode())
            resp = await client.post("/v1/registry/changes", data=good, headers=csv)
            assert resp.status == 503
            assert "not configured" in (await resp.json())["error"]["message"]
            resp = await client.post("/v1/registry/changes", data=HOSTILE, headers=csv)
            assert resp.status == 400
        app = create_app(reader=reader, tokens=reader, recorder=reads, registry_book=book)
        async with TestClient(TestServer(app)) as client:
            resp = await client.post("/v1/registry/changes", data=HOSTILE, headers=csv)
            assert resp.status == 503
    assert [r.status for r in reads.reads] == [503, 400, 503]


async def test_pages_keep_their_checkpoint_while_changes_arrive(stack: Stack) -> None:
    """A change appended (and signed) between two pages, even one dated before every
    other, is in no page of that listing, and first in a new one."""
    tag = secrets.token_hex(3)
    topic = f"regread-{tag}-registry"
    await append_registry(
        stack.appender_url, topic, first_changes(tag), signer_key_file=stack.signer_key_file
    )
    reads = KeptReads()
    async with (
        PostgresReader(dsn=stack.reader_url) as reader,
        PostgresRegistry(dsn=stack.reader_url, registry_topic=topic) as book,
    ):
        app = create_app(reader=reader, tokens=reader, recorder=reads, registry_book=book)
        headers = stack.auth("auditor")
        async with TestClient(TestServer(app)) as client:
            resp = await client.get("/v1/registry/changes", params={"limit": "3"}, headers=headers)
            page1 = await resp.json()
            early = RegistryChange(
                author=AUTHOR, record=first_changes(tag)[0].record, event_time=T1 - timedelta(1)
            )
            await append_registry(
                stack.appender_url, topic, [early], first_offset=5,
                signer_key_file=stack.signer_key_file,
            )  # fmt: skip
            resp = await client.get(
                "/v1/registry/changes", params={"limit": "3", "cursor": page1["next_cursor"]},
                headers=headers,
            )  # fmt: skip
            page2 = await resp.json()
            resp = await client.get("/v1/registry/changes", params={"limit": "3"}, headers=headers)
            fresh = await resp.json()
    seen = [c["ledger"]["leaf_index"] for c in page1["changes"] + page2["changes"]]
    assert seen == [0, 1, 2, 3, 4]
    assert page2["next_cursor"] is None
    assert [c["ledger"]["leaf_index"] for c in fresh["changes"]] == [5, 0, 1]
    assert fresh["checkpoints"][0]["size"] == 6
