"""The Orthanc plugin's logic: turn Orthanc's callbacks into audit events.

Invariant: a callback never raises and never waits longer than its bound: the HTTP
filter classifies the request (``routes.classify``) and, for a PHI request, hands a
``Context`` (user, client address, time, route) to a bounded queue, waiting at most
``block_seconds`` for room; only a DELETE waits (at most ``delete_wait_seconds``) until
the worker has resolved what is being deleted, since afterwards Orthanc no longer knows.
One worker thread takes the queue in order, resolves each resource to its patient and
study (``resolve.Resolver``, cached) and emits the event through a ``SyncEmitter``-like
sink, retrying while the sink pushes back. When the queue stays full the request is
let through and the failure logged and counted (``FailClosed``: refused with 403
instead). Logs never contain PHI: no patient, study or user names, only routes, Orthanc
levels and counts.

Where each event comes from:

* reads (GET on a patient, study, series or instance and everything under it, POST of
  its archive, media, modify, anonymize; DICOMweb WADO-RS and WADO-URI): the HTTP filter,
  110103 DICOM Instances Accessed, action R. Orthanc authenticated the user before the
  filter runs (HTTP Basic), so the user is the login in the Authorization header.
* imports (``OnStoredInstance``): 110107 Import, action C, one event per stored instance;
  the user and address are those of the POST /instances request served by the same
  thread; a C-STORE's actor is the calling AE title; anything else (modify/anonymize
  jobs, Lua, plugins) is recorded as the ``orthanc`` system actor with its origin.
* deletions: DELETE of a patient or study is 110105 DICOM Study Deleted, of a series or
  an instance 110103 with action D; the event is emitted when Orthanc reports the
  resource DELETED, or with outcome SERIOUS_FAILURE if it does not within a minute.
* transfers (POST /modalities/{m}/store, /peers/{p}/store): the request is remembered;
  its job, matched in submission order by type, names the resources: when it ends, one
  110104 DICOM Instances Transferred (action R) per study, with the job's outcome and
  the destination (its name; AE title or URL) as recipient.
* queries (DICOMweb QIDO-RS): 110112 Query, action E, only when the query names one
  patient (PatientID) or one study: an event must name a patient.
"""

from __future__ import annotations

import base64
import binascii
import collections
import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final, Protocol
from urllib.parse import urlsplit, urlunsplit

from integrations.orthanc.config import PluginConfig, UserInfo
from integrations.orthanc.resolve import Resolver, Subject, orthanc_id
from integrations.orthanc.routes import Kind, Level, Route, classify
from producers import (
    PURPOSES_OF_USE,
    Actor,
    AuditEvent,
    EmitterPushbackError,
    EventAction,
    EventOutcome,
    EventValidationError,
    Facility,
    Patient,
    PhiAccessEvent,
    ProducerError,
    Recipient,
    Study,
)

logger = logging.getLogger(__name__)

#: How long a DELETE waits for Orthanc to report the deletion before it is recorded
#: as failed.
DELETE_CONFIRM_SECONDS: Final = 60.0
#: How long a remembered export request waits for its job.
EXPORT_MATCH_SECONDS: Final = 300.0
#: How long an import context (a POST /instances) stays attached to its thread.
IMPORT_CONTEXT_SECONDS: Final = 600.0
#: Orthanc's job types that send instances elsewhere, and the event each one gives.
EXPORT_EVENTS: Final[Mapping[str, str]] = MappingProxyType(
    {"DicomModalityStore": "110104", "OrthancPeerStore": "110104"}
)
#: How often the busy worker takes what Orthanc's threads queued (they never wake it).
BATCH_SECONDS: Final = 0.002
#: After this long without items the worker sleeps until notified (or TICK_SECONDS).
IDLE_SECONDS: Final = 1.0
TICK_SECONDS: Final = 1.0
SYSTEM_USER: Final = "orthanc"
SYSTEM_ROLE: Final = "application"
DICOM_AE_ROLE: Final = "dicom-application-entity"
_LOG_EVERY: Final = 60.0


class Sink(Protocol):
    """Where events go: ``producers.pipe.PipeEmitter`` (or ``SyncEmitter``) in the
    plugin. The worker emits each batch it takes inside ``batch()``."""

    def emit(self, event: AuditEvent) -> None: ...

    def batch(self) -> contextlib.AbstractContextManager[None]: ...


