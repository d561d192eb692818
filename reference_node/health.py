"""Whether this node can make progress, for `/api/v1/health` (load balancers, Kubernetes probes).

A node that answers 200 must be able to commit a write now: storage is writable, it hears from enough
validators to form a quorum (itself included), and it is not stuck in a view change. Peers are heard
through their consensus traffic or the transport's keepalives, so an idle cluster still knows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

__all__ = ["HealthMonitor", "HealthReport"]

PEER_SILENCE_S = 3.0  # a peer not heard from for this long counts as down
VIEW_CHANGE_GRACE_S = 5.0  # a view change that lasts longer than this means no progress


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    checks: dict[str, bool]
    detail: dict[str, Any]


class HealthMonitor:
    def __init__(self, clock: Any = time.monotonic) -> None:
        self.clock = clock
        self._view_change_since: float | None = None

    def evaluate(self, *, halted: str | None, n: int, quorum: int, peers_alive: int, in_view_change: bool,
                 view: int, last_executed: int) -> HealthReport:
        now = self.clock()
        if in_view_change:
            if self._view_change_since is None:
                self._view_change_since = now
        else:
            self._view_change_since = None
        stuck_for = 0.0 if self._view_change_since is None else now - self._view_change_since
        reachable = peers_alive + 1
        checks = {
            "storage": halted is None,
            "quorum": reachable >= quorum,
            "view_stable": stuck_for <= VIEW_CHANGE_GRACE_S,
        }
        detail = {"halted": halted, "validators": n, "quorum": quorum, "reachable": reachable,
                  "view": view, "last_executed": last_executed, "view_change_for_s": round(stuck_for, 3)}
        return HealthReport(all(checks.values()), checks, detail)
