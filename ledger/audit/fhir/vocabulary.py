"""The ledger's side of the FHIR vocabulary: schema names, purposes of use, base URL checks.

Invariant: every code system and URL shared with the inbound feed comes from
``schemas.fhir`` (re-exported here); this module adds only what the ledger alone uses, and
refuses a base URL that is not an absolute http(s) URL before any URL is derived from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit

from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError
from schemas.fhir import (
    AUDIT_ENTITY_TYPE,
    AUDIT_EVENT_OUTCOME,
    AUDIT_EVENT_PROFILE,
    DCM,
    DEFAULT_BASE_URL,
    DICOM_UID_SYSTEM,
    EXTRA_SECURITY_ROLE_TYPE,
    ISO_21089_LIFECYCLE,
    OBJECT_ROLE,
    OUTCOME_CODES,
    RESOURCE_TYPES,
    SEARCH_PARAMETERS_BASE,
    SECURITY_SOURCE_TYPE,
    US_NPI,
    V2_IDENTIFIER_TYPE,
    V3_ACT_REASON,
    V3_OBSERVATION_VALUE,
    V3_PARTICIPATION_TYPE,
    V3_ROLE_CLASS,
    FhirNamespace,
)

__all__ = [
    "ACCESS_SCHEMA",
    "ACTIONS",
    "AUDIT_ENTITY_TYPE",
    "AUDIT_EVENT_OUTCOME",
    "AUDIT_EVENT_PROFILE",
    "AUDIT_LOG_USED_SCHEMA",
    "DCM",
    "DEFAULT_BASE_URL",
    "DICOM_UID_SYSTEM",
    "EXTRA_SECURITY_ROLE_TYPE",
    "HL7_PURPOSES_OF_USE",
    "ISO_21089_LIFECYCLE",
    "OBJECT_ROLE",
    "OUTCOMES",
    "RELAY_SCHEMA",
    "RESOURCE_TYPES",
    "SEARCH_PARAMETERS_BASE",
    "SECURITY_SCHEMA",
    "SECURITY_SOURCE_TYPE",
    "US_NPI",
    "V2_IDENTIFIER_TYPE",
    "V3_ACT_REASON",
    "V3_OBSERVATION_VALUE",
    "V3_PARTICIPATION_TYPE",
    "V3_ROLE_CLASS",
    "FhirNamespace",
    "Resource",
    "namespace",
]

Resource = dict[str, JsonValue]

ACCESS_SCHEMA: Final = "philedger.audit.PhiAccessEvent"
RELAY_SCHEMA: Final = "philedger.audit.CriticalResultRelay"
AUDIT_LOG_USED_SCHEMA: Final = "philedger.audit.AuditLogUsed"
SECURITY_SCHEMA: Final = "philedger.audit.SecurityEvent"


#: HL7 v3 ActReason codes that ``purpose_of_use`` may carry (checked against the R4
#: terminology by tests/interop/test_fhir_r4.py). Other codes use the private system.
HL7_PURPOSES_OF_USE: Final[frozenset[str]] = frozenset(
    {
        "BTG",
        "CLINTRCH",
        "COC",
        "DISASTER",
        "ETREAT",
        "FAMRQT",
        "HMARKT",
        "HOPERAT",
        "HPAYMT",
        "HPRGRP",
        "HQUALIMP",
        "HRESCH",
        "HSYSADMIN",
        "LEGAL",
        "PATRQT",
        "PUBHLTH",
        "PWATRNY",
        "SYSADMN",
        "THREAT",
        "TREAT",
    }
)

#: ``AuditEvent.outcome`` of each stored outcome (0, 4, 8, 12).
OUTCOMES: Final[Mapping[str, str]] = OUTCOME_CODES
ACTIONS: Final = frozenset("CRUDE")


def namespace(base_url: str) -> FhirNamespace:
    """This product's definition URLs under ``base_url``; raises ``MalformedInputError``
    unless it is an absolute http(s) URL without a query."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise MalformedInputError("the FHIR base URL must be an absolute http(s) URL")
    return FhirNamespace.under(base_url)
