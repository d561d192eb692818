"""`python -m sim sweep`: a grid of simulations, in parallel, resumable.

    python -m sim sweep SCENARIO --param n=4,7,10 --param batch=1,10,100 --seeds 20 \\
        [--jobs N] [--executor dask://HOST:PORT] [--cache DIR] [--out FILE.jsonl] [--scale-clients]

Every grid point (the scenario with the parameters applied) is run once per seed. Each run's result
is cached as JSON under the cache directory, keyed by a hash of the effective scenario content, the
seed and the code version (a hash of every `.py` file under `trustchain/` and `sim/`), so an
interrupted sweep resumes where it stopped and a repeated one runs nothing. Results are written as
JSON lines (one per run) and as CSV beside them.

Parameters (`--param NAME=V1,V2,...`; unknown names are rejected):

- `n` -> cluster.n (f = (n-1)//3 follows; node ids in faults, partitions and Byzantine lists must
  stay < n, else the point is reported "invalid")
- `batch` -> cluster.batch_size; `batch_delay` -> cluster.batch_delay_ms
- `checkpoint` -> cluster.checkpoint_interval (watermark_window is raised to 2K if it would fall below K)
- `window` -> cluster.watermark_window; `vc_timeout` -> cluster.view_change_timeout_ms
- `latency` -> network.latency.median_ms (lognormal); a constant model gets `ms`, uniform gets
  [v/2, 3v/2]; rejected for `wan`
- `sigma` -> network.latency.sigma
- `regions` -> network.latency.regions: an integer k, the first k WAN regions; the model becomes `wan`
- `loss` -> network.loss; `jitter` -> network.jitter_ms
- `clients` -> workload.clients; `requests` -> workload.requests; `rate` -> workload.rate_per_s;
  `mode` -> workload.mode (closed/open/poisson)
- `cores` -> cpu.cores; `profile` -> cpu.profile (kv/certificate): charge CPU per node (sim/cpu.py)
- `duration` -> duration_s
- `signatures` -> cluster.signatures: `real`/`ed25519`, `modelled` (HMAC cost model, sim/scale.py) or
  `fn-dsa-1024`

Derived fields change only when asked: `--scale-clients` multiplies `workload.clients` by n / (the
scenario's n), so that offered load per replica stays constant.
"""

from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import itertools
import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from trustchain.errors import TrustChainError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_VERSION = 2  # bump when the record layout changes


class SweepError(TrustChainError, ValueError):
    pass


# ---------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class Param:
    path: tuple[str, ...]
    kind: type
    help: str
    choices: tuple[str, ...] = ()


PARAMS: dict[str, Param] = {
    "n": Param(("cluster", "n"), int, "replicas"),
    "batch": Param(("cluster", "batch_size"), int, "maximum requests per pre-prepare"),
    "batch_delay": Param(("cluster", "batch_delay_ms"), float, "primary's batch fill delay (ms)"),
    "checkpoint": Param(("cluster", "checkpoint_interval"), int, "checkpoint interval K"),
    "window": Param(("cluster", "watermark_window"), int, "watermark window L"),
    "vc_timeout": Param(("cluster", "view_change_timeout_ms"), float, "view-change timeout (ms)"),
    "latency": Param(("network", "latency", "median_ms"), float, "median one-way latency (ms)"),
    "sigma": Param(("network", "latency", "sigma"), float, "lognormal spread"),
    "regions": Param(("network", "latency", "regions"), int, "number of WAN regions (model becomes wan)"),
    "loss": Param(("network", "loss"), float, "message loss probability"),
    "jitter": Param(("network", "jitter_ms"), float, "uniform extra delay (ms)"),
    "clients": Param(("workload", "clients"), int, "clients"),
    "requests": Param(("workload", "requests"), int, "total requests"),
    "rate": Param(("workload", "rate_per_s"), float, "open-loop arrival rate (requests/s)"),
    "mode": Param(("workload", "mode"), str, "workload mode", ("closed", "open", "poisson")),
    "cores": Param(("cpu", "cores"), int, "cores per validator (adds a CPU model, sim/cpu.py)"),
    "profile": Param(("cpu", "profile"), str, "application CPU work per request", ("kv", "certificate")),
    "duration": Param(("duration_s",), float, "simulated-time limit (s)"),
    "signatures": Param(("cluster", "signatures"), str, "replica signature scheme",
                        ("real", "ed25519", "modelled", "fn-dsa-1024")),
}


