"""The FHIR reads as answers: search, read and the CapabilityStatement, apart from the request.

Invariant: an ``Answer`` holds everything the read record needs (status, entries returned,
the patient named, the positions disclosed), so a direct request and a batch entry are
answered by the same code and recorded alike; every AuditEvent served is built from its
stored leaf and carries its ledger position, and a search is a history listing (same
snapshot and sealed-cursor rules, so paging is stable and every match is covered by a
checkpoint).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from aiohttp import web

from ledger.audit.fhir import (
    DEFAULT_BASE_URL,
    MAX_BATCH_ENTRIES,
    NOT_ACCEPTABLE,
    Resource,
    Shape,
    audit_event,
    capability_statement,
    check_format,
    namespace,
    parse_search,
    parse_shape,
    searchset_bundle,
    subset,
)
from ledger.audit.fhir.outcomes import unreadable_outcome
from ledger.audit.query import (
    LedgerPosition,
)
from ledger.errors import MalformedInputError
from ledger.http.boundary import ERROR_CODE_SYSTEM
from ledger.http.common import READER, event_id, open_pinned, public_url, schema_set, seal_cursor
from ledger.http.fhirscan import MAX_TOTAL, count_matches, cursor_after, history_of, page_of
from ledger.http.unreadable import unreadable_periods
from ledger.log.leaf import decode_leaf

__all__ = ["Answer", "metadata_answer", "outcome_answer", "read_answer", "search_answer"]

_POSITION_URL: Final = namespace(DEFAULT_BASE_URL).ledger_position


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A FHIR answer and what its read record says: entries returned, the patient named
    (id, issuer), the ledger positions it discloses."""

    status: int
    resource: Resource
    results: int | None = None
    patient: tuple[str, str | None] | None = None
    disclosed: Sequence[LedgerPosition] = field(default_factory=tuple)


def outcome_answer(status: int, code: str, message: str, *, api_code: str | None = None) -> Answer:
    """An OperationOutcome answer; ``api_code`` (the API's stable error code) goes to
    ``issue.details`` as in ``boundary.refusal``."""
    issue: Resource = {"severity": "error", "code": code}
    if api_code is not None:
        issue["details"] = {"coding": [{"system": ERROR_CODE_SYSTEM, "code": api_code}]}
    issue["diagnostics"] = message
    outcome: Resource = {"resourceType": "OperationOutcome", "issue": [issue]}
    return Answer(status=status, resource=outcome)


def _refused(exc: MalformedInputError) -> Answer:
    if exc.code == NOT_ACCEPTABLE:
        return outcome_answer(406, "not-supported", str(exc), api_code=exc.code)
    return outcome_answer(400, "invalid", str(exc))


def software_version() -> str:
    try:
        return importlib.metadata.version("phi-audit-ledger")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def metadata_answer(
    request: web.Request, params: Mapping[str, list[str]], *, writable: bool
) -> Answer:
    """The CapabilityStatement (no PHI: public, unrecorded as a route; docs/api.md);
    ``writable``: the server takes ``POST /fhir/AuditEvent``."""
    try:
        check_format(_one(params, "_format"))
    except MalformedInputError as exc:
        return _refused(exc)
    statement = capability_statement(
        base_url=public_url(request, "/fhir"),
        writable=writable,
        software_version=software_version(),
        max_batch_entries=MAX_BATCH_ENTRIES,
    )
    return Answer(status=200, resource=statement)


async def search_answer(request: web.Request, params: Mapping[str, list[str]]) -> Answer:
    """``GET /fhir/AuditEvent?<params>``: a searchset Bundle (or a refusal)."""
    try:
        query = parse_search(params)
    except MalformedInputError as exc:
        return _refused(exc)
    history = history_of(query)
    if history is None:
        return outcome_answer(
            400,
            "too-costly",
            "name at least one of patient, agent or entity (a ledger-wide scan is not served)",
        )
    patient = None if query.patient is None else (query.patient, None)
    context = f"fhir|{history!r}|{query.narrowing!r}"
    try:
        if query.cursor:
            after, current = await open_pinned(request, query.cursor, context)
        else:
            after, current = None, await request.app[READER].snapshot()
    except MalformedInputError as exc:
        refused = outcome_answer(
            400, "invalid", f"search parameter _cursor: {exc}", api_code=exc.code
        )
        return Answer(status=400, resource=refused.resource, patient=patient)
    snapshot = after.snapshot if after is not None else current
    base = public_url(request, "/fhir/AuditEvent")  # configured: never the Host header
    self_url = f"{base}?{query.query_string()}"
    if query.shape.summary == "count":
        total = await count_matches(request, query, history, after, snapshot)
        if total is None:
            return replace(_too_costly_count(), patient=patient)
        outcome = unreadable_outcome(
            await unreadable_periods(request, history.since, history.until)
        )
        bundle = searchset_bundle(
            [], self_url=self_url, next_url=None, total=total, outcome=outcome
        )
        return Answer(status=200, resource=bundle, results=0, patient=patient)
    found, next_after = await page_of(request, query, history, after, snapshot)
    outcome = unreadable_outcome(await unreadable_periods(request, history.since, history.until))
    next_url = None
    if next_after is not None:
        token = seal_cursor(request, cursor_after(next_after, snapshot), context)
        next_url = f"{base}?{query.query_string(cursor=token)}"
    resources = [_shaped(r, query.shape) for _, r in found]
    bundle = searchset_bundle(resources, self_url=self_url, next_url=next_url, outcome=outcome)
    return Answer(
        status=200,
        resource=bundle,
        results=len(resources),
        patient=patient,
        disclosed=tuple(e.position for e, _ in found),
    )


def _too_costly_count() -> Answer:
    return outcome_answer(
        400,
        "too-costly",
        f"more than {MAX_TOTAL} entries to count; narrow the search (date, type, ...)",
    )


def _shaped(resource: Resource, shape: Shape) -> Resource:
    return subset(resource, shape, position_url=_POSITION_URL)


async def read_answer(request: web.Request, raw_id: str, params: Mapping[str, list[str]]) -> Answer:
    """``GET /fhir/AuditEvent/{id}``: one AuditEvent (or a refusal)."""
    try:
        ident = event_id(raw_id)
        shape = parse_shape(
            _one(params, "_summary"), _one(params, "_elements"), _one(params, "_format"),
            search=False,
        )  # fmt: skip
    except MalformedInputError as exc:
        return _refused(exc)
    stored = await request.app[READER].event(ident)
    # A registry change is a ledger entry but no AuditEvent (docs/design/compliance-registry.md).
    if stored is None or stored.entry.kind == "registry_change":
        return Answer(
            status=404,
            resource=outcome_answer(
                404, "not-found", "no AuditEvent with that id is in the ledger"
            ).resource,
            results=0,
        )
    entry = stored.entry
    record = decode_leaf(stored.leaf)
    schemas = await schema_set(request.app, record.value[2:10])
    name, body = schemas.decode(record.value)
    resource = audit_event(name, body, event_id=ident, position=entry.position)
    return Answer(
        status=200,
        resource=_shaped(resource, shape),
        results=1,
        patient=None if entry.patient_id is None else (entry.patient_id, entry.patient_issuer),
        disclosed=(entry.position,),
    )


def _one(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise MalformedInputError(f"search parameter {name}: is given more than once")
    return values[0]
