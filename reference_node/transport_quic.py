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
directions) present the new certificate; established ones keep their session. While the node certificate
is not valid (it expired while the node was down, and renewing it needs these links), the node presents a
short-lived credential signed by its consensus key instead (`peer_credential`), which peers accept for that
validator; the renewed certificate replaces it.

Dialing never leaves a future with an unretrieved exception behind: aioquic's own `wait_connected` and
`ping` waiters are not used (a timeout would orphan them); `_PeerClientProtocol` resolves its own futures
with a result on every outcome. Connection failures are logged once per outage with the peer and reason.

Frames on the dialer's one bidirectional stream use the TCP transport's framing (length, channel,
payload). Bounded per-peer queues and reconnect with backoff come from `transport.PeerQueues`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import ssl
import struct
import time
from pathlib import Path
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import (
    ConnectionTerminated,
    HandshakeCompleted,
    PingAcknowledged,
    QuicEvent,
    StreamDataReceived,
)
from aioquic.tls import verify_certificate
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from cryptography.x509.oid import ExtendedKeyUsageOID

from reference_node import peer_credential
from reference_node.config import NodeConfig
from reference_node.genesis import load_seed
from reference_node.transport import BACKOFF_MAX, BACKOFF_MIN, MAX_FRAME, Deliver, LinkUp, PeerQueues
from trustchain.ca import names as canames
from trustchain.ca import x509 as cax509

__all__ = ["ALPN", "CONNECT_TIMEOUT_S", "IDLE_TIMEOUT_S", "PROBE_TIMEOUT_S", "Identity", "QUICTransport", "has_eku"]

ALPN = "trustchain-peer/1"
CONNECT_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 10.0
PROBE_TIMEOUT_S = 1.0  # a link whose peer does not acknowledge a PING within this long is dead
REFUSAL_LOG_INTERVAL_S = 60.0  # one log line per address and reason per interval: refusals cannot flood logs
VALIDITY_MARGIN = dt.timedelta(seconds=5)  # a certificate this close to expiry is not presented any more

NodeKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey

log = logging.getLogger("trustchain.transport")
_PING_IDS = itertools.count(1)


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

    @classmethod
    def of_credential(cls, credential: peer_credential.ConsensusCredential) -> Identity:
        identity = cls.__new__(cls)
        identity.certificate, identity.chain, identity.key = credential.certificate, [], credential.key
        return identity

    def valid_at(self, now: dt.datetime) -> bool:
        return self.certificate.not_valid_before_utc <= now and now + VALIDITY_MARGIN < \
            self.certificate.not_valid_after_utc

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
        self.remote: str = "?"
        self.buffers: dict[int, bytearray] = {}
        self._prepare_handshake()

    def _prepare_handshake(self) -> None:
        """Present the identity that is valid now, and request the client's certificate."""
        quic = self._quic
        original = quic._initialize

        def initialize(peer_cid: bytes) -> None:
            self.owner.current_identity().apply(quic._configuration)  # the server's shared configuration
            original(peer_cid)
            quic.tls._request_client_certificate = True  # aioquic exposes no public switch for mTLS

        quic._initialize = initialize  # type: ignore[method-assign]

    def datagram_received(self, data: bytes | str, addr: Any) -> None:
        if self.remote == "?":
            self.remote = str(addr[0])
        super().datagram_received(data, addr)

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            try:
                self.sender = self.owner.identify(self._quic.tls._peer_certificate,
                                                  list(self._quic.tls._peer_certificate_chain),
                                                  ExtendedKeyUsageOID.CLIENT_AUTH)
            except ValueError as exc:
                self.owner.stats.bad_frames += 1
                self.owner.refused(self.remote, str(exc))
                self._quic.close(error_code=0x100, reason_phrase="peer certificate not accepted")
                self.transmit()
            else:
                self.owner._peer_dialed(self.sender)
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


