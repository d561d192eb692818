"""Peer transport: length-prefixed frames over TCP.

Frame: 4-byte big-endian length of what follows, 1-byte channel, payload. The first frame on a
connection is HELLO with the dialer's 8-byte validator id. Each node dials every peer and uses that
connection only to send; it receives on the connections peers dial to it. No authentication here:
every consensus and signing message is signed by its sender and verified by the protocol code, so a
forged HELLO gains nothing (QUIC with mutual TLS adds confidentiality and peer authentication).

Back-pressure: each peer has a bounded queue; when it is full (the peer is slow or down) new messages
are dropped and counted, never buffered without limit. PBFT retransmits what matters (view-change
resends, state transfer, client retransmission), so dropping under overload is safe.
Reconnect: exponential backoff from 50 ms to 2 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

Deliver = Callable[[int, int, bytes], None]  # (sender id, channel, payload)

CHANNEL_CONSENSUS, CHANNEL_SIGNING, CHANNEL_HELLO = 0, 1, 255
MAX_FRAME = 1 << 27
BACKOFF_MIN, BACKOFF_MAX = 0.05, 2.0


@dataclass
class TransportStats:
    sent: int = 0
    received: int = 0
    dropped: int = 0
    connects: int = 0
    connect_failures: int = 0
    bad_frames: int = 0
    per_peer_queue: dict[int, int] = field(default_factory=dict)


def frame(channel: int, payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload) + 1, channel) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(4)
    (length,) = struct.unpack(">I", header)
    if not 1 <= length <= MAX_FRAME:
        raise ValueError(f"frame length {length} out of range")
    body = await reader.readexactly(length)
    return body[0], body[1:]


class TCPTransport:
    def __init__(self, me: int, listen: tuple[str, int], peers: dict[int, tuple[str, int]],
                 queue_size: int = 4096) -> None:
        self.me = me
        self.listen = listen
        self.peers = {p: a for p, a in peers.items() if p != me}
        self.queue_size = queue_size
        self.stats = TransportStats()
        self._queues: dict[int, asyncio.Queue[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._server: asyncio.Server | None = None
        self._deliver: Deliver | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self.bound: tuple[str, int] | None = None

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._server = await asyncio.start_server(self._on_conn, self.listen[0], self.listen[1])
        sock = self._server.sockets[0].getsockname()
        self.bound = (sock[0], sock[1])
        for peer in sorted(self.peers):
            self._queues[peer] = asyncio.Queue(self.queue_size)
            self._tasks.append(asyncio.create_task(self._sender(peer), name=f"tcp-send-{peer}"))

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
        backoff = BACKOFF_MIN
        host, port = self.peers[peer]
        while True:
            writer: asyncio.StreamWriter | None = None
            try:
                _, writer = await asyncio.open_connection(host, port)
                self.stats.connects += 1
                writer.write(frame(CHANNEL_HELLO, struct.pack(">Q", self.me)))
                backoff = BACKOFF_MIN
                while True:
                    data = await q.get()
                    writer.write(data)
                    await writer.drain()  # socket-level back-pressure
                    self.stats.sent += 1
            except (OSError, ConnectionError, asyncio.IncompleteReadError):
                self.stats.connect_failures += 1
                await asyncio.sleep(backoff)
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
            while True:
                channel, payload = await read_frame(reader)
                self.stats.received += 1
                if self._deliver is not None:
                    self._deliver(sender, channel, payload)
        except (OSError, ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._conns.discard(writer)
            writer.close()

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._server is not None:
            self._server.close()
        for w in list(self._conns):
            w.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
