"""A real five-validator cluster (f = 1, quorum 4) whose replicas end up in different views converges
once the network heals: with the view-0 primary down, every live validator is needed for a quorum, so
the cluster only executes again if the view-1 primary, which nobody heard while it moved on alone,
and the others meet in one view."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reference_node import cluster
from reference_node import config as cfgmod
from reference_node.runtime import Node, build_node
from reference_node.transport import CHANNEL_CONSENSUS
from trustchain.app import kvstore


def _deaf_to(node: Node, muted: set[int]) -> None:
    """Consensus frames from the replicas in `muted` (a set the test changes) never reach `node`."""
    hear = node.transport._deliver
    assert hear is not None
    node.transport._deliver = lambda sender, channel, data: (
        None if channel == CHANNEL_CONSENSUS and sender in muted else hear(sender, channel, data))


def test_validators_split_across_views_meet_again(tmp_path: Path) -> None:
    paths = cluster.generate(tmp_path, 5, 3, dns_listeners=False, synchronous="normal", checkpoint_interval=4,
                             timeout="1s")

    async def run() -> None:
        nodes = [build_node(cfgmod.load(p, environ={})) for p in paths]
        for n in nodes:
            await n.start()
        live = nodes[1:]
        try:
            reply = await nodes[2].submit("kv", kvstore.put(b"warm", b"0"), timeout_s=20)
            assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
            await nodes[0].stop()  # the view-0 primary is gone: q = 4 of the 4 live validators
            muted: set[int] = {1}  # nobody hears the view-1 primary; it still hears everyone
            for n in nodes[2:]:
                _deaf_to(n, muted)
            stuck = asyncio.create_task(nodes[2].submit("kv", kvstore.put(b"k", b"v"), timeout_s=90))
            split = False
            for _ in range(600):  # until the split: node 1 asked for a later view than the others are in
                await asyncio.sleep(0.05)
                views = [n.replica.status.view for n in live]
                split = views[0] > 1 and views[0] > max(views[1:])
                if split:
                    break
            assert split, f"the validators never split across views: {views}"
            assert not stuck.done()
            muted.clear()
            reply = await asyncio.wait_for(stuck, 80)
            assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
            final = {n.replica.status.view for n in live}
            assert len(final) == 1, f"live validators in views {final}"
            assert all(n.app.kv.data.get(b"k") == b"v" for n in live)
        finally:
            for n in live:
                await n.stop()

    asyncio.run(asyncio.wait_for(run(), 150))
