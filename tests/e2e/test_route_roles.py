"""Every route of the running API, walked with every role and with no token.

The expected answer comes from the table in docs/api.md (which a unit test keeps equal
to the app's routes): a role holding the route's permission gets its answer, any other
role 403, no token 401, and a public route answers everyone. Every request to a
non-public route must have left its Audit Log Used entry in the ledger, naming the
caller (``(anonymous)`` without a valid token) and the status it got; a public route
must have left none. Real Kafka, consumer, PostgreSQL and ``ledger serve``.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from dataclasses import dataclass, field

import aiohttp
import asyncpg
import pytest

from integrations.simulator import Simulator
from ledger.audit.auth import Role
from ledger.log import merkle
from ledger.log.checkpoint import open_checkpoint
from ledger.log.keys import parse_verifiers
from ledgerctl.tokens import create_token
from producers.events import PhiAccessEvent
from tests.e2e.conftest import E2E_SEED, Pipeline, wait_for_events
from tests.route_table import Row, documented_table

pytestmark = pytest.mark.e2e

ANONYMOUS = "(anonymous)"
#: An alert id no test raises (the walk asks for an unknown alert).
NO_ALERT = 9_000_000_000_000


@dataclass(frozen=True)
class World:
    patient: str
    issuer: str | None
    user: str
    study: str
    accession: str
    event: str
    log: int
    size: int


@dataclass
class Caller:
    """One principal of the walk: a role with a fresh token of its own subject, or none."""

    role: str | None
    subject: str
    headers: dict[str, str]
    recorded: list[tuple[str, int]] = field(default_factory=list)  # (read id, status)


@pytest.fixture(scope="module")
async def world(pipeline: Pipeline) -> World:
    sim = Simulator(seed=E2E_SEED + 1200, patients=2)
    events = [e for e in sim.events(12, relay_every=0) if isinstance(e, PhiAccessEvent)]
    async with pipeline.emitter("e2e-route-roles") as emitter:
        for event in events:
            await emitter.emit(event)
        await emitter.flush()
    first = next(e for e in events if e.study is not None)
    assert first.study is not None
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as admin:
        await wait_for_events(admin, pipeline, [str(e.event_id) for e in events])
        async with admin.get(f"{pipeline.api_url}/v1/events/{first.event_id}") as resp:
            log = (await resp.json())["ledger"]["log_id"]
        async with admin.get(f"{pipeline.api_url}/v1/logs") as resp:
            size = next(g["checkpoint_size"] for g in (await resp.json())["logs"] if g["id"] == log)
    return World(
        patient=first.patient.id,
        issuer=first.patient.issuer,
        user=first.actor.user_id,
        study=first.study.uid,
        accession=first.study.accession or "no-accession",
        event=str(first.event_id),
        log=log,
        size=size,
    )


@pytest.fixture
async def callers(pipeline: Pipeline) -> list[Caller]:
    run = secrets.token_hex(3)
    out = [Caller(role=None, subject=ANONYMOUS, headers={})]
    for role in Role:
        subject = f"walk-{run}-{role.value}"
        issued = await create_token(
            pipeline.stack.owner_url, subject=subject, role=role, ttl=None, note="route walk"
        )
        out.append(Caller(role.value, subject, {"Authorization": f"Bearer {issued.text}"}))
    return out


def request_for(row: Row, w: World) -> tuple[str, dict[str, object] | None, int]:
    """A concrete request for a documented route, and the status its holders get."""
    since, until = "2020-01-01T00:00:00Z", "2030-01-01T00:00:00Z"
    concrete = {
        "/logs/{log}/tile/{level}/{path}": f"/logs/{w.log}/tile/0/000.p/1",
        "/logs/{log}/tile/entries/{path}": f"/logs/{w.log}/tile/entries/000.p/1",
        "/v1/logs/{log}/leaves": f"/v1/logs/{w.log}/leaves?limit=2",
        "/v1/logs/{log}/index": f"/v1/logs/{w.log}/index?limit=2",
        "/v1/logs/{log}/proof/inclusion": f"/v1/logs/{w.log}/proof/inclusion?index=0&tree_size=1",
        "/v1/logs/{log}/proof/consistency":
            f"/v1/logs/{w.log}/proof/consistency?first=1&second={w.size}",
        "/v1/users/{user_id}/accesses": f"/v1/users/{w.user}/accesses?limit=2",
        "/v1/studies/{study_uid}/accesses": f"/v1/studies/{w.study}/accesses?limit=2",
        "/v1/accessions/{accession}/accesses": f"/v1/accessions/{w.accession}/accesses?limit=2",
        "/v1/patients/{patient_id}/accesses": f"/v1/patients/{w.patient}/accesses?limit=2",
        "/fhir/AuditEvent": f"/fhir/AuditEvent?patient={w.patient}&_count=2",
        "/v1/reports/compliance": "/v1/reports/compliance?facility=route-walk&month=2026-01",
    }  # fmt: skip
    path = concrete.get(row.path) or (
        row.path.replace("{log}", str(w.log))
        .replace("{event_id}", w.event)
        .replace("{patient_id}", w.patient)
    )
    if row.method == "POST" and row.path == "/v1/investigations":
        return path, {"since": since, "until": until, "users": [w.user]}, 200
    if "{alert_id}" in row.path:  # no such alert: its holders get 404, recorded
        path = row.path.replace("{alert_id}", str(NO_ALERT))
        if row.method == "POST":
            return path, {"state": "acknowledged", "note": "route walk"}, 404
        return path, None, 404
    if row.method == "POST" and row.path == "/fhir":  # an empty batch: answered, no entries
        return path, {"resourceType": "Bundle", "type": "batch"}, 200
    if row.method == "POST":  # /fhir/AuditEvent: an empty resource is refused (recorded)
        return path, {}, 400
    return path, None, 200


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: dict[str, object] | None
) -> tuple[int, str | None, dict[str, object] | None]:
    async with http.request(method, url, json=body) as resp:
        try:
            payload = await resp.json(content_type=None)
        except (ValueError, UnicodeDecodeError):
            payload = None
        return resp.status, resp.headers.get("Ledger-Audit-Event"), payload


async def landed(pipeline: Pipeline, ids: list[str], timeout: float = 60) -> None:
    """Wait until every event is appended to the ledger."""
    conn = await asyncpg.connect(pipeline.stack.owner_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await conn.fetch(
                "SELECT event_id FROM events WHERE event_id = ANY($1::uuid[])",
                [uuid.UUID(i) for i in ids],
            )
            if len(rows) == len(set(ids)):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"{len(set(ids)) - len(rows)} read records never reached the ledger")
            await asyncio.sleep(0.3)
    finally:
        await conn.close()


async def recorded_read(admin: aiohttp.ClientSession, api: str, read_id: str) -> dict:  # type: ignore[type-arg]
    async with admin.get(f"{api}/v1/events/{read_id}") as resp:
        assert resp.status == 200, read_id
        detail = await resp.json()
    assert detail["schema"] == "philedger.audit.AuditLogUsed"
    event: dict = detail["event"]  # type: ignore[type-arg]
    return event


async def anonymous_position(pipeline: Pipeline, read_id: str) -> tuple[int, int]:
    conn = await asyncpg.connect(pipeline.stack.owner_url)
    try:
        row = await conn.fetchrow(
            "SELECT log_id, leaf_index, user_id FROM events WHERE event_id = $1",
            uuid.UUID(read_id),
        )
    finally:
        await conn.close()
    assert row is not None
    assert row["user_id"] == ANONYMOUS
    return int(row["log_id"]), int(row["leaf_index"])


async def test_every_route_with_every_role_matches_the_table_and_is_recorded(
    pipeline: Pipeline, world: World, callers: list[Caller]
) -> None:
    api = pipeline.api_url
    table = documented_table()
    # The running server's own route list (its OpenAPI document, kept equal to its
    # routes by a unit test) is exactly the table: no route goes unwalked.
    status, _, described = await _as(callers[0], "GET", f"{api}/openapi.json", None)
    assert status == 200
    assert described is not None
    paths: dict[str, dict[str, object]] = described["paths"]  # type: ignore[assignment]
    served = {(m.upper(), p) for p, ops in paths.items() for m in ops}
    assert served == {(row.method, row.path) for row in table}
    anonymous = callers[0]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(30)) as http:
        # Barrier: every anonymous record goes to one partition (keyed by the user), so
        # the anonymous entries between two barriers are exactly the walk's.
        status, start_id, _ = await call(http, "GET", f"{api}/v1/logs", None)
        assert status == 401
        assert start_id is not None
        anonymous.recorded.append((start_id, 401))
        for caller in callers:
            for row in table:
                path, body, allowed_status = request_for(row, world)
                status, read_id, payload = await _as(caller, row.method, api + path, body)
                where = (caller.role, row.method, row.path, status, payload)
                if row.permission == "public":
                    assert status == 200, where
                    assert read_id is None, where  # public: no record
                    continue
                if caller.role is None:
                    expected = 401
                elif caller.role in row.roles:
                    expected = allowed_status
                else:
                    expected = 403
                assert status == expected, where
                assert read_id is not None, where
                caller.recorded.append((read_id, status))
                if expected in (401, 403):
                    # Refused before the handler: no ledger data in the answer.
                    assert payload is not None
                    assert set(payload) == {"error"}, where
        status, end_id, _ = await call(http, "GET", f"{api}/v1/logs", None)
        assert status == 401
        assert end_id is not None
        anonymous.recorded.append((end_id, 401))
        # The last request of each role's subject is a recorded one without a patient, so
        # once it has landed everything that subject did before has too (same partition).
        for caller in callers[1:]:
            status, read_id, _ = await _as(caller, "GET", f"{api}/v1/nothing-here", None)
            assert status == 404
            assert read_id is not None
            caller.recorded.append((read_id, 404))

    everything = [read_id for c in callers for read_id, _ in c.recorded]
    await landed(pipeline, everything)
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as admin:
        for caller in callers:
            for read_id, status in caller.recorded:
                event = await recorded_read(admin, api, read_id)
                assert event["actor"]["user_id"] == caller.subject, read_id
                assert event["actor"]["role"] == (caller.role or ANONYMOUS), read_id
                assert event["query"]["status"] == status, read_id
                if caller.role is None:
                    assert event["query"]["parameters"]["auth.failure"] == "no_token"
                else:
                    assert caller.headers["Authorization"][7:] not in json.dumps(event)
    # Public routes left no entry: each subject has exactly its recorded requests...
    conn = await asyncpg.connect(pipeline.stack.owner_url)
    try:
        for caller in callers[1:]:
            count = await conn.fetchval(
                "SELECT count(*) FROM events WHERE user_id = $1", caller.subject
            )
            assert count == len(caller.recorded), caller.role
        # ... and the anonymous partition holds exactly the walk's 401s between barriers.
        log, first = await anonymous_position(pipeline, start_id)
        log_end, last = await anonymous_position(pipeline, end_id)
        assert log == log_end
        between = await conn.fetchval(
            "SELECT count(*) FROM events WHERE user_id = $1 AND log_id = $2 "
            "AND leaf_index > $3 AND leaf_index < $4",
            ANONYMOUS, log, first, last,
        )  # fmt: skip
    finally:
        await conn.close()
    assert between == len(anonymous.recorded) - 2


async def _as(
    caller: Caller, method: str, url: str, body: dict[str, object] | None
) -> tuple[int, str | None, dict[str, object] | None]:
    async with aiohttp.ClientSession(
        headers=caller.headers, timeout=aiohttp.ClientTimeout(30)
    ) as http:
        return await call(http, method, url, body)


async def test_refused_malformed_and_unknown_requests_are_recorded_with_their_status(
    pipeline: Pipeline, world: World, callers: list[Caller]
) -> None:
    """A 400 (a patient id of one space), 401 (no, malformed or unknown token), 403, 404
    and 405 each leave an Audit Log Used entry naming the caller and the status; the
    token's text is never in it."""
    api = pipeline.api_url
    investigator = next(c for c in callers if c.role == "investigator")
    auditor = next(c for c in callers if c.role == "auditor")
    unknown_token = "plt_" + "A" * 43
    cases: list[tuple[Caller | dict[str, str], str, str, int, str | None]] = [
        (investigator, "GET", "/v1/patients/%20/accesses", 400, "bad_request"),
        (investigator, "GET", "/v1/patients/%20%20%20/accesses?limit=1", 400, "bad_request"),
        (auditor, "GET", "/v1/patients/%20/disclosures", 400, "bad_request"),
        (investigator, "GET", "/fhir/AuditEvent?patient=%20", 400, None),
        ({"Authorization": "Bearer not-a-token"}, "GET", "/v1/logs", 401, "unauthenticated"),
        ({"Authorization": f"Bearer {unknown_token}"}, "GET", "/v1/logs", 401,
         "unauthenticated"),
        ({}, "GET", f"/logs/{world.log}/tile/entries/000.p/1", 401, "unauthenticated"),
        ({}, "GET", "/v1/nothing-here", 401, "unauthenticated"),
        (auditor, "GET", f"/fhir/AuditEvent/{world.event}", 403, "forbidden"),
        (auditor, "GET", f"/v1/events/{world.event}/proof", 403, "forbidden"),
        (investigator, "GET", f"/v1/logs/{world.log}/index", 403, "forbidden"),
        (investigator, "GET", "/v1/nothing-here", 404, "not_found"),
        (investigator, "DELETE", "/v1/logs", 405, "method_not_allowed"),
    ]  # fmt: skip
    recorded: list[tuple[str, int, str, str, str | None]] = []
    for who, method, path, expected, code in cases:
        caller = who if isinstance(who, Caller) else Caller(None, ANONYMOUS, who)
        status, read_id, payload = await _as(caller, method, api + path, None)
        assert status == expected, (path, payload)
        if code is not None:
            assert payload is not None
            assert payload["error"]["code"] == code, (path, payload)  # type: ignore[index]
        assert read_id is not None, path
        failure = None
        if caller.role is None:
            header = caller.headers.get("Authorization")
            failure = (
                "no_token"
                if header is None
                else "unknown_token"
                if header.endswith(unknown_token)
                else "malformed_token"
            )
        recorded.append((read_id, expected, caller.subject, path.split("?")[0], failure))
    await landed(pipeline, [r[0] for r in recorded])
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as admin:
        for read_id, status, subject, path, failure in recorded:
            event = await recorded_read(admin, api, read_id)
            assert event["query"]["status"] == status, path
            assert event["outcome"] == "MINOR_FAILURE", path
            assert event["actor"]["user_id"] == subject, path
            assert event["query"]["path"] == path.replace("%20", " "), path
            assert event["patient"] is None, path  # refused before any patient was named
            assert event["query"]["parameters"].get("auth.failure") == failure, path
            text = json.dumps(event)
            assert unknown_token not in text
            assert "not-a-token" not in text
        # An investigator finds the refused anonymous attempts in one user history.
        anonymous_ids = [r[0] for r in recorded if r[2] == ANONYMOUS]
        await wait_for_events(admin, pipeline, anonymous_ids)
        status, _, page = await _as(
            investigator, "GET", f"{api}/v1/users/{ANONYMOUS}/accesses?limit=1000", None
        )
        assert status == 200
        assert page is not None
        listed = {a["event_id"] for a in page["accesses"]}  # type: ignore[attr-defined]
    assert set(anonymous_ids) <= listed


