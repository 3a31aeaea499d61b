"""What the REST wrappers cost on a large archive download (docs/orthanc.md, "Cost").

Starts two Orthancs side by side, ``plain`` (no plugin) and ``audited`` (this plugin,
``ArchiveMaxBytes`` 0 so nothing is refused; events go to a closed Kafka port and wait
in a scratch spool: the archive's cost is the wrapper's, not Kafka's), uploads the same
study of ``--instances`` incompressible instances of about ``--kib`` KiB each, then
downloads ``GET /studies/{id}/archive`` from each in turns and prints per server: the
time, the ZIP's size, the peak growth of Orthanc's resident memory during the download
(sampled from /proc every 5 ms), and the slowest of the small audited reads
(``GET /studies/{id}``) another client made meanwhile: how long other requests wait while
an archive is built. Then it times ``--finds`` searches (``POST /tools/find``, the study
level, expanded) on each, one at a time, and prints their p50 and p99: what answering a
search through the plugin adds. Nothing fails on a number.

    .venv/bin/python benchmarks/orthanc_archive.py [--instances 300] [--kib 1024] [--runs 3]
        [--finds 500]
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import secrets
import statistics
import sys
import sysconfig
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from benchmarks.orthanc import Server, request, start


def make_instances(count: int, kib: int) -> list[bytes]:
    study, series = generate_uid(), generate_uid()
    side = int((kib * 1024) ** 0.5)
    files = []
    for i in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = sop = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.PatientID, ds.PatientName = "ARCHIVE-BENCH", "Bench^Archive"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, sop
        ds.SOPClassUID, ds.Modality, ds.InstanceNumber = SecondaryCaptureImageStorage, "OT", i
        ds.Rows = ds.Columns = side
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = os.urandom(side * side)  # incompressible, as real pixel data nearly is
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        files.append(out.getvalue())
    return files


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def download(server: Server, study: str) -> tuple[float, int, int, float]:
    """(seconds, bytes, peak RSS growth in KiB, slowest concurrent read in ms)."""
    done = threading.Event()
    base = rss_kib(server.proc.pid)
    peak = [base]
    slowest = [0.0]

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(server.proc.pid))
            time.sleep(0.005)

    def reads() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        while not done.is_set():
            began = time.perf_counter()
            request(server, conn, "GET", f"/studies/{study}")
            slowest[0] = max(slowest[0], time.perf_counter() - began)
            time.sleep(0.01)

    threads = [threading.Thread(target=f) for f in (sample, reads)]
    for t in threads:
        t.start()
    began = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=600)
        data = request(server, conn, "GET", f"/studies/{study}/archive")
        seconds = time.perf_counter() - began
    finally:
        done.set()
        for t in threads:
            t.join()
    return seconds, len(data), peak[0] - base, slowest[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--kib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--finds", type=int, default=500)
    args = parser.parse_args()
    user, pw = "bench", secrets.token_urlsafe(12)
    with tempfile.TemporaryDirectory(prefix="orthanc-archive-") as tmp:
        home = Path(tmp)
        plugin = {
            "KafkaBootstrap": "127.0.0.1:9",  # closed: events wait in the spool
            "ProducerId": "archive-bench",
            "FacilityId": "bench",
            "SpoolDirectory": str(home / "spool"),
            "ArchiveMaxBytes": 0,
            "PipePython": sys.executable,
            "PythonPath": [sysconfig.get_paths()["purelib"]],
        }
        servers = [
            start("plain", home / "plain", plugin=None, user=user, pw=pw),
            start("audited", home / "audited", plugin=plugin, user=user, pw=pw),
        ]
        try:
            files = make_instances(args.instances, args.kib)
            total = sum(map(len, files)) / 2**20
            print(f"study: {args.instances} instances, {total:.0f} MiB")
            study = ""
            for server in servers:
                conn = server.connect()
                for data in files:
                    reply = request(server, conn, "POST", "/instances", data)
                study = reply.split(b'"ParentStudy" : "')[1].split(b'"')[0].decode()
            results: dict[str, list[tuple[float, int, int, float]]] = {}
            for _ in range(args.runs):
                for server in servers:
                    results.setdefault(server.name, []).append(download(server, study))
            print(f"{'server':8} {'seconds':>8} {'MiB':>6} {'peak RSS +MiB':>14} "
                  f"{'slowest concurrent read ms':>27}")  # fmt: skip
            for name, runs in results.items():
                for seconds, size, grown, slowest in runs:
                    print(f"{name:8} {seconds:8.2f} {size / 2**20:6.0f} {grown / 1024:14.0f} "
                          f"{slowest:27.1f}")  # fmt: skip
                median = statistics.median(r[0] for r in runs)
                print(f"{name:8} median {median:.2f} s")
            body = b'{"Level":"Study","Query":{},"Expand":true}'
            for server in servers:
                conn, times = server.connect(), []
                for _ in range(args.finds):
                    began = time.perf_counter()
                    request(server, conn, "POST", "/tools/find", body)
                    times.append((time.perf_counter() - began) * 1000)
                times.sort()
                p99 = times[int(len(times) * 0.99) - 1]
                print(f"{server.name:8} /tools/find p50 {statistics.median(times):.2f} ms "
                      f"p99 {p99:.2f} ms")  # fmt: skip
        finally:
            for server in servers:
                server.proc.terminate()
                server.proc.wait(timeout=30)


if __name__ == "__main__":
    main()
