"""FHIR R4 AuditEvent views of stored ledger events (IHE BALP aligned), and FHIR search.

Invariant: every function here is pure (no I/O, no clock, no randomness) and works on the
JSON-safe record ``ledger.audit.records.SchemaSet.decode`` returns, never on the producer library's
types. Every AuditEvent built here has ``id`` = the event id and carries its ledger position
(log origin, log id, leaf index) in the ``ledger-position`` extension, so any resource a
client receives can be proven against a signed checkpoint. Search parameters are checked
strictly: anything this module does not understand is a ``MalformedInputError`` naming the
parameter, never silently ignored (an ignored filter would widen an audit query).

Mapping (``audit_event``), all URLs under ``base_url`` (default ``DEFAULT_BASE_URL``):

- ``type``: the DICOM EventID (code system DCM, ``http://dicom.nema.org/resources/ontology/DCM``)
  with its PS3.15 display, e.g. 110103 DICOM Instances Accessed, 110112 Query, 110106 Export.
- ``subtype``: the DICOM EventTypeCode (e.g. 110122 Login, 110127 Emergency Override Started)
  in DCM when it is one of ``schemas.dicom.EVENT_TYPE_CODES``, else in the private system
  ``{base}/CodeSystem/event-type-code`` (we do not vouch for DCM codes we do not ship). An
  Export (110106) with a recipient also gets ``iso-21089-lifecycle#disclose``, as BALP's
  PrivacyDisclosure source record does.
- ``action`` C/R/U/D/E as stored; ``recorded`` = event time (UTC ``instant``); ``outcome``
  0/4/8/12 from SUCCESS/MINOR_FAILURE/SERIOUS_FAILURE/MAJOR_FAILURE.
- ``purposeOfEvent`` and the user agent's ``purposeOfUse``: HL7 v3 PurposeOfUse in
  ``http://terminology.hl7.org/CodeSystem/v3-ActReason``; a code that is not in that code
  system (the producer library accepts ``OVERSIGHT``, which HL7 does not define) goes under
  ``{base}/CodeSystem/purpose-of-use`` instead, so the resource stays valid R4.
- ``agent[0]``, the user (``requestor`` = true): ``who.identifier.value`` = user id,
  ``who.display`` = name, ``role`` = ``{base}/CodeSystem/workforce-role`` code (text too),
  ``network`` = address with type 2 (IP address) or 1 (machine name; 5 for a URI), and
  extensions ``agent-npi`` (Identifier, system ``http://hl7.org/fhir/sid/us-npi``) and
  ``agent-organization`` (string). Its ``type`` follows BALP's user-agent types:
  v3-ParticipationType IRCP (read, query, execute), AUT (create, update), INF (export),
  v3-RoleClass AGNT (delete).
- ``agent[1]``, the producer: DCM 110150 "Application", ``who.identifier.value`` = producer id.
- the recipient of a disclosure (110106 Export): an agent of type v3-ParticipationType IRCP
  with ``requestor`` = false, ``who.display`` = name, ``location.display`` = postal address,
  ``agent-organization`` extension.
- ``source``: ``site`` = facility id (``site-name`` extension = its name), ``observer`` =
  producer id (``producer-sequence`` extension = its per-producer sequence number),
  ``type`` = security-source-type 4 "Application Server".
- ``entity`` patient: ``what`` = Patient identified by ``identifier.value`` = patient id
  (``assigner.display`` = issuer, ``type`` = v2-0203 MR), ``type`` = audit-entity-type 1
  "Person", ``role`` = object-role 1 "Patient", ``detail`` "state" = two-letter state.
- ``entity`` study: ``what.identifier`` = {system ``urn:dicom:uid``, value
  ``urn:oid:<Study Instance UID>``, type DCM 110180 "Study Instance UID"}, ``type`` =
  audit-entity-type 2 "System Object", ``role`` = object-role 3 "Report" (DICOM
  ParticipantObject type 2, role 3, ID type 110180); ``detail`` accession, modality,
  sop-class (one per SOP class) and instances.
- a Query's (110112) ``details["query"]``: a query entity (type 2, role 24 "Query") whose
  ``query`` is the base64 of the query text; every other ``details`` entry: an
  ``event-detail`` extension with ``key`` and ``value``.
- ledger position: the ``ledger-position`` extension with ``origin`` (string), ``logId``
  (integer) and ``leafIndex`` (decimal: R4 has no 64-bit integer and a log outgrows 2^31).

Reads of the ledger itself (``AuditLogUsed``, written by the ledger's API) follow DICOM
PS3.15 A.5.3.2: ``type`` DCM 110101 "Audit Log Used", ``action`` R, the caller as the
requesting user (IRCP) with the network address the API saw, and the log as an entity of
type 2 "System Object", role 13 "Security Resource", ``what.identifier.value`` = the request
path, ``query`` = base64 of ``METHOD path?parameters``, ``detail`` method, status and results
(and, schema v2, ``disclosed``: the entries the answer returned as ``origin#start-end;...``,
end exclusive, with ``disclosed_coarsened`` when they were widened); plus the patient entity
when the request named one.

Security events (``SecurityEvent``: User Authentication 110114, Security Alert 110113 such as
an Emergency Override, Application Activity 110100, Network Entry 110108) follow the same
DICOM-to-FHIR conventions as PHI accesses and the FHIR R4 User Authentication example
(``AuditEvent/example-login``): ``type`` = the EventID, ``subtype`` = the EventTypeCode (110122
Login, 110123 Logout, 110127 / 110138 Emergency Override Started / Stopped) followed by
``{base}/CodeSystem/99PHILEDGER#SEC`` "Security Event", which tells ``integrations.fhir`` that
the resource maps back to a ``SecurityEvent``; ``action``, ``recorded``, ``outcome`` (a failed
login is 4 or 8), ``purposeOfEvent`` (BTG for break the glass); the user as the requesting
agent (type ``extra-security-role-type#humanuser``, or DCM 110150 "Application" when the
actor's role is ``system``) with the network address and purpose of use, the producer agent,
``source`` as above, every ``details`` entry as an ``event-detail`` extension, and the
patient entity only when the event names a patient.

Critical-result relays (``CriticalResultRelay``) have no DICOM EventID. The schema already
names them with the private DICOM code ``99PHILEDGER``/``CRR``, so their ``type`` is
``{base}/CodeSystem/99PHILEDGER#CRR`` "Critical Result Relay" rather than a borrowed DCM code
that means something else (110110 Patient Record would make them indistinguishable from
record access). ``action`` = E (the relay is an act performed), ``period`` = identified ..
acknowledged (or communicated), ``outcome`` = 0 once the finding was communicated, else 4
(not yet reached), ``purposeOfEvent`` = TREAT. Agents: the sending radiologist (requestor,
v3-ParticipationType AUT), the recipient (IRCP; name, role, NPI), the producer. Entities:
patient and study as above, and the relay itself as an entity of type
``http://hl7.org/fhir/resource-types#Communication`` whose ``description`` is the finding
and whose ``detail`` carries category, method, read-back, the three times and every attempt.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal
from urllib.parse import urlencode, urlsplit

from ledger.audit.query import LedgerPosition
from ledger.audit.records import JsonValue
from ledger.errors import MalformedInputError
from schemas import dicom

__all__ = [
    "ACCESS_SCHEMA",
    "AUDIT_LOG_USED_SCHEMA",
    "DCM",
    "DEFAULT_BASE_URL",
    "DEFAULT_COUNT",
    "HL7_PURPOSES_OF_USE",
    "MAX_COUNT",
    "RELAY_SCHEMA",
    "SECURITY_SCHEMA",
    "AuditEventSearch",
    "DateBound",
    "EntryOutcome",
    "FhirNamespace",
    "Issue",
    "TypeCode",
    "audit_event",
    "batch_response_bundle",
    "operation_outcome",
    "parse_search",
    "searchset_bundle",
]

Resource = dict[str, JsonValue]

#: Where this product's own FHIR definitions (extensions, code systems) live by default.
DEFAULT_BASE_URL: Final = "https://philedger.example/fhir"

ACCESS_SCHEMA: Final = "philedger.audit.PhiAccessEvent"
RELAY_SCHEMA: Final = "philedger.audit.CriticalResultRelay"
AUDIT_LOG_USED_SCHEMA: Final = "philedger.audit.AuditLogUsed"
SECURITY_SCHEMA: Final = "philedger.audit.SecurityEvent"

DCM: Final = "http://dicom.nema.org/resources/ontology/DCM"
V3_ACT_REASON: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
V3_PARTICIPATION_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
V3_ROLE_CLASS: Final = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
EXTRA_SECURITY_ROLE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/extra-security-role-type"
AUDIT_ENTITY_TYPE: Final = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE: Final = "http://terminology.hl7.org/CodeSystem/object-role"
SECURITY_SOURCE_TYPE: Final = "http://terminology.hl7.org/CodeSystem/security-source-type"
ISO_21089_LIFECYCLE: Final = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle"
V2_IDENTIFIER_TYPE: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
RESOURCE_TYPES: Final = "http://hl7.org/fhir/resource-types"
US_NPI: Final = "http://hl7.org/fhir/sid/us-npi"
DICOM_UID_SYSTEM: Final = "urn:dicom:uid"

#: HL7 v3 ActReason codes that ``purpose_of_use`` may carry (checked against the R4
#: terminology by tests/interop/test_fhir_r4.py). Other codes use the private system.
HL7_PURPOSES_OF_USE: Final[frozenset[str]] = frozenset(
    {
        "BTG",
        "CLINTRCH",
        "COC",
        "DISASTER",
        "ETREAT",
        "FAMRQT",
        "HMARKT",
        "HOPERAT",
        "HPAYMT",
        "HPRGRP",
        "HQUALIMP",
        "HRESCH",
        "HSYSADMIN",
        "LEGAL",
        "PATRQT",
        "PUBHLTH",
        "PWATRNY",
        "SYSADMN",
        "THREAT",
        "TREAT",
    }
)

_OUTCOMES: Final[Mapping[str, str]] = {
    "SUCCESS": "0",
    "MINOR_FAILURE": "4",
    "SERIOUS_FAILURE": "8",
    "MAJOR_FAILURE": "12",
}
_ACTIONS: Final = frozenset("CRUDE")
_MAX_INT32: Final = 2**31 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class FhirNamespace:
    """The URLs of this product's own FHIR definitions under one base URL."""

    base_url: str
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
    def under(cls, base_url: str) -> FhirNamespace:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise MalformedInputError("the FHIR base URL must be an absolute http(s) URL")
        base = base_url.rstrip("/")
        sd = f"{base}/StructureDefinition"
        cs = f"{base}/CodeSystem"
        return cls(
            base_url=base,
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


# --------------------------------------------------------------------------- reading records


class _Record:
    """Typed access to one JSON-safe stored record; errors name the field path."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: Mapping[str, JsonValue], path: str) -> None:
        self._data = data
        self._path = path

    def _fail(self, key: str, problem: str) -> MalformedInputError:
        return MalformedInputError(f"stored event field {self._path}{key} {problem}")

    def text(self, key: str) -> str:
        value = self._data.get(key)
        if not isinstance(value, str) or not value:
            raise self._fail(key, "must be a non-empty string")
        return value

    def opt_text(self, key: str) -> str | None:
        value = self._data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(key, "must be a string")
        return value or None  # FHIR strings cannot be empty: "" reads as absent

    def integer(self, key: str) -> int:
        value = self._data.get(key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self._fail(key, "must be an integer")
        return value

    def opt_integer(self, key: str) -> int | None:
        return None if self._data.get(key) is None else self.integer(key)

    def flag(self, key: str) -> bool:
        value = self._data.get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "must be a boolean")
        return value

    def opt_flag(self, key: str) -> bool:
        """A boolean that older schema versions lack (absent reads as false)."""
        return False if self._data.get(key) is None else self.flag(key)

    def record(self, key: str) -> _Record:
        value = self._data.get(key)
        if not isinstance(value, dict):
            raise self._fail(key, "must be a record")
        return _Record(value, f"{self._path}{key}.")

    def opt_record(self, key: str) -> _Record | None:
        return None if self._data.get(key) is None else self.record(key)

    def array(self, key: str) -> list[JsonValue]:
        value = self._data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._fail(key, "must be an array")
        return value

    def records(self, key: str) -> list[_Record]:
        out = []
        for i, item in enumerate(self.array(key)):
            if not isinstance(item, dict):
                raise self._fail(f"{key}[{i}]", "must be a record")
            out.append(_Record(item, f"{self._path}{key}[{i}]."))
        return out

    def texts(self, key: str) -> list[str]:
        out = []
        for i, item in enumerate(self.array(key)):
            if not isinstance(item, str) or not item:
                raise self._fail(f"{key}[{i}]", "must be a non-empty string")
            out.append(item)
        return out

    def text_map(self, key: str) -> dict[str, str]:
        value = self._data.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise self._fail(key, "must be a map of strings")
        return {k: v for k, v in value.items() if isinstance(v, str)}

    def instant(self, key: str) -> str:
        return _instant(self.text(key), lambda: self._fail(key, "must be an ISO 8601 UTC time"))

    def opt_instant(self, key: str) -> str | None:
        return None if self._data.get(key) is None else self.instant(key)


def _instant(text: str, fail: Callable[[], MalformedInputError]) -> str:
    """An ISO 8601 time with an offset, as a FHIR ``instant`` in UTC (``Z``)."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise fail() from None
    if when.utcoffset() is None:
        raise fail()
    return format_instant(when)


def format_instant(when: datetime) -> str:
    """A timezone-aware datetime as a FHIR ``instant`` in UTC, microseconds kept."""
    if when.utcoffset() is None:
        raise MalformedInputError("a FHIR instant needs a timezone-aware time")
    utc = when.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


# --------------------------------------------------------------------------- building blocks


def _coding(system: str, code: str, display: str | None = None) -> Resource:
    out: Resource = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _concept(system: str, code: str, display: str | None = None) -> Resource:
    return {"coding": [_coding(system, code, display)]}


def _ext(url: str, **value: JsonValue) -> Resource:
    out: Resource = {"url": url}
    out.update(value)
    return out


def _network_type(address: str) -> str:
    """DICOM/FHIR network access point type: 1 machine name, 2 IP address, 5 URI."""
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return "5" if "://" in address else "1"
    return "2"


def _purpose(code: str, ns: FhirNamespace) -> Resource:
    system = V3_ACT_REASON if code in HL7_PURPOSES_OF_USE else ns.purpose_of_use
    return _concept(system, code)


def _person_agent(
    actor: _Record,
    *,
    agent_type: Resource,
    requestor: bool,
    ns: FhirNamespace,
    network: str | None = None,
    purpose: str | None = None,
) -> Resource:
    role = actor.text("role")
    who: Resource = {"identifier": {"value": actor.text("user_id")}}
    name = actor.opt_text("name")
    if name:
        who["display"] = name
    agent: Resource = {}
    extensions: list[JsonValue] = []
    npi = actor.opt_text("npi")
    if npi:
        extensions.append(_ext(ns.agent_npi, valueIdentifier={"system": US_NPI, "value": npi}))
    organization = actor.opt_text("organization")
    if organization:
        extensions.append(_ext(ns.agent_organization, valueString=organization))
    if extensions:
        agent["extension"] = extensions
    agent["type"] = agent_type
    agent["role"] = [{"coding": [_coding(ns.workforce_role, role)], "text": role}]
    agent["who"] = who
    agent["requestor"] = requestor
    if network:
        agent["network"] = {"address": network, "type": _network_type(network)}
    if purpose:
        agent["purposeOfUse"] = [_purpose(purpose, ns)]
    return agent


def _producer_agent(producer_id: str) -> Resource:
    return {
        "type": _concept(DCM, "110150", "Application"),
        "who": {"identifier": {"value": producer_id}},
        "requestor": False,
    }


def _source(record: _Record, ns: FhirNamespace) -> Resource:
    facility = record.record("facility")
    seq = record.integer("producer_seq")
    source: Resource = {}
    extensions: list[JsonValue] = [_ext(ns.producer_sequence, valueDecimal=seq)]
    site_name = facility.opt_text("name")
    if site_name:
        extensions.append(_ext(ns.site_name, valueString=site_name))
    source["extension"] = extensions
    source["site"] = facility.text("id")
    source["observer"] = {"identifier": {"value": record.text("producer_id")}}
    source["type"] = [_coding(SECURITY_SOURCE_TYPE, "4", "Application Server")]
    return source


def _detail(kind: str, value: str) -> Resource:
    return {"type": kind, "valueString": value}


def _patient_entity(patient: _Record) -> Resource:
    identifier: Resource = {
        "type": _concept(V2_IDENTIFIER_TYPE, "MR", "Medical record number"),
        "value": patient.text("id"),
    }
    issuer = patient.opt_text("issuer")
    if issuer:
        identifier["assigner"] = {"display": issuer}
    entity: Resource = {
        "what": {"type": "Patient", "identifier": identifier},
        "type": _coding(AUDIT_ENTITY_TYPE, "1", "Person"),
        "role": _coding(OBJECT_ROLE, "1", "Patient"),
    }
    state = patient.opt_text("state")
    if state:
        entity["detail"] = [_detail("state", state)]
    return entity


def _study_entity(study: _Record) -> Resource:
    details: list[JsonValue] = []
    accession = study.opt_text("accession")
    if accession:
        details.append(_detail("accession", accession))
    modality = study.opt_text("modality")
    if modality:
        details.append(_detail("modality", modality))
    details.extend(_detail("sop-class", sop) for sop in study.texts("sop_classes"))
    instances = study.opt_integer("instances")
    if instances is not None:
        details.append(_detail("instances", str(instances)))
    entity: Resource = {
        "what": {
            "type": "ImagingStudy",
            "identifier": {
                "type": _concept(DCM, "110180", "Study Instance UID"),
                "system": DICOM_UID_SYSTEM,
                "value": f"urn:oid:{study.text('uid')}",
            },
        },
        "type": _coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "3", "Report"),
    }
    if details:
        entity["detail"] = details
    return entity


