"""FHIR R4 over HTTP: the CapabilityStatement, search, read, batch reads, and ingestion.

Invariant: the reads are answered by ``ledger.http.fhiranswers`` (every AuditEvent served is
built from its stored leaf and carries its ledger position); a batch at the base answers
each GET entry as its own read and records it as its own AuditLogUsed event before the
batch answer leaves; ``POST /fhir/AuditEvent`` never writes the ledger directly: it hands
events to the injected ``FhirSubmitter``, which sends them through Kafka like any producer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import Final, Protocol

from aiohttp import web

from ledger.audit.fhir import (
    NOT_ACCEPTABLE,
    NOT_SUPPORTED,
    EntryOutcome,
    EntryRequest,
    Resource,
    batch_requests,
    batch_response_bundle,
    check_format,
)
from ledger.audit.query import LedgerPosition
from ledger.errors import MalformedInputError, TooLargeError
from ledger.http.body import json_body
from ledger.http.boundary import refusal
from ledger.http.common import PATIENT, RESULTS, SETTINGS, disclose, public_url
from ledger.http.fhiranswers import (
    Answer,
    metadata_answer,
    outcome_answer,
    read_answer,
    search_answer,
)
from ledger.http.middleware import record_entry

FHIR_JSON: Final = "application/fhir+json"
MAX_FHIR_BODY: Final = 1024 * 1024
#: The ids of the AuditLogUsed records of a batch's entries (the batch's own record is in
#: ``Ledger-Audit-Event``, as for every recorded request).
ENTRY_RECORDS_HEADER: Final = "Ledger-Audit-Entry-Events"
#: AuditEvents after which a batch answers no further search or read entry (one entry may
#: still add a page of up to 1,000, so an answer holds at most about twice this many).
MAX_BATCH_RESOURCES: Final = 1000


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


def _params(request: web.Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for key, value in request.query.items():
        params.setdefault(key, []).append(value)
    return params


def _answer(request: web.Request, answer: Answer) -> web.Response:
    """The response of a direct read, with what its read record needs."""
    if answer.results is not None:
        request[RESULTS] = answer.results
    if answer.patient is not None:
        request[PATIENT] = answer.patient
    if answer.disclosed:
        disclose(request, answer.disclosed)
    return _fhir(answer.resource, answer.status)


async def metadata(request: web.Request) -> web.Response:
    """``GET /fhir/metadata``: public and not recorded (it holds no PHI; docs/api.md)."""
    answer = metadata_answer(request, _params(request), writable=FHIR_SUBMITTER in request.app)
    return _fhir(answer.resource, answer.status)


async def search(request: web.Request) -> web.Response:
    return _answer(request, await search_answer(request, _params(request)))


async def read(request: web.Request) -> web.Response:
    return _answer(
        request, await read_answer(request, request.match_info["event_id"], _params(request))
    )


def _format_refusal(request: web.Request) -> web.Response | None:
    try:
        check_format(request.query.get("_format"))
    except MalformedInputError as exc:
        return refusal(request, 406 if exc.code == NOT_ACCEPTABLE else 400, exc.code, str(exc))
    return None


async def _document(request: web.Request) -> dict[str, object] | web.Response:
    """The JSON object of a FHIR POST body, or the refusal to answer with."""
    try:
        document = await json_body(request, MAX_FHIR_BODY)
    except TooLargeError as exc:
        return refusal(request, 413, exc.code, str(exc))
    except MalformedInputError as exc:
        return refusal(request, 400, exc.code, f"the body must be a FHIR JSON resource: {exc}")
    if not isinstance(document, dict):
        return _fhir(
            outcome_answer(400, "structure", "the body must be a FHIR JSON resource").resource, 400
        )
    return document


async def create(request: web.Request) -> web.Response:
    refused = _format_refusal(request)
    if refused is not None:
        return refused
    document = await _document(request)
    if isinstance(document, web.Response):
        return document
    status, resource = await request.app[FHIR_SUBMITTER].submit(document)
    entries = resource.get("entry")
    request[RESULTS] = len(entries) if isinstance(entries, list) else 1
    return _fhir(resource, status)


_ENTRY_ISSUE: Final = {400: "invalid", 404: "not-found", 405: "not-supported"}
_ROUTE_OF: Final = {
    "search": ("GET", "/fhir/AuditEvent"),
    "read": ("GET", "/fhir/AuditEvent/{event_id}"),
    "metadata": ("GET", "/fhir/metadata"),
}


def _undeclared(request: web.Request, entry: EntryRequest) -> Answer | None:
    """The boundary's parameter check, for a batch entry (``boundary.parameters_middleware``)."""
    if entry.target is None:
        return None
    table: dict[tuple[str, str], frozenset[str]] = request.app[SETTINGS]["parameters"]
    declared = table.get(_ROUTE_OF[entry.target], frozenset())
    unknown = sorted(set(entry.params) - declared)
    if not unknown:
        return None
    shown = ", ".join(repr(name[:40]) for name in unknown[:5])
    allowed = ", ".join(sorted(declared)) or "none"
    return outcome_answer(
        400,
        "invalid",
        f"unknown query parameter(s) {shown}; this endpoint takes: {allowed}",
        api_code="unknown_parameter",
    )


