"""Simulator scale: how large a cluster the simulator can run, with real and with modelled signatures.

Modelled signatures (`sim.modelled`) replace Ed25519 by HMAC-SHA512 so that large
clusters fit in the time budget; they model cost, not security.

`python -m sim scale` measures wall time, simulated events per wall second and peak RSS of
1,000-request runs (or shorter runs, extrapolated and labelled as such) as n grows.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import time
from typing import Any

from sim.modelled import ModelledSigner as ModelledSigner  # re-exported: sim/adversaries/clients.py uses it
from sim.modelled import use_modelled

# ---------------------------------------------------------------------------- scale measurement


def scale_scenario(n: int, requests: int) -> dict[str, Any]:
    """The scale workload: the `python -m sim bench` cluster, 1,000 requests by default."""
    from sim.bench import bench_scenario

    d = bench_scenario(n, requests)
    d["name"] = f"scale-n{n}"
    d["duration_s"] = 3600
    d["expect"]["liveness_bound_s"] = 600
    return d


def measure_one(n: int, requests: int, signatures: str) -> dict[str, Any]:
    """Run one scale point in this process and report wall time, events/s and peak RSS (this process's
    maximum so far: call it in a fresh process)."""
    from sim.runner import run
    from sim.scenario import from_dict

    d = scale_scenario(n, requests)
    scenario = from_dict(use_modelled(d) if signatures == "modelled" else d, f"<scale n={n}>")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    result = run(scenario)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    s = result.summary
    world = result.world
    delivered = sum(sum(node.replica.counters.received.values()) for node in world.nodes.values())
    return {
        "n": n, "requests": requests, "signatures": signatures,
        "wall_s": round(wall, 3), "cpu_s": round(cpu, 3),
        "completed": s["requests"]["completed"], "expectation_met": result.expectation_met,
        "simulated_s": s["simulated_seconds"], "trace_events": s["trace"]["events"],
        "messages": s["messages"]["total"], "delivered": delivered,
        "events_per_s": round(s["trace"]["events"] / cpu) if cpu else 0,
        "messages_per_s": round(delivered / cpu) if cpu else 0,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _fresh(args: tuple[int, int, str]) -> dict[str, Any]:
    return measure_one(*args)


def measure(points: list[tuple[int, int, str]]) -> list[dict[str, Any]]:
    """Each point in a fresh single-use process, one at a time (one core; peak RSS per point)."""
    from concurrent.futures import ProcessPoolExecutor

    out = []
    for p in points:
        with ProcessPoolExecutor(max_workers=1, max_tasks_per_child=1) as pool:
            out.append(pool.submit(_fresh, p).result())
        print(f"  scale n={p[0]:>4} {p[2]:<8} {out[-1]['cpu_s']:8.1f} s CPU", file=sys.stderr)
    return out


def fit_power(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """y = a * x^k by least squares in log-log; returns (a, k)."""
    pts = [(math.log(x), math.log(y)) for x, y in zip(xs, ys, strict=True) if x > 0 and y > 0]
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    k = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return math.exp(my - k * mx), k


def fit_largest_n(rows: list[dict[str, Any]], target_requests: int = 1000, budget_s: float = 600.0
                  ) -> dict[str, Any]:
    """Fit cpu_s = a * requests * n^k (log-log least squares on the measured points) and solve for the
    largest n whose `target_requests` run fits in `budget_s` of one core. An extrapolation: say so."""
    measured = [r for r in rows if r["cpu_s"] > 0]
    if len(measured) < 2:
        return {"k": None, "largest_n": None}
    a, k = fit_power([r["n"] for r in measured], [r["cpu_s"] / r["requests"] for r in measured])
    largest = (budget_s / (a * target_requests)) ** (1 / k)
    return {"k": round(k, 3), "a": a, "largest_n": int(largest),
            "predicted_cpu_s": {str(r["n"]): round(a * target_requests * r["n"] ** k, 1) for r in rows}}


def cmd_scale(args: argparse.Namespace) -> int:
    points = [(n, args.requests, sig) for sig in args.signatures for n in args.n]
    rows = measure(points)
    for sig in args.signatures:
        sub = [r for r in rows if r["signatures"] == sig]
        fit = fit_largest_n(sub, args.target_requests, args.budget_s)
        print(json.dumps({"signatures": sig, "fit": fit}, default=str))
    for r in rows:
        print(json.dumps(r))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("scale", help="simulator scale: CPU time, events/s and peak memory against n")
    p.add_argument("--n", type=int, nargs="+", default=[4, 16, 31, 64])
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--signatures", nargs="+", choices=["real", "modelled"], default=["real", "modelled"])
    p.add_argument("--target-requests", type=int, default=1000)
    p.add_argument("--budget-s", type=float, default=600.0)
    p.set_defaults(func=cmd_scale)