def _position_extension(position: LedgerPosition, ns: FhirNamespace) -> Resource:
    if not 0 <= position.log_id <= _MAX_INT32:
        raise MalformedInputError("log id does not fit a FHIR integer")
    if position.leaf_index < 0 or not position.origin:
        raise MalformedInputError("ledger position must have an origin and a leaf index >= 0")
    return _ext(
        ns.ledger_position,
        extension=[
            _ext("origin", valueString=position.origin),
            _ext("logId", valueInteger=position.log_id),
            _ext("leafIndex", valueDecimal=position.leaf_index),
        ],
    )


# --------------------------------------------------------------------------- the mapping


def audit_event(
    full_name: str,
    record: Mapping[str, JsonValue],
    *,
    event_id: uuid.UUID | str,
    position: LedgerPosition,
    base_url: str = DEFAULT_BASE_URL,
) -> Resource:
    """The FHIR R4 AuditEvent of one stored event.

    ``full_name`` and ``record`` are what ``SchemaSet.decode`` returned for the event's leaf;
    ``event_id`` is the id the ledger indexed it under (it must equal the record's), and
    ``position`` where its leaf sits. Raises ``MalformedInputError`` for a record that does
    not have the shape of the named schema.
    """
    ns = FhirNamespace.under(base_url)
    rec = _Record(record, "")
    try:
        ident = uuid.UUID(str(event_id))
        stored_id = uuid.UUID(rec.text("event_id"))
    except ValueError as exc:
        raise MalformedInputError("event id is not a UUID") from exc
    if ident != stored_id:
        raise MalformedInputError("event id does not match the stored record's event_id")
    head: Resource = {
        "resourceType": "AuditEvent",
        "id": str(ident),
        "extension": [_position_extension(position, ns)],
    }
    if full_name == ACCESS_SCHEMA:
        body = _access_event(rec, ns)
    elif full_name == RELAY_SCHEMA:
        body = _relay_event(rec, ns)
    elif full_name == AUDIT_LOG_USED_SCHEMA:
        body = _audit_log_used(rec, ns)
    elif full_name == SECURITY_SCHEMA:
        body = _security_event(rec, ns)
    else:
        raise MalformedInputError(f"no FHIR AuditEvent mapping for schema {full_name[:100]!r}")
    extensions = body.pop("extension", None)
    if isinstance(extensions, list) and isinstance(head["extension"], list):
        head["extension"].extend(extensions)
    return head | body


