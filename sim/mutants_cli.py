"""`python -m sim mutants`: list the injectable PBFT bugs, or check that exploration catches each.

Apart from `sim.mutants` because the check runs the explorer, which itself runs mutants."""

from __future__ import annotations

import argparse

from sim.mutants import MUTANTS

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("mutants", help="list the injectable PBFT bugs, or check that exploration catches them")
    p.add_argument("--check", action="store_true", help="explore schedules against every mutant")
    p.add_argument("--budget", type=int, default=40, help="schedules tried per mutant (with --check)")
    p.add_argument("--only", nargs="*", help="check only these mutants")
    p.add_argument("--out", default="explore-out", help="where shrunk counterexamples are written")
    p.set_defaults(func=_cmd_mutants)


def _cmd_mutants(args: argparse.Namespace) -> int:
    if not args.check:
        width = max(len(n) for n in MUTANTS)
        for m in MUTANTS.values():
            print(f"{m.name:<{width}}  {m.description}")
        return 0
    from sim.explore import check_mutants

    return check_mutants(args.budget, args.only or list(MUTANTS), args.out)
