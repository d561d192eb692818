"""The CPU model (sim/cpu.py) and the open-loop workload: CPU is charged in simulated time, cores add
capacity, runs stay deterministic, and Poisson arrivals do not wait for completions."""

from __future__ import annotations

from typing import Any

import pytest
import simpy
from sim_helpers import run_dict, scenario

from sim.calibrate import resolve_costs
from sim.cpu import COST_NAMES, FIXED_COSTS, CostTable, CpuModel, CpuSpec, StepCost
from sim.scenario import ScenarioError, from_dict

ZERO = dict.fromkeys(COST_NAMES, 0.0)


class _Clock:
    """The two things CpuModel needs from a world: the simulated time and a way to act later."""

    def __init__(self) -> None:
        self.env = simpy.Environment()

    @property
    def now(self) -> int:
        return int(self.env.now)

    def after(self, delay_us: int, action: Any) -> None:
        self.env.timeout(max(0, delay_us)).callbacks.append(lambda _e: action())


class _Node:
    name, up, paused, incarnation, replica_id = "0", True, False, 0, 0


def _released_at(cores: int, jobs: int, cost_us: int, parallel: tuple[int, int] = (0, 0)) -> list[int]:
    """Submits `jobs` steps at time 0, each costing `cost_us` on one core (plus `parallel` work split
    into pieces); returns when each step's effects were released."""
    clock = _Clock()
    model = CpuModel(clock, CpuSpec(cores=cores), CostTable(**ZERO))  # type: ignore[arg-type]
    node = _Node()
    released: list[int] = []
    for _ in range(jobs):
        def job() -> None:
            model.charge(node, StepCost(cost_us, *parallel), lambda: released.append(clock.now))  # type: ignore[arg-type]

        model.submit(node, job, lambda: None)  # type: ignore[arg-type]
    clock.env.run()
    return released


def test_one_core_handles_one_step_per_cost() -> None:
    released = _released_at(cores=1, jobs=100, cost_us=1000)
    assert released == [1000 * (i + 1) for i in range(100)]  # saturated: exactly 1 / cost = 1,000 steps/s


def test_doubling_the_cores_doubles_the_rate_and_keeps_the_order() -> None:
    one, two, four = (_released_at(c, 120, 1000)[-1] for c in (1, 2, 4))
    assert (one, two, four) == (120_000, 60_000, 30_000)
    released = _released_at(cores=2, jobs=10, cost_us=1000)
    assert released == sorted(released)  # effects leave in the order the steps ran


def test_a_batchs_request_work_spreads_over_the_cores() -> None:
    # one step: 100 µs serial, then 4,000 µs of per-request work in 4 pieces
    assert _released_at(cores=1, jobs=1, cost_us=100, parallel=(4000, 4)) == [4100]
    assert _released_at(cores=4, jobs=1, cost_us=100, parallel=(4000, 4)) == [1100]


def _cpu_bound(cores: int, **workload: Any) -> dict[str, Any]:
    """Every executed request costs each replica 10 ms of core time (the certificate profile with one
    non-zero cost); nothing else costs anything, so the cluster's capacity is 100 requests/s per core."""
    load = {"clients": 400, "mode": "poisson", "rate_per_s": 1000, "requests": 400, "start_s": 0.1, **workload}
    return scenario(cluster={"n": 4, "batch_size": 20, "batch_delay_ms": 2, "checkpoint_interval": 8,
                             "watermark_window": 32, "view_change_timeout_ms": 60_000},
                    network={"latency": {"model": "constant", "ms": 5}},
                    workload=load,
                    cpu={"cores": cores, "profile": "certificate", "costs_us": {**ZERO, "x509_tbs": 10_000}},
                    expect={"safety": "hold", "liveness": False})


def _rate(result: Any) -> float:
    done = sorted(r.completed_us for r in result.world.requests.values() if r.completed_us is not None)
    lo, hi = len(done) // 10, 9 * len(done) // 10
    return (hi - lo) / ((done[hi] - done[lo]) / 1e6)


def test_in_a_cpu_bound_cluster_capacity_follows_the_cores() -> None:
    one = run_dict(_cpu_bound(1))
    two = run_dict(_cpu_bound(2))
    for r in (one, two):
        assert r.summary["requests"]["completed"] == 400 and r.expectation_met
    assert 85 <= _rate(one) <= 101  # 1 core: 100 requests/s at most
    assert 1.8 <= _rate(two) / _rate(one) <= 2.1
    busy = one.summary["cpu"]["nodes"]["0"]["busy_s"]
    assert busy == pytest.approx(400 * 0.010, rel=0.01)  # every executed request charged its 10 ms


