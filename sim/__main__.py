"""`python -m sim`: run scenarios, check determinism, benchmark the simulator."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

from sim.scenario import ScenarioError, load

EXIT_OK, EXIT_CHECK_FAILED, EXIT_INVALID = 0, 1, 2

#: Further subcommands, each a module of `sim` with `register(subparsers)` (run/digest/bench are here).
COMMAND_MODULES: tuple[str, ...] = ("explore", "mutants_cli", "sweep", "report", "scale", "calibrate")


def _replay_command(args: argparse.Namespace, seed: int) -> str:
    cmd = f"python -m sim run {args.scenario} --seed {seed}"
    if getattr(args, "mutant", None):
        cmd += f" --mutant {args.mutant}"
    return cmd


def _run_reconfiguration(args: argparse.Namespace) -> int:
    from sim.reconfig.run import format_result, run_reconfiguration
    from sim.reconfig.scenario import ReconfigScenarioError, load_reconfiguration

    try:
        scenario = load_reconfiguration(args.scenario)
    except ReconfigScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if getattr(args, "out", None) or args.mutant:
        print("--out and --mutant apply to consensus scenarios, not to kind: reconfiguration", file=sys.stderr)
        return EXIT_INVALID
    result = run_reconfiguration(scenario, args.seed)
    if args.command == "digest":
        print(result.digest)
        return EXIT_OK
    if args.json:
        print(json.dumps({"scenario": scenario.name, "seed": result.seed, "ok": result.ok, "digest": result.digest,
                          "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in result.checks]},
                         indent=2, sort_keys=True))
    else:
        print(format_result(result))
    code = EXIT_OK if result.ok else EXIT_CHECK_FAILED
    if args.check_determinism and not _same_digest_elsewhere(args.scenario, result.seed, result.digest, None):
        code = EXIT_CHECK_FAILED
    return code


def _same_digest_elsewhere(scenario: str, seed: int, digest: str, mutant: str | None) -> bool:
    """Rerun `sim digest` in two more processes (PYTHONHASHSEED 1 and 2) and print whether all three
    trace digests agree."""
    digests = [digest]
    for hashseed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-m", "sim", "digest", scenario, "--seed", str(seed)]
            + (["--mutant", mutant] if mutant else []),
            capture_output=True, text=True, env=dict(os.environ, PYTHONHASHSEED=hashseed), check=False,
        )
        digests.append(proc.stdout.strip() or f"error: {proc.stderr.strip()[-200:]}")
    same = len(set(digests)) == 1
    print(f"  determinism: {'identical' if same else 'DIFFERENT'} trace digests across 3 processes "
          f"(PYTHONHASHSEED unset, 1, 2): {', '.join(d[:16] for d in digests)}")
    return same


def cmd_run(args: argparse.Namespace) -> int:
    from sim.reconfig.scenario import is_reconfiguration
    from sim.runner import format_summary, run

    if is_reconfiguration(args.scenario):
        return _run_reconfiguration(args)

    try:
        scenario = load(args.scenario)
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    seed = scenario.seed if args.seed is None else args.seed
    result = run(scenario, seed, Path(args.out) if args.out else None, mutant=args.mutant)
    if args.json:
        print(json.dumps(result.summary, indent=2, sort_keys=True))
    else:
        print(format_summary(result, _replay_command(args, seed)))
    code = result.exit_code
    if args.check_determinism and not _same_digest_elsewhere(args.scenario, seed, result.trace_digest, args.mutant):
        code = EXIT_CHECK_FAILED
    return code


def cmd_digest(args: argparse.Namespace) -> int:
    from sim.reconfig.scenario import is_reconfiguration

    if is_reconfiguration(args.scenario):
        return _run_reconfiguration(args)
    """Print only the trace digest (used by --check-determinism in a separate process)."""
    from sim.runner import run

    try:
        scenario = load(args.scenario)
    except ScenarioError as exc:
        print(f"invalid scenario: {exc}", file=sys.stderr)
        return EXIT_INVALID
    print(run(scenario, args.seed, mutant=args.mutant).trace_digest)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from sim.bench import main as bench_main

    return bench_main(args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sim", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run one scenario and check it")
    p.add_argument("scenario", help="path to a scenario YAML file")
    p.add_argument("--seed", type=int, help="override the scenario's seed")
    p.add_argument("--out", help="directory for summary.json and trace.jsonl")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--check-determinism", action="store_true",
                   help="re-run twice in separate processes with other PYTHONHASHSEEDs and compare digests")
    p.add_argument("--mutant", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("digest", help="print the trace digest of a run")
    p.add_argument("scenario")
    p.add_argument("--seed", type=int)
    p.add_argument("--mutant", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_digest)

    p = sub.add_parser("bench", help="simulator speed: protocol messages per wall-clock second")
    p.add_argument("--n", type=int, nargs="*", default=[4, 10, 16])
    p.add_argument("--requests", type=int, default=500)
    p.set_defaults(func=cmd_bench)

    for name in COMMAND_MODULES:
        importlib.import_module(f"sim.{name}").register(sub)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
