from __future__ import annotations

from sim.adversaries.base import Behaviour, Outgoing, open_envelope
from sim.params import DURATION, count
from trustchain.consensus.messages import PrePrepare


class CrashWorstMoment(Behaviour):
    """Crashes halfway through broadcasting a pre-prepare as primary: only `reach` replicas (default f)
    see the proposal, so the batch is neither committed nor cleanly abandoned. Crashes anyway at
    `deadline_s` if it never gets to be primary."""

    name = "crash_worst_moment"
    param_types = {"after_s": DURATION, "reach": count(), "deadline_s": DURATION}

    def start(self) -> None:
        deadline = self.param("deadline_s", None)
        if deadline is not None:
            self.world.schedule(round(float(deadline) * 1e6), self._deadline)

    def _deadline(self) -> None:
        if self.node.up:
            self.world.crash(self.node, "crash_worst_moment (deadline)")

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        after_us = round(float(self.param("after_s", 1.0)) * 1e6)
        if now_us < after_us:
            return items
        for i, item in enumerate(items):
            opened = open_envelope(item.data)
            if opened is not None and isinstance(opened[1], PrePrepare):
                reach = int(self.param("reach", self.world.config.f))
                pp_items = [it for it in items[i:] if it.data == item.data][:reach]
                self.world.crash(self.node, f"crash_worst_moment (pre-prepare seq {opened[1].seq} "
                                 f"reached {len(pp_items)} replicas)")
                return items[:i] + pp_items
        return items
