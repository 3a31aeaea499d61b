"""How the emit() benchmarks print a latency distribution and the in-flight bounds
(shared by `emit.py`, `ingest.py` and `producer_auth.py`)."""

from __future__ import annotations

import statistics

from producers.emitter import EmitterConfig

#: A count bound no run reaches: "no count bound" (the configuration before #19).
UNBOUNDED = 10**9


def bounds_of(config: EmitterConfig) -> str:
    count = "none" if config.max_inflight_events >= UNBOUNDED else f"{config.max_inflight_events:,}"
    return (
        f"in flight <= {count} events, <= {config.spool_after_seconds:g} s; "
        f"aiokafka batch {config.kafka_batch_bytes // 1024} KiB"
    )


def quantile_line(durations: list[float]) -> str:
    """p50/p99/p99.9/max of emit() durations (seconds), in µs."""
    q = statistics.quantiles(durations, n=1000)
    return (
        f"p50 {q[499] * 1e6:6.0f}  p99 {q[989] * 1e6:6.0f}  p99.9 {q[998] * 1e6:7.0f}  "
        f"max {max(durations) * 1e6:8.0f} µs"
    )
