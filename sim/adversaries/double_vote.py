from __future__ import annotations

from dataclasses import replace

from sim.adversaries.base import Behaviour, Outgoing, open_envelope, reseal, with_digest
from trustchain.consensus.messages import Commit, Prepare, digest


class DoubleVote(Behaviour):
    """Sends conflicting prepares and commits: half of the replicas get a vote for a digest nobody
    proposed."""

    name = "double_vote"

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        out = []
        for item in items:
            opened = open_envelope(item.data)
            if (opened is not None and isinstance(opened[1], Prepare | Commit)
                    and isinstance(item.dst, int) and item.dst % 2 == 1):
                msg = opened[1]
                fake = digest(msg.batch_digest + b"double-vote")
                out.append(replace(item, data=reseal(self.node, with_digest(msg, fake))))
                self.world.count_fault("double_vote")
            else:
                out.append(item)
        return out