def _user_agent_type(event_code: str, action: str) -> Resource:
    if event_code == "110106":
        return _concept(V3_PARTICIPATION_TYPE, "INF", "informant")
    if action in ("C", "U"):
        return _concept(V3_PARTICIPATION_TYPE, "AUT", "author (originator)")
    if action == "D":
        return _concept(V3_ROLE_CLASS, "AGNT", "agent")
    return _concept(V3_PARTICIPATION_TYPE, "IRCP", "information recipient")


def _access_event(rec: _Record, ns: FhirNamespace) -> Resource:
    code = rec.text("dicom_event_id")
    action = rec.text("action")
    if action not in _ACTIONS:
        raise MalformedInputError("stored event field action must be one of C, R, U, D, E")
    outcome = _OUTCOMES.get(rec.text("outcome"))
    if outcome is None:
        raise MalformedInputError("stored event field outcome is not a known outcome")
    recipient = rec.opt_record("recipient")
    purpose = rec.opt_text("purpose_of_use")
    network = rec.opt_text("network_address")
    details = rec.text_map("details")

    out: Resource = {}
    query = details.pop("query", None) if code == "110112" else None
    extensions = _detail_extensions(details, ns)
    if extensions:
        out["extension"] = extensions
    out["type"] = _coding(DCM, code, dicom.EVENT_IDS.get(code))
    subtypes = _event_type_code(rec, ns)
    if code == "110106" and recipient is not None:
        subtypes.append(_coding(ISO_21089_LIFECYCLE, "disclose", "Disclose Record Lifecycle Event"))
    if subtypes:
        out["subtype"] = subtypes
    out["action"] = action
    out["recorded"] = rec.instant("event_time")
    out["outcome"] = outcome
    if purpose:
        out["purposeOfEvent"] = [_purpose(purpose, ns)]
    agents: list[JsonValue] = [
        _person_agent(
            rec.record("actor"),
            agent_type=_user_agent_type(code, action),
            requestor=True,
            ns=ns,
            network=network,
            purpose=purpose,
        ),
        _producer_agent(rec.text("producer_id")),
    ]
    if recipient is not None:
        agents.append(_recipient_agent(recipient, ns))
    out["agent"] = agents
    out["source"] = _source(rec, ns)
    entities: list[JsonValue] = [_patient_entity(rec.record("patient"))]
    study = rec.opt_record("study")
    if study is not None:
        entities.append(_study_entity(study))
    if query is not None:
        entities.append(
            {
                "type": _coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
                "role": _coding(OBJECT_ROLE, "24", "Query"),
                "query": base64.b64encode(query.encode("utf-8")).decode("ascii"),
            }
        )
    out["entity"] = entities
    return out


