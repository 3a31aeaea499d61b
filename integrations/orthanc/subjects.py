"""Which patient and study a request, a query or a job is about.

Invariant: answers ``None`` rather than raising when Orthanc does not know the resource
(it will answer 404: nothing was disclosed); every answer goes through the cached
``resolve.Resolver``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from integrations.orthanc.resolve import Resolver, Subject, orthanc_id
from integrations.orthanc.routes import Level, Route


class Host(Protocol):
    """What the plugin needs from Orthanc besides its callbacks."""

    def rest_get(self, uri: str) -> bytes: ...

    def lookup_study(self, study_uid: str) -> str | None: ...


class Subjects:
    def __init__(self, resolver: Resolver, host: Host, *, default_issuer: str | None) -> None:
        self._resolver = resolver
        self._host = host
        self._default_issuer = default_issuer

    def of_route(self, route: Route) -> Subject | None:
        """The subject of a route naming a resource (by Orthanc id or study UID)."""
        try:
            if route.level is not None and route.resource is not None:
                return self._resolver.resolve(route.level, route.resource)
            if route.study_uid is not None:
                study = self._host.lookup_study(route.study_uid)
                if study is None:
                    return None
                return self._resolver.resolve(Level.STUDY, study)
        except LookupError:
            return None
        return None

    def of_query(self, route: Route) -> Subject | None:
        """The subject of a QIDO-RS query: its study, or the one patient it names."""
        if route.study_uid is not None:
            return self.of_route(route)
        params: Mapping[str, str] = route.parameters
        patient = params.get("PatientID") or params.get("00100020")
        if not patient:
            return None
        issuer = params.get("IssuerOfPatientID") or params.get("00100021")
        if issuer is None:  # the issuer Orthanc has for this PatientID, if any
            try:
                known = self._resolver.resolve(Level.PATIENT, orthanc_id(patient))
                issuer = known.issuer if known.patient_id == patient else None
            except LookupError:
                issuer = None
        return Subject(
            patient_id=patient,
            issuer=issuer or self._default_issuer,
            orthanc_patient="",
        )

    def any_level(self, resource: str) -> Subject | None:
        """The subject of an Orthanc id whose level is unknown (a job's resources)."""
        for level in (Level.STUDY, Level.SERIES, Level.INSTANCE, Level.PATIENT):
            hit = self._resolver.cached(level, resource)
            if hit is not None:
                return hit
        for level in (Level.STUDY, Level.SERIES, Level.INSTANCE, Level.PATIENT):
            try:
                return self._resolver.resolve(level, resource)
            except LookupError:
                continue
        return None
