"""The one place a PHI access event is built from a request context and its subject.

Invariant: pure (no I/O, no shared state): the actor's role, name and NPI come from the
configured users (``unauthenticated`` for a request without a login), the details name
only the route, the Orthanc level and id, never PHI beyond the event's own fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from integrations.orthanc.callers import Context
from integrations.orthanc.config import PluginConfig, UserInfo
from integrations.orthanc.resolve import Subject
from integrations.orthanc.routes import Level
from producers import (
    Actor,
    DisclosedPatient,
    EventAction,
    EventOutcome,
    Facility,
    Patient,
    PhiAccessEvent,
    Recipient,
    Study,
)


class EventBuilder:
    def __init__(self, config: PluginConfig) -> None:
        self._config = config
        self._facility = Facility(id=config.facility_id, name=config.facility_name)

    def event(
        self,
        context: Context,
        subject: Subject | None,
        dicom_event_id: str,
        action: EventAction,
        *,
        outcome: EventOutcome = EventOutcome.SUCCESS,
        level: Level | None = None,
        resource: str | None = None,
        extra: Mapping[str, str] | None = None,
        with_study: bool = True,
        sop_classes: tuple[str, ...] = (),
        instances: int | None = None,
        recipient: Recipient | None = None,
        role: str | None = None,
        disclosed: tuple[DisclosedPatient, ...] = (),
        disclosed_total: int | None = None,
    ) -> PhiAccessEvent:
        """``subject`` None: the request named no patient (a query, a bulk read); the
        patients its answer returned are ``disclosed`` (sorted here), ``disclosed_total``
        when more were returned than listed."""
        info = self._config.user(context.user)
        if not context.authenticated:
            info = UserInfo(role="unauthenticated")
        details = {"source": "orthanc", "orthanc.route": context.route.template}
        if level is not None:
            details["orthanc.level"] = level.value
        if resource is not None:
            details["orthanc.id"] = resource
        if extra:
            details.update(extra)
        return PhiAccessEvent(
            facility=self._facility,
            actor=Actor(
                user_id=context.user,
                role=role or info.role,
                name=info.name,
                organization=info.organization,
                npi=info.npi,
            ),
            dicom_event_id=dicom_event_id,
            action=action,
            outcome=outcome,
            patient=_patient(subject),
            study=_study(subject, sop_classes, instances) if with_study and subject else None,
            network_address=context.address,
            purpose_of_use=context.purpose,
            recipient=recipient,
            details=MappingProxyType(details),
            event_time=context.at,
            disclosed=tuple(sorted(disclosed, key=lambda p: p.sort_key)),
            disclosed_truncated=disclosed_total is not None and disclosed_total > len(disclosed),
            disclosed_total=disclosed_total if disclosed_total != len(disclosed) else None,
            transport=context.transport,
        )


def _patient(subject: Subject | None) -> Patient | None:
    return None if subject is None else Patient(id=subject.patient_id, issuer=subject.issuer)


def _study(subject: Subject, sop_classes: tuple[str, ...], instances: int | None) -> Study | None:
    if subject.study_uid is None:
        return None
    return Study(
        uid=subject.study_uid,
        accession=subject.accession[:64] if subject.accession else None,
        modality=subject.modality[:16] if subject.modality else None,
        sop_classes=sop_classes,
        instances=instances,
    )
