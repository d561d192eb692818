"""The listener's table driver precomputes a zone's answers only once the zone has stopped changing."""

from __future__ import annotations

import asyncio

from reference_node.dns.workers import TableDriver


class _CountingAuthority:
    table = None

    def __init__(self) -> None:
        self.precomputes = 0

    def precompute(self, budget: int) -> int:
        self.precomputes += 1
        return 0  # nothing left after one slice


def test_a_zone_that_keeps_changing_is_not_precomputed_until_it_is_quiet() -> None:
    async def body() -> int:
        authority = _CountingAuthority()
        driver = TableDriver(lambda: authority, quiet_s=0.2)  # type: ignore[arg-type, return-value]
        for _ in range(10):  # a change every 50 ms: never quiet for 200 ms
            driver.changed()
            await asyncio.sleep(0.05)
        during = authority.precomputes
        await asyncio.sleep(0.4)
        assert authority.precomputes == 1, authority.precomputes
        return during

    during = asyncio.run(body())
    assert during == 0
