"""Reads at an observer: how long a read served by an observer takes, and how fresh its answer is.

An observer answers reads from its own replica, so a read costs one round trip between the client and
that observer (no consensus step, no validator involved), and its answer is as fresh as the last batch
the observer executed. Both are measured in a simulated run:

- staleness: for every batch an honest observer executed, the time from the first honest validator
  executing it to the observer executing it (dissemination through the overlay, certificate checks,
  and catching up after a partition, all included);
- read latency: round trips drawn from the scenario's own network model between an observer and a
  client at its site. The draws use a fresh copy of the model with its own seeded generator, so they
  leave the run (and its trace) untouched.

The write latency beside them is the run's request latency (client to f+1 matching replies).
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from sim.network import Network

if TYPE_CHECKING:
    from sim.world import World

__all__ = ["ReadTimes", "read_summary", "render_observer_reads"]

READ_SAMPLES = 2000


class ReadTimes:
    """What the observer layer records during a run for this module (times in virtual µs)."""

    def __init__(self) -> None:
        self.commit_us: dict[int, int] = {}  # seq -> first honest validator's execution
        self.lag_us: list[int] = []

    def validator_executed(self, seq: int, now: int) -> None:
        self.commit_us.setdefault(seq, now)

    def observer_executed(self, seq: int, now: int) -> None:
        committed = self.commit_us.get(seq)
        if committed is not None:
            self.lag_us.append(now - committed)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def _dist(values: list[float]) -> dict[str, float]:
    return {"p50": round(_pct(values, 0.5), 2), "p99": round(_pct(values, 0.99), 2),
            "max": round(max(values, default=0.0), 2), "count": len(values)}


def read_summary(world: World, samples: int = READ_SAMPLES) -> dict[str, Any]:
    layer = world.observers
    assert layer is not None
    staleness = [us / 1000 for us in layer.reads.lag_us]
    n = world.config.n
    net = Network(world.scenario.network, n, random.Random(f"{world.seed}/observer-reads"))
    rtts: list[float] = []
    names = layer.names
    for k in range(samples if names else 0):
        observer, site = names[k % len(names)], k % n
        net.place(observer, site)
        net.place("client", site)  # a client reads from an observer near it
        there, back = net.route("client", observer, world.now), net.route(observer, "client", world.now)
        if there and back:
            rtts.append((there[0] + back[0]) / 1000)
    return {"staleness_ms": _dist(staleness), "read_latency_ms": _dist(rtts)}


def render_observer_reads(rows: list[dict[str, Any]]) -> list[str]:
    """The report's table of reads at an observer against the node count (rows of `sim.scale`)."""
    measured = [r for r in rows if "reads" in r]
    if not measured:
        return ["### Reads at an observer", "", "Not measured in these rows (reused from a run before reads were "
                "recorded: run `python -m sim report` without `--reuse-scale`).", ""]
    table = ["| nodes | read at an observer p50 / p99 ms | staleness p50 / p99 / max ms | write p50 / p99 ms |",
             "| ---: | ---: | ---: | ---: |"]
    for r in measured:
        rd, st, w = r["reads"]["read_latency_ms"], r["reads"]["staleness_ms"], r.get("write_latency_ms", {})
        table.append(f"| {r['nodes']:,} | {rd['p50']:.1f} / {rd['p99']:.1f} | {st['p50']:.1f} / {st['p99']:.1f} / "
                     f"{st['max']:.1f} | {w.get('p50', 0.0):.1f} / {w.get('p99', 0.0):.1f} |")
    return [
        "### Reads at an observer", "",
        "A read at an observer is answered from its own replica: one client round trip to the observer, drawn "
        "from the scenario's network model, with no validator involved. Staleness is how long after the first "
        "honest validator executed a batch an honest observer executed it (overlay hops, certificate checks, "
        "and the partitioned third catching up, all included). Writes still go through the validators "
        "(request latency, client to f+1 matching replies).", "",
        *table, "",
        "Read latency does not depend on the node count (each point draws the same seeded round trips from the "
        "same network model); staleness grows with the overlay's depth (log₄ of the observer count), and its "
        "tail is the partitioned third catching up.", ""]
