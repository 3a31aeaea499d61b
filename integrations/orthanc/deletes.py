"""Deletions: DELETE of a patient or study is 110105 DICOM Study Deleted, of a series or
an instance 110103 with action D.

Invariant: a deletion is resolved before Orthanc deletes (afterwards Orthanc no longer
knows what it was) and recorded when Orthanc reports it DELETED; unconfirmed after
``DELETE_CONFIRM_SECONDS``, or at shutdown, it is recorded with outcome SERIOUS_FAILURE,
never dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final

from integrations.orthanc.build import EventBuilder
from integrations.orthanc.callers import Context
from integrations.orthanc.delivery import Counters, Delivery
from integrations.orthanc.resolve import Resolver, Subject
from integrations.orthanc.routes import Level
from integrations.orthanc.subjects import Subjects
from producers import EventAction, EventOutcome, PhiAccessEvent

#: How long a DELETE waits for Orthanc to report the deletion before it is recorded
#: as failed.
DELETE_CONFIRM_SECONDS: Final = 60.0


@dataclass(slots=True)
class _PendingDelete:
    context: Context
    level: Level
    subject: Subject
    deadline: float


class Deletes:
    def __init__(
        self,
        subjects: Subjects,
        resolver: Resolver,
        build: EventBuilder,
        delivery: Delivery,
        counters: Counters,
    ) -> None:
        self._subjects = subjects
        self._resolver = resolver
        self._build = build
        self._delivery = delivery
        self._counters = counters
        self._pending: dict[str, _PendingDelete] = {}

    def requested(self, context: Context) -> None:
        route = context.route
        if route.level is None or route.resource is None:
            return
        subject = self._subjects.of_route(route)
        if subject is None:
            self._counters.unresolved += 1
            return
        self._pending[route.resource] = _PendingDelete(
            context, route.level, subject, time.monotonic() + DELETE_CONFIRM_SECONDS
        )

    def deleted(self, resource: str) -> None:
        pending = self._pending.pop(resource, None)
        for level in Level:
            self._resolver.forget(level, resource)
        if pending is not None:
            self._delivery.emit(self._deletion(pending, EventOutcome.SUCCESS))

    def expire(self, *, force: bool) -> None:
        now = time.monotonic()
        for resource, pending in list(self._pending.items()):
            # Unconfirmed after a minute, or still unconfirmed at shutdown: recorded as a
            # deletion Orthanc did not report (never dropped).
            if force or pending.deadline < now:
                del self._pending[resource]
                self._delivery.emit(self._deletion(pending, EventOutcome.SERIOUS_FAILURE))

    def _deletion(self, pending: _PendingDelete, outcome: EventOutcome) -> PhiAccessEvent:
        whole = pending.level in (Level.PATIENT, Level.STUDY)
        extra = {} if outcome is EventOutcome.SUCCESS else {
            "orthanc.note": "deletion requested; Orthanc did not report it as done"
        }  # fmt: skip
        return self._build.event(
            pending.context,
            pending.subject,
            "110105" if whole else "110103",
            EventAction.DELETE,
            outcome=outcome,
            level=pending.level,
            resource=pending.context.route.resource,
            extra=extra,
            with_study=pending.level is not Level.PATIENT,
        )