def _detail_extensions(details: Mapping[str, str], ns: FhirNamespace) -> list[JsonValue]:
    """One ``event-detail`` extension (``key``, ``value``) per ``details`` entry, by key."""
    extensions: list[JsonValue] = []
    for key in sorted(details):
        parts: list[JsonValue] = [_ext("key", valueString=key)]
        if details[key]:
            parts.append(_ext("value", valueString=details[key]))
        extensions.append(_ext(ns.event_detail, extension=parts))
    return extensions


def _event_type_code(rec: _Record, ns: FhirNamespace) -> list[JsonValue]:
    """The ``subtype`` coding of the stored DICOM EventTypeCode, if any."""
    type_code = rec.opt_text("event_type_code")
    if type_code is None:
        return []
    known = dicom.EVENT_TYPE_CODES.get(type_code)
    system = DCM if known else ns.event_type_code
    return [_coding(system, type_code, known)]


def _security_event(rec: _Record, ns: FhirNamespace) -> Resource:
    code = rec.text("dicom_event_id")
    action = rec.text("action")
    if action not in _ACTIONS:
        raise MalformedInputError("stored event field action must be one of C, R, U, D, E")
    outcome = _OUTCOMES.get(rec.text("outcome"))
    if outcome is None:
        raise MalformedInputError("stored event field outcome is not a known outcome")
    purpose = rec.opt_text("purpose_of_use")
    actor = rec.record("actor")
    out: Resource = {}
    extensions = _detail_extensions(rec.text_map("details"), ns)
    if extensions:
        out["extension"] = extensions
    out["type"] = _coding(DCM, code, dicom.EVENT_IDS.get(code))
    marker, display = dicom.SECURITY_EVENT
    out["subtype"] = [*_event_type_code(rec, ns), _coding(ns.private_codes, marker, display)]
    out["action"] = action
    out["recorded"] = rec.instant("event_time")
    out["outcome"] = outcome
    if purpose:
        out["purposeOfEvent"] = [_purpose(purpose, ns)]
    if actor.text("role") == "system":  # an application (e.g. Application Activity)
        agent_type = _concept(DCM, "110150", "Application")
    else:  # as the FHIR R4 User Authentication example (AuditEvent/example-login)
        agent_type = _concept(EXTRA_SECURITY_ROLE_TYPE, "humanuser", "human user")
    out["agent"] = [
        _person_agent(
            actor,
            agent_type=agent_type,
            requestor=True,
            ns=ns,
            network=rec.opt_text("network_address"),
            purpose=purpose,
        ),
        _producer_agent(rec.text("producer_id")),
    ]
    out["source"] = _source(rec, ns)
    patient = rec.opt_record("patient")
    if patient is not None:
        out["entity"] = [_patient_entity(patient)]
    return out


