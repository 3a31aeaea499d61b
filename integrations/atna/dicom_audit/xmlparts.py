"""The parts of a written DICOM audit message: coded values, base64 details, and the
patient and study participant objects.

Invariant: every text written passes ``check_xml_text`` (XML 1.0 cannot carry control
characters or lone surrogates: ``ValueError``); a patient object is ``id^^^issuer`` when
that splits back unambiguously, else the id with an ``IssuerOfPatientID`` detail, so the
mapper reads back exactly the patient written.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from producers import Patient, Study
from schemas import dicom

__all__ = [
    "all_text",
    "b64",
    "check_xml_text",
    "coded",
    "detail",
    "pair",
    "patient_object",
    "study_object",
]

#: Characters XML 1.0 cannot carry at all (plus lone surrogates).
XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def check_xml_text(value: str, field: str) -> str:
    if XML_ILLEGAL.search(value):
        raise ValueError(f"{field} holds a character XML 1.0 cannot carry")
    return value


def b64(value: str) -> str:
    return base64.b64encode(value.encode("utf-8")).decode("ascii")


def coded(parent: ET.Element, tag: str, code: str, system: str, text: str | None) -> None:
    attrs = {"csd-code": code, "codeSystemName": system}
    if text:
        attrs["originalText"] = text
    ET.SubElement(parent, tag, attrs)


def detail(parent: ET.Element, kind: str, value: str) -> None:
    ET.SubElement(parent, "ParticipantObjectDetail", {"type": kind, "value": b64(value)})


def pair(parent: ET.Element, kind: str, key: str, value: str) -> None:
    detail(parent, kind, json.dumps([key, value], ensure_ascii=False))


def patient_object(parent: ET.Element, patient: Patient) -> None:
    safe = "^" not in patient.id and (
        patient.issuer is None or not re.search(r"[\^&]", patient.issuer)
    )
    ident = patient.id if patient.issuer is None else f"{patient.id}^^^{patient.issuer}"
    obj = ET.SubElement(
        parent,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": ident if safe else patient.id,
            "ParticipantObjectTypeCode": dicom.OBJECT_PERSON,
            "ParticipantObjectTypeCodeRole": dicom.ROLE_PATIENT,
        },
    )
    coded(obj, "ParticipantObjectIDTypeCode", dicom.PATIENT_NUMBER, dicom.RFC3881, "Patient Number")
    if not safe:
        detail(obj, "IssuerOfPatientID", patient.issuer or "")


def study_object(parent: ET.Element, study: Study, ledger: ET.Element) -> None:
    obj = ET.SubElement(
        parent,
        "ParticipantObjectIdentification",
        {
            "ParticipantObjectID": study.uid,
            "ParticipantObjectTypeCode": dicom.OBJECT_SYSTEM,
            "ParticipantObjectTypeCodeRole": dicom.ROLE_REPORT,
        },
    )
    coded(
        obj,
        "ParticipantObjectIDTypeCode",
        dicom.STUDY_INSTANCE_UID,
        dicom.DCM,
        "Study Instance UID",
    )
    if study.modality is not None:
        detail(obj, "Modality", study.modality)
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
        detail(ledger, "study-instances", str(study.instances))


def all_text(values: Iterable[tuple[str, str | None]]) -> None:
    for field, value in values:
        if value is not None:
            check_xml_text(value, field)
