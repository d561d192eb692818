"""The TCP peer transport keeps a link to a peer that is killed and restarts on the same address.

Run on the node's event loop (uvloop when installed), where writing to a connection that was reset raises
RuntimeError rather than an OSError; the launcher's kill -9 chaos test covers the same under load.
"""

from __future__ import annotations

import asyncio

from reference_node import eventloop
from reference_node.transport_tcp import CHANNEL_CONSENSUS, TCPTransport


async def _restarted_peer_hears_again() -> tuple[list[bytes], list[bytes]]:
    got_before: list[bytes] = []
    got_after: list[bytes] = []
    peer = TCPTransport(1, ("127.0.0.1", 0), {0: ("127.0.0.1", 9)})
    await peer.start(lambda sender, channel, data: got_before.append(data))
    assert peer.bound is not None
    address = peer.bound
    me = TCPTransport(0, ("127.0.0.1", 0), {1: address})
    await me.start(lambda sender, channel, data: None)

    async def send_until(got: list[bytes], tag: bytes, seconds: float, every: float = 0.01) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        k = 0
        while not got and loop.time() < deadline:
            me.send(1, CHANNEL_CONSENSUS, tag + b"%d" % k)
            k += 1
            await asyncio.sleep(every)

    try:
        await send_until(got_before, b"before", 10)
        for conn in list(peer._conns):  # killed: the kernel resets its connections
            conn.transport.abort()
        await peer.close()
        await asyncio.sleep(0.3)  # the reset arrives while our sender waits for its next frame
        await send_until(got_after, b"lost", 1.0, every=0.2)  # one write meets the reset, the next a closed socket
        peer = TCPTransport(1, address, {0: ("127.0.0.1", 9)})
        await peer.start(lambda sender, channel, data: got_after.append(data))
        await send_until(got_after, b"after", 15)
    finally:
        await me.close()
        await peer.close()
    return got_before, got_after


def test_a_peer_that_restarts_on_the_same_address_hears_from_us_again() -> None:
    before, after = eventloop.run(_restarted_peer_hears_again())
    assert before and before[0].startswith(b"before")
    assert after  # queued while it was down, or sent after it came back