def _recipient_agent(recipient: _Record, ns: FhirNamespace) -> Resource:
    agent: Resource = {}
    organization = recipient.opt_text("organization")
    if organization:
        agent["extension"] = [_ext(ns.agent_organization, valueString=organization)]
    agent["type"] = _concept(V3_PARTICIPATION_TYPE, "IRCP", "information recipient")
    agent["who"] = {"display": recipient.text("name")}
    agent["requestor"] = False
    address = recipient.opt_text("address")
    if address:
        agent["location"] = {"display": address}
    return agent


def _relay_event(rec: _Record, ns: FhirNamespace) -> Resource:
    code, display = dicom.CRITICAL_RESULT_RELAY
    identified = rec.instant("identified_at")
    communicated = rec.opt_instant("communicated_at")
    acknowledged = rec.opt_instant("acknowledged_at")
    period: Resource = {"start": identified}
    if acknowledged or communicated:
        period["end"] = acknowledged or communicated
    recipient = rec.record("recipient")
    recipient_agent: Resource = {}
    npi = recipient.opt_text("npi")
    if npi:
        recipient_agent["extension"] = [
            _ext(ns.agent_npi, valueIdentifier={"system": US_NPI, "value": npi})
        ]
    role = recipient.text("role")
    recipient_agent["type"] = _concept(V3_PARTICIPATION_TYPE, "IRCP", "information recipient")
    recipient_agent["role"] = [{"coding": [_coding(ns.workforce_role, role)], "text": role}]
    recipient_agent["who"] = {"display": recipient.text("name")}
    recipient_agent["requestor"] = False

    relay_details: list[JsonValue] = [
        _detail("category", rec.text("category")),
        _detail("method", rec.text("method")),
        _detail("read-back", "true" if rec.flag("read_back") else "false"),
        _detail("identified-at", identified),
    ]
    if communicated:
        relay_details.append(_detail("communicated-at", communicated))
    if acknowledged:
        relay_details.append(_detail("acknowledged-at", acknowledged))
    for attempt in rec.records("attempts"):
        text = f"{attempt.instant('at')} {attempt.text('method')} {attempt.text('outcome')}"
        note = attempt.opt_text("note")
        relay_details.append(_detail("attempt", f"{text}: {note}" if note else text))
    relay_entity: Resource = {
        "type": _coding(RESOURCE_TYPES, "Communication", "Communication"),
        "role": _coding(OBJECT_ROLE, "4", "Domain Resource"),
        "name": display,
    }
    finding = rec.opt_text("finding")
    if finding:
        relay_entity["description"] = finding
    relay_entity["detail"] = relay_details
    return {
        "type": _coding(ns.private_codes, code, display),
        "action": "E",
        "period": period,
        "recorded": rec.instant("event_time"),
        "outcome": "0" if communicated else "4",
        "purposeOfEvent": [_purpose("TREAT", ns)],
        "agent": [
            _person_agent(
                rec.record("sender"),
                agent_type=_concept(V3_PARTICIPATION_TYPE, "AUT", "author (originator)"),
                requestor=True,
                ns=ns,
            ),
            recipient_agent,
            _producer_agent(rec.text("producer_id")),
        ],
        "source": _source(rec, ns),
        "entity": [
            _patient_entity(rec.record("patient")),
            _study_entity(rec.record("study")),
            relay_entity,
        ],
    }


