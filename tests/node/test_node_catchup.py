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
from reference_node.transport import CHANNEL_CONSENSUS, CHANNEL_SIGNING
from trustchain.app import kvstore
from trustchain.ca import issuance


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


def test_certificate_finalized_inside_a_snapshot_wakes_its_waiter(tmp_path: Path) -> None:
    """Node 3 orders its own node-certificate renewal, then hears nothing while the peers sign, finalize and
    pass two checkpoints. It catches up from a snapshot that holds the finalized certificate (no Finalized
    event): the renewal completes then, not when its 60 s wait runs out."""
    paths = cluster.generate(tmp_path, 4, 3, transport="quic", dns_listeners=False, synchronous="normal",
                             checkpoint_interval=4, timeout="1s")

    async def run() -> None:
        nodes: list[Node] = [build_node(cfgmod.load(p, environ={})) for p in paths]
        for n in nodes:
            await n.start()
        deaf = nodes[3]
        blocked = {CHANNEL_SIGNING}  # per node: channels dropped on receipt
        deaf_blocked = {CHANNEL_SIGNING}
        for n in nodes:
            hear = n.transport._deliver
            assert hear is not None
            chans = deaf_blocked if n is deaf else blocked
            n.transport._deliver = (lambda sender, channel, data, hear=hear, chans=chans:  # type: ignore[misc]
                                    None if channel in chans else hear(sender, channel, data))
        restored: list[int] = []
        restore = deaf.replica._restore

        def restore_spy(snapshot: bytes) -> None:
            restored.append(deaf.replica.last_executed)
            restore(snapshot)

        deaf.replica._restore = restore_spy  # type: ignore[method-assign]
        try:
            renewal = asyncio.create_task(deaf.renew_node_certificate(timeout_s=60))
            for _ in range(200):  # until node 3 executed its request (signing is held, so it stays pending)
                if deaf._cert_waiters:
                    break
                await asyncio.sleep(0.05)
            assert deaf._cert_waiters and deaf.app.ca.pending
            deaf_blocked.add(CHANNEL_CONSENSUS)
            blocked.clear()
            deaf_blocked.discard(CHANNEL_SIGNING)
            for _ in range(200):  # the peers sign and finalize without node 3's consensus votes
                if all(not n.app.ca.pending for n in nodes[:3]):
                    break
                await asyncio.sleep(0.05)
            assert all(not n.app.ca.pending for n in nodes[:3])
            for k in range(10):  # two more checkpoints: the peers collect garbage below them
                assert await nodes[k % 3].submit("kv", kvstore.put(b"k%d" % k, b"x"), timeout_s=20) == b"OK"
            assert min(n.replica.low_watermark for n in nodes[:3]) > deaf.replica.last_executed
            assert not renewal.done()
            deaf_blocked.clear()
            assert await nodes[0].submit("kv", kvstore.put(b"after", b"1"), timeout_s=20) == b"OK"
            cert = await asyncio.wait_for(renewal, 20)  # well inside the renewal's own 60 s
            assert restored, "node 3 caught up without a snapshot: the test no longer covers its case"
            assert issuance.serial_bytes(cert.serial_number) in deaf.app.ca.issued
            assert deaf.node_cert_renewals == 1
        finally:
            for n in nodes:
                await n.stop()

    asyncio.run(asyncio.wait_for(run(), 180))
