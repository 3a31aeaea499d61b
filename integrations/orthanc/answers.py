"""Orthanc's own answer to a request the plugin wraps: forwarded, then replayed as is.

Invariant: ``forward`` never raises: it returns Orthanc's answer (the bytes of its
built-in handler, reached in-process without plugins by ``RestApiGet`` / ``RestApiPost``)
or the error Orthanc would have answered, as an ``Answer`` with the same HTTP status and
the same JSON error body (``HttpError``, ``HttpStatus``, ``Message``, ``Method``,
``OrthancError``, ``OrthancStatus``, ``Uri``; Orthanc's formatting). orthanc-python 4.0
gives a failed call only its error code (``OrthancException(code, description)``), never
the ``Details`` line Orthanc adds to some errors; the common client errors whose details
are fixed text (a body that is not JSON) are checked here first and answered with
Orthanc's exact text. The mapping is documented in docs/orthanc.md ("Wrapped routes").
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

#: Orthanc error code -> HTTP status (Orthanc 1.10's ErrorCodes.json); others are 500.
HTTP_STATUS: Final[Mapping[int, int]] = MappingProxyType(
    {0: 200, 3: 400, 5: 400, 7: 404, 8: 400, 12: 400, 13: 404, 15: 400, 17: 404, 22: 404}
)
REASONS: Final[Mapping[int, str]] = MappingProxyType(
    {
        400: "Bad Request",
        401: "Unauthorized",
        403: "Forbidden",
        404: "Not Found",
        422: "Unprocessable Entity",
        413: "Request Entity Too Large",
        500: "Internal Server Error",
    }
)
#: Orthanc's descriptions of the error codes the plugin answers itself.
DESCRIPTIONS: Final[Mapping[int, str]] = MappingProxyType(
    {
        5: "Bad type for a parameter",
        7: "Accessing an inexistent item",
        8: "Bad request",
        15: "Bad file format",
    }
)
JSON_TYPE: Final = "application/json; charset=utf-8"


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """What to send back: a body with its content type, or an error status (and body)."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: The Orthanc error code of a failed call (None: success).
    error: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class OrthancError(Exception):
    """A failed in-process call: Orthanc's error code and its description."""

    def __init__(self, code: int, description: str) -> None:
        super().__init__(code, description)
        self.code = code
        self.description = description


def _string(value: str) -> str:
    """A JSON string as JsonCpp writes it (ASCII escapes as Python's, not ``/``)."""
    return json.dumps(value, ensure_ascii=False)


def error_body(
    method: str, uri: str, code: int, description: str, details: str | None, status: int
) -> bytes:
    """Orthanc's error body (``HttpDescribeErrors``: JsonCpp's styled writer, tabs)."""
    fields: list[tuple[str, str]] = []
    if details is not None:
        fields.append(("Details", _string(details)))
    fields += [
        ("HttpError", _string(REASONS.get(status, "Internal Server Error"))),
        ("HttpStatus", str(status)),
        ("Message", _string(description)),
        ("Method", _string(method)),
        ("OrthancError", _string(description)),
        ("OrthancStatus", str(code)),
        ("Uri", _string(uri)),
    ]
    lines = ",\n".join(f'\t"{name}" : {value}' for name, value in fields)
    return ("{\n" + lines + "\n}\n").encode()


def error_answer(
    method: str,
    uri: str,
    code: int,
    description: str,
    details: str | None = None,
    *,
    describe: bool = True,
    status: int | None = None,
) -> Answer:
    """Orthanc's answer to an error: ``status`` when the handler sets its own (a failed
    C-MOVE is 422 in Orthanc 1.10), else the error code's."""
    status = status or HTTP_STATUS.get(code, 500)
    body = error_body(method, uri, code, description, details, status) if describe else b""
    return Answer(status=status, body=body, error=code)


def as_orthanc_error(exc: BaseException) -> OrthancError | None:
    """orthanc-python's ``OrthancException(code, description)``, else None."""
    args: tuple[object, ...] = tuple(getattr(exc, "args", ()))
    if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return OrthancError(args[0], args[1])
    return None


def parse_json(body: bytes) -> object:
    """The request body as JSON, or ``...`` (Ellipsis) when it is not JSON."""
    try:
        return json.loads(body or b"null")
    except (ValueError, UnicodeDecodeError):
        return ...


@dataclass(frozen=True, slots=True)
class Precheck:
    """A check Orthanc's handler makes first, answered here with Orthanc's exact text."""

    code: int
    details: str
    fails: Callable[[object], bool]


def not_object(value: object) -> bool:
    return not isinstance(value, dict)


def not_json(value: object) -> bool:
    return value is ...


def _level_missing(value: object) -> bool:
    return not isinstance(value, dict) or not isinstance(value.get("Level"), str)


def _query_missing(value: object) -> bool:
    return not isinstance(value, dict) or "Query" not in value


_NOT_A_LIST = "Expected a list of resources to archive in the body"

#: The first checks of each wrapped POST handler whose errors carry fixed details, in
#: Orthanc's order (checked against Orthanc 1.10.1: tests/e2e/test_orthanc_rest.py).
PRECHECKS: Final[Mapping[str, tuple[Precheck, ...]]] = MappingProxyType(
    {
        "find": (
            Precheck(8, "The body must contain a JSON object", not_object),
            Precheck(8, 'Field "Level" is missing, or should be a string', _level_missing),
            Precheck(8, 'Field "Query" is missing, or should be a JSON object', _query_missing),
        ),
        "create-archive": (Precheck(15, _NOT_A_LIST, not_json),),
        "create-media": (Precheck(15, _NOT_A_LIST, not_json),),
        "create-media-extended": (Precheck(15, _NOT_A_LIST, not_json),),
        "move": (
            Precheck(
                15, "Must provide a JSON body containing fields Resources and Level", not_object
            ),
        ),
    }
)


def listing_precheck(collection: str, get: Mapping[str, str]) -> tuple[int, str] | None:
    """Orthanc's error (code, details) for a listing's ``since`` without ``limit`` (or the
    reverse) or either not a number, else None."""
    for present, missing in (("limit", "since"), ("since", "limit")):
        if present in get and missing not in get:
            return 8, f'Missing "{missing}" argument for GET request against: /{collection}/'
    if "limit" in get and not (get["limit"].isdigit() and get["since"].isdigit()):
        return 5, "Syntax error in some user-supplied data"
    return None
