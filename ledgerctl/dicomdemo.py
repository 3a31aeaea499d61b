"""``ledger demo-dicom``: what a workstation does over DICOM networking, through the audit
proxy that ``make up`` starts in front of Orthanc, made with DCMTK's own tools, and
where each operation lands in the ledger.

Invariant: every operation is a real DCMTK command against the running stack (echoscu,
storescu, findscu, getscu, movescu to a known and to an unknown destination); the
patients are new on each run (their ids carry the run's time), so the histories shown
hold exactly this run's operations, each proven against a signed checkpoint.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from ledgerctl.settings import Settings
from ledgerctl.tables import fetch_history

__all__ = ["DicomDemo", "ProxyUnreachable", "run_dicom_demo"]

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ISSUER = "DEMO-HOSP"


class ProxyUnreachable(Exception):
    """echoscu got no answer from the proxy: nothing else is tried."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    what: str
    command: str
    ok: bool
    note: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DicomDemo:
    steps: tuple[Step, ...]
    patients: tuple[str, ...]
    histories: dict[str, list[dict[str, object]]]


def _instance(patient_id: str, study: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.IssuerOfPatientID, ds.PatientName = patient_id, ISSUER, "DEMO^DICOM"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study, generate_uid()
    ds.StudyDate, ds.Modality, ds.InstanceNumber = time.strftime("%Y%m%d"), "CT", 1
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit, ds.PixelRepresentation, ds.SamplesPerPixel = 15, 0, 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(128)
    return ds


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    # DCMTK's own tools, with arguments this module builds (no shell, no user input).
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603


def _steps(host: str, port: str, aet: str, work: Path, prefix: str) -> list[Step]:
    studies = {f"{prefix}-{n}": generate_uid() for n in (1, 2, 3)}
    files = []
    for patient, study in studies.items():
        path = work / f"{patient}.dcm"
        _instance(patient, study).save_as(path, enforce_file_format=True)
        files.append(str(path))
    first = next(iter(studies.values()))
    peer = [host, port]
    called = ["-aec", aet]
    echo = _run(["echoscu", "-aet", "ECHOSCU", *called, *peer])
    if echo.returncode != 0 or "Association Rejected" in echo.stderr or "Abort" in echo.stderr:
        raise ProxyUnreachable(
            f"no DICOM audit proxy {aet} answers at {host}:{port} (echoscu: "
            f"{(echo.stderr.strip().splitlines() or ['no output'])[-1]}); is `make up` running?"
        )
    store = _run(["storescu", "-aet", "STORESCU", *called, *peer, *files])
    find = _run(["findscu", "-S", "-aet", "FINDSCU", *called,
                 "-k", "QueryRetrieveLevel=STUDY", "-k", f"PatientID={prefix}-*",
                 "-k", "StudyInstanceUID", "-k", "PatientName", *peer])  # fmt: skip
    study_key = ["-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={first}"]
    (work / "got").mkdir()
    get = _run(["getscu", "-S", "-aet", "GETSCU", *called, "-od", str(work / "got"),
                *study_key, *peer])  # fmt: skip
    nowhere = _run(["movescu", "-S", "-aet", "MOVESCU", *called, "-aem", "NOWHERE",
                    *study_key, *peer])  # fmt: skip
    got = len(list((work / "got").iterdir()))
    found = find.stderr.count("(0020,000d)") + find.stdout.count("(0020,000d)")
    return [
        Step(what="verify the connection", command="echoscu", ok=echo.returncode == 0,
             note="a C-ECHO names nobody: recorded as a Query of the AE"),
        Step(what="store 3 studies of 3 new patients", command="storescu",
             ok=store.returncode == 0, note="one C-STORE event per instance"),
        Step(what=f"search every study of patients {prefix}-*", command="findscu -S",
             ok=find.returncode == 0, note=f"{found} answers: one Query event disclosing them all"),
        Step(what="retrieve one study", command="getscu -S", ok=get.returncode == 0 and got == 1,
             note=f"{got} instance received: a transfer event naming its patient and study"),
        Step(what="move a study to an AE the proxy does not know", command="movescu -aem NOWHERE",
             ok="MoveDestinationUnknown" in nowhere.stderr,
             note="refused (0xA801) and recorded as a failure in MOVESCU's history"),
    ]  # fmt: skip


async def run_dicom_demo(settings: Settings, address: str, aet: str, timeout: float) -> DicomDemo:
    """Run the DCMTK commands through the proxy at ``address``; wait until each of the
    three patients' histories shows its store and the search that disclosed it, and the
    first one's the retrieve."""
    host, _, port = address.rpartition(":")
    prefix = f"DEMO-DICOM-{time.strftime('%H%M%S')}"
    with tempfile.TemporaryDirectory(prefix="ledger-dicom-demo-") as work:
        steps = await asyncio.to_thread(_steps, host, port, aet, Path(work), prefix)
    patients = tuple(f"{prefix}-{n}" for n in (1, 2, 3))
    deadline = time.monotonic() + timeout
    while True:
        histories = {p: await fetch_history(settings.api(), p, ISSUER, 100) for p in patients}
        wanted = {p: {("110112", "E"), ("110104", "C")} for p in patients}
        wanted[patients[0]].add(("110104", "R"))
        if all(wanted[p] <= _seen(h) for p, h in histories.items()):
            return DicomDemo(steps=tuple(steps), patients=patients, histories=histories)
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the search through the DICOM proxy did not reach all 3 histories within "
                f"{timeout:.0f}s; see .local/log/dicomproxy.log and .local/log/consumer.log"
            )
        await asyncio.sleep(0.5)


def _seen(history: list[dict[str, object]]) -> set[tuple[object, object]]:
    """(DICOM event id, action) of each entry."""
    seen = set()
    for entry in history:
        event = entry.get("event")
        if isinstance(event, dict):
            seen.add((event.get("dicom_event_id"), entry.get("action")))
    return seen
