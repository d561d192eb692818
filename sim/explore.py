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
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from sim.adversaries import BEHAVIOURS
from sim.adversaries.clients import CLIENT_BEHAVIOURS
from sim.apps import APPS
from sim.checkers import Verdict
from sim.params import ParamRule
from sim.runner import RunResult, run
from sim.scenario import ScenarioError, from_dict, load, with_overrides
from sim.storage import STORAGE_CRASHES, crash_points

#: Storage faults a generated schedule may give a crashed replica (see sim/storage.py).
STORAGE_FAULTS = (*STORAGE_CRASHES, "corrupt_synced")

DEFAULT_BEHAVIOURS = ("silent", "crash_worst_moment", "equivocate", "double_vote", "bad_signatures",
                      "replay_stale", "selective_delay", "vc_equivocate", "vc_forge", "vc_withhold", "nv_forge",
                      "checkpoint_lie", "state_lie")

#: Cluster sizes drawn by default: every residue of n mod 3, so quorums are exercised where 2f+1 is
#: wrong (n = 3f+2, 3f+3) as well as where it is right.
SIZES = tuple(range(4, 14))

#: The short base: small clusters, short closed-loop runs.
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


def _base(name: str, **overrides: Any) -> dict[str, Any]:
    return with_overrides(EXPLORE_BASE, name=f"explore-{name}", **overrides)


#: Exploration bases, each reaching protocol paths the others rarely do.
BASES: dict[str, dict[str, Any]] = {
    "short": _base("short"),
    # Many checkpoints and garbage collection, so crashes and pauses need state transfer.
    "long": _base("long", cluster={"checkpoint_interval": 2, "watermark_window": 4},
                  workload={"clients": 6, "mode": "open", "rate_per_s": 40, "requests": 240, "start_s": 0.2}),
    # The view-0 primary's messages do not arrive for four seconds: a view change with requests in flight.
    "muted-primary": _base("muted-primary", network={
        "latency": {"model": "uniform", "low_ms": 5, "high_ms": 40}, "gst_s": 4.5,
        "partitions": [{"start_s": 0.5, "heal_s": 4.5, "from": [0], "to": "others"}]}),
    # The view-0 primary crashes, then the view-1 primary is heard by nobody for a while: replicas end
    # up in different views and must converge.
    "one-way": _base("one-way", faults=[{"type": "crash", "node": 0, "at_s": 1.0}], network={
        "latency": {"model": "uniform", "low_ms": 5, "high_ms": 40}, "gst_s": 6.0,
        "partitions": [{"start_s": 2.5, "heal_s": 6.0, "from": [1], "to": "others"}]},
        workload={"clients": 4, "mode": "open", "rate_per_s": 10, "requests": 80, "start_s": 0.5}),
    # Outside-name validation (sim/apps/outside.py): one validator lies, lookups sometimes fail, the
    # attacker abandons validations, which expire: open, ready, observe and expire all run.
    "outside-dns": _base("outside-dns", application={"name": "outside_dns", "params": {
        "attackers": 1, "names": 2, "unclaimed": 1, "lying": [1], "lookup_min_ms": 10, "lookup_max_ms": 100,
        "lookup_failure": 0.05, "open_ttl_s": 4.0, "max_attempts": 20}},
        workload={"clients": 4, "mode": "closed", "requests": 120, "think_ms": 150}),
}

Schedule = dict[str, Any]  # {"n": int, "events": [...], "byzantine": [...]}


# ---------------------------------------------------------------------------- schedules


def _params(behaviour: str) -> st.SearchStrategy[dict[str, Any]]:
    """Optional settings of a behaviour's switches and variant choices (one variant on its own, so that
    every recipient is shown the same lie), from the schema the behaviour declares; other params keep
    their defaults."""
    cls = BEHAVIOURS.get(behaviour)
    options: dict[str, st.SearchStrategy[Any]] = {}
    for key, rule in (cls.param_types if cls is not None else {}).items():
        if rule is bool:
            options[key] = st.booleans()
        elif isinstance(rule, ParamRule) and rule.choices:
            one = st.sampled_from(rule.choices)
            options[key] = one.map(lambda c: [c]) if rule.kind is list else one
    return st.fixed_dictionaries({}, optional=options)


