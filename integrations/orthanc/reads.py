"""Reads and queries: 110103 Instances Accessed (action R) and 110112 Query (action E).

Invariant: an event names a patient; a read whose resource Orthanc does not know
(it answers 404, nothing was disclosed), or a query naming no single patient or study,
is counted as unresolved and gives no event.
"""

from __future__ import annotations

from integrations.orthanc.build import EventBuilder
from integrations.orthanc.callers import Context
from integrations.orthanc.delivery import Counters, Delivery
from integrations.orthanc.routes import Kind
from integrations.orthanc.subjects import Subjects
from producers import EventAction


class Reads:
    def __init__(
        self, subjects: Subjects, build: EventBuilder, delivery: Delivery, counters: Counters
    ) -> None:
        self._subjects = subjects
        self._build = build
        self._delivery = delivery
        self._counters = counters

    def access(self, context: Context) -> None:
        route = context.route
        if route.kind is Kind.QUERY:
            self._query(context)
            return
        subject = self._subjects.of_route(route)
        if subject is None:
            # Orthanc answers 404: no PHI was disclosed.
            self._counters.unresolved += 1
            return
        self._delivery.emit(
            self._build.event(context, subject, "110103", EventAction.READ, level=route.level,
                              resource=route.resource)
        )  # fmt: skip

    def _query(self, context: Context) -> None:
        route = context.route
        subject = self._subjects.of_query(route)
        if subject is None:
            self._counters.unresolved += 1
            return
        details = {f"query.{k}": v for k, v in list(route.parameters.items())[:16]}
        self._delivery.emit(
            self._build.event(context, subject, "110112", EventAction.EXECUTE, extra=details,
                              with_study=route.study_uid is not None)
        )  # fmt: skip
