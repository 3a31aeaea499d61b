"""Codec throughput: our validated encode/decode versus bare fastavro, same records, one run."""

from __future__ import annotations

import argparse
import io
import time

import fastavro

from integrations.simulator import Simulator
from producers.codec import Codec, to_record


def rate(label: str, n: int, seconds: float) -> float:
    per_s = n / seconds
    print(f"{label:<44} {per_s:>12,.0f} /s   {seconds / n * 1e6:8.2f} µs each")
    return per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    codec = Codec()
    events = [
        e.stamped(producer_id="bench", producer_seq=i)
        for i, e in enumerate(Simulator(seed=1).events(args.events))
    ]
    records = [(dict(codec.writer_schema(e).parsed), to_record(e)) for e in events]

    t = time.perf_counter()
    messages = [codec.encode(e) for e in events]
    ours_enc = rate("ours: validate + encode (single-object)", len(events), time.perf_counter() - t)

    t = time.perf_counter()
    bodies = []
    for schema, record in records:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, schema, record)
        bodies.append(buf.getvalue())
    raw_enc = rate("baseline: fastavro.schemaless_writer", len(events), time.perf_counter() - t)

    t = time.perf_counter()
    for m in messages:
        codec.decode(m)
    ours_dec = rate("ours: decode + validate", len(events), time.perf_counter() - t)

    t = time.perf_counter()
    for (schema, _), body in zip(records, bodies, strict=True):
        fastavro.schemaless_reader(io.BytesIO(body), schema, None)
    raw_dec = rate("baseline: fastavro.schemaless_reader", len(events), time.perf_counter() - t)

    print(f"encode ratio ours/baseline: {ours_enc / raw_enc:.2f}")
    print(f"decode ratio ours/baseline: {ours_dec / raw_dec:.2f}")


if __name__ == "__main__":
    main()
