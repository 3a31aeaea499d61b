"""What the DICOM audit proxy costs in front of Orthanc: C-STORE throughput and C-FIND
latency, direct and through the proxy, side by side in one run.

Starts its own Orthanc (Debian's, no plugin, free ports) and the proxy in front of it
(recording into memory: the recorder is not what is measured). C-STORE: DCMTK's
storescu sends the same CT study (``--instances`` of 512x512x16 bit) in one association,
direct and through the proxy, in alternating rounds; instances/s and the ratio (goal:
proxy >= 0.8 of direct). C-FIND: a pynetdicom client (TCP_NODELAY) on one association
per target sends the same study-level query, alternating blocks of 50, direct and
through the proxy; p50/p99 and the p99 the proxy adds (goal: < 5 ms). Nothing fails on
a number. Needs Debian's orthanc and DCMTK; not the stack.

    .venv/bin/python benchmarks/dicomproxy.py [--instances 200] [--rounds 3] [--queries 500]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE

from integrations.dicomproxy import DicomProxy, MemoryRecorder, parse_config
from integrations.dicomproxy.sopclasses import STUDY_ROOT_FIND
from integrations.dicomproxy.transport import no_delay
from tests.dicom_upstream import ct_instance

ORTHANC = "/usr/sbin/Orthanc"
ORTHANC_AET, PROXY_AET = "BENCHPACS", "LEDGERPROXY"
CLIENTS = ["STORESCU", "BENCH"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_orthanc(home: Path) -> tuple[subprocess.Popen[bytes], int]:
    http, dicom = free_port(), free_port()
    config = {
        "Name": "dicomproxy-bench", "StorageDirectory": str(home / "db"),
        "IndexDirectory": str(home / "db"), "HttpPort": http, "DicomPort": dicom,
        "DicomAet": ORTHANC_AET, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "Plugins": [],
        "DicomModalities": {a.lower(): [a, "127.0.0.1", 104] for a in [PROXY_AET, *CLIENTS]},
    }  # fmt: skip
    (home / "orthanc.json").write_text(json.dumps(config))
    log = (home / "orthanc.log").open("wb")
    # DCMTK (Orthanc's DICOM stack) leaves Nagle's algorithm on unless TCP_NODELAY is set:
    # each C-FIND answer would then wait ~40 ms for the client's delayed ACK.
    env = {**os.environ, "TCP_NODELAY": "1"}
    proc = subprocess.Popen([ORTHANC, str(home / "orthanc.json")], cwd=home, stdout=log,
                            stderr=subprocess.STDOUT, env=env)  # fmt: skip
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{http}/system", timeout=2).read()
            return proc, dicom
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"Orthanc did not start: see {home / 'orthanc.log'}") from None
            time.sleep(0.2)


def write_study(where: Path, count: int) -> None:
    study, series = generate_uid(), generate_uid()
    for i in range(count):
        ds = ct_instance("BENCH001", "BENCH^PATIENT", study, series, i + 1)
        ds.Rows = ds.Columns = 512
        ds.PixelData = bytes(512 * 512 * 2)
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.save_as(where / f"{i:05d}.dcm", enforce_file_format=True)


def store_seconds(port: int, called: str, study: Path) -> float:
    started = time.perf_counter()
    run = subprocess.run(
        ["storescu", "-aet", "STORESCU", "-aec", called, "127.0.0.1", str(port), "+sd", str(study)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if run.returncode != 0:
        raise SystemExit(f"storescu failed: {run.stderr[-2000:]}")
    return time.perf_counter() - started


class FindClient:
    def __init__(self, port: int, called: str) -> None:
        ae = AE("BENCH")
        ae.add_requested_context(STUDY_ROOT_FIND)
        self.called = called
        self.assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if not self.assoc.is_established:
            raise SystemExit(f"no association with {called}")
        no_delay(self.assoc.dul.socket.socket)
        self.query = Dataset()
        self.query.QueryRetrieveLevel = "STUDY"
        self.query.PatientID = "BENCH001"
        self.query.StudyInstanceUID = ""
        self.query.StudyDate = ""

    def once(self) -> float:
        started = time.perf_counter()
        answers = list(self.assoc.send_c_find(self.query, STUDY_ROOT_FIND))
        elapsed = time.perf_counter() - started
        if len(answers) != 2:
            raise SystemExit(f"unexpected C-FIND answers from {self.called}: {answers}")
        return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def serve_proxy(upstream_port: int) -> None:
    """The proxy in its own process, as ``ledger dicom-proxy serve`` runs it: prints its
    port, serves until stdin closes, then prints how many operations it recorded."""
    logging.disable(logging.WARNING)
    recorder = MemoryRecorder(capacity=10**7)
    cfg = parse_config({
        "listen": {"host": "127.0.0.1", "port": 0, "ae_title": PROXY_AET,
                   "allowed_calling_aets": CLIENTS},
        "upstream": {"host": "127.0.0.1", "port": upstream_port, "ae_title": ORTHANC_AET},
    })  # fmt: skip
    with DicomProxy(cfg, recorder) as proxy:
        print(proxy.address[1], flush=True)
        sys.stdin.read()
    print(len(recorder.operations), flush=True)


def start_proxy(upstream_port: int) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-proxy", str(upstream_port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--serve-proxy", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_proxy:
        serve_proxy(args.serve_proxy)
        return
    logging.disable(logging.WARNING)
    home = Path(tempfile.mkdtemp(prefix="dicomproxy-bench-"))
    (home / "study").mkdir()
    write_study(home / "study", args.instances)
    orthanc, dicom = start_orthanc(home)
    proxy, proxy_port = start_proxy(dicom)
    try:
        targets = {"direct": (dicom, ORTHANC_AET), "proxy": (proxy_port, PROXY_AET)}
        store: dict[str, list[float]] = {"direct": [], "proxy": []}
        for _ in range(args.rounds):
            for name, (port, called) in targets.items():
                store[name].append(args.instances / store_seconds(port, called, home / "study"))
        print(f"C-STORE, {args.instances} x 512 KiB per round, {args.rounds} rounds:")
        for name, rates in store.items():
            print(f"  {name:7s} {max(rates):8.1f} instances/s (best), rounds {rates}")
        ratio = max(store["proxy"]) / max(store["direct"])
        print(f"  proxy/direct {ratio:.2f} (goal >= 0.80)")
        clients = {name: FindClient(*target) for name, target in targets.items()}
        lat: dict[str, list[float]] = {"direct": [], "proxy": []}
        for _ in range(max(1, args.queries // 50)):
            for name, client in clients.items():
                lat[name].extend(client.once() for _ in range(50))
        for client in clients.values():
            client.assoc.release()
        print(f"C-FIND, {len(lat['direct'])} queries each, one association each:")
        for name, values in lat.items():
            print(f"  {name:7s} p50 {pct(values, 0.5):6.2f} ms  p99 {pct(values, 0.99):6.2f} ms")
        added = pct(lat["proxy"], 0.99) - pct(lat["direct"], 0.99)
        recorded, _ = proxy.communicate(timeout=30)
        print(f"  added p99 {added:.2f} ms (goal < 5 ms); operations recorded: {recorded.strip()}")
    finally:
        if proxy.poll() is None:
            proxy.kill()
        orthanc.terminate()
        orthanc.wait(timeout=60)


if __name__ == "__main__":
    main()
