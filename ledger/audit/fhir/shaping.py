"""The R4 result parameters that shape an answer: ``_format``, ``_summary``, ``_elements``.

Invariant: a subsetted AuditEvent keeps ``id``, its mandatory elements (``type``,
``recorded``, ``agent``, ``source``: it stays a valid AuditEvent) and the
``ledger-position`` extension (it stays provable), and is tagged ``SUBSETTED``; an answer
in a format this server does not write is refused (``not_acceptable``, HTTP 406), never
sent as JSON under another name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from ledger.audit.fhir.params import bad_parameter, parameter_text
from ledger.audit.fhir.vocabulary import V3_OBSERVATION_VALUE, Resource
from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError

__all__ = [
    "ELEMENTS",
    "NOT_ACCEPTABLE",
    "SUBSETTED",
    "Shape",
    "check_format",
    "parse_shape",
    "subset",
]

Summary = Literal["true", "text", "data", "count", "false"]

#: The error code (HTTP 406) of a ``_format`` this server does not write.
NOT_ACCEPTABLE: Final = "not_acceptable"
#: ``meta.tag`` of a resource with elements left out (R4 search, _summary and _elements).
SUBSETTED: Final[Resource] = {
    "system": V3_OBSERVATION_VALUE,
    "code": "SUBSETTED",
    "display": "subsetted",
}
#: Every top-level element of an R4 AuditEvent.
ELEMENTS: Final = (
    "id", "meta", "implicitRules", "language", "text", "contained", "extension",
    "modifierExtension", "type", "subtype", "action", "period", "recorded", "outcome",
    "outcomeDesc", "purposeOfEvent", "agent", "source", "entity",
)  # fmt: skip
#: Elements marked summary in the R4 AuditEvent definition.
_SUMMARY: Final = frozenset(
    {"id", "meta", "implicitRules", "type", "subtype", "action", "recorded", "outcome"}
    | {"outcomeDesc", "purposeOfEvent"}
)
_MANDATORY: Final = frozenset({"resourceType", "id", "type", "recorded", "agent", "source"})
_JSON_FORMATS: Final = frozenset({"json", "application/json", "application/fhir+json"})
_OTHER_FORMATS: Final = frozenset(
    {"xml", "text/xml", "application/xml", "application/fhir+xml", "ttl", "text/turtle"}
    | {"html", "text/html", "application/x-turtle"}
)
_SUMMARIES: Final[tuple[Summary, ...]] = ("true", "text", "data", "count", "false")


@dataclass(frozen=True, slots=True, kw_only=True)
class Shape:
    """How to shape an answer: ``summary`` None = ``false``; ``elements`` None = all."""

    summary: Summary | None = None
    elements: tuple[str, ...] | None = None
    format: str | None = None

    @property
    def subsetting(self) -> bool:
        return self.summary in ("true", "text") or self.elements is not None

    def query_items(self) -> list[tuple[str, str]]:
        items: list[tuple[str, str]] = []
        if self.summary is not None:
            items.append(("_summary", self.summary))
        if self.elements is not None:
            items.append(("_elements", ",".join(self.elements)))
        if self.format is not None:
            items.append(("_format", self.format))
        return items


def check_format(raw: str | None) -> str | None:
    """``_format``: a JSON form passes; XML, Turtle or HTML is ``not_acceptable`` (406)."""
    if raw is None:
        return None
    value = parameter_text("_format", raw)
    mime = value.split(";", 1)[0].strip().lower()
    if mime in _JSON_FORMATS:
        return value
    if mime in _OTHER_FORMATS:
        raise MalformedInputError(
            f"search parameter _format: {mime} is not served; this server writes JSON only "
            "(json, application/json, application/fhir+json)",
            code=NOT_ACCEPTABLE,
        )
    raise bad_parameter("_format", "must be json, application/json or application/fhir+json")


def _elements(raw: str) -> tuple[str, ...]:
    names = parameter_text("_elements", raw).split(",")
    unknown = [n for n in names if n not in ELEMENTS]
    if unknown:
        raise bad_parameter(
            "_elements", f"{unknown[0][:40]!r} is not an AuditEvent element (no paths)"
        )
    return tuple(dict.fromkeys(names))


def parse_shape(
    summary: str | None, elements: str | None, format_: str | None, *, search: bool
) -> Shape:
    """``_summary``, ``_elements`` and ``_format``; ``count`` only for a search."""
    fmt = check_format(format_)
    if summary is not None:
        summary = parameter_text("_summary", summary)
        allowed = _SUMMARIES if search else tuple(s for s in _SUMMARIES if s != "count")
        if summary not in allowed:
            raise bad_parameter("_summary", f"must be one of {', '.join(allowed)}")
    if summary is not None and elements is not None and summary != "false":
        raise bad_parameter("_elements", "cannot be combined with _summary (other than false)")
    chosen: Summary | None = next((s for s in _SUMMARIES if s == summary), None)
    return Shape(
        summary=chosen,
        elements=None if elements is None else _elements(elements),
        format=fmt,
    )


def _kept(shape: Shape) -> frozenset[str]:
    if shape.elements is not None:
        return _MANDATORY | frozenset(shape.elements)
    if shape.summary == "true":
        return _MANDATORY | _SUMMARY
    return _MANDATORY | {"meta"}  # text: id, meta and the mandatory elements


def _position_only(extensions: JsonValue, position_url: str) -> list[JsonValue]:
    if not isinstance(extensions, list):
        return []
    return [e for e in extensions if isinstance(e, dict) and e.get("url") == position_url]


def subset(resource: Resource, shape: Shape, *, position_url: str) -> Resource:
    """``resource`` as ``shape`` asks, tagged SUBSETTED when elements were left out."""
    if not shape.subsetting:
        return resource
    kept = _kept(shape)
    out: Resource = {k: v for k, v in resource.items() if k in kept}
    if "extension" not in kept:
        position = _position_only(resource.get("extension"), position_url)
        if position:
            out["extension"] = position
    meta = out.get("meta")
    tags = list(meta.get("tag", [])) if isinstance(meta, dict) else []  # type: ignore[arg-type]
    meta_out: Resource = dict(meta) if isinstance(meta, dict) else {}
    meta_out["tag"] = [*tags, dict(SUBSETTED)]
    ordered: Resource = {"resourceType": out.pop("resourceType"), "id": out.pop("id")}
    ordered["meta"] = meta_out
    out.pop("meta", None)
    ordered.update(out)
    return ordered