def _single_variants(behaviour: str) -> list[dict[str, Any]]:
    """Each single choice of a behaviour's variant lists ({} when it has none)."""
    cls = BEHAVIOURS.get(behaviour)
    for key, rule in (cls.param_types if cls is not None else {}).items():
        if isinstance(rule, ParamRule) and rule.kind is list and rule.choices:
            return [{key: [c]} for c in rule.choices]
    return [{}]


def schedule_strategy(sizes: int | Sequence[int], behaviours: tuple[str, ...],
                      horizon_s: float = 8.0, spare: int = 0) -> st.SearchStrategy[Schedule]:
    """Fault schedules for clusters of the given sizes: up to f - `spare` faulty replicas (Byzantine,
    among them colluding equivocators and twins, or crashed and possibly restarted; `spare` leaves room
    for faults the base already has), plus network events."""
    choices = (sizes,) if isinstance(sizes, int) else tuple(sizes)
    at = st.integers(0, int(horizon_s * 10)).map(lambda x: x / 10)
    span = st.integers(1, 60).map(lambda x: x / 10)

    @st.composite
    def build(draw: st.DrawFn) -> Schedule:
        n = draw(st.sampled_from(choices))
        f = (n - 1) // 3
        node = st.integers(0, n - 1)

        def split(k: int) -> tuple[list[int], list[int]]:
            rest = [r for r in range(n) if r != k]
            side = draw(st.lists(st.sampled_from(rest), min_size=1, max_size=len(rest) - 1, unique=True))
            return sorted(side), [r for r in rest if r not in side]

        faulty = draw(st.lists(node, max_size=max(0, f - spare), unique=True))
        byzantine: list[dict[str, Any]] = []
        crashable = []
        for k in faulty:
            role = draw(st.sampled_from(("byzantine", "byzantine", "twins", "crash")))
            if role == "byzantine":
                chosen = sorted(draw(st.lists(st.sampled_from(behaviours), min_size=1, max_size=2, unique=True)))
                entry: dict[str, Any] = {"node": k, "behaviours": chosen}
                params = {key: value for b in chosen for key, value in draw(_params(b)).items()}
                if params:
                    entry["params"] = params
                byzantine.append(entry)
            elif role == "twins":
                a, b = split(k)
                byzantine.append({"node": k, "behaviours": ["twins"], "params": {"peers_a": a, "peers_b": b}})
            else:
                crashable.append(k)
        events: list[dict[str, Any]] = []
        for k in crashable:
            t = draw(at)
            kind = draw(st.sampled_from(("crash", "crash", *STORAGE_FAULTS)))
            if kind == "crash":
                events.append({"type": "crash", "node": k, "at_s": t})
                if draw(st.booleans()):
                    events.append({"type": "restart", "node": k, "at_s": round(t + draw(span), 1)})
            else:  # a crash at a storage boundary (or a corrupted disk), then a restart from what survived
                event = {"type": kind, "node": k, "at_s": t, "restart_after_s": draw(span)}
                if kind != "corrupt_synced":
                    event["k"] = draw(st.integers(1, 40))
                events.append(event)
        kinds = st.sampled_from(("pause", "partition", "one_way", "network", "slow", "clock_skew", "rolling"))
        for kind in draw(st.lists(kinds, max_size=6)):
            t = draw(at)
            if kind == "pause":
                events.append({"type": "pause", "node": draw(node), "at_s": t, "duration_s": draw(span)})
            elif kind == "partition":
                side = draw(st.lists(node, min_size=1, max_size=n - 1, unique=True))
                events.append({"type": "partition", "at_s": t, "duration_s": draw(span), "groups": [
                    sorted(side), sorted(set(range(n)) - set(side))]})
            elif kind == "rolling":
                # Partitions that change about once per view-change timeout: each view sees another split.
                period = draw(st.sampled_from((0.5, 1.0, 2.0)))
                groups = [draw(st.lists(node, min_size=1, max_size=n - 1, unique=True)) for _ in
                          range(draw(st.integers(2, 4)))]
                events.append({"type": "rolling", "at_s": t, "period_s": period,
                               "sides": [sorted(g) for g in groups]})
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
        clients = []
        if draw(st.integers(0, 3)) == 0:  # Byzantine clients are outside f: any schedule may have them
            chosen = draw(st.lists(st.sampled_from(CLIENT_BEHAVIOURS), min_size=1, max_size=2, unique=True))
            clients.append({"behaviours": sorted(chosen), "params": {
                "start_s": draw(at), "rate_per_s": draw(st.sampled_from((5, 20))),
                "burst": draw(st.sampled_from((4, 16)))}})
        return {"n": n, "events": events, "byzantine": byzantine, "byzantine_clients": clients}

    return build()


