"""QUIC peer transport with mutual TLS: a 4-node in-process cluster commits over it, and a peer whose
node certificate does not chain to the cluster's TrustChain root is refused before any frame is delivered."""

from __future__ import annotations

import asyncio
from pathlib import Path

from reference_node import cluster
from reference_node import config as cfgmod
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