class _PeerClientProtocol(QuicConnectionProtocol):
    """The dialer's side. Its futures are always resolved with a result (never an exception), whatever
    happens first: the handshake, a PING acknowledgement, or the end of the connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.handshake: asyncio.Future[bool] = self._loop.create_future()
        self.closed: asyncio.Future[str] = self._loop.create_future()
        self._pings: dict[int, asyncio.Future[bool]] = {}

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, HandshakeCompleted):
            if not self.handshake.done():
                self.handshake.set_result(True)
        elif isinstance(event, PingAcknowledged):
            waiter = self._pings.pop(event.uid, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(True)
        elif isinstance(event, ConnectionTerminated):
            reason = event.reason_phrase or "connection closed"
            if not self.closed.done():
                self.closed.set_result(f"{reason} (QUIC error 0x{event.error_code:x})")
            if not self.handshake.done():
                self.handshake.set_result(False)
            for waiter in self._pings.values():
                if not waiter.done():
                    waiter.set_result(False)
            self._pings.clear()

    async def probe(self, timeout: float) -> bool:
        """Whether the peer acknowledges a PING within `timeout` seconds."""
        uid = next(_PING_IDS)
        waiter: asyncio.Future[bool] = self._loop.create_future()
        self._pings[uid] = waiter
        self._quic.send_ping(uid)
        self.transmit()
        await asyncio.wait({waiter}, timeout=timeout)
        self._pings.pop(uid, None)
        return waiter.done() and waiter.result()


class QUICTransport(PeerQueues):
    """`names` maps each validator id to the node name its certificate must carry (and that is sent as SNI);
    `ca` is the trust anchor (the TrustChain root). `validator_keys` (id -> Ed25519 consensus public key)
    lets peers authenticate with a consensus-key credential; `consensus_seed` lets this node make one while
    its own certificate is not valid."""

    kind = "quic"

    def __init__(self, me: int, listen: tuple[str, int], peers: dict[int, tuple[str, int]],
                 names: dict[int, str], cert: Path, key: Path, ca: Path, queue_size: int = 4096, *,
                 validator_keys: dict[int, bytes] | None = None, consensus_seed: bytes | None = None) -> None:
        super().__init__(me, listen, peers, queue_size)
        self.names = names
        self.ids_by_name = {n: i for i, n in names.items()}
        self.ca = ca
        self.identity = Identity.load(cert, key)
        self.validator_keys = dict(validator_keys or {})
        self._seed = consensus_seed
        self._credential: peer_credential.ConsensusCredential | None = None
        self.credential_links = 0  # peer connections authenticated with a consensus-key credential
        self._refusals: dict[tuple[str, str], float] = {}
        self._server: QuicServer | None = None
        self._server_conf: QuicConfiguration | None = None

    @classmethod
    def from_config(cls, cfg: NodeConfig, node_domain: str = canames.NODE_DOMAIN) -> QUICTransport:
        c = cfg.consensus
        assert c.listen is not None and c.tls_cert is not None and c.tls_key is not None and c.tls_ca is not None
        seed = load_seed(cfg.trustchain.key_file) if cfg.trustchain.key_file is not None else None
        return cls(cfg.replica_id, c.listen, {v.id: v.address for v in c.validators},
                   {v.id: canames.node_name(v.id, node_domain) for v in c.validators}, c.tls_cert, c.tls_key,
                   c.tls_ca, c.send_queue, validator_keys={v.id: v.public_key for v in c.validators},
                   consensus_seed=seed)

    def install_identity(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Use this chain and key for every connection made from now on, dialed or accepted. Raises
        ValueError (from `Identity`) if the key does not match the certificate: nothing is replaced then."""
        identity = Identity(chain_pem, key_pem)
        self.identity = identity
        self._credential = None
        if self._server_conf is not None:
            identity.apply(self._server_conf)  # QuicServer hands this object to each new connection

    def current_identity(self) -> Identity:
        """The node certificate while it is valid; otherwise (it expired while the node was down) a
        consensus-key credential, made afresh when the last one has less than a quarter of its life left."""
        now = dt.datetime.now(dt.UTC)
        if self.identity.valid_at(now) or self._seed is None or self.me not in self.names:
            return self.identity
        if self._credential is None or not self._credential.usable_at(now):
            self._credential = peer_credential.mint(self._seed, self.names[self.me], now)
            log.warning("node certificate not valid now (valid until %s): peer links use a credential signed by "
                        "the consensus key until it is renewed",
                        self.identity.certificate.not_valid_after_utc.isoformat(),
                        extra={"event": "peer_credential_minted", "fields": {
                            "not_after": self._credential.certificate.not_valid_after_utc.isoformat()}})
        return Identity.of_credential(self._credential)

    def _configuration(self, is_client: bool, server_name: str | None = None) -> QuicConfiguration:
        # The dialer checks the server certificate itself after the handshake (`identify`), which also
        # accepts a consensus-key credential; aioquic still checks the CertificateVerify signature.
        conf = QuicConfiguration(is_client=is_client, alpn_protocols=[ALPN], idle_timeout=IDLE_TIMEOUT_S,
                                 verify_mode=ssl.CERT_NONE if is_client else ssl.CERT_REQUIRED,
                                 server_name=server_name, max_datagram_frame_size=None)
        self.current_identity().apply(conf)
        conf.load_verify_locations(cafile=str(self.ca))
        return conf

    def identify(self, cert: x509.Certificate | None, chain: list[x509.Certificate],
                 usage: x509.ObjectIdentifier) -> int:
        """The validator id a peer certificate proves, or ValueError naming why it proves none. Either a
        node certificate (chain to the root, `usage` in its EKU) or a consensus-key credential, naming
        exactly one validator other than us."""
        if cert is None:
            raise ValueError("no certificate")
        ids = {self.ids_by_name[n] for n in cax509.dns_names(cert) if n in self.ids_by_name}
        if len(ids) != 1:
            raise ValueError("certificate does not name exactly one validator")
        peer = ids.pop()
        if peer == self.me:
            raise ValueError("certificate names this node")
        name = self.names[peer]
        if peer in self.validator_keys and cert.issuer == peer_credential.issuer_name(name):
            try:
                peer_credential.check(cert, name, self.validator_keys[peer], usage, dt.datetime.now(dt.UTC))
            except ValueError as exc:
                raise ValueError(f"{name}: consensus-key credential refused: {exc}") from None
            self.credential_links += 1
            log.info("validator %d authenticated with a consensus-key credential (its node certificate is "
                     "not valid)", peer, extra={"event": "peer_credential_accepted", "fields": {"peer": peer}})
            return peer
        try:
            verify_certificate(certificate=cert, chain=chain, cafile=str(self.ca))
        except Exception as exc:  # aioquic raises its own alert types for every failure
            raise ValueError(f"{name}: {exc or type(exc).__name__}") from None
        if not has_eku(cert, usage):
            raise ValueError(f"{name}: extended key usage lacks {usage.dotted_string}")
        return peer

    def authenticate(self, cert: x509.Certificate | None, chain: list[x509.Certificate],
                     usage: x509.ObjectIdentifier = ExtendedKeyUsageOID.CLIENT_AUTH) -> int | None:
        """`identify`, or None."""
        try:
            return self.identify(cert, chain, usage)
        except ValueError:
            return None

    def refused(self, remote: str, reason: str) -> None:
        """Log a refused peer connection: one line, at most once per address and reason per minute."""
        now = time.monotonic()
        key = (remote, reason)
        if now - self._refusals.get(key, -REFUSAL_LOG_INTERVAL_S) < REFUSAL_LOG_INTERVAL_S:
            return
        if len(self._refusals) >= 1024:
            self._refusals.clear()
        self._refusals[key] = now
        log.warning("refused a peer connection from %s: %s", remote, reason,
                    extra={"event": "peer_refused", "fields": {"remote": remote, "reason": reason}})

    async def start(self, deliver: Deliver, on_link: LinkUp | None = None) -> None:
        self._deliver, self._on_link = deliver, on_link
        self._server_conf = self._configuration(False)
        self._server = await serve(self.listen[0], self.listen[1], configuration=self._server_conf,
                                   create_protocol=lambda *a, **k: _PeerServerProtocol(self, *a, **k))
        self._start_senders()

    async def _sender(self, peer: int) -> None:
        backoff = BACKOFF_MIN
        while True:
            linked = False
            try:
                linked, reason = await self._link(peer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # handshake failure, refused certificate, timeout, unreachable
                reason = str(exc) or type(exc).__name__
            self._unlinked(peer, reason)
            backoff = BACKOFF_MIN if linked else min(BACKOFF_MAX, backoff * 2)
            await self._pause(peer, backoff)

    async def _link(self, peer: int) -> tuple[bool, str]:
        """Dial `peer`, authenticate it and drain its queue while the connection lasts; (True, why it ended).
        Raises if the link never came up."""
        q, wake = self._queues[peer], self._wake[peer]
        host, port = self.peers[peer]
        async with connect(host, port, configuration=self._configuration(True, self.names[peer]),
                           create_protocol=_PeerClientProtocol, wait_connected=False) as proto:
            assert isinstance(proto, _PeerClientProtocol)
            proto.transmit()
            await asyncio.wait({proto.handshake}, timeout=CONNECT_TIMEOUT_S)
            if not proto.handshake.done():
                raise TimeoutError(f"no handshake within {CONNECT_TIMEOUT_S:.0f} s")
            if not proto.handshake.result():
                raise ConnectionError(proto.closed.result() if proto.closed.done() else "handshake failed")
            tls = proto._quic.tls
            if self.identify(tls._peer_certificate, list(tls._peer_certificate_chain),
                             ExtendedKeyUsageOID.SERVER_AUTH) != peer:
                raise ConnectionError(f"the server at {host}:{port} is not validator {peer}")
            wake.clear()  # it dialed us before this link came up: nothing to check
            self._linked(peer)
            stream = proto._quic.get_next_available_stream_id()
            while True:
                getter, waker = asyncio.ensure_future(q.get()), asyncio.ensure_future(wake.wait())
                waiting: set[asyncio.Future[Any]] = {getter, waker, proto.closed}
                try:
                    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    getter.cancel()
                    waker.cancel()
                if getter in done and not getter.cancelled():
                    proto._quic.send_stream_data(stream, getter.result())
                    proto.transmit()
                    self.stats.sent += 1
                if proto.closed.done():
                    return True, proto.closed.result()
                if waker in done:
                    wake.clear()  # the peer dialed us again: if it restarted, this connection leads nowhere
                    if not await proto.probe(PROBE_TIMEOUT_S):
                        return True, "no answer to a PING after the peer dialed us again (restarted?)"

    async def close(self) -> None:
        await self._stop_senders()
        if self._server is not None:
            self._server.close()
            for _ in range(2):  # the UDP socket is released by a callback the loop runs next
                await asyncio.sleep(0)
