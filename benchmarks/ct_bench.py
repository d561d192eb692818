"""CT log throughput beside raw SHA-256 on the same machine and run, so the figures travel.

    python benchmarks/ct_bench.py [--entries 1000000] [--proofs 100000] [--store memory|file]

Appends cost one leaf hash plus, amortised, one node hash; the ratio to raw hashes/s shows how much is
Python overhead. Proofs are served from stored subtree hashes, so their cost is lookups, not hashing.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reference_node.ct_filestore import file_store_factory
from trustchain.ct import merkle
from trustchain.ct.store import StoreFactory
from trustchain.ct.tree import LogTree


def raw_sha256_per_second(n: int) -> float:
    """Node-sized inputs (65 bytes), the same call shape the tree makes."""
    data = [b"\x01" + i.to_bytes(64, "big") for i in range(n)]
    sha = hashlib.sha256
    t = time.perf_counter()
    for d in data:
        sha(d).digest()
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--proofs", type=int, default=100_000)
    ap.add_argument("--store", choices=["memory", "file"], default="memory")
    args = ap.parse_args()
    n = args.entries

    hashes_per_s = raw_sha256_per_second(1_000_000)

    tmp = tempfile.TemporaryDirectory(prefix="ct-bench-")
    factory: StoreFactory | None = file_store_factory(tmp.name) if args.store == "file" else None
    tree = LogTree(factory)
    leaves = [i.to_bytes(8, "big") + b"-certificate-entry" for i in range(n)]
    t = time.perf_counter()
    for leaf in leaves:
        tree.append(leaf)
    tree.flush()
    appends_per_s = n / (time.perf_counter() - t)
    root = tree.root()

    rng = random.Random(2026)
    indices = [rng.randrange(n) for _ in range(args.proofs)]
    t = time.perf_counter()
    proofs = [tree.inclusion_proof(i) for i in indices]
    proofs_per_s = len(indices) / (time.perf_counter() - t)

    sample = min(len(indices), 20_000)
    t = time.perf_counter()
    for i, p in zip(indices[:sample], proofs[:sample], strict=True):
        merkle.verify_inclusion(i, n, tree.leaf_hash(i), p, root)
    verifies_per_s = sample / (time.perf_counter() - t)

    firsts = [rng.randrange(1, n) for _ in range(min(args.proofs, 20_000))]
    t = time.perf_counter()
    for f in firsts:
        tree.consistency_proof(f, n)
    consistency_per_s = len(firsts) / (time.perf_counter() - t)

    tree.close()
    tmp.cleanup()
    print(f"CT log benchmark: {n:,} entries, {args.store} store, Python {sys.version.split()[0]}")
    print(f"  {'raw hashlib SHA-256 (65 B)':<32}{hashes_per_s:>12,.0f} /s")
    for name, rate in [
        ("appends", appends_per_s),
        ("inclusion proofs (generate)", proofs_per_s),
        ("inclusion proofs (verify)", verifies_per_s),
        ("consistency proofs (generate)", consistency_per_s),
    ]:
        print(f"  {name:<32}{rate:>12,.0f} /s   ratio to raw hashes/s {rate / hashes_per_s:.3f}")
    print(f"  (an append is ~2 SHA-256: leaf + amortised node; a proof here has ~{n.bit_length()} hashes)")


if __name__ == "__main__":
    main()
