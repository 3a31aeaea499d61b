"""``GET /fhir/AuditEvent`` search: the parameters this server understands, strictly checked.

Invariant: anything this module does not understand is a ``MalformedInputError`` naming the
parameter, never silently ignored (an ignored filter would widen an audit query); filters
are ANDed, comma alternatives ORed, and the query string of a search is canonical, so self
and next links name the same search.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final
from urllib.parse import urlencode

from ledger.audit.fhir.catalog import PATIENT_IDENTIFIER, accepted_names
from ledger.audit.fhir.dates import DateBound, date_bound
from ledger.audit.fhir.filters import Narrowing, parse_narrowing, patient_identifier
from ledger.audit.fhir.params import MAX_VALUE_CHARS, bad_parameter, parameter_text
from ledger.audit.fhir.shaping import Shape, parse_shape
from ledger.audit.fhir.vocabulary import ACTIONS, DCM, DEFAULT_BASE_URL, FhirNamespace, namespace
from ledger.errors import MalformedInputError

__all__ = [
    "DEFAULT_COUNT",
    "MAX_ALTERNATIVES",
    "MAX_COUNT",
    "MAX_CURSOR_CHARS",
    "MAX_DATES",
    "MAX_VALUE_CHARS",
    "AuditEventSearch",
    "TypeCode",
    "parse_search",
]

#: ``_count`` when the client gives none, and the most one page may hold.
DEFAULT_COUNT: Final = 100
MAX_COUNT: Final = 1000
#: Longest ``_cursor`` (a page token carries the size of every log).
MAX_CURSOR_CHARS: Final = 16_384
#: Most ``date`` parameters in one search (two bound a range; more is noise or abuse).
MAX_DATES: Final = 4
#: Most comma-separated alternatives in one ``type`` or ``action``.
MAX_ALTERNATIVES: Final = 16

_CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,16384}")
_UID = re.compile(r"(0|[1-9]\d*)(\.(0|[1-9]\d*))*")
_REFERENCE_TYPES: Final = {
    "patient": ("Patient",),
    "agent": (
        "Practitioner",
        "PractitionerRole",
        "Device",
        "Organization",
        "Patient",
        "RelatedPerson",
    ),
}
_PARAMETERS: Final = accepted_names()
_NO_NARROWING: Final = Narrowing()
_FULL: Final = Shape()
_NARROWING: Final = (
    "outcome", "subtype", "site", "source", "address", "entity-type", "entity-role", "agent-name",
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class TypeCode:
    """One ``type`` alternative; ``system`` None matches the code in any system."""

    system: str | None
    code: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEventSearch:
    """A validated ``GET /fhir/AuditEvent`` query.

    Filters are ANDed; ``types`` and ``actions`` hold comma-separated alternatives (ORed).
    ``since`` (inclusive) and ``until`` (exclusive) bound ``recorded``; both None = no bound.
    ``patient`` and ``agent`` are ids (patient id, user id); ``entity`` a Study Instance UID.
    """

    patient: str | None = None
    agent: str | None = None
    entity: str | None = None
    types: tuple[TypeCode, ...] = ()
    actions: tuple[str, ...] = ()
    dates: tuple[DateBound, ...] = ()
    since: datetime | None = None
    until: datetime | None = None
    count: int = DEFAULT_COUNT
    #: The page token of a next link, unopened: the API checks its MAC (``ledger.audit.cursors``).
    cursor: str | None = None
    #: The ITI-81 narrowing parameters (``ledger.audit.fhir.filters``).
    narrowing: Narrowing = _NO_NARROWING
    #: ``_summary``, ``_elements``, ``_format`` (``ledger.audit.fhir.shaping``).
    shape: Shape = _FULL
    #: ``patient`` and ``patient.identifier`` named different patients: nothing matches.
    contradictory: bool = False

    @property
    def empty_range(self) -> bool:
        """True when the date bounds exclude every instant (the answer is empty)."""
        if self.contradictory:
            return True
        return self.since is not None and self.until is not None and self.since >= self.until

    def query_string(self, *, cursor: str | None = None) -> str:
        """The canonical query string of this search, for self and next links."""
        items: list[tuple[str, str]] = []
        if self.patient is not None:
            items.append(("patient", self.patient))
        if self.agent is not None:
            items.append(("agent", self.agent))
        if self.entity is not None:
            items.append(("entity", self.entity))
        items.extend(("date", f"{d.prefix}{d.value}") for d in self.dates)
        if self.types:
            items.append(
                (
                    "type",
                    ",".join(f"{t.system}|{t.code}" if t.system else t.code for t in self.types),
                )
            )
        if self.actions:
            items.append(("action", ",".join(self.actions)))
        items.extend(self.narrowing.query_items())
        items.append(("_count", str(self.count)))
        items.extend(self.shape.query_items())
        if cursor is not None:
            items.append(("_cursor", cursor))
        return urlencode(items)


def _single(params: Mapping[str, list[str]], name: str, limit: int = MAX_VALUE_CHARS) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise bad_parameter(name, "is given more than once")
    return parameter_text(name, values[0], limit)


def _reference(name: str, value: str) -> str:
    """A bare id, or ``Type/id`` for one of the parameter's target types; returns the id."""
    kind, sep, ident = value.partition("/")
    if not sep:
        return value
    if kind not in _REFERENCE_TYPES[name] or not ident or "/" in ident:
        allowed = ", ".join(f"{t}/<id>" for t in _REFERENCE_TYPES[name])
        raise bad_parameter(name, f"must be an id or a reference {allowed}")
    return ident


def _study_uid(value: str) -> str:
    uid = value.removeprefix("urn:oid:")
    if len(uid) > 64 or not _UID.fullmatch(uid):
        raise bad_parameter(
            "entity", "must be a DICOM Study Instance UID (digits and dots, at most 64)"
        )
    return uid


