"""A node whose own request was executed while it was cut off, and which then catches up through a state-
transfer snapshot (no Executed effect for that request), still answers its caller: the node resolves waiting
submissions from the replicated client table. Without it the caller (an API request, the node's own
certificate renewal) waits for ever, which is how a restarted node let its TLS certificate expire."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reference_node import cluster
from reference_node import config as cfgmod
from reference_node.runtime import Node, build_node
from reference_node.transport import CHANNEL_CONSENSUS
from trustchain.app import kvstore


def test_request_executed_inside_a_snapshot_is_answered(tmp_path: Path) -> None:
    paths = cluster.generate(tmp_path, 4, 3, dns_listeners=False, synchronous="normal", checkpoint_interval=4,
                             timeout="1s")

    async def run() -> None:
        nodes: list[Node] = [build_node(cfgmod.load(p, environ={})) for p in paths]
        for n in nodes:
            await n.start()
        deaf = nodes[3]
        hear = deaf.transport._deliver
        assert hear is not None
        restored: list[int] = []
        restore = deaf.replica._restore

        def restore_spy(snapshot: bytes) -> None:
            restored.append(deaf.replica.last_executed)
            restore(snapshot)

        deaf.replica._restore = restore_spy  # type: ignore[method-assign]
        try:
            assert await nodes[0].submit("kv", kvstore.put(b"warm", b"0"), timeout_s=20) == b"OK"
            # node 3 hears nothing from its peers, but its request still reaches them
            deaf.transport._deliver = lambda sender, channel, data: (
                None if channel == CHANNEL_CONSENSUS else hear(sender, channel, data))
            mine = asyncio.create_task(deaf.submit("kv", kvstore.put(b"from-3", b"3"), timeout_s=60))
            for k in range(12):  # past several checkpoints: the peers collect garbage below them
                assert await nodes[k % 3].submit("kv", kvstore.put(b"k%d" % k, b"x"), timeout_s=20) == b"OK"
            assert all(n.app.kv.data.get(b"from-3") == b"3" for n in nodes[:3])
            assert not mine.done()
            assert min(n.replica.low_watermark for n in nodes[:3]) > deaf.replica.last_executed
            deaf.transport._deliver = hear
            assert await nodes[0].submit("kv", kvstore.put(b"after", b"1"), timeout_s=20) == b"OK"
            assert await asyncio.wait_for(mine, 30) == b"OK"
            assert restored, "node 3 caught up without a snapshot: the test no longer covers its case"
            assert deaf.app.kv.data[b"from-3"] == b"3"
        finally:
            for n in nodes:
                await n.stop()

    asyncio.run(asyncio.wait_for(run(), 180))