def _faulty(schedule: Schedule) -> int:
    crashed = {e["node"] for e in schedule["events"] if e["type"] in ("crash", *STORAGE_FAULTS)}
    return len(crashed | {b["node"] for b in schedule["byzantine"]})


def schedule_size(schedule: Schedule) -> int:
    return len(schedule["events"]) + len(schedule["byzantine"]) + len(schedule.get("byzantine_clients", ()))


def _others(spec: Any, n: int, src: list[int]) -> list[int]:
    return [r for r in range(n) if r not in src] if spec == "others" else list(spec)


def to_scenario(base: dict[str, Any], schedule: Schedule, name: str) -> dict[str, Any]:
    """Merge a schedule into a base scenario (its own faults, partitions and Byzantine replicas kept)."""
    data = copy.deepcopy(base)
    data["name"] = name
    n = int(schedule.get("n", data["cluster"]["n"]))
    data["cluster"]["n"] = n
    network = data.setdefault("network", {})
    faults = list(data.get("faults", []))
    partitions = [dict(p, to=_others(p["to"], n, p["from"])) if "to" in p else p
                  for p in network.get("partitions", [])]
    changes = list(network.get("changes", []))
    gst = float(network.get("gst_s", 0.0))
    for e in schedule["events"]:
        t = float(e.get("at_s", 0.0))
        end = round(t + float(e.get("duration_s", 0.0)), 1)
        if e["type"] in ("crash", "restart"):
            faults.append({"type": e["type"], "node": e["node"], "at_s": t})
        elif e["type"] in STORAGE_FAULTS:
            faults.append(dict(e))
            gst = max(gst, t + float(e.get("restart_after_s", 0.0)) + 2.0)
        elif e["type"] == "pause":
            faults.append({"type": "pause", "node": e["node"], "at_s": t, "duration_s": e["duration_s"]})
        elif e["type"] == "clock_skew":
            faults.append({"type": "clock_skew", "node": e["node"], "at_s": t, "skew_ms": e["skew_ms"]})
        elif e["type"] == "partition":
            partitions.append({"start_s": t, "heal_s": end, "groups": e["groups"]})
            gst = max(gst, end)
        elif e["type"] == "rolling":
            for i, side in enumerate(e["sides"]):
                start = round(t + i * e["period_s"], 1)
                heal = round(start + e["period_s"], 1)
                partitions.append({"start_s": start, "heal_s": heal,
                                   "groups": [side, sorted(set(range(n)) - set(side))]})
                gst = max(gst, heal)
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
    crashed = {e["node"] for e in schedule["events"] if e["type"] in ("crash", *STORAGE_FAULTS)}
    crashed |= {f["node"] for f in data.get("faults", []) if f["type"] in ("crash", *STORAGE_FAULTS)}
    for e in schedule["events"]:
        if e["type"] == "crash" and e["node"] in restarted:
            gst = max(gst, max(float(r["at_s"]) for r in schedule["events"]
                               if r["type"] == "restart" and r["node"] == e["node"]))
    data["faults"] = faults
    network["partitions"] = partitions
    network["changes"] = changes
    network["gst_s"] = gst
    data["byzantine"] = list(data.get("byzantine", [])) + list(schedule["byzantine"])
    clients = list(data.get("byzantine_clients", [])) + list(schedule.get("byzantine_clients", []))
    if clients:
        data["byzantine_clients"] = clients
    bound = float(data.get("expect", {}).get("liveness_bound_s", 30))
    data["duration_s"] = max(float(data.get("duration_s", 60)), gst + bound + 5)
    faulty = crashed | {b["node"] for b in data["byzantine"]}
    if len(faulty) > (n - 1) // 3:
        data.setdefault("expect", {})["liveness"] = False  # more than f down: only safety can be asked
    return data


