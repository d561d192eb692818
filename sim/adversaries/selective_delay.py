from __future__ import annotations

from dataclasses import replace

from sim.adversaries.base import Behaviour, Outgoing
from sim.params import DURATION, NODE_IDS


class SelectiveDelay(Behaviour):
    """Delays everything it sends to a subset of replicas (default: the odd-numbered ones) by
    `delay_ms` (default 1500 ms), to starve them of its votes while the others proceed."""

    name = "selective_delay"
    param_types = {"targets": NODE_IDS, "delay_ms": DURATION}

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        targets = self.param("targets", None)
        delay_us = round(float(self.param("delay_ms", 1500)) * 1000)
        out = []
        for item in items:
            hit = isinstance(item.dst, int) and (
                item.dst in targets if targets is not None else item.dst % 2 == 1
            )
            if hit:
                self.world.count_fault("selective_delay")
                item = replace(item, delay_us=item.delay_us + delay_us)
            out.append(item)
        return out
