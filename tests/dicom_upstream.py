"""A small PACS for the DICOM proxy tests: a pynetdicom SCP holding a few CT instances and
worklist items built with pydicom, answering C-ECHO, C-FIND (patient root, study root,
modality worklist), C-GET, C-MOVE (to destinations it is given) and C-STORE."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, StoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    CTImageStorage,
    ModalityWorklistInformationFind,
    PatientRootQueryRetrieveInformationModelFind,
    PatientRootQueryRetrieveInformationModelGet,
    PatientRootQueryRetrieveInformationModelMove,
    StudyRootQueryRetrieveInformationModelFind,
    StudyRootQueryRetrieveInformationModelGet,
    StudyRootQueryRetrieveInformationModelMove,
    Verification,
)

UPSTREAM_AET = "TESTPACS"
_LEVEL_KEYS = {
    "PATIENT": ("PatientID",),
    "STUDY": ("PatientID", "StudyInstanceUID"),
    "SERIES": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID"),
    "IMAGE": ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"),
}


def ct_instance(patient_id: str, name: str, study: str, series: str, number: int) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.IssuerOfPatientID = patient_id, name, "HOSP"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
    ds.StudyDate, ds.Modality, ds.InstanceNumber = "20260101", "CT", number
    ds.AccessionNumber = f"ACC{patient_id[-3:]}"
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(128))
    return ds


def worklist_item(patient_id: str, name: str, study: str, modality: str) -> Dataset:
    ds = Dataset()
    ds.PatientID, ds.PatientName, ds.StudyInstanceUID = patient_id, name, study
    ds.AccessionNumber = f"WL{patient_id[-3:]}"
    step = Dataset()
    step.Modality, step.ScheduledStationAETitle = modality, "CT01"
    step.ScheduledProcedureStepStartDate = "20260102"
    ds.ScheduledProcedureStepSequence = [step]
    return ds


@dataclass
class Archive:
    instances: list[Dataset] = field(default_factory=list)
    worklist: list[Dataset] = field(default_factory=list)

    @classmethod
    def sample(cls) -> Archive:
        archive = cls()
        for n, (pid, name) in enumerate(
            [("PID001", "DOE^JANE"), ("PID002", "ROE^RICHARD"), ("PID003", "POE^EDGAR")]
        ):
            study, series = generate_uid(), generate_uid()
            for i in range(n + 1):
                archive.instances.append(ct_instance(pid, name, study, series, i + 1))
            archive.worklist.append(worklist_item(pid, name, generate_uid(), "CT" if n else "MR"))
        return archive

    def studies(self, patient_id: str) -> list[str]:
        return sorted(
            {str(d.StudyInstanceUID) for d in self.instances if d.PatientID == patient_id}
        )


def _matches(candidate: Dataset, query: Dataset) -> bool:
    for elem in query:
        if elem.keyword in ("QueryRetrieveLevel", "SpecificCharacterSet") or elem.VR == "SQ":
            continue
        wanted = str(elem.value or "")
        if not wanted:
            continue
        have = str(candidate.get(elem.keyword, ""))
        if "\\" in wanted:
            if have not in wanted.split("\\"):
                return False
        elif not fnmatch.fnmatchcase(have, wanted.replace("?", "[?]").replace("[?]", "?")):
            return False
    return True


def _answer(candidate: Dataset, query: Dataset) -> Dataset:
    out = Dataset()
    for elem in query:
        if elem.VR == "SQ":
            continue
        setattr(out, elem.keyword, candidate.get(elem.keyword, elem.value))
    return out


def _select(archive: Archive, query: Dataset) -> list[Dataset]:
    level = str(query.get("QueryRetrieveLevel", "IMAGE"))
    keys = _LEVEL_KEYS.get(level, _LEVEL_KEYS["IMAGE"])
    seen: dict[tuple[str, ...], Dataset] = {}
    for ds in archive.instances:
        if _matches(ds, query):
            seen.setdefault(tuple(str(ds.get(k, "")) for k in keys), ds)
    return list(seen.values())


@dataclass
class UpstreamPacs:
    """The SCP; ``destinations`` maps a move destination AE title to (host, port)."""

    archive: Archive = field(default_factory=Archive.sample)
    destinations: dict[str, tuple[str, int]] = field(default_factory=dict)
    received: list[Dataset] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    server: Any = None

    def start(self, port: int = 0, ssl_context: Any = None) -> int:
        ae = AE(UPSTREAM_AET)
        for cx in (
            Verification,
            PatientRootQueryRetrieveInformationModelFind,
            PatientRootQueryRetrieveInformationModelGet,
            PatientRootQueryRetrieveInformationModelMove,
            StudyRootQueryRetrieveInformationModelFind,
            StudyRootQueryRetrieveInformationModelGet,
            StudyRootQueryRetrieveInformationModelMove,
            ModalityWorklistInformationFind,
        ):
            ae.add_supported_context(cx)
        for cx in AllStoragePresentationContexts:
            if cx.abstract_syntax is not None:
                ae.add_supported_context(cx.abstract_syntax, scu_role=False, scp_role=True)
        ae.requested_contexts = StoragePresentationContexts
        handlers: list[evt.EventHandlerType] = [
            (evt.EVT_C_FIND, self._find),
            (evt.EVT_C_GET, self._get),
            (evt.EVT_C_MOVE, self._move),
            (evt.EVT_C_STORE, self._store),
        ]
        self.server = ae.start_server(
            ("127.0.0.1", port), block=False, evt_handlers=handlers, ssl_context=ssl_context
        )
        return int(self.server.server_address[1])

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def _note(self, event: Any, what: str) -> None:
        self.calls.append((what, str(event.assoc.requestor.ae_title)))

    def _find(self, event: Any) -> Iterator[tuple[int, Dataset | None]]:
        self._note(event, "find")
        query = event.identifier
        if event.context.abstract_syntax == ModalityWorklistInformationFind:
            wanted = ""
            if "ScheduledProcedureStepSequence" in query and query.ScheduledProcedureStepSequence:
                wanted = str(query.ScheduledProcedureStepSequence[0].get("Modality", "") or "")
            for item in self.archive.worklist:
                step = item.ScheduledProcedureStepSequence[0]
                if _matches(item, query) and wanted in ("", step.Modality):
                    out = _answer(item, query)
                    if "ScheduledProcedureStepSequence" in query:
                        out.ScheduledProcedureStepSequence = [step]
                    yield 0xFF00, out
            return
        for ds in _select(self.archive, query):
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, _answer(ds, query)

    def _instances(self, query: Dataset) -> list[Dataset]:
        return [ds for ds in self.archive.instances if _matches(ds, query)]

    def _get(self, event: Any) -> Iterator[Any]:
        self._note(event, "get")
        found = self._instances(event.identifier)
        yield len(found)
        for ds in found:
            yield 0xFF00, ds

    def _move(self, event: Any) -> Iterator[Any]:
        self._note(event, "move")
        where = self.destinations.get(str(event.move_destination).strip())
        if where is None:
            yield None, None
            return
        found = self._instances(event.identifier)
        yield where[0], where[1]
        yield len(found)
        for ds in found:
            yield 0xFF00, ds

    def _store(self, event: Any) -> int:
        self._note(event, "store")
        ds = event.dataset
        ds.file_meta = event.file_meta
        self.received.append(ds)
        return 0x0000


def write_instances(archive: Archive, where: Path) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(archive.instances):
        path = where / f"ct{i}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
