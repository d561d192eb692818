"""The capacity experiment of `python -m sim report`: certificates per second with CPU charged.

A 5-validator cluster on the 7-region WAN model (validator i in the i-th region, clients at the
validators' sites) takes open-loop (`poisson`) load; every validator has `cores` cores and is charged
the `certificate` profile of sim/cpu.py with the costs calibrated in the report's process. For each
number of cores, offered loads around its CPU bound are simulated; a point *meets* the target when every
request completed, the p99 latency is at most P99_BOUND_MS, and the busiest validator's core time per
request times the offered load stays below its cores (a short run cannot otherwise tell a slowly growing
backlog from a steady state). The cores needed for
TARGET_RPS are then narrowed down by bisection between the powers of two, and this machine's 2 cores by
bisection on the load.

Latency is that of the issuance request's ordering (the client holds f+1 matching replies, which carry
the approval); the threshold signature and the finalize step are charged as CPU, but their extra round
trips are not simulated here (`scenarios/ca-*.yaml` simulate them end to end).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sim.cpu import CostTable
from sim.experiments import Lab, ok_records
from sim.scenario import WAN_REGIONS

__all__ = ["P99_BOUND_MS", "TARGET_RPS", "CapacityPlan", "CapacityPoint", "CapacityResult", "capacity_scenario",
           "cpu_bound_rps", "measure_capacity"]

TARGET_RPS = 10_000.0
P99_BOUND_MS = 1000.0
N_VALIDATORS = 5
BATCH = 200


@dataclass(frozen=True)
class CapacityPlan:
    cores: tuple[int, ...]
    loads: tuple[float, ...]
    arrival_s: float  # simulated seconds of arrivals per point (within the request bounds below)
    min_requests: int
    max_requests: int
    bisect: bool


def plan_for(quick: bool) -> CapacityPlan:
    if quick:
        return CapacityPlan((1, 2), (100.0, 400.0), 0.5, 100, 200, False)
    return CapacityPlan((1, 2, 4, 8, 16, 32), (250.0, 500.0, 1000.0, 2000.0, 5000.0, 10_000.0, 20_000.0, 40_000.0),
                        0.25, 400, 2500, True)


def cpu_bound_rps(costs: CostTable, cores: int) -> float:
    """A rough ceiling from the cost table alone (certificate work plus receiving the request and sending
    the reply, per validator), used only to place each core count's grid of offered loads."""
    n, t = N_VALIDATORS, 2 * ((N_VALIDATORS - 1) // 3) + 1
    c = costs
    per_request = (c.csr_verify + c.x509_tbs + c.ed25519_verify + c.x509_finalize
                   + t / n * (c.frost_commit + c.frost_share) + (c.frost_aggregate + c.ed25519_sign) / n
                   + 2 * c.message + c.ed25519_verify + c.ed25519_sign)
    return cores * 1e6 / per_request


def capacity_scenario(cores: int, rate: float, requests: int, costs: CostTable) -> dict[str, Any]:
    return {
        "name": "capacity",
        "seed": 1,
        "duration_s": requests / rate + 60,
        "cluster": {"n": N_VALIDATORS, "batch_size": BATCH, "batch_delay_ms": 5, "checkpoint_interval": 16,
                    "watermark_window": 64, "view_change_timeout_ms": 5000, "signatures": "modelled"},
        "network": {"latency": {"model": "wan", "regions": list(WAN_REGIONS), "sigma": 0.15}},
        "workload": {"clients": min(requests, max(64, round(rate * 1.5))), "mode": "poisson", "rate_per_s": rate,
                     "requests": requests, "start_s": 0.1},
        "cpu": {"cores": cores, "profile": "certificate", "costs_us": costs.as_dict()},
        "expect": {"safety": "hold", "liveness": False},
    }


@dataclass(frozen=True)
class CapacityPoint:
    cores: int
    offered: float
    requests: int
    completed: int
    throughput: float  # completions per simulated s between the 10th and 90th percentile completion
    p50_ms: float
    p99_ms: float
    cpu_us_per_request: float  # the busiest validator's core time per completed request
    safe: bool

    @property
    def utilisation(self) -> float:
        """Offered load times core time per request, over the cores (of the busiest validator)."""
        return self.offered * self.cpu_us_per_request / 1e6 / self.cores

    @property
    def capacity(self) -> float:
        """Requests per second the busiest validator's cores can take at this point's core time per request."""
        return self.cores * 1e6 / self.cpu_us_per_request if self.cpu_us_per_request else float("inf")

    @property
    def meets(self) -> bool:
        return (self.completed == self.requests and self.p99_ms <= P99_BOUND_MS and self.utilisation < 1.0
                and self.safe)


@dataclass
class CapacityResult:
    points: list[CapacityPoint]
    costs: CostTable
    costs_source: str  # where the costs come from, for the report
    plan: CapacityPlan
    cores_needed: int | None  # for TARGET_RPS with p99 <= P99_BOUND_MS; None if no core count tried met it
    two_cores_rps: float | None  # the highest offered load 2 cores met


def _requests(plan: CapacityPlan, rate: float) -> int:
    return max(plan.min_requests, min(plan.max_requests, round(rate * plan.arrival_s)))


def _points(lab: Lab, plan: CapacityPlan, costs: CostTable, grid: list[tuple[int, float]],
            label: str) -> list[CapacityPoint]:
    """Runs every (cores, offered load) of `grid` in one sweep (in parallel, cached) and reads the points."""
    variants = [({"cores": c, "rate": rate}, capacity_scenario(c, rate, _requests(plan, rate), costs))
                for c, rate in grid]
    out = []
    for r in ok_records(lab.run_sweep(label, {}, {}, 1, variants=variants)):
        cores, rate = r["params"]["cores"], r["params"]["rate"]
        out.append(CapacityPoint(cores, rate, r["requested"], r["completed"], r["throughput_mid_rps"] or 0.0,
                                 r["latency_p50_ms"], r["latency_p99_ms"], r["cpu_us_per_request"] or 0.0,
                                 bool(r["safety_ok"])))
    return out


def measure_capacity(lab: Lab, quick: bool, costs: CostTable, costs_source: str) -> CapacityResult:
    plan = plan_for(quick)
    if quick:
        grid = [(c, load) for c in plan.cores for load in plan.loads]
    else:  # the loads from a tenth of each core count's rough CPU bound to twice it
        grid = [(c, load) for c in plan.cores for load in plan.loads
                if cpu_bound_rps(costs, c) / 10 <= load <= 2 * cpu_bound_rps(costs, c)]
    points = _points(lab, plan, costs, grid, "capacity-grid")
    cores_list = list(plan.cores)
    if plan.bisect:  # more cores until the target is met (at most 256 per validator)
        while not _met(points, cores_list[-1], TARGET_RPS) and cores_list[-1] < 256:
            cores_list.append(cores_list[-1] * 2)
            points += _points(lab, plan, costs, [(cores_list[-1], TARGET_RPS)], f"capacity-c{cores_list[-1]}")
    cores_needed = next((c for c in cores_list if _met(points, c, TARGET_RPS)), None)
    if plan.bisect and cores_needed is not None:
        lo = max((c for c in cores_list if c < cores_needed), default=0)
        while cores_needed - lo > 1:
            mid = (lo + cores_needed) // 2
            points += _points(lab, plan, costs, [(mid, TARGET_RPS)], f"capacity-c{mid}")
            if _met(points, mid, TARGET_RPS):
                cores_needed = mid
            else:
                lo = mid
    two = _two_cores(lab, plan, costs, points)
    points.sort(key=lambda p: (p.cores, p.offered))
    return CapacityResult(points, costs, costs_source, plan, cores_needed, two)


def _met(points: list[CapacityPoint], cores: int, rate: float) -> bool:
    return any(p.cores == cores and p.offered == rate and p.meets for p in points)


def _two_cores(lab: Lab, plan: CapacityPlan, costs: CostTable, points: list[CapacityPoint]) -> float | None:
    """The highest load 2 cores per validator met, narrowed by bisection between the grid's loads."""
    mine = [p for p in points if p.cores == 2]
    ok = max((p.offered for p in mine if p.meets), default=None)
    if ok is None or not plan.bisect:
        return ok
    bad = min((p.offered for p in mine if not p.meets and p.offered > ok), default=None)
    if bad is None:
        return ok
    for _ in range(3):
        mid = float(round((ok + bad) / 2))
        new = _points(lab, plan, costs, [(2, mid)], f"capacity-c2-r{mid:g}")
        points += new
        if new and new[0].meets:
            ok = mid
        else:
            bad = mid
    return ok
