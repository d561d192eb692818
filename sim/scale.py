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


# ---------------------------------------------------------------------------- observers

OBSERVER_SCENARIO = "scenarios/scale-10k.yaml"


def observer_scenario(nodes: int, path: str = OBSERVER_SCENARIO) -> dict[str, Any]:
    """`scenarios/scale-10k.yaml` with `nodes` nodes in all: its validators, and observers for the rest
    (Byzantine observers kept at the file's share)."""
    from pathlib import Path

    import yaml

    d: dict[str, Any] = yaml.safe_load(Path(path).read_text())
    validators = d["cluster"]["n"]
    obs = d["observers"]
    count = nodes - validators
    assert count >= 1, f"{nodes} nodes leave no room for observers beside {validators} validators"
    share = obs.get("byzantine", 0) / obs["count"]
    d["observers"] = {**obs, "count": count, "byzantine": round(share * count)}
    d["name"] = f"scale-{nodes}-nodes"
    return d


def measure_observers_one(nodes: int) -> dict[str, Any]:
    """One observer scale point in this process: CPU and wall time, peak RSS, per-node traffic."""
    from sim.runner import run
    from sim.scenario import from_dict

    scenario = from_dict(observer_scenario(nodes), f"<scale nodes={nodes}>")
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    result = run(scenario)
    s = result.summary
    o = s["observers"]
    return {
        "nodes": nodes, "validators": scenario.cluster.n, "observers": o["count"],
        "byzantine_observers": o["byzantine"], "partitioned": o["partitioned"],
        "wall_s": round(time.perf_counter() - t0, 3), "cpu_s": round(time.process_time() - cpu0, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "batches": s["commits"]["highest_seq"], "requests": s["requests"]["completed"],
        "expectation_met": result.expectation_met,
        "per_observer": o["per_observer"], "per_validator_feed": o["per_validator_feed"],
        "per_validator_consensus_sent_mean": o["per_validator_consensus_sent_mean"],
        "certificates_verified": o["certificates_verified"], "rejected": o["rejected"],
        "reads": o["reads"], "write_latency_ms": s["requests"]["latency_ms"],
    }


def measure_observers(nodes: list[int]) -> list[dict[str, Any]]:
    """Each point in a fresh single-use process (peak RSS per point)."""
    from concurrent.futures import ProcessPoolExecutor

    out = []
    for n in nodes:
        with ProcessPoolExecutor(max_workers=1, max_tasks_per_child=1) as pool:
            out.append(pool.submit(measure_observers_one, n).result())
        print(f"  scale {n:>6} nodes {out[-1]['cpu_s']:8.1f} s CPU", file=sys.stderr)
    return out


def cmd_scale(args: argparse.Namespace) -> int:
    if args.nodes:
        rows = measure_observers(args.nodes)
        for r in rows:
            print(json.dumps(r))
        if args.save:
            from pathlib import Path

            Path(args.save).write_text(json.dumps(rows, indent=2) + "\n")
        return 0 if all(r["expectation_met"] for r in rows) else 1
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
    p.add_argument("--nodes", type=int, nargs="+",
                   help="instead: validators plus observers, scenarios/scale-10k.yaml resized to this many nodes")
    p.add_argument("--save", help="with --nodes: write the rows as JSON here (reports/data/observer_scale.json)")
    p.set_defaults(func=cmd_scale)