def _audit_log_used(rec: _Record, ns: FhirNamespace) -> Resource:
    outcome = _OUTCOMES.get(rec.text("outcome"))
    if outcome is None:
        raise MalformedInputError("stored event field outcome is not a known outcome")
    query = rec.record("query")
    method = query.text("method")
    path = query.text("path")
    parameters = query.text_map("parameters")
    target = f"{path}?{urlencode(sorted(parameters.items()))}" if parameters else path
    details: list[JsonValue] = [
        _detail("method", method),
        _detail("status", str(query.integer("status"))),
    ]
    results = query.opt_integer("results")
    if results is not None:
        details.append(_detail("results", str(results)))
    # Schema v2: the entries the read returned (docs/read-attribution.md), as
    # "origin#start-end" (end exclusive), the form reports use for ledger positions.
    disclosed = [
        f"{log.text('log')}#{r.integer('start')}-{r.integer('end')}"
        for log in rec.records("disclosed")
        for r in log.records("ranges")
    ]
    if disclosed:
        details.append(_detail("disclosed", ";".join(disclosed)))
    if rec.opt_flag("disclosed_coarsened"):
        details.append(_detail("disclosed_coarsened", "true"))
    log_entity: Resource = {
        "what": {"identifier": {"value": path}},
        "type": _coding(AUDIT_ENTITY_TYPE, "2", "System Object"),
        "role": _coding(OBJECT_ROLE, "13", "Security Resource"),
        "query": base64.b64encode(f"{method} {target}".encode()).decode("ascii"),
        "detail": details,
    }
    entities: list[JsonValue] = [log_entity]
    patient = rec.opt_record("patient")
    if patient is not None:
        entities.append(_patient_entity(patient))
    return {
        "type": _coding(DCM, "110101", dicom.EVENT_IDS["110101"]),
        "action": "R",
        "recorded": rec.instant("event_time"),
        "outcome": outcome,
        "agent": [
            _person_agent(
                rec.record("actor"),
                agent_type=_concept(V3_PARTICIPATION_TYPE, "IRCP", "information recipient"),
                requestor=True,
                ns=ns,
                network=rec.opt_text("network_address"),
            ),
            _producer_agent(rec.text("producer_id")),
        ],
        "source": _source(rec, ns),
        "entity": entities,
    }


# --------------------------------------------------------------------------- bundles


def _full_url(resource: Mapping[str, JsonValue], server_base: str | None) -> str:
    rtype = resource.get("resourceType")
    rid = resource.get("id")
    if not isinstance(rtype, str) or not isinstance(rid, str) or not rid:
        raise MalformedInputError("every bundle entry needs a resource with resourceType and id")
    if server_base is not None:
        return f"{server_base}/{rtype}/{rid}"
    try:
        return f"urn:uuid:{uuid.UUID(rid)}"
    except ValueError as exc:
        raise MalformedInputError(
            "a relative self URL needs UUID resource ids (for urn:uuid fullUrls)"
        ) from exc


def _server_base(self_url: str) -> str | None:
    """``http://host/fhir`` for ``http://host/fhir/AuditEvent?...``; None when relative."""
    parts = urlsplit(self_url)
    if not parts.scheme or not parts.netloc:
        return None
    path = parts.path.rstrip("/")
    head, sep, _ = path.rpartition("/")
    if not sep:
        return None
    return f"{parts.scheme}://{parts.netloc}{head}"


def searchset_bundle(
    resources: Sequence[Mapping[str, JsonValue]],
    *,
    self_url: str,
    next_url: str | None,
    total: int | None = None,
) -> Resource:
    """An R4 ``searchset`` Bundle of ``resources`` (all matches), with self and next links.

    Each entry's ``fullUrl`` is ``<server base>/<type>/<id>``, the server base being
    ``self_url`` up to its last path segment (``.../fhir`` for ``.../fhir/AuditEvent?...``);
    for a relative ``self_url``, ``urn:uuid:<id>``.
    """
    if not self_url:
        raise MalformedInputError("a searchset bundle needs its self URL")
    if total is not None and total < 0:
        raise MalformedInputError("bundle total must be >= 0")
    base = _server_base(self_url)
    links: list[JsonValue] = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    entries: list[JsonValue] = []
    seen: set[str] = set()
    for resource in resources:
        full_url = _full_url(resource, base)
        if full_url in seen:
            raise MalformedInputError("a searchset bundle cannot list one resource twice")
        seen.add(full_url)
        entries.append(
            {"fullUrl": full_url, "resource": dict(resource), "search": {"mode": "match"}}
        )
    bundle: Resource = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    if entries:
        bundle["entry"] = entries
    return bundle


