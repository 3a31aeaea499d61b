"""The IHE ITI-81 narrowing parameters: outcome, subtype, site, source, address, entity-type,
entity-role, agent-name, and the ``patient.identifier`` chain.

Invariant: each parameter is either pushed down (``Narrowing.outcomes``, ``sites``,
``sources``, ``address``, ``agent_name``: index columns the stored resource is built from,
so the SQL filter selects exactly the resources the parameter matches), or matched on the
built resource (``subtypes``, ``entity_types``, ``entity_roles``: ``matches``), never
ignored. Token alternatives are ORed, parameters ANDed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from ledger.audit.fhir.params import bad_parameter, parameter_text
from ledger.audit.fhir.vocabulary import AUDIT_EVENT_OUTCOME, OUTCOMES, Resource
from ledger.audit.records import JsonValue

__all__ = [
    "OUTCOME_SYSTEM",
    "CodingFilter",
    "Narrowing",
    "matches",
    "parse_narrowing",
    "patient_identifier",
]

OUTCOME_SYSTEM: Final = AUDIT_EVENT_OUTCOME
#: Most comma-separated alternatives in one token parameter.
MAX_ALTERNATIVES: Final = 16
_CODE: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_SYSTEM: Final = re.compile(r"[!-{}~]{1,256}")  # printable ASCII, no space, no '|'
_STORED_OUTCOME: Final = {code: stored for stored, code in OUTCOMES.items()}
_OBSERVER_TYPES: Final = (
    "Device",
    "Organization",
    "Practitioner",
    "PractitionerRole",
    "Patient",
    "RelatedPerson",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class CodingFilter:
    """One token alternative; ``system`` None matches the code in any system."""

    system: str | None
    code: str

    def matches(self, coding: object) -> bool:
        if not isinstance(coding, Mapping):
            return False
        if self.system is not None and coding.get("system") != self.system:
            return False
        return coding.get("code") == self.code

    def text(self) -> str:
        return self.code if self.system is None else f"{self.system}|{self.code}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Narrowing:
    """The ITI-81 narrowing of a search. Stored outcomes (``SUCCESS``...), facility ids,
    producer ids and the two case-insensitive prefixes go to SQL; the codings are matched on
    the built resource."""

    outcomes: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    address: str | None = None
    agent_name: str | None = None
    subtypes: tuple[CodingFilter, ...] = ()
    entity_types: tuple[CodingFilter, ...] = ()
    entity_roles: tuple[CodingFilter, ...] = ()

    @property
    def on_resources(self) -> bool:
        """True when some parameter is matched on the built resources (not in SQL)."""
        return bool(self.subtypes or self.entity_types or self.entity_roles)

    def query_items(self) -> list[tuple[str, str]]:
        """The canonical query parameters of this narrowing, for self and next links."""
        outcome_codes = {stored: code for code, stored in _STORED_OUTCOME.items()}
        items: list[tuple[str, str]] = []
        if self.outcomes:
            items.append(("outcome", ",".join(outcome_codes[o] for o in self.outcomes)))
        for name, codings in (
            ("subtype", self.subtypes),
            ("entity-type", self.entity_types),
            ("entity-role", self.entity_roles),
        ):
            if codings:
                items.append((name, ",".join(c.text() for c in codings)))
        if self.sites:
            items.append(("site", ",".join(self.sites)))
        if self.sources:
            items.append(("source", ",".join(self.sources)))
        if self.address is not None:
            items.append(("address", self.address))
        if self.agent_name is not None:
            items.append(("agent-name", self.agent_name))
        return items


def _alternatives(name: str, raw: str) -> list[str]:
    parts = parameter_text(name, raw).split(",")
    if len(parts) > MAX_ALTERNATIVES:
        raise bad_parameter(name, f"has {len(parts)} alternatives; at most {MAX_ALTERNATIVES}")
    if any(not p for p in parts):
        raise bad_parameter(name, "has an empty alternative")
    return parts


def _coding(name: str, raw: str) -> CodingFilter:
    system, sep, code = raw.rpartition("|")
    if not _CODE.fullmatch(code):
        raise bad_parameter(name, "each code must be 1-64 letters, digits, '.', ':', '_' or '-'")
    if not sep:
        return CodingFilter(system=None, code=code)
    if not _SYSTEM.fullmatch(system):
        raise bad_parameter(
            name, "'|code' (no system) matches nothing here; give the code alone or system|code"
        )
    return CodingFilter(system=system, code=code)


def _codings(name: str, raw: str | None) -> tuple[CodingFilter, ...]:
    if raw is None:
        return ()
    return tuple(dict.fromkeys(_coding(name, p) for p in _alternatives(name, raw)))


def _outcomes(raw: str | None) -> tuple[str, ...]:
    out: list[str] = []
    for c in _codings("outcome", raw):
        stored = _STORED_OUTCOME.get(c.code)
        if stored is None or c.system not in (None, OUTCOME_SYSTEM):
            raise bad_parameter("outcome", f"each outcome must be 0, 4, 8 or 12 ({OUTCOME_SYSTEM})")
        out.append(stored)
    return tuple(dict.fromkeys(out))


def _sites(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    sites = _alternatives("site", raw)
    if any("|" in s for s in sites):
        raise bad_parameter("site", "source.site is a plain string here: give it without system")
    return tuple(dict.fromkeys(sites))


def _sources(raw: str | None) -> tuple[str, ...]:
    if raw is None:
        return ()
    out: list[str] = []
    for value in _alternatives("source", raw):
        kind, sep, ident = value.partition("/")
        if sep and (kind not in _OBSERVER_TYPES or not ident or "/" in ident):
            allowed = ", ".join(f"{t}/<id>" for t in _OBSERVER_TYPES)
            raise bad_parameter("source", f"must be a producer id or a reference {allowed}")
        out.append(ident if sep else value)
    return tuple(dict.fromkeys(out))


def patient_identifier(raw: str) -> str:
    """The patient id of ``patient.identifier=[|]value`` (identifiers carry no system)."""
    system, sep, value = parameter_text("patient.identifier", raw).rpartition("|")
    if sep and system:
        raise bad_parameter(
            "patient.identifier",
            "patient identifiers here carry no system (the issuer is the assigner): "
            "give the value alone",
        )
    if not value or value != value.strip():
        raise bad_parameter("patient.identifier", "must name an identifier value")
    return value


def parse_narrowing(single: Mapping[str, str | None]) -> Narrowing:
    """The narrowing of the already-deduplicated values ``single`` (name -> raw or None)."""
    return Narrowing(
        outcomes=_outcomes(single.get("outcome")),
        sites=_sites(single.get("site")),
        sources=_sources(single.get("source")),
        address=single.get("address"),
        agent_name=single.get("agent-name"),
        subtypes=_codings("subtype", single.get("subtype")),
        entity_types=_codings("entity-type", single.get("entity-type")),
        entity_roles=_codings("entity-role", single.get("entity-role")),
    )


def _any(filters: Sequence[CodingFilter], codings: Sequence[JsonValue]) -> bool:
    return any(f.matches(c) for f in filters for c in codings)


def _list(value: JsonValue | None) -> list[JsonValue]:
    return value if isinstance(value, list) else []


def matches(resource: Resource, narrowing: Narrowing) -> bool:
    """Whether the built AuditEvent satisfies the parameters matched on resources."""
    if narrowing.subtypes and not _any(narrowing.subtypes, _list(resource.get("subtype"))):
        return False
    entities = [e for e in _list(resource.get("entity")) if isinstance(e, dict)]
    for filters, element in (
        (narrowing.entity_types, "type"),
        (narrowing.entity_roles, "role"),
    ):
        if filters and not _any(filters, [e.get(element) for e in entities]):
            return False
    return True
