"""Issue 12, item 6 against the real `ledger serve`: hostile bodies and query values get a
400 with a stable code and are recorded; body limits hold after decoding (chunked, gzip
bomb); cursors are MAC'd; FHIR links use the configured base, never the Host header; PHI
answers are never cacheable; unknown query parameters are refused on every route."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gzip
import json
import re
import secrets
import subprocess
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import aiohttp
import pytest
from yarl import URL

from integrations.simulator import Simulator
from ledger.audit.cursors import CursorKey
from ledger.audit.query import Cursor, HistoryKey, HistoryQuery, Snapshot
from ledger.http.openapi import document
from producers.events import Facility, Patient, PhiAccessEvent
from tests.e2e.conftest import E2E_SEED, LEDGER, Pipeline, free_port, wait_for_events
from tests.support import ROOT

pytestmark = pytest.mark.e2e

SCOPE = {"since": "2026-01-01T00:00:00Z", "until": "2026-02-01T00:00:00Z", "facility": "f"}


@dataclasses.dataclass
class Seeded:
    patient: str
    other_patient: str
    ids: list[str]


@pytest.fixture(scope="module")
async def seeded(pipeline: Pipeline) -> Seeded:
    """Three accesses to one patient (so a page of one has a next cursor), one to another."""
    run = secrets.token_hex(3)
    sim = Simulator(seed=E2E_SEED + 1200)
    patient = Patient(id=f"MRN-BOUNDARY-{run}", issuer="e2e", state="MA")
    other = Patient(id=f"MRN-OTHER-{run}", issuer="e2e", state="MA")
    events = []
    for i in range(4):
        base = sim.access()
        assert isinstance(base, PhiAccessEvent)
        events.append(
            dataclasses.replace(
                base,
                event_id=uuid.uuid4(),
                patient=patient if i < 3 else other,
                facility=Facility(id=f"e2e-boundary-{run}"),
            )
        )
    async with pipeline.emitter(f"e2e-boundary-{run}") as emitter:
        for event in events:
            await emitter.emit(event)
        await emitter.flush()
    ids = [str(e.event_id) for e in events]
    async with aiohttp.ClientSession(headers=pipeline.stack.auth()) as http:
        await wait_for_events(http, pipeline, ids)
    return Seeded(patient=patient.id, other_patient=other.id, ids=ids)


@pytest.fixture
async def admin(pipeline: Pipeline) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(
        headers=pipeline.stack.auth("admin"), timeout=aiohttp.ClientTimeout(60)
    ) as session:
        yield session


async def _error(resp: aiohttp.ClientResponse) -> tuple[int, str]:
    """Status and stable code of an error answer (JSON error, or FHIR OperationOutcome)."""
    body = await resp.json(content_type=None)
    if body.get("resourceType") == "OperationOutcome":
        codes = [c["code"] for i in body["issue"] for c in i.get("details", {}).get("coding", [])]
        return resp.status, codes[0] if codes else ""
    return resp.status, body["error"]["code"]


async def _recorded_status(admin: aiohttp.ClientSession, pipeline: Pipeline, read_id: str) -> int:
    """The HTTP status the ledger recorded for the request whose Audit Log Used id is given."""
    await wait_for_events(admin, pipeline, [read_id])
    async with admin.get(f"{pipeline.api_url}/v1/events/{read_id}") as resp:
        detail = await resp.json()
    return int(detail["event"]["query"]["status"])


# --------------------------------------------------------------------------- hostile bodies

DEEP = b"[" * 30_000 + b"]" * 30_000  # deeper than Python's parser recursion limit
NESTED = b"[" * 100 + b"]" * 100  # within it, deeper than the API allows
SURROGATE_SCOPE = json.dumps({**SCOPE, "users": ["\ud800"]}).encode()  # "\ud800" escape
SURROGATE_FHIR = b'{"resourceType": "AuditEvent", "id": "\\udc00"}'


@pytest.mark.parametrize(
    ("path", "body", "content_type", "code"),
    [
        ("/v1/investigations", DEEP, "application/json", "too_deep"),
        ("/v1/investigations", NESTED, "application/json", "too_deep"),
        ("/v1/investigations", b"{}", "application/json; charset=x-no-such", "unsupported_charset"),
        ("/v1/investigations", SURROGATE_SCOPE, "application/json", "lone_surrogate"),
        ("/v1/investigations", b'{"since": "\xed\xa0\x80"}', "application/json", "invalid_utf8"),
        ("/fhir/AuditEvent", DEEP, "application/fhir+json", "too_deep"),
        ("/fhir/AuditEvent", b"{}", "application/fhir+json; charset=x-no-such",
         "unsupported_charset"),
        ("/fhir/AuditEvent", SURROGATE_FHIR, "application/fhir+json", "lone_surrogate"),
    ],
)  # fmt: skip
async def test_a_hostile_body_is_a_400_with_a_stable_code_and_is_recorded(
    pipeline: Pipeline,
    admin: aiohttp.ClientSession,
    path: str,
    body: bytes,
    content_type: str,
    code: str,
) -> None:
    async with admin.post(
        f"{pipeline.api_url}{path}", data=body, headers={"Content-Type": content_type}
    ) as resp:
        assert await _error(resp) == (400, code)
        read_id = resp.headers["Ledger-Audit-Event"]
    assert await _recorded_status(admin, pipeline, read_id) == 400


async def test_a_query_value_that_is_not_utf8_is_refused_not_rewritten(
    pipeline: Pipeline, admin: aiohttp.ClientSession, seeded: Seeded
) -> None:
    """A lone surrogate (UTF-8 of U+D800) or a stray byte in a query value is refused; it is
    not silently replaced with U+FFFD, which would run a different query than was asked."""
    api = pipeline.api_url
    url = f"{api}/v1/patients/{seeded.patient}/accesses"
    for target in (
        f"{url}?facility=%ED%A0%80",
        f"{url}?facility=%FF",
        f"{url}?%ED%A0%80=1",
        f"{api}/v1/patients/%ED%A0%80/accesses",  # else kept as the literal id "%ED%A0%80"
    ):
        async with admin.get(URL(target, encoded=True)) as resp:
            assert await _error(resp) == (400, "invalid_utf8"), target
            read_id = resp.headers["Ledger-Audit-Event"]
    assert await _recorded_status(admin, pipeline, read_id) == 400


# --------------------------------------------------------------------------- body limits


def _scope_of(size: int) -> bytes:
    """A valid investigation scope padded to at least ``size`` bytes."""
    users = [f"user-{i:06d}" for i in range(size // 12 + 1)]
    return json.dumps({**SCOPE, "users": users}).encode()


async def _chunked(data: bytes) -> AsyncIterator[bytes]:
    for i in range(0, len(data), 8192):
        yield data[i : i + 8192]


def _gzip_bomb(decoded: int) -> bytes:
    """A gzip stream of ``decoded`` bytes of JSON whitespace in about decoded/1000 bytes."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b" " * (1 << 20)
    out = [compressor.compress(b"{")]
    for _ in range(decoded >> 20):
        out.append(compressor.compress(block))
    out.append(compressor.compress(b"}"))
    out.append(compressor.flush())
    return b"".join(out)


