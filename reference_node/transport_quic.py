"""Peer transport over QUIC (aioquic) with mutual TLS 1.3, authenticated by TrustChain node certificates.

Every validator holds a TLS node certificate issued by the TrustChain intermediate through FROST
(at genesis by `cluster`; later renewed by the node itself through consensus, see `node_cert.NodeCertificates`):
an Ed25519 key, SAN `validator-<i>.<node_domain>`, EKU serverAuth+clientAuth. The trust anchor is the
TrustChain root (`consensus.tls_ca`, by default `ca.root_cert`): one root for the whole system. A node
dials each peer, checks the server certificate chain against the root, the peer's node name (the SAN)
and serverAuth, and presents its own chain (leaf + intermediate). The listening side requests the
client certificate (aioquic only requests one when asked: see `_require_client_certificate`), verifies
its chain against the root after the handshake, requires clientAuth, and takes the sender's validator
id from the node name in the SAN, so every received frame is attributed to an authenticated peer; a
peer without a valid certificate is disconnected before any frame is delivered.

`install_identity` replaces the certificate and key in memory: connections made afterwards (both
directions) present the new certificate; established ones keep their session.

Frames on the dialer's one bidirectional stream use the TCP transport's framing (length, channel,
payload). Bounded per-peer queues and reconnect with backoff come from `transport.PeerQueues`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
from pathlib import Path
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, HandshakeCompleted, QuicEvent, StreamDataReceived
from aioquic.tls import verify_certificate
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

from reference_node.config import NodeConfig
from reference_node.transport import BACKOFF_MAX, BACKOFF_MIN, MAX_FRAME, Deliver, PeerQueues
from trustchain.ca import names as canames
from trustchain.ca import x509 as cax509

ALPN = "trustchain-peer/1"
CONNECT_TIMEOUT_S = 5.0

NodeKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


class Identity:
    """A node certificate, the chain sent after it (the intermediate) and its private key."""

    def __init__(self, chain_pem: bytes, key_pem: bytes) -> None:
        certs = x509.load_pem_x509_certificates(chain_pem)
        key = load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError("node key must be Ed25519 or ECDSA")
        if certs[0].public_key() != key.public_key():
            raise ValueError("node certificate does not match the node key")
        self.certificate: x509.Certificate = certs[0]
        self.chain: list[x509.Certificate] = certs[1:]
        self.key: NodeKey = key

    @classmethod
    def load(cls, cert: Path, key: Path) -> Identity:
        return cls(cert.read_bytes(), key.read_bytes())

    def apply(self, conf: QuicConfiguration) -> None:
        conf.certificate, conf.certificate_chain, conf.private_key = self.certificate, list(self.chain), self.key


def has_eku(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    try:
        return usage in cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False


class _PeerServerProtocol(QuicConnectionProtocol):
    def __init__(self, transport: QUICTransport, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = transport
        self.sender: int | None = None
        self.buffers: dict[int, bytearray] = {}
        self._require_client_certificate()

    def _require_client_certificate(self) -> None:
        quic = self._quic
        original = quic._initialize

        def initialize(peer_cid: bytes) -> None:
            original(peer_cid)
            quic.tls._request_client_certificate = True  # aioquic exposes no public switch for mTLS

        quic._initialize = initialize  # type: ignore[method-assign]

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            self.sender = self.owner.authenticate(self._quic.tls._peer_certificate,
                                                  list(self._quic.tls._peer_certificate_chain))
            if self.sender is None:
                self.owner.stats.bad_frames += 1
                self._quic.close(error_code=0x100, reason_phrase="peer certificate not accepted")
                self.transmit()
        elif isinstance(event, StreamDataReceived):
            if self.sender is None:
                return
            buf = self.buffers.setdefault(event.stream_id, bytearray())
            buf += event.data
            while len(buf) >= 4:
                (length,) = struct.unpack(">I", buf[:4])
                if not 1 <= length <= MAX_FRAME:
                    self.owner.stats.bad_frames += 1
                    self._quic.close(error_code=0x101, reason_phrase="bad frame")
                    self.transmit()
                    return
                if len(buf) < 4 + length:
                    break
                channel, payload = buf[4], bytes(buf[5:4 + length])
                del buf[:4 + length]
                self.owner.deliver(self.sender, channel, payload)
        elif isinstance(event, ConnectionTerminated):
            self.buffers.clear()


class QUICTransport(PeerQueues):
    """`names` maps each validator id to the node name its certificate must carry (and that is sent as SNI);
    `ca` is the trust anchor (the TrustChain root)."""

    kind = "quic"

    def __init__(self, me: int, listen: tuple[str, int], peers: dict[int, tuple[str, int]],
                 names: dict[int, str], cert: Path, key: Path, ca: Path, queue_size: int = 4096) -> None:
        super().__init__(me, listen, peers, queue_size)
        self.names = names
        self.ids_by_name = {n: i for i, n in names.items()}
        self.ca = ca
        self.identity = Identity.load(cert, key)
        self._server: QuicServer | None = None
        self._server_conf: QuicConfiguration | None = None

    @classmethod
    def from_config(cls, cfg: NodeConfig, node_domain: str = canames.NODE_DOMAIN) -> QUICTransport:
        c = cfg.consensus
        assert c.listen is not None and c.tls_cert is not None and c.tls_key is not None and c.tls_ca is not None
        return cls(cfg.replica_id, c.listen, {v.id: v.address for v in c.validators},
                   {v.id: canames.node_name(v.id, node_domain) for v in c.validators}, c.tls_cert, c.tls_key,
                   c.tls_ca, c.send_queue)

    def install_identity(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Use this chain and key for every connection made from now on, dialed or accepted. Raises
        ValueError (from `Identity`) if the key does not match the certificate: nothing is replaced then."""
        identity = Identity(chain_pem, key_pem)
        self.identity = identity
        if self._server_conf is not None:
            identity.apply(self._server_conf)  # QuicServer hands this object to each new connection

    def _configuration(self, is_client: bool, server_name: str | None = None) -> QuicConfiguration:
        conf = QuicConfiguration(is_client=is_client, alpn_protocols=[ALPN], idle_timeout=10.0,
                                 verify_mode=ssl.CERT_REQUIRED, server_name=server_name,
                                 max_datagram_frame_size=None)
        self.identity.apply(conf)
        conf.load_verify_locations(cafile=str(self.ca))
        return conf

    def authenticate(self, cert: x509.Certificate | None, chain: list[x509.Certificate],
                     usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH) -> int | None:
        """The validator id a peer certificate proves (chain to the root, `usage` in its EKU, a node name of
        a validator other than us in its SAN), or None."""
        if cert is None:
            return None
        try:
            verify_certificate(certificate=cert, chain=chain, cafile=str(self.ca))
        except Exception:  # aioquic raises its own alert types for every failure
            return None
        if not has_eku(cert, usage):
            return None
        ids = {self.ids_by_name[n] for n in cax509.dns_names(cert) if n in self.ids_by_name}
        if len(ids) != 1:
            return None
        peer = ids.pop()
        return peer if peer != self.me else None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._server_conf = self._configuration(False)
        self._server = await serve(self.listen[0], self.listen[1], configuration=self._server_conf,
                                   create_protocol=lambda *a, **k: _PeerServerProtocol(self, *a, **k))
        self._start_senders()

    async def _sender(self, peer: int) -> None:
        q = self._queues[peer]
        host, port = self.peers[peer]
        backoff = BACKOFF_MIN
        while True:
            try:
                async with contextlib.AsyncExitStack() as stack:
                    proto = await asyncio.wait_for(stack.enter_async_context(
                        connect(host, port, configuration=self._configuration(True, self.names[peer]))),
                        CONNECT_TIMEOUT_S)
                    # aioquic checked the chain and the name; the server's EKU must also allow serverAuth
                    tls = proto._quic.tls
                    if self.authenticate(tls._peer_certificate, list(tls._peer_certificate_chain),
                                         ExtendedKeyUsageOID.SERVER_AUTH) != peer:
                        raise ConnectionError(f"validator {peer}: server certificate not accepted")
                    self.stats.connects += 1
                    backoff = BACKOFF_MIN
                    stream = proto._quic.get_next_available_stream_id()
                    closed = asyncio.ensure_future(proto.wait_closed())
                    try:
                        while True:
                            getter = asyncio.ensure_future(q.get())
                            done, _ = await asyncio.wait({getter, closed}, return_when=asyncio.FIRST_COMPLETED)
                            if getter not in done:
                                getter.cancel()
                                break
                            proto._quic.send_stream_data(stream, getter.result())
                            proto.transmit()
                            self.stats.sent += 1
                    finally:
                        closed.cancel()
            except asyncio.CancelledError:
                raise
            except Exception:  # handshake failure, timeout, unreachable: retry with backoff
                self.stats.connect_failures += 1
            await asyncio.sleep(backoff)
            backoff = min(BACKOFF_MAX, backoff * 2)

    async def close(self) -> None:
        await self._stop_senders()
        if self._server is not None:
            self._server.close()
            for _ in range(2):  # the UDP socket is released by a callback the loop runs next
                await asyncio.sleep(0)
