"""The R4 CapabilityStatement of ``GET /fhir/metadata``: what this server does, exactly.

Invariant: the statement is built from the tables the server runs on: the search
parameters from ``ledger.audit.fhir.catalog`` (the parser's own table), ``create`` only when
the server accepts writes; it claims no SMART or OAuth (bearer tokens issued by the
operator), no XML, no interaction not served. It holds no PHI.
"""

from __future__ import annotations

from typing import Final

from ledger.audit.fhir.catalog import RESULT_PARAMETERS, SEARCH_PARAMETERS, SearchParameter
from ledger.audit.fhir.vocabulary import AUDIT_EVENT_PROFILE, Resource
from ledger.audit.records import JsonValue

__all__ = ["FHIR_VERSION", "STATEMENT_DATE", "capability_statement"]

FHIR_VERSION: Final = "4.0.1"
#: When the statement last changed (a CapabilityStatement's ``date`` is its own version).
STATEMENT_DATE: Final = "2026-12-06"
_SECURITY: Final = (
    "Every request except this statement needs an HTTP bearer token (RFC 6750) issued by the "
    "ledger's operator (`ledger token create`), with a role: investigator or admin may read "
    "AuditEvents, only admin may create them. SMART on FHIR and OAuth 2.0 are not supported "
    "(no authorization server, no scopes, no .well-known/smart-configuration). Every request "
    "with a token, refused ones included, is itself recorded in the ledger as a DICOM "
    "'Audit Log Used' event."
)


def _search_param(p: SearchParameter) -> Resource:
    out: Resource = {"name": p.name}
    if p.definition is not None:
        out["definition"] = p.definition
    out["type"] = p.type
    out["documentation"] = p.documentation
    return out


def capability_statement(
    *, base_url: str, writable: bool, software_version: str, max_batch_entries: int
) -> Resource:
    """The CapabilityStatement of the server at ``base_url`` (``https://host/fhir``)."""
    interactions: list[JsonValue] = [{"code": "read"}, {"code": "search-type"}]
    if writable:
        interactions.append({"code": "create"})
    params: list[JsonValue] = [_search_param(p) for p in (*SEARCH_PARAMETERS, *RESULT_PARAMETERS)]
    audit_event: Resource = {
        "type": "AuditEvent",
        "profile": AUDIT_EVENT_PROFILE,
        "documentation": (
            "AuditEvents as stored in the verifiable ledger, each with its ledger position "
            "(extension ledger-position). A search must name patient (or patient.identifier), "
            "agent or entity: a ledger-wide scan is not served. Searches page newest first; "
            "follow the next link (its _cursor is sealed by the server)."
        ),
        "interaction": interactions,
        "versioning": "no-version",
        "readHistory": False,
        "updateCreate": False,
        "conditionalCreate": False,
        "conditionalRead": "not-supported",
        "conditionalUpdate": False,
        "conditionalDelete": "not-supported",
        "searchParam": params,
    }
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": STATEMENT_DATE,
        "publisher": "PHI audit ledger",
        "kind": "instance",
        "software": {"name": "PHI audit ledger", "version": software_version},
        "implementation": {
            "description": "PHI audit ledger: FHIR R4 AuditEvent read and search (IHE ITI-81)",
            "url": base_url,
        },
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [
            {
                "mode": "server",
                "documentation": (
                    f"Batch Bundles of GET entries (at most {max_batch_entries}) are accepted "
                    "at the base; each entry is answered and recorded as its own read. "
                    "Transactions are not supported."
                ),
                "security": {"cors": False, "description": _SECURITY},
                "resource": [audit_event],
                "interaction": [{"code": "batch"}],
            }
        ],
    }
