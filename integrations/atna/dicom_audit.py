"""DICOM PS3.15 A.5 audit messages (the XML body of IHE ATNA syslog) to and from events.

``events_from_dicom(payload)`` parses one audit message with the standard library's
C-accelerated ElementTree parser behind a guard that refuses any document type
declaration (so no DTD, no entity declarations and no external references: billion-laughs
and XXE payloads are refused with reason ``xml_forbidden`` before anything is expanded or
fetched; see ``_parse_xml``) and maps it to ``PhiAccessEvent`` values, to ``SecurityEvent`` values
(logins, logouts, emergency overrides, application activity, security alerts), or to one
``AuditLogUsed`` for EventID 110101. ``to_dicom_xml(event)`` is the reverse. For every
valid event ``e`` (``PhiAccessEvent``, ``SecurityEvent`` or ``AuditLogUsed``):
``events_from_dicom(to_dicom_xml(e), keep_producer=True) == (e,)``.

Invariants:

* The events of a message are a pure function of its bytes and ``default_facility``: no
  clock, no randomness, nothing from the syslog header or the transport. So a re-sent
  message yields byte-identical events (the ledger counts it as a duplicate).
* Event ids: the ``i``-th event (0-based) of a message gets the UUIDv5 (SHA-1, RFC 4122
  section 4.3) of ``ATNA_NAMESPACE`` and the message bytes, with a BOM and trailing
  white space removed, followed for ``i > 0`` by a NUL and ``i`` in decimal. A message
  this module wrote carries its event id in the ledger object (below) instead.
* A message maps, or raises ``AtnaParseError`` (the XML is unsafe, malformed, or not a
  valid audit message) or ``AtnaUnmappableError`` (``reason``: ``no_patient``,
  ``ambiguous_objects``, ``no_requestor``, ``unsupported_event``, ``invalid_event``).
  Nothing is silently dropped; the receiver keeps what does not map.

Mapping (foreign messages: any ATNA source, e.g. dcm4chee-arc):

* EventID (DCM 1101xx) -> ``dicom_event_id``; another code system -> ``unsupported_event``.
* EventTypeCode -> ``event_type_code`` (the first one that is a code); the others go to
  ``details["event_type_codes"]`` as ``system|code``.
* EventActionCode -> ``action``; EventOutcomeIndicator 0/4/8/12 -> ``outcome``;
  EventDateTime -> ``event_time`` (a time without a zone is taken as UTC);
  EventOutcomeDescription -> ``details["outcome_description"]``.
* PurposeOfUse -> ``purpose_of_use`` when it is an HL7 PurposeOfUse code, else
  ``details["purpose_of_use"]`` as ``system|code``.
* The requesting ActiveParticipant (UserIsRequestor true; else the only participant)
  -> ``actor``: UserID, UserName; role = a RoleIDCode other than the DICOM
  application/transfer roles (110150-110155) (its originalText, else its code), else
  ``person`` for UserTypeCode 1, ``system`` for UserTypeCode 2, ``person`` when it has a
  UserName, ``system`` when its role is a DICOM application/transfer role, else
  ``unspecified``.
  Its NetworkAccessPointID (else the Source Role ID participant's) -> ``network_address``;
  its AlternativeUserID -> ``details["alternative_user_id"]``.
* AuditSourceIdentification: AuditEnterpriseSiteID -> ``facility.id`` (else
  ``default_facility``, else the AuditSourceID); AuditSourceID ->
  ``details["audit_source_id"]`` (the emitter stamps the receiver as the producer).
* ParticipantObject type 1 role 1 -> ``patient`` (``id^^^issuer`` splits into id and
  issuer; a ParticipantObjectDetail ``IssuerOfPatientID`` gives the issuer instead);
  the patient's name is deliberately not recorded (minimum necessary).
* ParticipantObject type 2 role 3 ID type 110180 -> ``study``: Accession, SOPClass UIDs,
  the sum of their NumberOfInstances, ParticipantObjectDetail ``Modality``.
* The query object (PS3.15: type 2 role 3 ID type 110181 SOP Class UID; RFC 3881 and
  IHE: role 24 Query; or any object with a ParticipantObjectQuery) -> ``details["query"]``
  (ParticipantObjectQuery as UTF-8 text, or ``base64:...`` when it is binary or has
  control characters, e.g. a C-FIND identifier) and ``details["query_object_id"]`` (e.g.
  the SOP Class UID).
* Export (110106): the non-requesting participant with role 110152 Destination or 110154
  Destination Media -> ``recipient`` (UserName or UserID; NetworkAccessPointID as the
  address).
* One patient and n studies give max(n, 1) events (one per study); several patients and
  no study give one event per patient; several patients with studies are
  ``ambiguous_objects`` (the message does not say which study is whose).
* A security EventID (``schemas.dicom.SECURITY_EVENT_IDS``: 110100 Application Activity,
  110108 Network Entry, 110113 Security Alert, 110114 User Authentication) gives
  ``SecurityEvent`` values unless the message names both a patient and a study (then it
  records access to that study's images, e.g. opened under an emergency override, and is
  a ``PhiAccessEvent`` as above): one per patient named (an Emergency Override of a
  record, 110127 / 110138, names its patient), or one that names none (a login 110122, a
  logout 110123, a failed login with outcome 4 or 8: the requestor's UserID is the user
  id that was attempted). The same fields as a ``PhiAccessEvent`` map the same way; a
  missing EventActionCode is E (PS3.15 fixes it to E for these EventIDs); studies named
  without a patient go to ``details["study_uids"]``; other participants (the node that
  authenticated the user) are not recorded.
* Any other EventID with no patient is ``no_patient`` (e.g. a Query over every patient),
  except 110101.
* 110101 Audit Log Used -> ``AuditLogUsed``: the role 13 object's ParticipantObjectID (a
  path or URL) gives ``query.path`` and ``query.parameters``; a foreign message has no
  HTTP method or status, so they are ``GET`` (the event is a read) and 200/400/500 for
  outcome 0/4/8-12.

Messages this module writes add one private ParticipantObject, the *ledger object*
(ParticipantObjectIDTypeCode ``event`` in code system ``99PHILEDGER``, ParticipantObjectID
``urn:uuid:<event id>``), whose ParticipantObjectDetails carry what DICOM has no element
for (producer sequence, facility name, actor role/organisation/NPI, patient state,
recipient address/organisation, the total of instances, free-form details, the query
of an AuditLogUsed, and ``event-schema`` = ``philedger.audit.SecurityEvent`` for a
``SecurityEvent``). When it is present, those values are taken from it and the
foreign-message heuristics above are not applied: the message is a ``SecurityEvent`` if
and only if its ledger object says so (so a ``PhiAccessEvent`` with a security EventID
comes back as one).

This module imports nothing of this product but ``producers`` and the ``schemas`` data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta, timezone
from types import MappingProxyType
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from integrations.errors import AtnaParseError, AtnaUnmappableError
from producers import (
    PURPOSES_OF_USE,
    Actor,
    AuditLogUsed,
    EventAction,
    EventOutcome,
    EventValidationError,
    Facility,
    LedgerQuery,
    Patient,
    PhiAccessEvent,
    Recipient,
    SecurityEvent,
    Study,
    validate,
)
from schemas import dicom

__all__ = [
    "ATNA_NAMESPACE",
    "MSGID",
    "AuditMessage",
    "Code",
    "MappedEvent",
    "Participant",
    "ParticipantObject",
    "SopClass",
    "event_id_for",
    "events_from_dicom",
    "map_audit_message",
    "parse_audit_message",
    "to_dicom_xml",
]

#: The syslog MSGID of an IHE ATNA audit record (ITI-20).
MSGID: Final = "IHE+RFC-3881"
#: Namespace of the UUIDv5 event ids of received messages.
ATNA_NAMESPACE: Final = uuid.UUID("5f0c4a63-6d1e-5b8e-9a51-7a7e2c0b1d42")

DCM: Final = "DCM"
RFC3881: Final = "RFC-3881"
PRIVATE: Final = dicom.PRIVATE_CODE_SYSTEM
#: HL7 v3 ActReason (PurposeOfUse) code system OID.
HL7_ACT_REASON_OID: Final = "2.16.840.1.113883.5.8"
LEDGER_OBJECT_CODE: Final = "event"
#: The ledger-object detail that names the schema of a message this module wrote for a
#: ``SecurityEvent`` (a written message without it is a ``PhiAccessEvent``, or for EventID
#: 110101 an ``AuditLogUsed``).
SECURITY_SCHEMA: Final = "philedger.audit.SecurityEvent"

#: DICOM RoleIDCodes of applications and transfer ends (not a person's workforce role).
_SYSTEM_ROLES: Final = frozenset({"110150", "110151", "110152", "110153", "110154", "110155"})
_DESTINATIONS: Final = frozenset({"110152", "110154"})
_SOURCE_ROLE: Final = "110153"
_OUTCOMES: Final[Mapping[str, EventOutcome]] = MappingProxyType(
    {
        "0": EventOutcome.SUCCESS,
        "4": EventOutcome.MINOR_FAILURE,
        "8": EventOutcome.SERIOUS_FAILURE,
        "12": EventOutcome.MAJOR_FAILURE,
    }
)
_OUTCOME_CODES: Final[Mapping[EventOutcome, str]] = MappingProxyType(
    {v: k for k, v in _OUTCOMES.items()}
)
#: Longest ``details`` value (``producers.events.MAX_TEXT_CHARS``).
_MAX_DETAIL: Final = 1024
#: HTTP status a foreign Audit Log Used message stands for, by outcome.
_STATUS_OF_OUTCOME: Final[Mapping[EventOutcome, int]] = MappingProxyType(
    {
        EventOutcome.SUCCESS: 200,
        EventOutcome.MINOR_FAILURE: 400,
        EventOutcome.SERIOUS_FAILURE: 500,
        EventOutcome.MAJOR_FAILURE: 500,
    }
)
_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?(Z|[+-]\d{2}:\d{2})?"
)
_CODE = re.compile(r"[A-Za-z0-9_.-]{1,32}")
_TOKEN = re.compile(r"[!-~]+")
#: Characters XML 1.0 cannot carry at all (plus lone surrogates).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
#: Control characters that make a query binary rather than text.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_TRAILING_SPACE: Final = b" \t\r\n"
_SOURCE: Final = "AuditSourceIdentification"
_UTF8_BOM: Final = b"\xef\xbb\xbf"


#: What one audit message maps to.
MappedEvent = PhiAccessEvent | AuditLogUsed | SecurityEvent

# --------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class Code:
    """A DICOM coded value (``csd-code``, or RFC 3881's ``code``)."""

    code: str
    system: str | None = None
    original_text: str | None = None

    def is_(self, system: str, code: str) -> bool:
        return self.system == system and self.code == code


@dataclass(frozen=True, slots=True, kw_only=True)
class Participant:
    user_id: str
    alternative_user_id: str | None = None
    user_name: str | None = None
    is_requestor: bool = False
    network_access_point_id: str | None = None
    network_access_point_type: str | None = None
    user_type_code: str | None = None
    roles: tuple[Code, ...] = ()

    def has_role(self, codes: frozenset[str]) -> bool:
        return any(r.system == DCM and r.code in codes for r in self.roles)


@dataclass(frozen=True, slots=True)
class SopClass:
    uid: str | None
    instances: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ParticipantObject:
    object_id: str
    type_code: str | None
    role: str | None
    id_type: Code
    name: str | None = None
    query: bytes | None = None
    details: tuple[tuple[str, bytes], ...] = ()
    accessions: tuple[str, ...] = ()
    sop_classes: tuple[SopClass, ...] = ()

    def detail(self, kind: str) -> bytes | None:
        for key, value in self.details:
            if key == kind:
                return value
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditMessage:
    """One parsed DICOM audit message (PS3.15 A.5.1), before any mapping."""

    event_id: Code
    action: str | None
    event_time: datetime
    outcome: str
    event_types: tuple[Code, ...]
    outcome_description: str | None
    purposes: tuple[Code, ...]
    participants: tuple[Participant, ...]
    source_id: str
    enterprise_site_id: str | None
    source_types: tuple[str, ...]
    objects: tuple[ParticipantObject, ...]


# --------------------------------------------------------------------------- parsing


def _xml_fail(problem: str, reason: str = "xml_invalid") -> AtnaParseError:
    return AtnaParseError(f"DICOM audit message: {problem}", reason=reason)


def _strip_namespaces(root: ET.Element) -> None:
    """Audit messages have no namespace; a sender that adds one gets it ignored."""
    for el in root.iter():
        tag = el.tag
        if isinstance(tag, str) and "}" in tag:
            el.tag = tag.rpartition("}")[2]


def _attr(el: ET.Element, name: str, path: str, *, required: bool = False) -> str | None:
    value = el.get(name)
    if not value:
        if required:
            raise _xml_fail(f"{path}@{name} is required")
        return None
    return value


def _code(el: ET.Element, path: str, name: str) -> Code:
    get = el.get
    code = get("csd-code") or get("code")
    if not code:
        raise _xml_fail(f"{path}/{name}@csd-code is required")
    return Code(
        code.strip(),
        get("codeSystemName") or get("codeSystem") or None,
        get("originalText") or get("displayName") or None,
    )


def _base64(text: str | None, path: str) -> bytes:
    try:
        return base64.b64decode("".join((text or "").split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _xml_fail(f"{path} is not base64") from exc


def _datetime(text: str, path: str) -> datetime:
    m = _DATETIME.fullmatch(text.strip())
    if m is None:
        raise _xml_fail(f"{path} {text[:40]!r} is not an xs:dateTime")
    year, month, day, hour, minute, second = (int(m[i]) for i in range(1, 7))
    micros = int((m[7] or "")[:6].ljust(6, "0"))
    zone = m[8]
    try:
        tz: timezone = UTC
        if zone and zone != "Z":
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 14 or minutes > 59:
                raise ValueError("offset")
            offset = timedelta(hours=hours, minutes=minutes)
            tz = timezone(-offset if zone[0] == "-" else offset)
        local = datetime(year, month, day, hour, minute, second, micros, tzinfo=tz)
    except ValueError as exc:
        raise _xml_fail(f"{path} {text[:40]!r} is not a valid time") from exc
    return local if tz is UTC else local.astimezone(UTC)


def _bool(text: str | None, path: str, default: bool) -> bool:
    if text is None:
        return default
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise _xml_fail(f"{path} must be true or false")


def _participant(el: ET.Element, index: int) -> Participant:
    get = el.get
    path = f"ActiveParticipant[{index}]"
    user_id = get("UserID")
    if not user_id:
        raise _xml_fail(f"{path}@UserID is required")
    return Participant(
        user_id=user_id,
        alternative_user_id=get("AlternativeUserID") or None,
        user_name=get("UserName") or None,
        # RFC 3881 and DICOM: UserIsRequestor defaults to true when absent.
        is_requestor=_bool(get("UserIsRequestor"), f"{path}@UserIsRequestor", True),
        network_access_point_id=get("NetworkAccessPointID") or None,
        network_access_point_type=get("NetworkAccessPointTypeCode") or None,
        user_type_code=get("UserTypeCode") or None,
        roles=tuple(_code(c, path, "RoleIDCode") for c in el if c.tag == "RoleIDCode"),
    )


def _description_item(
    child: ET.Element, accessions: list[str], sops: list[SopClass], path: str
) -> None:
    tag = child.tag
    if tag == "Accession":
        number = _attr(child, "Number", f"{path}/Accession", required=True)
        if number:
            accessions.append(number)
    elif tag == "SOPClass":
        raw = child.get("NumberOfInstances")
        count: int | None = None
        if raw is not None:
            raw = raw.strip()
            if not raw.isdigit() or not raw.isascii() or len(raw) > 10:
                raise _xml_fail(f"{path}/SOPClass@NumberOfInstances must be a count")
            count = int(raw)
        sops.append(SopClass(child.get("UID") or None, count))


def _object(el: ET.Element, index: int) -> ParticipantObject:
    path = f"ParticipantObjectIdentification[{index}]"
    id_type: Code | None = None
    name: str | None = None
    query: bytes | None = None
    details: list[tuple[str, bytes]] = []
    accessions: list[str] = []
    sops: list[SopClass] = []
    for child in el:
        tag = child.tag
        if tag == "ParticipantObjectIDTypeCode":
            id_type = _code(child, path, tag)
        elif tag == "ParticipantObjectDetail":
            kind = child.get("type")
            if not kind:
                raise _xml_fail(f"{path}/{tag}@type is required")
            details.append((kind, _base64(child.get("value"), f"{path}/{tag}@value")))
        elif tag == "ParticipantObjectName":
            name = (child.text or "").strip() or None
        elif tag == "ParticipantObjectQuery":
            query = _base64(child.text, f"{path}/{tag}")
        elif tag == "ParticipantObjectDescription":
            for item in child:
                _description_item(item, accessions, sops, f"{path}/{tag}")
        else:
            # Current DICOM puts SOPClass and Accession directly in the object, older
            # versions in ParticipantObjectDescription: accept both.
            _description_item(child, accessions, sops, path)
    if id_type is None:
        raise _xml_fail(f"{path}/ParticipantObjectIDTypeCode is required")
    object_id = el.get("ParticipantObjectID")
    if not object_id:
        raise _xml_fail(f"{path}@ParticipantObjectID is required")
    return ParticipantObject(
        object_id=object_id,
        type_code=el.get("ParticipantObjectTypeCode") or None,
        role=el.get("ParticipantObjectTypeCodeRole") or None,
        id_type=id_type,
        name=name,
        query=query,
        details=tuple(details),
        accessions=tuple(accessions),
        sop_classes=tuple(sops),
    )


class _ForbiddenXml(Exception):
    """The document declares a DTD (the only place entities can be declared)."""


class _NoDoctype(ET.TreeBuilder):
    """ElementTree's C tree builder, refusing any ``<!DOCTYPE``.

    The C parser calls ``doctype`` as the declaration starts, before its internal subset
    (entity declarations) is read. Without a DTD no entity can be declared, so a
    reference other than the five predefined ones is a well-formedness error, and
    ElementTree never fetches anything external. Subclassing keeps expat's C callbacks
    (about twice as fast as ``defusedxml``'s pure-Python ones, see docs/atna.md).
    """

    def doctype(self, name: str, pubid: str | None, system: str | None) -> None:
        raise _ForbiddenXml(f"a document type declaration ({name[:40]!r})")


def _declares_doctype(payload: bytes) -> bool:
    """A quick look before expat starts (which, once started, reads on to the end even
    after the guard refused): ASCII-compatible encodings and UTF-16, the only other one
    expat detects by itself. Anything this misses, the guard refuses."""
    if b"<!DOCTYPE" in payload:
        return True
    head = payload[:4]
    if b"\x00" not in head and head[:2] not in (b"\xff\xfe", b"\xfe\xff"):
        return False
    big_endian = head[:2] == b"\xfe\xff" or head[:1] == b"\x00"
    text = payload.decode("utf-16-be" if big_endian else "utf-16-le", errors="replace")
    return "<!DOCTYPE" in text


def _parse_xml(payload: bytes) -> ET.Element:
    if _declares_doctype(payload):
        raise _ForbiddenXml("a document type declaration")
    # S314: the guard refuses DTDs, hence every entity and external-reference attack
    # defusedxml exists for (tests/unit/test_atna_parsing.py, the hostile XML cases).
    parser = ET.XMLParser(target=_NoDoctype())  # noqa: S314
    parser.feed(payload)
    root: ET.Element = parser.close()
    return root


def parse_audit_message(payload: bytes) -> AuditMessage:
    """Parse a DICOM audit message safely; raises ``AtnaParseError``.

    Reasons: ``xml_forbidden`` (a DTD, entity declaration or external reference: refused
    before anything is expanded or fetched), ``xml_malformed``, ``xml_not_audit_message``
    (another root element), ``xml_invalid`` (a required element or attribute is missing
    or malformed).
    """
    try:
        root = _parse_xml(payload)
    except _ForbiddenXml as exc:
        raise _xml_fail(f"refused unsafe XML: {exc}", "xml_forbidden") from exc
    except ET.ParseError as exc:
        raise _xml_fail(f"not well-formed XML ({exc})", "xml_malformed") from exc
    except (ValueError, LookupError) as exc:  # e.g. an unknown encoding declaration
        raise _xml_fail(f"not well-formed XML ({exc})", "xml_malformed") from exc
    if root.tag.startswith("{"):
        _strip_namespaces(root)
    if root.tag != "AuditMessage":
        raise _xml_fail(
            f"the root element is {root.tag[:40]!r}, not AuditMessage", "xml_not_audit_message"
        )
    ident: ET.Element | None = None
    participants: list[Participant] = []
    source: ET.Element | None = None
    objects: list[ParticipantObject] = []
    for child in root:
        tag = child.tag
        if tag == "ParticipantObjectIdentification":
            objects.append(_object(child, len(objects)))
        elif tag == "ActiveParticipant":
            participants.append(_participant(child, len(participants)))
        elif tag == "EventIdentification":
            if ident is not None:
                raise _xml_fail("EventIdentification appears twice")
            ident = child
        elif tag == "AuditSourceIdentification":
            if source is not None:
                raise _xml_fail("AuditSourceIdentification appears twice")
            source = child
    if ident is None:
        raise _xml_fail("EventIdentification is required")
    if source is None:
        raise _xml_fail("AuditSourceIdentification is required")
    if not participants:
        raise _xml_fail("at least one ActiveParticipant is required")
    event_code: Code | None = None
    types: list[Code] = []
    purposes: list[Code] = []
    description: str | None = None
    for child in ident:
        tag = child.tag
        if tag == "EventID":
            event_code = _code(child, "EventIdentification", tag)
        elif tag == "EventTypeCode":
            types.append(_code(child, "EventIdentification", tag))
        elif tag == "PurposeOfUse":
            purposes.append(_code(child, "EventIdentification", tag))
        elif tag == "EventOutcomeDescription":
            description = (child.text or "").strip() or None
    if event_code is None:
        raise _xml_fail("EventIdentification/EventID is required")
    when = _attr(ident, "EventDateTime", "EventIdentification", required=True) or ""
    outcome = _attr(ident, "EventOutcomeIndicator", "EventIdentification", required=True) or ""
    source_types: list[str] = []
    for child in source:
        if child.tag == "AuditSourceTypeCode":
            code = child.get("csd-code") or child.get("code") or (child.text or "").strip()
            if code:
                source_types.append(code)
    return AuditMessage(
        event_id=event_code,
        action=ident.get("EventActionCode") or None,
        event_time=_datetime(when, "EventIdentification@EventDateTime"),
        outcome=outcome.strip(),
        event_types=tuple(types),
        outcome_description=description,
        purposes=tuple(purposes),
        participants=tuple(participants),
        source_id=_attr(source, "AuditSourceID", _SOURCE, required=True) or "",
        enterprise_site_id=source.get("AuditEnterpriseSiteID") or None,
        source_types=tuple(source_types),
        objects=tuple(objects),
    )


# --------------------------------------------------------------------------- mapping


def _unmappable(reason: str, problem: str, field: str | None = None) -> AtnaUnmappableError:
    return AtnaUnmappableError(f"DICOM audit message: {problem}", reason=reason, field=field)


def _identity_bytes(payload: bytes) -> bytes:
    body = payload[3:] if payload.startswith(_UTF8_BOM) else payload
    return body.rstrip(_TRAILING_SPACE)


def event_id_for(payload: bytes, index: int = 0) -> uuid.UUID:
    """The event id of the ``index``-th event of a received message (see the module doc)."""
    name = _identity_bytes(payload)
    if index:
        name += b"\x00%d" % index
    digest = hashlib.sha1(ATNA_NAMESPACE.bytes + name, usedforsecurity=False).digest()
    return uuid.UUID(bytes=digest[:16], version=5)


def _text(value: bytes, field: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _unmappable("invalid_event", f"{field} is not UTF-8 text", field) from exc


class _Ledger:
    """The private ledger object of a message this module wrote."""

    def __init__(self, obj: ParticipantObject) -> None:
        text = obj.object_id
        if not text.startswith("urn:uuid:"):
            raise _unmappable("invalid_event", "the ledger object needs a urn:uuid: id")
        try:
            self.event_id = uuid.UUID(text.removeprefix("urn:uuid:"))
        except ValueError as exc:
            raise _unmappable("invalid_event", "the ledger object's id is not a UUID") from exc
        self.values: dict[str, str] = {}
        self.pairs: dict[str, list[tuple[str, str]]] = {}
        for key, raw in obj.details:
            value = _text(raw, f"ledger detail {key}")
            if key in ("detail", "query-parameter"):
                try:
                    pair = json.loads(value)
                except ValueError as exc:
                    raise _unmappable("invalid_event", f"ledger {key} is not JSON") from exc
                if not (
                    isinstance(pair, list)
                    and len(pair) == 2
                    and all(isinstance(p, str) for p in pair)
                ):
                    raise _unmappable("invalid_event", f"ledger {key} must be [key, value]")
                self.pairs.setdefault(key, []).append((pair[0], pair[1]))
            else:
                self.values[key] = value

    def get(self, key: str) -> str | None:
        return self.values.get(key)

    def integer(self, key: str) -> int | None:
        value = self.values.get(key)
        if value is None:
            return None
        if not value.isascii() or not value.lstrip("-").isdigit():
            raise _unmappable("invalid_event", f"ledger detail {key} must be an integer")
        return int(value)


def _requestor(msg: AuditMessage) -> Participant:
    for p in msg.participants:
        if p.is_requestor:
            return p
    if len(msg.participants) == 1:
        return msg.participants[0]
    raise _unmappable("no_requestor", "no ActiveParticipant is the requestor")


def _foreign_role(p: Participant) -> str:
    for role in p.roles:
        if role.system == PRIVATE:
            return role.code
    for role in p.roles:
        if not (role.system == DCM and role.code in _SYSTEM_ROLES):
            return role.original_text or role.code
    if p.user_type_code == "1":
        return "person"
    if p.user_type_code == "2":
        return "system"
    if p.user_name:
        return "person"
    if p.has_role(_SYSTEM_ROLES):
        return "system"
    return "unspecified"


def _split_patient_id(obj: ParticipantObject) -> tuple[str, str | None]:
    issuer = obj.detail("IssuerOfPatientID")
    if issuer is not None:
        text = _text(issuer, "IssuerOfPatientID")
        return obj.object_id, text or None
    pid, sep, rest = obj.object_id.partition("^^^")
    if not sep:
        return obj.object_id, None
    # HL7 CX: id^check digit^scheme^assigning authority (namespace&universal id&type).
    authority = rest.split("^", 1)[0]
    namespace, _, universal = authority.partition("&")
    issuer_text = namespace or universal.split("&", 1)[0]
    return pid, issuer_text or None


def _is_patient(obj: ParticipantObject) -> bool:
    return obj.type_code == "1" and obj.role == "1"


def _is_study(obj: ParticipantObject) -> bool:
    return obj.type_code == "2" and obj.role == "3" and obj.id_type.code == "110180"


def _is_query(obj: ParticipantObject) -> bool:
    """PS3.15 Query: type 2, role 3, ID type 110181 (SOP Class UID) with the query;
    RFC 3881 / IHE ITI: role 24 (Query)."""
    if _is_patient(obj) or _is_study(obj):
        return False
    return obj.query is not None or obj.role == "24" or obj.id_type.is_(DCM, "110181")


def _is_ledger(obj: ParticipantObject) -> bool:
    return obj.id_type.system == PRIVATE and obj.id_type.code == LEDGER_OBJECT_CODE


def _study(obj: ParticipantObject, ledger: _Ledger | None) -> Study:
    modality_raw = obj.detail("Modality")
    modality = None if modality_raw is None else _text(modality_raw, "Modality")
    uids = tuple(s.uid for s in obj.sop_classes if s.uid)
    counts = [s.instances for s in obj.sop_classes]
    instances: int | None = None
    if ledger is not None:
        instances = ledger.integer("study-instances")
        if instances is None and len(counts) == 1:
            instances = counts[0]
    elif counts and all(c is not None for c in counts):
        instances = sum(c for c in counts if c is not None)
    return Study(
        uid=obj.object_id,
        accession=obj.accessions[0] if obj.accessions else None,
        modality=modality,
        sop_classes=uids,
        instances=instances,
    )


def _query_text(obj: ParticipantObject) -> str | None:
    if obj.query is None:
        return None
    try:
        text = obj.query.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or _CONTROL.search(text):  # binary, e.g. a C-FIND identifier
        return "base64:" + base64.b64encode(obj.query).decode("ascii")
    return text


def _network(msg: AuditMessage, requestor: Participant) -> str | None:
    if requestor.network_access_point_id:
        return requestor.network_access_point_id
    for p in msg.participants:
        if p.has_role(frozenset({_SOURCE_ROLE})) and p.network_access_point_id:
            return p.network_access_point_id
    return None


def _actor(requestor: Participant, ledger: _Ledger | None) -> Actor:
    if ledger is not None:
        role = ledger.get("actor-role") or _foreign_role(requestor)
        return Actor(
            user_id=requestor.user_id,
            name=requestor.user_name,
            role=role,
            organization=ledger.get("actor-organization"),
            npi=ledger.get("actor-npi"),
        )
    return Actor(user_id=requestor.user_id, name=requestor.user_name, role=_foreign_role(requestor))


def _outcome(msg: AuditMessage) -> EventOutcome:
    outcome = _OUTCOMES.get(msg.outcome)
    if outcome is None:
        raise _unmappable(
            "invalid_event",
            f"EventOutcomeIndicator {msg.outcome[:8]!r} is not 0, 4, 8 or 12",
            "EventIdentification@EventOutcomeIndicator",
        )
    return outcome


def _facility(msg: AuditMessage, ledger: _Ledger | None, default: str | None) -> Facility:
    site = msg.enterprise_site_id or default or msg.source_id
    return Facility(id=site, name=None if ledger is None else ledger.get("facility-name"))


def _producer(
    msg: AuditMessage, ledger: _Ledger | None, keep_producer: bool
) -> tuple[str | None, int | None]:
    if not keep_producer:
        return None, None
    if ledger is None or ledger.integer("producer-seq") is None:
        raise _unmappable(
            "invalid_event", "keep_producer needs a message with the ledger object", "producer_seq"
        )
    return msg.source_id, ledger.integer("producer-seq")


def _check(event: MappedEvent, now: datetime | None) -> None:
    probe = event
    if event.producer_id is None or event.producer_seq is None:
        probe = replace(event, producer_id="atna-receiver", producer_seq=0)
    try:
        validate(probe, now=now)
    except EventValidationError as exc:
        raise _unmappable("invalid_event", str(exc), exc.field) from exc


def map_audit_message(
    msg: AuditMessage,
    payload: bytes,
    *,
    default_facility: str | None = None,
    keep_producer: bool = False,
    now: datetime | None = None,
    check: bool = True,
) -> tuple[MappedEvent, ...]:
    """The events of one parsed message (``payload`` = its bytes, for the event ids).

    Every returned event passed ``producers.events.validate`` (producer fields aside
    unless ``keep_producer``); raises ``AtnaUnmappableError`` otherwise. ``check=False``
    skips that validation, for a caller that hands the events to ``Emitter.emit``, which
    validates them anyway (``EventValidationError``).
    """
    code = msg.event_id
    if code.system != DCM or code.code not in dicom.EVENT_IDS:
        raise _unmappable(
            "unsupported_event",
            f"EventID {code.system}|{code.code} is not a DICOM EventID (DCM 110100-110114)",
            "EventIdentification/EventID",
        )
    ledgers = [o for o in msg.objects if _is_ledger(o)]
    if len(ledgers) > 1:
        raise _unmappable("ambiguous_objects", "more than one ledger object")
    ledger = _Ledger(ledgers[0]) if ledgers else None
    requestor = _requestor(msg)
    outcome = _outcome(msg)
    producer_id, producer_seq = _producer(msg, ledger, keep_producer)
    facility = _facility(msg, ledger, default_facility)
    actor = _actor(requestor, ledger)
    network = _network(msg, requestor)
    patients = [o for o in msg.objects if _is_patient(o) and o.object_id != "<none>"]
    if code.code == "110101":
        log_used = _audit_log_used(msg, ledger, actor, outcome, facility, network, patients)
        log_used = replace(
            log_used,
            event_id=ledger.event_id if ledger is not None else event_id_for(payload),
            producer_id=producer_id,
            producer_seq=producer_seq,
        )
        if check:
            _check(log_used, now)
        return (log_used,)
    studies = [o for o in msg.objects if _is_study(o)]
    if _is_security(code.code, ledger, patients, studies):
        found = _details(msg, ledger, requestor, keep_producer)
        security = SecurityEvent(
            event_time=msg.event_time,
            producer_id=producer_id,
            producer_seq=producer_seq,
            facility=facility,
            actor=actor,
            dicom_event_id=code.code,
            event_type_code=_type_code(msg, ledger, found),
            action=_security_action(msg),
            outcome=outcome,
            network_address=network,
            purpose_of_use=_purpose(msg, found),
        )
        return _security_events(
            security, found, msg, payload, ledger, patients, studies, now, check
        )
    if not patients:
        raise _unmappable(
            "no_patient",
            f"EventID {code.code} ({dicom.EVENT_IDS[code.code]}) names no patient; "
            "PhiAccessEvent needs one",
        )
    if len(patients) > 1 and studies:
        raise _unmappable(
            "ambiguous_objects",
            f"{len(patients)} patients and {len(studies)} studies: which study is whose "
            "is not stated",
        )
    action_text = msg.action
    if action_text is None:
        raise _unmappable(
            "invalid_event", "EventActionCode is required", "EventIdentification@EventActionCode"
        )
    try:
        action = EventAction(action_text)
    except ValueError as exc:
        raise _unmappable(
            "invalid_event",
            f"EventActionCode {action_text[:8]!r} is not C, R, U, D or E",
            "EventIdentification@EventActionCode",
        ) from exc
    found = _details(msg, ledger, requestor, keep_producer)
    type_code = _type_code(msg, ledger, found)
    purpose = _purpose(msg, found)
    details = MappingProxyType(found)
    recipient = _recipient(msg, ledger, requestor)
    pairs: list[tuple[ParticipantObject, ParticipantObject | None]]
    if len(patients) == 1:
        pairs = [(patients[0], s) for s in studies] or [(patients[0], None)]
    else:
        pairs = [(p, None) for p in patients]
    if ledger is not None and len(pairs) > 1:
        raise _unmappable("ambiguous_objects", "a message with the ledger object is one event")
    state = None if ledger is None else ledger.get("patient-state")
    events: list[PhiAccessEvent] = []
    for index, (patient_obj, study_obj) in enumerate(pairs):
        pid, issuer = _split_patient_id(patient_obj)
        event = PhiAccessEvent(
            event_id=ledger.event_id if ledger is not None else event_id_for(payload, index),
            event_time=msg.event_time,
            producer_id=producer_id,
            producer_seq=producer_seq,
            facility=facility,
            actor=actor,
            dicom_event_id=code.code,
            event_type_code=type_code,
            action=action,
            outcome=outcome,
            patient=Patient(id=pid, issuer=issuer, state=state),
            study=None if study_obj is None else _study(study_obj, ledger),
            network_address=network,
            purpose_of_use=purpose,
            recipient=recipient,
            details=details,
        )
        if check:
            _check(event, now)
        events.append(event)
    return tuple(events)


def _is_security(
    code: str,
    ledger: _Ledger | None,
    patients: list[ParticipantObject],
    studies: list[ParticipantObject],
) -> bool:
    """Whether the message is a ``SecurityEvent``. A message this module wrote says so in
    its ledger object; a foreign one is when its EventID is a security one and it does not
    name both a patient and a study (then it records access to that study's images, e.g.
    under an emergency override, and is a ``PhiAccessEvent``)."""
    if ledger is not None:
        return ledger.get("event-schema") == SECURITY_SCHEMA
    return code in dicom.SECURITY_EVENT_IDS and not (patients and studies)


def _security_action(msg: AuditMessage) -> EventAction:
    """EventActionCode; PS3.15 A.5.3 fixes it to E for every security EventID, so a message
    without one is taken as E."""
    if msg.action is None:
        return EventAction.EXECUTE
    try:
        return EventAction(msg.action)
    except ValueError as exc:
        raise _unmappable(
            "invalid_event",
            f"EventActionCode {msg.action[:8]!r} is not C, R, U, D or E",
            "EventIdentification@EventActionCode",
        ) from exc


def _security_events(
    template: SecurityEvent,
    found: dict[str, str],
    msg: AuditMessage,
    payload: bytes,
    ledger: _Ledger | None,
    patients: list[ParticipantObject],
    studies: list[ParticipantObject],
    now: datetime | None,
    check: bool,
) -> tuple[SecurityEvent, ...]:
    """One event per patient named (an emergency override of several records), or one that
    names none (a login). Studies named without a patient go to ``details["study_uids"]``."""
    if studies and ledger is None:
        uids = ",".join(o.object_id for o in studies)
        found["study_uids"] = uids if len(uids) <= _MAX_DETAIL else uids[: _MAX_DETAIL - 1] + "…"
    if ledger is not None and len(patients) > 1:
        raise _unmappable("ambiguous_objects", "a message with the ledger object is one event")
    state = None if ledger is None else ledger.get("patient-state")
    targets: list[ParticipantObject | None] = list(patients) or [None]
    events: list[SecurityEvent] = []
    for index, obj in enumerate(targets):
        patient: Patient | None = None
        if obj is not None:
            pid, issuer = _split_patient_id(obj)
            patient = Patient(id=pid, issuer=issuer, state=state)
        event = replace(
            template,
            event_id=ledger.event_id if ledger is not None else event_id_for(payload, index),
            patient=patient,
            details=MappingProxyType(dict(found)),
        )
        if check:
            _check(event, now)
        events.append(event)
    return tuple(events)


def _details(
    msg: AuditMessage, ledger: _Ledger | None, requestor: Participant, keep_producer: bool
) -> dict[str, str]:
    details: dict[str, str] = {}
    if ledger is not None:
        details.update(ledger.pairs.get("detail", []))
    else:
        if msg.outcome_description:
            details["outcome_description"] = msg.outcome_description
        if requestor.alternative_user_id:
            details["alternative_user_id"] = requestor.alternative_user_id
    for obj in msg.objects:
        if _is_query(obj):
            text = _query_text(obj)
            if text is not None:
                details["query"] = text
            if ledger is None:
                details["query_object_id"] = obj.object_id
            break
    if not keep_producer:
        details["audit_source_id"] = msg.source_id
    return details


def _type_code(msg: AuditMessage, ledger: _Ledger | None, details: dict[str, str]) -> str | None:
    chosen: str | None = None
    others: list[str] = []
    for t in msg.event_types:
        if chosen is None and _CODE.fullmatch(t.code):
            chosen = t.code
        else:
            others.append(f"{t.system or ''}|{t.code}")
    if others and ledger is None:
        details["event_type_codes"] = ",".join(others)
    return chosen


def _purpose(msg: AuditMessage, details: dict[str, str]) -> str | None:
    if not msg.purposes:
        return None
    first = msg.purposes[0]
    if first.code in PURPOSES_OF_USE:
        return first.code
    details["purpose_of_use"] = f"{first.system or ''}|{first.code}"
    return None


def _recipient(
    msg: AuditMessage, ledger: _Ledger | None, requestor: Participant
) -> Recipient | None:
    if ledger is None and msg.event_id.code != "110106":
        return None
    for p in msg.participants:
        if p is requestor or p.is_requestor or not p.has_role(_DESTINATIONS):
            continue
        if ledger is not None:
            return Recipient(
                name=p.user_name or p.user_id,
                address=ledger.get("recipient-address"),
                organization=ledger.get("recipient-organization"),
            )
        return Recipient(name=p.user_name or p.user_id, address=p.network_access_point_id)
    return None


def _audit_log_used(
    msg: AuditMessage,
    ledger: _Ledger | None,
    actor: Actor,
    outcome: EventOutcome,
    facility: Facility,
    network: str | None,
    patients: list[ParticipantObject],
) -> AuditLogUsed:
    logs = [o for o in msg.objects if o.role == "13"]
    if not logs:
        raise _unmappable(
            "invalid_event",
            "Audit Log Used needs the audit log as a participant object (role 13)",
            "ParticipantObjectIdentification",
        )
    if len(patients) > 1:
        raise _unmappable("ambiguous_objects", "an Audit Log Used event names one patient")
    log = logs[0]
    if ledger is not None:
        method = ledger.get("query-method") or "GET"
        path = log.object_id
        parameters = dict(ledger.pairs.get("query-parameter", []))
        status = ledger.integer("query-status")
        results = ledger.integer("query-results")
    else:
        ident = log.object_id
        if ident.startswith("/"):
            path, _, query = ident.partition("?")
        elif "://" in ident:
            parts = urlsplit(ident)
            path, query = parts.path or "/", parts.query
        else:
            raise _unmappable(
                "invalid_event",
                "the audit log's ParticipantObjectID is neither a path nor a URL",
                "ParticipantObjectIdentification@ParticipantObjectID",
            )
        method = "GET"
        parameters = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            parameters.setdefault(key, value)
        status = _STATUS_OF_OUTCOME[outcome]
        results = None
    patient: Patient | None = None
    if patients:
        pid, issuer = _split_patient_id(patients[0])
        patient = Patient(
            id=pid, issuer=issuer, state=None if ledger is None else ledger.get("patient-state")
        )
    return AuditLogUsed(
        event_time=msg.event_time,
        facility=facility,
        actor=actor,
        query=LedgerQuery(
            method=method,
            path=path,
            status=status if status is not None else _STATUS_OF_OUTCOME[outcome],
            parameters=MappingProxyType(parameters),
            results=results,
        ),
        outcome=outcome,
        network_address=network,
        patient=patient,
    )


def events_from_dicom(
    payload: bytes,
    *,
    default_facility: str | None = None,
    keep_producer: bool = False,
    now: datetime | None = None,
    check: bool = True,
) -> tuple[MappedEvent, ...]:
    """Parse and map one DICOM audit message (the MSG of an ATNA syslog message).

    Raises ``AtnaParseError`` or ``AtnaUnmappableError`` (see the module doc). With
    ``keep_producer`` the producer id and sequence come from a message this module wrote
    (AuditSourceID and the ledger object); without, they are left for the emitter to
    stamp and the AuditSourceID is kept in ``details["audit_source_id"]``.
    """
    msg = parse_audit_message(payload)
    return map_audit_message(
        msg,
        payload,
        default_facility=default_facility,
        keep_producer=keep_producer,
        now=now,
        check=check,
    )


# --------------------------------------------------------------------------- writing


def _check_xml_text(value: str, field: str) -> str:
    if _XML_ILLEGAL.search(value):
        raise ValueError(f"{field} holds a character XML 1.0 cannot carry")
    return value


def _b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def _coded(parent: ET.Element, tag: str, code: str, system: str, text: str | None) -> None:
    attrs = {"csd-code": code, "codeSystemName": system}
    if text:
        attrs["originalText"] = text
    ET.SubElement(parent, tag, attrs)


def _network_type(address: str) -> str:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return "5" if "://" in address else "1"
    return "2"


def _format_time(when: datetime) -> str:
    if when.utcoffset() is None:
        raise ValueError("event_time must be timezone-aware")
    utc = when.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S") + f".{utc.microsecond:06d}Z"


def _detail(parent: ET.Element, kind: str, value: str) -> None:
    ET.SubElement(parent, "ParticipantObjectDetail", {"type": kind, "value": _b64(value)})


def _pair(parent: ET.Element, kind: str, key: str, value: str) -> None:
    _detail(parent, kind, json.dumps([key, value], ensure_ascii=False))


def _patient_object(parent: ET.Element, patient: Patient) -> None:
    safe = "^" not in patient.id and (
        patient.issuer is None or not re.search(r"[\^&]", patient.issuer)
    )
    ident = patient.id if patient.issuer is None else f"{patient.id}^^^{patient.issuer}"
    obj = ET.SubElement(
        parent,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": ident if safe else patient.id,
            "ParticipantObjectTypeCode": "1",
            "ParticipantObjectTypeCodeRole": "1",
        },
    )
    _coded(obj, "ParticipantObjectIDTypeCode", "2", RFC3881, "Patient Number")
    if not safe:
        _detail(obj, "IssuerOfPatientID", patient.issuer or "")


def _study_object(parent: ET.Element, study: Study, ledger: ET.Element) -> None:
    obj = ET.SubElement(
        parent,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": study.uid,
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3",
        },
    )
    _coded(obj, "ParticipantObjectIDTypeCode", "110180", DCM, "Study Instance UID")
    if study.modality is not None:
        _detail(obj, "Modality", study.modality)
    if study.accession is not None or study.sop_classes:
        description = ET.SubElement(obj, "ParticipantObjectDescription")
        if study.accession is not None:
            ET.SubElement(description, "Accession", {"Number": study.accession})
        single = len(study.sop_classes) == 1 and study.instances is not None
        for uid in study.sop_classes:
            attrs = {"UID": uid}
            if single:
                attrs["NumberOfInstances"] = str(study.instances)
            ET.SubElement(description, "SOPClass", attrs)
    if study.instances is not None and len(study.sop_classes) != 1:
        _detail(ledger, "study-instances", str(study.instances))


def _all_text(values: Iterable[tuple[str, str | None]]) -> None:
    for field, value in values:
        if value is not None:
            _check_xml_text(value, field)


def to_dicom_xml(event: MappedEvent) -> bytes:
    """The DICOM PS3.15 A.5 audit message of one event (UTF-8 XML with a declaration).

    The event must be valid and stamped (``producer_id`` / ``producer_seq``), since the
    message names its audit source. Raises ``ValueError`` for an event that cannot be
    written (unstamped, or a character XML 1.0 cannot carry); ``CriticalResultRelay`` has
    no DICOM audit message (its private EventID is not a PS3.15 one) and is refused.
    """
    if not isinstance(event, PhiAccessEvent | AuditLogUsed | SecurityEvent):
        raise ValueError(f"{type(event).__name__} has no DICOM audit message mapping")
    if event.producer_id is None or event.producer_seq is None:
        raise ValueError("the event must be stamped (producer_id, producer_seq)")
    _all_text(
        [
            ("producer_id", event.producer_id),
            ("facility.id", event.facility.id),
            ("facility.name", event.facility.name),
            ("actor.user_id", event.actor.user_id),
            ("actor.name", event.actor.name),
            ("actor.role", event.actor.role),
            ("actor.organization", event.actor.organization),
            ("network_address", event.network_address),
        ]
    )
    root = ET.Element("AuditMessage")
    coded = event if isinstance(event, PhiAccessEvent | SecurityEvent) else None
    code = "110101" if coded is None else coded.dicom_event_id
    action = "R" if coded is None else coded.action.value
    ident = ET.SubElement(
        root,
        "EventIdentification",
        {
            "EventActionCode": action,
            "EventDateTime": _format_time(event.event_time),
            "EventOutcomeIndicator": _OUTCOME_CODES[event.outcome],
        },
    )
    _coded(ident, "EventID", code, DCM, dicom.EVENT_IDS.get(code))
    if coded is not None:
        if coded.event_type_code is not None:
            known = dicom.EVENT_TYPE_CODES.get(coded.event_type_code)
            _coded(
                ident,
                "EventTypeCode",
                coded.event_type_code,
                DCM if known else PRIVATE,
                known,
            )
        if coded.purpose_of_use is not None:
            _coded(ident, "PurposeOfUse", coded.purpose_of_use, HL7_ACT_REASON_OID, None)
    user = {"UserID": event.actor.user_id}
    if event.actor.name is not None:
        user["UserName"] = event.actor.name
    user["UserIsRequestor"] = "true"
    if event.network_address is not None:
        user["NetworkAccessPointID"] = event.network_address
        user["NetworkAccessPointTypeCode"] = _network_type(event.network_address)
    participant = ET.SubElement(root, "ActiveParticipant", user)
    if _CODE.fullmatch(event.actor.role):
        _coded(participant, "RoleIDCode", event.actor.role, PRIVATE, event.actor.role)
    recipient = event.recipient if isinstance(event, PhiAccessEvent) else None
    if recipient is not None:
        _all_text(
            [
                ("recipient.name", recipient.name),
                ("recipient.address", recipient.address),
                ("recipient.organization", recipient.organization),
            ]
        )
        dest = ET.SubElement(
            root,
            "ActiveParticipant",
            {"UserID": recipient.name, "UserName": recipient.name, "UserIsRequestor": "false"},
        )
        _coded(dest, "RoleIDCode", "110152", DCM, "Destination Role ID")
    source = ET.SubElement(
        root,
        "AuditSourceIdentification",
        {"AuditEnterpriseSiteID": event.facility.id, "AuditSourceID": event.producer_id},
    )
    _coded(source, "AuditSourceTypeCode", "4", DCM, "Application Server")

    ledger = ET.Element(
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": f"urn:uuid:{event.event_id}",
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "4",
        },
    )
    _coded(ledger, "ParticipantObjectIDTypeCode", LEDGER_OBJECT_CODE, PRIVATE, "Ledger Event")
    _detail(ledger, "producer-seq", str(event.producer_seq))
    if event.facility.name is not None:
        _detail(ledger, "facility-name", event.facility.name)
    _detail(ledger, "actor-role", event.actor.role)
    if event.actor.organization is not None:
        _detail(ledger, "actor-organization", event.actor.organization)
    if event.actor.npi is not None:
        _detail(ledger, "actor-npi", event.actor.npi)
    patient = event.patient
    if patient is not None:
        _all_text([("patient.id", patient.id), ("patient.issuer", patient.issuer)])
        if patient.state is not None:
            _detail(ledger, "patient-state", patient.state)

    if isinstance(event, AuditLogUsed):
        _log_objects(root, ledger, event)
    else:
        if isinstance(event, SecurityEvent):
            _detail(ledger, "event-schema", SECURITY_SCHEMA)
            if event.patient is not None:
                _patient_object(root, event.patient)
        else:
            if recipient is not None:
                if recipient.address is not None:
                    _detail(ledger, "recipient-address", recipient.address)
                if recipient.organization is not None:
                    _detail(ledger, "recipient-organization", recipient.organization)
            _patient_object(root, event.patient)
            if event.study is not None:
                _all_text(
                    [
                        ("study.uid", event.study.uid),
                        ("study.accession", event.study.accession),
                        ("study.modality", event.study.modality),
                    ]
                    + [("study.sop_classes", s) for s in event.study.sop_classes]
                )
                _study_object(root, event.study, ledger)
        details = dict(event.details)
        query = details.pop("query", None)
        if query is not None:
            _check_xml_text(query, "details['query']")
            obj = ET.SubElement(
                root,
                "ParticipantObjectIdentification",
                {
                    "ParticipantObjectID": details.get("query_object_id", "query"),
                    "ParticipantObjectTypeCode": "2",
                    "ParticipantObjectTypeCodeRole": "24",
                },
            )
            _coded(obj, "ParticipantObjectIDTypeCode", "query", PRIVATE, "Query")
            ET.SubElement(obj, "ParticipantObjectQuery").text = _query_b64(query)
        for key, value in details.items():
            _pair(ledger, "detail", key, value)
    root.append(ledger)
    written: bytes = ET.tostring(root, encoding="UTF-8", xml_declaration=True)
    return written


def _query_b64(query: str) -> str:
    """The inverse of ``_query_text``: a ``base64:`` query of binary bytes goes back as
    those bytes; any other query as its UTF-8 text."""
    encoded = query.removeprefix("base64:")
    if encoded != query:
        try:
            raw = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            return _b64(query)
        try:
            binary = _CONTROL.search(raw.decode("utf-8")) is not None
        except UnicodeDecodeError:
            binary = True
        if binary and base64.b64encode(raw).decode("ascii") == encoded:
            return encoded
    return _b64(query)


def _log_objects(root: ET.Element, ledger: ET.Element, event: AuditLogUsed) -> None:
    q = event.query
    _all_text([("query.path", q.path)])
    log = ET.SubElement(
        root,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": q.path,
            "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "13",
        },
    )
    _coded(log, "ParticipantObjectIDTypeCode", "12", RFC3881, "URI")
    target = q.path
    if q.parameters:
        target += "?" + "&".join(f"{k}={v}" for k, v in sorted(q.parameters.items()))
    ET.SubElement(log, "ParticipantObjectQuery").text = _b64(f"{q.method} {target}")
    _detail(ledger, "query-method", q.method)
    _detail(ledger, "query-status", str(q.status))
    if q.results is not None:
        _detail(ledger, "query-results", str(q.results))
    for key, value in q.parameters.items():
        _pair(ledger, "query-parameter", key, value)
    if event.patient is not None:
        _patient_object(root, event.patient)
