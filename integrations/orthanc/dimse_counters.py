"""The values Orthanc's C-FIND computes rather than reads, and main tags from REST answers.

Invariant: read-only calls to Orthanc's built-in REST API (``get``, JSON in and out);
each counter is computed exactly as Orthanc 1.10.1's ``ComputeCounters`` computes it
(children counted through the index, ``ModalitiesInStudy`` and ``SOPClassesInStudy`` as
sorted, de-duplicated, backslash-joined sets), and only those the query asked for at the
match's level.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from integrations.orthanc import dimse_tags as T

#: The REST path of each Orthanc level.
PATHS: Final = {
    "Patient": "patients",
    "Study": "studies",
    "Series": "series",
    "Instance": "instances",
}


def main_tags(resource: Mapping[str, Any]) -> dict[str, str]:
    """The main DICOM tags of a REST answer (``?short``), the patient's of a study too."""
    tags: dict[str, str] = {}
    for key in ("MainDicomTags", "PatientMainDicomTags"):
        block = resource.get(key)
        if isinstance(block, dict):
            for tag, value in block.items():
                if isinstance(value, str):
                    tags.setdefault(tag.lower(), value)
    return tags


def counters(
    get: Callable[[str], Any], level: str, resource: Mapping[str, Any], asked: set[str]
) -> dict[str, str]:
    """The counters ``asked`` for at ``level`` of the expanded ``resource``."""
    wanted = T.COUNTERS[level] & asked
    if not wanted:
        return {}
    ident = resource.get("ID")
    out: dict[str, str] = {}
    if level == "Series":
        out[T.SERIES_INSTANCES] = str(len(resource.get("Instances") or []))
    elif level == "Patient":
        studies = resource.get("Studies") or []
        out[T.PATIENT_STUDIES] = str(len(studies))
        if wanted & {T.PATIENT_SERIES, T.PATIENT_INSTANCES}:
            series = sum(len(get(f"/studies/{s}?short").get("Series") or []) for s in studies)
            out[T.PATIENT_SERIES] = str(series)
            out[T.PATIENT_INSTANCES] = str(len(get(f"/patients/{ident}/instances")))
    else:
        out.update(_study(get, resource, wanted))
    return {tag: value for tag, value in out.items() if tag in wanted}


def _study(
    get: Callable[[str], Any], resource: Mapping[str, Any], wanted: frozenset[str]
) -> dict[str, str]:
    series_ids = resource.get("Series") or []
    out = {T.STUDY_SERIES: str(len(series_ids))}
    if T.MODALITIES_IN_STUDY in wanted:
        modalities = set()
        for series in series_ids:
            tags = main_tags(get(f"/series/{series}?short"))
            if T.MODALITY in tags:
                modalities.add(tags[T.MODALITY])
        out[T.MODALITIES_IN_STUDY] = "\\".join(sorted(modalities))
    if wanted & {T.STUDY_INSTANCES, T.SOP_CLASSES_IN_STUDY}:
        instances = get(f"/studies/{resource.get('ID')}/instances")
        out[T.STUDY_INSTANCES] = str(len(instances))
        if T.SOP_CLASSES_IN_STUDY in wanted:
            classes = {_sop_class(get, i.get("ID")) for i in instances}
            out[T.SOP_CLASSES_IN_STUDY] = "\\".join(sorted(c for c in classes if c))
    return out


def _sop_class(get: Callable[[str], Any], instance: object) -> str | None:
    try:
        raw = get(f"/instances/{instance}/metadata/SopClassUid")
    except Exception:
        return None
    return raw if isinstance(raw, str) else None