def _convert(name: str, raw: str) -> Any:
    spec = PARAMS[name]
    try:
        value = spec.kind(raw)
    except ValueError:
        raise SweepError(f"--param {name}: {raw!r} is not a valid {spec.kind.__name__}") from None
    if spec.choices and value not in spec.choices:
        raise SweepError(f"--param {name}: {raw!r} is not one of {', '.join(spec.choices)}")
    return value


def parse_params(items: Iterable[str]) -> dict[str, list[Any]]:
    """`["n=4,7", "batch=1,10"]` -> {"n": [4, 7], "batch": [1, 10]}; unknown names are named."""
    out: dict[str, list[Any]] = {}
    unknown = []
    for item in items:
        if "=" not in item:
            raise SweepError(f"--param {item!r}: expected NAME=V1,V2,...")
        name, _, values = item.partition("=")
        name = name.strip()
        if name not in PARAMS:
            unknown.append(name)
            continue
        out[name] = [_convert(name, v.strip()) for v in values.split(",") if v.strip()]
        if not out[name]:
            raise SweepError(f"--param {name}: no values")
    if unknown:
        raise SweepError(f"unknown parameter(s): {', '.join(unknown)}; known: {', '.join(PARAMS)}")
    return out


def grid(params: dict[str, list[Any]]) -> list[dict[str, Any]]:
    points: list[dict[str, Any]] = [{}]
    for name, values in params.items():
        points = [{**p, name: v} for p in points for v in values]
    return points


def apply_params(base: dict[str, Any], point: dict[str, Any], scale_clients: bool = False) -> dict[str, Any]:
    """The scenario dict with one grid point's parameters applied (the input is not modified)."""
    d = copy.deepcopy(base)
    base_n = base.get("cluster", {}).get("n")
    for name, value in point.items():
        spec = PARAMS[name]
        if name == "signatures" and value == "real":
            value = "ed25519"
        if name == "latency":
            lat = d.setdefault("network", {}).setdefault("latency", {})
            model = lat.get("model", "constant")
            if model == "wan":
                raise SweepError("--param latency does not apply to the wan model (use sigma or regions)")
            if model == "constant":
                lat["ms"] = value
            elif model == "uniform":
                lat["low_ms"], lat["high_ms"] = value / 2, value * 1.5
            else:
                lat["median_ms"] = value
            continue
        if name == "regions":
            from sim.scenario import WAN_REGIONS

            if not 1 <= value <= len(WAN_REGIONS):
                raise SweepError(f"--param regions: {value} not in 1..{len(WAN_REGIONS)}")
            lat = d.setdefault("network", {}).setdefault("latency", {})
            lat["model"] = "wan"
            lat["regions"] = list(WAN_REGIONS[:value])
            continue
        node = d
        for key in spec.path[:-1]:
            node = node.setdefault(key, {})
        node[spec.path[-1]] = value
        if name == "checkpoint":
            cl = d["cluster"]
            if cl.get("watermark_window", 32) < value:
                cl["watermark_window"] = 2 * value
    if scale_clients and "n" in point and base_n:
        w = d.setdefault("workload", {})
        w["clients"] = max(1, round(w.get("clients", 4) * point["n"] / base_n))
    return d


# ---------------------------------------------------------------------------- cache keys

_CODE_VERSION: str | None = None


#: Measurement tooling (files, or packages such as sim/report) that does not change what a simulation
#: computes (the record layout is versioned by SCHEMA_VERSION instead), so editing it does not invalidate
#: the cache.
NOT_SIMULATED = frozenset({"sim/sweep.py", "sim/report", "sim/experiments.py", "sim/scale.py", "sim/bench.py",
                           "sim/capacity.py",
                           "sim/__main__.py", "sim/explore.py", "sim/mutants.py"})


def code_version() -> str:
    """A hash of every Python source file the simulation runs (`trustchain/`, `sim/`, minus NOT_SIMULATED)."""
    global _CODE_VERSION
    if _CODE_VERSION is None and os.environ.get("TRUSTCHAIN_SIM_CODE_VERSION"):
        # Reuse cached results of an earlier code version on purpose (the report says so when pinned).
        _CODE_VERSION = os.environ["TRUSTCHAIN_SIM_CODE_VERSION"]
    if _CODE_VERSION is None:
        h = hashlib.sha256()
        for pkg in ("trustchain", "sim"):
            for path in sorted((ROOT / pkg).rglob("*.py")):
                rel = path.relative_to(ROOT)
                if str(rel) in NOT_SIMULATED or str(rel.parent) in NOT_SIMULATED:
                    continue
                h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
        _CODE_VERSION = h.hexdigest()[:16]
    return _CODE_VERSION


