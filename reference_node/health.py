"""Whether this node can make progress, for `/api/v1/health` (load balancers, Kubernetes probes).

A node that answers 200 must be able to commit a write now: storage is writable, it hears from enough
validators to form a quorum (itself included), and it is not stuck in a view change. Peers are heard
through their consensus traffic or the transport's keepalives, so an idle cluster still knows.

It must also answer reads from current state: a node that is catching up (its executed sequence more
than `MAX_LAG` behind what f+1 peers showed, so at least one honest validator got that far, or a state
transfer under way) answers 503 with status ``catching_up`` until it has caught up.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_LAG", "HealthMonitor", "HealthReport", "catching_up"]

PEER_SILENCE_S = 3.0  # a peer not heard from for this long counts as down
VIEW_CHANGE_GRACE_S = 5.0  # a view change that lasts longer than this means no progress
MAX_LAG = 32  # sequence numbers: a healthy replica trails the commit votes it sees by a few batches at most


def catching_up(last_executed: int, peer_executed: int, state_transfer: bool, max_lag: int = MAX_LAG) -> bool:
    """Whether a replica that executed `last_executed` is catching up: f+1 peers showed `peer_executed`,
    more than `max_lag` ahead, or it asked a peer for state and is still behind."""
    return state_transfer or peer_executed - last_executed > max_lag


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
                 view: int, last_executed: int, peer_executed: int = 0, state_transfer: bool = False) -> HealthReport:
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
            "caught_up": not catching_up(last_executed, peer_executed, state_transfer),
        }
        detail = {"halted": halted, "validators": n, "quorum": quorum, "reachable": reachable,
                  "view": view, "last_executed": last_executed, "view_change_for_s": round(stuck_for, 3),
                  "peer_executed": peer_executed, "state_transfer": state_transfer,
                  "catching_up": not checks["caught_up"]}
        return HealthReport(all(checks.values()), checks, detail)

    @staticmethod
    def status(report: HealthReport) -> str:
        """"ok"; "catching_up" when that is the only thing wrong; else "failing"."""
        if report.ok:
            return "ok"
        return "catching_up" if [k for k, v in report.checks.items() if not v] == ["caught_up"] else "failing"