@pytest.mark.parametrize("path", ["/v1/investigations", "/fhir/AuditEvent"])
async def test_body_limits_hold_for_chunked_and_gzip_bodies(
    pipeline: Pipeline, admin: aiohttp.ClientSession, path: str
) -> None:
    limit = 64 * 1024 if path == "/v1/investigations" else 1024 * 1024
    big = _scope_of(limit + 1024)
    assert len(big) > limit
    url = f"{pipeline.api_url}{path}"
    json_type = {"Content-Type": "application/json"}
    # Chunked transfer: no Content-Length to check up front.
    async with admin.post(url, data=_chunked(big), headers=json_type) as resp:
        assert await _error(resp) == (413, "body_too_large")
        read_id = resp.headers["Ledger-Audit-Event"]
    # gzip: a small Content-Length, a large body.
    packed = gzip.compress(big)
    assert len(packed) < limit
    async with admin.post(
        url, data=packed, headers={**json_type, "Content-Encoding": "gzip"}
    ) as resp:
        assert await _error(resp) == (413, "body_too_large")
    # A gzip bomb (256 MiB of whitespace in a few hundred KiB), chunked: refused, and the
    # server is still there.
    bomb = _gzip_bomb(256 << 20)
    assert len(bomb) < 1024 * 1024
    async with admin.post(
        url, data=_chunked(bomb), headers={**json_type, "Content-Encoding": "gzip"}
    ) as resp:
        assert await _error(resp) == (413, "body_too_large")
    async with admin.get(f"{pipeline.api_url}/healthz") as resp:
        assert resp.status == 200
    assert await _recorded_status(admin, pipeline, read_id) == 413