# ---------------------------------------------------------------------------- Twins-style enumeration


def twins_candidates(n: int, limit: int, behaviours: tuple[str, ...] = ()) -> list[Schedule]:
    """Structured schedules, tried before random ones: each of `behaviours` placed on each replica,
    alone and (one variant to every recipient) during a view change with a lagging replica; f
    colluding equivocators at the sizes where 2f+1 is not a quorum; replicas left in different views
    (the view-0 primary crashes, then the view-1 primary is heard by nobody for a while); each
    replica duplicated as twins whose copies see different peer sets; the primary cut off from one
    replica and then crashed (a batch committed by some replicas but not by the next primary); and
    crashes of successive primaries."""
    out: list[Schedule] = []
    for behaviour in behaviours:
        for k in range(n):
            out.append({"n": n, "events": [], "byzantine": [{"node": k, "behaviours": [behaviour]}]})
        # The same lie to every recipient, while a view change runs with one replica lagging behind
        # (the view-0 primary paused, another replica cut off just before): the lagging replica must
        # take the new view's batches or a peer's state without having executed them itself.
        for variant in _single_variants(behaviour):
            for k in range(n):
                stalled = 1 if k == 0 else 0
                lagging = next(r for r in range(n - 1, -1, -1) if r not in (k, stalled))
                entry: dict[str, Any] = {"node": k, "behaviours": [behaviour]}
                if variant:
                    entry["params"] = variant
                out.append({"n": n, "byzantine": [entry], "events": [
                    {"type": "pause", "node": stalled, "at_s": 1.0, "duration_s": 3.0},
                    {"type": "partition", "at_s": 0.5, "duration_s": 1.0,
                     "groups": [[lagging], [r for r in range(n) if r != lagging]]}]})
    for size in sorted({n, 5, 6, 9}):
        f = (size - 1) // 3
        out.append({"n": size, "events": [], "byzantine": [
            {"node": k, "behaviours": ["equivocate"], "params": {"collude": True}} for k in range(f)]})
    for size in sorted({n, 4, 7}):
        rest = list(range(2, size))
        out.append({"n": size, "events": [{"type": "crash", "node": 0, "at_s": 1.0},
                                          {"type": "one_way", "at_s": 2.5, "duration_s": 3.5, "from": [1],
                                           "to": [0, *rest]}], "byzantine": []})
    for k in range(1, n):
        everyone_else = [r for r in range(n) if r != k]
        for cut, crash_at in (([0], 1.5), (everyone_else, 0.6)):
            out.append({"n": n, "events": [
                {"type": "one_way", "at_s": 0.5, "duration_s": 0.5 if crash_at < 1 else 3.0, "from": cut, "to": [k]},
                {"type": "crash", "node": 0, "at_s": crash_at}], "byzantine": []})
    for burst in ({"loss": 0.0, "duplicate": 0.5, "extra_delay_ms": 0}, {"loss": 0.3, "duplicate": 0.0,
                                                                            "extra_delay_ms": 50}):
        out.append({"n": n, "events": [{"type": "network", "at_s": 0.5, "duration_s": 4.0, **burst}],
                    "byzantine": []})
    out.append({"n": n, "events": [{"type": "slow", "at_s": 0.5, "extra_delay_ms": 600},
                                   {"type": "crash", "node": 0, "at_s": 1.0}], "byzantine": []})
    others = list(range(n))
    for k in range(n):
        rest = [r for r in others if r != k]
        for size in range(1, len(rest)):
            for side in itertools.combinations(rest, size):
                other = [r for r in rest if r not in side]
                out.append({"n": n, "events": [], "byzantine": [
                    {"node": k, "behaviours": ["twins"], "params": {"peers_a": list(side), "peers_b": other}}]})
    for k in range(n):
        for t in (0.6, 1.0, 2.0):
            out.append({"n": n, "events": [{"type": "crash", "node": k, "at_s": t}], "byzantine": []})
    # A crash at each of the first fsync boundaries of the view-0 and view-1 primaries (between
    # persisting a vote and sending it), and at their first record writes with the unsynced tail lost
    # or torn, each followed by a restart from what survived on disk.
    for k in (0, 1):
        out += [{"n": n, "events": [fault], "byzantine": []} for fault in crash_points(k, range(1, 9), at_s=0.5)]
        for kind in ("lose_unsynced", "torn_write"):
            out += [{"n": n, "events": [fault], "byzantine": []}
                    for fault in crash_points(k, range(1, 5), kind=kind, at_s=0.5)]
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


