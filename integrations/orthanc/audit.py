"""The Orthanc plugin's logic: turn Orthanc's callbacks into audit events.

Invariant: a callback never raises and never waits longer than its bound: the HTTP
filter classifies the request (``routes.classify``) and, for a PHI request, hands a
``Context`` (user, client address, time, route) to a bounded queue (``handoff``), waiting
at most ``block_seconds`` for room; only a DELETE waits (at most ``delete_wait_seconds``)
until the worker has resolved what is being deleted, since afterwards Orthanc no longer
knows. One worker thread takes the queue in order and hands each item to the collaborator
for its kind of event (``reads``, ``imports``, ``deletes``, ``exports``), which resolve
the resource to its patient and study (``subjects``, cached) and emit through the sink
(``delivery``), retrying while it pushes back. When the queue stays full the request is
let through and the failure logged and counted (``FailClosed``: refused with 403
instead). Logs never contain PHI: no patient, study or user names, only routes, Orthanc
levels and counts. Where each event comes from: docs/orthanc.md, "What is audited".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from integrations.orthanc.build import EventBuilder
from integrations.orthanc.callers import Callers, Context, basic_user
from integrations.orthanc.config import PluginConfig
from integrations.orthanc.deletes import Deletes
from integrations.orthanc.delivery import Alarm, Counters, Delivery, Sink
from integrations.orthanc.disclosures import Disclosures
from integrations.orthanc.exports import Exports
from integrations.orthanc.handoff import (
    TICK_SECONDS,
    Access,
    Change,
    Delete,
    HandOff,
    Stored,
    Task,
    Work,
)
from integrations.orthanc.imports import Imports
from integrations.orthanc.reads import Reads
from integrations.orthanc.resolve import Resolver
from integrations.orthanc.resultsets import ResultSets
from integrations.orthanc.routes import Kind, Level, Route, classify
from integrations.orthanc.subjects import Host, Subjects
from integrations.orthanc.transport import dicom_transport

__all__ = ["Auditor", "Context", "Counters", "Host", "Sink", "basic_user"]

logger = logging.getLogger(__name__)


class Auditor:
    """Orthanc's callbacks in, audit events out: the coordinator of the collaborators."""

    def __init__(
        self,
        config: PluginConfig,
        sink: Sink,
        host: Host,
        *,
        dicomweb: bool = False,
    ) -> None:
        self.config = config
        self.dicomweb = dicomweb
        self.resolver = Resolver(
            host.rest_get,
            max_entries=config.cache_size,
            ttl_seconds=config.cache_seconds,
            default_issuer=config.default_issuer,
        )
        self.counters = Counters()
        self._alarm = Alarm(self.counters)
        self._stopping = threading.Event()
        self._delivery = Delivery(sink, self.counters, self._stopping)
        self._handoff = HandOff(
            max_pending=config.max_pending,
            block_seconds=config.block_seconds,
            counters=self.counters,
            alarm=self._alarm,
        )
        self._callers = Callers(config)
        subjects = Subjects(self.resolver, host, default_issuer=config.default_issuer)
        build = EventBuilder(config)
        delivery, counters = self._delivery, self.counters
        self._deletes = Deletes(subjects, self.resolver, build, delivery, counters)
        self._imports = Imports(
            self.resolver, build, delivery, purpose_of_use=config.purpose_of_use,
            rest_get=host.rest_get, dicom_transport=dicom_transport(config),
        )  # fmt: skip
        self._exports = Exports(host, subjects, build, delivery, counters)
        results = ResultSets(self.resolver, host, resolve_limit=config.resolve_limit,
                             default_issuer=config.default_issuer)  # fmt: skip
        self.disclosures = Disclosures(results, self.resolver, host, build, delivery, counters)
        # A QIDO-RS search naming no patient is asked again of the DICOMweb plugin.
        qido = getattr(host, "rest_get_after_plugins", None)
        self._reads = Reads(subjects, build, delivery, counters,
                            unnamed=self.disclosures, qido=qido)  # fmt: skip
        self._host = host
        #: The context of each thread's wrapped request, noted by the HTTP filter (which
        #: sees the client address) for the REST callback that answers it.
        self._wrapped: dict[int, Context] = {}
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="phi-ledger-audit", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Process what is queued (within ``timeout``), then end the worker."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._handoff.close()  # past the bound: the worker stops after the rest
        thread.join(timeout)
        if thread.is_alive():
            logger.error("PHI audit worker did not finish within %ss", timeout)
        self._thread = None

    def drain(self, timeout: float) -> bool:
        """Wait until the worker has processed everything queued so far (tests, shutdown)."""
        done = threading.Event()
        barrier = Delete(
            context=Context(
                user="", address=None, at=datetime.now(UTC),
                route=Route(kind=Kind.DELETE, template=""), purpose=None,
            ),
            done=done,
        )  # fmt: skip
        if not self._handoff.put(barrier, urgent=True, timeout=timeout):
            return False
        return done.wait(timeout)

    # ------------------------------------------------------------------ callbacks

    def on_http_request(
        self,
        method: str,
        uri: str,
        ip: str | None,
        headers: Mapping[str, str],
        get: Mapping[str, str],
    ) -> bool:
        """The incoming-request filter: True lets Orthanc serve the request."""
        thread = threading.get_ident()
        self._imports.forget(thread)  # a new request on this thread
        route = classify(method, uri, get, dicomweb=self.dicomweb)
        if route is None:
            return True
        context = self._callers.context(route, ip, headers)
        if route.kind is Kind.IMPORT:
            self._imports.requested(thread, context)
            return True
        if route.kind is Kind.EXPORT:
            self._exports.requested(context)
            return True
        if route.kind is Kind.DELETE:
            return self._delete(context)
        if route.kind is Kind.WRAPPED:
            self._wrapped[thread] = context
            return True
        if route.kind is Kind.LISTING:
            return self.submit(lambda: self._listing(context, uri, get)) or not (
                self.config.fail_closed
            )
        return self._handoff.put(Access(context)) or not self.config.fail_closed

    def wrapped_context(self, route: Route, headers: Mapping[str, str]) -> Context:
        """(A REST callback) the context the filter noted for this thread's request; one
        without the client address if the filter did not see it."""
        context = self._wrapped.pop(threading.get_ident(), None)
        if context is None or context.route.template != route.template:
            context = self._callers.context(route, None, headers)
        return context

    def submit(self, task: Callable[[], None]) -> bool:
        """Queue work for the worker (at most ``block_seconds``); False (counted) when
        the queue stayed full."""
        return self._handoff.put(Task(task))

    def _listing(self, context: Context, uri: str, get: Mapping[str, str]) -> None:
        """``GET /instances``: the same listing asked again right after Orthanc's answer."""
        self.disclosures.listing(context, uri, get, self._host.rest_get)

    def _delete(self, context: Context) -> bool:
        """A DELETE waits until the worker resolved what it deletes (or its bound)."""
        done = threading.Event()
        if not self._handoff.put(Delete(context, done), urgent=True):
            return not self.config.fail_closed
        if not done.wait(self.config.delete_wait_seconds):
            self._alarm.warn("slow", "PHI audit worker did not resolve a DELETE in time")
            return not self.config.fail_closed
        return True

    def on_stored_instance(
        self,
        tags: Mapping[str, object],
        instance_id: str,
        origin: str,
        remote_aet: str | None,
    ) -> None:
        context = self._imports.context(threading.get_ident(), origin)
        self._handoff.put(Stored(tags, instance_id, origin, remote_aet, context, datetime.now(UTC)))

    @property
    def delivery(self) -> Delivery:
        """Where a ``submit``-ted job emits its events (on the worker)."""
        return self._delivery

    def on_change(self, change: str, level: Level | None, resource: str) -> None:
        if change in ("DELETED", "JOB_SUBMITTED", "JOB_SUCCESS", "JOB_FAILURE"):
            if change == "JOB_SUBMITTED" and not self._exports.waiting():
                return  # no export request is waiting for a job
            self._handoff.put(Change(change, level, resource))

    # ------------------------------------------------------------------ the worker

    def _work(self) -> None:
        last_item = last_tick = time.monotonic()
        while True:
            batch = self._handoff.take(last_item)
            now = time.monotonic()
            if batch:
                last_item = now
                with self._delivery.batch():
                    for item in batch:
                        if item is None:
                            self._expire(force=True)
                            return
                        self._process(item)
            if now - last_tick >= TICK_SECONDS:
                last_tick = now
                self._process(Change("TICK", None, ""))

    def _process(self, item: Work) -> None:
        try:
            self._handle(item)
        except Exception as exc:
            self.counters.errors += 1
            self.counters.unaudited += 1
            logger.error("PHI audit worker error (%s); an event was not recorded",
                         type(exc).__name__)  # fmt: skip
        finally:
            if isinstance(item, Delete):
                item.done.set()

    def _handle(self, item: Work) -> None:
        if isinstance(item, Access):
            self._reads.access(item.context)
        elif isinstance(item, Delete):
            if item.context.route.resource is not None:
                self._deletes.requested(item.context)
        elif isinstance(item, Stored):
            self._imports.stored(item)
        elif isinstance(item, Task):
            item.run()
        else:
            if item.change == "DELETED":
                self._deletes.deleted(item.resource)
            elif item.change == "JOB_SUBMITTED":
                self._exports.submitted(item.resource)
            elif item.change in ("JOB_SUCCESS", "JOB_FAILURE"):
                self._exports.ended(item.resource, success=item.change == "JOB_SUCCESS")
            self._expire(force=False)

    def _expire(self, *, force: bool) -> None:
        self._deletes.expire(force=force)
        self._exports.expire()