@pytest.mark.parametrize("encoding", ["gzip, gzip", "compress", "x-custom"])
async def test_a_content_encoding_the_server_does_not_decode_is_refused(
    pipeline: Pipeline, admin: aiohttp.ClientSession, encoding: str
) -> None:
    """A coding the server does not decode would reach the handler still encoded: it is
    refused by name rather than parsed as if it were JSON."""
    body = gzip.compress(gzip.compress(json.dumps(SCOPE).encode()))
    async with admin.post(
        f"{pipeline.api_url}/v1/investigations",
        data=body,
        headers={"Content-Type": "application/json", "Content-Encoding": encoding},
    ) as resp:
        assert await _error(resp) == (400, "unsupported_encoding")


async def test_a_small_gzip_body_is_still_accepted(
    pipeline: Pipeline, admin: aiohttp.ClientSession
) -> None:
    async with admin.post(
        f"{pipeline.api_url}/v1/investigations",
        data=gzip.compress(json.dumps(SCOPE).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    ) as resp:
        assert resp.status == 200, await resp.text()


# --------------------------------------------------------------------------- cursors


async def _first_page(admin: aiohttp.ClientSession, url: str, **params: str) -> dict[str, Any]:
    async with admin.get(url, params=params) as resp:
        assert resp.status == 200, await resp.text()
        return cast(dict[str, Any], await resp.json(content_type=None))


def _tampered(token: str) -> str:
    """The same token with one character of its payload changed."""
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


async def test_history_cursors_are_macd(
    pipeline: Pipeline, admin: aiohttp.ClientSession, seeded: Seeded
) -> None:
    url = f"{pipeline.api_url}/v1/patients/{seeded.patient}/accesses"
    page = await _first_page(admin, url, limit="1")
    token = page["next_cursor"]
    assert token
    async with admin.get(url, params={"limit": "1", "cursor": token}) as resp:
        assert resp.status == 200
        second = await resp.json()
    assert second["as_of"] == page["as_of"]
    # A cursor in the old unsigned format, claiming sizes no checkpoint covers.
    forged = Cursor(
        event_time=datetime.now(UTC), event_id=uuid.uuid4(), snapshot=Snapshot(sizes=(2**40,) * 8)
    ).encode()
    other = f"{pipeline.api_url}/v1/patients/{seeded.other_patient}/accesses"
    for bad, target in (
        (forged, url),  # forged
        (_tampered(token), url),  # tampered
        (token, other),  # foreign: issued for another listing
        ("A" * 40, url),  # garbage
    ):
        async with admin.get(target, params={"limit": "1", "cursor": bad}) as resp:
            assert await _error(resp) == (400, "invalid_cursor"), bad[:20]


async def test_fhir_page_tokens_are_macd(
    pipeline: Pipeline, admin: aiohttp.ClientSession, seeded: Seeded
) -> None:
    url = f"{pipeline.api_url}/fhir/AuditEvent"
    bundle = await _first_page(admin, url, patient=seeded.patient, _count="1")
    next_url = next(link["url"] for link in bundle["link"] if link["relation"] == "next")
    token = re.search(r"_cursor=([A-Za-z0-9_-]+)", next_url)
    assert token is not None
    async with admin.get(url, params={"patient": seeded.patient, "_count": "1",
                                      "_cursor": token[1]}) as resp:  # fmt: skip
        assert resp.status == 200
    forged = Cursor(
        event_time=datetime.now(UTC), event_id=uuid.uuid4(), snapshot=Snapshot(sizes=(2**40,) * 8)
    ).encode()
    for bad in (forged, _tampered(token[1])):
        async with admin.get(
            url, params={"patient": seeded.patient, "_count": "1", "_cursor": bad}
        ) as resp:
            assert await _error(resp) == (400, "invalid_cursor")


# --------------------------------------------------------------------------- FHIR base URL


def _links(bundle: dict[str, Any]) -> list[str]:
    return [link["url"] for link in bundle["link"]] + [e["fullUrl"] for e in bundle["entry"]]


async def test_fhir_links_use_the_bind_address_not_the_host_header(
    pipeline: Pipeline, admin: aiohttp.ClientSession, seeded: Seeded
) -> None:
    async with admin.get(
        f"{pipeline.api_url}/fhir/AuditEvent",
        params={"patient": seeded.patient, "_count": "1"},
        headers={"Host": "evil.example", "X-Forwarded-Host": "evil.example",
                 "X-Forwarded-Proto": "https", "Forwarded": "host=evil.example"},
    ) as resp:  # fmt: skip
        assert resp.status == 200
        bundle = await resp.json(content_type=None)
    links = _links(bundle)
    assert len(links) >= 3
    assert all(u.startswith(f"{pipeline.api_url}/fhir/AuditEvent") for u in links), links


@contextlib.contextmanager
def _another_api(pipeline: Pipeline, **env: str) -> Iterator[str]:
    """A second `ledger serve` on the pipeline's ledger with extra settings; its URL."""
    port = free_port()
    server = subprocess.Popen(
        [LEDGER, "serve", "--port", str(port)], env={**pipeline.env, **env},
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_env = {**pipeline.env, "LEDGER_API_URL": url}
        subprocess.run([LEDGER, "wait", "api", "--timeout", "60"], env=wait_env, check=True)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def _get(pipeline: Pipeline, url: str, **params: str) -> tuple[int, dict[str, Any]]:
    async def fetch() -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession(headers=pipeline.stack.auth()) as http,
            http.get(url, params=params, headers={"Host": "evil.example"}) as resp,
        ):
            return resp.status, cast(dict[str, Any], await resp.json(content_type=None))

    return asyncio.run(fetch())


def test_fhir_links_use_the_configured_public_url(pipeline: Pipeline, seeded: Seeded) -> None:
    public = "https://ledger.hospital.example/audit"
    with _another_api(pipeline, LEDGER_PUBLIC_URL=public + "/") as api:
        status, bundle = _get(pipeline, f"{api}/fhir/AuditEvent", patient=seeded.patient,
                              _count="1")  # fmt: skip
    assert status == 200
    links = _links(bundle)
    assert all(u.startswith(f"{public}/fhir/AuditEvent") for u in links), links


def test_behind_a_trusted_proxy_the_ledger_records_the_real_client(
    pipeline: Pipeline, seeded: Seeded
) -> None:
    """The test is the reverse proxy (loopback): with LEDGER_TRUSTED_PROXIES naming it,
    the read recorded in the ledger carries the address it forwarded; the API next to it
    without the setting records the proxy's own address whatever the header says."""

    async def recorded(api: str) -> str:
        headers = {**pipeline.stack.auth(), "X-Forwarded-For": "198.51.100.23"}
        async with aiohttp.ClientSession(headers=headers) as http:
            url = f"{api}/v1/patients/{seeded.patient}/accesses"
            async with http.get(url) as resp:
                assert resp.status == 200
                read_id = resp.headers["Ledger-Audit-Event"]
            await wait_for_events(http, pipeline, [read_id])
            async with http.get(f"{pipeline.api_url}/v1/events/{read_id}") as resp:
                return str((await resp.json())["event"]["network_address"])

    with _another_api(pipeline, LEDGER_TRUSTED_PROXIES="127.0.0.1, ::1") as api:
        assert asyncio.run(recorded(api)) == "198.51.100.23"
    with _another_api(pipeline) as api:
        assert asyncio.run(recorded(api)) == "127.0.0.1"


def test_a_configured_cursor_key_survives_a_restart_and_still_bounds_the_snapshot(
    pipeline: Pipeline, seeded: Seeded, tmp_path: Path
) -> None:
    """With LEDGER_CURSOR_KEY_FILE a cursor outlives its API process; without it, it does
    not. Even a cursor sealed with the real key cannot pin sizes beyond the signed ones."""
    key_file = tmp_path / "cursor-key"
    key_file.write_text(secrets.token_hex(32))
    key_file.chmod(0o600)
    path = f"/v1/patients/{seeded.patient}/accesses"
    with _another_api(pipeline, LEDGER_CURSOR_KEY_FILE=str(key_file)) as api:
        status, page = _get(pipeline, f"{api}{path}", limit="1")
    assert status == 200
    token = page["next_cursor"]
    with _another_api(pipeline, LEDGER_CURSOR_KEY_FILE=str(key_file)) as api:
        status, second = _get(pipeline, f"{api}{path}", limit="1", cursor=token)
        assert status == 200
        assert second["as_of"] == page["as_of"]
        # Sealed with the real key, for the right listing, but beyond every checkpoint.
        beyond = Cursor(
            event_time=datetime.now(UTC), event_id=uuid.uuid4(),
            snapshot=Snapshot(sizes=(2**40,) * 8),
        )  # fmt: skip
        query = HistoryQuery(key=HistoryKey.PATIENT, value=seeded.patient)
        sealed = CursorKey.from_file(key_file).seal(beyond, context=f"history|{query!r}")
        status, body = _get(pipeline, f"{api}{path}", limit="1", cursor=sealed)
        assert (status, body["error"]["code"]) == (400, "invalid_cursor")
    with _another_api(pipeline) as api:  # no key configured: a key of its own
        status, body = _get(pipeline, f"{api}{path}", limit="1", cursor=token)
    assert (status, body["error"]["code"]) == (400, "invalid_cursor")


# --------------------------------------------------------------------------- caching


async def test_phi_answers_are_never_cacheable(
    pipeline: Pipeline, admin: aiohttp.ClientSession, seeded: Seeded
) -> None:
    api = pipeline.api_url
    async with admin.get(f"{api}/v1/logs") as resp:
        logs = (await resp.json())["logs"]
    log = next(entry for entry in logs if entry["checkpoint_size"] > 0)
    size = min(log["checkpoint_size"], 256)
    bundle = f"/logs/{log['id']}/tile/entries/000" + ("" if size == 256 else f".p/{size}")
    for path in (
        bundle,
        f"/v1/patients/{seeded.patient}/accesses",
        f"/v1/events/{seeded.ids[0]}",
        f"/v1/events/{seeded.ids[0]}/proof",
        f"/fhir/AuditEvent?patient={seeded.patient}",
        f"/fhir/AuditEvent/{seeded.ids[0]}",
        f"/v1/patients/{seeded.patient}/disclosures",
        f"/v1/events/{uuid.uuid4()}",  # a 404 says "no such event": not cacheable either
        "/v1/compliance/alerts",
        "/v1/compliance/alerts/9000000000000",  # no such alert: 404, not cacheable
    ):
        async with admin.get(f"{api}{path}") as resp:
            assert resp.status in (200, 404), (path, resp.status)
            assert resp.headers.get("Cache-Control") == "private, no-store", path


# --------------------------------------------------------------------------- parameters


def _example(name: str) -> str:
    known = {"log": "1", "level": "0", "path": "000.p/1", "alert_id": "1"}
    return known.get(name, str(uuid.uuid4()))


def test_the_unknown_parameter_walk_covers_every_documented_operation() -> None:
    ops = {(m, p) for p, o in cast(dict[str, Any], document()["paths"]).items() for m in o}
    assert len(ops) >= 20


async def test_every_route_refuses_an_unknown_query_parameter(
    pipeline: Pipeline, admin: aiohttp.ClientSession
) -> None:
    """Walk every operation of the OpenAPI document (which the app's routes equal, see
    test_openapi): a parameter it does not declare is a 400 naming it, never ignored."""
    paths = cast(dict[str, dict[str, Any]], document()["paths"])
    for template, ops in paths.items():
        path = re.sub(r"\{(\w+)\}", lambda m: _example(m[1]), template)
        for method in ops:
            async with admin.request(
                method.upper(), f"{pipeline.api_url}{path}", params={"fromat": "csv"}
            ) as resp:
                status, code = await _error(resp)
                assert (status, code) == (400, "unknown_parameter"), (method, template)
                assert "fromat" in await resp.text()
    # The README's example: a history ignores no filter it does not know.
    async with admin.get(
        f"{pipeline.api_url}/v1/users/someone/accesses", params={"format": "csv"}
    ) as resp:
        assert await _error(resp) == (400, "unknown_parameter")
        assert resp.headers["Ledger-Audit-Event"]


async def test_declared_parameters_are_still_accepted(
    pipeline: Pipeline, admin: aiohttp.ClientSession, seeded: Seeded
) -> None:
    api = pipeline.api_url
    for path, params in (
        (f"/v1/patients/{seeded.patient}/accesses",
         {"issuer": "e2e", "since": "2026-01-01", "limit": "5", "action": "R"}),
        (f"/v1/patients/{seeded.patient}/disclosures", {"format": "csv", "years": "2"}),
        ("/v1/reports/critical-results", {"format": "csv", "deadline_cat1": "30"}),
        ("/fhir/AuditEvent", {"patient": seeded.patient, "_count": "2"}),
        ("/v1/quarantine", {"limit": "1", "after": "0"}),
    ):  # fmt: skip
        async with admin.get(f"{api}{path}", params=params) as resp:
            assert resp.status == 200, (path, await resp.text())