@dataclass
class Exploration:
    """What one exploration did: schedules searched (shrinking runs are counted apart), runs that ended
    before liveness could be judged (never counted as violations), and how often each protocol path ran."""

    base: str
    finding: Finding | None = None
    tried: int = 0
    shrink_runs: int = 0
    inconclusive: int = 0
    coverage: Counter[str] = field(default_factory=Counter)  # path -> times exercised, over all runs
    runs_with: Counter[str] = field(default_factory=Counter)  # path -> searched runs that exercised it


#: Protocol paths every exploration reports, so that a path never reached shows as 0.
COVERED_PATHS = ("view_change", "new_view_reproposal", "new_view_null_fill", "state_transfer_snapshot",
                 "state_transfer_reply", "checkpoint_stable", "crash_recovery", "storage_crash",
                 "torn_tail_dropped", "corrupt_disk_refused", "twins", "equivocation", "byzantine_client",
                 "rejected_view_change", "rejected_new_view", "rejected_checkpoint", "rejected_state_transfer",
                 "validation_open", "validation_ready", "validation_observe", "validation_validated",
                 "validation_failed", "validation_expire")


def _coverage(result: RunResult) -> Counter[str]:
    world = result.world
    out: Counter[str] = Counter(world.coverage)
    out["crash_recovery"] += world.faults.get("restart", 0)
    out["storage_crash"] += sum(world.faults.get(kind, 0) for kind in STORAGE_CRASHES)
    out["torn_tail_dropped"] += world.faults.get("recovery_truncated", 0)
    out["corrupt_disk_refused"] += world.faults.get("storage_corrupt", 0)
    out["byzantine_client"] += len(world.scenario.byzantine_clients)
    out["twins"] += sum(1 for b in world.scenario.byzantine if "twins" in b.behaviours)
    out["equivocation"] += world.faults.get("equivocation", 0)
    interval = world.config.checkpoint_interval
    for node in world.nodes.values():
        if node.byzantine:
            continue
        counters = node.replica.counters
        out["state_transfer_reply"] += counters.received.get("state_reply", 0)
        if "checkpoint_stable" not in world.coverage:
            out["checkpoint_stable"] += node.replica.status.low_watermark // interval
        for reason, count in counters.rejected.items():
            out[f"rejected:{reason}"] += count
            family = ("view_change" if "view_change" in reason else "new_view" if "new_view" in reason else
                      "checkpoint" if "checkpoint" in reason else
                      "state_transfer" if "state" in reason or "snapshot" in reason else None)
            if family is not None:
                out[f"rejected_{family}"] += count
    return out


class _Search:
    """Runs schedules against one base and keeps the counts."""

    def __init__(self, base: dict[str, Any], mutant: str | None, record: Exploration) -> None:
        self.base, self.mutant, self.record = base, mutant, record

    def violation(self, schedule: Schedule, *, searching: bool) -> Verdict | None:
        try:
            scenario = from_dict(to_scenario(self.base, schedule, "explore"), "<explore>")
        except ScenarioError:
            return None  # an impossible schedule (e.g. restart before crash after shrinking): not a finding
        if searching:
            self.record.tried += 1
        else:
            self.record.shrink_runs += 1
        result = run(scenario, mutant=self.mutant)
        if searching:
            cov = _coverage(result)
            self.record.coverage.update(cov)
            self.record.runs_with.update(k for k, v in cov.items() if v > 0)
        failed = [v for v in result.verdicts if not v.ok and (v.name != "liveness" or scenario.expect.liveness)]
        if searching and any(v.inconclusive for v in failed):
            self.record.inconclusive += 1
        decided = [v for v in failed if not v.inconclusive]
        if result.expectation_met or not decided:
            return None
        return decided[0]

    def greedy_shrink(self, schedule: Schedule, kind: str) -> Schedule:
        """Remove one event (or Byzantine assignment) at a time while the same kind of violation remains."""
        current = schedule
        changed = True
        while changed:
            changed = False
            for key in ("events", "byzantine", "byzantine_clients"):
                for i in range(len(current.get(key, ()))):
                    candidate = {**current, key: current[key][:i] + current[key][i + 1:]}
                    v = self.violation(candidate, searching=False)
                    if v is not None and v.name == kind:
                        current, changed = candidate, True
                        break
                if changed:
                    break
        return current


