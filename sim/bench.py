"""`python -m sim bench`: how fast the simulator runs the real protocol with real signatures.

Each simulated protocol message is signed once and verified by its receiver, so raw Ed25519
verification throughput, measured in the same run, is the physical ceiling; the benchmark prints the
simulator's rate beside it as a ratio.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from sim.runner import run
from sim.scenario import from_dict
from trustchain.crypto.signing import ED25519, Ed25519Signer


def raw_ed25519(seconds: float = 1.0) -> tuple[float, float]:
    """Signatures and verifications per second of PyNaCl on a 120-byte message (a typical vote)."""
    signer = Ed25519Signer(b"\x01" * 32)
    message = b"m" * 120
    signature = signer.sign(message)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            signer.sign(message)
        count += 200
    sign_rate = count / (time.perf_counter() - start)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(200):
            ED25519.verify(signer.public_key, message, signature)
        count += 200
    return sign_rate, count / (time.perf_counter() - start)


def bench_scenario(n: int, requests: int) -> dict[str, Any]:
    return {
        "name": f"bench-n{n}",
        "seed": 1,
        "duration_s": 600,
        "cluster": {"n": n, "batch_size": 10, "batch_delay_ms": 5, "checkpoint_interval": 20,
                    "watermark_window": 60, "view_change_timeout_ms": 5000},
        "network": {"latency": {"model": "lognormal", "median_ms": 20, "sigma": 0.3}},
        "workload": {"clients": 16, "mode": "closed", "requests": requests},
        "expect": {"safety": "hold", "liveness": True, "liveness_bound_s": 120},
    }


def main(args: argparse.Namespace) -> int:
    sign_rate, verify_rate = raw_ed25519()
    print(f"raw Ed25519 (PyNaCl): {sign_rate:,.0f} signatures/s, {verify_rate:,.0f} verifications/s")
    print(f"{'n':>4} {'requests':>8} {'messages':>9} {'wall s':>7} {'sim s':>6} {'msgs/s':>8} "
          f"{'verif/s':>8} {'msgs/s vs raw verify':>21}")
    ok = True
    for n in args.n:
        result = run(from_dict(bench_scenario(n, args.requests), f"<bench n={n}>"))
        s = result.summary
        wall = s["wall_seconds"]
        counters = [node.replica.counters for node in result.world.nodes.values()]
        delivered = sum(sum(c.received.values()) for c in counters)
        verifications = sum(c.signature_verifications for c in counters)
        rate = delivered / wall
        print(f"{n:>4} {args.requests:>8} {delivered:>9} {wall:>7.2f} {s['simulated_seconds']:>6.1f} "
              f"{rate:>8,.0f} {verifications / wall:>8,.0f} {rate / verify_rate:>21.3f}")
        ok = ok and result.expectation_met
    return 0 if ok else 1
