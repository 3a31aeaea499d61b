"""ATNA receiver throughput: syslog over TLS with N concurrent connections, side by side with
the same messages parsed and mapped without any network (the floor), in one run.

Messages are the realistic DICOM audit messages of tests/corpus/dicom-audit (the ones that
map to events), each made unique by its EventDateTime, framed as RFC 5425 expects. The
senders run in a separate process (N mutual-TLS connections with a client certificate of
the benchmark's own CA, whose CN the sender policy allows every AuditSourceID of the
messages, as fast as TCP lets them); the
receiver runs in this process, as `ledger atna serve` does (with `--parse-workers` parse
processes, default 2; 0 parses in the event loop), handing events to

* a sink that stamps each prepared event (validated and encoded in the parse worker) as
  ``Emitter.emit_prepared`` does, but sends nothing (the receiver's own cost), and
* with ``--kafka`` (default when .local/env exists), the real durable ``Emitter`` to Kafka
  on a fresh benchmark topic (the whole path up to an accepted event).

Prints figures and ratios; no thresholds.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import ssl
import sys
import tempfile
import time
import uuid
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.atna_pki

from integrations.atna.dicom_audit import events_from_dicom
from integrations.atna.receiver import DEFAULT_PARSE_WORKERS, AtnaReceiver, AtnaReceiverConfig
from integrations.atna.rfc5424 import format_syslog, frame_octet_counted, parse_syslog
from integrations.atna.senders import SenderPolicy
from ledgerctl.settings import KAFKA_SECURITY_VARS, KafkaRole, kafka_security_from_env
from producers.codec import Codec, PreparedEvent
from producers.emitter import Emitter, EmitterConfig
from producers.kafka_security import KafkaSecurity, client_kwargs
from tests.atna_pki import Pki, make_pki

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "corpus" / "dicom-audit"
MAPPED = (
    "instances-accessed.xml",
    "query.xml",
    "export.xml",
    "import.xml",
    "emergency-override-start.xml",
    "dcm4chee-instances-accessed.xml",
    "dcm4chee-instances-transferred.xml",
    "dcm4chee-query.xml",
    "dcm4chee-export.xml",
)
_TIME = re.compile(rb'EventDateTime="[^"]*"')
_SOURCE = re.compile(rb'AuditSourceID="([^"]*)"')
#: The client certificate CN the senders present.
SENDER_CN = "atna-bench-sender"


def policy() -> SenderPolicy:
    """The benchmark's sender may claim every AuditSourceID of its messages."""
    sources = {m.decode() for n in MAPPED for m in _SOURCE.findall((CORPUS / n).read_bytes())}
    return SenderPolicy(tls={SENDER_CN: frozenset(sources)})


def messages(n: int) -> list[bytes]:
    payloads = [(CORPUS / name).read_bytes() for name in MAPPED]
    out = []
    for i in range(n):
        when = b'EventDateTime="2026-03-%02dT%02d:%02d:%02d.%06dZ"' % (
            1 + i % 28, i // 3600 % 24, i // 60 % 60, i % 60, i % 1_000_000,
        )  # fmt: skip
        payload = _TIME.sub(when, payloads[i % len(payloads)], count=1)
        out.append(format_syslog(payload, hostname="pacs01.example", app_name="dcm4chee-arc"))
    return out


def rate(label: str, n: int, seconds: float) -> float:
    per_s = n / seconds
    print(f"{label:<58} {per_s:>10,.0f} msg/s  {seconds / n * 1e6:8.1f} µs each", flush=True)
    return per_s


class SinkEmitter:
    """What ``Emitter.emit_prepared`` does before Kafka: stamp; then nothing."""

    class _Cfg:
        producer_id = "atna-bench"

    def __init__(self) -> None:
        self.config = self._Cfg()
        self.seq = 0

    async def emit_prepared(self, event: PreparedEvent) -> int:
        seq = self.seq
        self.seq += 1
        event.encode_with(self.config.producer_id, seq)
        return seq


def _senders(
    port: int,
    tls: tuple[str, str, str],
    frames: list[bytes],
    connections: int,
    ready: MpEvent,
    go: MpEvent,
) -> None:
    async def run() -> None:
        cafile, client_cert, client_key = tls
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.load_cert_chain(client_cert, client_key)
        conns = [
            await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
            for _ in range(connections)
        ]
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, go.wait)

        async def send(writer: asyncio.StreamWriter, mine: list[bytes]) -> None:
            batch = 32
            for i in range(0, len(mine), batch):
                writer.write(b"".join(mine[i : i + batch]))
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        await asyncio.gather(*(send(w, frames[k::connections]) for k, (_, w) in enumerate(conns)))

    asyncio.run(run())


async def over_tls(
    label: str,
    emitter: Any,
    msgs: list[bytes],
    connections: int,
    pki: Pki,
    workdir: Path,
    parse_workers: int,
    expected: int,
) -> float:
    frames = [frame_octet_counted(m) for m in msgs]
    config = AtnaReceiverConfig(
        kept_dir=str(workdir / f"kept-{uuid.uuid4().hex[:6]}"),
        tls_port=0,
        cert_file=str(pki.server_cert),
        key_file=str(pki.server_key),
        client_ca_file=str(pki.client_ca),
        policy=policy(),
        max_connections=max(256, connections),
        parse_workers=parse_workers,
    )
    client_cert, client_key = pki.client(SENDER_CN)
    tls = (str(pki.server_cert), str(client_cert), str(client_key))
    ctx = multiprocessing.get_context("fork")
    ready, go = ctx.Event(), ctx.Event()
    async with AtnaReceiver(config, emitter) as receiver:
        port = receiver.tls_port
        assert port is not None
        proc = ctx.Process(target=_senders, args=(port, tls, frames, connections, ready, go))
        proc.start()
        await asyncio.get_running_loop().run_in_executor(None, ready.wait)
        started = time.perf_counter()
        go.set()
        while receiver.stats().events < expected:
            await asyncio.sleep(0.002)
            if not proc.is_alive() and proc.exitcode:
                raise RuntimeError("the sender process failed")
        seconds = time.perf_counter() - started
        stats = receiver.stats()
        await asyncio.get_running_loop().run_in_executor(None, proc.join)
    if stats.kept_total:
        print(f"  (kept: {dict(stats.kept)})")
    return rate(f"{label} ({connections} conns)", len(msgs), seconds)


