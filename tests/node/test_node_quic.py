"""QUIC peer transport with mutual TLS: a 4-node in-process cluster commits over it, a peer whose node
certificate does not chain to the cluster's TrustChain root is refused before any frame is delivered, a
consensus-key credential is accepted only for the validator whose key signed it, dialing dead peers leaves
no unretrieved future behind, and a restarted validator catches up in an idle network."""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import logging
import time
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID
from node_harness import Cluster, http

from reference_node import cluster, peer_credential
from reference_node import config as cfgmod
from reference_node.genesis import load_seed
from reference_node.runtime import build_node
from reference_node.transport_quic import QUICTransport
from trustchain.app import kvstore
from trustchain.ca import names as canames


def test_quic_cluster_commits(tmp_path: Path) -> None:
    paths = cluster.generate(tmp_path, 4, 3, transport="quic", dns_listeners=False, synchronous="normal")

    async def run() -> None:
        nodes = [build_node(cfgmod.load(p, environ={})) for p in paths]
        assert all(isinstance(n.transport, QUICTransport) for n in nodes)
        for n in nodes:
            await n.start()
        try:
            for i in range(8):
                reply = await nodes[i % 4].submit("kv", kvstore.put(b"q%d" % i, b"x"), timeout_s=20)
                assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
            for _ in range(100):  # each submit waits for its own node only: let the others execute
                if all(len(n.app.kv.data) == 8 for n in nodes):
                    break
                await asyncio.sleep(0.05)
            assert all(len(n.app.kv.data) == 8 for n in nodes)
            assert all(n.transport.stats.received > 0 for n in nodes)  # type: ignore[attr-defined]
        finally:
            for n in nodes:
                await n.stop()

    asyncio.run(asyncio.wait_for(run(), 60))


def test_quic_rejects_foreign_certificate(tmp_path: Path) -> None:
    good = cluster.generate(tmp_path / "a", 4, 3, transport="quic", dns_listeners=False)
    evil = cluster.generate(tmp_path / "b", 4, 3, transport="quic", dns_listeners=False)  # another root

    async def run() -> None:
        cfg = cfgmod.load(good[0], environ={})
        server = QUICTransport.from_config(cfg)
        got: list[tuple[int, int, bytes]] = []
        await server.start(lambda s, c, d: got.append((s, c, d)))
        ecfg = cfgmod.load(evil[1], environ={})
        assert ecfg.consensus.tls_cert is not None and ecfg.consensus.tls_key is not None
        # node1's name and the right address, but a certificate from the wrong CA (trusting the real one)
        intruder = QUICTransport(1, ("127.0.0.1", 0), {0: cfg.consensus.validators[0].address},
                                 {0: canames.node_name(0), 1: canames.node_name(1)}, ecfg.consensus.tls_cert,
                                 ecfg.consensus.tls_key, cfg.consensus.tls_ca)  # type: ignore[arg-type]
        await intruder.start(lambda s, c, d: None)
        ok_cfg = cfgmod.load(good[1], environ={})
        honest = QUICTransport.from_config(ok_cfg)
        await honest.start(lambda s, c, d: None)
        try:
            intruder.send(0, 0, b"forged")
            honest.send(0, 0, b"hello")
            for _ in range(100):
                if got:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)
            assert got == [(1, 0, b"hello")]
        finally:
            for t in (intruder, honest, server):
                await t.close()

    asyncio.run(asyncio.wait_for(run(), 60))


def test_consensus_key_credential_names_only_its_own_validator(tmp_path: Path) -> None:
    paths = cluster.generate(tmp_path, 4, 3, transport="quic", dns_listeners=False)
    cfgs = [cfgmod.load(p, environ={}) for p in paths]
    transport = QUICTransport.from_config(cfgs[0])
    seeds = [load_seed(c.trustchain.key_file) for c in cfgs]  # type: ignore[arg-type]
    now = dt.datetime.now(dt.UTC)
    client = ExtendedKeyUsageOID.CLIENT_AUTH
    own = peer_credential.mint(seeds[2], canames.node_name(2), now)
    assert transport.identify(own.certificate, [], client) == 2
    assert transport.credential_links == 1
    forged = peer_credential.mint(seeds[1], canames.node_name(2), now)  # validator 1 posing as validator 2
    with pytest.raises(ValueError, match="not signed by the consensus key"):
        transport.identify(forged.certificate, [], client)
    mine = peer_credential.mint(seeds[0], canames.node_name(0), now)
    with pytest.raises(ValueError, match="this node"):
        transport.identify(mine.certificate, [], client)
    assert transport.authenticate(forged.certificate, []) is None


def test_dialing_dead_peers_leaves_no_unretrieved_future(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every peer is down: each dial times out or fails, again and again, and nothing is left for asyncio to
    report as "Future exception was never retrieved"."""
    paths = cluster.generate(tmp_path, 4, 3, transport="quic", dns_listeners=False)

    async def run() -> QUICTransport:
        transport = QUICTransport.from_config(cfgmod.load(paths[0], environ={}))
        await transport.start(lambda s, c, d: None)
        await asyncio.sleep(7)  # longer than one handshake timeout
        await transport.close()
        return transport

    with caplog.at_level(logging.INFO):
        transport = asyncio.run(run())
        gc.collect()
    assert transport.stats.connect_failures >= 3 and transport.stats.connects == 0
    assert not [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    downs = [r for r in caplog.records if getattr(r, "event", "") == "peer_link_down"]
    assert sorted(r.fields["peer"] for r in downs) == [1, 2, 3]  # type: ignore[attr-defined]  # once per peer


def test_restarted_validator_catches_up_in_an_idle_network(tmp_path: Path) -> None:
    """Node 3 is killed, the others pass two checkpoints without it, then nothing happens. Restarted, it must
    catch up from the STATUS its peers send when their links to it come up, and serve a write."""
    with Cluster(tmp_path, nodes=4, threshold=3, transport="quic", dns_listeners=False, synchronous="normal",
                 checkpoint_interval=4, timeout="1s") as c:
        c.kill(3)
        for k in range(10):
            code, body = http("POST", c.apis[k % 3] + "/api/v1/kv", {"op": "put", "key": f"k{k}", "value": "x"})
            assert code in (200, 201), body
        target = max(c.status(i)["last_executed"] for i in range(3))
        assert c.status(0)["stable_checkpoint"] >= 8
        started = time.monotonic()
        c.start(3)
        c.wait_for(lambda: c.status(3) is not None, 60, "node 3's API")
        api_up = time.monotonic() - started
        c.wait_for(lambda: c.status(3)["last_executed"] >= target, 60, "node 3 to catch up")
        caught_up = time.monotonic() - started
        code, body = http("POST", c.apis[3] + "/api/v1/kv", {"op": "put", "key": "via-3", "value": "y"}, timeout=60)
        assert code in (200, 201), body
        served = time.monotonic() - started
        print(f"restarted QUIC validator: API up {api_up:.1f} s, caught up {caught_up:.1f} s, served a write "
              f"{served:.1f} s after its process started")
        c.wait_for(lambda: c.status(0)["kv"]["keys"] == 11, 20, "the write to reach node 0")
    logs = "".join(c.log(i) for i in range(4))
    assert "never retrieved" not in logs and "Traceback" not in logs