IssueSeverity = Literal["fatal", "error", "warning", "information"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Issue:
    """One OperationOutcome issue. ``code`` is from the R4 IssueType value set."""

    severity: IssueSeverity
    code: str
    diagnostics: str
    expression: str | None = None


def _issue(issue: Issue) -> Resource:
    out: Resource = {
        "severity": issue.severity,
        "code": issue.code,
        "diagnostics": issue.diagnostics,
    }
    if issue.expression:
        out["expression"] = [issue.expression]
    return out


def operation_outcome(issues: Sequence[Issue]) -> Resource:
    """An R4 OperationOutcome (it must have at least one issue)."""
    if not issues:
        raise MalformedInputError("an OperationOutcome needs at least one issue")
    return {"resourceType": "OperationOutcome", "issue": [_issue(i) for i in issues]}


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryOutcome:
    """What became of one entry of a batch/transaction: ``status`` is an HTTP status line
    such as ``201 Created``; ``location`` the created resource (``AuditEvent/<id>``)."""

    status: str
    location: str | None = None
    issues: tuple[Issue, ...] = ()


_STATUS = re.compile(r"[1-5]\d\d( [ -~]{1,100})?")


def batch_response_bundle(outcomes: Sequence[EntryOutcome], *, transaction: bool) -> Resource:
    """An R4 ``batch-response`` or ``transaction-response`` Bundle, one entry per outcome."""
    entries: list[JsonValue] = []
    for outcome in outcomes:
        if not _STATUS.fullmatch(outcome.status):
            raise MalformedInputError("an entry status must be an HTTP status line")
        response: Resource = {"status": outcome.status}
        if outcome.location:
            response["location"] = outcome.location
        if outcome.issues:
            response["outcome"] = operation_outcome(outcome.issues)
        entries.append({"response": response})
    kind = "transaction-response" if transaction else "batch-response"
    bundle: Resource = {"resourceType": "Bundle", "type": kind}
    if entries:
        bundle["entry"] = entries
    return bundle


# --------------------------------------------------------------------------- search

#: ``_count`` when the client gives none, and the most one page may hold.
DEFAULT_COUNT: Final = 100
MAX_COUNT: Final = 1000
#: Longest value of any search parameter, in characters.
MAX_VALUE_CHARS: Final = 256
#: Longest ``_cursor`` (a page token carries the size of every log).
MAX_CURSOR_CHARS: Final = 16_384
#: Most ``date`` parameters in one search (two bound a range; more is noise or abuse).
MAX_DATES: Final = 4
#: Most comma-separated alternatives in one ``type`` or ``action``.
MAX_ALTERNATIVES: Final = 16

DatePrefix = Literal["eq", "ge", "gt", "le", "lt"]
_PREFIXES: Final[Mapping[str, DatePrefix]] = {p: p for p in ("eq", "ge", "gt", "le", "lt")}
_UNSUPPORTED_PREFIXES: Final[frozenset[str]] = frozenset({"ne", "sa", "eb", "ap"})
_DATE = re.compile(
    r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2})"
    r"(?:T(?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})(?:\.(?P<fraction>\d{1,6}))?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2}))?)?)?"
)
_TEXT = re.compile(r"[^\x00-\x1f\x7f]+")
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
_PARAMETERS: Final = ("patient", "agent", "entity", "date", "type", "action", "_count", "_cursor")
_MAX_TIME = datetime.max.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class DateBound:
    """One ``date`` parameter: the instants ``recorded`` may take are ``[since, until)``."""

    prefix: DatePrefix
    value: str
    since: datetime | None
    until: datetime | None


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

    @property
    def empty_range(self) -> bool:
        """True when the date bounds exclude every instant (the answer is empty)."""
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
        items.append(("_count", str(self.count)))
        if cursor is not None:
            items.append(("_cursor", cursor))
        return urlencode(items)


def _bad(name: str, problem: str) -> MalformedInputError:
    return MalformedInputError(f"search parameter {name}: {problem}")


def _single(params: Mapping[str, list[str]], name: str, limit: int = MAX_VALUE_CHARS) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise _bad(name, "is given more than once")
    return _text(name, values[0], limit)


def _text(name: str, value: str, limit: int = MAX_VALUE_CHARS) -> str:
    if not value:
        raise _bad(name, "must not be empty")
    if len(value) > limit:
        raise _bad(name, f"is {len(value)} characters long; at most {limit}")
    if not _TEXT.fullmatch(value):
        raise _bad(name, "must not contain control characters")
    if value != value.strip():
        raise _bad(name, "must not start or end with white space")
    return value


def _reference(name: str, value: str) -> str:
    """A bare id, or ``Type/id`` for one of the parameter's target types; returns the id."""
    kind, sep, ident = value.partition("/")
    if not sep:
        return value
    if kind not in _REFERENCE_TYPES[name] or not ident or "/" in ident:
        allowed = ", ".join(f"{t}/<id>" for t in _REFERENCE_TYPES[name])
        raise _bad(name, f"must be an id or a reference {allowed}")
    return ident


def _study_uid(value: str) -> str:
    uid = value.removeprefix("urn:oid:")
    if len(uid) > 64 or not _UID.fullmatch(uid):
        raise _bad("entity", "must be a DICOM Study Instance UID (digits and dots, at most 64)")
    return uid


