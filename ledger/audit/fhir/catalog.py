"""Every ``GET /fhir/AuditEvent`` parameter this server implements: one table, two readers.

Invariant: the search parser accepts exactly the names of ``SEARCH_PARAMETERS`` and
``RESULT_PARAMETERS`` (plus the private ``_cursor`` of next links), and the
CapabilityStatement lists exactly them, so the statement can never claim a parameter the
parser does not implement, nor hide one it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from ledger.audit.fhir.vocabulary import SEARCH_PARAMETERS_BASE

__all__ = [
    "CURSOR",
    "PATIENT_IDENTIFIER",
    "RESULT_PARAMETERS",
    "SEARCH_PARAMETERS",
    "SearchParameter",
    "accepted_names",
]

SearchType = Literal["token", "reference", "date", "string", "number", "special"]

_R4: Final = f"{SEARCH_PARAMETERS_BASE}AuditEvent-"


@dataclass(frozen=True, slots=True, kw_only=True)
class SearchParameter:
    """One parameter: its name, R4 type, definition URL (None for result parameters) and
    what this server does with it (``documentation``, shown in the CapabilityStatement)."""

    name: str
    type: SearchType
    definition: str | None
    documentation: str


def _p(name: str, kind: SearchType, documentation: str) -> SearchParameter:
    return SearchParameter(
        name=name, type=kind, definition=f"{_R4}{name}", documentation=documentation
    )


#: The AuditEvent search parameters (R4 core, IHE ITI-81 RESTful ATNA). A search must name
#: ``patient``, ``patient.identifier``, ``agent`` or ``entity``; the others narrow it.
SEARCH_PARAMETERS: Final[tuple[SearchParameter, ...]] = (
    _p(
        "patient",
        "reference",
        "Patient id or Patient/id. Chain: patient.identifier=value (the patient id; "
        "identifiers here carry no system). Names the patient's history, which includes "
        "the reads of the ledger that returned the patient's entries.",
    ),
    _p("agent", "reference", "User id, or Type/id (Practitioner, Device, ...)."),
    _p("entity", "reference", "DICOM Study Instance UID, bare or urn:oid:."),
    _p("date", "date", "recorded; prefixes eq ge gt le lt; repeat to bound (at most 4)."),
    _p("type", "token", "DICOM EventID or private code; [system|]code, comma alternatives."),
    _p("action", "token", "C, R, U, D or E; comma alternatives."),
    _p("outcome", "token", "0, 4, 8 or 12; [system|]code, comma alternatives."),
    _p("subtype", "token", "EventTypeCode; [system|]code, comma alternatives."),
    _p("site", "token", "source.site: the facility id; comma alternatives, no system."),
    _p("source", "reference", "source.observer: the producer id, or Device/id."),
    _p(
        "address",
        "string",
        "agent.network.address; case-insensitive prefix (not accent-insensitive).",
    ),
    _p("entity-type", "token", "entity.type; [system|]code, comma alternatives."),
    _p("entity-role", "token", "entity.role; [system|]code, comma alternatives."),
    _p(
        "agent-name",
        "string",
        "agent.name (the requesting user's name); case-insensitive prefix "
        "(not accent-insensitive).",
    ),
)

#: Result parameters: how the answer is shaped and paged, not what it matches.
RESULT_PARAMETERS: Final[tuple[SearchParameter, ...]] = (
    SearchParameter(
        name="_count",
        type="number",
        definition=None,
        documentation="Page size, 1 to 1000 (default 100); the next link pages on.",
    ),
    SearchParameter(
        name="_summary",
        type="token",
        definition=None,
        documentation="true, text, data, count or false (R4); true and text keep the "
        "mandatory elements and the ledger-position extension, tagged SUBSETTED.",
    ),
    SearchParameter(
        name="_elements",
        type="special",
        definition=None,
        documentation="Comma-separated top-level AuditEvent elements; mandatory elements "
        "and the ledger-position extension are always kept, tagged SUBSETTED.",
    ),
    SearchParameter(
        name="_format",
        type="token",
        definition=None,
        documentation="json, application/json or application/fhir+json; XML is 406.",
    ),
)

#: The page token of a next link (issued by this server, MAC'd; not for clients to build).
CURSOR: Final = "_cursor"

#: The chained form of ``patient`` (IHE ITI-81): the patient id as an identifier value.
PATIENT_IDENTIFIER: Final = "patient.identifier"


def accepted_names() -> tuple[str, ...]:
    """Every query parameter name ``GET /fhir/AuditEvent`` accepts, in table order."""
    return (
        *(p.name for p in SEARCH_PARAMETERS),
        PATIENT_IDENTIFIER,
        *(p.name for p in RESULT_PARAMETERS),
        CURSOR,
    )