def test_a_cpu_run_replays_identically_and_differs_from_one_without_cpu() -> None:
    data = _cpu_bound(2, requests=120)
    first, second = run_dict(data), run_dict(data)
    assert first.trace_digest == second.trace_digest
    assert first.summary["cpu"] == second.summary["cpu"]
    no_cpu = {k: v for k, v in data.items() if k != "cpu"}
    assert run_dict(no_cpu).trace_digest != first.trace_digest


def test_open_loop_arrivals_do_not_wait_for_completions() -> None:
    slow, fast = run_dict(_cpu_bound(1, requests=200)), run_dict(_cpu_bound(8, requests=200))
    assert len(slow.world.arrivals) == 200
    assert slow.world.arrivals == fast.world.arrivals  # the same arrival times however fast requests complete
    last_arrival = slow.world.arrivals[-1]
    pending = sum(1 for r in slow.world.requests.values() if r.completed_us is None or r.completed_us > last_arrival)
    assert pending > 100  # the 1-core cluster had not completed most of them when the last one arrived
    # latency counts from the arrival: requests that waited for a client show it
    waited = [r for r in slow.world.requests.values() if r.arrived_us is not None and r.arrived_us < r.submitted_us]
    assert not waited  # 400 clients for 200 requests: every arrival found an idle client at once
    few = run_dict(_cpu_bound(1, requests=200, clients=10))
    assert few.world.arrivals == slow.world.arrivals
    queued = [r for r in few.world.requests.values() if r.arrived_us is not None and r.arrived_us < r.submitted_us]
    assert queued and few.summary["requests"]["latency_ms"]["max"] >= max(
        (r.completed_us - r.arrived_us) / 1000 for r in queued if r.completed_us is not None and r.arrived_us)


def test_fixed_costs_are_the_default_and_entries_can_be_overridden() -> None:
    assert resolve_costs(CpuSpec()) == FIXED_COSTS
    table = resolve_costs(CpuSpec(costs_us={"ed25519_verify": 1.5}))
    assert table.ed25519_verify == 1.5 and table.ed25519_sign == FIXED_COSTS.ed25519_sign
    sc = from_dict(scenario(cpu={"cores": 3}))
    assert sc.cpu == CpuSpec(cores=3)


@pytest.mark.parametrize(("cpu", "field", "reason"), [
    ({"cores": 0}, "cpu.cores", ">= 1"),
    ({"costs": "guess"}, "cpu.costs", "one of"),
    ({"profile": "dns"}, "cpu.profile", "one of"),
    ({"costs_us": {"rsa_sign": 3}}, "cpu.costs_us.rsa_sign", "unknown operation"),
    ({"costs_us": {"message": -1}}, "cpu.costs_us.message", ">= 0"),
    ({"cores": 2, "turbo": True}, "cpu.turbo", "unknown field"),
])
def test_bad_cpu_sections_are_named(cpu: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(ScenarioError) as err:
        from_dict(scenario(cpu=cpu))
    assert err.value.path == field and reason in err.value.reason


def test_a_capacity_point_meets_the_target_only_below_full_utilisation() -> None:
    from dataclasses import replace

    from sim.capacity import CapacityPoint

    p = CapacityPoint(cores=2, offered=1000, requests=400, completed=400, throughput=900, p50_ms=250, p99_ms=400,
                      cpu_us_per_request=1900, safe=True)
    assert p.meets and p.utilisation == pytest.approx(0.95) and p.capacity == pytest.approx(2e6 / 1900)
    assert not replace(p, offered=1100).meets  # 1,100/s x 1.9 ms = 2.09 cores' worth on 2 cores
    assert not replace(p, p99_ms=1001).meets
    assert not replace(p, completed=399).meets
    assert not replace(p, safe=False).meets


def test_a_sweep_runs_a_list_of_distinct_scenarios(tmp_path: Any) -> None:
    from sim.sweep import sweep

    small = scenario(workload={"clients": 2, "mode": "closed", "requests": 10})
    variants = [({"cores": c}, {**small, "cpu": {"cores": c}}) for c in (1, 4)]
    res = sweep({}, {}, [1], variants=variants, cache_dir=tmp_path, jobs=1, progress=False)
    assert [r["params"] for r in res.records] == [{"cores": 1}, {"cores": 4}]
    assert [r["cores"] for r in res.records] == [1, 4] and all(r["status"] == "ok" for r in res.records)
    assert res.records[0]["cpu_us_per_request"] > 0
