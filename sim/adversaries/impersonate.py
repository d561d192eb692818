from __future__ import annotations

from dataclasses import replace

from sim.adversaries.base import Behaviour, Outgoing, open_envelope, reseal
from trustchain.consensus.messages import Prepare, PrePrepare


class ImpersonatePrimary(Behaviour):
    """A backup that proposes as if it were the primary: whenever it prepares a batch, it also sends
    its own pre-prepare for the same sequence with a different timestamp, signed with its own key.
    Correct replicas reject it (not the primary); a replica that skipped that check would not."""

    name = "impersonate_primary"

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        extra: list[Outgoing] = []
        for item in items:
            opened = open_envelope(item.data)
            if opened is None or not isinstance(opened[1], Prepare) or not isinstance(item.dst, int):
                continue
            slot = self.node.replica.slots.get(opened[1].seq)
            held = slot.pre_prepares.get(opened[1].view) if slot else None
            if held is None:
                continue
            pp = held[1]
            ts = pp.timestamp_us + 7
            fake = replace(pp, timestamp_us=ts, batch_digest=PrePrepare.compute_digest(ts, pp.batch))
            extra.append(Outgoing(item.dst, reseal(self.node, fake)))
            self.world.count_fault("impersonated_pre_prepare")
        return items + extra
