"""`ledger verify` speed on an export bundle, beside the bare hashing it cannot beat.

Writes a synthetic bundle (real leaf format; each leaf's value a real Avro event of the
simulator, encoded by the producers' codec; full tiles, a signed checkpoint every 100,000
leaves) split over two logs, then measures in one run: a bare SHA-256 loop doing the same
two hashes per leaf in memory (the floor for any Python verifier), root recomputation
alone, the tree alone (leaves, tiles, checkpoints: ``verify_bundle`` with no event
checks), and ``ledger verify --no-check-index`` as the command runs it (every event
decoded for the producer and seal-bound checks) with one process and with two (one per
log).
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from pathlib import Path

from integrations.simulator import Simulator
from ledger.log import merkle
from ledger.log.checkpoint import Checkpoint, sign_checkpoint
from ledger.log.leaf import KafkaRecord, encode_leaf
from ledger.log.note import generate_signer, parse_signer_key, parse_verifier_key
from ledger.verify import LogReport, build_full_tiles, verify_bundle
from ledger.verify.bundle import BundleWriter
from ledgerctl.verifying import verify_bundle_jobs
from producers.codec import Codec

#: Distinct events whose encodings the leaves cycle through (each leaf still differs: its
#: offset, timestamp and key).
EVENT_POOL = 10_000


def event_values() -> list[bytes]:
    codec = Codec()
    return [
        codec.encode(e.stamped(producer_id="bench", producer_seq=i))
        for i, e in enumerate(Simulator(seed=1).events(EVENT_POOL))
    ]


def write_bundle(path: Path, leaves_per_log: int, logs: int) -> tuple[list[bytes], str]:
    signer_key, verifier_key = generate_signer("bench.ledger.local")
    signer = parse_signer_key(signer_key)
    sample: list[bytes] = []
    values = event_values()
    with BundleWriter(path, ledger_name="bench.ledger.local") as bundle:
        bundle.write_schemas(Codec().schemas)
        for log_id in range(1, logs + 1):
            origin = f"bench.ledger.local/bench/{log_id - 1}"
            hashes: list[bytes] = []
            builder = merkle.TreeBuilder()
            with bundle.add_log(log_id=log_id, origin=origin, size=leaves_per_log) as out:
                for i in range(leaves_per_log):
                    leaf = encode_leaf(
                        KafkaRecord(topic="bench", partition=log_id - 1, offset=i,
                                    timestamp_ms=1_790_000_000_000 + i, timestamp_type=0,
                                    key=b"p|%d" % (i % 9973), value=values[i % EVENT_POOL])
                    )  # fmt: skip
                    out.add_entry(i, leaf)
                    h = merkle.leaf_hash(leaf)
                    hashes.append(h)
                    builder.append(h)
                    if log_id == 1:
                        sample.append(leaf)
                    if (i + 1) % 100_000 == 0 or i + 1 == leaves_per_log:
                        cp = Checkpoint(origin=origin, size=i + 1, root_hash=builder.root())
                        out.add_checkpoint(i + 1, sign_checkpoint(cp, [signer]))
                out.add_tiles(build_full_tiles(hashes))
    return sample, verifier_key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000, help="in total, over 2 logs")
    args = parser.parse_args()
    per_log = args.leaves // 2
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        path = Path(tmp) / "bundle"
        t = time.perf_counter()
        sample, vkey = write_bundle(path, per_log, 2)
        print(f"wrote a {args.leaves:,}-leaf bundle in {time.perf_counter() - t:.1f}s")
        verifiers = [parse_verifier_key(vkey)]

        sha = hashlib.sha256
        t = time.perf_counter()
        for leaf in sample:
            h = sha(b"\x00" + leaf).digest()
            sha(b"\x01" + h + h).digest()
        floor = len(sample) / (time.perf_counter() - t)
        t = time.perf_counter()
        merkle.root_from_leaves(sample)
        roots = len(sample) / (time.perf_counter() - t)

        t = time.perf_counter()
        reports = verify_bundle(path, verifiers, check_index=False)
        tree = args.leaves / (time.perf_counter() - t)
        _all_ok(reports)
        rates = []
        for jobs in (1, 2):
            t = time.perf_counter()
            reports = verify_bundle_jobs(path, verifiers, check_index=False, jobs=jobs)
            rates.append(args.leaves / (time.perf_counter() - t))
            _all_ok(reports)
        one, two = rates

    print(f"bare SHA-256, leaf hash + one node hash  {floor:>11,.0f} leaves/s (floor)")
    print(f"root recomputation from leaves         {roots:>11,.0f} leaves/s  {roots / floor:.2f}x")
    print(f"the tree alone (no event checks)        {tree:>11,.0f} leaves/s  {tree / floor:.2f}x")
    print(f"ledger verify --no-check-index, 1 proc  {one:>11,.0f} leaves/s  {one / floor:.2f}x")
    print(f"ledger verify --no-check-index, 2 procs {two:>11,.0f} leaves/s  {two / floor:.2f}x")


def _all_ok(reports: list[LogReport]) -> None:
    """A benchmark of a verifier that found something would measure the wrong thing."""
    bad = [(r.origin, r.findings[:3]) for r in reports if not r.ok]
    if bad:
        raise SystemExit(f"the bundle did not verify: {bad}")


if __name__ == "__main__":
    main()
