from __future__ import annotations

from sim.adversaries.base import Behaviour, Outgoing, open_envelope, reseal
from trustchain.consensus.messages import Prepare, PrePrepare


class ImpersonatePrimary(Behaviour):
    """A backup that proposes as if it were the primary: whenever it prepares sequence s, it sends its
    own pre-prepare for s+1, built from the requests it knows are pending and signed with its own
    key, hoping to arrive before the real primary's. Correct replicas reject it (not the primary)."""

    name = "impersonate_primary"

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        extra: list[Outgoing] = []
        pending = self.held.pending
        for item in items:
            opened = open_envelope(item.data)
            if opened is None or not isinstance(opened[1], Prepare) or not isinstance(item.dst, int):
                continue
            batch = tuple(pending.values())[: self.node.replica.config.batch_size]
            if not batch:
                continue
            view, seq = opened[1].view, opened[1].seq + 1
            fake = PrePrepare(view, seq, PrePrepare.compute_digest(now_us, batch), now_us, batch)
            extra.append(Outgoing(item.dst, reseal(self.node, fake)))
            self.world.count_fault("impersonated_pre_prepare")
        return items + extra
