"""Kinds of PHI an event touched, and whether its action took place.

Invariant: conservative: when in doubt an event counts as touching more (a breach notice
must not understate what was exposed), and only a completed action touches PHI.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from ledger.audit.reports.rows import (
    KIND_LEDGER_READ,
    KIND_RELAY,
    KIND_SECURITY,
    AccessRow,
    DisclosedRef,
)


class PhiKind(StrEnum):
    """Kinds of PHI, for the breach notice's "types of unsecured PHI" (164.404(c)(1)(B))."""

    #: Patient identifiers and demographics: id, issuer, state, the link to the facility.
    DEMOGRAPHICS = "demographics"
    #: Diagnostic images (DICOM instances).
    IMAGES = "images"
    #: The diagnostic report or a finding (procedure record, SR/PDF objects, relays).
    REPORT = "report"
    #: The imaging order (DICOM Order Record).
    ORDER = "order"
    #: A copy of the PHI left the system (DICOM Export).
    EXPORT = "export"


#: DICOM EventID -> the kinds of PHI it touches besides DEMOGRAPHICS, which every event
#: touches (it names the patient). Read with ``phi_kinds``, which adds the study-based rules.
PHI_KINDS_BY_EVENT_ID: Final[Mapping[str, tuple[PhiKind, ...]]] = MappingProxyType(
    {
        "110100": (),  # Application Activity
        "110101": (),  # Audit Log Used: reveals who accessed the patient
        "110102": (PhiKind.IMAGES,),  # Begin Transferring DICOM Instances
        "110103": (PhiKind.IMAGES,),  # DICOM Instances Accessed
        "110104": (PhiKind.IMAGES,),  # DICOM Instances Transferred
        "110105": (PhiKind.IMAGES,),  # DICOM Study Deleted
        "110106": (PhiKind.EXPORT,),  # Export (+ images or report, from the study)
        "110107": (PhiKind.IMAGES,),  # Import
        "110108": (),  # Network Entry
        "110109": (PhiKind.ORDER,),  # Order Record
        "110110": (),  # Patient Record: demographics
        "110111": (PhiKind.REPORT,),  # Procedure Record: the report of the procedure
        "110112": (),  # Query: the criteria, and (v2) the patients the answer returned
        "110113": (),  # Security Alert (+ images when it names a study: break the glass)
        "110114": (),  # User Authentication
    }
)

#: SOP Class UID prefixes of report objects: Structured Reports (1.2.840.10008.5.1.4.1.1.88.*)
#: and encapsulated documents (PDF .104.1, CDA .104.2).
REPORT_SOP_CLASS_PREFIXES: Final = (
    "1.2.840.10008.5.1.4.1.1.88.",
    "1.2.840.10008.5.1.4.1.1.104.",
)


def _is_report_sop(sop: str) -> bool:
    return sop.startswith(REPORT_SOP_CLASS_PREFIXES)


def phi_kinds(row: AccessRow) -> frozenset[PhiKind]:
    """The kinds of PHI one event touched.

    Rules, in order:

    1. every event that names a patient touches DEMOGRAPHICS (a read of the ledger or a
       security event that names none touches no PHI kind);
    2. a critical-result relay touches REPORT (it carries the finding);
    3. the DICOM EventID adds its kinds from ``PHI_KINDS_BY_EVENT_ID``;
    4. an Export, a Security Alert or an unknown EventID that names a study adds IMAGES
       (conservative: a breach notice must not understate what was exposed);
    5. a study's SOP classes that are report objects (``REPORT_SOP_CLASS_PREFIXES``) add
       REPORT; when every SOP class named is a report object, IMAGES is dropped.
    """
    if row.patient_id is None:
        return frozenset()
    kinds = {PhiKind.DEMOGRAPHICS}
    if row.kind == KIND_RELAY:
        kinds.add(PhiKind.REPORT)
        return frozenset(kinds)
    code = row.dicom_event_id
    known = code is not None and code in PHI_KINDS_BY_EVENT_ID
    if known and code is not None:
        kinds.update(PHI_KINDS_BY_EVENT_ID[code])
    if row.study is not None:
        if not known or code in ("110106", "110113"):
            kinds.add(PhiKind.IMAGES)
        sops = row.study.sop_classes
        if any(_is_report_sop(s) for s in sops):
            kinds.add(PhiKind.REPORT)
            if all(_is_report_sop(s) for s in sops):
                kinds.discard(PhiKind.IMAGES)
    return frozenset(kinds)


def disclosed_phi_kinds(row: AccessRow, patient: DisclosedRef) -> frozenset[PhiKind]:
    """The kinds of PHI an access's answer disclosed about one patient it returned
    (PhiAccessEvent v2 ``disclosed``) without the request naming them.

    The rules of ``phi_kinds`` applied to that patient: DEMOGRAPHICS, the EventID's kinds,
    and IMAGES when the answer returned studies of theirs for an Export, a Security Alert
    or an unknown EventID. The event's own ``study`` is the named patient's, so its SOP
    classes say nothing about this patient (no REPORT rule). Whatever the outcome: the
    answer carried them (a C-FIND that failed after 40 matches disclosed those 40).
    """
    kinds = {PhiKind.DEMOGRAPHICS}
    code = row.dicom_event_id
    known = code is not None and code in PHI_KINDS_BY_EVENT_ID
    if known and code is not None:
        kinds.update(PHI_KINDS_BY_EVENT_ID[code])
    if patient.studies and (not known or code in ("110106", "110113")):
        kinds.add(PhiKind.IMAGES)
    return frozenset(kinds)


#: DICOM outcomes after which the action took place (0 success, 4 minor failure). Serious
#: (8) and major (12) failures mean the action was terminated or refused: no PHI was touched.
_COMPLETED_OUTCOMES: Final = frozenset({"SUCCESS", "MINOR_FAILURE"})


def is_completed(row: AccessRow) -> bool:
    """True if the action happened: outcome success or minor failure, or not recorded. A
    relay always happened (its sender had the finding). A read of the ledger returned data
    only on SUCCESS: its producer records a refused (4xx) request as MINOR_FAILURE. A
    security event happened only on SUCCESS: DICOM's minor failure (4) of an authentication
    is an invalid password the user retried."""
    if row.kind == KIND_RELAY:
        return True
    if row.kind in (KIND_LEDGER_READ, KIND_SECURITY):
        return row.outcome == "SUCCESS"
    return row.outcome is None or row.outcome in _COMPLETED_OUTCOMES