def _alternatives(name: str, raw: str) -> list[str]:
    parts = parameter_text(name, raw).split(",")
    if len(parts) > MAX_ALTERNATIVES:
        raise bad_parameter(name, f"has {len(parts)} alternatives; at most {MAX_ALTERNATIVES}")
    if any(not p for p in parts):
        raise bad_parameter(name, "has an empty alternative")
    return parts


def _type_code(raw: str, ns: FhirNamespace) -> TypeCode:
    system, sep, code = raw.rpartition("|")
    if not _CODE.fullmatch(code):
        raise bad_parameter("type", "each code must be 1-32 letters, digits, '.', '_' or '-'")
    if not sep:
        return TypeCode(system=None, code=code)
    if system == "":
        raise bad_parameter("type", "'|code' (no system) matches nothing here; give the code alone")
    if system not in (DCM, ns.private_codes):
        raise bad_parameter("type", f"system must be {DCM} or {ns.private_codes}")
    return TypeCode(system=system, code=code)


def _check_names(params: Mapping[str, list[str]]) -> None:
    """Every parameter is one this server supports, and its values are strings."""
    unknown = sorted(k for k in params if k not in _PARAMETERS)
    if unknown:
        shown = ", ".join(repr(k[:40]) for k in unknown[:5])
        raise MalformedInputError(
            f"unknown search parameter(s) {shown}; supported: {', '.join(_PARAMETERS)}"
            " (no modifiers)"
        )
    for name in params:
        values: object = params[name]  # callers are untyped web frameworks: check
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise bad_parameter(name, "values must be a list of strings")


def _count(raw: str | None, default_count: int, max_count: int) -> int:
    if raw is None:
        return default_count
    if not raw.isascii() or not raw.isdigit() or len(raw) > 7:
        raise bad_parameter("_count", f"must be an integer from 1 to {max_count}")
    count = int(raw)
    if not 1 <= count <= max_count:
        raise bad_parameter("_count", f"must be an integer from 1 to {max_count}")
    return count


def _actions(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    alternatives = _alternatives("action", raw)
    bad = [a for a in alternatives if a not in ACTIONS]
    if bad:
        raise bad_parameter("action", "each action must be one of C, R, U, D, E")
    return tuple(dict.fromkeys(alternatives))


def _dates(raw_dates: list[str]) -> tuple[DateBound, ...]:
    if len(raw_dates) > MAX_DATES:
        raise bad_parameter("date", f"is given {len(raw_dates)} times; at most {MAX_DATES}")
    return tuple(date_bound(d) for d in raw_dates)


def parse_search(
    params: Mapping[str, list[str]],
    *,
    base_url: str = DEFAULT_BASE_URL,
    default_count: int = DEFAULT_COUNT,
    max_count: int = MAX_COUNT,
) -> AuditEventSearch:
    """Validate the query of ``GET /fhir/AuditEvent``; raises ``MalformedInputError``.

    Supported: ``patient`` (id or ``Patient/id``), ``agent`` (user id, or ``Type/id``),
    ``entity`` (Study Instance UID, bare or ``urn:oid:``), ``date`` (repeatable, ANDed;
    prefixes ge gt le lt eq; FHIR precision from year to fractional seconds with a zone),
    ``type`` (``code`` or ``system|code``, comma alternatives), ``action`` (C R U D E, comma
    alternatives), ``_count`` (1 to ``max_count``) and ``_cursor`` (a page token from a next
    link); the ITI-81 narrowing parameters (``ledger.audit.fhir.filters``), the
    ``patient.identifier`` chain and the result parameters ``_summary``, ``_elements``,
    ``_format`` (``ledger.audit.fhir.shaping``). Anything else, a modifier included, is
    rejected; the table of names is ``ledger.audit.fhir.catalog``.
    """
    ns = namespace(base_url)
    _check_names(params)
    patient = _single(params, "patient")
    chained_raw = _single(params, PATIENT_IDENTIFIER)
    chained = None if chained_raw is None else patient_identifier(chained_raw)
    narrowing = parse_narrowing({name: _single(params, name) for name in _NARROWING})
    shape = parse_shape(
        _single(params, "_summary"),
        _single(params, "_elements"),
        _single(params, "_format"),
        search=True,
    )
    agent = _single(params, "agent")
    entity = _single(params, "entity")
    count_raw = _single(params, "_count")
    cursor_raw = _single(params, "_cursor", MAX_CURSOR_CHARS)
    type_raw = _single(params, "type")
    action_raw = _single(params, "action")

    count = _count(count_raw, default_count, max_count)
    types: tuple[TypeCode, ...] = ()
    if type_raw is not None:
        types = tuple(_type_code(p, ns) for p in _alternatives("type", type_raw))
    actions = _actions(action_raw)
    dates = _dates(params.get("date") or [])
    lows = [d.since for d in dates if d.since is not None]
    highs = [d.until for d in dates if d.until is not None]

    if cursor_raw is not None and not _TOKEN.fullmatch(cursor_raw):
        raise bad_parameter("_cursor", "is not a page token this server issued")

    patient_id = None if patient is None else _reference("patient", patient)
    return AuditEventSearch(
        patient=patient_id if patient_id is not None else chained,
        agent=None if agent is None else _reference("agent", agent),
        entity=None if entity is None else _study_uid(entity),
        types=types,
        actions=actions,
        dates=dates,
        since=max(lows) if lows else None,
        until=min(highs) if highs else None,
        count=count,
        cursor=cursor_raw,
        narrowing=narrowing,
        shape=shape,
        contradictory=patient_id is not None and chained is not None and patient_id != chained,
    )
