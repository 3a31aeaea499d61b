"""Pure reading of DICOM identifiers and datasets: the query level, the matching criteria,
and the patients and studies a dataset names.

Invariant: nothing here does I/O or mutates the dataset it reads except ``add_return_keys``
(which says what it added) and ``strip_keys``; a patient is named by a non-empty Patient ID
(with its issuer when present), a study by a non-empty Study Instance UID, both taken
from the top level of the dataset, where Q/R identifiers, worklist items and composite
instances all carry them (PS3.4 C.6, K.6).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from integrations.dicomproxy.operations import PatientRef

_T = TypeVar("_T")

__all__ = [
    "AUDIT_RETURN_KEYS",
    "add_return_keys",
    "criteria_of",
    "patients_of",
    "query_level_of",
    "strip_keys",
    "studies_of",
    "unique",
]

#: Return keys the proxy adds to a forwarded C-FIND so the responses name the patient
#: and study; it removes them again from each response it relays (``strip_keys``).
AUDIT_RETURN_KEYS = ("PatientID", "IssuerOfPatientID", "StudyInstanceUID")
#: The levels at which a Study Instance UID is a valid return key.
_STUDY_LEVELS = frozenset({"STUDY", "SERIES", "IMAGE"})
#: Longest value kept in a criterion (a hostile identifier may carry megabytes).
MAX_CRITERION_CHARS = 256


def _text(value: object) -> str:
    """A DICOM element value as text: multi-values joined with a backslash."""
    if value is None:
        return ""
    if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)  # type: ignore[attr-defined]
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def query_level_of(identifier: Dataset | None) -> str | None:
    """The Query/Retrieve Level (0008,0052), upper case, or ``None`` (worklist)."""
    if identifier is None:
        return None
    level = _text(identifier.get("QueryRetrieveLevel")).strip().upper()
    return level or None


def criteria_of(identifier: Dataset | None, *, _prefix: str = "") -> tuple[tuple[str, str], ...]:
    """The matching keys with a value, as (keyword, value) pairs in tag order; a sequence
    item's keys are named ``Sequence.Keyword`` (``Sequence[i].Keyword`` past the first
    item). Return keys (empty values) and Query/Retrieve Level are not criteria."""
    if identifier is None:
        return ()
    found: list[tuple[str, str]] = []
    for elem in identifier:
        name = elem.keyword or f"({elem.tag.group:04X},{elem.tag.element:04X})"
        if name == "QueryRetrieveLevel":
            continue
        if elem.VR == "SQ":
            items = elem.value if isinstance(elem.value, Sequence) else []
            for index, item in enumerate(items):
                sub = f"{_prefix}{name}" + (f"[{index}]" if index else "")
                found.extend(criteria_of(item, _prefix=f"{sub}."))
            continue
        value = _text(elem.value).strip()
        if value:
            found.append((f"{_prefix}{name}", value[:MAX_CRITERION_CHARS]))
    return tuple(found)


def patients_of(dataset: Dataset | None) -> tuple[PatientRef, ...]:
    """The patient the dataset names at its top level, if any (zero or one)."""
    if dataset is None:
        return ()
    patient_id = _text(dataset.get("PatientID")).strip()
    if not patient_id:
        return ()
    issuer = _text(dataset.get("IssuerOfPatientID")).strip() or None
    return (PatientRef(patient_id=patient_id, issuer=issuer),)


def studies_of(dataset: Dataset | None) -> tuple[str, ...]:
    """The Study Instance UIDs the dataset names at its top level (a C-MOVE or C-GET
    identifier may list several, backslash-separated)."""
    if dataset is None:
        return ()
    text = _text(dataset.get("StudyInstanceUID"))
    return tuple(uid.strip() for uid in text.split("\\") if uid.strip())


def unique(items: Iterable[_T]) -> tuple[_T, ...]:
    """The items without repeats, in first-seen order."""
    return tuple(dict.fromkeys(items))


def add_return_keys(identifier: Dataset) -> tuple[str, ...]:
    """Add, as empty return keys, the ``AUDIT_RETURN_KEYS`` the identifier lacks and its
    level allows; return the keywords added (to strip from the responses)."""
    level = query_level_of(identifier)
    added: list[str] = []
    for keyword in AUDIT_RETURN_KEYS:
        if keyword in identifier:
            continue
        if keyword == "StudyInstanceUID" and level is not None and level not in _STUDY_LEVELS:
            continue
        setattr(identifier, keyword, "")
        added.append(keyword)
    return tuple(added)


def strip_keys(dataset: Dataset, keywords: Iterable[str]) -> None:
    """Remove the given top-level keywords from the dataset (those present)."""
    for keyword in keywords:
        if keyword in dataset:
            delattr(dataset, keyword)