class Host(Protocol):
    """What the plugin needs from Orthanc besides its callbacks."""

    def rest_get(self, uri: str) -> bytes: ...

    def lookup_study(self, study_uid: str) -> str | None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Who made a request, from where, when, and which route."""

    user: str
    address: str | None
    at: datetime
    route: Route
    purpose: str | None
    authenticated: bool = True
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class _Access:
    context: Context


@dataclass(frozen=True, slots=True)
class _Delete:
    context: Context
    done: threading.Event


@dataclass(frozen=True, slots=True)
class _Stored:
    tags: Mapping[str, object]
    instance_id: str
    origin: str
    remote_aet: str | None
    context: Context | None
    time: datetime


@dataclass(frozen=True, slots=True)
class _Change:
    change: str
    level: Level | None
    resource: str


@dataclass(slots=True)
class _PendingDelete:
    context: Context
    level: Level
    subject: Subject
    deadline: float


@dataclass(slots=True)
class _PendingExport:
    context: Context
    deadline: float


_Item = _Access | _Delete | _Stored | _Change | None


@dataclass(slots=True)
class Counters:
    events: int = 0
    unaudited: int = 0
    refused: int = 0
    queue_full: int = 0
    unresolved: int = 0
    errors: int = 0

    def snapshot(self) -> dict[str, int]:
        return {
            "events": self.events,
            "unaudited": self.unaudited,
            "refused": self.refused,
            "queue_full": self.queue_full,
            "unresolved": self.unresolved,
            "errors": self.errors,
        }


def _without_credentials(url: object) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


def basic_user(authorization: str | None) -> str | None:
    """The login of an HTTP Basic ``Authorization`` header (Orthanc checked the password)."""
    if not authorization or authorization[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, sep, _ = decoded.partition(":")
    return user if sep and user else None


class Auditor:
    def __init__(
        self,
        config: PluginConfig,
        sink: Sink,
        host: Host,
        *,
        dicomweb: bool = False,
    ) -> None:
        self.config = config
        self._sink = sink
        self._host = host
        self.dicomweb = dicomweb
        self.resolver = Resolver(
            host.rest_get,
            max_entries=config.cache_size,
            ttl_seconds=config.cache_seconds,
            default_issuer=config.default_issuer,
        )
        # The hand-off queue. Orthanc threads append without waking the worker (it polls
        # every BATCH_SECONDS while busy), so a request never pays for a thread wake-up;
        # only a DELETE, or the first item after the worker went idle, notifies it.
        self._lock = threading.Lock()
        self._has_items = threading.Condition(self._lock)
        self._has_room = threading.Condition(self._lock)
        self._items: collections.deque[_Item] = collections.deque()
        self._room_waiters = 0
        self._worker_idle = True
        self._facility = Facility(id=config.facility_id, name=config.facility_name)
        self._users: dict[str, str | None] = {}
        self._imports: dict[int, Context] = {}
        self._exports: collections.deque[_PendingExport] = collections.deque(maxlen=1000)
        self._exports_lock = threading.Lock()
        self._jobs: dict[str, Context | None] = {}
        self._deletes: dict[str, _PendingDelete] = {}
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self.counters = Counters()
        self._last_log: dict[str, float] = {}

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
        with self._lock:
            self._items.append(None)  # past the bound: the worker stops after the rest
            self._has_items.notify()
        thread.join(timeout)
        if thread.is_alive():
            logger.error("PHI audit worker did not finish within %ss", timeout)
        self._thread = None

    def drain(self, timeout: float) -> bool:
        """Wait until the worker has processed everything queued so far (tests, shutdown)."""
        done = threading.Event()
        barrier = _Delete(
            context=Context(
                user="", address=None, at=datetime.now(UTC),
                route=Route(kind=Kind.DELETE, template=""), purpose=None,
            ),
            done=done,
        )  # fmt: skip
        if not self._put(barrier, urgent=True, timeout=timeout):
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
        if self._imports:
            self._imports.pop(thread, None)  # a new request on this thread
        route = classify(method, uri, get, dicomweb=self.dicomweb)
        if route is None:
            return True
        context = self._context(route, ip, headers)
        if route.kind is Kind.IMPORT:
            self._imports[thread] = context
            return True
        if route.kind is Kind.EXPORT:
            with self._exports_lock:
                self._exports.append(
                    _PendingExport(context, time.monotonic() + EXPORT_MATCH_SECONDS)
                )
            return True
        if route.kind is Kind.DELETE:
            done = threading.Event()
            if not self._put(_Delete(context, done), urgent=True):
                return not self.config.fail_closed
            if not done.wait(self.config.delete_wait_seconds):
                self._warn("slow", "PHI audit worker did not resolve a DELETE in time")
                return not self.config.fail_closed
            return True
        return self._put(_Access(context)) or not self.config.fail_closed

    def on_stored_instance(
        self,
        tags: Mapping[str, object],
        instance_id: str,
        origin: str,
        remote_aet: str | None,
    ) -> None:
        context = None
        if origin in ("REST_API", "WEB_DAV"):
            context = self._imports.get(threading.get_ident())
            if context is not None and time.monotonic() - context.started > IMPORT_CONTEXT_SECONDS:
                context = None
        self._put(_Stored(tags, instance_id, origin, remote_aet, context, datetime.now(UTC)))

    def on_change(self, change: str, level: Level | None, resource: str) -> None:
        if change in ("DELETED", "JOB_SUBMITTED", "JOB_SUCCESS", "JOB_FAILURE"):
            if change == "JOB_SUBMITTED" and not self._exports:
                return  # no export request is waiting for a job
            self._put(_Change(change, level, resource))

    # ------------------------------------------------------------------ request side

    def _context(self, route: Route, ip: str | None, headers: Mapping[str, str]) -> Context:
        authorization = headers.get("authorization")
        user = self._users.get(authorization) if authorization else None
        if user is None and authorization:
            user = basic_user(authorization)
            if len(self._users) > 1000:
                self._users.clear()
            self._users[authorization] = user
        address = ip
        config = self.config
        if config.user_header and ip in config.trusted_proxies:
            forwarded = headers.get(config.user_header.lower())
            if forwarded:
                user = forwarded.strip()
            hops = headers.get("x-forwarded-for")
            if hops:
                address = hops.split(",")[0].strip() or ip
        purpose = headers.get("x-purpose-of-use")
        if purpose not in PURPOSES_OF_USE:
            purpose = config.purpose_of_use
        return Context(
            user=user or "anonymous",
            address=address,
            at=datetime.now(UTC),
            route=route,
            purpose=purpose,
            authenticated=user is not None,
        )

    def _put(self, item: _Item, *, urgent: bool = False, timeout: float | None = None) -> bool:
        """Queue an item, waiting at most ``block_seconds`` for room; False if full."""
        with self._lock:
            if len(self._items) >= self.config.max_pending:
                limit = self.config.block_seconds if timeout is None else timeout
                deadline = time.monotonic() + limit
                self._room_waiters += 1
                try:
                    while len(self._items) >= self.config.max_pending:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._has_room.wait(left)
                finally:
                    self._room_waiters -= 1
            if len(self._items) < self.config.max_pending:
                self._items.append(item)
                if urgent or self._worker_idle:
                    self._worker_idle = False
                    self._has_items.notify()
                return True
            self.counters.queue_full += 1
            self.counters.unaudited += 1
        self._warn("full", "PHI audit queue is full; a request was not audited")
        return False

    def _warn(self, key: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, 0.0) >= _LOG_EVERY:
            self._last_log[key] = now
            logger.error("%s (counters: %s)", message, self.counters.snapshot())

    # ------------------------------------------------------------------ the worker

    def _work(self) -> None:
        last_item = last_tick = time.monotonic()
        while True:
            with self._lock:
                if not self._items:
                    idle = time.monotonic() - last_item > IDLE_SECONDS
                    self._worker_idle = idle
                    self._has_items.wait(TICK_SECONDS if idle else BATCH_SECONDS)
                    self._worker_idle = False
                batch = list(self._items)
                self._items.clear()
                if self._room_waiters:
                    self._has_room.notify_all()
            now = time.monotonic()
            if batch:
                last_item = now
                with self._sink.batch():
                    for item in batch:
                        if item is None:
                            self._expire(force=True)
                            return
                        self._process(item)
            if now - last_tick >= TICK_SECONDS:
                last_tick = now
                self._process(_Change("TICK", None, ""))

    def _process(self, item: _Access | _Delete | _Stored | _Change) -> None:
        try:
            self._handle(item)
        except Exception as exc:
            self.counters.errors += 1
            self.counters.unaudited += 1
            logger.error("PHI audit worker error (%s); an event was not recorded",
                         type(exc).__name__)  # fmt: skip
        finally:
            if isinstance(item, _Delete):
                item.done.set()

    def _handle(self, item: _Access | _Delete | _Stored | _Change) -> None:
        if isinstance(item, _Access):
            self._access(item.context)
        elif isinstance(item, _Delete):
            if item.context.route.resource is not None:
                self._delete_requested(item.context)
        elif isinstance(item, _Stored):
            self._stored(item)
        else:
            if item.change == "DELETED":
                self._deleted(item.resource)
            elif item.change == "JOB_SUBMITTED":
                self._job_submitted(item.resource)
            elif item.change in ("JOB_SUCCESS", "JOB_FAILURE"):
                self._job_ended(item.resource, success=item.change == "JOB_SUCCESS")
            self._expire(force=False)

    def _subject(self, route: Route) -> Subject | None:
        try:
            if route.level is not None and route.resource is not None:
                return self.resolver.resolve(route.level, route.resource)
            if route.study_uid is not None:
                study = self._host.lookup_study(route.study_uid)
                if study is None:
                    return None
                return self.resolver.resolve(Level.STUDY, study)
        except LookupError:
            return None
        return None

    def _access(self, context: Context) -> None:
        route = context.route
        if route.kind is Kind.QUERY:
            self._query(context)
            return
        subject = self._subject(route)
        if subject is None:
            # Orthanc answers 404: no PHI was disclosed.
            self.counters.unresolved += 1
            return
        self._emit(
            self._event(context, subject, "110103", EventAction.READ, level=route.level,
                        resource=route.resource)
        )  # fmt: skip

    def _query(self, context: Context) -> None:
        route = context.route
        params = route.parameters
        subject: Subject | None = None
        if route.study_uid is not None:
            subject = self._subject(route)
        else:
            patient = params.get("PatientID") or params.get("00100020")
            if patient:
                issuer = params.get("IssuerOfPatientID") or params.get("00100021")
                if issuer is None:  # the issuer Orthanc has for this PatientID, if any
                    try:
                        known = self.resolver.resolve(Level.PATIENT, orthanc_id(patient))
                        issuer = known.issuer if known.patient_id == patient else None
                    except LookupError:
                        issuer = None
                subject = Subject(
                    patient_id=patient,
                    issuer=issuer or self.config.default_issuer,
                    orthanc_patient="",
                )
        if subject is None:
            self.counters.unresolved += 1
            return
        details = {f"query.{k}": v for k, v in list(params.items())[:16]}
        self._emit(
            self._event(context, subject, "110112", EventAction.EXECUTE, extra=details,
                        with_study=route.study_uid is not None)
        )  # fmt: skip

    def _delete_requested(self, context: Context) -> None:
        route = context.route
        if route.level is None or route.resource is None:
            return
        subject = self._subject(route)
        if subject is None:
            self.counters.unresolved += 1
            return
        self._deletes[route.resource] = _PendingDelete(
            context, route.level, subject, time.monotonic() + DELETE_CONFIRM_SECONDS
        )

    def _deleted(self, resource: str) -> None:
        pending = self._deletes.pop(resource, None)
        for level in Level:
            self.resolver.forget(level, resource)
        if pending is not None:
            self._emit(self._deletion(pending, EventOutcome.SUCCESS))

    def _deletion(self, pending: _PendingDelete, outcome: EventOutcome) -> PhiAccessEvent:
        whole = pending.level in (Level.PATIENT, Level.STUDY)
        extra = {} if outcome is EventOutcome.SUCCESS else {
            "orthanc.note": "deletion requested; Orthanc did not report it as done"
        }  # fmt: skip
        return self._event(
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

    def _expire(self, *, force: bool) -> None:
        now = time.monotonic()
        for resource, pending in list(self._deletes.items()):
            # Unconfirmed after a minute, or still unconfirmed at shutdown: recorded as a
            # deletion Orthanc did not report (never dropped).
            if force or pending.deadline < now:
                del self._deletes[resource]
                self._emit(self._deletion(pending, EventOutcome.SERIOUS_FAILURE))
        with self._exports_lock:
            while self._exports and self._exports[0].deadline < now:
                self._exports.popleft()
        if len(self._jobs) > 1000:
            self._jobs.clear()

    def _stored(self, item: _Stored) -> None:
        subject = self.resolver.remember(item.tags, item.instance_id)
        context = item.context
        details = {"orthanc.origin": item.origin.lower()}
        sop_class = item.tags.get("SOPClassUID")
        if context is not None:
            actor_context = context
        else:
            aet = item.remote_aet if item.origin == "DICOM_PROTOCOL" else None
            actor_context = Context(
                user=aet or SYSTEM_USER,
                address=None,
                at=item.time,
                route=Route(kind=Kind.IMPORT, template="C-STORE" if aet else item.origin),
                purpose=self.config.purpose_of_use,
            )
            if aet:
                details["orthanc.remote_aet"] = aet
        self._emit(
            self._event(
                actor_context,
                subject,
                "110107",
                EventAction.CREATE,
                level=Level.INSTANCE,
                resource=item.instance_id,
                extra=details,
                sop_classes=(sop_class,) if isinstance(sop_class, str) and sop_class else (),
                instances=1,
                role=None if context is not None else (
                    DICOM_AE_ROLE if "orthanc.remote_aet" in details else SYSTEM_ROLE
                ),
            )
        )  # fmt: skip

    def _job_submitted(self, job_id: str) -> None:
        job = self._job(job_id)
        kind = job.get("Type")
        content = job.get("Content")
        if kind not in EXPORT_EVENTS or not isinstance(content, dict):
            return
        if content.get("Description", "REST API") != "REST API":
            return  # submitted by Lua or a plugin, not by a REST request we saw
        with self._exports_lock:
            for i, pending in enumerate(self._exports):
                if pending.context.route.job_type == kind:
                    del self._exports[i]
                    self._jobs[job_id] = pending.context
                    return

    def _job(self, job_id: str) -> dict[str, object]:
        try:
            value = json.loads(self._host.rest_get(f"/jobs/{job_id}"))
        except Exception:
            return {}
        return value if isinstance(value, dict) else {}

    def _job_ended(self, job_id: str, *, success: bool) -> None:
        if job_id not in self._jobs:
            return
        context = self._jobs.pop(job_id)
        if context is None:
            return
        job = self._job(job_id)
        kind = job.get("Type")
        content = job.get("Content")
        if kind not in EXPORT_EVENTS or not isinstance(content, dict):
            return
        failed = content.get("FailedInstancesCount")
        outcome = EventOutcome.SUCCESS
        if not success:
            outcome = EventOutcome.SERIOUS_FAILURE
        elif isinstance(failed, int) and failed > 0:
            outcome = EventOutcome.MINOR_FAILURE
        recipient = None
        target = context.route.target
        if target is not None:
            where = content.get("RemoteAet") or content.get("Peer")
            if isinstance(where, list):  # a peer: [url, user, password]; the URL only
                where = _without_credentials(where[0]) if where else None
            recipient = Recipient(
                name=target.partition("/")[2],
                address=where if isinstance(where, str) and where else None,
            )
        studies: dict[str, Subject] = {}
        resources = content.get("ParentResources")
        for resource in resources if isinstance(resources, list) else []:
            subject = self._any_level(str(resource))
            if subject is None:
                self.counters.unresolved += 1
                continue
            studies.setdefault(subject.orthanc_study or subject.orthanc_patient, subject)
        for subject in studies.values():
            self._emit(
                self._event(
                    context,
                    subject,
                    EXPORT_EVENTS[str(kind)],
                    EventAction.READ,
                    outcome=outcome,
                    recipient=recipient,
                    extra={"orthanc.job": str(kind)},
                    with_study=subject.study_uid is not None,
                )
            )

    def _any_level(self, resource: str) -> Subject | None:
        for level in (Level.STUDY, Level.SERIES, Level.INSTANCE, Level.PATIENT):
            hit = self.resolver.cached(level, resource)
            if hit is not None:
                return hit
        for level in (Level.STUDY, Level.SERIES, Level.INSTANCE, Level.PATIENT):
            try:
                return self.resolver.resolve(level, resource)
            except LookupError:
                continue
        return None

    # ------------------------------------------------------------------ events

    def _event(
        self,
        context: Context,
        subject: Subject,
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
    ) -> PhiAccessEvent:
        info = self.config.user(context.user)
        if not context.authenticated:
            info = UserInfo(role="unauthenticated")
        study = None
        if with_study and subject.study_uid is not None:
            study = Study(
                uid=subject.study_uid,
                accession=subject.accession[:64] if subject.accession else None,
                modality=subject.modality[:16] if subject.modality else None,
                sop_classes=sop_classes,
                instances=instances,
            )
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
            patient=Patient(id=subject.patient_id, issuer=subject.issuer),
            study=study,
            network_address=context.address,
            purpose_of_use=context.purpose,
            recipient=recipient,
            details=MappingProxyType(details),
            event_time=context.at,
        )

    def _emit(self, event: PhiAccessEvent) -> None:
        delay = 0.01
        while True:
            try:
                self._sink.emit(event)
                self.counters.events += 1
                return
            except EmitterPushbackError:
                if self._stopping.is_set():
                    break
                time.sleep(delay)  # the queue in front of us fills: back-pressure
                delay = min(1.0, delay * 2)
            except EventValidationError as exc:
                self.counters.refused += 1
                self.counters.unaudited += 1
                logger.error("PHI audit event refused: invalid field %s", exc.field)
                return
            except ProducerError as exc:
                self.counters.unaudited += 1
                logger.error("PHI audit event not recorded: %s", type(exc).__name__)
                return
        self.counters.unaudited += 1
        logger.error("PHI audit event not recorded: the emitter is stopping")
