"""What the peer transports share: framing, counters, and the per-peer bounded send queues.

`PeerQueues` owns one bounded `asyncio.Queue` of frames and one sender task per peer. `send()` never
blocks: when a peer's queue is full (the peer is slow or down) the frame is dropped and counted, never
buffered without limit; PBFT retransmits what matters (view-change resends, state transfer, client
retransmission). A subclass implements `_sender(peer)`, which dials the peer, drains its queue and
reconnects with backoff (`BACKOFF_MIN` to `BACKOFF_MAX`), and its own listener.

Rejoining quickly. A sender reports each link it brings up (`_linked`), and the node then tells that peer
how far it got (a signed STATUS, `Replica.link_up`): a peer that restarted into an idle network learns it
is behind at once. A listener reports each peer that dials in (`_peer_dialed`): that peer is up again
(it may have restarted), so a sender waiting out its backoff redials at once, and one whose link looks
established checks that it still is (a QUIC connection to a restarted peer stays open until its idle
timeout, and everything sent on it is lost).

Frame: 4-byte big-endian length of what follows, 1-byte channel, payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

Deliver = Callable[[int, int, bytes], None]  # (sender id, channel, payload)
LinkUp = Callable[[int], None]  # (peer id): our link to it just came up

log = logging.getLogger("trustchain.transport")

CHANNEL_CONSENSUS, CHANNEL_SIGNING, CHANNEL_ROOT_SIGNING, CHANNEL_KEEPALIVE, CHANNEL_HELLO = 0, 1, 2, 254, 255
CHANNEL_FEED = 3  # the observers' overlay: certified batches, checkpoints, catch-up, forwarded writes
KEEPALIVE_S = 1.0  # every peer hears from us at least this often, so liveness is known when idle
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


class PeerTransport(Protocol):
    """What the node needs from a peer transport (TCP, QUIC, or a test double)."""

    #: counters the node exports as metrics
    stats: TransportStats

    async def start(self, deliver: Deliver, on_link: LinkUp | None = None) -> None:
        """Listen and dial every peer. `deliver` gets each authenticated frame; `on_link(peer)` is called
        each time a link to `peer` comes up (first connect and every reconnect)."""
        ...

    def send(self, peer: int, channel: int, data: bytes) -> bool: ...

    def install_identity(self, chain_pem: bytes, key_pem: bytes) -> None:
        """Present this node certificate chain and key on connections made from now on (after a renewal).
        A transport without TLS ignores it; one with TLS raises ValueError if they do not match."""
        ...

    async def close(self) -> None: ...


def frame(channel: int, payload: bytes) -> bytes:
    return struct.pack(">IB", len(payload) + 1, channel) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    header = await reader.readexactly(4)
    (length,) = struct.unpack(">I", header)
    if not 1 <= length <= MAX_FRAME:
        raise ValueError(f"frame length {length} out of range")
    body = await reader.readexactly(length)
    return body[0], body[1:]


class PeerQueues:
    """Per-peer bounded queues, `send()`, sender tasks and their shutdown; subclasses add the wire."""

    kind = "peer"  # names the sender tasks: "<kind>-send-<peer>"

    def __init__(self, me: int, listen: tuple[str, int], peers: dict[int, tuple[str, int]],
                 queue_size: int = 4096) -> None:
        self.me = me
        self.listen = listen
        self.peers = {p: a for p, a in peers.items() if p != me}
        self.queue_size = queue_size
        self.stats = TransportStats()
        self._queues: dict[int, asyncio.Queue[bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._deliver: Deliver | None = None
        self._on_link: LinkUp | None = None
        self._wake: dict[int, asyncio.Event] = {}  # set when the peer dialed us: it is up (again)
        self._link_up: dict[int, bool] = {}
        self.last_heard: dict[int, float] = {}  # peer -> monotonic time of its last frame

    def deliver(self, sender: int, channel: int, payload: bytes) -> None:
        """Hand an authenticated peer's frame to the node (counted)."""
        self.stats.received += 1
        self.last_heard[sender] = time.monotonic()
        if channel == CHANNEL_KEEPALIVE:
            return
        if self._deliver is not None:
            self._deliver(sender, channel, payload)

    def _linked(self, peer: int) -> None:
        """A sender brought its link to `peer` up: counted, logged, and reported to the node."""
        self.stats.connects += 1
        self._link_up[peer] = True
        log.info("link to validator %d up", peer, extra={"event": "peer_link_up", "fields": {"peer": peer}})
        if self._on_link is not None:
            self._on_link(peer)

    def _unlinked(self, peer: int, reason: str) -> None:
        """A sender lost its link to `peer`, or failed to bring it up (logged once per outage)."""
        self.stats.connect_failures += 1
        if self._link_up.get(peer, True):  # the first failure after a link (or at start) is worth a line
            log.info("link to validator %d down: %s", peer, reason,
                     extra={"event": "peer_link_down", "fields": {"peer": peer, "reason": reason}})
        else:
            log.debug("link to validator %d: %s", peer, reason)
        self._link_up[peer] = False

    def _peer_dialed(self, peer: int) -> None:
        """`peer` just opened an authenticated connection to us: it is up, so stop backing off."""
        event = self._wake.get(peer)
        if event is not None:
            event.set()

    async def _pause(self, peer: int, seconds: float) -> None:
        """Back off for `seconds`, or less if the peer dials us meanwhile."""
        event = self._wake[peer]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), seconds)
        event.clear()

    def _start_senders(self) -> None:
        for peer in sorted(self.peers):
            self._queues[peer] = asyncio.Queue(self.queue_size)
            self._wake[peer] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._send_forever(peer), name=f"{self.kind}-send-{peer}"))
        self._tasks.append(asyncio.create_task(self._keepalive(), name=f"{self.kind}-keepalive"))

    async def _keepalive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_S)
            for q in self._queues.values():
                if q.empty():  # any queued frame already tells the peer we are alive
                    with contextlib.suppress(asyncio.QueueFull):
                        q.put_nowait(frame(CHANNEL_KEEPALIVE, b""))

    def peers_heard_within(self, seconds: float) -> list[int]:
        """Peers whose frames (keepalives included) arrived within the last `seconds`."""
        now = time.monotonic()
        return sorted(p for p, t in self.last_heard.items() if now - t <= seconds)

    def send(self, peer: int, channel: int, data: bytes) -> bool:
        """Queue a frame for `peer`; False if it is unknown or its queue is full (dropped, counted)."""
        q = self._queues.get(peer)
        if q is None:
            return False
        try:
            q.put_nowait(frame(channel, data))
        except asyncio.QueueFull:
            self.stats.dropped += 1
            return False
        return True

    def queue_depths(self) -> dict[int, int]:
        return {p: q.qsize() for p, q in self._queues.items()}

    async def _sender(self, peer: int) -> None:
        raise NotImplementedError

    async def _send_forever(self, peer: int) -> None:
        """Run `_sender(peer)` for the transport's lifetime: a sender that ended on an error it did not
        expect would leave the peer unreachable from here for good, so it is logged and started again."""
        while True:
            try:
                await self._sender(peer)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sender to validator %d failed; restarting it", peer)
                self._link_up[peer] = False
                await asyncio.sleep(BACKOFF_MAX)

    async def _stop_senders(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
