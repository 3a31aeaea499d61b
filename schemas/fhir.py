"""FHIR R4 AuditEvent vocabulary shared by the ledger and the integrations (data only).

Invariant: the ledger's AuditEvent views (``ledger.audit.fhir``) and the inbound FHIR feed
(``integrations.fhir``) read every code system, code and URL they share from here, so what
one side writes the other reads back; the external systems are exactly HL7's and DICOM's,
and this product's own definitions all live under one base URL (``FhirNamespace``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from schemas import dicom

__all__ = [
    "AUDIT_ENTITY_TYPE",
    "AUDIT_EVENT_OUTCOME",
    "AUDIT_EVENT_PROFILE",
    "DCM",
    "DEFAULT_BASE_URL",
    "DICOM_UID_SYSTEM",
    "EXTRA_SECURITY_ROLE_TYPE",
    "ISO_21089_LIFECYCLE",
    "OBJECT_ROLE",
    "OUTCOME_CODES",
    "RESOURCE_TYPES",
    "SEARCH_PARAMETERS_BASE",
    "SECURITY_SOURCE_TYPE",
    "US_NPI",
    "V2_IDENTIFIER_TYPE",
    "V3_ACT_REASON",
    "V3_OBSERVATION_VALUE",
    "V3_PARTICIPATION_TYPE",
    "V3_ROLE_CLASS",
    "FhirNamespace",
]

#: Where this product's own FHIR definitions (extensions, code systems) live by default.
DEFAULT_BASE_URL: Final = "https://philedger.example/fhir"

# External code systems and identifier systems.
DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
V3_ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_PARTICIPATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_ROLE_CLASS: Final = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
EXTRA_SECURITY_ROLE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
AUDIT_ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
SECURITY_SOURCE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/security-source-type"
ISO_21089_LIFECYCLE: Final = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
V2_IDENTIFIER_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
RESOURCE_TYPES: Final = "http://hl7.org/fhir/resource-types"
US_NPI: Final = "http://hl7.org/fhir/sid/us-npi"
DICOM_UID_SYSTEM: Final = "urn:dicom:uid"
#: ``AuditEvent.outcome`` codes (the ``outcome`` search parameter's system).
AUDIT_EVENT_OUTCOME: Final = "http://hl7.org/fhir/audit-event-outcome"
#: ``SUBSETTED``: the ``meta.tag`` of a resource with elements left out (_summary, _elements).
V3_OBSERVATION_VALUE: Final = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
# The R4 definitions the CapabilityStatement points to.
AUDIT_EVENT_PROFILE: Final = "http://hl7.org/fhir/StructureDefinition/AuditEvent"
SEARCH_PARAMETERS_BASE: Final = "http://hl7.org/fhir/SearchParameter/"

#: ``AuditEvent.outcome`` (DICOM EventOutcomeIndicator) of each stored event outcome.
OUTCOME_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "SUCCESS": "0",
        "MINOR_FAILURE": "4",
        "SERIOUS_FAILURE": "8",
        "MAJOR_FAILURE": "12",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirNamespace:
    """The URLs of this product's own FHIR definitions under one base URL."""

    base_url: str
    ledger_position: str
    event_detail: str
    agent_npi: str
    agent_organization: str
    site_name: str
    producer_sequence: str
    #: On ``agent.network``: how the access travelled (PhiAccessEvent v3 ``transport``).
    transport: str
    private_codes: str
    event_type_code: str
    purpose_of_use: str
    workforce_role: str

    @classmethod
    def under(cls, base_url: str) -> FhirNamespace:
        """The definitions under ``base_url`` (a trailing ``/`` is dropped).

        The caller has checked that ``base_url`` is an absolute http(s) URL: each side
        refuses a bad one with its own error.
        """
        base = base_url.rstrip("/")
        sd = f"{base}/StructureDefinition"
        cs = f"{base}/CodeSystem"
        return cls(
            base_url=base,
            ledger_position=f"{sd}/ledger-position",
            event_detail=f"{sd}/event-detail",
            agent_npi=f"{sd}/agent-npi",
            agent_organization=f"{sd}/agent-organization",
            site_name=f"{sd}/site-name",
            producer_sequence=f"{sd}/producer-sequence",
            transport=f"{sd}/transport",
            private_codes=f"{cs}/{dicom.PRIVATE_CODE_SYSTEM}",
            event_type_code=f"{cs}/event-type-code",
            purpose_of_use=f"{cs}/purpose-of-use",
            workforce_role=f"{cs}/workforce-role",
        )
