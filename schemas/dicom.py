"""DICOM PS3.15 A.5 audit vocabulary shared by producers and the ledger (data only).

Invariant: the tables here are exactly the codes of the DICOM standard (code
system DCM) plus this product's private codes (code system 99PHILEDGER).
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
