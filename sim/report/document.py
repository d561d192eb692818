
"""`python -m sim report`: measure the current commit and write reports/README.md plus plots.

    python -m sim report [--out reports/] [--quick] [--jobs N] [--cache DIR] [--executor dask://HOST:PORT]
                         [--sections NAME ...]

Everything is measured in this run (simulations through `sim.sweep`, cached by scenario content, seed
and code version; microbenchmarks through `benchmarks/micro.py`; simulator scale through
`sim.scale`). `--quick` is a small grid for tests (well under two minutes); the full report is sized
to finish in well under an hour on two cores. The experiments themselves are in `sim.experiments`;
this module renders their results as Markdown and plots and checks them against the claims.

Times in the simulator are *simulated* (virtual) time: "finality" is the latency a client observes
from submitting a request to holding f+1 matching replies, in simulated time. The simulator charges no
CPU time for signing, verifying or executing except in the capacity section, whose runs have a CPU
model (sim/cpu.py) with costs calibrated in this run. Wall-clock figures (microbenchmarks, simulator
speed) are labelled as such.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sim.experiments import (
    Lab,
    Plan,
    machine,
    make_plan,
    measure_adversaries,
    measure_batch,
    measure_loopback,
    measure_micro,
    measure_observer_scale,
    measure_recovery,
    measure_scale,
    measure_scaling,
    measure_wan,
)
from sim.observer_reads import render_observer_reads
from sim.report.base import Plots
from sim.report.capacity_section import CapacitySection
from sim.report.claims import ClaimsTable
from sim.report.scale_sections import ScaleSections
from sim.report.sim_sections import SimSections
from sim.sweep import default_cache_dir

__all__ = ["SECTIONS", "Report", "cmd_report", "generate", "register"]

SECTIONS = ("micro", "scaling", "wan", "batch", "capacity", "recovery", "adversaries", "scale", "loopback")


class Report(SimSections, ScaleSections, CapacitySection, ClaimsTable):
    """Runs each section's experiment (`sim.experiments`) and renders it; `write` assembles the document."""

    def __init__(self, out: Path, plan: Plan, jobs: int | None, cache: Path, executor: str | None,
                 progress: bool = True) -> None:
        self.out, self.plan = out, plan
        self.lab = Lab(out / "data", jobs, cache, executor, progress)
        self.data = self.lab.data
        self.plots = Plots(out)
        self.md = []
        self.claims = {}
        self.timings = {}
        self.reuse_scale = False
        # results of the sections that ran (the claims table uses whichever are there)
        self.micro_rows = {}
        self.scaling_result = None
        self.wan_result = None
        self.batch_result = None
        self.adversary_rows = []
        self.scale_fits = {}
        self.observer_rows = []
        self.loopback_data = None
        self.capacity_result = None
        self.fixed_costs = False  # the capacity section: FIXED_COSTS instead of calibrating in this run
        self.costs_file: Path | None = None  # ...or a cost table saved earlier (data/capacity_costs.json)

    # -------------------------------------------------------------- plumbing

    def timed(self, name: str, fn: Callable[[], None]) -> None:
        t0 = time.perf_counter()
        fn()
        self.timings[name] = time.perf_counter() - t0
        print(f"report: {name} done in {self.timings[name]:.0f} s wall", file=sys.stderr)

    # -------------------------------------------------------------- sections: measure, then render

    def micro(self) -> None:
        rows = measure_micro(self.data, self.plan.micro_max_time)
        self.micro_rows = {r["operation"]: r for r in rows}
        self.md += self.render_micro(rows)

    def scaling(self) -> None:
        self.scaling_result = measure_scaling(self.lab, self.plan)
        self.md += self.render_scaling(self.scaling_result)

    def wan(self) -> None:
        self.wan_result = measure_wan(self.lab, self.plan)
        self.md += self.render_wan(self.wan_result)

    def batch(self) -> None:
        self.batch_result = measure_batch(self.lab, self.plan)
        self.md += self.render_batch(self.batch_result)

    def capacity(self) -> None:
        from sim.calibrate import calibrate
        from sim.capacity import measure_capacity
        from sim.cpu import FIXED_COSTS, CostTable

        if self.costs_file is not None:
            costs = CostTable(**json.loads(self.costs_file.read_text()))
            source = f"from `{self.costs_file.name}`, calibrated earlier by `python -m sim calibrate --json`"
        elif self.fixed_costs:
            costs, source = FIXED_COSTS, "the fixed table (`sim/cpu.py` FIXED_COSTS)"
        else:
            costs = calibrate(50 if self.plan.quick else 400)
            source = ("calibrated in this run (`sim/calibrate.py`: process CPU time of the real library calls, "
                      "medians)")
        (self.data / "capacity_costs.json").write_text(json.dumps(costs.as_dict(), indent=2) + "\n")
        self.capacity_result = measure_capacity(self.lab, self.plan.quick, costs, source)
        self.md += self.render_capacity(self.capacity_result)

    def recovery(self) -> None:
        self.md += self.render_recovery(measure_recovery(self.lab, self.plan))

    def adversaries(self) -> None:
        self.adversary_rows = measure_adversaries(self.lab, self.plan)
        self.md += self.render_adversaries(self.adversary_rows)

    def scale(self) -> None:
        result = measure_scale(self.data, self.plan, self.reuse_scale)
        self.scale_fits = result.fits
        self.md += self.render_scale(result)
        observers = measure_observer_scale(self.data, self.plan, self.reuse_scale)
        self.observer_rows = observers.rows
        self.md += self.render_observer_scale(observers)
        self.md += render_observer_reads(observers.rows)

    def loopback(self) -> None:
        result = measure_loopback(self.out)
        self.loopback_data = result.data
        self.md += self.render_loopback(result)


    def write(self, started: float, info: dict[str, str]) -> Path:
        runtime = time.perf_counter() - started
        head = [
            "# TrustChain performance and verification report", "",
            f"Generated by `python -m sim report{' --quick' if self.plan.quick else ''}` — "
            f"**{'QUICK grid (for tests; too small to quote)' if self.plan.quick else 'full grid'}**.", "",
            f"- date: {info['date']}",
            f"- machine: {info['nproc']} cores (`nproc`), {info['cpu']}, Python {info['python']}, {info['platform']}",
            f"- commit: `{info['commit']}` (working tree dirty: {info['dirty']}; simulated-code hash "
            f"`{info['code_version']}`)",
            *([f"- **pinned simulated code:** `TRUSTCHAIN_SIM_CODE_VERSION={info['code_version']}`: the "
               "simulation results were reused from the cache of an earlier run of this report (same machine, "
               "same day) on the code with that hash, which predates the commit above; microbenchmarks and "
               "simulator-scale figures were measured in this run"] if os.environ.get("TRUSTCHAIN_SIM_CODE_VERSION")
              else []),
            f"- runtime: {runtime / 60:.1f} min wall ({self.lab.runs_executed} simulations run now, "
            f"{self.lab.runs_cached} "
            f"reused from the cache of identical code + scenario + seed); load average at start {info['load']}",
            "- **noise:** the machine is shared (see the load average above), so wall-clock figures "
            "(microbenchmarks, simulator speed, the loopback cluster) are noisy; prefer the ratios against baselines "
            "measured in the same run, and CPU time where given.",
            "- **time bases:** *simulated* time is the simulator's virtual clock (finality, recovery, throughput; the "
            "simulator charges no CPU for cryptography or execution); *wall* time is real time on this machine.", "",
            "Section timings (wall s): " + ", ".join(f"{k} {v:.0f}" for k, v in self.timings.items()) + ".", "",
            "Raw per-run records are in `data/` (JSON lines and CSV, one row per simulation); regenerate with "
            "`python -m sim report` (cached runs are reused when code and scenario are unchanged).", ""]
        text = "\n".join(head + self.claims_table() + self.md) + "\n"
        path = self.out / "README.md"
        path.write_text(text)
        return path



