"""The inbound feed's side of the FHIR vocabulary: outcomes, system agents, mappable elements.

Invariant: every code system and URL shared with the ledger comes from ``schemas.fhir``
(re-exported here); this module adds only what reading a foreign AuditEvent needs: which
elements can be mapped at all, and which agents are systems rather than people.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

from producers import EventOutcome
from schemas.fhir import (
    AUDIT_ENTITY_TYPE,
    DCM,
    DEFAULT_BASE_URL,
    DICOM_UID_SYSTEM,
    EXTRA_SECURITY_ROLE_TYPE,
    OBJECT_ROLE,
    OUTCOME_CODES,
    V3_ACT_REASON,
    V3_PARTICIPATION_TYPE,
    FhirNamespace,
)

__all__ = [
    "AGENT_KEYS",
    "AUDIT_ENTITY_TYPE",
    "DCM",
    "DEFAULT_BASE_URL",
    "DICOM_UID_SYSTEM",
    "ENTITY_KEYS",
    "EXTRA_SECURITY_ROLE_TYPE",
    "OBJECT_ROLE",
    "OUTCOMES",
    "SOURCE_KEYS",
    "SOURCE_ROLE_ID",
    "SYSTEM_AGENT_TYPES",
    "TOP_LEVEL",
    "V3_ACT_REASON",
    "V3_PARTICIPATION_TYPE",
    "FhirNamespace",
    "names",
]

#: The event outcome of each ``AuditEvent.outcome`` code (0, 4, 8, 12).
OUTCOMES: Final[Mapping[str, EventOutcome]] = MappingProxyType(
    {code: EventOutcome(outcome) for outcome, code in OUTCOME_CODES.items()}
)
#: Agents of these DICOM role types are systems taking part (the producer, the client or
#: server of a transfer); they are accepted and not recorded (the source is the producer).
SYSTEM_AGENT_TYPES: Final = frozenset({"110150", "110152", "110153"})
SOURCE_ROLE_ID: Final = "110153"


IGNORED: Final = frozenset({"id", "meta", "text", "language", "extension"})
TOP_LEVEL: Final = IGNORED | {
    "resourceType",
    "type",
    "subtype",
    "action",
    "recorded",
    "outcome",
    "outcomeDesc",
    "purposeOfEvent",
    "agent",
    "source",
    "entity",
}
AGENT_KEYS: Final = frozenset(
    {
        "id",
        "extension",
        "type",
        "role",
        "who",
        "name",
        "requestor",
        "location",
        "network",
        "purposeOfUse",
    }
)
ENTITY_KEYS: Final = frozenset(
    {"id", "extension", "what", "type", "role", "name", "description", "query", "detail"}
)
SOURCE_KEYS: Final = frozenset({"id", "extension", "site", "observer", "type"})


def names(base_url: str) -> FhirNamespace:
    """This product's definition URLs under ``base_url``; raises ``ValueError`` unless it
    starts with ``https://`` or ``http://``."""
    if not base_url.rstrip("/").startswith(("https://", "http://")):
        raise ValueError("the FHIR base URL must be an absolute http(s) URL")
    return FhirNamespace.under(base_url)