def _violation(data: dict[str, Any], mutant: str | None) -> Verdict | None:
    """The first decided violation of a scenario given as data (None when it meets its expectation)."""
    try:
        scenario = from_dict(data, "<explore>")
    except ScenarioError:
        return None
    result = run(scenario, mutant=mutant)
    failed = [v for v in result.verdicts if not v.ok and not v.inconclusive
              and (v.name != "liveness" or scenario.expect.liveness)]
    return None if result.expectation_met or not failed else failed[0]


def explore(base: dict[str, Any], budget: int, mutant: str | None = None,
            behaviours: tuple[str, ...] = DEFAULT_BEHAVIOURS, out_dir: Path | None = None,
            base_path: str = "explore", focus: tuple[str, ...] = (), sizes: Sequence[int] | None = None,
            spare: int = 0) -> Exploration:
    """Search `budget` schedules against one base; `focus` behaviours are also placed systematically on
    each replica. `sizes` are the cluster sizes random schedules draw from (default: the base's n)."""
    n = int(base["cluster"]["n"])
    record = Exploration(str(base.get("name", base_path)))
    search = _Search(base, mutant, record)
    found: tuple[Schedule, Verdict] | None = None
    structured = [{"n": n, "events": [], "byzantine": []}]  # the base as it is
    if n <= 7:
        structured += [s for s in twins_candidates(n, budget // 2, focus) if _faulty(s) <= (s["n"] - 1) // 3 - spare]
    for schedule in structured[:max(1, budget // 2)]:
        v = search.violation(schedule, searching=True)
        if v is not None:
            found = (search.greedy_shrink(schedule, v.name), v)
            break
    if found is None and budget > record.tried:
        kind: list[str] = []

        def violates(schedule: Schedule) -> bool:
            v = search.violation(schedule, searching=not kind)
            if v is None or (kind and v.name != kind[0]):
                return False
            kind[:1] = [v.name]
            return True

        try:
            minimal = find(schedule_strategy(sizes or (n,), behaviours, spare=spare), violates, settings=settings(
                max_examples=budget - record.tried, database=None, derandomize=True, deadline=None,
                suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink]))
        except NoSuchExample:
            return record
        v = search.violation(minimal, searching=False)
        assert v is not None, "a shrunk schedule must still violate"
        found = (minimal, v)
    if found is None:
        return record
    schedule, verdict = found
    finding = Finding(schedule, verdict, record.tried)
    record.finding = finding
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"{Path(base_path).stem}-{mutant or 'production'}"
        data = to_scenario(base, schedule, stem)
        data["description"] = (f"Shrunk counterexample found by `python -m sim explore` after {record.tried} "
                               f"schedules: {verdict.name} violated ({verdict.detail}).")
        path = out_dir / f"{stem}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        finding.path = path
        finding.replay = f"python -m sim run {path}" + (f" --mutant {mutant}" if mutant else "")
        first = _violation(data, mutant)
        second = _violation(data, mutant)
        finding.reproducible = (first is not None and second is not None and first.name == second.name
                                == verdict.name and first.detail == second.detail)
    return record


def format_coverage(records: Sequence[Exploration]) -> str:
    """Per-path coverage: in how many searched schedules each protocol path ran, and how often."""
    total_runs = sum(r.tried for r in records)
    coverage: Counter[str] = Counter()
    runs_with: Counter[str] = Counter()
    for r in records:
        coverage.update(r.coverage)
        runs_with.update(r.runs_with)
    paths = list(COVERED_PATHS) + sorted(k for k in coverage if k not in COVERED_PATHS)
    width = max(len(p) for p in paths)
    lines = [f"coverage over {total_runs} schedules (shrinking runs not counted):",
             f"  {'path':<{width}}  {'schedules':>9}  {'times':>8}"]
    lines += [f"  {p:<{width}}  {runs_with[p]:>9}  {coverage[p]:>8}" for p in paths]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- commands


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("explore", help="search fault schedules for a violation and shrink it")
    p.add_argument("scenario", nargs="?", help="base scenario (default: the built-in bases, see --base)")
    p.add_argument("--base", choices=[*BASES, "all"], default="all",
                   help="built-in base when no scenario is given (default: all of them, each with the budget)")
    p.add_argument("--budget", type=int, default=100, help="schedules to search per base (shrinking not counted)")
    p.add_argument("--sizes", type=int, nargs="+", help="cluster sizes random schedules draw from "
                   f"(default {SIZES[0]}..{SIZES[-1]} for built-in bases, the scenario's n otherwise)")
    p.add_argument("--mutant", help="explore against an injected bug (see `python -m sim mutants`)")
    p.add_argument("--out", default="explore-out", help="where the shrunk scenario is written")
    p.set_defaults(func=_cmd_explore)


def base_spare(base: dict[str, Any]) -> int:
    """Faulty replicas the base already has (crashed, Byzantine, or made faulty by the application's
    params, e.g. lying validators), which schedules must leave room for."""
    crashed = {f["node"] for f in base.get("faults", []) if f.get("type") == "crash"}
    app = base.get("application", {})
    faulty = APPS[app.get("name", "kv")].faulty_nodes(dict(app.get("params", {})))
    return len(crashed | faulty | {b["node"] for b in base.get("byzantine", [])})


def _cmd_explore(args: argparse.Namespace) -> int:
    if args.budget < 1:
        print("--budget: must be at least 1")
        return 2
    if args.sizes and min(args.sizes) < 4:
        print("--sizes: PBFT needs at least 4 replicas")
        return 2
    if args.scenario:
        try:
            load(args.scenario)
        except ScenarioError as exc:
            print(f"invalid scenario: {exc}")
            return 2
        bases = {Path(args.scenario).stem: yaml.safe_load(Path(args.scenario).read_text())}
        sizes = args.sizes
    else:
        bases = {k: v for k, v in BASES.items() if args.base in ("all", k)}
        sizes = args.sizes or list(SIZES)
    records = []
    for name, base in bases.items():
        record = explore(base, args.budget, args.mutant, out_dir=Path(args.out), base_path=name,
                         sizes=sizes, spare=base_spare(base))
        records.append(record)
        found = record.finding
        verdict = "no violation" if found is None else f"VIOLATION {found.verdict.name}: {found.verdict.detail}"
        print(f"base {name}: {record.tried} schedules searched, {record.shrink_runs} shrinking runs, "
              f"{record.inconclusive} too short to judge; {verdict}", flush=True)
        if found is not None:
            print(f"  shrunk schedule: {schedule_size(found.schedule)} events, written to {found.path}")
            print(f"  replay: {found.replay}")
    print(format_coverage(records))
    return 1 if any(r.finding is not None for r in records) else 0


def mutant_base(name: str) -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...]]:
    from sim.mutants import MUTANTS

    overrides = dict(MUTANTS[name].base)
    focus = tuple(overrides.pop("byzantine_pool", ()))
    base = copy.deepcopy(BASES[overrides.pop("explore_base", "short")])
    base.update(overrides)
    return base, DEFAULT_BEHAVIOURS + focus, focus


def check_mutants(budget: int, names: list[str], out: str) -> int:
    rows = []
    records = []
    for name in names:
        base, behaviours, focus = mutant_base(name)
        record = explore(base, budget, name, behaviours, Path(out), base_path="mutant", focus=focus,
                         sizes=SIZES, spare=base_spare(base))
        records.append(record)
        finding = record.finding
        if finding is None:
            rows.append((name, "NOT DETECTED", str(record.tried), "-", "-", ""))
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
    print(format_coverage(records))
    ok = detected == len(rows) and all(r[4] == "yes" for r in rows)
    return 0 if ok else 1
