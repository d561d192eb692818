"""Requests waiting for the primary to batch them, served round-robin by client.

Why: a primary that batches in arrival order lets one client that floods valid requests push every
other client's request to the back of an ever-growing line (the simulator's explorer found honest
requests missing their bound behind a Byzantine client's bursts). Taking one request per client in
turn bounds an honest client's wait by the number of clients, not by what others send.
"""

from __future__ import annotations

from collections import deque

from trustchain.consensus.messages import Request

__all__ = ["FairQueue", "request_key"]


def request_key(req: Request) -> bytes:
    """What identifies a request for exactly-once execution: its client and timestamp."""
    return req.client + req.timestamp.to_bytes(8, "big")


class FairQueue:
    """Per-client FIFO queues and a rotation of the clients that have something queued."""

    def __init__(self) -> None:
        self._queues: dict[bytes, dict[bytes, Request]] = {}
        self._turns: deque[bytes] = deque()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __contains__(self, key: bytes) -> bool:
        queue = self._queues.get(key[:-8])
        return queue is not None and key in queue

    def add(self, req: Request) -> None:
        key = request_key(req)
        queue = self._queues.get(req.client)
        if queue is None:
            queue = self._queues[req.client] = {}
            self._turns.append(req.client)
        if key not in queue:
            queue[key] = req
            self._size += 1

    def discard(self, key: bytes) -> None:
        client = key[:-8]
        queue = self._queues.get(client)
        if queue is not None and queue.pop(key, None) is not None:
            self._size -= 1
            if not queue:
                del self._queues[client]
                self._turns.remove(client)

    def take(self, limit: int) -> tuple[Request, ...]:
        """Up to `limit` requests, one per client in turn (a client's oldest first)."""
        out: list[Request] = []
        while len(out) < limit and self._turns:
            client = self._turns.popleft()
            queue = self._queues[client]
            key = next(iter(queue))
            out.append(queue.pop(key))
            self._size -= 1
            if queue:
                self._turns.append(client)
            else:
                del self._queues[client]
        return tuple(out)
