"""Parse a DICOM audit message (PS3.15 A.5.1) into an ``AuditMessage``, no mapping yet.

Invariant: ``parse_audit_message`` returns a message or raises ``AtnaParseError``
(``xml_forbidden``, ``xml_malformed``, ``xml_not_audit_message``, ``xml_invalid``); the
XML goes through ``safe_xml`` first. Both the current DICOM and the RFC 3881 spellings of
coded values and of a study's description are accepted.
"""

from __future__ import annotations

import base64
import binascii
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta, timezone
from typing import Final

from integrations.atna.dicom_audit.model import (
    AuditMessage,
    Code,
    Participant,
    ParticipantObject,
    SopClass,
)
from integrations.atna.dicom_audit.safe_xml import ForbiddenXml, parse_xml
from integrations.errors import AtnaParseError

__all__ = ["parse_audit_message"]

_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?(Z|[+-]\d{2}:\d{2})?"
)
_SOURCE: Final = "AuditSourceIdentification"


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


def parse_audit_message(payload: bytes) -> AuditMessage:
    """Parse a DICOM audit message safely; raises ``AtnaParseError``.

    Reasons: ``xml_forbidden`` (a DTD, entity declaration or external reference: refused
    before anything is expanded or fetched), ``xml_malformed``, ``xml_not_audit_message``
    (another root element), ``xml_invalid`` (a required element or attribute is missing
    or malformed).
    """
    root = _audit_root(payload)
    ident, participants, source, objects = _sections(root)
    event_code, types, purposes, description = _identification(ident)
    when = _attr(ident, "EventDateTime", "EventIdentification", required=True) or ""
    outcome = _attr(ident, "EventOutcomeIndicator", "EventIdentification", required=True) or ""
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
        source_types=_source_types(source),
        objects=tuple(objects),
    )


def _audit_root(payload: bytes) -> ET.Element:
    """The ``AuditMessage`` root element of safely parsed XML (namespaces dropped)."""
    try:
        root = parse_xml(payload)
    except ForbiddenXml as exc:
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
    return root


def _sections(
    root: ET.Element,
) -> tuple[ET.Element, list[Participant], ET.Element, list[ParticipantObject]]:
    """EventIdentification, the participants, AuditSourceIdentification, the objects."""
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
    return ident, participants, source, objects


def _identification(ident: ET.Element) -> tuple[Code, list[Code], list[Code], str | None]:
    """EventID, the EventTypeCodes, the PurposeOfUse codes, EventOutcomeDescription."""
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
    return event_code, types, purposes, description


def _source_types(source: ET.Element) -> tuple[str, ...]:
    source_types: list[str] = []
    for child in source:
        if child.tag == "AuditSourceTypeCode":
            code = child.get("csd-code") or child.get("code") or (child.text or "").strip()
            if code:
                source_types.append(code)
    return tuple(source_types)
