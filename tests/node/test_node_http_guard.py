"""HTTP abuse limits and health, as units (a fake clock) and against a real aiohttp server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import MagicMock

import aiohttp
from aiohttp import web
from jwcrypto import jwk, jws

from reference_node.health import VIEW_CHANGE_GRACE_S, HealthMonitor
from reference_node.http_guard import ConnectionGuard, GuardLimits, RateLimiter, rate_limit_middleware


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_one_client_exhausts_its_own_bucket_not_anothers() -> None:
    clock = FakeClock()
    limiter = RateLimiter(GuardLimits(write_rate=1.0, write_burst=3.0), clock)
    assert [limiter.admit("10.0.0.1", True) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.admit("10.0.0.1", True)
    assert 0 < wait <= 1.0
    assert limiter.admit("10.0.0.2", True) == 0.0  # another client is still served
    assert limiter.admit("10.0.0.1", False) == 0.0  # reads have their own bucket
    clock.now += 1.0
    assert limiter.admit("10.0.0.1", True) == 0.0


def test_the_global_write_bucket_caps_all_clients_together() -> None:
    clock = FakeClock()
    limiter = RateLimiter(GuardLimits(write_rate=100, write_burst=100, global_write_rate=1, global_write_burst=5),
                          clock)
    admitted = sum(1 for i in range(20) if limiter.admit(f"10.0.0.{i}", True) == 0.0)
    assert admitted == 5


def test_registrations_have_a_slow_bucket_of_their_own_per_address() -> None:
    clock = FakeClock()
    limiter = RateLimiter(GuardLimits(registration_rate=2 / 3600, registration_burst=2), clock)
    assert [limiter.admit_registration("10.0.0.1") for _ in range(2)] == [0.0, 0.0]  # exactly the burst
    wait = limiter.admit_registration("10.0.0.1")
    assert 1700 < wait <= 1800  # the next token in half an hour
    assert limiter.admit_registration("10.0.0.2") == 0.0  # another address registers
    assert limiter.admit("10.0.0.1", True) == 0.0  # and this one still writes as its existing accounts
    clock.now += 1800
    assert limiter.admit_registration("10.0.0.1") == 0.0


def test_tracked_clients_are_bounded() -> None:
    limiter = RateLimiter(GuardLimits(max_tracked_ips=10), FakeClock())
    for i in range(1000):
        limiter.admit(f"10.0.{i // 256}.{i % 256}", False)
    assert len(limiter._reads) == 10


def test_health_fails_without_quorum_or_in_a_long_view_change() -> None:
    clock = FakeClock()
    monitor = HealthMonitor(clock)
    common = {"halted": None, "n": 5, "quorum": 4, "view": 0, "last_executed": 7}
    assert monitor.evaluate(peers_alive=3, in_view_change=False, **common).ok
    down = monitor.evaluate(peers_alive=2, in_view_change=False, **common)
    assert not down.ok and down.checks["quorum"] is False and down.detail["reachable"] == 3
    assert monitor.evaluate(peers_alive=4, in_view_change=True, **common).ok
    clock.now += VIEW_CHANGE_GRACE_S + 1
    stuck = monitor.evaluate(peers_alive=4, in_view_change=True, **common)
    assert not stuck.ok and stuck.checks["view_stable"] is False
    assert not monitor.evaluate(peers_alive=4, in_view_change=False, **{**common, "halted": "disk full"}).ok


async def _serve(limits: GuardLimits) -> tuple[asyncio.AbstractServer, web.AppRunner, int]:
    guard = ConnectionGuard(limits)

    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[guard.middleware(), rate_limit_middleware(RateLimiter(limits))])
    app.router.add_get("/", hello)
    app.router.add_post("/", hello)
    runner = web.AppRunner(app)
    await runner.setup()
    assert runner.server is not None
    server = await asyncio.get_running_loop().create_server(guard.factory(runner.server), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, runner, port


def test_a_write_flood_gets_429_with_retry_after_while_another_address_is_served() -> None:
    asyncio.run(_flood())


async def _flood() -> None:
    server, runner, port = await _serve(GuardLimits(write_rate=1.0, write_burst=5.0))
    try:
        async with aiohttp.ClientSession() as flood:
            statuses = []
            for _ in range(20):
                async with flood.post(f"http://127.0.0.1:{port}/") as resp:
                    statuses.append(resp.status)
                    if resp.status == 429:
                        assert int(resp.headers["Retry-After"]) >= 1
                        assert (await resp.json())["field"] == "rate"
        assert statuses[:5] == [200] * 5 and statuses.count(429) == 15
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as other, other.post(
                f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 200
    finally:
        server.close()
        await runner.cleanup()


def test_slow_partial_headers_are_cut_and_connections_per_ip_are_capped() -> None:
    asyncio.run(_slowloris())


async def _slowloris() -> None:
    server, runner, port = await _serve(GuardLimits(header_timeout_s=0.3, max_connections_per_ip=3))
    try:
        slow = []
        for _ in range(5):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the headers
            await writer.drain()
            slow.append((reader, writer))
        closed = 0
        for reader, _ in slow:
            data = await asyncio.wait_for(reader.read(), timeout=3.0)  # EOF: the server closed it
            closed += data == b""
        assert closed == 5  # 2 refused at once (over the per-IP cap), 3 cut at the header deadline
        async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as resp:
            assert resp.status == 200  # slots were freed
    finally:
        server.close()
        await runner.cleanup()


def test_acme_paths_over_the_limit_get_an_acme_problem_with_retry_after(tmp_path: Path) -> None:
    """ACME clients act on problem documents: the node's per-IP limits answer /acme with `rateLimited`,
    Retry-After and a fresh nonce; the rest of the API keeps its JSON form. newAccount also spends the
    per-IP registration bucket, as a signed registration does."""
    from aiohttp.test_utils import TestClient, TestServer

    from reference_node.http_api import API

    async def go() -> None:
        limits = GuardLimits(read_rate=0.001, read_burst=0, write_rate=0.001, write_burst=1,
                             registration_rate=0.001, registration_burst=0)
        # refusals never reach the node (its metrics count them; the operator token is written at startup)
        node = SimpleNamespace(config=SimpleNamespace(storage=SimpleNamespace(path=tmp_path)), metrics=MagicMock())
        api = API(node=node, guard_limits=limits)  # type: ignore[arg-type]
        async with TestClient(TestServer(api.app)) as client:
            resp = await client.get("/acme/directory")
            assert resp.status == 429 and resp.content_type == "application/problem+json"
            doc = await resp.json(content_type=None)
            assert doc["type"] == "urn:ietf:params:acme:error:rateLimited" and doc["status"] == 429
            assert int(resp.headers["Retry-After"]) >= 1 and resp.headers["Replay-Nonce"]
            nonce = resp.headers["Replay-Nonce"]

            jose = {"content-type": "application/jose+json"}
            key = jwk.JWK.generate(kty="EC", crv="P-256")
            signed = jws.JWS(b"{}")
            url = str(client.make_url("/acme/new-account"))
            signed.add_signature(key, None, json.dumps({"alg": "ES256", "jwk": key.export_public(as_dict=True),
                                                        "nonce": nonce, "url": url}))
            resp = await client.post("/acme/new-account", data=signed.serialize().encode(),  # a well-formed JWS:
                                     headers=jose)  # junk is answered before any limit is spent
            assert resp.status == 429 and resp.content_type == "application/problem+json"
            doc = await resp.json(content_type=None)
            assert doc["type"].endswith(":rateLimited") and "account registrations" in doc["detail"], doc
            resp = await client.post("/acme/new-order", data=b"{}", headers=jose)
            assert resp.status == 429 and (await resp.json(content_type=None))["type"].endswith(":rateLimited")
            assert int(resp.headers["Retry-After"]) >= 1

            resp = await client.post("/api/v1/kv", json={"op": "get", "key": "k"})
            assert resp.status == 429 and resp.content_type == "application/json"
            assert (await resp.json())["field"] == "rate"

    asyncio.run(go())
