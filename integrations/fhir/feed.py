"""``POST /fhir/AuditEvent`` bodies: one AuditEvent, or a ``batch`` / ``transaction`` Bundle.

Invariant: every resource of a body becomes one ``EntryResult`` (an event, or the error
that stops it), in order, so the API can answer with a batch-response Bundle or an
OperationOutcome; only a body that is neither shape (or too large) raises. Two entries of
one Bundle never share an event id.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

from integrations.fhir.mapping import event_from_fhir
from integrations.fhir.nodes import Node, fail
from integrations.fhir.vocabulary import DEFAULT_BASE_URL
from producers import EventValidationError, PhiAccessEvent, SecurityEvent

__all__ = ["MAX_BUNDLE_ENTRIES", "EntryResult", "Submission", "events_from_fhir"]

#: Most entries accepted in one Bundle.
MAX_BUNDLE_ENTRIES: Final = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryResult:
    """What one submitted AuditEvent became: an event, or the error that stopped it.

    ``index`` is the Bundle entry index (None for a lone resource); ``full_url`` the
    entry's ``fullUrl`` when it had one.
    """

    index: int | None
    full_url: str | None = None
    event: PhiAccessEvent | SecurityEvent | None = None
    error: EventValidationError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.event is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """Every resource of one ``POST /fhir/AuditEvent`` body, in order.

    ``kind`` is ``resource`` (a lone AuditEvent), ``batch`` (entries stand alone) or
    ``transaction`` (all or nothing: emit nothing unless ``ok``).
    """

    kind: Literal["resource", "batch", "transaction"]
    results: tuple[EntryResult, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def events(self) -> tuple[PhiAccessEvent | SecurityEvent, ...]:
        return tuple(r.event for r in self.results if r.event is not None and r.error is None)


def events_from_fhir(
    document: Mapping[str, object],
    *,
    base_url: str = DEFAULT_BASE_URL,
    keep_producer: bool = False,
    now: datetime | None = None,
    max_entries: int = MAX_BUNDLE_ENTRIES,
) -> Submission:
    """Every AuditEvent of a ``POST /fhir/AuditEvent`` body, each mapped or refused.

    ``document`` is one AuditEvent or a Bundle of type ``batch`` or ``transaction``; raises
    ``EventValidationError`` only when the body as a whole is neither (or too large).
    """
    root = Node(document, "")
    kind = root.get("resourceType").value
    if kind == "AuditEvent":
        return Submission(
            kind="resource", results=(_one(document, None, None, base_url, keep_producer, now),)
        )
    if kind != "Bundle":
        raise fail("resourceType", "must be AuditEvent or Bundle")
    bundle = Node(document, "Bundle")
    bundle_type = bundle.get("type").value
    if bundle_type not in ("batch", "transaction"):
        raise fail("Bundle.type", "must be batch or transaction")
    entries = bundle.items("entry")
    if len(entries) > max_entries:
        raise fail("Bundle.entry", f"has {len(entries)} entries; at most {max_entries}")
    results: list[EntryResult] = []
    seen: dict[uuid.UUID, int] = {}
    for i, entry in enumerate(entries):
        result = _entry(entry, i, base_url, keep_producer, now)
        if result.event is not None:
            first = seen.setdefault(result.event.event_id, i)
            if first != i:
                result = EntryResult(
                    index=i,
                    full_url=result.full_url,
                    error=fail("AuditEvent.id", f"has the same event id as entry {first}"),
                )
        results.append(result)
    return Submission(
        kind="transaction" if bundle_type == "transaction" else "batch", results=tuple(results)
    )


def _entry(
    entry: Node, index: int, base_url: str, keep_producer: bool, now: datetime | None
) -> EntryResult:
    """One Bundle entry: a POST creating an AuditEvent, mapped (or the error that stops it)."""
    full_url: str | None = None
    try:
        full_url = entry.get("fullUrl").text()
        request = entry.get("request")
        if request.present:
            method = request.get("method")
            if method.value != "POST":
                raise fail(method.path, "must be POST (entries create AuditEvents)")
            url = request.get("url").text()
            if url is not None and url.rstrip("/") != "AuditEvent":
                raise fail(request.get("url").path, "must be AuditEvent")
        resource = entry.get("resource")
        if not isinstance(resource.value, dict):
            raise fail(resource.path, "must be an AuditEvent resource")
    except EventValidationError as exc:
        return EntryResult(index=index, full_url=full_url, error=exc)
    return _one(resource.value, index, full_url, base_url, keep_producer, now)


def _one(
    resource: Mapping[str, object],
    index: int | None,
    full_url: str | None,
    base_url: str,
    keep_producer: bool,
    now: datetime | None,
) -> EntryResult:
    try:
        event = event_from_fhir(
            resource, base_url=base_url, keep_producer=keep_producer, full_url=full_url, now=now
        )
    except EventValidationError as exc:
        return EntryResult(index=index, full_url=full_url, error=exc)
    return EntryResult(index=index, full_url=full_url, event=event)
