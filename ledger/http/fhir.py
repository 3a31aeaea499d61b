"""FHIR R4 AuditEvent over HTTP: search, read, and ingestion through Kafka.

Invariant: every AuditEvent served is built from the stored leaf (``ledger.audit.fhir``)
and carries its ledger position; searches are history listings (same snapshot and
cursor rules, so paging is stable and every match is covered by a checkpoint);
``POST`` never writes the ledger directly: it hands events to the injected
``FhirSubmitter``, which sends them through Kafka like any producer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Final, Protocol

from aiohttp import web

from ledger.audit.fhir import (
    Issue,
    Resource,
    audit_event,
    operation_outcome,
    parse_search,
    searchset_bundle,
)
from ledger.audit.query import Cursor, HistoryKey, HistoryQuery, LedgerPosition
from ledger.errors import MalformedInputError, TooLargeError
from ledger.http.body import json_body
from ledger.http.boundary import refusal
from ledger.http.common import (
    PATIENT,
    READER,
    RESULTS,
    disclose,
    event_id,
    open_cursor,
    public_url,
    schema_set,
    seal_cursor,
)
from ledger.log.leaf import decode_leaf

FHIR_JSON: Final = "application/fhir+json"
MAX_FHIR_BODY: Final = 1024 * 1024


class FhirSubmitter(Protocol):
    async def submit(self, document: Mapping[str, object]) -> tuple[int, Resource]:
        """Map and emit the AuditEvent(s) of a POST body; the HTTP status and the
        resource to answer with (OperationOutcome or a batch/transaction response)."""
        ...


FHIR_SUBMITTER: Final = web.AppKey("fhir_submitter", FhirSubmitter)


def _fhir(resource: Resource, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(resource), status=status, content_type=FHIR_JSON, charset="utf-8"
    )


def _outcome(status: int, code: str, message: str) -> web.Response:
    return _fhir(
        operation_outcome([Issue(severity="error", code=code, diagnostics=message)]), status
    )


async def search(request: web.Request) -> web.Response:
    params: dict[str, list[str]] = {}
    for key, value in request.query.items():
        params.setdefault(key, []).append(value)
    try:
        query = parse_search(params)
    except MalformedInputError as exc:
        return _outcome(400, "invalid", str(exc))
    if query.patient is not None:
        key, value = HistoryKey.PATIENT, query.patient
        request[PATIENT] = (query.patient, None)
    elif query.agent is not None:
        key, value = HistoryKey.USER, query.agent
    elif query.entity is not None:
        key, value = HistoryKey.STUDY, query.entity
    else:
        return _outcome(
            400,
            "too-costly",
            "name at least one of patient, agent or entity (a ledger-wide scan is not served)",
        )
    history = HistoryQuery(
        key=key,
        value=value,
        since=query.since,
        until=query.until,
        user=query.agent if key is not HistoryKey.USER else None,
        study=query.entity if key is not HistoryKey.STUDY else None,
        event_types=tuple(t.code for t in query.types),
        actions=query.actions,
    )
    reader = request.app[READER]
    current = await reader.snapshot()
    context = f"fhir|{history!r}"
    try:
        after = open_cursor(request, query.cursor, context, current) if query.cursor else None
    except MalformedInputError as exc:
        return refusal(request, 400, exc.code, f"search parameter _cursor: {exc}")
    snapshot = after.snapshot if after is not None else current
    entries = (
        []
        if query.empty_range
        else await reader.history(history, snapshot=snapshot, limit=query.count + 1, after=after)
    )
    page = list(entries[: query.count])
    leaves = await reader.leaves_at([e.position for e in page])
    resources = []
    served: list[LedgerPosition] = []
    for entry in page:
        leaf = leaves.get((entry.position.log_id, entry.position.leaf_index))
        if leaf is None:
            continue
        served.append(entry.position)
        record = decode_leaf(leaf)
        schemas = await schema_set(request.app, record.value[2:10])
        name, body = schemas.decode(record.value)
        resources.append(audit_event(name, body, event_id=entry.event_id, position=entry.position))
    base = public_url(request, "/fhir/AuditEvent")  # configured: never the Host header
    next_url = None
    if len(entries) > query.count:
        last = page[-1]
        cursor = Cursor(event_time=last.event_time, event_id=last.event_id, snapshot=snapshot)
        next_url = f"{base}?{query.query_string(cursor=seal_cursor(request, cursor, context))}"
    request[RESULTS] = len(resources)
    disclose(request, served)
    bundle = searchset_bundle(
        resources, self_url=f"{base}?{query.query_string()}", next_url=next_url
    )
    return _fhir(bundle)


async def read(request: web.Request) -> web.Response:
    try:
        ident = event_id(request.match_info["event_id"])
    except MalformedInputError as exc:
        return _outcome(400, "invalid", str(exc))
    stored = await request.app[READER].event(ident)
    if stored is None:
        request[RESULTS] = 0
        return _outcome(404, "not-found", "no AuditEvent with that id is in the ledger")
    request[RESULTS] = 1
    disclose(request, (stored.entry.position,))
    if stored.entry.patient_id is not None:
        request[PATIENT] = (stored.entry.patient_id, stored.entry.patient_issuer)
    record = decode_leaf(stored.leaf)
    schemas = await schema_set(request.app, record.value[2:10])
    name, body = schemas.decode(record.value)
    return _fhir(audit_event(name, body, event_id=ident, position=stored.entry.position))


async def create(request: web.Request) -> web.Response:
    try:
        document = await json_body(request, MAX_FHIR_BODY)
    except TooLargeError as exc:
        return refusal(request, 413, exc.code, str(exc))
    except MalformedInputError as exc:
        return refusal(request, 400, exc.code, f"the body must be a FHIR JSON resource: {exc}")
    if not isinstance(document, dict):
        return _outcome(400, "structure", "the body must be a FHIR JSON resource")
    status, resource = await request.app[FHIR_SUBMITTER].submit(document)
    entries = resource.get("entry")
    request[RESULTS] = len(entries) if isinstance(entries, list) else 1
    return _fhir(resource, status)
