"""From an Orthanc resource id to the patient and study an audit event names.

Invariant: ``Resolver.resolve`` returns the ``Subject`` of an existing resource (asking
Orthanc's REST API in-process on a cache miss) or raises ``LookupError``; the cache holds
at most ``max_entries`` subjects, each for at most ``ttl_seconds``, and is safe to use
from any thread. Orthanc ids are SHA-1 hashes of the DICOM identifiers (patient:
PatientID; study: PatientID|StudyInstanceUID; series and instance likewise), so a stored
instance's tags give the ids of all four levels without a lookup (``remember``).
"""

from __future__ import annotations

import collections
import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final

from integrations.orthanc.routes import Level

_UID = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")
_LEVEL_PATH: Final[Mapping[Level, str]] = {
    Level.PATIENT: "patients",
    Level.STUDY: "studies",
    Level.SERIES: "series",
    Level.INSTANCE: "instances",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """Whose PHI a resource is: the patient, and the study when the resource has one."""

    patient_id: str
    issuer: str | None
    orthanc_patient: str
    study_uid: str | None = None
    accession: str | None = None
    orthanc_study: str | None = None
    modality: str | None = None


def orthanc_id(*identifiers: str) -> str:
    """Orthanc's public id of a resource: SHA-1 of its identifiers joined by ``|``."""
    digest = hashlib.sha1("|".join(identifiers).encode(), usedforsecurity=False).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def _text(tags: Mapping[str, object], name: str) -> str | None:
    value = tags.get(name)
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def study_uid_or_none(value: str | None) -> str | None:
    """A Study Instance UID the ledger accepts (digits and dots, at most 64), else None."""
    if value is not None and len(value) <= 64 and _UID.fullmatch(value):
        return value
    return None


class Resolver:
    def __init__(
        self,
        rest_get: Callable[[str], bytes],
        *,
        max_entries: int = 10_000,
        ttl_seconds: float = 300.0,
        default_issuer: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._get = rest_get
        self._max = max_entries
        self._ttl = ttl_seconds
        self._default_issuer = default_issuer
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: collections.OrderedDict[tuple[Level, str], tuple[float, Subject]] = (
            collections.OrderedDict()
        )
        self.lookups = 0

    # ------------------------------------------------------------------ cache

    def cached(self, level: Level, resource: str) -> Subject | None:
        key = (level, resource)
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            if hit[0] < now:
                del self._cache[key]
                return None
            self._cache.move_to_end(key)
            return hit[1]

    def _put(self, level: Level, resource: str, subject: Subject) -> None:
        with self._lock:
            self._cache[(level, resource)] = (self._clock() + self._ttl, subject)
            self._cache.move_to_end((level, resource))
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)

    def forget(self, level: Level, resource: str) -> None:
        with self._lock:
            self._cache.pop((level, resource), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)

    # ------------------------------------------------------------------ resolving

    def resolve(self, level: Level, resource: str) -> Subject:
        """The subject of a resource; ``LookupError`` if Orthanc does not know it."""
        hit = self.cached(level, resource)
        if hit is not None:
            return hit
        if level is Level.PATIENT:
            subject = self._patient(resource)
        elif level is Level.STUDY:
            subject = self._study(resource)
        else:
            # The parent study of a series or an instance, in one request.
            study = self._json(f"/{_LEVEL_PATH[level]}/{resource}/study")
            study_id = study.get("ID")
            if not isinstance(study_id, str):
                raise LookupError(f"{level.value} has no parent study")
            subject = self._study(study_id, study)
        self._put(level, resource, subject)
        return subject

    def _json(self, uri: str) -> dict[str, object]:
        self.lookups += 1
        try:
            raw = self._get(uri)
        except Exception as exc:  # Orthanc raises its own exception type for a 404
            raise LookupError(f"Orthanc has no {uri.split('/')[1]} resource of that id") from exc
        value = json.loads(raw)
        if not isinstance(value, dict):
            raise LookupError("unexpected answer from Orthanc")
        return value

    def _patient(self, resource: str) -> Subject:
        hit = self.cached(Level.PATIENT, resource)
        if hit is not None:
            return hit
        # The patient module of one of its instances: PatientID and IssuerOfPatientID.
        module = self._json(f"/patients/{resource}/module?simplify")
        subject = Subject(
            patient_id=_text(module, "PatientID") or f"orthanc:{resource}",
            issuer=_text(module, "IssuerOfPatientID") or self._default_issuer,
            orthanc_patient=resource,
        )
        self._put(Level.PATIENT, resource, subject)
        return subject

    def _study(self, resource: str, study: dict[str, object] | None = None) -> Subject:
        hit = self.cached(Level.STUDY, resource)
        if hit is not None:
            return hit
        if study is None:
            study = self._json(f"/studies/{resource}")
        parent = study.get("ParentPatient")
        tags = study.get("MainDicomTags")
        if not isinstance(parent, str) or not isinstance(tags, dict):
            raise LookupError("unexpected study answer from Orthanc")
        patient = self._patient(parent)
        subject = Subject(
            patient_id=patient.patient_id,
            issuer=patient.issuer,
            orthanc_patient=parent,
            study_uid=study_uid_or_none(_text(tags, "StudyInstanceUID")),
            accession=_text(tags, "AccessionNumber"),
            orthanc_study=resource,
        )
        self._put(Level.STUDY, resource, subject)
        return subject

    def remember(self, tags: Mapping[str, object], instance_id: str) -> Subject:
        """The subject of a just-stored instance, from its tags; caches all four levels.

        The ids are derived as Orthanc derives them; if the derived instance id is not
        ``instance_id`` (another Orthanc version), only the instance is cached.
        """
        pid = _text(tags, "PatientID") or ""
        study, series, sop = (
            _text(tags, "StudyInstanceUID") or "",
            _text(tags, "SeriesInstanceUID") or "",
            _text(tags, "SOPInstanceUID") or "",
        )
        patient_key = orthanc_id(pid)
        study_key = orthanc_id(pid, study)
        subject = Subject(
            patient_id=pid or f"orthanc:{patient_key}",
            issuer=_text(tags, "IssuerOfPatientID") or self._default_issuer,
            orthanc_patient=patient_key,
            study_uid=study_uid_or_none(study),
            accession=_text(tags, "AccessionNumber"),
            orthanc_study=study_key,
            modality=_text(tags, "Modality"),
        )
        self._put(Level.INSTANCE, instance_id, subject)
        if orthanc_id(pid, study, series, sop) == instance_id:
            study_subject = Subject(
                patient_id=subject.patient_id,
                issuer=subject.issuer,
                orthanc_patient=patient_key,
                study_uid=subject.study_uid,
                accession=subject.accession,
                orthanc_study=study_key,
            )
            self._put(Level.SERIES, orthanc_id(pid, study, series), study_subject)
            if self.cached(Level.STUDY, study_key) is None:
                self._put(Level.STUDY, study_key, study_subject)
            if self.cached(Level.PATIENT, patient_key) is None:
                self._put(
                    Level.PATIENT,
                    patient_key,
                    Subject(
                        patient_id=subject.patient_id,
                        issuer=subject.issuer,
                        orthanc_patient=patient_key,
                    ),
                )
        return subject
