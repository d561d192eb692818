"""Health tells a load balancer whether a node can make progress: 503 once a quorum is out of reach."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from node_harness import Cluster, http

from reference_node import cluster as clustermod
from reference_node import config as cfgmod
from reference_node.health import HealthMonitor, catching_up
from reference_node.http_api import API
from reference_node.runtime import Node, build_node
from reference_node.transport import CHANNEL_CONSENSUS
from trustchain.app import kvstore
from trustchain.consensus.messages import peek_kind


def _health(cluster: Cluster, node: int) -> tuple[int, dict[str, object]]:
    code, body = http("GET", cluster.apis[node] + "/api/v1/health")
    assert isinstance(body, dict)
    return code, body


def _wait(cluster: Cluster, node: int, want: int, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        code, body = _health(cluster, node)
        if code == want or time.monotonic() > deadline:
            assert code == want, body
            return body
        time.sleep(0.5)


def test_health_is_503_with_two_of_five_validators_down_and_200_again_after(tmp_path: Path) -> None:
    with Cluster(tmp_path, 5, 3, dns_listeners=False) as cluster:
        body = _wait(cluster, 0, 200)
        assert body["quorum"] == 4 and body["reachable"] == 5
        cluster.kill(3)
        body = _wait(cluster, 0, 200)  # n = 5 tolerates one fault: 4 reachable is a quorum
        cluster.kill(4)
        body = _wait(cluster, 0, 503)
        assert body["checks"]["quorum"] is False and body["reachable"] == 3, body  # type: ignore[index]
        cluster.start(4)
        _wait(cluster, 0, 200, timeout=60)


def test_catching_up_is_a_lag_beyond_the_bound_or_a_state_transfer() -> None:
    assert not catching_up(100, 100, False, max_lag=32)
    assert not catching_up(100, 132, False, max_lag=32)  # exactly at the bound: a busy pipeline
    assert catching_up(100, 133, False, max_lag=32)
    assert catching_up(100, 100, True, max_lag=32)  # asked a peer for state, not caught up yet
    assert not catching_up(140, 100, False, max_lag=32)  # peers report lazily: being ahead is fine


def test_health_reports_catching_up_alone_as_its_own_status() -> None:
    monitor = HealthMonitor(lambda: 0.0)
    common = {"halted": None, "n": 4, "quorum": 3, "peers_alive": 3, "in_view_change": False, "view": 0}
    behind = monitor.evaluate(last_executed=10, peer_executed=100, **common)  # type: ignore[arg-type]
    assert not behind.ok and behind.checks["caught_up"] is False and behind.detail["catching_up"] is True
    assert monitor.status(behind) == "catching_up"
    worse = monitor.evaluate(last_executed=10, peer_executed=100, **{**common, "peers_alive": 0})  # type: ignore[arg-type]
    assert monitor.status(worse) == "failing"
    fine = monitor.evaluate(last_executed=100, peer_executed=100, **common)  # type: ignore[arg-type]
    assert fine.ok and monitor.status(fine) == "ok"


async def _health_of(api: API) -> tuple[int, dict[str, object]]:
    response = await api.health(None)  # type: ignore[arg-type]  # the handler reads nothing from the request
    assert response.body is not None
    return response.status, json.loads(bytes(response.body))  # type: ignore[arg-type]


async def _until(pred: object, what: str) -> None:
    for _ in range(400):
        if pred():  # type: ignore[operator]
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}")


def test_a_node_behind_its_peers_answers_503_catching_up_until_it_caught_up(tmp_path: Path) -> None:
    """Node 3 first hears nothing while 40 writes are ordered, then hears everything but state replies:
    it knows it is behind (commit votes, checkpoints) and cannot catch up. Health says so; once state
    replies reach it again, it catches up and health is 200."""
    paths = clustermod.generate(tmp_path, 4, 3, dns_listeners=False, synchronous="normal", checkpoint_interval=4,
                                timeout="1s")

    async def body(nodes: list[Node]) -> None:
        lagging, api = nodes[3], API(nodes[3])
        blocked = {"everything"}
        hear = lagging.transport._deliver
        assert hear is not None

        def deliver(sender: int, channel: int, data: bytes) -> None:
            if channel == CHANNEL_CONSENSUS and ("everything" in blocked or peek_kind(data) in blocked):
                return
            hear(sender, channel, data)

        lagging.transport._deliver = deliver
        for k in range(40):
            reply = await nodes[k % 3].submit("kv", kvstore.put(b"k%d" % k, b"x"), timeout_s=20)
            assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
        blocked.clear()
        blocked.add("state_reply")
        await nodes[0].submit("kv", kvstore.put(b"more", b"x"), timeout_s=20)
        await _until(lambda: lagging.replica.status.state_transfer, "node 3 asked for state")
        code, doc = await _health_of(api)
        assert code == 503 and doc["status"] == "catching_up" and doc["catching_up"] is True, doc
        assert doc["peer_executed"] > doc["last_executed"] + 32, doc  # type: ignore[operator]
        blocked.clear()
        await nodes[0].submit("kv", kvstore.put(b"after", b"x"), timeout_s=20)
        target = nodes[0].replica.status.last_executed
        await _until(lambda: lagging.replica.status.last_executed >= target, "node 3 caught up")
        await _until(lambda: not lagging.replica.status.state_transfer, "node 3's state transfer ended")
        code, doc = await _health_of(api)
        assert code == 200 and doc["status"] == "ok" and doc["catching_up"] is False, doc

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
