from __future__ import annotations

from sim.adversaries.base import Behaviour, Outgoing


class Silent(Behaviour):
    """Receives everything, sends nothing: a crash that the others cannot tell from slowness."""

    name = "silent"

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        return []