def generate(out: Path, quick: bool = False, jobs: int | None = None, cache: Path | None = None,
             executor: str | None = None, progress: bool = True, sections: list[str] | None = None,
             reuse_scale: bool = False, loopback: bool = True, fixed_costs: bool = False,
             costs_file: Path | None = None) -> Path:
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    info = machine()
    rep = Report(out, make_plan(quick), jobs, cache or default_cache_dir(), executor, progress)
    rep.reuse_scale, rep.fixed_costs, rep.costs_file = reuse_scale, fixed_costs, costs_file
    order = [("micro", rep.micro), ("scaling", rep.scaling), ("wan", rep.wan), ("batch", rep.batch),
             ("capacity", rep.capacity), ("recovery", rep.recovery), ("adversaries", rep.adversaries),
             ("scale", rep.scale)]
    if not quick and loopback:
        order.append(("loopback", rep.loopback))
    for name, fn in order:
        if sections is None or name in sections:
            rep.timed(name, fn)
    return rep.write(started, info)


def _costs_problem(path: Path) -> str | None:
    """What is wrong with a --costs file, or None: a JSON object giving every operation of the cost table
    a finite number of microseconds >= 0."""
    from sim.cpu import COST_NAMES

    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return f"cannot read it as JSON: {exc}"
    if not isinstance(table, dict) or set(table) != set(COST_NAMES):
        return f"expected a JSON object with exactly the operations {', '.join(COST_NAMES)}"
    bad = [k for k, v in table.items() if type(v) not in (int, float) or not 0 <= v < float("inf")]
    return f"{bad[0]}: expected a finite number of microseconds >= 0" if bad else None


def cmd_report(args: argparse.Namespace) -> int:
    if args.costs and (problem := _costs_problem(Path(args.costs))) is not None:
        print(f"python -m sim report: --costs {args.costs}: {problem}", file=sys.stderr)
        return 2
    path = generate(Path(args.out), quick=args.quick, jobs=args.jobs, cache=Path(args.cache) if args.cache else None,
                    executor=args.executor, progress=not args.quiet, reuse_scale=args.reuse_scale,
                    loopback=not args.no_loopback, sections=args.sections, fixed_costs=args.fixed_costs,
                    costs_file=Path(args.costs) if args.costs else None)
    print(f"wrote {path}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("report", help="measure this commit: reports/README.md with plots and a claims table",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="reports", help="output directory (default reports/)")
    p.add_argument("--quick", action="store_true", help="a small grid (tests): under two minutes")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")
    p.add_argument("--cache", help=f"run cache (default {default_cache_dir()})")
    p.add_argument("--executor", help="dask://HOST:PORT for the simulation sweeps")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--reuse-scale", action="store_true",
                   help="reuse OUT/data/scale.json from an earlier run of the same plan (the README says so)")
    p.add_argument("--no-loopback", action="store_true",
                   help="skip the 5-node loopback cluster benchmark (benchmarks/node_bench.py)")
    p.add_argument("--sections", nargs="+", choices=SECTIONS, metavar="NAME",
                   help=f"only these sections ({', '.join(SECTIONS)}); the claims table uses what ran")
    p.add_argument("--fixed-costs", action="store_true",
                   help="capacity section: the fixed CPU cost table (sim/cpu.py) instead of calibrating now")
    p.add_argument("--costs", metavar="FILE",
                   help="capacity section: this cost table (JSON, as `python -m sim calibrate --json` prints or an "
                        "earlier report saved in data/capacity_costs.json) instead of calibrating now")
    p.set_defaults(func=cmd_report)
