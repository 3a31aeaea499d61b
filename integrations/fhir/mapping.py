"""FHIR R4 AuditEvent resources in, ``PhiAccessEvent`` or ``SecurityEvent`` out: the IHE FHIR
audit feed.

``POST /fhir/AuditEvent`` accepts one AuditEvent, or a Bundle of type ``batch`` or
``transaction`` whose entries are AuditEvents; ``events_from_fhir`` turns either into one
``EntryResult`` per resource (an event, or the error that stops it), so the API can answer
with a batch-response Bundle or an OperationOutcome.

Invariant: an event returned here has passed ``producers.events.validate`` (producer fields
aside when they are left for the emitter to stamp), and every error is an
``EventValidationError`` whose ``field`` is the FHIR path of the offending element, e.g.
``AuditEvent.agent[0].who.identifier.value`` (``Bundle.entry[2]...`` for a Bundle's own
structure). Elements that only describe the resource (``id``, ``meta``, ``text``,
``language``) and extensions this product does not define are ignored; every other element
maps to an event field or makes the resource unmappable. The mapping is the reverse of
``ledger.audit.fhir.audit_event`` (see its docstring): for every valid event ``e`` and its stored
record, ``event_from_fhir(audit_event(record), keep_producer=True) == e``, except that empty
optional strings (which FHIR cannot carry) come back as ``None``.

Which schema a resource becomes:

* a resource this ledger served (it carries the ``ledger-position`` extension) says so: the
  subtype ``{base}/CodeSystem/99PHILEDGER#SEC`` makes it a ``SecurityEvent``, its absence a
  ``PhiAccessEvent``;
* any other resource whose ``type`` is a security EventID (``SECURITY_EVENT_IDS``: 110100
  Application Activity, 110108 Network Entry, 110113 Security Alert, 110114 User
  Authentication) and that names no study is a ``SecurityEvent`` (a login, a logout, an
  emergency override of one patient's record); the ``SEC`` subtype makes it one too;
* everything else is a ``PhiAccessEvent``, which needs a patient (a security alert that
  names a study records access to that study's images).

The requesting user's ``role`` is required, except with a security EventID, where a user
without one is ``person`` (agent type ``extra-security-role-type#humanuser``), ``system``
(a DICOM role type, e.g. 110150 Application) or ``unspecified``, as a foreign DICOM message
is mapped.

This module imports nothing of this product but ``producers`` and the ``schemas`` data.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Final, Literal

from producers import (
    Actor,
    EventAction,
    EventOutcome,
    EventValidationError,
    Facility,
    Patient,
    PhiAccessEvent,
    Recipient,
    SecurityEvent,
    Study,
    new_event_id,
    validate,
)
from schemas import dicom

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_BUNDLE_ENTRIES",
    "EntryResult",
    "Submission",
    "event_from_fhir",
    "events_from_fhir",
]

#: Same default as ``ledger.audit.fhir.DEFAULT_BASE_URL`` (tests/unit/test_fhir.py checks).
DEFAULT_BASE_URL: Final = "https://philedger.example/fhir"
#: Most entries accepted in one Bundle.
MAX_BUNDLE_ENTRIES: Final = 1000

DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
V3_ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_PARTICIPATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
EXTRA_SECURITY_ROLE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
AUDIT_ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
DICOM_UID_SYSTEM: Final = "urn:dicom:uid"

_OUTCOMES: Final[Mapping[str, EventOutcome]] = MappingProxyType(
    {
        "0": EventOutcome.SUCCESS,
        "4": EventOutcome.MINOR_FAILURE,
        "8": EventOutcome.SERIOUS_FAILURE,
        "12": EventOutcome.MAJOR_FAILURE,
    }
)
#: Agents of these DICOM role types are systems taking part (the producer, the client or
#: server of a transfer); they are accepted and not recorded (the source is the producer).
_SYSTEM_AGENT_TYPES: Final = frozenset({"110150", "110152", "110153"})
_SOURCE_ROLE_ID: Final = "110153"
_INSTANT = re.compile(
    r"(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):([0-5]\d):([0-5]\d)"
    r"(?:\.(\d{1,9}))?(Z|[+-](?:(?:0\d|1[0-3]):[0-5]\d|14:00))"
)
_IGNORED: Final = frozenset({"id", "meta", "text", "language", "extension"})
_TOP_LEVEL: Final = _IGNORED | {
    "resourceType",
    "type",
    "subtype",
    "action",
    "recorded",
    "outcome",
    "outcomeDesc",
    "purposeOfEvent",
    "agent",
    "source",
    "entity",
}
_AGENT_KEYS: Final = frozenset(
    {
        "id",
        "extension",
        "type",
        "role",
        "who",
        "name",
        "requestor",
        "location",
        "network",
        "purposeOfUse",
    }
)
_ENTITY_KEYS: Final = frozenset(
    {"id", "extension", "what", "type", "role", "name", "description", "query", "detail"}
)
_SOURCE_KEYS: Final = frozenset({"id", "extension", "site", "observer", "type"})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Names:
    """The URLs of this product's FHIR definitions (mirror of
    ``ledger.audit.fhir.FhirNamespace``)."""

    ledger_position: str
    event_detail: str
    agent_npi: str
    agent_organization: str
    site_name: str
    producer_sequence: str
    private_codes: str
    event_type_code: str
    purpose_of_use: str
    workforce_role: str

    @classmethod
    def under(cls, base_url: str) -> _Names:
        base = base_url.rstrip("/")
        if not base.startswith(("https://", "http://")):
            raise ValueError("the FHIR base URL must be an absolute http(s) URL")
        sd = f"{base}/StructureDefinition"
        cs = f"{base}/CodeSystem"
        return cls(
            ledger_position=f"{sd}/ledger-position",
            event_detail=f"{sd}/event-detail",
            agent_npi=f"{sd}/agent-npi",
            agent_organization=f"{sd}/agent-organization",
            site_name=f"{sd}/site-name",
            producer_sequence=f"{sd}/producer-sequence",
            private_codes=f"{cs}/{dicom.PRIVATE_CODE_SYSTEM}",
            event_type_code=f"{cs}/event-type-code",
            purpose_of_use=f"{cs}/purpose-of-use",
            workforce_role=f"{cs}/workforce-role",
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryResult:
    """What one submitted AuditEvent became: an event, or the error that stopped it.

    ``index`` is the Bundle entry index (None for a lone resource); ``full_url`` the
    entry's ``fullUrl`` when it had one.
    """

    index: int | None
    full_url: str | None = None
    event: PhiAccessEvent | SecurityEvent | None = None
    error: EventValidationError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.event is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Submission:
    """Every resource of one ``POST /fhir/AuditEvent`` body, in order.

    ``kind`` is ``resource`` (a lone AuditEvent), ``batch`` (entries stand alone) or
    ``transaction`` (all or nothing: emit nothing unless ``ok``).
    """

    kind: Literal["resource", "batch", "transaction"]
    results: tuple[EntryResult, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    @property
    def events(self) -> tuple[PhiAccessEvent | SecurityEvent, ...]:
        return tuple(r.event for r in self.results if r.event is not None and r.error is None)


# --------------------------------------------------------------------------- reading JSON


def _fail(path: str, problem: str) -> EventValidationError:
    return EventValidationError(f"{path}: {problem}", field=path)


class _Node:
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
            raise _fail(self.path, "must be a JSON object")
        return self.value

    def get(self, key: str) -> _Node:
        value = self.obj().get(key) if self.value is not None else None
        return _Node(value, f"{self.path}.{key}")

    def items(self, key: str) -> list[_Node]:
        child = self.get(key)
        if child.value is None:
            return []
        if not isinstance(child.value, list):
            raise _fail(child.path, "must be a JSON array")
        return [_Node(v, f"{child.path}[{i}]") for i, v in enumerate(child.value)]

    def text(self) -> str | None:
        if self.value is None:
            return None
        if not isinstance(self.value, str):
            raise _fail(self.path, "must be a string")
        if not self.value:
            raise _fail(self.path, "must not be empty (FHIR strings have content)")
        return self.value

    def required_text(self, problem: str = "is required") -> str:
        value = self.text()
        if value is None:
            raise _fail(self.path, problem)
        return value

    def integer(self) -> int | None:
        if self.value is None:
            return None
        if not isinstance(self.value, int) or isinstance(self.value, bool):
            raise _fail(self.path, "must be an integer")
        return self.value

    def only(self, allowed: frozenset[str]) -> None:
        for key in self.obj():
            if key not in allowed:
                raise _fail(f"{self.path}.{key}", "cannot be mapped to a ledger event")

    def codings(self) -> list[_Node]:
        """The codings of a CodeableConcept node."""
        return self.items("coding")


def _code_of(coding: _Node) -> tuple[str | None, str | None]:
    return coding.get("system").text(), coding.get("code").text()


def _has_code(concept: _Node, system: str, code: str) -> bool:
    return any(_code_of(c) == (system, code) for c in concept.codings())


def _extensions(node: _Node, url: str) -> list[_Node]:
    out = []
    for ext in node.items("extension"):
        if ext.get("url").text() == url:
            out.append(ext)
    return out


def _one_extension(node: _Node, url: str) -> _Node | None:
    found = _extensions(node, url)
    if len(found) > 1:
        raise _fail(found[1].path, f"extension {url} may appear only once")
    return found[0] if found else None


def _parse_instant(node: _Node) -> datetime:
    text = node.required_text()
    m = _INSTANT.fullmatch(text)
    if m is None:
        raise _fail(node.path, "must be a FHIR instant (YYYY-MM-DDThh:mm:ss[.f](Z|+hh:mm))")
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    micros = int((m[7] or "").ljust(9, "0")[:6] or "0")  # finer than microseconds is cut
    tz = m[8]
    offset = timedelta(0)
    if tz != "Z":
        offset = timedelta(hours=int(tz[1:3]), minutes=int(tz[4:6])) * (-1 if tz[0] == "-" else 1)
    try:
        local = datetime(year, month, day, hour, minute, second, micros)
    except ValueError as exc:
        raise _fail(node.path, "is not a calendar date") from exc
    return (local - offset).replace(tzinfo=UTC)


# --------------------------------------------------------------------------- the mapping


class _Builder:
    """Collects event fields from one AuditEvent and remembers which element each came from."""

    def __init__(self, resource: _Node, names: _Names) -> None:
        self.root = resource
        self.names = names
        self.origin: dict[str, str] = {}
        self.details: dict[str, str] = {}

    def note(self, event_field: str, node: _Node) -> None:
        self.origin[event_field] = node.path

    def fhir_path(self, event_field: str) -> str:
        candidate = event_field
        while candidate:
            if candidate in self.origin:
                return self.origin[candidate]
            candidate = re.sub(r"(\[[^\]]*\]|\.[^.\[]*|^[^.\[]*)$", "", candidate)
        return self.root.path

    def add_detail(self, key: str, value: str, node: _Node) -> None:
        if key in self.details:
            raise _fail(node.path, f"detail {key!r} is given twice")
        self.details[key] = value
        self.note(f"details[{key!r}]", node)


def _event_type(b: _Builder) -> tuple[str, str | None, bool]:
    """The EventID, the EventTypeCode, and whether the ``SEC`` subtype marks the resource
    as a security event."""
    root = b.root
    type_node = root.get("type")
    if not type_node.present:
        raise _fail(type_node.path, "is required (a DICOM EventID, code system DCM)")
    system, code = _code_of(type_node)
    if system == b.names.private_codes and code == dicom.CRITICAL_RESULT_RELAY[0]:
        raise _fail(
            type_node.path,
            "critical result relays cannot be submitted as FHIR AuditEvents; "
            "emit a CriticalResultRelay event instead",
        )
    if system != DCM or code is None or code not in dicom.EVENT_IDS:
        raise _fail(
            f"{type_node.path}.code" if system == DCM else f"{type_node.path}.system",
            f"must be a DICOM EventID (system {DCM}, codes 110100-110114)",
        )
    b.note("dicom_event_id", type_node.get("code"))
    type_code: str | None = None
    security = False
    for sub in root.items("subtype"):
        sub_system, sub_code = _code_of(sub)
        if sub_system in (DCM, b.names.event_type_code):
            if type_code is not None:
                raise _fail(sub.path, "only one DICOM EventTypeCode can be recorded")
            type_code = sub.get("code").required_text()
            b.note("event_type_code", sub.get("code"))
        elif sub_system == b.names.private_codes:
            if sub_code != dicom.SECURITY_EVENT[0]:
                raise _fail(sub.path, f"private code {sub_code!r} cannot be mapped")
            if code not in dicom.SECURITY_EVENT_IDS:
                raise _fail(
                    sub.path,
                    f"a security event needs a security EventID "
                    f"({', '.join(sorted(dicom.SECURITY_EVENT_IDS))}), not {code}",
                )
            security = True
        # Other subtypes (BALP's iso-21089-lifecycle#disclose, RESTful interactions) only
        # restate what type and the recipient already say.
    return code, type_code, security


def _purpose(b: _Builder, user: _Node | None) -> str | None:
    found: list[tuple[str, _Node]] = []
    concepts = b.root.items("purposeOfEvent")
    if user is not None:
        concepts += user.items("purposeOfUse")
    for concept in concepts:
        codes = [
            c
            for c in concept.codings()
            if c.get("system").text() in (V3_ACT_REASON, b.names.purpose_of_use)
        ]
        if not codes:
            raise _fail(concept.path, f"needs a coding from {V3_ACT_REASON}")
        found.extend((c.get("code").required_text(), c.get("code")) for c in codes)
    distinct = {code for code, _ in found}
    if len(distinct) > 1:
        raise _fail(found[1][1].path, "the ledger records one purpose of use per event")
    if not found:
        return None
    b.note("purpose_of_use", found[0][1])
    return found[0][0]


def _agent_kind(agent: _Node) -> Literal["user", "recipient", "system"]:
    if agent.get("requestor").value is True:
        return "user"
    if agent.get("requestor").value not in (False, None):
        raise _fail(agent.get("requestor").path, "must be true or false")
    agent_type = agent.get("type")
    if _has_code(agent_type, V3_PARTICIPATION_TYPE, "IRCP"):
        return "recipient"
    if any(
        _code_of(c)[0] == DCM and _code_of(c)[1] in _SYSTEM_AGENT_TYPES
        for c in agent_type.codings()
    ):
        return "system"
    raise _fail(
        agent.path,
        "an agent that is neither the requesting user (requestor=true), a recipient "
        "(v3-ParticipationType IRCP) nor a system (DCM 110150/110152/110153) cannot be mapped",
    )


def _ext_text(b: _Builder, node: _Node, url: str, event_field: str) -> str | None:
    ext = _one_extension(node, url)
    if ext is None:
        return None
    value = ext.get("valueString")
    b.note(event_field, value)
    return value.required_text()


def _npi(b: _Builder, node: _Node, event_field: str) -> str | None:
    ext = _one_extension(node, b.names.agent_npi)
    if ext is None:
        return None
    value = ext.get("valueIdentifier").get("value")
    b.note(event_field, value)
    return value.required_text()


def _role(b: _Builder, agent: _Node, event_field: str, *, lenient: bool = False) -> str:
    roles = agent.items("role")
    if not roles and lenient:
        # As the DICOM mapping of a foreign message: a human user is a person, an
        # application a system (e.g. the FHIR R4 User Authentication example has no role).
        agent_type = agent.get("type")
        b.note(event_field, agent_type)
        if _has_code(agent_type, EXTRA_SECURITY_ROLE_TYPE, "humanuser"):
            return "person"
        if any(_code_of(c)[0] == DCM for c in agent_type.codings()):
            return "system"
        return "unspecified"
    if not roles:
        raise _fail(f"{agent.path}.role", "is required (the workforce role)")
    if len(roles) > 1:
        raise _fail(roles[1].path, "the ledger records one role per person")
    role = roles[0]
    for coding in role.codings():
        if coding.get("system").text() == b.names.workforce_role:
            b.note(event_field, coding.get("code"))
            return coding.get("code").required_text()
    if role.get("text").present:
        b.note(event_field, role.get("text"))
        return role.get("text").required_text()
    codings = role.codings()
    if codings:
        b.note(event_field, codings[0].get("code"))
        return codings[0].get("code").required_text()
    raise _fail(role.path, "needs a text or a coding")


def _user(b: _Builder, agent: _Node, *, lenient_role: bool = False) -> Actor:
    agent.only(_AGENT_KEYS)
    who = agent.get("who")
    user_id = who.get("identifier").get("value")
    b.note("actor.user_id", user_id)
    name = who.get("display")
    if not name.present:
        name = agent.get("name")
    b.note("actor.name", name)
    return Actor(
        user_id=user_id.required_text("is required (the unique user id)"),
        name=name.text(),
        role=_role(b, agent, "actor.role", lenient=lenient_role),
        organization=_ext_text(b, agent, b.names.agent_organization, "actor.organization"),
        npi=_npi(b, agent, "actor.npi"),
    )


def _recipient(b: _Builder, agent: _Node) -> Recipient:
    agent.only(_AGENT_KEYS)
    name = agent.get("who").get("display")
    if not name.present:
        name = agent.get("name")
    b.note("recipient.name", name)
    address = agent.get("location").get("display")
    b.note("recipient.address", address)
    return Recipient(
        name=name.required_text("is required (who received the PHI)"),
        address=address.text(),
        organization=_ext_text(b, agent, b.names.agent_organization, "recipient.organization"),
    )


def _network(agent: _Node) -> _Node:
    return agent.get("network").get("address")


def _patient(b: _Builder, entity: _Node) -> Patient:
    what = entity.get("what")
    identifier = what.get("identifier")
    value = identifier.get("value")
    if value.present:
        patient_id = value.required_text()
        b.note("patient.id", value)
    else:
        reference = what.get("reference")
        ref = reference.required_text("or what.identifier.value is required (the patient id)")
        kind, _, patient_id = ref.partition("/")
        if kind != "Patient" or not patient_id:
            raise _fail(reference.path, "must be Patient/<id>")
        b.note("patient.id", reference)
    issuer = identifier.get("assigner").get("display")
    b.note("patient.issuer", issuer)
    state: str | None = None
    for detail in entity.items("detail"):
        if detail.get("type").text() == "state":
            b.note("patient.state", detail.get("valueString"))
            state = detail.get("valueString").required_text()
        else:
            raise _fail(detail.path, "a patient detail other than state cannot be mapped")
    return Patient(id=patient_id, issuer=issuer.text(), state=state)


def _study(b: _Builder, entity: _Node) -> Study:
    value = entity.get("what").get("identifier").get("value")
    text = value.required_text("is required (urn:oid:<Study Instance UID>)")
    b.note("study.uid", value)
    uid = text.removeprefix("urn:oid:")
    accession = modality = None
    instances: int | None = None
    sop_classes: list[str] = []
    for detail in entity.items("detail"):
        kind = detail.get("type").text()
        item = detail.get("valueString")
        if kind == "accession":
            b.note("study.accession", item)
            accession = item.required_text()
        elif kind == "modality":
            b.note("study.modality", item)
            modality = item.required_text()
        elif kind == "sop-class":
            b.note(f"study.sop_classes[{len(sop_classes)}]", item)
            sop_classes.append(item.required_text())
        elif kind == "instances":
            b.note("study.instances", item)
            raw = item.required_text()
            if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
                raise _fail(item.path, "must be a count of instances (digits)")
            instances = int(raw)
        else:
            raise _fail(detail.path, f"study detail {kind!r} cannot be mapped")
    return Study(
        uid=uid,
        accession=accession,
        modality=modality,
        sop_classes=tuple(sop_classes),
        instances=instances,
    )


def _entity_kind(entity: _Node) -> Literal["patient", "study", "query"]:
    role = entity.get("role")
    what = entity.get("what")
    if _code_of(role) == (OBJECT_ROLE, "13"):
        raise _fail(
            entity.path,
            "a security resource (object-role 13, e.g. the audit log of an Audit Log Used "
            "event) cannot be mapped; the ledger records reads of itself on its own",
        )
    reference = what.get("reference").value
    if (
        _code_of(role) == (OBJECT_ROLE, "1")
        or what.get("type").value == "Patient"
        or (isinstance(reference, str) and reference.startswith("Patient/"))
    ):
        return "patient"
    if entity.get("query").present or _code_of(role) == (OBJECT_ROLE, "24"):
        return "query"
    identifier = what.get("identifier")
    if (
        identifier.get("system").value == DICOM_UID_SYSTEM
        or _has_code(identifier.get("type"), DCM, "110180")
        or what.get("type").value == "ImagingStudy"
    ):
        return "study"
    raise _fail(
        entity.path,
        "only the patient (object-role 1), a study (urn:dicom:uid, DCM 110180) and a query "
        "(object-role 24) can be mapped",
    )


def _query(b: _Builder, entity: _Node) -> None:
    entity.only(frozenset({"id", "extension", "type", "role", "query"}))
    node = entity.get("query")
    raw = node.required_text("is required for a query entity (base64 of the query)")
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise _fail(node.path, "must be base64 of UTF-8 text") from exc
    b.add_detail("query", text, node)


def _details(b: _Builder) -> None:
    for ext in _extensions(b.root, b.names.event_detail):
        key_node = value_node = None
        for part in ext.items("extension"):
            url = part.get("url").text()
            if url == "key":
                key_node = part.get("valueString")
            elif url == "value":
                value_node = part.get("valueString")
            else:
                raise _fail(part.path, "an event-detail part must be key or value")
        if key_node is None:
            raise _fail(ext.path, "an event-detail needs a key")
        key = key_node.required_text()
        value = "" if value_node is None else value_node.required_text()
        b.add_detail(key, value, ext)


def _source(b: _Builder, keep_producer: bool) -> tuple[Facility, str | None, int | None]:
    source = b.root.get("source")
    if not source.present:
        raise _fail(source.path, "is required (site = facility, observer = producer)")
    source.only(_SOURCE_KEYS)
    site = source.get("site")
    b.note("facility.id", site)
    facility = Facility(
        id=site.required_text("is required (the facility id)"),
        name=_ext_text(b, source, b.names.site_name, "facility.name"),
    )
    observer = source.get("observer").get("identifier").get("value")
    if not observer.present:
        observer = source.get("observer").get("display")
    if not keep_producer:
        if observer.present and "source.observer" not in b.details:
            b.add_detail("source.observer", observer.required_text(), observer)
        return facility, None, None
    b.note("producer_id", observer)
    producer_id = observer.required_text("is required (the producer id)")
    seq_ext = _one_extension(source, b.names.producer_sequence)
    if seq_ext is None:
        raise _fail(f"{source.path}.extension", f"needs {b.names.producer_sequence}")
    seq = seq_ext.get("valueDecimal")
    b.note("producer_seq", seq)
    value = seq.integer()
    if value is None:
        raise _fail(seq.path, "is required")
    return facility, producer_id, value


def _event_id(root: _Node, full_url: str | None) -> uuid.UUID:
    ident = root.get("id")
    if ident.present:
        try:
            return uuid.UUID(ident.required_text())
        except ValueError as exc:
            raise _fail(ident.path, "must be a UUID (the ledger deduplicates on it)") from exc
    if full_url and full_url.startswith("urn:uuid:"):
        try:
            return uuid.UUID(full_url.removeprefix("urn:uuid:"))
        except ValueError as exc:
            raise _fail("fullUrl", "is not a valid urn:uuid") from exc
    return new_event_id()


def _build(
    root: _Node, b: _Builder, *, keep_producer: bool, full_url: str | None
) -> PhiAccessEvent | SecurityEvent:
    if root.get("resourceType").value != "AuditEvent":
        raise _fail(f"{root.path}.resourceType", "must be AuditEvent")
    code, type_code, marked_security = _event_type(b)
    root.only(_TOP_LEVEL)
    event_id = _event_id(root, full_url)
    b.note("event_id", root.get("id"))

    action_node = root.get("action")
    action_text = action_node.required_text("is required (C, R, U, D or E)")
    try:
        action = EventAction(action_text)
    except ValueError as exc:
        raise _fail(action_node.path, "must be C, R, U, D or E") from exc
    b.note("action", action_node)

    outcome_node = root.get("outcome")
    outcome = _OUTCOMES.get(outcome_node.required_text("is required (0, 4, 8 or 12)"))
    if outcome is None:
        raise _fail(outcome_node.path, "must be 0, 4, 8 or 12")
    b.note("outcome", outcome_node)

    recorded = root.get("recorded")
    event_time = _parse_instant(recorded)
    b.note("event_time", recorded)

    users: list[_Node] = []
    recipients: list[_Node] = []
    systems: list[_Node] = []
    for agent in root.items("agent"):
        agent_kind = _agent_kind(agent)
        if agent_kind == "user":
            users.append(agent)
        elif agent_kind == "recipient":
            recipients.append(agent)
        else:
            systems.append(agent)
    if not users:
        raise _fail(f"{root.path}.agent", "needs the requesting user (an agent, requestor=true)")
    if len(users) > 1:
        raise _fail(users[1].path, "only one agent can be the requestor")
    if len(recipients) > 1:
        raise _fail(recipients[1].path, "the ledger records one recipient per event")
    user = users[0]
    actor = _user(b, user, lenient_role=code in dicom.SECURITY_EVENT_IDS)
    network = _network(user)
    if not network.present:  # BALP puts the client's address on the Source Role ID agent
        for agent in systems:
            if _has_code(agent.get("type"), DCM, _SOURCE_ROLE_ID) and _network(agent).present:
                network = _network(agent)
                break
    b.note("network_address", network)
    for agent in systems:
        agent.only(_AGENT_KEYS)
    recipient = _recipient(b, recipients[0]) if recipients else None
    purpose = _purpose(b, user)

    patients: list[Patient] = []
    studies: list[tuple[_Node, Study]] = []
    for entity in root.items("entity"):
        entity.only(_ENTITY_KEYS)
        kind = _entity_kind(entity)
        if kind == "patient":
            if patients:
                raise _fail(entity.path, "the ledger records one patient per event")
            patients.append(_patient(b, entity))
        elif kind == "study":
            if studies:
                raise _fail(entity.path, "the ledger records one study per event")
            studies.append((entity, _study(b, entity)))
        else:
            _query(b, entity)
    served = bool(_extensions(root, b.names.ledger_position))
    security = marked_security or (not served and code in dicom.SECURITY_EVENT_IDS and not studies)
    if security:
        if studies:
            raise _fail(studies[0][0].path, "a security event names no study")
        if recipients:
            raise _fail(recipients[0].path, "a security event has no recipient")
    elif not patients:
        raise _fail(f"{root.path}.entity", "needs the patient (object-role 1 Patient)")

    _details(b)
    outcome_desc = root.get("outcomeDesc")
    if outcome_desc.present:
        b.add_detail("outcomeDesc", outcome_desc.required_text(), outcome_desc)
    facility, producer_id, producer_seq = _source(b, keep_producer)
    if security:
        return SecurityEvent(
            event_id=event_id,
            event_time=event_time,
            producer_id=producer_id,
            producer_seq=producer_seq,
            facility=facility,
            actor=actor,
            dicom_event_id=code,
            event_type_code=type_code,
            action=action,
            outcome=outcome,
            network_address=network.text(),
            patient=patients[0] if patients else None,
            purpose_of_use=purpose,
            details=MappingProxyType(dict(b.details)),
        )
    return PhiAccessEvent(
        event_id=event_id,
        event_time=event_time,
        producer_id=producer_id,
        producer_seq=producer_seq,
        facility=facility,
        actor=actor,
        dicom_event_id=code,
        event_type_code=type_code,
        action=action,
        outcome=outcome,
        patient=patients[0],
        study=studies[0][1] if studies else None,
        network_address=network.text(),
        purpose_of_use=purpose,
        recipient=recipient,
        details=MappingProxyType(dict(b.details)),
    )


def event_from_fhir(
    resource: Mapping[str, object],
    *,
    base_url: str = DEFAULT_BASE_URL,
    keep_producer: bool = False,
    full_url: str | None = None,
    now: datetime | None = None,
) -> PhiAccessEvent | SecurityEvent:
    """The event of one FHIR R4 AuditEvent (a ``PhiAccessEvent``, or a ``SecurityEvent`` as
    the module doc says); raises ``EventValidationError``.

    The event id is the resource's ``id`` (a UUID), else the ``urn:uuid:`` of ``full_url``,
    else a new one. With ``keep_producer`` the producer id and sequence number are read
    from ``source.observer`` and the ``producer-sequence`` extension (a resource this ledger
    produced); without, they are left unset for the emitter to stamp, and the observer's id
    is kept in ``details["source.observer"]``.
    """
    names = _Names.under(base_url)
    root = _Node(resource, "AuditEvent")
    builder = _Builder(root, names)
    event = _build(root, builder, keep_producer=keep_producer, full_url=full_url)
    probe = event
    if not keep_producer:  # validate() wants producer fields; the emitter stamps real ones
        probe = replace(event, producer_id="fhir-feed", producer_seq=0)
    try:
        validate(probe, now=now)
    except EventValidationError as exc:
        path = builder.fhir_path(exc.field)
        problem = str(exc).removeprefix(f"{exc.field}: ")
        raise EventValidationError(f"{path}: {problem}", field=path) from exc
    return event


def events_from_fhir(
    document: Mapping[str, object],
    *,
    base_url: str = DEFAULT_BASE_URL,
    keep_producer: bool = False,
    now: datetime | None = None,
    max_entries: int = MAX_BUNDLE_ENTRIES,
) -> Submission:
    """Every AuditEvent of a ``POST /fhir/AuditEvent`` body, each mapped or refused.

    ``document`` is one AuditEvent or a Bundle of type ``batch`` or ``transaction``; raises
    ``EventValidationError`` only when the body as a whole is neither (or too large).
    """
    root = _Node(document, "")
    kind = root.get("resourceType").value
    if kind == "AuditEvent":
        return Submission(
            kind="resource", results=(_one(document, None, None, base_url, keep_producer, now),)
        )
    if kind != "Bundle":
        raise _fail("resourceType", "must be AuditEvent or Bundle")
    bundle = _Node(document, "Bundle")
    bundle_type = bundle.get("type").value
    if bundle_type not in ("batch", "transaction"):
        raise _fail("Bundle.type", "must be batch or transaction")
    entries = bundle.items("entry")
    if len(entries) > max_entries:
        raise _fail("Bundle.entry", f"has {len(entries)} entries; at most {max_entries}")
    results: list[EntryResult] = []
    seen: dict[uuid.UUID, int] = {}
    for i, entry in enumerate(entries):
        full_url: str | None = None
        try:
            full_url = entry.get("fullUrl").text()
            request = entry.get("request")
            if request.present:
                method = request.get("method")
                if method.value != "POST":
                    raise _fail(method.path, "must be POST (entries create AuditEvents)")
                url = request.get("url").text()
                if url is not None and url.rstrip("/") != "AuditEvent":
                    raise _fail(request.get("url").path, "must be AuditEvent")
            resource = entry.get("resource")
            if not isinstance(resource.value, dict):
                raise _fail(resource.path, "must be an AuditEvent resource")
        except EventValidationError as exc:
            results.append(EntryResult(index=i, full_url=full_url, error=exc))
            continue
        result = _one(resource.value, i, full_url, base_url, keep_producer, now)
        if result.event is not None:
            first = seen.setdefault(result.event.event_id, i)
            if first != i:
                result = EntryResult(
                    index=i,
                    full_url=full_url,
                    error=_fail("AuditEvent.id", f"has the same event id as entry {first}"),
                )
        results.append(result)
    return Submission(
        kind="transaction" if bundle_type == "transaction" else "batch", results=tuple(results)
    )


def _one(
    resource: Mapping[str, object],
    index: int | None,
    full_url: str | None,
    base_url: str,
    keep_producer: bool,
    now: datetime | None,
) -> EntryResult:
    try:
        event = event_from_fhir(
            resource, base_url=base_url, keep_producer=keep_producer, full_url=full_url, now=now
        )
    except EventValidationError as exc:
        return EntryResult(index=index, full_url=full_url, error=exc)
    return EntryResult(index=index, full_url=full_url, event=event)