async def _entry_answer(request: web.Request, entry: EntryRequest, served: int) -> Answer:
    """The answer of one batch entry; ``served``: AuditEvents the batch already holds."""
    refused = _undeclared(request, entry)
    if refused is not None:
        return refused
    if entry.target in ("search", "read") and served >= MAX_BATCH_RESOURCES:
        return outcome_answer(
            400,
            "too-costly",
            f"the batch already holds {served} AuditEvents; at most {MAX_BATCH_RESOURCES} "
            "are answered per batch: ask for the rest in another request",
            api_code="too_costly",
        )
    if entry.target == "search":
        return await search_answer(request, entry.params)
    if entry.target == "read" and entry.event_id is not None:
        return await read_answer(request, entry.event_id, entry.params)
    if entry.target == "metadata":
        return metadata_answer(request, entry.params, writable=FHIR_SUBMITTER in request.app)
    status = int((entry.status or "400")[:3])
    return outcome_answer(status, _ENTRY_ISSUE.get(status, "invalid"), entry.problem or "refused")


def _batch_refusal(exc: MalformedInputError) -> web.Response:
    if exc.code == NOT_SUPPORTED:
        return _fhir(
            outcome_answer(422, "not-supported", str(exc), api_code=exc.code).resource, 422
        )
    issue = "too-costly" if exc.code == "too_many_entries" else "structure"
    return _fhir(outcome_answer(400, issue, str(exc), api_code=exc.code).resource, 400)


async def batch(request: web.Request) -> web.Response:
    """``POST /fhir``: a batch Bundle of GET entries; each entry is answered, and recorded,
    as its own read (before the answer leaves), and the batch as a whole is recorded too."""
    refused = _format_refusal(request)
    if refused is not None:
        return refused
    document = await _document(request)
    if isinstance(document, web.Response):
        return document
    base = public_url(request, "/fhir")
    try:
        entries = batch_requests(document, base_url=base)
    except MalformedInputError as exc:
        return _batch_refusal(exc)
    outcomes: list[EntryOutcome] = []
    disclosed: list[LedgerPosition] = []
    records: list[str] = []
    served = 0
    for entry in entries:
        answer = await _entry_answer(request, entry, served)
        served += answer.results or 0
        record_id = await record_entry(
            request,
            method=entry.method,
            path=entry.path,
            parameters=entry.params,
            status=answer.status,
            results=answer.results,
            patient=answer.patient,
            disclosed=answer.disclosed,
        )
        records.append(str(record_id))
        disclosed.extend(answer.disclosed)
        outcomes.append(_entry_outcome(answer, entry, base))
    request[RESULTS] = len(entries)
    disclose(request, disclosed)
    response = _fhir(batch_response_bundle(outcomes, transaction=False))
    if records:  # each entry's own AuditLogUsed record, in entry order
        response.headers[ENTRY_RECORDS_HEADER] = ", ".join(records)
    return response


def _entry_outcome(answer: Answer, entry: EntryRequest, base: str) -> EntryOutcome:
    status = f"{answer.status} {HTTPStatus(answer.status).phrase}"
    if answer.status >= 400:
        return EntryOutcome(status=status, outcome=answer.resource)
    full_url = None
    if entry.target == "read":
        full_url = f"{base}/AuditEvent/{answer.resource.get('id')}"
    return EntryOutcome(status=status, resource=answer.resource, full_url=full_url)