def point_key(scenario: dict[str, Any], seed: int, signatures: str) -> str:
    blob = json.dumps({"scenario": scenario, "seed": seed, "signatures": signatures, "code": code_version(),
                       "schema": SCHEMA_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "trustchain-sim"


# ---------------------------------------------------------------------------- one run (in a worker)


def _first_after(times: list[float], t: float) -> float | None:
    import bisect

    i = bisect.bisect_left(times, t)
    return times[i] if i < len(times) else None


def measure(result: Any) -> dict[str, Any]:
    """The per-run record: the runner's summary, flattened, plus derived metrics."""
    s = result.summary
    world = result.world
    sc = result.scenario
    done = sorted(r.completed_us / 1e6 for r in world.requests.values() if r.completed_us is not None)
    first_submit = min(((r.submitted_us if r.arrived_us is None else r.arrived_us) / 1e6
                        for r in world.requests.values()), default=0.0)
    completed = s["requests"]["completed"]
    span = (done[-1] - first_submit) if done else 0.0
    gaps = [b - a for a, b in itertools.pairwise(done)]
    recovery = []
    for t_us, node, what in world.fault_log:
        if what.startswith("crash"):
            t = t_us / 1e6
            nxt = _first_after(done, t)
            recovery.append({"event": f"crash {node}", "at_s": round(t, 6),
                             "recovery_s": None if nxt is None else round(nxt - t, 6)})
    for p in sc.network.partitions:
        nxt = _first_after(done, p.heal_s)
        recovery.append({"event": "partition heal" if p.groups else "one-way partition heal", "at_s": p.heal_s,
                         "recovery_s": None if nxt is None else round(nxt - p.heal_s, 6)})
    checks = {name: c["ok"] for name, c in s["checks"].items()}
    return {
        "scenario": s["scenario"], "seed": s["seed"], "n": sc.cluster.n, "f": sc.cluster.f,
        "batch": sc.cluster.batch_size, "latency_model": sc.network.latency.model,
        "byzantine": len(sc.byzantine),
        "submitted": s["requests"]["submitted"], "completed": completed,
        "latency_p50_ms": s["requests"]["latency_ms"]["p50"], "latency_p99_ms": s["requests"]["latency_ms"]["p99"],
        "latency_max_ms": s["requests"]["latency_ms"]["max"],
        "throughput_rps": round(completed / span, 3) if span > 0 else 0.0,
        "messages": s["messages"]["total"], "bytes": s["messages"]["bytes"],
        "messages_per_request": round(s["messages"]["total"] / completed, 3) if completed else None,
        "bytes_per_request": round(s["messages"]["bytes"] / completed, 1) if completed else None,
        "highest_seq": s["commits"]["highest_seq"], "view_changes": s["views"]["view_changes_entered"],
        "highest_view": s["views"]["highest"],
        "simulated_s": s["simulated_seconds"], "wall_s": s["wall_seconds"], "trace_events": s["trace"]["events"],
        "events_per_wall_s": round(s["trace"]["events"] / s["wall_seconds"]) if s["wall_seconds"] else 0,
        "max_stall_s": round(max(gaps, default=0.0), 6), "recovery": recovery,
        "requested": sc.workload.requests,
        "offered_rps": sc.workload.rate_per_s if sc.workload.mode != "closed" else None,
        "throughput_mid_rps": _interdecile_rate(done),
        **_cpu_fields(s.get("cpu"), completed),
        "checks": checks, "safety_ok": all(ok for name, ok in checks.items() if name != "liveness"),
        "liveness_ok": checks.get("liveness", False), "expect_safety": sc.expect.safety,
        "expectation_met": result.expectation_met, "trace_digest": result.trace_digest,
    }


def _interdecile_rate(done: list[float]) -> float | None:
    """Completions per simulated second between the 10th and the 90th percentile completion: the rate
    the system kept up while it was loaded, without the ramp-up at the start and the drain at the end."""
    if len(done) < 10:
        return None
    lo, hi = round(0.1 * (len(done) - 1)), round(0.9 * (len(done) - 1))
    return round((hi - lo) / (done[hi] - done[lo]), 3) if done[hi] > done[lo] else None


def _cpu_fields(cpu: dict[str, Any] | None, completed: int) -> dict[str, Any]:
    """With a CPU model (sim/cpu.py): cores, and the busiest validator's core time in all and per request."""
    if not cpu:
        return {"cores": None, "cpu_busy_s_max": None, "cpu_us_per_request": None}
    busy = max((v["busy_s"] for v in cpu["nodes"].values()), default=0.0)
    return {"cores": cpu["cores"], "cpu_busy_s_max": busy,
            "cpu_us_per_request": round(busy * 1e6 / completed, 1) if completed else None}


def run_point(task: dict[str, Any]) -> dict[str, Any]:
    """Runs one (scenario, seed). Top level so that process pools and dask can pickle it."""
    import resource

    from sim.runner import run
    from sim.scenario import ScenarioError, from_dict

    record: dict[str, Any] = {"key": task["key"], "params": task["params"], "seed": task["seed"],
                              "signatures": task["signatures"], "code": task["code"]}
    try:
        scenario = from_dict(task["scenario"], task["source"])
    except ScenarioError as exc:
        return {**record, "status": "invalid", "error": str(exc)}
    try:
        result = run(scenario, task["seed"])
        record.update(measure(result))
        record["status"] = "ok"
        record["worker_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    except Exception:  # a crash of the simulated code is a result to report, not a reason to stop the sweep
        return {**record, "status": "error", "error": traceback.format_exc()[-2000:]}
    return record


# ---------------------------------------------------------------------------- executors & progress


class Progress:
    """A dependency-free progress bar on stderr (one line, redrawn on a terminal; periodic lines otherwise)."""

    def __init__(self, total: int, label: str, cached: int = 0, enabled: bool = True) -> None:
        self.total, self.label, self.cached, self.done = total, label, cached, 0
        self.enabled = enabled and total > 0
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self.last_line = -1.0
        self.failed = 0

    def update(self, ok: bool = True) -> None:
        self.done += 1
        self.failed += 0 if ok else 1
        if not self.enabled:
            return
        elapsed = time.monotonic() - self.start
        if not self.tty and self.done < self.total and elapsed - self.last_line < 10:
            return
        self.last_line = elapsed
        frac = self.done / self.total
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0
        bar = "#" * int(frac * 30) + "." * (30 - int(frac * 30))
        msg = (f"{self.label} [{bar}] {self.done}/{self.total} runs ({self.cached} cached"
               f"{f', {self.failed} failed' if self.failed else ''}) {elapsed:5.0f}s wall, eta {eta:4.0f}s")
        if self.tty:
            print("\r" + msg, end="" if self.done < self.total else "\n", file=sys.stderr, flush=True)
        else:
            print(msg, file=sys.stderr, flush=True)


def _dask_client(address: str) -> Any:
    try:
        from dask.distributed import Client
    except ImportError:
        raise SweepError("--executor dask://... needs dask.distributed: pip install 'dask[distributed]'") from None
    return Client(address)  # type: ignore[no-untyped-call]  # dask.distributed is not annotated


def _execute(tasks: list[dict[str, Any]], jobs: int, executor: str | None) -> Iterator[dict[str, Any]]:
    if not tasks:
        return
    if executor:
        if not executor.startswith("dask://"):
            raise SweepError(f"--executor {executor!r}: expected dask://HOST:PORT")
        client = _dask_client("tcp://" + executor.removeprefix("dask://"))
        try:
            from dask.distributed import as_completed as dask_completed

            futures = client.map(run_point, tasks, pure=False)
            for fut in dask_completed(futures):  # type: ignore[no-untyped-call]
                yield fut.result()
        finally:
            client.close()
        return
    if jobs <= 1:
        for t in tasks:
            yield run_point(t)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futs: list[Future[dict[str, Any]]] = [pool.submit(run_point, t) for t in tasks]
        for fut in as_completed(futs):
            yield fut.result()


# ---------------------------------------------------------------------------- the sweep


@dataclass
class SweepResult:
    records: list[dict[str, Any]]
    executed: int
    cached: int


def load_scenario_dict(path: str | Path) -> dict[str, Any]:
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict):
        raise SweepError(f"{path}: not a scenario mapping")
    return data


def sweep(base: dict[str, Any], params: dict[str, list[Any]], seeds: Iterable[int], *, source: str = "<sweep>",
          jobs: int | None = None, executor: str | None = None, cache_dir: Path | None = None,
          scale_clients: bool = False, progress: bool = True, label: str = "sweep",
          on_record: Callable[[dict[str, Any]], None] | None = None,
          variants: list[tuple[dict[str, Any], dict[str, Any]]] | None = None) -> SweepResult:
    """Runs every grid point x seed not already in the cache; returns every record (cached or new) in grid
    order. `executed` counts runs actually carried out now (the rest came from the cache). `variants`,
    (point, scenario) pairs, replaces the grid when the points differ in more than a product of params."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    seeds = list(seeds)
    order: list[str] = []
    records: dict[str, dict[str, Any]] = {}
    tasks: list[dict[str, Any]] = []
    points = variants if variants is not None else [(p, apply_params(base, p, scale_clients)) for p in grid(params)]
    for point, scenario in points:
        scheme = scenario.get("cluster", {}).get("signatures", "ed25519")
        signatures = "real" if scheme == "ed25519" else scheme  # "real": the cache-key spelling of Ed25519
        for seed in seeds:
            key = point_key(scenario, seed, signatures)
            if key in records or key in (t["key"] for t in tasks):
                continue
            order.append(key)
            path = cache / f"{key}.json"
            if path.exists():
                try:
                    records[key] = json.loads(path.read_text())
                    continue
                except (OSError, json.JSONDecodeError):
                    pass
            tasks.append({"key": key, "scenario": scenario, "source": f"{source} {point}", "seed": seed,
                          "params": point, "signatures": signatures, "code": code_version()})
    bar = Progress(len(order), label, cached=len(records), enabled=progress)
    bar.done = len(records)
    jobs = jobs or os.cpu_count() or 1
    executed = 0
    for rec in _execute(tasks, min(jobs, len(tasks)) if tasks else 1, executor):
        executed += 1
        records[rec["key"]] = rec
        if rec.get("status") in ("ok", "invalid"):  # errors are not cached: they may be transient
            tmp = cache / f"{rec['key']}.json.tmp"
            tmp.write_text(json.dumps(rec, sort_keys=True))
            tmp.replace(cache / f"{rec['key']}.json")
        if on_record is not None:
            on_record(rec)
        bar.update(rec.get("status") == "ok")
    return SweepResult([records[k] for k in order], executed, len(order) - executed)


# ---------------------------------------------------------------------------- output

CSV_FIELDS = ["scenario", "params", "seed", "signatures", "status", "n", "f", "batch", "byzantine", "submitted",
              "completed", "latency_p50_ms", "latency_p99_ms", "latency_max_ms", "throughput_rps", "messages",
              "bytes", "messages_per_request", "bytes_per_request", "view_changes", "max_stall_s",
              "simulated_s", "wall_s", "events_per_wall_s", "safety_ok", "liveness_ok", "expectation_met",
              "trace_digest", "key", "code", "error"]


def write_outputs(records: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as fh:
        for rec in records:
            fh.write(json.dumps(rec, sort_keys=True) + "\n")
    csv_path = out.with_suffix(".csv")
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for rec in records:
            row = dict(rec)
            row["params"] = json.dumps(rec.get("params", {}), sort_keys=True)
            if "error" in row:
                row["error"] = str(row["error"]).strip().splitlines()[-1][:200]
            w.writerow(row)
    return out, csv_path


def cmd_sweep(args: argparse.Namespace) -> int:
    try:
        params = parse_params(args.param or [])
        base = load_scenario_dict(args.scenario)
        seeds = range(args.seed_start, args.seed_start + args.seeds)
        result = sweep(base, params, seeds, source=args.scenario, jobs=args.jobs, executor=args.executor,
                       cache_dir=Path(args.cache) if args.cache else None, scale_clients=args.scale_clients,
                       progress=not args.quiet, label=Path(args.scenario).stem)
    except SweepError as exc:
        print(f"sweep: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sweep: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path("reports/sweeps") / f"{Path(args.scenario).stem}.jsonl"
    jsonl, csv_path = write_outputs(result.records, out)
    statuses: dict[str, int] = {}
    for r in result.records:
        statuses[r.get("status", "?")] = statuses.get(r.get("status", "?"), 0) + 1
    met = sum(1 for r in result.records if r.get("expectation_met"))
    print(f"{len(result.records)} runs: {result.executed} executed, {result.cached} from cache; "
          + ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
          + f"; expectation met in {met}")
    print(f"wrote {jsonl} and {csv_path}")
    return 0 if met == len(result.records) else 1


def register(sub: Any) -> None:
    p = sub.add_parser("sweep", help="run a scenario over a parameter grid and many seeds, in parallel, cached",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", help="path to a scenario YAML file")
    p.add_argument("--param", action="append", metavar="NAME=V1,V2,...",
                   help=f"a grid axis; known: {', '.join(PARAMS)}")
    p.add_argument("--seeds", type=int, default=5, help="seeds per grid point (default 5)")
    p.add_argument("--seed-start", type=int, default=1)
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--executor", help="dask://HOST:PORT to submit to a dask.distributed scheduler")
    p.add_argument("--cache", help=f"cache directory (default {default_cache_dir()})")
    p.add_argument("--out", help="JSONL output (a CSV is written beside it); default reports/sweeps/NAME.jsonl")
    p.add_argument("--scale-clients", action="store_true", help="scale workload.clients with n")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