async def floor(msgs: list[bytes]) -> tuple[float, float, int]:
    started = time.perf_counter()
    expected = 0
    for m in msgs:
        expected += len(events_from_dicom(parse_syslog(m).msg, check=False))
    parse_only = rate("floor: parse RFC 5424 + DICOM XML + map (no network)", len(msgs),
                      time.perf_counter() - started)  # fmt: skip
    sink, codec = SinkEmitter(), Codec()
    started = time.perf_counter()

    async def emit_all() -> None:
        for m in msgs:
            for e in events_from_dicom(parse_syslog(m).msg, check=False):
                await sink.emit_prepared(codec.prepare(e))

    await emit_all()
    with_encode = rate("floor: ... + validate, encode, stamp (no network)", len(msgs),
                       time.perf_counter() - started)  # fmt: skip
    return parse_only, with_encode, expected


def _kafka_bootstrap() -> str | None:
    env = ROOT / ".local" / "env"
    if os.environ.get("KAFKA_BOOTSTRAP"):
        return os.environ["KAFKA_BOOTSTRAP"]
    if env.is_file():
        for line in env.read_text().splitlines():
            if line.startswith("KAFKA_BOOTSTRAP="):
                return line.split("=", 1)[1]
    return None


def _kafka(role: KafkaRole) -> KafkaSecurity:
    """``role``'s Kafka settings: the environment, else .local/env (as `ledger` reads them)."""
    values = {}
    env = ROOT / ".local" / "env"
    if env.is_file():
        for line in env.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key] = value
    values.update({k: v for k, v in os.environ.items() if k in KAFKA_SECURITY_VARS})
    return kafka_security_from_env(values, role)


async def _delete_topics(bootstrap: str, topics: tuple[str, ...]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, **client_kwargs(_kafka(KafkaRole.ADMIN))
    )
    await admin.start()
    try:
        await admin.delete_topics(list(topics))
    finally:
        await admin.close()


async def main_async(args: argparse.Namespace) -> None:
    msgs = messages(args.messages)
    avg = sum(len(m) for m in msgs) / len(msgs)
    print(f"{len(msgs)} messages, {avg:,.0f} bytes each on average; {os.cpu_count()} CPUs; "
          f"parse_workers={args.parse_workers}")  # fmt: skip
    parse_only, with_encode, expected = await floor(msgs)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        pki = await asyncio.to_thread(make_pki, work / "pki")
        results: dict[str, float] = {}
        for n in args.connections if args.sink else ():
            results[f"sink/{n}"] = await over_tls(
                "TLS -> receiver -> stamping sink", SinkEmitter(), msgs, n,
                pki, work, args.parse_workers, expected,
            )  # fmt: skip
        bootstrap = _kafka_bootstrap() if args.kafka else None
        if bootstrap:
            from ledgerctl.infra import ensure_topics

            topic = f"bench-atna-{uuid.uuid4().hex[:8]}"
            await ensure_topics(bootstrap, (topic, f"{topic}-relay"), 4, _kafka(KafkaRole.ADMIN))
            for n in args.connections:
                config = EmitterConfig(
                    bootstrap_servers=bootstrap,
                    producer_id=f"atna-bench-{uuid.uuid4().hex[:6]}",
                    access_topic=topic,
                    relay_topic=f"{topic}-relay",
                    spool_dir=str(work / f"spool-{n}"),
                    kafka_security=_kafka(KafkaRole.ATNA),
                )
                async with Emitter(config) as emitter:
                    results[f"kafka/{n}"] = await over_tls(
                        "TLS -> receiver -> Emitter -> Kafka", emitter, msgs, n, pki,
                        work, args.parse_workers, expected,
                    )  # fmt: skip
                    await emitter.flush()
            await _delete_topics(bootstrap, (topic, f"{topic}-relay"))
    print("ratios to the floor (parse + map, no network):")
    for label, value in results.items():
        print(f"  {label:<14} {value / parse_only:5.2f}   (to parse+map+encode: "
              f"{value / with_encode:5.2f})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument(
        "--parse-workers", type=int, default=DEFAULT_PARSE_WORKERS,
        help=f"AtnaReceiverConfig.parse_workers (default {DEFAULT_PARSE_WORKERS}; 0 parses in "
        "the event loop)",
    )  # fmt: skip
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument(
        "--sink", action=argparse.BooleanOptionalAction, default=True,
        help="measure the receiver with a sink emitter (stamp, validate, encode; no Kafka)",
    )  # fmt: skip
    parser.add_argument(
        "--kafka", action=argparse.BooleanOptionalAction, default=True,
        help="also measure with the real Emitter to Kafka (KAFKA_BOOTSTRAP or .local/env)",
    )  # fmt: skip
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
