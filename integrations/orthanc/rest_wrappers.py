"""The REST routes the plugin answers itself, forwarding to Orthanc's own handler.

Invariant: ``callback`` never raises into Orthanc and answers what Orthanc answers: it
forwards the request (method, URI, GET arguments, body) to Orthanc's built-in handler
in-process (``answers``), sends back its bytes with the content type and
``Content-Disposition`` Orthanc sets, or its error status and body, and only then hands
the record to the audit worker (``disclosures``), with the request's body and answer in
hand. A record that cannot be queued is counted as unaudited and the answer is sent,
unless ``FailClosed``: then a successful answer is replaced by 403 (a C-MOVE has already
happened and is answered as it went). A synchronous archive larger than
``ArchiveMaxBytes`` is refused with 413 before Orthanc builds it (recorded as a failed
read). Which routes and why: docs/orthanc.md, "Wrapped routes".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from integrations.orthanc.answers import (
    DESCRIPTIONS,
    JSON_TYPE,
    PRECHECKS,
    Answer,
    as_orthanc_error,
    error_answer,
    listing_precheck,
    parse_json,
)
from integrations.orthanc.archives import Archives, asynchronous, resources_of
from integrations.orthanc.callers import Context
from integrations.orthanc.delivery import Counters
from integrations.orthanc.disclosures import Disclosures, listing_criteria, with_arguments
from integrations.orthanc.resultsets import Resource, returned
from integrations.orthanc.routes import Level, Route, wrapped_route
from producers import EventOutcome, Recipient

logger = logging.getLogger(__name__)

#: REST C-MOVE, wrapped only with ``WrapRestMove`` (a move into this Orthanc would wait
#: for the GIL the forwarded call holds: docs/orthanc.md, "Wrapped routes").
MOVE: Final = "/modalities/([^/]+)/move"
#: The regular expressions the wrappers are registered on (``routes.wrapped_route``
#: says which methods Orthanc serves there; any other is answered 405, see ``_allow``).
REGISTERED: Final = (
    "/tools/find",
    "/tools/lookup",
    "/tools/create-archive",
    "/tools/create-media",
    "/tools/create-media-extended",
    "/(patients|studies|series)/([^/]+)/(archive|media)",
    MOVE,
    "/patients",
    "/studies",
    "/series",
)
_METHODS: Final[Mapping[int, str]] = {1: "GET", 2: "POST", 3: "PUT", 4: "DELETE"}
_ARCHIVES: Final = ("archive", "media", "create-archive", "create-media", "create-media-extended")


class Recorder(Protocol):
    """What the wrappers need from the auditor."""

    disclosures: Disclosures
    counters: Counters

    def wrapped_context(self, route: Route, headers: Mapping[str, str]) -> Context: ...

    def submit(self, task: Callable[[], None]) -> bool: ...


class RestWrappers:
    def __init__(
        self,
        recorder: Recorder,
        *,
        get: Callable[[str], bytes],
        post: Callable[[str, bytes], bytes],
        fail_closed: bool,
        archive_max_bytes: int,
        describe_errors: bool = True,
        own_aet: str = "ORTHANC",
    ) -> None:
        self._recorder = recorder
        self._get = get
        self._post = post
        self._fail_closed = fail_closed
        self._describe = describe_errors
        self._archives = Archives(get=get, post=post, max_bytes=archive_max_bytes,
                                  describe_errors=describe_errors)  # fmt: skip
        self._own_aet = own_aet

    # ------------------------------------------------------------------ the callback

    def callback(self, output: Any, uri: str, **request: Any) -> None:
        """Orthanc's REST callback for every registered route; never raises."""
        try:
            method = request.get("method")
            method = _METHODS.get(method, "OTHER") if isinstance(method, int) else str(method)
            parts = uri.strip("/").split("/")
            route = wrapped_route(method, parts)
            if route is None:
                allow = _allow(parts)
                output.SendMethodNotAllowed(allow)
                return
            answer = self.serve(route, method, uri, request)
        except BaseException as exc:
            logger.error("REST wrapper error (%s)", type(exc).__name__)
            answer = error_answer(str(request.get("method")), uri, 1,
                                  "Error encountered within the plugin engine")  # fmt: skip
        try:
            _send(output, answer)
        except BaseException as exc:  # the client went away, or a second answer
            logger.error("REST wrapper could not answer (%s)", type(exc).__name__)

    def serve(self, route: Route, method: str, uri: str, request: Mapping[str, Any]) -> Answer:
        """Orthanc's answer, recorded (or replaced by 403 under FailClosed)."""
        get: Mapping[str, str] = request.get("get") or {}
        body = bytes(request.get("body") or b"") if method == "POST" else b""
        context = self._recorder.wrapped_context(route, request.get("headers") or {})
        name = uri.strip("/").split("/")[-1]
        value = parse_json(body) if method == "POST" else None
        for check in PRECHECKS.get(name, ()) if method == "POST" else ():
            if check.fails(value):
                return error_answer(method, uri, check.code, _description(check.code),
                                    check.details, describe=self._describe)  # fmt: skip
        missing = listing_precheck(name, get) if method == "GET" and not route.resource else None
        if missing is not None:  # a listing (the only GET without a resource)
            code, details = missing
            return error_answer(method, uri, code, _description(code), details,
                                describe=self._describe)  # fmt: skip
        if name == "move" and not self._known_modality(context.route):
            modality = (context.route.target or "").partition("/")[2]
            return error_answer(method, uri, 7, _description(7),
                                f"No modality with symbolic name: {modality}",
                                describe=self._describe)  # fmt: skip
        answer = None
        if name in _ARCHIVES and not asynchronous(value):
            resources = resources_of(route, value)
            size = self._archives.size(resources)
            if size is not None:
                self._refused(context, resources, size)
                return self._archives.too_large(method, uri, size)
            answer = self._archives.build(method, uri, get, value, route)
        if answer is None:
            answer = self._forward(method, uri, get, body, name, route)
        try:
            task = self._record(context, name, body if name == "lookup" else value, get, answer)
            if task is None or self._recorder.submit(task):
                return answer
        except Exception as exc:  # a bug in recording: Orthanc's answer is still sent
            self._recorder.counters.errors += 1
            self._recorder.counters.unaudited += 1
            logger.error("REST wrapper could not record (%s); an access was not audited",
                         type(exc).__name__)  # fmt: skip
        if not self._fail_closed or name == "move":
            return answer
        return Answer(status=403, error=31)

    # ------------------------------------------------------------------ forwarding

    def _forward(
        self, method: str, uri: str, get: Mapping[str, str], body: bytes, name: str, route: Route
    ) -> Answer:
        try:
            if method == "POST":
                data = bytes(self._post(uri, body))
            else:
                data = bytes(self._get(with_arguments(uri, get)))
        except Exception as exc:
            error = as_orthanc_error(exc)
            if error is None:
                raise
            # Orthanc 1.10 answers a C-MOVE that failed on the DICOM side with 422.
            status = 422 if name == "move" and error.code == 9 else None
            return error_answer(method, uri, error.code, error.description,
                                describe=self._describe, status=status)  # fmt: skip
        if name in _ARCHIVES and data[:2] == b"PK":
            filename = f"{route.resource}.zip" if route.resource else "Archive.zip"
            return Answer(
                status=200, body=data, content_type="application/zip",
                headers={"Content-Disposition": f'filename="{filename}"'},
            )  # fmt: skip
        # Orthanc's C-MOVE answer names no charset; its other JSON answers do.
        kind = "application/json" if name == "move" else JSON_TYPE
        return Answer(status=200, body=data, content_type=kind)

    def _refused(self, context: Context, resources: list[Resource], size: int) -> None:
        """A download refused as too large: a failed read of what it would have held."""
        disclosures = self._recorder.disclosures
        extra = {"orthanc.refused": "ArchiveMaxBytes", "orthanc.size": str(size)}
        self._recorder.submit(lambda: disclosures.read(
            context, resources, outcome=EventOutcome.SERIOUS_FAILURE, extra=extra))  # fmt: skip

    def _known_modality(self, route: Route) -> bool:
        """Whether Orthanc knows the modality a REST C-MOVE names (its first check)."""
        try:
            known = json.loads(self._get("/modalities"))
        except Exception:
            return True  # let Orthanc's own handler answer
        return not isinstance(known, list) or (route.target or "").partition("/")[2] in known

    # ------------------------------------------------------------------ recording

    def _record(
        self,
        context: Context,
        name: str,
        value: object,
        get: Mapping[str, str],
        answer: Answer,
    ) -> Callable[[], None] | None:
        """The worker's task for this request, or None when nothing is recorded."""
        route, disclosures = context.route, self._recorder.disclosures
        if name == "move":
            return self._move(context, value, answer)
        if not answer.ok:
            return None  # Orthanc refused it: nothing was disclosed
        data = answer.body
        if name in _ARCHIVES:
            resources = resources_of(route, value)
            extra = {} if data[:2] == b"PK" else {"orthanc.asynchronous": "true"}
            return lambda: disclosures.read(context, resources, extra=extra)
        if name == "lookup":
            criteria = {"query.lookup": _text(value)}
            return lambda: disclosures.query(context, returned(json.loads(data), None), criteria)
        if name == "find":
            level, criteria = _find_criteria(value)
            return lambda: disclosures.query(context, returned(json.loads(data), level), criteria)
        criteria = listing_criteria(get)  # GET /patients, /studies, /series
        return lambda: disclosures.query(context, returned(json.loads(data), route.level),
                                         criteria)  # fmt: skip

    def _move(self, context: Context, value: object, answer: Answer) -> Callable[[], None]:
        body = value if isinstance(value, dict) else {}
        resources = body.get("Resources")
        identifiers = [r for r in resources if isinstance(r, dict)] if isinstance(
            resources, list) else []  # fmt: skip
        target = body.get("TargetAet")
        recipient = Recipient(name=target if isinstance(target, str) and target
                              else self._own_aet)  # fmt: skip
        modality = (context.route.target or "").partition("/")[2]
        extra = {"orthanc.modality": modality, "query.Level": _text(body.get("Level"))}
        if not answer.ok:
            extra["orthanc.error"] = str(answer.error)
        outcome = EventOutcome.SUCCESS if answer.ok else EventOutcome.SERIOUS_FAILURE
        disclosures = self._recorder.disclosures
        return lambda: disclosures.transfer(context, identifiers, outcome=outcome,
                                            recipient=recipient, extra=extra)  # fmt: skip


