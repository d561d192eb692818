"""Runs one scenario with one seed and judges it against the scenario's expectations."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from sim.checkers import SAFETY_CHECKS, Verdict, check_liveness, honest_nodes
from sim.observer_reads import read_summary
from sim.scenario import Scenario
from sim.trace import Trace
from sim.world import World

DRAIN_US = 500_000


@dataclass
class RunResult:
    scenario: Scenario
    seed: int
    summary: dict[str, Any]
    verdicts: list[Verdict]
    expectation_met: bool
    trace_digest: str
    world: World

    @property
    def exit_code(self) -> int:
        return 0 if self.expectation_met else 1


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * (len(s) - 1))))
    return s[k]


def run(scenario: Scenario, seed: int | None = None, out_dir: Path | None = None,
        mutant: str | None = None) -> RunResult:
    seed = scenario.seed if seed is None else seed
    sink: IO[str] | None = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        sink = (out_dir / "trace.jsonl").open("w")
    trace = Trace(sink)
    started = time.perf_counter()
    try:
        world = World(scenario, seed, trace, mutant=mutant)
        world.start()
        env = world.env
        stop = env.event()

        def stop_once(_: object) -> None:
            if not stop.triggered:
                stop.succeed()

        def finish_after_drain(_: object) -> None:
            env.timeout(DRAIN_US).callbacks.append(stop_once)

        world.done.callbacks.append(finish_after_drain)
        env.timeout(round(scenario.duration_s * 1e6)).callbacks.append(stop_once)
        env.run(until=stop)
        if world.observers is not None:
            trace.record(world.now, "observers", world.observers.digest())  # every observer's executions, in one event
    finally:
        if sink is not None:
            sink.close()
    wall = time.perf_counter() - started

    verdicts = [check(world) for check in SAFETY_CHECKS]
    verdicts.extend(world.app.checks())
    liveness = [check_liveness(world)]
    if world.observers is not None:
        from sim.observer_checks import check_observers

        observer_safety, observer_liveness = check_observers(world)
        verdicts.extend(observer_safety)
        liveness.append(observer_liveness)
    safety_ok = all(v.ok for v in verdicts)
    verdicts.extend(liveness)
    if scenario.expect.safety == "violation":
        met = not safety_ok
    else:
        met = safety_ok and (all(v.ok for v in liveness) or not scenario.expect.liveness)

    summary = _summarise(world, scenario, seed, verdicts, met, wall, trace)
    if out_dir is not None:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    return RunResult(scenario, seed, summary, verdicts, met, trace.digest, world)


def _summarise(world: World, scenario: Scenario, seed: int, verdicts: list[Verdict], met: bool, wall: float,
               trace: Trace) -> dict[str, Any]:
    latencies = [(r.completed_us - (r.submitted_us if r.arrived_us is None else r.arrived_us)) / 1000
                 for r in world.requests.values() if r.completed_us is not None]
    honest = honest_nodes(world)
    executed_by = Counter(rec.node for rec in world.executions if rec.node in honest)
    rejected: Counter[str] = Counter()
    for name in sorted(honest):
        rejected.update(world.nodes[name].replica.counters.rejected)
    views = [v for _, n, v in world.view_entries if n in honest]
    messages = sum(world.messages_sent.values())
    return {
        "scenario": scenario.name,
        "source": scenario.source,
        "seed": seed,
        "cluster": {"n": scenario.cluster.n, "f": scenario.cluster.f,
                    "byzantine": {str(b.node): list(b.behaviours) for b in scenario.byzantine}},
        "simulated_seconds": round(world.now / 1e6, 6),
        "wall_seconds": round(wall, 3),
        "trace": {"events": trace.events, "digest": trace.digest},
        "requests": {
            "submitted": len(world.requests),
            "completed": len(latencies),
            "latency_ms": {"p50": round(_percentile(latencies, 0.5), 3),
                           "p99": round(_percentile(latencies, 0.99), 3),
                           "max": round(max(latencies, default=0.0), 3)},
        },
        "commits": {
            "highest_seq": max((rec.seq for rec in world.executions if rec.node in honest), default=0),
            "batches_executed_per_honest_replica": dict(sorted(executed_by.items())),
        },
        "views": {"highest": max(views, default=0), "view_changes_entered": len(views)},
        "messages": {"total": messages, "bytes": world.bytes_sent, "by_type": dict(sorted(world.messages_sent.items())),
                     "dropped_by_network": world.network.dropped, "duplicated_by_network": world.network.duplicated,
                     "per_second_wall": round(messages / wall) if wall > 0 else 0},
        "rejected_by_honest_replicas": dict(sorted(rejected.items())),
        "faults_injected": dict(sorted(world.faults.items())),
        "fault_log": [{"time_s": round(t / 1e6, 6), "node": n, "what": w} for t, n, w in world.fault_log],
        "checks": {v.name: {"ok": v.ok, "detail": v.detail, "first_violation": v.first_violation}
                   for v in verdicts},
        "observers": observer_summary(world),
        "cpu": world.cpu.summary(world.now) if world.cpu is not None else None,
        "expect": {"safety": scenario.expect.safety, "liveness": scenario.expect.liveness},
        "expectation_met": met,
    }


def observer_summary(world: World) -> dict[str, Any] | None:
    """Per-node traffic (messages and bytes sent and received) of observers and validators."""
    layer = world.observers
    if layer is None:
        return None
    honest = layer.honest()

    def per_node(names: list[str]) -> dict[str, float]:
        if not names:
            return {}
        sent = [layer.sent[n] for n in names]
        sent_b = [layer.sent_bytes[n] for n in names]
        recv = [layer.received[n] for n in names]
        recv_b = [layer.received_bytes[n] for n in names]
        k = len(names)
        return {"sent_mean": round(sum(sent) / k, 1), "sent_max": max(sent),
                "sent_bytes_mean": round(sum(sent_b) / k), "sent_bytes_max": max(sent_b),
                "received_mean": round(sum(recv) / k, 1), "received_max": max(recv),
                "received_bytes_mean": round(sum(recv_b) / k), "received_bytes_max": max(recv_b)}

    validators = [n for n in layer.validators if not world.nodes[n[1:]].byzantine]
    consensus = [world.sent_by[n[1:]] for n in validators]
    executed = [n.observer.last_executed for n in honest if n.observer is not None]
    return {
        "count": len(layer.nodes), "honest": len(honest), "byzantine": len(layer.nodes) - len(honest),
        "partitioned": len(layer.isolated),
        "last_executed": {"min": min(executed, default=0), "max": max(executed, default=0)},
        "restored_from_snapshot": sum(1 for n in honest if n.restored),
        "rejected": dict(sorted(layer.rejected().items())),
        "certificates_verified": layer.certs.checked,
        "signature_verifications": layer.certs.checker.verifications,
        "feed_messages": sum(layer.sent.values()), "feed_bytes": sum(layer.sent_bytes.values()),
        "dropped_by_partition": layer.dropped,
        "by_kind": dict(sorted(layer.by_kind.items())),
        "per_observer": per_node([n.name for n in honest]),
        "per_validator_feed": per_node(validators),
        "per_validator_consensus_sent_mean": round(sum(consensus) / len(consensus), 1) if consensus else 0,
        "reads": read_summary(world),
        "digest": layer.digest(),
    }


def _observer_lines(o: dict[str, Any] | None) -> list[str]:
    if not o:
        return []
    po, pv = o["per_observer"], o["per_validator_feed"]
    return [
        f"  observers   {o['count']} ({o['byzantine']} Byzantine, {o['partitioned']} partitioned); executed to "
        f"seq {o['last_executed']['min']}..{o['last_executed']['max']}; {o['restored_from_snapshot']} restored "
        f"from a snapshot; {o['certificates_verified']} certificates verified once "
        f"({o['signature_verifications']} signatures)",
        f"  per node    observer sent {po.get('sent_mean', 0)} msgs / {po.get('sent_bytes_mean', 0)} B mean "
        f"(max {po.get('sent_max', 0)}), received {po.get('received_mean', 0)} / {po.get('received_bytes_mean', 0)} B "
        f"(max {po.get('received_max', 0)}); validator feed sent {pv.get('sent_mean', 0)} msgs / "
        f"{pv.get('sent_bytes_mean', 0)} B mean",
        "  refused     " + (", ".join(f"{k} {v}" for k, v in o["rejected"].items()) or "none"),
    ]


def format_summary(result: RunResult, replay: str) -> str:
    s = result.summary
    lines = [
        f"scenario {s['scenario']} ({s['source']}), seed {s['seed']}",
        f"  cluster     n={s['cluster']['n']} f={s['cluster']['f']} byzantine="
        + (", ".join(f"{k}:{'+'.join(v)}" for k, v in s["cluster"]["byzantine"].items()) or "none"),
        f"  time        {s['simulated_seconds']:.3f} s simulated in {s['wall_seconds']:.2f} s wall",
        f"  requests    {s['requests']['completed']}/{s['requests']['submitted']} completed; latency "
        f"p50 {s['requests']['latency_ms']['p50']:.1f} ms, p99 {s['requests']['latency_ms']['p99']:.1f} ms, "
        f"max {s['requests']['latency_ms']['max']:.1f} ms",
        f"  commits     highest sequence {s['commits']['highest_seq']}",
        f"  views       highest {s['views']['highest']}, {s['views']['view_changes_entered']} view entries",
        f"  messages    {s['messages']['total']} ({s['messages']['bytes']} bytes), "
        f"{s['messages']['per_second_wall']}/s wall; "
        + ", ".join(f"{k} {v}" for k, v in s["messages"]["by_type"].items()),
        f"  network     {s['messages']['dropped_by_network']} dropped, "
        f"{s['messages']['duplicated_by_network']} duplicated",
        "  faults      " + (", ".join(f"{k} {v}" for k, v in s["faults_injected"].items()) or "none"),
        "  rejected    " + (", ".join(f"{k} {v}" for k, v in s["rejected_by_honest_replicas"].items()) or "none"),
        f"  trace       {s['trace']['events']} events, digest {s['trace']['digest']}",
        *_observer_lines(s.get("observers")),
        "  checks:",
    ]
    width = max([13, *(len(v.name) for v in result.verdicts)])
    for v in result.verdicts:
        lines.append(f"    {'PASS' if v.ok else 'FAIL'}  {v.name:<{width}} {v.detail}")
    exp = result.scenario.expect
    if exp.safety == "violation":
        found = not all(v.ok for v in result.verdicts if v.name != "liveness")
        lines.append(f"  expectation: a safety violation — {'found' if found else 'NOT found'}")
    verdict = "MET" if result.expectation_met else "NOT MET"
    lines.append(f"  result: expectation {verdict}")
    failing = next((v for v in result.verdicts if not v.ok and v.first_violation), None)
    if failing is not None:
        fv = failing.first_violation or {}
        time_us = fv.get("time_us", 0)
        at_s = int(time_us) / 1e6 if isinstance(time_us, int | float) else 0.0
        lines.append(f"  first violating event: {failing.name} at {at_s:.6f} s "
                     f"(trace event {fv.get('trace_index', '-')}): {failing.detail}")
    if failing is not None or not result.expectation_met:
        lines.append(f"  replay: {replay}")
    return "\n".join(lines)
