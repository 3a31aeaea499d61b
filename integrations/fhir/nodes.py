"""Reading a JSON AuditEvent: nodes that know their FHIR path, and where each field came from.

Invariant: every accessor that refuses a value raises an ``EventValidationError`` whose
``field`` is the FHIR path of the offending element (``AuditEvent.agent[0].who``); the
``Builder`` remembers which element each event field came from, so an error found later
by ``producers.validate`` can name that element too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

from integrations.fhir.vocabulary import FhirNamespace
from producers import EventValidationError

__all__ = [
    "Builder",
    "Node",
    "code_of",
    "extensions_at",
    "fail",
    "has_code",
    "one_extension",
    "parse_instant",
]

_INSTANT = re.compile(
    r"(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):([0-5]\d):([0-5]\d)"
    r"(?:\.(\d{1,9}))?(Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))"
)


def fail(path: str, problem: str) -> EventValidationError:
    return EventValidationError(f"{path}: {problem}", field=path)


class Node:
    """A JSON value and its FHIR path; every accessor names the path when it fails."""

    __slots__ = ("path", "value")

    def __init__(self, value: object, path: str) -> None:
        self.value = value
        self.path = path

    @property
    def present(self) -> bool:
        return self.value is not None

    def obj(self) -> Mapping[str, object]:
        if not isinstance(self.value, dict):
            raise fail(self.path, "must be a JSON object")
        return self.value

    def get(self, key: str) -> Node:
        value = self.obj().get(key) if self.value is not None else None
        return Node(value, f"{self.path}.{key}")

    def items(self, key: str) -> list[Node]:
        child = self.get(key)
        if child.value is None:
            return []
        if not isinstance(child.value, list):
            raise fail(child.path, "must be a JSON array")
        return [Node(v, f"{child.path}[{i}]") for i, v in enumerate(child.value)]

    def text(self) -> str | None:
        if self.value is None:
            return None
        if not isinstance(self.value, str):
            raise fail(self.path, "must be a string")
        if not self.value:
            raise fail(self.path, "must not be empty (FHIR strings have content)")
        return self.value

    def required_text(self, problem: str = "is required") -> str:
        value = self.text()
        if value is None:
            raise fail(self.path, problem)
        return value

    def integer(self) -> int | None:
        if self.value is None:
            return None
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise fail(self.path, "must be an integer")
        return self.value

    def only(self, allowed: frozenset[str]) -> None:
        for key in self.obj():
            if key not in allowed:
                raise fail(f"{self.path}.{key}", "cannot be mapped to a ledger event")

    def codings(self) -> list[Node]:
        """The codings of a CodeableConcept node."""
        return self.items("coding")


def code_of(coding: Node) -> tuple[str | None, str | None]:
    return coding.get("system").text(), coding.get("code").text()


def has_code(concept: Node, system: str, code: str) -> bool:
    return any(code_of(c) == (system, code) for c in concept.codings())


def extensions_at(node: Node, url: str) -> list[Node]:
    out = []
    for ext in node.items("extension"):
        if ext.get("url").text() == url:
            out.append(ext)
    return out


def one_extension(node: Node, url: str) -> Node | None:
    found = extensions_at(node, url)
    if len(found) > 1:
        raise fail(found[1].path, f"extension {url} may appear only once")
    return found[0] if found else None


def parse_instant(node: Node) -> datetime:
    text = node.required_text()
    m = _INSTANT.fullmatch(text)
    if m is None:
        raise fail(node.path, "must be a FHIR instant (YYYY-MM-DDThh:mm:ss[.f](Z|+hh:mm))")
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    micros = int((m[7] or "").ljust(9, "0")[:6] or "0")  # finer than microseconds is cut
    tz = m[8]
    offset = timedelta(0)
    if tz != "Z":
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * (-1 if tz[0] == "-" else 1)
    try:
        local = datetime(year, month, day, hour, minute, second, micros)
    except ValueError as exc:
        raise fail(node.path, "is not a calendar date") from exc
    return (local - offset).replace(tzinfo=UTC)


class Builder:
    """Collects event fields from one AuditEvent and remembers which element each came from."""

    def __init__(self, resource: Node, names: FhirNamespace) -> None:
        self.root = resource
        self.names = names
        self.origin: dict[str, str] = {}
        self.details: dict[str, str] = {}

    def note(self, event_field: str, node: Node) -> None:
        self.origin[event_field] = node.path

    def fhir_path(self, event_field: str) -> str:
        candidate = event_field
        while candidate:
            if candidate in self.origin:
                return self.origin[candidate]
            candidate = re.sub(r"(\[[^\]]*\]|\.[^.\[]*|^[^.\[]*)$", "", candidate)
        return self.root.path

    def add_detail(self, key: str, value: str, node: Node) -> None:
        if key in self.details:
            raise fail(node.path, f"detail {key!r} is given twice")
        self.details[key] = value
        self.note(f"details[{key!r}]", node)
