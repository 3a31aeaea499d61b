"""Root recomputation speed (what `ledger verify` does per leaf) versus a bare SHA-256 loop."""

from __future__ import annotations

import argparse
import hashlib
import os
import time

from ledger.log.merkle import root_from_leaf_hashes, root_from_leaves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leaves", type=int, default=1_000_000)
    args = parser.parse_args()
    n = args.leaves
    leaves = [os.urandom(200) for _ in range(n)]
    hashes = [hashlib.sha256(b"\x00" + leaf).digest() for leaf in leaves]

    t = time.perf_counter()
    for h in hashes:
        hashlib.sha256(b"\x01" + h + h).digest()
    bare = n / (time.perf_counter() - t)
    t = time.perf_counter()
    root_from_leaf_hashes(hashes)
    tree = n / (time.perf_counter() - t)
    t = time.perf_counter()
    root_from_leaves(leaves)
    full = n / (time.perf_counter() - t)
    print(f"bare SHA-256 of 65 bytes (baseline)   {bare:>12,.0f} /s")
    print(f"root from leaf hashes                 {tree:>12,.0f} leaves/s  ratio {tree / bare:.2f}")
    print(f"root from 200-byte leaves (hash+tree) {full:>12,.0f} leaves/s  ratio {full / bare:.2f}")


if __name__ == "__main__":
    main()
