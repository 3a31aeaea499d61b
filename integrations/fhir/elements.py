"""The things an AuditEvent is about, its details and its source, as event fields.

Invariant: an entity is the patient (object-role 1), a study (``urn:dicom:uid``, DCM
110180) or a query (object-role 24); every ``event-detail`` extension and a query's text
become ``details`` entries, each key once; the source names the facility, and the producer
only when the resource is one this ledger produced.
"""

from __future__ import annotations

import base64
import binascii
from typing import Literal

from integrations.fhir.agents import ext_text
from integrations.fhir.nodes import (
    Builder,
    Node,
    code_of,
    extensions_at,
    fail,
    has_code,
    one_extension,
)
from integrations.fhir.vocabulary import DCM, DICOM_UID_SYSTEM, OBJECT_ROLE, SOURCE_KEYS
from producers import Facility, Patient, Study

__all__ = ["add_details", "add_query", "entity_kind", "patient_of", "source_of", "study_of"]


def patient_of(b: Builder, entity: Node) -> Patient:
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
            raise fail(reference.path, "must be Patient/<id>")
        b.note("patient.id", reference)
    issuer = identifier.get("assigner").get("display")
    b.note("patient.issuer", issuer)
    state: str | None = None
    for detail in entity.items("detail"):
        if detail.get("type").text() == "state":
            b.note("patient.state", detail.get("valueString"))
            state = detail.get("valueString").required_text()
        else:
            raise fail(detail.path, "a patient detail other than state cannot be mapped")
    return Patient(id=patient_id, issuer=issuer.text(), state=state)


def study_of(b: Builder, entity: Node) -> Study:
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
                raise fail(item.path, "must be a count of instances (digits)")
            instances = int(raw)
        else:
            raise fail(detail.path, f"study detail {kind!r} cannot be mapped")
    return Study(
        uid=uid,
        accession=accession,
        modality=modality,
        sop_classes=tuple(sop_classes),
        instances=instances,
    )


def entity_kind(entity: Node) -> Literal["patient", "study", "query"]:
    role = entity.get("role")
    what = entity.get("what")
    if code_of(role) == (OBJECT_ROLE, "13"):
        raise fail(
            entity.path,
            "a security resource (object-role 13, e.g. the audit log of an Audit Log Used "
            "event) cannot be mapped; the ledger records reads of itself on its own",
        )
    reference = what.get("reference").value
    if (
        code_of(role) == (OBJECT_ROLE, "1")
        or what.get("type").value == "Patient"
        or (isinstance(reference, str) and reference.startswith("Patient/"))
    ):
        return "patient"
    if entity.get("query").present or code_of(role) == (OBJECT_ROLE, "24"):
        return "query"
    identifier = what.get("identifier")
    if (
        identifier.get("system").value == DICOM_UID_SYSTEM
        or has_code(identifier.get("type"), DCM, "110180")
        or what.get("type").value == "ImagingStudy"
    ):
        return "study"
    raise fail(
        entity.path,
        "only the patient (object-role 1), a study (urn:dicom:uid, DCM 110180) and a query "
        "(object-role 24) can be mapped",
    )


def add_query(b: Builder, entity: Node) -> None:
    entity.only(frozenset({"id", "extension", "type", "role", "query"}))
    node = entity.get("query")
    raw = node.required_text("is required for a query entity (base64 of the query)")
    try:
        text = base64.b64decode(raw, validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise fail(node.path, "must be base64 of UTF-8 text") from exc
    b.add_detail("query", text, node)


def add_details(b: Builder) -> None:
    for ext in extensions_at(b.root, b.names.event_detail):
        key_node = value_node = None
        for part in ext.items("extension"):
            url = part.get("url").text()
            if url == "key":
                key_node = part.get("valueString")
            elif url == "value":
                value_node = part.get("valueString")
            else:
                raise fail(part.path, "an event-detail part must be key or value")
        if key_node is None:
            raise fail(ext.path, "an event-detail needs a key")
        key = key_node.required_text()
        value = "" if value_node is None else value_node.required_text()
        b.add_detail(key, value, ext)


def source_of(b: Builder, keep_producer: bool) -> tuple[Facility, str | None, int | None]:
    source = b.root.get("source")
    if not source.present:
        raise fail(source.path, "is required (site = facility, observer = producer)")
    source.only(SOURCE_KEYS)
    site = source.get("site")
    b.note("facility.id", site)
    facility = Facility(
        id=site.required_text("is required (the facility id)"),
        name=ext_text(b, source, b.names.site_name, "facility.name"),
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
    seq_ext = one_extension(source, b.names.producer_sequence)
    if seq_ext is None:
        raise fail(f"{source.path}.extension", f"needs {b.names.producer_sequence}")
    seq = seq_ext.get("valueDecimal")
    b.note("producer_seq", seq)
    value = seq.integer()
    if value is None:
        raise fail(seq.path, "is required")
    return facility, producer_id, value
