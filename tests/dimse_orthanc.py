"""Helpers for tests that run their own Orthanc pair (native and audited) over DIMSE.

A small archive of four patients made with pydicom (two studies for one of them, a study
of two series of different modalities, a lower-case PatientID, a non-ASCII name, a
sequence and a non-main tag), and an Orthanc launcher on free ports.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage

from tests.ports import free_port
from tests.reaping import wait_or_kill

ORTHANC = Path("/usr/sbin/Orthanc")
PYTHON_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancPython.so")


@dataclass(frozen=True)
class Series:
    uid: str
    modality: str
    instances: int
    body_part: str = ""
    description: str = ""


@dataclass(frozen=True)
class StudySpec:
    uid: str
    date: str
    accession: str
    description: str
    series: tuple[Series, ...]


@dataclass(frozen=True)
class PatientSpec:
    id: str
    name: str
    issuer: str
    sex: str
    birth: str
    studies: tuple[StudySpec, ...]
    weight: str = ""


def _uid(*parts: int) -> str:
    return "1.2.826.0.1.3680043.10.1419." + ".".join(map(str, parts))


ARCHIVE: tuple[PatientSpec, ...] = (
    PatientSpec("PID001", "DOE^JOHN", "HOSP", "M", "19700101", (
        StudySpec(_uid(1, 1), "20240105", "ACC1", "CT CHEST", (
            Series(_uid(1, 1, 1), "CT", 2, "CHEST", "axial"),
            Series(_uid(1, 1, 2), "MR", 1, "HEAD", "t1"),
        )),
        StudySpec(_uid(1, 2), "20250310", "ACC2", "FOLLOW UP", (
            Series(_uid(1, 2, 1), "OT", 1),
        )),
    ), weight="70"),
    PatientSpec("pid002", "Müller^Anna", "HOSP", "F", "19851224", (
        StudySpec(_uid(2, 1), "20240620", "acc3", "us abdomen", (
            Series(_uid(2, 1, 1), "US", 2, "ABDOMEN"),
        )),
    )),
    PatientSpec("PID003", "SMITH^JANE", "OTHER", "F", "19600505", (
        StudySpec(_uid(3, 1), "20231111", "ACC4", "CT HEAD", (
            Series(_uid(3, 1, 1), "CT", 1, "HEAD"),
        )),
    ), weight="82.5"),
    PatientSpec("PID004", "DOE^JANE", "", "F", "19900909", (
        StudySpec(_uid(4, 1), "20250101", "ACC5", "", (
            Series(_uid(4, 1, 1), "CR", 1),
        )),
    )),
)  # fmt: skip


def instances(archive: tuple[PatientSpec, ...] = ARCHIVE) -> list[bytes]:
    """The archive as DICOM files (UTF-8, explicit little endian)."""
    files = []
    for p in archive:
        for study in p.studies:
            for series in study.series:
                for n in range(series.instances):
                    files.append(_instance(p, study, series, n))
    return files


def _instance(p: PatientSpec, study: StudySpec, series: Series, n: int) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    sop = UID(f"{series.uid}.{n + 1}")
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientID, ds.PatientName, ds.PatientSex, ds.PatientBirthDate = (
        p.id, p.name, p.sex, p.birth,
    )  # fmt: skip
    if p.issuer:
        ds.IssuerOfPatientID = p.issuer
    if p.weight:
        ds.PatientWeight = p.weight
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime = study.uid, study.date, "101500"
    ds.AccessionNumber, ds.StudyDescription, ds.StudyID = study.accession, study.description, "1"
    ds.ReferringPhysicianName = "WHO^DR"
    ds.SeriesInstanceUID, ds.Modality, ds.SeriesNumber = series.uid, series.modality, 1
    ds.SeriesDescription = series.description
    if series.body_part:
        ds.BodyPartExamined = series.body_part
    ds.SOPClassUID, ds.SOPInstanceUID, ds.InstanceNumber = SecondaryCaptureImageStorage, sop, n + 1
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    item.ReferencedSOPInstanceUID = study.uid + ".99"
    ds.ReferencedStudySequence = Sequence([item])
    ds.Rows = ds.Columns = 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = bytes(64)
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


@dataclass
class OrthancProcess:
    name: str
    http: int
    dicom: int
    aet: str
    home: Path
    proc: subprocess.Popen[bytes]
    config: dict[str, object] = field(default_factory=dict)

    @property
    def log(self) -> Path:
        return self.home / "orthanc.log"

    def rest(self, method: str, path: str, body: bytes | None = None) -> object:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http}{path}", data=body, method=method
        )
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def stop(self) -> None:
        stop_all([self])


def stop_all(servers: Iterable[OrthancProcess]) -> None:
    """Stop every Orthanc gracefully, side by side: each takes ~4 s to stop (its HTTP
    and DICOM servers' own shutdown), so they are all told first, then waited for."""
    servers = list(servers)
    for server in servers:
        server.proc.terminate()
    for server in servers:
        wait_or_kill(server.proc)


def start_orthanc(
    home: Path, name: str, aet: str, settings: Mapping[str, object], *, ready_line: str = ""
) -> OrthancProcess:
    """Start Orthanc on free ports in ``home`` and wait until it answers (and logs
    ``ready_line``)."""
    http, dicom = free_port(), free_port()
    config = {
        "Name": name,
        "StorageDirectory": str(home / "db"),
        "IndexDirectory": str(home / "db"),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": aet,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        **settings,
    }
    (home / "orthanc.json").write_text(json.dumps(config, indent=2))
    with (home / "orthanc.log").open("wb") as out:
        proc = subprocess.Popen(
            [str(ORTHANC), str(home / "orthanc.json")], cwd=home, stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = OrthancProcess(name, http, dicom, aet, home, proc, config)
    deadline = time.monotonic() + 40
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start:\n{server.log.read_text()[-3000:]}")
            try:
                server.rest("GET", "/system")
                if ready_line in server.log.read_text():
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Orthanc not ready:\n{server.log.read_text()[-3000:]}")
            time.sleep(0.2)
    except BaseException:
        server.stop()
        raise
    return server


def have_orthanc() -> bool:
    return ORTHANC.exists() and PYTHON_PLUGIN.exists() and shutil.which("findscu") is not None
