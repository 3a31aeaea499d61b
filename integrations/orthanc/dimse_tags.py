"""The DICOM tags Orthanc 1.10's C-FIND SCP treats specially, and how it matches values.

Invariant: data and pure functions only. The main DICOM tags are those of Orthanc 1.10.1
(``DicomMap.cpp``: what its index stores per level); the counters are the tags
``OrthancFindRequestHandler`` computes instead of reading them; ``case_sensitive_match``
is the case-sensitive half of Orthanc's ``DatabaseLookup`` (range, list, wildcard,
equality), used to re-check what a case-insensitive ``/tools/find`` returned.
"""

from __future__ import annotations

import re
from typing import Final

QUERY_RETRIEVE_LEVEL: Final = "0008,0052"
RETRIEVE_AE_TITLE: Final = "0008,0054"
SPECIFIC_CHARACTER_SET: Final = "0008,0005"
MODALITY: Final = "0008,0060"
PATIENT_ID: Final = "0010,0020"
ISSUER_OF_PATIENT_ID: Final = "0010,0021"

PATIENT_STUDIES: Final = "0020,1200"
PATIENT_SERIES: Final = "0020,1202"
PATIENT_INSTANCES: Final = "0020,1204"
STUDY_SERIES: Final = "0020,1206"
STUDY_INSTANCES: Final = "0020,1208"
SERIES_INSTANCES: Final = "0020,1209"
MODALITIES_IN_STUDY: Final = "0008,0061"
SOP_CLASSES_IN_STUDY: Final = "0008,0062"

#: Tags Orthanc computes at each query level (``ComputeCounters``).
COUNTERS: Final[dict[str, frozenset[str]]] = {
    "Patient": frozenset({PATIENT_STUDIES, PATIENT_SERIES, PATIENT_INSTANCES}),
    "Study": frozenset({STUDY_SERIES, STUDY_INSTANCES, MODALITIES_IN_STUDY, SOP_CLASSES_IN_STUDY}),
    "Series": frozenset({SERIES_INSTANCES}),
    "Instance": frozenset(),
}
ALL_COUNTERS: Final = frozenset().union(*COUNTERS.values())

_PATIENT = "0010,0010 0010,0030 0010,0040 0010,1000 0010,0020"
_STUDY = (
    "0008,0020 0008,0030 0020,0010 0008,1030 0008,0050 0020,000d 0032,1060 0008,0080 "
    "0032,1032 0008,0090"
)
_SERIES = (
    "0008,0021 0008,0031 0008,0060 0008,0070 0008,1010 0008,103e 0018,0015 0018,0024 "
    "0018,1030 0020,0011 0018,1090 0020,1002 0020,0105 0054,0081 0054,0101 0020,000e "
    "0020,0037 0054,1000 0008,1070 0040,0254 0018,1400 0018,0010"
)
_INSTANCE = (
    "0008,0012 0008,0013 0020,0012 0054,1330 0020,0013 0028,0008 0020,0100 0008,0018 "
    "0020,0032 0020,4000"
)
#: Every main DICOM tag of Orthanc 1.10.1, any level.
MAIN_TAGS: Final = frozenset(" ".join((_PATIENT, _STUDY, _SERIES, _INSTANCE)).split())

#: Orthanc's resource levels, from a QueryRetrieveLevel (``StringToResourceType``).
LEVELS: Final[dict[str, str]] = {
    "PATIENT": "Patient",
    "STUDY": "Study",
    "SERIES": "Series",
    "INSTANCE": "Instance",
    "IMAGE": "Instance",
}

_WILDCARD_VRS: Final = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
_RANGE_VRS: Final = frozenset({"DA", "DT", "TM"})


def tag_key(group: int, element: int) -> str:
    """Orthanc's spelling of a tag (``DicomTag::Format``): ``0010,0010``, lower-case hex."""
    return f"{group:04x},{element:04x}"


def vr_of(tag: str) -> str | None:
    """The value representation of a tag in the DICOM dictionary (pydicom's), if known."""
    try:
        from pydicom.datadict import dictionary_VR

        return str(dictionary_VR(int(tag.replace(",", ""), 16)))
    except Exception:  # unknown or private tag, or no pydicom
        return None


def _wildcard(pattern: str) -> re.Pattern[str]:
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile("".join(parts), re.DOTALL)


def case_sensitive_match(vr: str | None, constraint: str, value: str | None) -> bool:
    """Whether ``value`` matches ``constraint`` as Orthanc matches a case-sensitive key."""
    if value is None:
        return False
    if vr in _RANGE_VRS and "-" in constraint:
        return True  # dates and times: case does not matter
    if "\\" in constraint:
        return value in constraint.split("\\")
    if vr in _WILDCARD_VRS and ("*" in constraint or "?" in constraint):
        return _wildcard(constraint).fullmatch(value) is not None
    return value == constraint
