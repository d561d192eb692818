"""A node whose PBFT client slots are all busy answers a write with a timeout error, not an internal one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from reference_node import cluster as clustermod
from reference_node import config as cfgmod
from reference_node.runtime import CLIENT_POOL, SubmitTimeout, build_node
from trustchain.app import kvstore


def test_a_write_that_finds_every_request_slot_busy_times_out_as_a_submit_timeout(tmp_path: Path) -> None:
    paths = clustermod.generate(tmp_path, 4, 3, dns_listeners=False, synchronous="normal")

    async def run() -> None:
        nodes = [build_node(cfgmod.load(p, environ={})) for p in paths]
        for n in nodes:
            await n.start()
        try:
            node = nodes[0]
            assert node._free is not None
            for _ in range(200):  # the node's own writes (serial commitments) give their slots back
                if node._free.qsize() == CLIENT_POOL:
                    break
                await asyncio.sleep(0.1)
            taken = [node._free.get_nowait() for _ in range(CLIENT_POOL)]  # every slot held by a slow write
            with pytest.raises(SubmitTimeout, match="request slots"):
                await node.submit("kv", kvstore.put(b"k", b"v"), timeout_s=0.3)
            for idx in taken:
                node._free.put_nowait(idx)
            reply = await node.submit("kv", kvstore.put(b"k", b"v"), timeout_s=20)
            assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
        finally:
            for n in nodes:
                await n.stop()

    asyncio.run(asyncio.wait_for(run(), 120))
