"""Schedule exploration: search fault schedules for a violation, shrink it, write a replayable scenario.

A fault schedule is a plain list of timed events plus a Byzantine assignment within f — data that
Hypothesis generates and shrinks. `explore` first tries Twins-style enumerated schedules (two copies
of one replica, each talking to a different part of the cluster, and crashes of successive
primaries), then random ones; the first violation found is shrunk (by Hypothesis for generated
schedules, by removing events one at a time for enumerated ones) and written as a scenario file whose
`python -m sim run` replays it.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from sim.checkers import Verdict
from sim.runner import run
from sim.scenario import ScenarioError, from_dict, load

DEFAULT_BEHAVIOURS = ("silent", "crash_worst_moment", "equivocate", "double_vote", "bad_signatures",
                      "replay_stale", "selective_delay")

#: The exploration base when no scenario is given: four replicas, short runs.
EXPLORE_BASE: dict[str, Any] = {
    "name": "explore-base",
    "seed": 1,
    "duration_s": 300,  # an upper bound: runs end once every request completed
    "cluster": {"n": 4, "batch_size": 4, "batch_delay_ms": 5, "checkpoint_interval": 4, "watermark_window": 8,
                "view_change_timeout_ms": 500, "catchup_delay_ms": 300},
    "network": {"latency": {"model": "uniform", "low_ms": 5, "high_ms": 40}},
    "workload": {"clients": 4, "mode": "closed", "requests": 40},
    "expect": {"safety": "hold", "liveness": True, "liveness_bound_s": 30},
}

Schedule = dict[str, Any]  # {"events": [...], "byzantine": [...]}


# ---------------------------------------------------------------------------- schedules


def schedule_strategy(n: int, behaviours: tuple[str, ...], horizon_s: float = 8.0) -> st.SearchStrategy[Schedule]:
    f = (n - 1) // 3
    node = st.integers(0, n - 1)
    at = st.integers(0, int(horizon_s * 10)).map(lambda x: x / 10)
    span = st.integers(1, 60).map(lambda x: x / 10)

    @st.composite
    def build(draw: st.DrawFn) -> Schedule:
        faulty = draw(st.lists(node, max_size=f, unique=True))
        byzantine = []
        crashable = []
        for k in faulty:
            if draw(st.booleans()):
                chosen = draw(st.lists(st.sampled_from(behaviours), min_size=1, max_size=2, unique=True))
                byzantine.append({"node": k, "behaviours": sorted(chosen)})
            else:
                crashable.append(k)
        events: list[dict[str, Any]] = []
        for k in crashable:
            t = draw(at)
            events.append({"type": "crash", "node": k, "at_s": t})
            if draw(st.booleans()):
                events.append({"type": "restart", "node": k, "at_s": round(t + draw(span), 1)})
        kinds = st.sampled_from(("pause", "partition", "one_way", "network", "slow", "clock_skew"))
        for kind in draw(st.lists(kinds, max_size=6)):
            t = draw(at)
            if kind == "pause":
                events.append({"type": "pause", "node": draw(node), "at_s": t, "duration_s": draw(span)})
            elif kind == "partition":
                side = draw(st.lists(node, min_size=1, max_size=n - 1, unique=True))
                events.append({"type": "partition", "at_s": t, "duration_s": draw(span), "groups": [
                    sorted(side), sorted(set(range(n)) - set(side))]})
            elif kind == "one_way":
                src = draw(st.lists(node, min_size=1, max_size=n - 1, unique=True))
                rest = [x for x in range(n) if x not in src]
                dst = draw(st.lists(st.sampled_from(rest), min_size=1, max_size=len(rest), unique=True))
                events.append({"type": "one_way", "at_s": t, "duration_s": draw(span), "from": sorted(src),
                               "to": sorted(dst)})
            elif kind == "network":
                events.append({"type": "network", "at_s": t, "duration_s": draw(span),
                               "loss": draw(st.sampled_from((0.0, 0.1, 0.3))),
                               "duplicate": draw(st.sampled_from((0.0, 0.2, 0.5))),
                               "extra_delay_ms": draw(st.sampled_from((0, 50, 200)))})
            elif kind == "slow":  # lasts to the end of the run: after GST, delays are bounded, not small
                events.append({"type": "slow", "at_s": t, "extra_delay_ms": draw(st.sampled_from((100, 300, 600)))})
            else:
                events.append({"type": "clock_skew", "node": draw(node), "at_s": t,
                               "skew_ms": draw(st.sampled_from((-400, 200, 900)))})
        return {"events": events, "byzantine": byzantine}

    return build()


def schedule_size(schedule: Schedule) -> int:
    return len(schedule["events"]) + len(schedule["byzantine"])


def to_scenario(base: dict[str, Any], schedule: Schedule, name: str) -> dict[str, Any]:
    """Merge a schedule into a base scenario (its own faults, partitions and Byzantine replicas kept)."""
    data = copy.deepcopy(base)
    data["name"] = name
    network = data.setdefault("network", {})
    faults = list(data.get("faults", []))
    partitions = list(network.get("partitions", []))
    changes = list(network.get("changes", []))
    gst = float(network.get("gst_s", 0.0))
    for e in schedule["events"]:
        t = float(e["at_s"])
        end = round(t + float(e.get("duration_s", 0.0)), 1)
        if e["type"] in ("crash", "restart"):
            faults.append({"type": e["type"], "node": e["node"], "at_s": t})
        elif e["type"] == "pause":
            faults.append({"type": "pause", "node": e["node"], "at_s": t, "duration_s": e["duration_s"]})
        elif e["type"] == "clock_skew":
            faults.append({"type": "clock_skew", "node": e["node"], "at_s": t, "skew_ms": e["skew_ms"]})
        elif e["type"] == "partition":
            partitions.append({"start_s": t, "heal_s": end, "groups": e["groups"]})
            gst = max(gst, end)
        elif e["type"] == "one_way":
            partitions.append({"start_s": t, "heal_s": end, "from": e["from"], "to": e["to"]})
            gst = max(gst, end)
        elif e["type"] == "network":
            changes.append({"start_s": t, "end_s": end, "loss": e["loss"], "duplicate": e["duplicate"],
                            "extra_delay_ms": e["extra_delay_ms"]})
            gst = max(gst, end)
        elif e["type"] == "slow":
            changes.append({"start_s": t, "end_s": 1e6, "extra_delay_ms": e["extra_delay_ms"]})
    restarted = {e["node"] for e in schedule["events"] if e["type"] == "restart"}
    crashed = {e["node"] for e in schedule["events"] if e["type"] == "crash"}
    for e in schedule["events"]:
        if e["type"] == "crash" and e["node"] in restarted:
            gst = max(gst, max(float(r["at_s"]) for r in schedule["events"]
                               if r["type"] == "restart" and r["node"] == e["node"]))
    data["faults"] = faults
    network["partitions"] = partitions
    network["changes"] = changes
    network["gst_s"] = gst
    data["byzantine"] = list(data.get("byzantine", [])) + list(schedule["byzantine"])
    bound = float(data.get("expect", {}).get("liveness_bound_s", 30))
    data["duration_s"] = max(float(data.get("duration_s", 60)), gst + bound + 5)
    faulty = crashed | {b["node"] for b in data["byzantine"]}
    if len(faulty) > (data["cluster"]["n"] - 1) // 3:
        data.setdefault("expect", {})["liveness"] = False  # more than f down: only safety can be asked
    return data


# ---------------------------------------------------------------------------- Twins-style enumeration


def twins_candidates(n: int, limit: int, behaviours: tuple[str, ...] = ()) -> list[Schedule]:
    """Structured schedules for small clusters, tried before random ones: each replica duplicated
    as twins whose copies see different peer sets; the primary cut off from one replica and then
    crashed (a batch committed by some replicas but not by the next primary); crashes of successive
    primaries; and each of `behaviours` placed on each replica."""
    out: list[Schedule] = []
    for k in range(1, n):
        everyone_else = [r for r in range(n) if r != k]
        for cut, crash_at in (([0], 1.5), (everyone_else, 0.6)):
            out.append({"events": [{"type": "one_way", "at_s": 0.5, "duration_s": 0.5 if crash_at < 1 else 3.0,
                                    "from": cut, "to": [k]},
                                   {"type": "crash", "node": 0, "at_s": crash_at}], "byzantine": []})
    for burst in ({"loss": 0.0, "duplicate": 0.5, "extra_delay_ms": 0}, {"loss": 0.3, "duplicate": 0.0,
                                                                            "extra_delay_ms": 50}):
        out.append({"events": [{"type": "network", "at_s": 0.5, "duration_s": 4.0, **burst}], "byzantine": []})
    out.append({"events": [{"type": "slow", "at_s": 0.5, "extra_delay_ms": 600},
                           {"type": "crash", "node": 0, "at_s": 1.0}], "byzantine": []})
    for behaviour in behaviours:
        for k in range(n):
            out.append({"events": [], "byzantine": [{"node": k, "behaviours": [behaviour]}]})
    others = list(range(n))
    for k in range(n):
        rest = [r for r in others if r != k]
        for size in range(1, len(rest)):
            for side in itertools.combinations(rest, size):
                other = [r for r in rest if r not in side]
                out.append({"events": [], "byzantine": [{"node": k, "behaviours": ["twins"],
                                                         "params": {"peers_a": list(side), "peers_b": other}}]})
    for k in range(n):
        for t in (0.6, 1.0, 2.0):
            out.append({"events": [{"type": "crash", "node": k, "at_s": t}], "byzantine": []})
    return out[:limit]


# ---------------------------------------------------------------------------- search


@dataclass
class Finding:
    schedule: Schedule
    verdict: Verdict
    tried: int
    path: Path | None = None
    replay: str = ""
    reproducible: bool = False
    history: list[str] = field(default_factory=list)


def _violation(data: dict[str, Any], mutant: str | None, seed: int | None = None) -> Verdict | None:
    try:
        scenario = from_dict(data, "<explore>")
    except ScenarioError:
        return None  # an impossible schedule (e.g. restart before crash after shrinking): not a finding
    result = run(scenario, seed, mutant=mutant)
    if result.expectation_met:
        return None
    return next(v for v in result.verdicts if not v.ok)


def _greedy_shrink(base: dict[str, Any], schedule: Schedule, mutant: str | None, kind: str) -> Schedule:
    """Remove one event (or Byzantine assignment) at a time while the same kind of violation remains."""
    current = schedule
    changed = True
    while changed:
        changed = False
        for key in ("events", "byzantine"):
            for i in range(len(current[key])):
                candidate = {**current, key: current[key][:i] + current[key][i + 1:]}
                v = _violation(to_scenario(base, candidate, "shrink"), mutant)
                if v is not None and v.name == kind:
                    current, changed = candidate, True
                    break
            if changed:
                break
    return current


def explore(base: dict[str, Any], budget: int, mutant: str | None = None,
            behaviours: tuple[str, ...] = DEFAULT_BEHAVIOURS, out_dir: Path | None = None,
            base_path: str = "explore", focus: tuple[str, ...] = ()) -> Finding | None:
    """Search `budget` schedules; `focus` behaviours are also placed systematically on each replica."""
    n = int(base["cluster"]["n"])
    tried = 0
    found: tuple[Schedule, Verdict] | None = None
    structured = twins_candidates(n, budget // 2, focus) if n <= 7 else []
    for schedule in structured:
        tried += 1
        v = _violation(to_scenario(base, schedule, "explore"), mutant)
        if v is not None:
            found = (_greedy_shrink(base, schedule, mutant, v.name), v)
            break
    if found is None and budget > tried:
        kind: list[str] = []

        def violates(schedule: Schedule) -> bool:
            nonlocal tried
            tried += 1
            v = _violation(to_scenario(base, schedule, "explore"), mutant)
            if v is None or (kind and v.name != kind[0]):
                return False
            kind[:1] = [v.name]
            return True

        try:
            minimal = find(schedule_strategy(n, behaviours), violates, settings=settings(
                max_examples=budget - tried, database=None, derandomize=True, deadline=None,
                suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink]))
        except NoSuchExample:
            return None
        v = _violation(to_scenario(base, minimal, "explore"), mutant)
        assert v is not None, "a shrunk schedule must still violate"
        found = (minimal, v)
    if found is None:
        return None
    schedule, verdict = found
    finding = Finding(schedule, verdict, tried)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{Path(base_path).stem}-{mutant or 'production'}"
        data = to_scenario(base, schedule, stem)
        data["description"] = (f"Shrunk counterexample found by `python -m sim explore` after {tried} schedules: "
                               f"{verdict.name} violated ({verdict.detail}).")
        path = out_dir / f"{stem}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        finding.path = path
        finding.replay = f"python -m sim run {path}" + (f" --mutant {mutant}" if mutant else "")
        first = _violation(data, mutant)
        second = _violation(data, mutant)
        finding.reproducible = (first is not None and second is not None and first.name == second.name
                                == verdict.name and first.detail == second.detail)
    return finding


# ---------------------------------------------------------------------------- commands


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explore", help="search fault schedules for a violation and shrink it")
    p.add_argument("scenario", nargs="?", help="base scenario (default: a four-replica exploration base)")
    p.add_argument("--budget", type=int, default=100, help="schedules to try")
    p.add_argument("--mutant", help="explore against an injected bug (see `python -m sim mutants`)")
    p.add_argument("--out", default="explore-out", help="where the shrunk scenario is written")
    p.set_defaults(func=_cmd_explore)


def _cmd_explore(args: argparse.Namespace) -> int:
    if args.scenario:
        try:
            load(args.scenario)
        except ScenarioError as exc:
            print(f"invalid scenario: {exc}")
            return 2
        base = yaml.safe_load(Path(args.scenario).read_text())
    else:
        base = copy.deepcopy(EXPLORE_BASE)
    finding = explore(base, args.budget, args.mutant, out_dir=Path(args.out), base_path=args.scenario or "explore")
    if finding is None:
        print(f"no violation found in {args.budget} schedules")
        return 0
    print(f"violation after {finding.tried} schedules: {finding.verdict.name}: {finding.verdict.detail}")
    print(f"shrunk schedule: {schedule_size(finding.schedule)} events, written to {finding.path}")
    print(f"replay: {finding.replay}")
    return 1


def mutant_base(name: str) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    from sim.mutants import MUTANTS

    overrides = dict(MUTANTS[name].base)
    focus = tuple(overrides.pop("byzantine_pool", ()))
    base = copy.deepcopy(EXPLORE_BASE)
    base.update(overrides)
    return base, DEFAULT_BEHAVIOURS + focus, focus


def check_mutants(budget: int, names: list[str], out: str) -> int:
    rows = []
    for name in names:
        base, behaviours, focus = mutant_base(name)
        finding = explore(base, budget, name, behaviours, Path(out), base_path="mutant", focus=focus)
        if finding is None:
            rows.append((name, "NOT DETECTED", str(budget), "-", "-", ""))
        else:
            rows.append((name, f"detected ({finding.verdict.name})", str(finding.tried),
                         str(schedule_size(finding.schedule)), "yes" if finding.reproducible else "NO",
                         finding.replay))
        print(f"  {rows[-1][0]}: {rows[-1][1]}", flush=True)
    header = ("mutant", "verdict", "schedules", "shrunk events", "replays", "replay command")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print()
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    sizes = [int(r[3]) for r in rows if r[3] != "-"]
    detected = sum(1 for r in rows if r[1].startswith("detected"))
    print(f"\n{detected}/{len(rows)} detected; median shrunk schedule "
          f"{statistics.median(sizes) if sizes else '-'} events")
    ok = detected == len(rows) and all(r[4] == "yes" for r in rows)
    return 0 if ok else 1
