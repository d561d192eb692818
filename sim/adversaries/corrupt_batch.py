from __future__ import annotations

from dataclasses import replace

from sim.adversaries.base import Behaviour, Outgoing, open_envelope, reseal
from trustchain.consensus.messages import PrePrepare


class CorruptBatch(Behaviour):
    """As primary, sends half of the replicas a pre-prepare whose batch was altered (its last request
    dropped) while keeping the original digest. Correct replicas recompute the digest and reject it."""

    name = "corrupt_batch"

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        out = []
        for item in items:
            opened = open_envelope(item.data)
            if (opened is not None and isinstance(opened[1], PrePrepare) and len(opened[1].batch) > 1
                    and isinstance(item.dst, int) and item.dst % 2 == 1):
                pp = opened[1]
                out.append(replace(item, data=reseal(self.node, replace(pp, batch=pp.batch[:-1]))))
                self.world.count_fault("corrupt_batch")
            else:
                out.append(item)
        return out
