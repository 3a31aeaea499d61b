"""emit() latency with a healthy broker: the emitter as configured now (in-flight events
bounded by count and age, larger aiokafka batches within them, the codec's generated Avro
code) beside the configuration of before (16 KiB batches, no count bound, 5 s age bound)
and beside now with fastavro alone as the codec (``Codec(generated=False)``), in one run.

Each round emits N simulated events through the real Emitter (signing, with a spool, as
`ledger simulate` and `ledger serve` run it) into fresh topics of the stack's broker, one
configuration after the other, alternating which goes first, so a noisy shared machine
hurts both alike: first back to back (faster than one broker on this machine takes them,
so the emitter's queue is full and Kafka sets the pace), then paced at --rate events/s (a
host whose broker keeps up; it sleeps between emits, which lets the emitter's tasks run).
Per configuration it prints emit()'s wall-clock p50/p99/p99.9/max, the thread CPU time
of the same calls (what the host's thread spent, without the time other processes took
the core away), the most events seen in flight, and whether the emitter ever spooled.
Goal (issue #19): p99 under 100 µs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.emitstats import UNBOUNDED, bounds_of, quantile_line
from benchmarks.ingest import bench_key
from benchmarks.proofs import admin_kafka, env, simulator
from integrations.simulator import Simulator
from ledgerctl.infra import ensure_topics
from producers.codec import Codec
from producers.emitter import Emitter, EmitterConfig, EmitterState
from producers.events import AuditEvent

#: The configuration before the in-flight bounds (issue #19): aiokafka's default batch,
#: nothing bounded by count (aiokafka's full batches made emit() wait instead), spooling
#: after 5 s without an acknowledgement.
BEFORE: dict[str, Any] = dict(
    kafka_batch_bytes=16_384, max_inflight_events=UNBOUNDED, spool_after_seconds=5.0
)


@dataclass
class Sample:
    """Every emit() call of one configuration: wall and thread-CPU seconds."""

    wall: list[float]
    cpu: list[float]
    most_in_flight: int = 0
    spooled: bool = False


#: Configurations whose emitter encodes with fastavro alone (before the generated code).
FASTAVRO_CODEC = "bounded, fastavro"


async def emit_all(
    config: EmitterConfig,
    events: Sequence[AuditEvent],
    sample: Sample,
    rate: float,
    codec: Codec,
) -> None:
    """Emit every event, back to back (``rate`` 0) or paced at ``rate`` per second (the
    host sleeps whenever it is ahead of its schedule, as a host serving requests would)."""
    async with Emitter(config, codec=codec) as emitter:
        health = emitter.health
        started = time.perf_counter()
        for i, event in enumerate(events):
            t, c = time.perf_counter(), time.thread_time()
            await emitter.emit(event)
            sample.cpu.append(time.thread_time() - c)
            sample.wall.append(time.perf_counter() - t)
            if i % 500 == 0:
                now = health()
                sample.most_in_flight = max(sample.most_in_flight, now.queued)
                sample.spooled |= now.state is EmitterState.SPOOLING
            if rate and (ahead := started + (i + 1) / rate - time.perf_counter()) > 0:
                await asyncio.sleep(ahead)
        await emitter.flush()


async def main(args: argparse.Namespace) -> None:
    settings = env()
    bootstrap = settings["KAFKA_BOOTSTRAP"]
    spool_root = Path(tempfile.mkdtemp(prefix="ledger-bench-emit-"))
    base = EmitterConfig(
        bootstrap_servers=bootstrap,
        producer_id="bench",
        linger_ms=20,
        kafka_security=simulator(settings),
        producer_key_file=bench_key()[0],
    )
    configs = {"before": replace(base, **BEFORE), "bounded (now)": base, FASTAVRO_CODEC: base}
    load = os.getloadavg()
    for rate in (0.0, args.rate):
        samples = await measure(settings, configs, spool_root, args, rate)
        report(args, configs, samples, rate)
    print(f"load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after")


async def measure(
    settings: dict[str, str],
    configs: dict[str, EmitterConfig],
    spool_root: Path,
    args: argparse.Namespace,
    rate: float,
) -> dict[str, Sample]:
    bootstrap = settings["KAFKA_BOOTSTRAP"]
    samples = {name: Sample([], []) for name in configs}
    for round_ in range(args.rounds):
        order = list(configs) if round_ % 2 == 0 else list(reversed(configs))
        codecs = {name: Codec(generated=name != FASTAVRO_CODEC) for name in configs}
        for name in order:
            run = secrets.token_hex(3)
            topics = (f"bench-emit-{run}-phi-access", f"bench-emit-{run}-relay")
            await ensure_topics(bootstrap, topics, 4, admin_kafka(settings))
            events = [
                e.stamped(producer_id="bench", producer_seq=i)
                for i, e in enumerate(Simulator(seed=round_ + 1).events(args.events))
            ]
            config = replace(
                configs[name],
                access_topic=topics[0],
                relay_topic=topics[1],
                spool_dir=str(spool_root / run),
            )
            await emit_all(config, events, samples[name], rate, codecs[name])
    return samples


def report(
    args: argparse.Namespace,
    configs: dict[str, EmitterConfig],
    samples: dict[str, Sample],
    rate: float,
) -> None:
    pace = f"paced at {rate:,.0f}/s" if rate else "back to back (Kafka is the bottleneck)"
    print(
        f"emit(), signed, with a spool, {pace}: {args.events:,} events x {args.rounds} "
        "rounds per configuration"
    )
    for name, sample in samples.items():
        print(f"  {name:<18} {bounds_of(configs[name])}")
        print(f"  {'':<18} wall {quantile_line(sample.wall)}")
        print(f"  {'':<18} cpu  {quantile_line(sample.cpu)}")
        print(
            f"  {'':<18} most in flight {sample.most_in_flight:,}; "
            f"{'SPOOLED during the run' if sample.spooled else 'never spooled'}"
        )
    before, now, fastavro = (statistics.quantiles(s.wall, n=100)[98] for s in samples.values())
    print(f"  p99 now / before: {now / before:.2f}; now / now with fastavro: {now / fastavro:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="per round and configuration")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument(
        "--rate",
        type=float,
        default=3000.0,
        help="events/s of the paced runs (after the back-to-back ones)",
    )
    asyncio.run(main(parser.parse_args()))
