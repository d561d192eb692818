"""A node whose own request was executed while it was cut off, and which then catches up through a state-
transfer snapshot (no Executed effect for that request), still answers its caller: the node resolves waiting
submissions from the replicated client table. Without it the caller (an API request, the node's own
certificate renewal) waits for ever, which is how a restarted node let its TLS certificate expire."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from reference_node import cluster
from reference_node import config as cfgmod
from reference_node.runtime import Node, build_node
from reference_node.transport import CHANNEL_CONSENSUS, CHANNEL_SIGNING
from trustchain.app import kvstore
from trustchain.ca import records as carecords


def _drop_on_receipt(node: Node, channels: set[int]) -> None:
    """Frames on `channels` (a set the test changes as it goes) never reach `node`; what it sends still leaves."""
    hear = node.transport._deliver
    assert hear is not None
    node.transport._deliver = lambda sender, channel, data: (
        None if channel in channels else hear(sender, channel, data))


def _count_snapshot_restores(node: Node) -> list[int]:
    restored: list[int] = []
    restore = node.replica._restore

    def spy(snapshot: bytes) -> None:
        restored.append(node.replica.status.last_executed)
        restore(snapshot)

    node.replica._restore = spy  # type: ignore[method-assign]
    return restored


async def _until(pred: Callable[[], bool]) -> None:
    for _ in range(200):
        if pred():
            return
        await asyncio.sleep(0.05)


async def _pass_checkpoints(nodes: list[Node], deaf: Node, count: int) -> None:
    """Order `count` writes through the others, so that their stable checkpoint passes the deaf node."""
    for k in range(count):
        reply = await nodes[k % 3].submit("kv", kvstore.put(b"k%d" % k, b"x"), timeout_s=20)
        assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
    assert min(n.replica.status.low_watermark for n in nodes[:3]) > deaf.replica.status.last_executed


def _run_cluster(tmp_path: Path, body: Callable[[list[Node]], Awaitable[Any]], **kw: Any) -> None:
    paths = cluster.generate(tmp_path, 4, 3, dns_listeners=False, synchronous="normal", checkpoint_interval=4,
                             timeout="1s", **kw)

    async def run() -> None:
        nodes = [build_node(cfgmod.load(p, environ={})) for p in paths]
        for n in nodes:
            await n.start()
        try:
            await body(nodes)
        finally:
            for n in nodes:
                await n.stop()

    asyncio.run(asyncio.wait_for(run(), 180))


def test_request_executed_inside_a_snapshot_is_answered(tmp_path: Path) -> None:
    async def body(nodes: list[Node]) -> None:
        deaf = nodes[3]
        dropped: set[int] = set()
        _drop_on_receipt(deaf, dropped)
        restored = _count_snapshot_restores(deaf)
        reply = await nodes[0].submit("kv", kvstore.put(b"warm", b"0"), timeout_s=20)
        assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
        dropped.add(CHANNEL_CONSENSUS)  # node 3 hears nothing from its peers, but its request still reaches them
        mine = asyncio.create_task(deaf.submit("kv", kvstore.put(b"from-3", b"3"), timeout_s=60))
        await _pass_checkpoints(nodes, deaf, 12)
        assert all(n.app.kv.data.get(b"from-3") == b"3" for n in nodes[:3])
        assert not mine.done()
        dropped.clear()
        reply = await nodes[0].submit("kv", kvstore.put(b"after", b"1"), timeout_s=20)
        assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
        reply = await asyncio.wait_for(mine, 30)
        assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
        assert restored, "node 3 caught up without a snapshot: the test no longer covers its case"
        assert deaf.app.kv.data[b"from-3"] == b"3"

    _run_cluster(tmp_path, body)


def test_certificate_finalized_inside_a_snapshot_wakes_its_waiter(tmp_path: Path) -> None:
    """Node 3 orders its own node-certificate renewal (its serial drawn), then hears nothing while the peers
    sign, finalize and pass two checkpoints. It catches up from a snapshot that holds the finalized
    certificate (no Finalized event): the renewal completes then, not when its 60 s wait runs out."""

    async def body(nodes: list[Node]) -> None:
        deaf = nodes[3]
        dropped = [{CHANNEL_SIGNING} for _ in nodes]  # signing held everywhere: the issuance stays pending
        for n, channels in zip(nodes, dropped, strict=True):
            _drop_on_receipt(n, channels)
        restored = _count_snapshot_restores(deaf)
        renewal = asyncio.create_task(deaf.certificates.renew(timeout_s=60))
        # node 3 executed its request and the validators' reveals that drew its serial: the TBS waits for FROST
        await _until(lambda: bool(deaf._cert_waiters) and bool(deaf.app.ca.pending))
        assert deaf._cert_waiters and deaf.app.ca.pending and not deaf.app.ca.serials.draws
        for channels in dropped:
            channels.clear()
        dropped[3].add(CHANNEL_CONSENSUS)
        await _until(lambda: all(not n.app.ca.pending for n in nodes[:3]))  # signed and finalized without node 3
        assert all(not n.app.ca.pending for n in nodes[:3])
        await _pass_checkpoints(nodes, deaf, 10)
        assert not renewal.done()
        dropped[3].clear()
        reply = await nodes[0].submit("kv", kvstore.put(b"after", b"1"), timeout_s=20)
        assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
        cert = await asyncio.wait_for(renewal, 20)  # well inside the renewal's own 60 s
        assert restored, "node 3 caught up without a snapshot: the test no longer covers its case"
        assert carecords.serial_bytes(cert.serial_number) in deaf.app.ca.issued
        assert deaf.certificates.renewals == 1

    _run_cluster(tmp_path, body, transport="quic")
