"""Reads and queries: 110103 Instances Accessed (action R) and 110112 Query (action E).

Invariant: a read names a patient; a read whose resource Orthanc does not know (it
answers 404, nothing was disclosed) is counted as unresolved and gives no event. A
QIDO-RS search naming no patient nor study (by date) is asked again of the DICOMweb
plugin and recorded naming nobody, disclosing the patients that answer returned
(``disclosures``); if it cannot be asked again, it is counted as unresolved.
"""

from __future__ import annotations

from collections.abc import Callable

from integrations.orthanc.build import EventBuilder
from integrations.orthanc.callers import Context
from integrations.orthanc.delivery import Counters, Delivery
from integrations.orthanc.disclosures import Disclosures
from integrations.orthanc.routes import Kind
from integrations.orthanc.subjects import Subjects
from producers import EventAction


class Reads:
    def __init__(
        self,
        subjects: Subjects,
        build: EventBuilder,
        delivery: Delivery,
        counters: Counters,
        *,
        unnamed: Disclosures | None = None,
        qido: Callable[[str], bytes] | None = None,
    ) -> None:
        self._unnamed = unnamed
        self._qido = qido
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
            if self._unnamed is not None and self._qido is not None and route.study_uid is None:
                self._unnamed.qido(context, self._qido)
                return
            self._counters.unresolved += 1
            return
        details = {f"query.{k}": v for k, v in list(route.parameters.items())[:16]}
        self._delivery.emit(
            self._build.event(context, subject, "110112", EventAction.EXECUTE, extra=details,
                              with_study=route.study_uid is not None)
        )  # fmt: skip
