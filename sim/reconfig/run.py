"""Running a reconfiguration scenario and summarising what the checkers found."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sim.reconfig.checks import Check, check_all
from sim.reconfig.scenario import ReconfigScenario
from sim.reconfig.world import ReconfigWorld

__all__ = ["ReconfigResult", "format_result", "run_reconfiguration"]


@dataclass(frozen=True)
class ReconfigResult:
    scenario: ReconfigScenario
    seed: int
    checks: tuple[Check, ...]
    world: ReconfigWorld

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def digest(self) -> str:
        """What two runs of the same scenario and seed must agree on: every execution, switch and signature.

        A batch is named by the order in which its digest first appears, not by the digest: a re-sharing
        dealing seals shares with ML-KEM, whose encapsulation draws from the OS (`cryptography` takes no
        seed), so a batch holding one has other bytes in every process. Which validator executed which
        batch at which sequence number, and whether two executions were of the same batch, still count."""
        w = self.world
        h = hashlib.sha256()
        batch_names: dict[bytes, int] = {}
        for sid, seq, d in w.executed:
            h.update(b"x%d/%d/%d" % (sid, seq, batch_names.setdefault(d, len(batch_names))))
        for sid, epoch, base, keys, member in w.switches:
            h.update(b"s%d/%d/%d/%d/" % (sid, epoch, base, member) + b"".join(keys))
        for c in w.certificates:
            h.update(b"c%d/" % c.at_us + c.message + c.signature)
        return h.hexdigest()


def run_reconfiguration(sc: ReconfigScenario, seed: int | None = None) -> ReconfigResult:
    seed = sc.seed if seed is None else seed
    world = ReconfigWorld(sc, seed)
    world.run()
    return ReconfigResult(sc, seed, tuple(check_all(world)), world)


def format_result(r: ReconfigResult) -> str:
    w = r.world
    lat = sorted(c - s for s, c in w.latencies)
    p50 = lat[len(lat) // 2] / 1e6 if lat else 0.0
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1e6 if lat else 0.0
    lines = [f"scenario {r.scenario.name} seed {r.seed}: {'PASS' if r.ok else 'FAIL'}",
             f"  requests: {len(w.latencies)}/{w.submitted} completed, latency p50 {p50:.3f} s, p99 {p99:.3f} s; "
             f"messages dropped by the network: {w.net.dropped}; bogus dealings refused: {w.bogus_dealings}"]
    caught_up = {n.sid: n.er.handoffs_installed for n in w.nodes if n.er is not None and n.er.handoffs_installed}
    lines.append(f"  validators that left an epoch through a peer's certified handoff: {caught_up or 'none'}")
    lines += [f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in r.checks]
    return "\n".join(lines)
