"""What the DICOM audit proxy costs in front of Orthanc: C-STORE throughput and C-FIND
latency, direct and through the proxy, side by side in one run.

Starts its own Orthanc (Debian's, no plugin, free ports, TCP_NODELAY) and the proxy in
front of it in a process of its own, as ``ledger dicom-proxy serve`` runs. With the stack
up (``make up``) the proxy records through its real ``LedgerRecorder``: every operation
mapped, validated, signed and emitted to the stack's Kafka (a scratch topic, no consumer)
with its fsynced spool; without the stack, into memory, and it says so. C-STORE: DCMTK's
storescu sends the same CT study (``--instances`` of 512x512x16 bit) in one association,
direct and through the proxy, in alternating rounds; instances/s and the ratio (goal:
proxy >= 0.8 of direct). C-FIND: a pynetdicom client (TCP_NODELAY) on one association
per target sends the same study-level query, alternating blocks of 50, direct and
through the proxy; p50/p99 and the p99 the proxy adds (goal: < 5 ms). Nothing fails on
a number. Needs Debian's orthanc and DCMTK.

    .venv/bin/python benchmarks/dicomproxy.py [--instances 200] [--rounds 3] [--queries 500]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from benchmarks.proofs import admin_kafka, env, simulator
from integrations.dicomproxy import DicomProxy, MemoryRecorder, parse_config
from integrations.dicomproxy.reactor import QuickAE
from integrations.dicomproxy.sopclasses import STUDY_ROOT_FIND
from integrations.dicomproxy.transport import no_delay
from ledgerctl.dicomproxy import run_dicom_proxy
from ledgerctl.infra import ensure_topics
from producers.signing import generate_producer_key, write_producer_key
from tests.dicom_upstream import ct_instance

ROOT = Path(__file__).resolve().parents[1]
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
    run = subprocess.run(  # TCP_NODELAY: as for Orthanc, DCMTK leaves Nagle on without it
        ["storescu", "-aet", "STORESCU", "-aec", called, "127.0.0.1", str(port), "+sd", str(study)],
        capture_output=True, text=True, check=False, env={**os.environ, "TCP_NODELAY": "1"},
    )  # fmt: skip
    if run.returncode != 0:
        raise SystemExit(f"storescu failed: {run.stderr[-2000:]}")
    return time.perf_counter() - started


class FindClient:
    def __init__(self, port: int, called: str) -> None:
        # QuickAE: pynetdicom's own requestor reactor can take a response off the queue
        # in the instant a send_c_find pauses it (one in a few thousand queries lost its
        # pending answer, direct or not); the proxy's reactor closes that window.
        ae = QuickAE("BENCH")
        ae.add_requested_context(STUDY_ROOT_FIND)
        self.called = called
        self.assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if not self.assoc.is_established:
            raise SystemExit(f"no association with {called}")
        sock = self.assoc.dul.socket
        if sock is None or sock.socket is None:
            raise SystemExit(f"no socket for the association with {called}")
        no_delay(sock.socket)
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


def proxy_config(workdir: Path, upstream_port: int) -> tuple[Path | None, str]:
    """A configuration file for ``ledger dicom-proxy serve``: its real ``LedgerRecorder``
    (every operation mapped, validated, signed and emitted with an fsynced spool) writing
    to a scratch topic of the running stack's Kafka; ``None`` when the stack is not up."""
    if not (ROOT / ".local" / "env").exists():
        return None, "memory (no stack: run make up to measure the ledger recorder)"
    settings = env()
    bootstrap = settings["KAFKA_BOOTSTRAP"]
    topic = f"bench-dicomproxy-{secrets.token_hex(3)}-phi-access"
    asyncio.run(ensure_topics(bootstrap, (topic,), 1, admin_kafka(settings)))
    key_file = workdir / "producer.key"
    write_producer_key(str(key_file), generate_producer_key("bench-dicomproxy"))
    kafka = simulator(settings)
    q = json.dumps
    lines = [
        "[listen]", 'host = "127.0.0.1"', "port = 0", f"ae_title = {q(PROXY_AET)}",
        f"allowed_calling_aets = {q(CLIENTS)}",
        "[upstream]", 'host = "127.0.0.1"', f"port = {upstream_port}",
        f"ae_title = {q(ORTHANC_AET)}",
        "[ledger]", f"bootstrap_servers = {q(bootstrap)}", f"topic = {q(topic)}",
        'producer_id = "bench-dicomproxy"', f"producer_key_file = {q(str(key_file))}",
        'facility_id = "bench"', f"spool_dir = {q(str(workdir / 'spool'))}",
        "[ledger.kafka]", f"protocol = {q(kafka.protocol)}",
    ]  # fmt: skip
    for name in ("ca_file", "sasl_mechanism", "sasl_username", "sasl_password_file"):
        if getattr(kafka, name):
            lines.append(f"{name} = {q(getattr(kafka, name))}")
    path = workdir / "proxy.toml"
    path.write_text("\n".join(lines) + "\n")
    return path, f"ledger (Kafka topic {topic})"


def serve_proxy(upstream_port: int) -> None:
    """The proxy in its own process through ``run_dicom_proxy``, the code of ``ledger
    dicom-proxy serve``: prints its port and recorder, serves until stdin closes, then
    prints what it recorded."""
    logging.disable(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="dicomproxy-bench-rec-"))
    config_file, kind = proxy_config(workdir, upstream_port)
    if config_file is None:
        cfg = parse_config({
            "listen": {"host": "127.0.0.1", "port": 0, "ae_title": PROXY_AET,
                       "allowed_calling_aets": CLIENTS},
            "upstream": {"host": "127.0.0.1", "port": upstream_port, "ae_title": ORTHANC_AET},
        })  # fmt: skip
        recorder = MemoryRecorder(capacity=10**7)
        with DicomProxy(cfg, recorder) as proxy:
            print(proxy.address[1], kind, flush=True)
            sys.stdin.read()
        print(f"{len(recorder.operations)} in memory", flush=True)
        return
    stop = threading.Event()

    def stop_at_eof() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=stop_at_eof, daemon=True).start()
    stats = run_dicom_proxy(
        config_file, stop=stop, ready=lambda proxy: print(proxy.address[1], kind, flush=True)
    )
    print(f"{stats['recorded']} events, {stats['emitter_delivered']} in Kafka", flush=True)


def start_proxy(upstream_port: int) -> tuple[subprocess.Popen[str], int, str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-proxy", str(upstream_port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    port, _, kind = proc.stdout.readline().strip().partition(" ")
    return proc, int(port), kind


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
    proxy, proxy_port, recorder_kind = start_proxy(dicom)
    print(f"proxy recorder: {recorder_kind}")
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
