"""Which Orthanc REST requests touch PHI, and how each is audited.

Invariant: ``classify`` is a pure, cheap function of (method, path, GET arguments): it
runs inside Orthanc's HTTP filter for every request, so a request it does not audit
costs a few string checks. It returns ``None`` for everything that is not audited.
``Route.template`` never holds an identifier (``GET /instances/{id}/preview``), so it
is safe in logs and in an event's details.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final


class Level(StrEnum):
    PATIENT = "patient"
    STUDY = "study"
    SERIES = "series"
    INSTANCE = "instance"


class Kind(StrEnum):
    #: A read of a resource (its tags, file, preview, archive...): 110103 R.
    READ = "read"
    #: DELETE of a whole resource: 110105 D (patient, study) or 110103 D (series, instance).
    DELETE = "delete"
    #: POST /instances: the instances it stores are imports by this request's user.
    IMPORT = "import"
    #: A request that makes Orthanc send instances to another node (a job): 110104.
    EXPORT = "export"
    #: A DICOMweb QIDO-RS query: 110112 E.
    QUERY = "query"
    #: A route the plugin answers itself by forwarding to Orthanc (``rest_wrappers``):
    #: the filter only notes who asked; the wrapper records what the answer disclosed.
    WRAPPED = "wrapped"
    #: ``GET /instances``: a bulk listing, recorded by asking Orthanc the same again.
    LISTING = "listing"


LEVELS: Final[Mapping[str, Level]] = MappingProxyType(
    {
        "patients": Level.PATIENT,
        "studies": Level.STUDY,
        "series": Level.SERIES,
        "instances": Level.INSTANCE,
    }
)

#: Sub-resources whose POST reads PHI (modify, anonymize; archive and media downloads
#: are classified first as ``WRAPPED``).
_POST_READS: Final = frozenset({"archive", "media", "anonymize", "modify"})
#: Job types of export requests, by the request path that submits them. Only these
#: jobs name the resources they send (``ParentResources``); archives, media and REST
#: C-MOVE are answered by ``rest_wrappers``, which sees their bodies (docs/orthanc.md).
EXPORT_JOBS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "modalities:store": "DicomModalityStore",
        "peers:store": "OrthancPeerStore",
    }
)

_ORTHANC_ID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{8}){4}")
_UID = re.compile(r"[0-9.]{1,64}")
#: QIDO-RS parameters recorded with a query (never the results).
_QIDO_KEYS: Final = (
    "PatientID",
    "00100020",
    "IssuerOfPatientID",
    "00100021",
    "StudyInstanceUID",
    "0020000D",
    "AccessionNumber",
    "00080050",
    "ModalitiesInStudy",
    "StudyDate",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    kind: Kind
    template: str
    level: Level | None = None
    resource: str | None = None
    #: A Study Instance UID named in the path (DICOMweb).
    study_uid: str | None = None
    #: Export requests: the job type Orthanc submits, and the destination's name.
    job_type: str | None = None
    target: str | None = None
    #: Query parameters worth recording (QIDO-RS).
    parameters: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: A QIDO-RS search's whole query string, to ask the DICOMweb plugin the same again.
    arguments: str = ""


def _template(method: str, parts: list[str]) -> str:
    """``GET /instances/{id}/frames/...``: the collection, the first sub-resource, no ids."""
    shown = [parts[0], "{id}", *parts[2:3]]
    more = "/..." if len(parts) > 3 else ""
    return f"{method} /" + "/".join(shown) + more


def classify(
    method: str, path: str, get: Mapping[str, str], *, dicomweb: bool = True
) -> Route | None:
    """The audit route of one request, or None when it is not audited."""
    parts = path.strip("/").split("/")
    head = parts[0]
    wrapped = wrapped_route(method, parts)
    if wrapped is not None:
        return wrapped
    level = LEVELS.get(head)
    if level is not None:
        if len(parts) == 1:
            return (
                Route(kind=Kind.IMPORT, template="POST /instances")
                if (method == "POST" and head == "instances")
                else None
            )
        resource = parts[1]
        if not _ORTHANC_ID.fullmatch(resource):
            return None
        if method == "GET" or (method == "POST" and len(parts) == 3 and parts[2] in _POST_READS):
            return Route(
                kind=Kind.READ, template=_template(method, parts), level=level, resource=resource
            )
        if method == "DELETE" and len(parts) == 2:
            return Route(
                kind=Kind.DELETE, template=f"DELETE /{head}/{{id}}", level=level, resource=resource
            )
        return None
    if method == "POST":
        if head in ("modalities", "peers") and len(parts) == 3:
            job = EXPORT_JOBS.get(f"{head}:{parts[2]}")
            if job is not None:
                return Route(
                    kind=Kind.EXPORT,
                    template=f"POST /{head}/{{name}}/{parts[2]}",
                    job_type=job,
                    target=f"{head}/{parts[1]}",
                )
        return None
    if dicomweb and method == "GET":
        if head == "dicom-web":
            return _dicomweb(parts, get)
        if head == "wado" and len(parts) == 1:
            uid = get.get("studyUID")
            if uid is not None and _UID.fullmatch(uid):
                return Route(kind=Kind.READ, template="GET /wado", study_uid=uid)
    return None


#: Sub-resources of a patient, study or series that ``rest_wrappers`` answers.
WRAPPED_DOWNLOADS: Final = frozenset({"archive", "media"})
#: ``POST /tools/...`` routes that ``rest_wrappers`` answers.
WRAPPED_TOOLS: Final = frozenset(
    {"find", "lookup", "create-archive", "create-media", "create-media-extended"}
)


def wrapped_route(method: str, parts: list[str]) -> Route | None:
    """The routes ``rest_wrappers`` answers (with the methods Orthanc serves on them)."""
    head = parts[0]
    if method == "GET" and len(parts) == 1 and head in ("patients", "studies", "series"):
        return Route(kind=Kind.WRAPPED, template=f"GET /{head}", level=LEVELS[head])
    if method == "GET" and parts == ["instances"]:
        return Route(kind=Kind.LISTING, template="GET /instances", level=Level.INSTANCE)
    if method not in ("GET", "POST"):
        return None
    if len(parts) == 3 and head in LEVELS and head != "instances" and parts[2] in WRAPPED_DOWNLOADS:
        return Route(kind=Kind.WRAPPED, template=_template(method, parts), level=LEVELS[head],
                     resource=parts[1])  # fmt: skip
    if method != "POST":
        return None
    if head == "tools" and len(parts) == 2 and parts[1] in WRAPPED_TOOLS:
        return Route(kind=Kind.WRAPPED, template=f"POST /tools/{parts[1]}")
    if head == "modalities" and len(parts) == 3 and parts[2] == "move":
        return Route(kind=Kind.WRAPPED, template="POST /modalities/{name}/move",
                     target=f"modalities/{parts[1]}")  # fmt: skip
    return None


def _dicomweb(parts: list[str], get: Mapping[str, str]) -> Route | None:
    """QIDO-RS searches and WADO-RS retrievals of the DICOMweb plugin."""
    rest = parts[1:]
    if not rest or rest[0] not in ("studies", "series", "instances"):
        return None
    if len(rest) == 1:  # /dicom-web/studies?PatientID=...: a query
        params = {k: get[k] for k in _QIDO_KEYS if get.get(k)}
        return Route(
            kind=Kind.QUERY,
            template=f"GET /dicom-web/{rest[0]}",
            parameters=MappingProxyType(params),
            arguments=urllib.parse.urlencode(get),
        )
    if rest[0] != "studies" or not _UID.fullmatch(rest[1]):
        return None
    uid = rest[1]
    # /studies/{uid}/series and /studies/{uid}/series/{uid}/instances without more: queries
    # within one study; anything else under the study retrieves it.
    if (len(rest) == 3 and rest[2] in ("series", "instances")) or (
        len(rest) == 5 and rest[2] == "series" and rest[4] == "instances"
    ):
        params = {k: get[k] for k in _QIDO_KEYS if get.get(k)}
        shown = "/".join("{uid}" if _UID.fullmatch(p) else p for p in rest)
        return Route(
            kind=Kind.QUERY,
            template=f"GET /dicom-web/{shown}",
            study_uid=uid,
            parameters=MappingProxyType(params),
        )
    shown = "/".join("{uid}" if _UID.fullmatch(p) else p for p in rest[:6])
    return Route(kind=Kind.READ, template=f"GET /dicom-web/{shown}", study_uid=uid)
