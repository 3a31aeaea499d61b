"""Codec throughput, one run, same records: the codec with its generated Avro code
(producers/avrogen.py) beside the same codec on fastavro alone (``generated=False``, as
before #19) and beside bare fastavro (no validation): validate + encode, ``prepare`` (what
``emit()`` pays), decode + validate (what the consumer pays)."""

from __future__ import annotations

import argparse
import io
import time
from collections.abc import Callable, Sequence
from typing import Any

import fastavro

from integrations.simulator import Simulator
from producers.codec import Codec, to_record


def timed(label: str, items: Sequence[Any], work: Callable[[Any], object]) -> float:
    """Seconds per item over the best of three passes."""
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for item in items:
            work(item)
        best = min(best, time.perf_counter() - t)
    each = best / len(items)
    print(f"{label:<52} {1 / each:>10,.0f} /s  {each * 1e6:7.2f} µs each")
    return each


def bare_write(item: tuple[dict[str, Any], dict[str, Any]]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, item[0], item[1])
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    generated, reference = Codec(), Codec(generated=False)
    unstamped = list(Simulator(seed=1).events(args.events))
    events = [e.stamped(producer_id="bench", producer_seq=i) for i, e in enumerate(unstamped)]
    records = [(dict(generated.writer_schema(e).parsed), to_record(e)) for e in events]
    messages = [generated.encode(e) for e in events]
    bodies = [(schema, m[10:]) for (schema, _), m in zip(records, messages, strict=True)]
    mean = sum(map(len, messages)) / len(messages)
    print(f"{args.events:,} simulated events, mean message {mean:.0f} B")
    rows = {
        "encode": (
            timed("validate + encode, generated code", events, generated.encode),
            timed("validate + encode, fastavro (before #19)", events, reference.encode),
            timed("bare fastavro.schemaless_writer", records, bare_write),
        ),
        "prepare": (
            timed("prepare (emit's share), generated code", unstamped, generated.prepare),
            timed("prepare (emit's share), fastavro (before #19)", unstamped, reference.prepare),
        ),
        "decode": (
            timed("decode + validate, generated code", messages, generated.decode_valid),
            timed("decode + validate, fastavro (before #19)", messages, reference.decode_valid),
            timed(
                "bare fastavro.schemaless_reader",
                bodies,
                lambda b: fastavro.schemaless_reader(io.BytesIO(b[1]), b[0], None),
            ),
        ),
    }
    for name, (ours, before, *bare) in rows.items():
        line = f"{name}: generated / fastavro {ours / before:.2f} of the time"
        if bare:
            line += f"; generated with validation / bare fastavro {ours / bare[0]:.2f}"
        print(line)


if __name__ == "__main__":
    main()
