"""Node certificates: issued at genesis by the TrustChain intermediate through FROST, renewed by each
node through consensus at 2/3 of their lifetime (20 s here), installed for new QUIC connections; after the
genesis certificates expired a restarted node still links up with its peers, and a node whose certificate
expired while it was down rejoins with a consensus-key credential and renews it with no operator action."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path

from aioquic.tls import verify_certificate
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID

from reference_node import cluster
from reference_node import config as cfgmod
from reference_node.runtime import Node, build_node
from reference_node.transport_quic import QUICTransport
from trustchain.app import kvstore
from trustchain.ca import frost
from trustchain.ca import names as canames
from trustchain.ca import records as carecords
from trustchain.ca import x509 as cax509
from trustchain.ca.rotation import renewal_time


def chain(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def test_genesis_node_certificates_come_from_the_trustchain_intermediate(tmp_path: Path) -> None:
    paths = cluster.generate(tmp_path, 4, 3, transport="quic", dns_listeners=False)
    root = x509.load_pem_x509_certificate((tmp_path / "root.pem").read_bytes())
    inter = x509.load_pem_x509_certificate((tmp_path / "intermediate.pem").read_bytes())
    assert not (tmp_path / "tls-ca.pem").exists()  # no separate transport CA any more
    for i, p in enumerate(paths):
        cfg = cfgmod.load(p, environ={})
        assert cfg.consensus.tls_ca == cfg.ca.root_cert  # one trust anchor
        leaf, *rest = chain(p.parent / "tls.crt")
        assert rest == [inter]
        assert isinstance(leaf.public_key(), ed25519.Ed25519PublicKey)
        assert cax509.verify_signature(leaf, inter.public_key().public_bytes_raw())  # type: ignore[union-attr]
        assert frost.verify_signature(inter.public_key().public_bytes_raw(),  # type: ignore[union-attr]
                                      leaf.tbs_certificate_bytes, leaf.signature)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.DNSName) == [canames.node_name(i)]
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == dt.timedelta(hours=24, seconds=-1)
        verify_certificate(leaf, [inter], canames.node_name(i), cafile=str(tmp_path / "root.pem"))
        assert root.subject == inter.issuer


def test_node_certificates_renew_before_expiry_and_links_keep_working(tmp_path: Path) -> None:
    paths = cluster.generate(tmp_path, 4, 3, transport="quic", dns_listeners=False, synchronous="normal",
                             timeout="1s", node_cert_lifetime="20s")
    original = [chain(p.parent / "tls.crt")[0] for p in paths]
    root = str(tmp_path / "root.pem")

    async def wait(pred: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)

    async def run() -> None:
        nodes: list[Node] = [build_node(cfgmod.load(p, environ={})) for p in paths]
        for n in nodes:
            await n.start()
        try:
            reply = await nodes[0].submit("kv", kvstore.put(b"before", b"1"), timeout_s=20)
            assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
            await wait(lambda: all(n.certificates.renewals >= 1 for n in nodes), 40, "every node to renew")
            for i, (n, p) in enumerate(zip(nodes, paths, strict=True)):
                new, inter = chain(p.parent / "data" / "tls" / "node.crt")  # renewed into the data directory
                old = original[i]
                assert chain(p.parent / "tls.crt")[0] == old  # the configured file is never written
                assert new.serial_number != old.serial_number
                assert new.not_valid_after_utc > old.not_valid_after_utc
                # renewed before expiry: at or after 2/3 of the old lifetime, before its end
                assert renewal_time(old.not_valid_before_utc, old.not_valid_after_utc) - dt.timedelta(seconds=1) \
                    <= new.not_valid_before_utc <= old.not_valid_after_utc
                assert new.not_valid_after_utc - new.not_valid_before_utc == dt.timedelta(seconds=19)
                verify_certificate(new, [inter], canames.node_name(i), cafile=root)
                transport = n.transport
                assert isinstance(transport, QUICTransport)
                assert transport.identity.certificate == new  # installed for new connections
                serial = carecords.serial_bytes(new.serial_number)
                assert all(serial in m.app.ca.issued for m in nodes)  # issued through consensus
            # let every genesis certificate expire, then restart node 2 from disk: it dials with its renewed
            # certificate and must accept the peers' renewed ones (no link can rest on the old ones)
            await asyncio.sleep(max(0.0, (max(c.not_valid_after_utc for c in original)
                                          - dt.datetime.now(dt.UTC)).total_seconds() + 1.5))
            # Restart while node 2's own renewed certificate still has time left, so that the link rests on
            # renewed certificates alone (a node whose certificate expired is the next test's case).
            t2_before = nodes[2].transport
            assert isinstance(t2_before, QUICTransport)
            await wait(lambda: t2_before.identity.certificate.not_valid_after_utc - dt.datetime.now(dt.UTC)
                       > dt.timedelta(seconds=10), 30, "node 2 to hold a certificate with 10 s left")
            await nodes[2].stop()
            nodes[2] = build_node(cfgmod.load(paths[2], environ={}))
            await nodes[2].start()
            for k in range(4):
                reply = await nodes[k].submit("kv", kvstore.put(b"after%d" % k, b"2"), timeout_s=60)
                assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
            await wait(lambda: len(nodes[2].app.kv.data) == 5, 20, "restarted node to catch up")
            t2 = nodes[2].transport
            assert isinstance(t2, QUICTransport)
            assert t2.stats.connects >= 3 and t2.stats.received > 0
            assert all(c.not_valid_after_utc < dt.datetime.now(dt.UTC) for c in original)
        finally:
            for n in nodes:
                await n.stop()

    asyncio.run(asyncio.wait_for(run(), 240))


def test_node_whose_certificate_expired_while_down_rejoins_and_renews(tmp_path: Path) -> None:
    paths = cluster.generate(tmp_path, 4, 3, transport="quic", dns_listeners=False, synchronous="normal",
                             timeout="1s", node_cert_lifetime="20s", checkpoint_interval=4)
    genesis_cert = chain(paths[3].parent / "tls.crt")[0]
    renewed = paths[3].parent / "data" / "tls" / "node.crt"

    async def wait(pred: object, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():  # type: ignore[operator]
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.1)

    async def run() -> None:
        nodes: list[Node] = [build_node(cfgmod.load(p, environ={})) for p in paths]
        for n in nodes:
            await n.start()
        try:
            await nodes[3].stop()  # down before its renewal at 2/3 of the lifetime
            for k in range(6):  # the others carry on without it (and pass a checkpoint)
                reply = await nodes[k % 3].submit("kv", kvstore.put(b"k%d" % k, b"1"), timeout_s=60)
                assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
            await asyncio.sleep(max(0.0, (genesis_cert.not_valid_after_utc - dt.datetime.now(dt.UTC))
                                    .total_seconds() + 1.0))
            assert not renewed.exists()  # nothing but the expired certificate on disk
            started = time.monotonic()
            nodes[3] = build_node(cfgmod.load(paths[3], environ={}))
            t3 = nodes[3].transport
            assert isinstance(t3, QUICTransport)
            assert t3.identity.certificate == genesis_cert
            assert genesis_cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
            await nodes[3].start()
            await wait(lambda: nodes[3].certificates.renewals >= 1, 90, "node 3 to renew its certificate")
            print(f"node with an expired certificate renewed {time.monotonic() - started:.1f} s after restart")
            new = chain(renewed)[0]
            assert new.not_valid_after_utc > dt.datetime.now(dt.UTC) and new.serial_number != genesis_cert.serial_number
            assert t3.identity.certificate == new
            serial = carecords.serial_bytes(new.serial_number)
            assert all(serial in m.app.ca.issued for m in nodes[:3])  # issued through consensus
            others = [n.transport for n in nodes[:3]]
            assert any(t.credential_links > 0 for t in others if isinstance(t, QUICTransport))
            reply = await nodes[3].submit("kv", kvstore.put(b"via-3", b"2"), timeout_s=60)
            assert kvstore.decode_result(reply).status == kvstore.STATUS_OK
            await wait(lambda: all(n.app.kv.data.get(b"via-3") == b"2" for n in nodes), 20, "the write everywhere")
        finally:
            for n in nodes:
                await n.stop()

    asyncio.run(asyncio.wait_for(run(), 240))
