"""What the PHI audit plugin adds to Orthanc's REST latency.

Starts three Orthanc processes side by side in one run, identical but for the plugin
(same Debian packages, configuration, ports style, users, data): ``plain`` without any
plugin, ``python`` with orthanc-python and a filter that does nothing (what the host's
Python plugin costs by itself), and ``audited`` with the Python plugin and
``integrations/orthanc`` emitting to the real Kafka (a bench topic, never the demo's).
Uploads the same small study to each, then reads from each in turns, one request at a
time over a kept-alive connection, and prints p50, p99 and max per route for each, the
p99 the plugin adds (goal: < 1 ms for a study read) and how much of it is beyond the
no-op filter: back to back (the plugin's background work, one event per read, competes
with the next request for the interpreter and the CPU) and paced at a realistic rate.
Every audited read is an event in Kafka: the run ends by counting them, then prints each
process's CPU time per read (from /proc, the pipe process's too), the figure that
explains the back-to-back p99 on a small machine, and whether the pipe process kept its idle
CPU priority (a starved pipe process is promoted: see ``producers/pipe.py``). Nothing fails
on a number. Needs Kafka (`make up` or `deploy/local/stack.sh infra`) and Debian's
orthanc and orthanc-python (`deploy/local/orthanc.sh install`).

    .venv/bin/python benchmarks/orthanc.py [--requests 5000] [--paced-rate 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import io
import json
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ledgerctl.settings import KafkaRole, kafka_security_from_env
from producers.kafka_security import KafkaSecurity, client_kwargs

ROOT = Path(__file__).resolve().parents[1]
ORTHANC = "/usr/sbin/Orthanc"
PYTHON_PLUGIN = "/usr/share/orthanc/plugins/libOrthancPython.so"
PARTITIONS = 4
BLOCK = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_env() -> dict[str, str]:
    env = {}
    path = ROOT / ".local" / "env"
    if path.is_file():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                env[key] = value
    return env


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    auth: str
    log: Path

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)


#: A Python plugin script that only registers a filter letting everything through: what
#: orthanc-python itself costs per request (the GIL, the call into Python), without ours.
NOOP_SCRIPT = """import orthanc
def _filter(uri, **request):
    return True
orthanc.RegisterIncomingHttpRequestFilter(_filter)
orthanc.LogWarning("PhiLedger: noop filter loaded")
"""


def start(
    name: str,
    home: Path,
    *,
    plugin: dict[str, object] | None,
    user: str,
    pw: str,
    noop: bool = False,
) -> Server:
    home.mkdir(parents=True)
    port = free_port()
    config: dict[str, object] = {
        "Name": name,
        "StorageDirectory": str(home / "db"),
        "IndexDirectory": str(home / "db"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True,
        "RegisteredUsers": {user: pw},
        "KeepAlive": True,
        "HttpThreadsCount": 8,
    }
    if plugin is not None:
        config |= {
            "Plugins": [PYTHON_PLUGIN],
            "PythonScript": str(ROOT / "integrations/orthanc/orthanc_plugin.py"),
            "PhiLedger": plugin,
        }
    elif noop:
        (home / "noop.py").write_text(NOOP_SCRIPT)
        config |= {"Plugins": [PYTHON_PLUGIN], "PythonScript": str(home / "noop.py")}
    (home / "orthanc.json").write_text(json.dumps(config))
    log = home / "orthanc.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [ORTHANC, str(home / "orthanc.json")], cwd=home, stdout=out, stderr=subprocess.STDOUT
        )
    auth = "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()
    server = Server(name, port, proc, auth, log)
    deadline = time.monotonic() + 30
    while True:
        try:
            request(server, server.connect(), "GET", "/system")
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"{name} Orthanc did not start:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
    if plugin is not None and "PhiLedger: auditing PHI access" not in log.read_text():
        sys.exit(f"the audit plugin did not load:\n{log.read_text()[-2000:]}")
    if noop and "PhiLedger: noop filter loaded" not in log.read_text():
        sys.exit(f"the no-op Python filter did not load:\n{log.read_text()[-2000:]}")
    return server


def request(
    server: Server, conn: http.client.HTTPConnection, method: str, path: str, body: bytes = b""
) -> bytes:
    conn.request(method, path, body=body or None, headers={"Authorization": server.auth})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{server.name}: {method} {path} -> {resp.status}")
    return data


def make_study(count: int) -> list[bytes]:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    study_uid, series_uid = generate_uid(), generate_uid()
    files = []
    for i in range(count):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
        meta.MediaStorageSOPInstanceUID = sop = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.PatientID, ds.IssuerOfPatientID, ds.PatientName = "BENCH0001", "bench", "Bench^P"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study_uid, series_uid, sop
        ds.SOPClassUID, ds.Modality, ds.AccessionNumber = SecondaryCaptureImageStorage, "CT", "B1"
        ds.Rows = ds.Columns = 64
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        ds.PixelData = bytes((x + i) % 256 for x in range(64 * 64))
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files.append(buf.getvalue())
    return files


def _cpu_seconds(server: Server) -> float:
    """User + system CPU time of the server's process so far."""
    return _pid_cpu_seconds(server.proc.pid)


