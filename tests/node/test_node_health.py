"""Health tells a load balancer whether a node can make progress: 503 once a quorum is out of reach."""

from __future__ import annotations

import time
from pathlib import Path

from node_harness import Cluster, http


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
