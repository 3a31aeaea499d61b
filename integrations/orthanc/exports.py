"""Transfers: 110104 DICOM Instances Transferred (action R), one event per study.

Invariant: an export request (POST /modalities/{m}/store, /peers/{p}/store) is remembered
for ``EXPORT_MATCH_SECONDS``; the job it started, matched in submission order by type,
names the resources; when the job ends each study gets one event with the job's outcome
and the destination (its name; AE title or URL without credentials) as recipient. Jobs
submitted by Lua or plugins are not matched.
"""

from __future__ import annotations

import collections
import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from integrations.orthanc.build import EventBuilder
from integrations.orthanc.callers import Context
from integrations.orthanc.delivery import Counters, Delivery
from integrations.orthanc.resolve import Subject
from integrations.orthanc.subjects import Host, Subjects
from producers import EventAction, EventOutcome, Recipient

#: How long a remembered export request waits for its job.
EXPORT_MATCH_SECONDS: Final = 300.0
#: Orthanc's job types that send instances elsewhere, and the event each one gives.
EXPORT_EVENTS: Final[Mapping[str, str]] = MappingProxyType(
    {"DicomModalityStore": "110104", "OrthancPeerStore": "110104"}
)


@dataclass(slots=True)
class _PendingExport:
    context: Context
    deadline: float


def _without_credentials(url: object) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit(parts._replace(netloc=netloc))


class Exports:
    def __init__(
        self,
        host: Host,
        subjects: Subjects,
        build: EventBuilder,
        delivery: Delivery,
        counters: Counters,
    ) -> None:
        self._host = host
        self._subjects = subjects
        self._build = build
        self._delivery = delivery
        self._counters = counters
        # Appended by Orthanc's request threads, matched by the worker.
        self._pending: collections.deque[_PendingExport] = collections.deque(maxlen=1000)
        self._lock = threading.Lock()
        self._jobs: dict[str, Context | None] = {}

    def requested(self, context: Context) -> None:
        with self._lock:
            self._pending.append(_PendingExport(context, time.monotonic() + EXPORT_MATCH_SECONDS))

    def waiting(self) -> bool:
        """Whether an export request waits for its job (else a submitted job is not ours)."""
        return bool(self._pending)

    def submitted(self, job_id: str) -> None:
        job = self._job(job_id)
        kind = job.get("Type")
        content = job.get("Content")
        if kind not in EXPORT_EVENTS or not isinstance(content, dict):
            return
        if content.get("Description", "REST API") != "REST API":
            return  # submitted by Lua or a plugin, not by a REST request we saw
        with self._lock:
            for i, pending in enumerate(self._pending):
                if pending.context.route.job_type == kind:
                    del self._pending[i]
                    self._jobs[job_id] = pending.context
                    return

    def ended(self, job_id: str, *, success: bool) -> None:
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
        recipient = _recipient(context, content)
        for subject in self._studies(content).values():
            self._delivery.emit(
                self._build.event(
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

    def expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            while self._pending and self._pending[0].deadline < now:
                self._pending.popleft()
        if len(self._jobs) > 1000:
            self._jobs.clear()

    def _studies(self, content: Mapping[str, object]) -> dict[str, Subject]:
        """The job's resources, one subject per study (or patient)."""
        studies: dict[str, Subject] = {}
        resources = content.get("ParentResources")
        for resource in resources if isinstance(resources, list) else []:
            subject = self._subjects.any_level(str(resource))
            if subject is None:
                self._counters.unresolved += 1
                continue
            studies.setdefault(subject.orthanc_study or subject.orthanc_patient, subject)
        return studies

    def _job(self, job_id: str) -> dict[str, object]:
        try:
            value = json.loads(self._host.rest_get(f"/jobs/{job_id}"))
        except Exception:
            return {}
        return value if isinstance(value, dict) else {}


def _recipient(context: Context, content: Mapping[str, object]) -> Recipient | None:
    """The destination: the modality's or peer's name, its AE title or URL."""
    target = context.route.target
    if target is None:
        return None
    where = content.get("RemoteAet") or content.get("Peer")
    if isinstance(where, list):  # a peer: [url, user, password]; the URL only
        where = _without_credentials(where[0]) if where else None
    return Recipient(
        name=target.partition("/")[2],
        address=where if isinstance(where, str) and where else None,
    )
