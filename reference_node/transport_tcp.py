"""Peer transport: length-prefixed frames over TCP.

Frame: 4-byte big-endian length of what follows, 1-byte channel, payload. The first frame on a
connection is HELLO with the dialer's 8-byte validator id. Each node dials every peer and uses that
connection only to send; it receives on the connections peers dial to it. No authentication here:
every consensus and signing message is signed by its sender and verified by the protocol code, so a
forged HELLO gains nothing (QUIC with mutual TLS adds confidentiality and peer authentication).

Back-pressure and reconnect (bounded per-peer queues, drops counted, backoff from 50 ms to 2 s) come
from `reference_node.transport.PeerQueues`, shared with the QUIC transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

from reference_node.listen import bind_socket
from reference_node.transport import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    CHANNEL_CONSENSUS,
    CHANNEL_HELLO,
    CHANNEL_SIGNING,
    MAX_FRAME,
    Deliver,
    LinkUp,
    PeerQueues,
    TransportStats,
    frame,
    read_frame,
)

__all__ = ["BACKOFF_MAX", "BACKOFF_MIN", "CHANNEL_CONSENSUS", "CHANNEL_HELLO", "CHANNEL_SIGNING", "MAX_FRAME",
           "Deliver", "TCPTransport", "TransportStats", "frame", "read_frame"]


class TCPTransport(PeerQueues):
    kind = "tcp"

    def __init__(self, me: int, listen: tuple[str, int], peers: dict[int, tuple[str, int]],
                 queue_size: int = 4096) -> None:
        super().__init__(me, listen, peers, queue_size)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.bound: tuple[str, int] | None = None

    async def start(self, deliver: Deliver, on_link: LinkUp | None = None) -> None:
        self._deliver, self._on_link = deliver, on_link
        self._server = await asyncio.start_server(self._on_conn, sock=bind_socket("consensus.listen", *self.listen))
        sock = self._server.sockets[0].getsockname()
        self.bound = (sock[0], sock[1])
        self._start_senders()

    def install_identity(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Plain TCP presents no certificate: a renewed node certificate changes nothing here."""

    async def _sender(self, peer: int) -> None:
        q = self._queues[peer]
        backoff = BACKOFF_MIN
        host, port = self.peers[peer]
        while True:
            writer: asyncio.StreamWriter | None = None
            try:
                _, writer = await asyncio.open_connection(host, port)
                writer.write(frame(CHANNEL_HELLO, struct.pack(">Q", self.me)))
                self._linked(peer)
                backoff = BACKOFF_MIN
                while True:
                    data = await q.get()
                    if writer.is_closing():  # the peer went away between two frames (uvloop would raise RuntimeError)
                        raise ConnectionResetError("connection lost")
                    writer.write(data)
                    await writer.drain()  # socket-level back-pressure
                    self.stats.sent += 1
            except (OSError, ConnectionError, asyncio.IncompleteReadError, RuntimeError) as exc:
                self._unlinked(peer, str(exc) or type(exc).__name__)
                await self._pause(peer, backoff)
                backoff = min(BACKOFF_MAX, backoff * 2)
            finally:
                if writer is not None:
                    writer.close()

    async def _on_conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        try:
            channel, payload = await read_frame(reader)
            if channel != CHANNEL_HELLO or len(payload) != 8:
                self.stats.bad_frames += 1
                return
            (sender,) = struct.unpack(">Q", payload)
            if sender not in self.peers:
                self.stats.bad_frames += 1
                return
            self._peer_dialed(sender)
            while True:
                channel, payload = await read_frame(reader)
                self.deliver(sender, channel, payload)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._conns.discard(writer)
            writer.close()

    async def close(self) -> None:
        await self._stop_senders()
        if self._server is not None:
            self._server.close()
        for w in list(self._conns):
            w.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
