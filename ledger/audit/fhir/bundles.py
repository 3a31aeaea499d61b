"""R4 Bundles the API answers with: ``searchset`` pages and batch/transaction responses.

Invariant: a searchset lists each resource once, with a ``fullUrl`` under the server base
of its self link (``urn:uuid:<id>`` when that link is relative); every batch entry status
is an HTTP status line.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from ledger.audit.fhir.outcomes import Issue, operation_outcome
from ledger.audit.fhir.vocabulary import Resource
from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError

__all__ = ["EntryOutcome", "batch_response_bundle", "searchset_bundle"]


def _full_url(resource: Mapping[str, JsonValue], server_base: str | None) -> str:
    rtype = resource.get("resourceType")
    rid = resource.get("id")
    if not isinstance(rtype, str) or not isinstance(rid, str) or not rid:
        raise MalformedInputError("every bundle entry needs a resource with resourceType and id")
    if server_base is not None:
        return f"{server_base}/{rtype}/{rid}"
    try:
        return f"urn:uuid:{uuid.UUID(rid)}"
    except ValueError as exc:
        raise MalformedInputError(
            "a relative self URL needs UUID resource ids (for urn:uuid fullUrls)"
        ) from exc


def _is_uuid(value: object) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return isinstance(value, str)


def _server_base(self_url: str) -> str | None:
    """``http://host/fhir`` for ``http://host/fhir/AuditEvent?...``; None when relative."""
    parts = urlsplit(self_url)
    if not parts.scheme or not parts.netloc:
        return None
    path = parts.path.rstrip("/")
    head, sep, _ = path.rpartition("/")
    if not sep:
        return None
    return f"{parts.scheme}://{parts.netloc}{head}"


def searchset_bundle(
    resources: Sequence[Mapping[str, JsonValue]],
    *,
    self_url: str,
    next_url: str | None,
    total: int | None = None,
    outcome: Resource | None = None,
) -> Resource:
    """An R4 ``searchset`` Bundle of ``resources`` (all matches), with self and next links,
    and ``outcome`` (an OperationOutcome, e.g. the periods it could not read) as a last
    entry of search mode ``outcome``.

    Each entry's ``fullUrl`` is ``<server base>/<type>/<id>``, the server base being
    ``self_url`` up to its last path segment (``.../fhir`` for ``.../fhir/AuditEvent?...``);
    for a relative ``self_url``, ``urn:uuid:<id>``.
    """
    if not self_url:
        raise MalformedInputError("a searchset bundle needs its self URL")
    if total is not None and total < 0:
        raise MalformedInputError("bundle total must be >= 0")
    base = _server_base(self_url)
    links: list[JsonValue] = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    entries: list[JsonValue] = []
    seen: set[str] = set()
    for resource in resources:
        full_url = _full_url(resource, base)
        if full_url in seen:
            raise MalformedInputError("a searchset bundle cannot list one resource twice")
        seen.add(full_url)
        entries.append(
            {"fullUrl": full_url, "resource": dict(resource), "search": {"mode": "match"}}
        )
    if outcome is not None:
        if outcome.get("resourceType") != "OperationOutcome" or not _is_uuid(outcome.get("id")):
            raise MalformedInputError(
                "a searchset's outcome entry is an OperationOutcome with a UUID id"
            )
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.UUID(str(outcome.get('id')))}",
                "resource": dict(outcome),
                "search": {"mode": "outcome"},
            }
        )
    bundle: Resource = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryOutcome:
    """What became of one entry of a batch/transaction: ``status`` is an HTTP status line
    such as ``201 Created``; ``location`` the created resource (``AuditEvent/<id>``)."""

    status: str
    location: str | None = None
    issues: tuple[Issue, ...] = ()
    #: The answer of a read entry (a batch of GETs), and its ``fullUrl``.
    resource: Mapping[str, JsonValue] | None = None
    full_url: str | None = None
    #: A refused entry's own OperationOutcome (instead of ``issues``).
    outcome: Mapping[str, JsonValue] | None = None


_STATUS = re.compile(r"[1-5]\d\d( [ -~]{1,100})?")


def batch_response_bundle(outcomes: Sequence[EntryOutcome], *, transaction: bool) -> Resource:
    """An R4 ``batch-response`` or ``transaction-response`` Bundle, one entry per outcome."""
    entries: list[JsonValue] = []
    for outcome in outcomes:
        if not _STATUS.fullmatch(outcome.status):
            raise MalformedInputError("an entry status must be an HTTP status line")
        response: Resource = {"status": outcome.status}
        if outcome.location:
            response["location"] = outcome.location
        if outcome.issues:
            response["outcome"] = operation_outcome(outcome.issues)
        elif outcome.outcome is not None:
            response["outcome"] = dict(outcome.outcome)
        entry: Resource = {}
        if outcome.full_url:
            entry["fullUrl"] = outcome.full_url
        if outcome.resource is not None:
            entry["resource"] = dict(outcome.resource)
        entry["response"] = response
        entries.append(entry)
    kind = "transaction-response" if transaction else "batch-response"
    bundle: Resource = {"resourceType": "Bundle", "type": kind}
    if entries:
        bundle["entry"] = entries
    return bundle