async def test_checkpoints_and_hash_tiles_are_public_and_unrecorded_entry_bundles_are_not(
    pipeline: Pipeline, world: World, callers: list[Caller]
) -> None:
    """A tlog client with no token follows the log: the signed checkpoint verifies and the
    hash tile holds the hashes of the entries; neither fetch is recorded. The entries
    themselves (PHI) need a token, and fetching them is recorded."""

    api, log = pipeline.api_url, world.log
    width = min(world.size, 255)
    anonymous = Caller(None, ANONYMOUS, {})
    auditor = next(c for c in callers if c.role == "auditor")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{api}/logs/{log}/checkpoint") as resp:
            assert resp.status == 200
            assert "Ledger-Audit-Event" not in resp.headers
            note = await resp.text()
        async with http.get(f"{api}/logs/{log}/tile/0/000.p/{width}") as resp:
            assert resp.status == 200
            assert "Ledger-Audit-Event" not in resp.headers
            tile = await resp.read()
    checkpoint = open_checkpoint(note, parse_verifiers([pipeline.stack.verifier_key]))
    assert checkpoint.size >= width
    # Without a token the entries are refused, and the attempt is recorded.
    status, refused_id, _ = await _as(anonymous, "GET", f"{api}/logs/{log}/tile/entries/000", None)
    assert status == 401
    assert refused_id is not None
    async with aiohttp.ClientSession(headers=auditor.headers) as http:
        async with http.get(f"{api}/logs/{log}/tile/entries/000.p/{width}") as resp:
            assert resp.status == 200
            read_id = resp.headers["Ledger-Audit-Event"]
            bundle = await resp.read()
        # A token does not make a public fetch recorded either.
        async with http.get(f"{api}/logs/{log}/tile/0/000.p/{width}") as resp:
            assert resp.status == 200
            assert "Ledger-Audit-Event" not in resp.headers
    assert tile == b"".join(merkle.leaf_hash(leaf) for leaf in tiles_entries(bundle))
    await landed(pipeline, [refused_id, read_id])
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as admin:
        refused = await recorded_read(admin, api, refused_id)
        assert refused["query"]["status"] == 401
        assert refused["actor"]["user_id"] == ANONYMOUS
        served = await recorded_read(admin, api, read_id)
        assert served["query"]["status"] == 200
        assert served["query"]["results"] == width
        assert served["actor"]["user_id"] == auditor.subject
    conn = await asyncpg.connect(pipeline.stack.owner_url)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM events WHERE user_id = $1", auditor.subject
        )
    finally:
        await conn.close()
    assert count == 1  # the entry bundle only; the hash tile left nothing


def tiles_entries(bundle: bytes) -> list[bytes]:
    """The entries of a C2SP entry bundle (each prefixed by its big-endian u16 length)."""
    out, pos = [], 0
    while pos < len(bundle):
        n = int.from_bytes(bundle[pos : pos + 2], "big")
        out.append(bundle[pos + 2 : pos + 2 + n])
        pos += 2 + n
    assert pos == len(bundle)
    return out
