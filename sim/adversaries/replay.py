from __future__ import annotations

from sim.adversaries.base import Behaviour, Outgoing, open_envelope
from sim.params import PROBABILITY


class ReplayStale(Behaviour):
    """Records messages it sees and re-sends old ones (from earlier views and below the watermarks)
    to random replicas: validly signed, but stale."""

    name = "replay_stale"
    param_types = {"p": PROBABILITY}

    def __init__(self, *args: object, **kw: object) -> None:
        super().__init__(*args, **kw)  # type: ignore[arg-type]
        self.seen: list[bytes] = []

    def incoming(self, data: bytes, now_us: int) -> None:
        if open_envelope(data) is not None:
            self.seen.append(data)
            if len(self.seen) > 4096:
                del self.seen[:1024]

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        p = float(self.param("p", 0.2))
        if self.seen and len(self.seen) > 64 and self.rng.random() < p:
            old = self.seen[self.rng.randrange(len(self.seen) // 2)]
            dst = self.rng.randrange(self.world.config.n)
            if dst != self.node.replica_id:
                self.world.count_fault("stale_replay")
                return [*items, Outgoing(dst, old)]
        return items
