"""The measurements behind `python -m sim report`, reduced to the numbers the report shows.

Each `measure_*` runs one experiment of the report (simulation sweeps through `sim.sweep`, cached by
scenario content, seed and code version; microbenchmarks through `benchmarks/micro.py`; simulator scale
through `sim.scale`; the reference node's loopback cluster through `benchmarks/node_bench.py`) and
returns a small result object. Nothing here draws or formats: `sim.report` renders the results as
Markdown and plots, so an experiment can be rerun or inspected without the document.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sim.bench import bench_scenario
from sim.scale import fit_power
from sim.sweep import ROOT, code_version, load_scenario_dict, sweep, write_outputs

__all__ = [
    "CONSENSUS_SAFETY", "AdversaryRow", "BatchResult", "Lab", "LoopbackResult", "Plan", "RecoveryResult",
    "ScaleResult", "ScalingResult", "WanResult", "base_scenario", "behaviour_scenario", "by", "machine",
    "make_plan", "measure_adversaries", "measure_batch", "measure_loopback", "measure_micro",
    "measure_recovery", "measure_scale", "measure_scaling", "measure_wan", "med", "ok_records",
]

CONSENSUS_SAFETY = ("agreement", "validity", "certificates")


# ---------------------------------------------------------------------------- configuration


@dataclass
class Plan:
    quick: bool
    scaling_n: list[int]
    scaling_seeds: int
    scaling_requests: int
    latencies: list[float]
    regions: list[int]
    wan_seeds: int
    batches: list[int]
    batch_seeds: int
    batch_requests: int
    recovery_seeds: int
    adversary_seeds: int
    behaviour_seeds: int
    scenario_files: list[str]
    scale_n: list[int]
    scale_requests: int
    scale_direct: tuple[int, int] | None  # (n, requests) run directly, to check the extrapolation
    micro_max_time: float
    extra: dict[str, Any] = field(default_factory=dict)


def make_plan(quick: bool) -> Plan:
    files = sorted(p.name for p in (ROOT / "scenarios").glob("*.yaml"))
    if quick:
        return Plan(True, [4, 7], 1, 40, [10.0, 50.0], [1, 3], 1, [1, 10], 1, 120, 1, 1, 1,
                    [f for f in files if f in ("twins.yaml", "beyond-threshold.yaml")],
                    [4, 7], 40, None, 0.02, {"recovery_requests": 100, "behaviour_requests": 60,
                                             "observer_nodes": [100]})
    return Plan(False, [4, 7, 10, 16, 31, 64], 4, 100, [5.0, 10.0, 20.0, 50.0, 100.0, 200.0], [1, 2, 3, 5, 7], 3,
                [1, 2, 5, 10, 20, 50, 100], 3, 1000, 10, 6, 8, files, [4, 10, 16, 31, 64], 100, (31, 1000), 0.3)


def base_scenario(name: str, n: int = 7, requests: int = 100) -> dict[str, Any]:
    """The common cluster for the grids: the `python -m sim bench` settings."""
    return {**bench_scenario(n, requests), "name": name}


def behaviour_scenario(behaviour: str, requests: int = 150) -> dict[str, Any]:
    """n = 7 (f = 2), both faulty replicas (0, the first primary, and 4) running one behaviour."""
    d = base_scenario(f"adversary-{behaviour}", 7, requests)
    d["duration_s"] = 120
    d["cluster"].update({"view_change_timeout_ms": 1000, "checkpoint_interval": 10, "watermark_window": 30})
    d["network"] = {"latency": {"model": "lognormal", "median_ms": 20, "sigma": 0.3}, "jitter_ms": 2}
    d["workload"] = {"clients": 8, "mode": "closed", "requests": requests}
    d["byzantine"] = [{"node": 0, "behaviours": [behaviour]}, {"node": 4, "behaviours": [behaviour]}]
    d["expect"] = {"safety": "hold", "liveness": True, "liveness_bound_s": 30}
    return d


# ---------------------------------------------------------------------------- small helpers


def med(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def ok_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in records if r.get("status") == "ok"]


def by(records: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any]) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return dict(sorted(out.items()))


def machine() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False,
                                  timeout=20).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "nproc": str(os.cpu_count()),
            "cpu": cpu, "python": platform.python_version(), "platform": platform.platform(),
            "commit": git("rev-parse", "HEAD") or "unknown",
            "dirty": "yes: tracked files had uncommitted changes (measured the working tree)" if dirty else "no",
            "code_version": code_version(),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg())}


# ---------------------------------------------------------------------------- sweeps


class Lab:
    """Runs the simulation sweeps of one report: cached, counted, and written to `data/` as it goes."""

    def __init__(self, data: Path, jobs: int | None, cache: Path, executor: str | None,
                 progress: bool = True) -> None:
        self.data, self.jobs, self.cache, self.executor, self.progress = data, jobs, cache, executor, progress
        self.data.mkdir(parents=True, exist_ok=True)
        self.runs_executed = 0
        self.runs_cached = 0

    def run_sweep(self, label: str, base: dict[str, Any], params: dict[str, list[Any]], seeds: int,
                  source: str = "<report>",
                  variants: list[tuple[dict[str, Any], dict[str, Any]]] | None = None) -> list[dict[str, Any]]:
        res = sweep(base, params, range(1, seeds + 1), source=source, jobs=self.jobs, executor=self.executor,
                    cache_dir=self.cache, progress=self.progress, label=label, variants=variants)
        self.runs_executed += res.executed
        self.runs_cached += res.cached
        write_outputs(res.records, self.data / f"{label}.jsonl")
        bad = [r for r in res.records if r.get("status") != "ok"]
        for r in bad[:3]:
            print(f"report: {label}: {r.get('status')} {str(r.get('error', ''))[-300:]}", file=sys.stderr)
        return res.records


# ---------------------------------------------------------------------------- the experiments


def measure_micro(data: Path, max_time: float) -> list[dict[str, Any]]:
    """The microbenchmark rows (`benchmarks/micro.py`), one per operation."""
    # In a subprocess of its own: pytest-benchmark inside another pytest session (the tests, under xdist)
    # would not record anything.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "PYTHONHASHSEED"))}
    target = data / "micro.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "micro.py"), "--json", str(target),
                           "--max-time", str(max_time)], cwd=ROOT, env=env, capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmarks/micro.py failed: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    print(proc.stdout.strip().splitlines()[-7:] and "\n".join(proc.stdout.strip().splitlines()[-7:]),
          file=sys.stderr)
    rows: list[dict[str, Any]] = json.loads(target.read_text())["rows"]
    return rows


@dataclass
class ScalingResult:
    """Per cluster size n: finality percentiles (simulated ms), messages and bytes per request."""

    n: list[int]
    seeds: list[int]
    p50: list[float]
    p99: list[float]
    mpr: list[float]
    bpr: list[float]
    wall_s: list[float]
    msg_fit: tuple[float, float]  # messages per request ≈ a·n^k
    bytes_fit: tuple[float, float] | None  # bytes per request ≈ a·n^k (None with a single n)


def measure_scaling(lab: Lab, p: Plan) -> ScalingResult:
    recs = ok_records(lab.run_sweep("scaling", base_scenario("scaling", 4, p.scaling_requests),
                                    {"n": p.scaling_n}, p.scaling_seeds))
    groups = by(recs, lambda r: r["n"])
    ns = list(groups)
    p50 = [med([r["latency_p50_ms"] for r in groups[n]]) for n in ns]
    p99 = [med([r["latency_p99_ms"] for r in groups[n]]) for n in ns]
    mpr = [med([r["messages_per_request"] for r in groups[n]]) for n in ns]
    bpr = [med([r["bytes_per_request"] for r in groups[n]]) for n in ns]
    return ScalingResult(ns, [len(groups[n]) for n in ns], p50, p99, mpr, bpr,
                         [med([r["wall_s"] for r in groups[n]]) for n in ns],
                         fit_power(ns, mpr) if len(ns) > 1 else (0.0, float("nan")),
                         fit_power(ns, bpr) if len(ns) > 1 else None)


@dataclass
class WanResult:
    """Finality (simulated ms) against the link latency, and against the number of WAN regions."""

    latencies: list[float]
    p50: list[float]
    p99: list[float]
    regions: list[int]
    regions_p50: list[float]
    regions_p99: list[float]


def measure_wan(lab: Lab, p: Plan) -> WanResult:
    recs = ok_records(lab.run_sweep("latency", base_scenario("latency", 7), {"latency": p.latencies},
                                    p.wan_seeds))
    groups = by(recs, lambda r: r["params"]["latency"])
    xs = list(groups)
    p50 = [med([r["latency_p50_ms"] for r in groups[x]]) for x in xs]
    p99 = [med([r["latency_p99_ms"] for r in groups[x]]) for x in xs]
    recs_r = ok_records(lab.run_sweep("regions", base_scenario("regions", 7), {"regions": p.regions,
                                                                            "sigma": [0.15]}, p.wan_seeds))
    groups_r = by(recs_r, lambda r: r["params"]["regions"])
    xr = list(groups_r)
    r50 = [med([r["latency_p50_ms"] for r in groups_r[x]]) for x in xr]
    r99 = [med([r["latency_p99_ms"] for r in groups_r[x]]) for x in xr]
    return WanResult(xs, p50, p99, xr, r50, r99)


@dataclass
class BatchResult:
    """Per batch size: ordering throughput (requests per simulated s), finality p50, messages/request."""

    batch: list[int]
    tput: list[float]
    latency_p50: list[float]
    mpr: list[float]


def measure_batch(lab: Lab, p: Plan) -> BatchResult:
    base = base_scenario("batch", 7, p.batch_requests)
    base["workload"]["clients"] = 200
    recs = ok_records(lab.run_sweep("batch", base, {"batch": p.batches}, p.batch_seeds))
    groups = by(recs, lambda r: r["batch"])
    xs = list(groups)
    tput = [med([r["throughput_rps"] for r in groups[x]]) for x in xs]
    mpr = [med([r["messages_per_request"] for r in groups[x]]) for x in xs]
    lat = [med([r["latency_p50_ms"] for r in groups[x]]) for x in xs]
    return BatchResult(xs, tput, lat, mpr)


@dataclass
class RecoveryResult:
    """Time to the next completed request after each event, per event kind (simulated s)."""

    times: dict[str, list[float]]
    #: (event label, scenario file, runs, recovery times, runs whose expectation was met)
    detail: list[tuple[str, str, int, list[float], int]]


def measure_recovery(lab: Lab, p: Plan) -> RecoveryResult:
    out: dict[str, list[float]] = {}
    detail = []
    for fname, label in (("primary-crash.yaml", "after a primary crash"),
                         ("partition-heal.yaml", "after a partition heals")):
        path = ROOT / "scenarios" / fname
        extra = {"requests": [p.extra["recovery_requests"]]} if "recovery_requests" in p.extra else {}
        recs = ok_records(lab.run_sweep(f"recovery-{path.stem}", load_scenario_dict(path), extra,
                                        p.recovery_seeds, source=str(path)))
        vals = []
        for r in recs:
            kind = "crash" if "crash" in fname else "partition heal"
            evs = [e for e in r["recovery"] if e["event"].startswith(kind)]
            if evs and evs[0]["recovery_s"] is not None:
                vals.append(evs[0]["recovery_s"])
        out[label] = vals
        detail.append((label, fname, len(recs), vals, sum(r["expectation_met"] for r in recs)))
    return RecoveryResult(out, detail)


@dataclass
class AdversaryRow:
    """One adversary or scenario file over its seeds."""

    name: str
    expect: str  # "hold" or "violation"
    runs: int
    judged: int  # runs that completed (the others are errors)
    safe: int
    app_ok: int
    failed_app: list[str]
    live: int
    met: int
    errors: int


def measure_adversaries(lab: Lab, p: Plan) -> list[AdversaryRow]:
    from sim.scenario import BEHAVIOURS

    results = []
    for b in [b for b in BEHAVIOURS if b != "twins"]:
        seeds = p.behaviour_seeds
        recs = lab.run_sweep(f"adversary-{b}", behaviour_scenario(b, p.extra.get("behaviour_requests", 150)), {},
                             seeds)
        results.append((f"{b} (generated: n = 7, replicas 0 and 4)", "hold", recs))
    for fname in p.scenario_files:
        path = ROOT / "scenarios" / fname
        try:
            base = load_scenario_dict(path)
        except Exception as exc:  # a scenario being edited by someone else: report, do not stop
            print(f"report: skipping {fname}: {exc}", file=sys.stderr)
            continue
        recs = lab.run_sweep(f"scenario-{path.stem}", base, {}, p.adversary_seeds, source=str(path))
        results.append((f"`{fname}`", base.get("expect", {}).get("safety", "hold"), recs))
    rows = []
    for name, expect, recs in results:
        ok = ok_records(recs)
        safe = sum(all(r["checks"].get(c, True) for c in CONSENSUS_SAFETY) for r in ok)
        app_ok = sum(all(v for c, v in r["checks"].items() if c not in CONSENSUS_SAFETY and c != "liveness")
                     for r in ok)
        failed_app = sorted({c for r in ok for c, v in r["checks"].items()
                             if not v and c not in CONSENSUS_SAFETY and c != "liveness"})
        live = sum(r["liveness_ok"] for r in ok)
        met = sum(r["expectation_met"] for r in ok)
        rows.append(AdversaryRow(name, expect, len(recs), len(ok), safe, app_ok, failed_app, live, met,
                                 len(recs) - len(ok)))
    return rows


@dataclass
class ScaleResult:
    """Simulator cost per point (`sim.scale.measure` rows) and the a·n^k fits per signature kind."""

    rows: list[dict[str, Any]]
    fits: dict[str, dict[str, Any]]
    reused: bool  # the rows come from an earlier run's data/scale.json (--reuse-scale)


def measure_scale(data: Path, p: Plan, reuse: bool) -> ScaleResult:
    from sim import scale

    points = [(n, p.scale_requests, sig) for sig in ("real", "modelled") for n in p.scale_n]
    saved = data / "scale.json"
    reused = False
    if reuse and saved.exists():
        rows = json.loads(saved.read_text())
        reused = {(r["n"], r["requests"], r["signatures"]) for r in rows if not r.get("direct")} == set(points)
    if not reused:
        rows = scale.measure(points)
        if p.scale_direct:
            rows.append({**scale.measure([(p.scale_direct[0], p.scale_direct[1], "real")])[0], "direct": True})
        saved.write_text(json.dumps(rows, indent=2) + "\n")
    else:
        print("report: scale: reusing data/scale.json (--reuse-scale)", file=sys.stderr)
    fits = {sig: scale.fit_largest_n([r for r in rows if r["signatures"] == sig and not r.get("direct")])
            for sig in ("real", "modelled")}
    return ScaleResult(rows, fits, reused)


@dataclass
class ObserverScaleResult:
    """`sim.scale.measure_observers` rows: validators plus observers, by total node count."""

    rows: list[dict[str, Any]]
    reused: bool


def measure_observer_scale(data: Path, p: Plan, reuse: bool) -> ObserverScaleResult:
    from sim import scale

    nodes = p.extra.get("observer_nodes", [100, 1000] if p.quick else [100, 1000, 10_000])
    saved = data / "observer_scale.json"
    if reuse and saved.exists():
        rows = json.loads(saved.read_text())
        if [r["nodes"] for r in rows] == nodes:
            print("report: scale: reusing data/observer_scale.json (--reuse-scale)", file=sys.stderr)
            return ObserverScaleResult(rows, True)
    rows = scale.measure_observers(nodes)
    saved.write_text(json.dumps(rows, indent=2) + "\n")
    return ObserverScaleResult(rows, False)


@dataclass
class LoopbackResult:
    """`benchmarks/node_bench.py --json` output, or why it failed."""

    data: dict[str, Any] | None
    returncode: int
    stderr: str


def measure_loopback(out: Path) -> LoopbackResult:
    """A real 5-validator cluster of reference nodes on 127.0.0.1 (benchmarks/node_bench.py)."""
    script = ROOT / "benchmarks" / "node_bench.py"
    proc = subprocess.run([sys.executable, str(script), "--json", "--certs", "100", "--sequential", "20",
                           "--concurrency", "20", "--dns-queries", "500"],
                          capture_output=True, text=True, timeout=1800, check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return LoopbackResult(None, proc.returncode, proc.stderr)
    d: dict[str, Any] = json.loads(proc.stdout)
    (out / "data").mkdir(parents=True, exist_ok=True)
    (out / "data" / "loopback.json").write_text(json.dumps(d, indent=2) + "\n")
    return LoopbackResult(d, proc.returncode, proc.stderr)