def _pid_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pipe_pid(server: Server) -> int | None:
    """The audited Orthanc's pipe process (its only child)."""
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return int(children[0]) if children else None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def count_events(bootstrap: str, topic: str, partitions: int, security: KafkaSecurity) -> int:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **client_kwargs(security))
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)])
        return sum(ends.values())
    finally:
        await consumer.stop()


def measure(
    servers: list[Server],
    conns: dict[str, http.client.HTTPConnection],
    path: Callable[[str], str],
    count: int,
    rate: float,
    warmup: int,
) -> tuple[dict[str, list[float]], int]:
    """Latencies (ms) per server, and how many reads were sent in all (both servers).

    Blocks of BLOCK reads, alternating servers, with a pause between blocks: the audited
    server's background work (the event it emits after each read) never lands in the
    plain server's block. ``rate`` > 0 paces the reads (a realistic load), else they go
    back to back (the plugin's background work then competes with the next request).
    """
    samples: dict[str, list[float]] = {s.name: [] for s in servers}
    sent = 0
    for s in servers:
        for _ in range(warmup):
            request(s, conns[s.name], "GET", path(s.name))
        sent += warmup
    for b in range(0, count, BLOCK):
        for s in servers if (b // BLOCK) % 2 == 0 else reversed(servers):
            time.sleep(0.05)
            # Orthanc closes a kept-alive connection idle for a while: a fresh one per
            # block, opened by one unmeasured read.
            conns[s.name].close()
            conns[s.name] = s.connect()
            request(s, conns[s.name], "GET", path(s.name))
            sent += 1
            due = time.perf_counter()
            for _ in range(min(BLOCK, count - b)):
                if rate:
                    due += 1 / rate
                    time.sleep(max(0.0, due - time.perf_counter()))
                started = time.perf_counter()
                request(s, conns[s.name], "GET", path(s.name))
                samples[s.name].append((time.perf_counter() - started) * 1000)
                sent += 1
    return samples, sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="measured reads per route")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--paced-rate", type=float, default=200, help="reads/s of the paced run")
    parser.add_argument("--paced-requests", type=int, default=1000)
    args = parser.parse_args()

    from ledgerctl.infra import ensure_topics

    env = read_env()
    bootstrap = env.get("KAFKA_BOOTSTRAP", "127.0.0.1:19092")
    run = uuid.uuid4().hex[:8]
    topic, relay = f"bench-orthanc-{run}-phi-access", f"bench-orthanc-{run}-relay"
    admin = kafka_security_from_env(env, KafkaRole.ADMIN)
    asyncio.run(ensure_topics(bootstrap, (topic, relay), PARTITIONS, admin))
    orthanc = kafka_security_from_env(env, KafkaRole.ORTHANC)
    security_keys = {
        "SecurityProtocol": orthanc.protocol,
        "SslCaFile": orthanc.ca_file,
        "SaslMechanism": orthanc.sasl_mechanism,
        "SaslUsername": orthanc.sasl_username,
        "SaslPasswordFile": orthanc.sasl_password_file,
    }
    user, pw = "bench.reader", secrets.token_urlsafe(12)
    ldd = subprocess.run(["ldd", PYTHON_PLUGIN], capture_output=True, text=True, check=True)
    embedded = re.search(r"libpython(\d+\.\d+)", ldd.stdout)
    ours = "{}.{}".format(*sys.version_info[:2])
    if not embedded or embedded.group(1) != ours:
        sys.exit(f"orthanc-python embeds Python {embedded and embedded.group(1)}, this is {ours}")
    with tempfile.TemporaryDirectory(prefix="bench-orthanc-") as tmp:
        plugin: dict[str, object] = {
            "KafkaBootstrap": bootstrap,
            "AccessTopic": topic,
            "RelayTopic": relay,
            "ProducerId": f"bench-orthanc-{run}",
            "FacilityId": "bench",
            "SpoolDirectory": f"{tmp}/spool",
            "PurposeOfUse": "TREAT",
            "Users": {user: {"Role": "radiologist"}},
            "PythonPath": [sysconfig.get_paths()["purelib"]],
            "PipePython": sys.executable,
            **{k: v for k, v in security_keys.items() if v is not None},
        }
        servers = [
            start("plain", Path(tmp) / "plain", plugin=None, user=user, pw=pw),
            start("python", Path(tmp) / "python", plugin=None, user=user, pw=pw, noop=True),
            start("audited", Path(tmp) / "audited", plugin=plugin, user=user, pw=pw),
        ]
        try:
            files = make_study(4)
            conns = {s.name: s.connect() for s in servers}
            ids: dict[str, tuple[str, str]] = {}
            for s in servers:
                for data in files:
                    stored = json.loads(request(s, conns[s.name], "POST", "/instances", data))
                ids[s.name] = (stored["ParentStudy"], stored["ID"])
            routes = {
                "GET /studies/{id}": lambda name: f"/studies/{ids[name][0]}",
                "GET /instances/{id}/file": lambda name: f"/instances/{ids[name][1]}/file",
            }
            print(f"Orthanc REST latency, sequential reads over a kept-alive connection, "
                  f"servers alternating in blocks of {BLOCK}\n")  # fmt: skip
            print(f"{'route':<26} {'load':<10} {'server':<8} {'p50 ms':>8} {'p99 ms':>8} "
                  f"{'max ms':>8}")  # fmt: skip
            cpu_before = {s.name: _cpu_seconds(s) for s in servers}
            pipe_pid = _pipe_pid(servers[2])
            pipe_before = _pid_cpu_seconds(pipe_pid) if pipe_pid else 0.0
            reads = 0
            runs = [(label, path, 0.0, args.requests) for label, path in routes.items()]
            runs.append(("GET /studies/{id}", routes["GET /studies/{id}"], args.paced_rate,
                         args.paced_requests))  # fmt: skip
            for label, path, rate, count in runs:
                samples, sent = measure(servers, conns, path, count, rate, args.warmup)
                reads += sent
                load = f"{rate:.0f}/s" if rate else "unpaced"
                for s in servers:
                    v = samples[s.name]
                    print(f"{label:<26} {load:<10} {s.name:<8} {statistics.median(v):>8.3f} "
                          f"{percentile(v, 0.99):>8.3f} {max(v):>8.3f}")  # fmt: skip
                added50 = statistics.median(samples["audited"]) - statistics.median(
                    samples["plain"]
                )
                added99 = percentile(samples["audited"], 0.99) - percentile(samples["plain"], 0.99)
                ours50 = statistics.median(samples["audited"]) - statistics.median(
                    samples["python"]
                )
                ours99 = percentile(samples["audited"], 0.99) - percentile(samples["python"], 0.99)
                print(f"{label:<26} {load:<10} {'added':<8} {added50:>8.3f} {added99:>8.3f}"
                      f"   <- p99 the plugin adds (goal < 1 ms)")  # fmt: skip
                print(f"{label:<26} {load:<10} {'ours':<8} {ours50:>8.3f} {ours99:>8.3f}"
                      f"   <- of which beyond a no-op Python filter\n")  # fmt: skip
            # Every audited read (and the uploads) must be an event in Kafka.
            expected = reads // len(servers) + len(files)  # the audited server's share
            deadline = time.monotonic() + 30
            got = 0
            while time.monotonic() < deadline:
                got = asyncio.run(count_events(bootstrap, topic, PARTITIONS, admin))
                if got >= expected:
                    break
                time.sleep(0.5)
            print(f"audit events in Kafka: {got} of {expected} expected "
                  f"(topic {topic})")  # fmt: skip
            for s in servers:  # every server served the same reads
                cpu = _cpu_seconds(s) - cpu_before[s.name]
                print(f"CPU of the {s.name} Orthanc process while reading: {cpu:.2f} s, "
                      f"{cpu / (reads / len(servers)) * 1e6:.0f} µs per read")  # fmt: skip
            audited = servers[2]
            if pipe_pid is not None and pipe_pid == _pipe_pid(audited):
                cpu = _pid_cpu_seconds(pipe_pid) - pipe_before
                print(f"CPU of the audited Orthanc's pipe process:   {cpu:.2f} s, "
                      f"{cpu / (reads / len(servers)) * 1e6:.0f} µs per read")  # fmt: skip
            health = json.loads(request(audited, audited.connect(), "GET", "/phi-ledger/health"))
            emitter = health["emitter"]
            print(f"pipe: priority {emitter.get('priority')}, "
                  f"{emitter.get('pipe_promotions', 0)} promotion(s) to normal priority, "
                  f"{emitter.get('pipe_restarts', 0)} restart(s)")  # fmt: skip
        finally:
            for s in servers:
                s.proc.terminate()
            for s in servers:
                try:
                    s.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    s.proc.kill()


if __name__ == "__main__":
    main()