def _add_months(when: datetime, months: int) -> datetime:
    total = when.year * 12 + when.month - 1 + months
    return when.replace(year=total // 12, month=total % 12 + 1)


def _date_range(value: str) -> tuple[datetime, datetime | None]:
    """The half-open range of instants a FHIR date(Time) of some precision stands for."""
    if "T" in value and " " in value:
        raise _bad("date", "a time zone offset '+hh:mm' must be percent-encoded as %2B in a URL")
    m = _DATE.fullmatch(value)
    if m is None:
        raise _bad(
            "date",
            "must be YYYY, YYYY-MM, YYYY-MM-DD or YYYY-MM-DDThh:mm:ss[.ffffff](Z|+hh:mm|-hh:mm)",
        )
    year = int(m["year"])
    month = int(m["month"] or 1)
    day = int(m["day"] or 1)
    try:
        if m["hour"] is None:
            start = datetime(year, month, day, tzinfo=UTC)
        else:
            tz = m["tz"]
            offset = timedelta(0)
            if tz != "Z":
                hours, minutes = int(tz[1:3]), int(tz[4:6])
                if hours > 14 or minutes > 59 or (hours == 14 and minutes):
                    raise _bad("date", "time zone offset must be between -14:00 and +14:00")
                offset = timedelta(hours=hours, minutes=minutes) * (-1 if tz[0] == "-" else 1)
            fraction = m["fraction"] or ""
            micros = int(fraction.ljust(6, "0")) if fraction else 0
            local = datetime(
                year, month, day, int(m["hour"]), int(m["minute"]), int(m["second"]), micros
            )
            start = (local - offset).replace(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise _bad("date", "is not a calendar date and time") from exc
    try:
        if m["month"] is None:
            end: datetime | None = start.replace(year=year + 1)
        elif m["day"] is None:
            end = _add_months(start, 1)
        elif m["hour"] is None:
            end = start + timedelta(days=1)
        else:
            end = start + timedelta(microseconds=10 ** (6 - len(m["fraction"] or "")))
    except (ValueError, OverflowError):
        end = None  # past datetime.max: unbounded above
    return start, end


def _date_bound(raw: str) -> DateBound:
    value = _text("date", raw)
    prefix = value[:2]
    if prefix.isalpha():
        if prefix in _UNSUPPORTED_PREFIXES:
            raise _bad("date", f"prefix {prefix!r} is not supported; use ge, gt, le, lt or eq")
        if prefix not in _PREFIXES:
            raise _bad("date", "prefix must be one of ge, gt, le, lt, eq")
        value = value[2:]
    else:
        prefix = "eq"
    if "," in value:
        raise _bad("date", "alternatives (commas) are not supported; repeat date to AND bounds")
    start, end = _date_range(value)
    since: datetime | None
    until: datetime | None
    if prefix == "eq":
        since, until = start, end
    elif prefix == "ge":
        since, until = start, None
    elif prefix == "gt":
        since, until = (end, None) if end is not None else (_MAX_TIME, _MAX_TIME)
    elif prefix == "le":
        since, until = None, end
    else:  # lt
        since, until = None, start
    return DateBound(prefix=_PREFIXES[prefix], value=value, since=since, until=until)


def _alternatives(name: str, raw: str) -> list[str]:
    parts = _text(name, raw).split(",")
    if len(parts) > MAX_ALTERNATIVES:
        raise _bad(name, f"has {len(parts)} alternatives; at most {MAX_ALTERNATIVES}")
    if any(not p for p in parts):
        raise _bad(name, "has an empty alternative")
    return parts


def _type_code(raw: str, ns: FhirNamespace) -> TypeCode:
    system, sep, code = raw.rpartition("|")
    if not _CODE.fullmatch(code):
        raise _bad("type", "each code must be 1-32 letters, digits, '.', '_' or '-'")
    if not sep:
        return TypeCode(system=None, code=code)
    if system == "":
        raise _bad("type", "'|code' (no system) matches nothing here; give the code alone")
    if system not in (DCM, ns.private_codes):
        raise _bad("type", f"system must be {DCM} or {ns.private_codes}")
    return TypeCode(system=system, code=code)


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
    link). Anything else, a modifier included, is rejected.
    """
    ns = FhirNamespace.under(base_url)
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
            raise _bad(name, "values must be a list of strings")

    patient = _single(params, "patient")
    agent = _single(params, "agent")
    entity = _single(params, "entity")
    count_raw = _single(params, "_count")
    cursor_raw = _single(params, "_cursor", MAX_CURSOR_CHARS)
    type_raw = _single(params, "type")
    action_raw = _single(params, "action")

    count = default_count
    if count_raw is not None:
        if not count_raw.isascii() or not count_raw.isdigit() or len(count_raw) > 7:
            raise _bad("_count", f"must be an integer from 1 to {max_count}")
        count = int(count_raw)
        if not 1 <= count <= max_count:
            raise _bad("_count", f"must be an integer from 1 to {max_count}")

    types: tuple[TypeCode, ...] = ()
    if type_raw is not None:
        types = tuple(_type_code(p, ns) for p in _alternatives("type", type_raw))
    actions: tuple[str, ...] = ()
    if action_raw is not None:
        alternatives = _alternatives("action", action_raw)
        bad = [a for a in alternatives if a not in _ACTIONS]
        if bad:
            raise _bad("action", "each action must be one of C, R, U, D, E")
        actions = tuple(dict.fromkeys(alternatives))

    raw_dates = params.get("date") or []
    if len(raw_dates) > MAX_DATES:
        raise _bad("date", f"is given {len(raw_dates)} times; at most {MAX_DATES}")
    dates = tuple(_date_bound(d) for d in raw_dates)
    lows = [d.since for d in dates if d.since is not None]
    highs = [d.until for d in dates if d.until is not None]

    if cursor_raw is not None and not _TOKEN.fullmatch(cursor_raw):
        raise _bad("_cursor", "is not a page token this server issued")

    return AuditEventSearch(
        patient=None if patient is None else _reference("patient", patient),
        agent=None if agent is None else _reference("agent", agent),
        entity=None if entity is None else _study_uid(entity),
        types=types,
        actions=actions,
        dates=dates,
        since=max(lows) if lows else None,
        until=min(highs) if highs else None,
        count=count,
        cursor=cursor_raw,
    )
