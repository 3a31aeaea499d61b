"""Imports: 110107 Import (action C), one event per stored instance.

Invariant: the user and address are those of the POST /instances request served by the
same thread (for at most ``IMPORT_CONTEXT_SECONDS``); a C-STORE's actor is the calling AE
title, its address the caller's IP as Orthanc stored it in the instance's metadata
(``RemoteIP``; none if the instance is already gone); anything else (modify/anonymize
jobs, Lua, plugins) is recorded as the ``orthanc`` system actor with its origin.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Final

from integrations.orthanc.build import EventBuilder
from integrations.orthanc.callers import Context
from integrations.orthanc.delivery import Delivery
from integrations.orthanc.handoff import Stored
from integrations.orthanc.resolve import Resolver
from integrations.orthanc.routes import Kind, Level, Route
from producers import EventAction, Transport

#: How long an import context (a POST /instances) stays attached to its thread.
IMPORT_CONTEXT_SECONDS: Final = 600.0
SYSTEM_USER: Final = "orthanc"
SYSTEM_ROLE: Final = "application"
DICOM_AE_ROLE: Final = "dicom-application-entity"


class Imports:
    def __init__(
        self,
        resolver: Resolver,
        build: EventBuilder,
        delivery: Delivery,
        *,
        purpose_of_use: str | None,
        rest_get: Callable[[str], bytes] | None = None,
        dicom_transport: Transport | None = None,
    ) -> None:
        self._rest_get = rest_get
        #: The transport of a C-STORE Orthanc's DICOM server received (None: unknown).
        self._dicom_transport = dicom_transport
        self._resolver = resolver
        self._build = build
        self._delivery = delivery
        self._purpose_of_use = purpose_of_use
        #: The import request each Orthanc thread is serving, by thread id.
        self._contexts: dict[int, Context] = {}

    def requested(self, thread: int, context: Context) -> None:
        self._contexts[thread] = context

    def forget(self, thread: int) -> None:
        """A new request on this thread: the import it served, if any, is over."""
        if self._contexts:
            self._contexts.pop(thread, None)

    def context(self, thread: int, origin: str) -> Context | None:
        """The import request that stored an instance, if a REST or WebDAV one is fresh."""
        if origin not in ("REST_API", "WEB_DAV"):
            return None
        context = self._contexts.get(thread)
        if context is not None and time.monotonic() - context.started > IMPORT_CONTEXT_SECONDS:
            return None
        return context

    def stored(self, item: Stored) -> None:
        subject = self._resolver.remember(item.tags, item.instance_id)
        context = item.context
        details = {"orthanc.origin": item.origin.lower()}
        sop_class = item.tags.get("SOPClassUID")
        if context is not None:
            actor_context = context
        else:
            aet = item.remote_aet if item.origin == "DICOM_PROTOCOL" else None
            origin = self._origin(item.instance_id) if aet else {}
            actor_context = Context(
                user=aet or SYSTEM_USER,
                address=origin.get("RemoteIP") or None,
                at=item.time,
                route=Route(kind=Kind.IMPORT, template="C-STORE" if aet else item.origin),
                purpose=self._purpose_of_use,
                # A C-STORE came over DICOM; any other origin (Lua, a plugin) not at all.
                transport=self._dicom_transport if aet else None,
            )
            if aet:
                details["orthanc.remote_aet"] = aet
                if origin.get("CalledAET"):
                    details["orthanc.called_aet"] = origin["CalledAET"]
        self._delivery.emit(
            self._build.event(
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

    def _origin(self, instance_id: str) -> Mapping[str, str]:
        """Where a C-STORE came from: Orthanc's metadata of the stored instance
        (``RemoteIP``, ``RemoteAET``, ``CalledAET``); empty if it is gone already."""
        if self._rest_get is None:
            return {}
        try:
            value = json.loads(self._rest_get(f"/instances/{instance_id}/metadata?expand"))
        except Exception:
            return {}
        if not isinstance(value, dict):
            return {}
        return {k: v for k, v in value.items() if isinstance(v, str)}
