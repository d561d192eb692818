"""Peer transport over QUIC (aioquic) with mutual TLS 1.3.

Every validator holds a node certificate issued by the cluster's transport CA (generated with the
genesis configuration by `cluster`; in production by the network's bootstrap ceremony). A node dials
each peer, checks the server certificate against the transport CA *and* the peer's validator name
(the certificate's SAN), and presents its own certificate. The listening side requests the client
certificate (aioquic only requests one when asked: see `_require_client_certificate`), verifies its
chain against the transport CA after the handshake, and takes the sender's validator id from the
certificate's common name, so every received frame is attributed to an authenticated peer; a peer
without a valid certificate is disconnected before any frame is delivered.

Frames on the dialer's one bidirectional stream use the TCP transport's framing (length, channel,
payload). Bounded per-peer queues and reconnect with backoff behave as in `transport_tcp`.
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
from cryptography.x509.oid import NameOID

from reference_node.config import NodeConfig
from reference_node.transport_tcp import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    MAX_FRAME,
    Deliver,
    TransportStats,
    frame,
)

ALPN = "trustchain-peer/1"
CONNECT_TIMEOUT_S = 5.0


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
                self.owner.stats.received += 1
                self.owner.deliver(self.sender, channel, payload)
        elif isinstance(event, ConnectionTerminated):
            self.buffers.clear()


class QUICTransport:
    def __init__(self, me: int, listen: tuple[str, int], peers: dict[int, tuple[str, int]],
                 names: dict[int, str], cert: Path, key: Path, ca: Path, queue_size: int = 4096) -> None:
        self.me = me
        self.listen = listen
        self.peers = {p: a for p, a in peers.items() if p != me}
        self.names = names
        self.ids_by_name = {n: i for i, n in names.items()}
        self.cert, self.key, self.ca = cert, key, ca
        self.queue_size = queue_size
        self.stats = TransportStats()
        self._queues: dict[int, asyncio.Queue[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._server: QuicServer | None = None
        self._deliver: Deliver | None = None

    @classmethod
    def from_config(cls, cfg: NodeConfig) -> QUICTransport:
        c = cfg.consensus
        assert c.listen is not None and c.tls_cert is not None and c.tls_key is not None and c.tls_ca is not None
        return cls(cfg.replica_id, c.listen, {v.id: v.address for v in c.validators},
                   {v.id: v.name for v in c.validators}, c.tls_cert, c.tls_key, c.tls_ca, c.send_queue)

    def _configuration(self, is_client: bool, server_name: str | None = None) -> QuicConfiguration:
        conf = QuicConfiguration(is_client=is_client, alpn_protocols=[ALPN], idle_timeout=10.0,
                                 verify_mode=ssl.CERT_REQUIRED, server_name=server_name,
                                 max_datagram_frame_size=None)
        conf.load_cert_chain(str(self.cert), str(self.key))
        conf.load_verify_locations(cafile=str(self.ca))
        return conf

    def authenticate(self, cert: x509.Certificate | None, chain: list[x509.Certificate]) -> int | None:
        """The validator id a client certificate proves, or None."""
        if cert is None:
            return None
        try:
            verify_certificate(certificate=cert, chain=chain, cafile=str(self.ca))
        except Exception:  # aioquic raises its own alert types for every failure
            return None
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = cns[0].value if cns else None
        peer = self.ids_by_name.get(str(name)) if name is not None else None
        return peer if peer is not None and peer != self.me else None

    def deliver(self, sender: int, channel: int, payload: bytes) -> None:
        if self._deliver is not None:
            self._deliver(sender, channel, payload)

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._server = await serve(self.listen[0], self.listen[1], configuration=self._configuration(False),
                                   create_protocol=lambda *a, **k: _PeerServerProtocol(self, *a, **k))
        for peer in sorted(self.peers):
            self._queues[peer] = asyncio.Queue(self.queue_size)
            self._tasks.append(asyncio.create_task(self._sender(peer), name=f"quic-send-{peer}"))

    def send(self, peer: int, channel: int, data: bytes) -> bool:
        q = self._queues.get(peer)
        if q is None:
            return False
        try:
            q.put_nowait(frame(channel, data))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return False
        return True

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
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._server is not None:
            self._server.close()
