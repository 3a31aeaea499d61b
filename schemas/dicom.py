"""DICOM PS3.15 A.5 audit vocabulary of producers, integrations and the ledger (data only).

Invariant: the tables here are exactly the codes of the DICOM standard (code
system DCM), the RFC 3881 codes its audit messages use, and this product's private
codes (code system 99PHILEDGER). Code that needs a DICOM audit code takes it from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

#: EventID codes (DCM) and their display names.
EVENT_IDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "110100": "Application Activity",
        "110101": "Audit Log Used",
        "110102": "Begin Transferring DICOM Instances",
        "110103": "DICOM Instances Accessed",
        "110104": "DICOM Instances Transferred",
        "110105": "DICOM Study Deleted",
        "110106": "Export",
        "110107": "Import",
        "110108": "Network Entry",
        "110109": "Order Record",
        "110110": "Patient Record",
        "110111": "Procedure Record",
        "110112": "Query",
        "110113": "Security Alert",
        "110114": "User Authentication",
    }
)

#: The EventIDs of security events (schema ``philedger.audit.SecurityEvent``): audit
#: messages about the security of the system rather than access to a patient's record.
#: They often name no patient; an Emergency Override (Security Alert with EventTypeCode
#: 110127 / 110138) names the patient whose record was opened.
SECURITY_EVENT_IDS: Final[frozenset[str]] = frozenset(
    {
        "110100",  # Application Activity (application start / stop)
        "110108",  # Network Entry (a node attaches to / detaches from the network)
        "110113",  # Security Alert (emergency override, configuration changes, ...)
        "110114",  # User Authentication (login, logout, and their failures)
    }
)

#: Some EventTypeCodes (DCM).
EVENT_TYPE_CODES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "110120": "Application Start",
        "110121": "Application Stop",
        "110122": "Login",
        "110123": "Logout",
        "110124": "Attach",
        "110125": "Detach",
        "110127": "Emergency Override Started",
        "110138": "Emergency Override Stopped",
        "110136": "Security Roles Changed",
        "110137": "User security Attributes Changed",
    }
)

#: Private code system for events DICOM has no code for.
PRIVATE_CODE_SYSTEM: Final = "99PHILEDGER"
CRITICAL_RESULT_RELAY: Final = ("CRR", "Critical Result Relay")
#: Marks a FHIR AuditEvent this ledger wrote for a ``SecurityEvent`` (an ``AuditEvent.subtype``
#: coding), so that it maps back to that schema rather than to a ``PhiAccessEvent``.
SECURITY_EVENT: Final = ("SEC", "Security Event")

#: Code systems of the coded values in a DICOM audit message.
DCM: Final = "DCM"
RFC3881: Final = "RFC-3881"
#: HL7 v3 ActReason (PurposeOfUse) code system OID.
HL7_ACT_REASON_OID: Final = "2.16.840.1.113883.5.8"

#: The syslog MSGID of an IHE ATNA audit record (ITI-20).
ATNA_MSGID: Final = "IHE+RFC-3881"

#: EventIDs the mappings treat apart.
AUDIT_LOG_USED: Final = "110101"
EXPORT: Final = "110106"
QUERY: Final = "110112"

#: RoleIDCodes (DCM) of applications and transfer ends (not a person's workforce role).
ROLE_IDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "110150": "Application",
        "110151": "Application Launcher",
        "110152": "Destination Role ID",
        "110153": "Source Role ID",
        "110154": "Destination Media",
        "110155": "Source Media",
    }
)
SYSTEM_ROLE_IDS: Final[frozenset[str]] = frozenset(ROLE_IDS)
DESTINATION_ROLE_IDS: Final[frozenset[str]] = frozenset({"110152", "110154"})
APPLICATION_ROLE: Final = "110150"
DESTINATION_ROLE: Final = "110152"
SOURCE_ROLE: Final = "110153"

#: ParticipantObjectIDTypeCodes: DCM ...
STUDY_INSTANCE_UID: Final = "110180"
SOP_CLASS_UID: Final = "110181"
#: ... and RFC-3881.
PATIENT_NUMBER: Final = "2"
URI: Final = "12"

#: ParticipantObjectTypeCode (RFC 3881): a person, a system object.
OBJECT_PERSON: Final = "1"
OBJECT_SYSTEM: Final = "2"
#: ParticipantObjectTypeCodeRole (RFC 3881).
ROLE_PATIENT: Final = "1"
ROLE_REPORT: Final = "3"
ROLE_RESOURCE: Final = "4"
ROLE_SECURITY_RESOURCE: Final = "13"
ROLE_QUERY: Final = "24"

#: AuditSourceTypeCode 4.
APPLICATION_SERVER: Final = ("4", "Application Server")