def _send(output: Any, answer: Answer) -> None:
    if answer.ok:
        for key, value in answer.headers.items():
            output.SetHttpHeader(key, value)
        output.AnswerBuffer(answer.body, answer.content_type or JSON_TYPE)
    elif answer.body:
        # orthanc-python 4.0: (status, body as text, its length in bytes); no content type
        # is sent, as Orthanc sends none with its own error bodies.
        output.SendHttpStatus(answer.status, answer.body.decode("utf-8", "replace"),
                              len(answer.body))  # fmt: skip
    else:
        output.SendHttpStatusCode(answer.status)


def _allow(parts: list[str]) -> str:
    """Orthanc's ``Allow`` header for a registered route (a listing, a download, a tool)."""
    if len(parts) == 1:
        return "GET"
    return "GET,POST" if parts[-1] in ("archive", "media") else "POST"


def _description(code: int) -> str:
    return DESCRIPTIONS.get(code, "Internal error")


def _text(value: object, limit: int = 256) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        value = json.dumps(value, default=str)
    return value[:limit]


def _find_criteria(value: object) -> tuple[Level | None, dict[str, str]]:
    """``/tools/find``'s level and criteria (the query keys, at most 24, and options)."""
    body = value if isinstance(value, dict) else {}
    level_name = body.get("Level")
    level = None
    if isinstance(level_name, str):
        level = {"patient": Level.PATIENT, "study": Level.STUDY, "series": Level.SERIES,
                 "instance": Level.INSTANCE}.get(level_name.lower())  # fmt: skip
    criteria = {"query.Level": _text(level_name)}
    query = body.get("Query")
    for key, item in list(query.items() if isinstance(query, dict) else [])[:24]:
        criteria[f"query.{str(key)[:64]}"] = _text(item)
    for option in ("Expand", "Limit", "Since", "CaseSensitive"):
        if option in body:
            criteria[f"query.{option}"] = _text(body[option])
    return level, criteria


def install_wrappers(
    orthanc: Any,
    recorder: Recorder,
    *,
    fail_closed: bool,
    archive_max_bytes: int,
    wrap_move: bool = False,
) -> RestWrappers:
    """Register the wrappers with Orthanc (``orthanc`` is orthanc-python's module)."""
    configuration = json.loads(orthanc.GetConfiguration())
    wrappers = RestWrappers(
        recorder,
        get=lambda uri: bytes(orthanc.RestApiGet(uri)),
        post=lambda uri, body: bytes(orthanc.RestApiPost(uri, body)),
        fail_closed=fail_closed,
        archive_max_bytes=archive_max_bytes,
        describe_errors=configuration.get("HttpDescribeErrors", True) is not False,
        own_aet=str(configuration.get("DicomAet") or "ORTHANC"),
    )
    for regex in REGISTERED:
        if wrap_move or regex != MOVE:
            orthanc.RegisterRestCallback(regex, wrappers.callback)
    return wrappers
