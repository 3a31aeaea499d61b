"""Archive and media downloads the wrapper answers: built as Orthanc jobs, then buffered.

Invariant: orthanc-python 4.0 holds the interpreter's lock (GIL) for the whole of a call
into Orthanc's REST API, so a synchronous archive forwarded as is would stop every other
Python callback (every audited request's filter, every stored instance) until the ZIP is
built. So a synchronous download is asked of Orthanc as the same request with
``"Synchronous": false`` (the job Orthanc's own synchronous answer runs too), the job is
polled with sleeps that release the lock, and the ZIP is read from ``/jobs/{id}/archive``
into memory (buffered: the cost is measured in docs/orthanc.md). A download whose
resources take more than ``ArchiveMaxBytes`` on Orthanc's disk is refused with 413 before
anything is built, and recorded as a failed read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Final

from integrations.orthanc.answers import Answer, as_orthanc_error, error_answer
from integrations.orthanc.resultsets import Resource
from integrations.orthanc.routes import Level, Route

_COLLECTIONS: Final = (
    ("patients", Level.PATIENT),
    ("studies", Level.STUDY),
    ("series", Level.SERIES),
)
#: Polling of the archive job: first wait, then each wait doubles up to the last.
POLL_SECONDS: Final = (0.005, 0.2)


def asynchronous(value: object) -> bool:
    """Whether the client asked for a job itself (its answer is the job's id)."""
    if not isinstance(value, dict):
        return False
    return value.get("Asynchronous") is True or value.get("Synchronous") is False


def resources_of(route: Route, value: object) -> list[Resource]:
    """The resources a download holds: the one in its path, or the body's list."""
    if route.resource is not None:
        return [(route.level, route.resource)]
    listed = value.get("Resources") if isinstance(value, dict) else value
    return [(None, r) for r in listed if isinstance(r, str)] if isinstance(listed, list) else []


class Archives:
    def __init__(
        self,
        *,
        get: Callable[[str], bytes],
        post: Callable[[str, bytes], bytes],
        max_bytes: int,
        describe_errors: bool,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._get = get
        self._post = post
        self._max = max_bytes
        self._describe = describe_errors
        self._sleep = sleep

    def size(self, resources: list[Resource]) -> int | None:
        """Orthanc's disk size of ``resources`` when above ``ArchiveMaxBytes``, else None."""
        if self._max <= 0:
            return None
        size = sum(self._disk_size(level, resource) for level, resource in resources)
        return size if size > self._max else None

    def too_large(self, method: str, uri: str, size: int) -> Answer:
        details = (
            f"PhiLedger: the archive ({size} bytes) is larger than ArchiveMaxBytes "
            f'({self._max}); create it as a job ("Synchronous": false) and download it '
            "from /jobs/{id}/archive"
        )
        body = {"Details": details, "HttpError": "Request Entity Too Large",
                "HttpStatus": 413, "Method": method, "Uri": uri}  # fmt: skip
        return Answer(status=413, body=json.dumps(body, indent=2).encode(), error=-413)

    def build(
        self, method: str, uri: str, get: Mapping[str, str], value: object, route: Route
    ) -> Answer | None:
        """Orthanc's synchronous answer, built by a job; None when the request cannot be
        turned into a job (GET arguments, a body that is neither a list nor an object):
        then it is forwarded as is."""
        if method == "GET":
            if get:
                return None
            payload: dict[str, object] = {}
        elif isinstance(value, list):
            payload = {"Resources": value}
        elif isinstance(value, dict):
            payload = dict(value)
        else:
            return None
        payload["Synchronous"] = False
        try:
            job = json.loads(self._post(uri, json.dumps(payload).encode()))
            job_id = str(job["ID"])
            failed = self._wait(job_id)
            if failed is not None:
                code, description = failed
                return error_answer(method, uri, code, description, describe=self._describe)
            data = bytes(self._get(f"/jobs/{job_id}/archive"))
        except Exception as exc:
            error = as_orthanc_error(exc)
            if error is None:
                raise
            return error_answer(method, uri, error.code, error.description,
                                describe=self._describe)  # fmt: skip
        filename = f"{route.resource}.zip" if route.resource else "Archive.zip"
        return Answer(
            status=200, body=data, content_type="application/zip",
            headers={"Content-Disposition": f'filename="{filename}"'},
        )  # fmt: skip

    def _wait(self, job_id: str) -> tuple[int, str] | None:
        """Until the job ends (the sleeps release the GIL); its error if it failed."""
        pause, longest = POLL_SECONDS
        while True:
            info = json.loads(self._get(f"/jobs/{job_id}"))
            state = info.get("State") if isinstance(info, dict) else None
            if state == "Success":
                return None
            if state == "Failure":
                code = info.get("ErrorCode")
                description = info.get("ErrorDescription")
                return (
                    code if isinstance(code, int) else -1,
                    description if isinstance(description, str) else "Internal error",
                )
            self._sleep(pause)
            pause = min(pause * 2, longest)

    def _disk_size(self, level: Level | None, resource: str) -> int:
        """Orthanc's disk size of a resource (0 if unknown: Orthanc will answer 404)."""
        for collection, at in _COLLECTIONS:
            if level is not None and at is not level:
                continue
            try:
                stats = json.loads(self._get(f"/{collection}/{resource}/statistics"))
                return int(stats.get("DiskSize", 0)) if isinstance(stats, dict) else 0
            except Exception:  # noqa: S112 - not at this level: try the next one
                continue
        return 0
