"""In-process publish/subscribe for the node's event streams (the HTTP API's websockets).

Topics are plain strings ("consensus", "certificates", "ct", "dns"). Each subscriber gets a bounded
queue; a slow subscriber loses events instead of holding the node back, because the node publishes from
the same event loop that drives consensus.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

__all__ = ["QUEUE_SIZE", "PubSub"]

QUEUE_SIZE = 256


class PubSub:
    """Topic -> subscriber queues. `publish` never blocks: a full queue drops the event."""

    def __init__(self) -> None:
        self.subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}

    def subscribe(self, topic: str) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.subscribers.setdefault(topic, set()).add(q)
        return q

    def unsubscribe(self, topic: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.get(topic, set()).discard(q)

    def watched(self, topic: str) -> bool:
        """Whether anyone listens on `topic`: lets the node skip building events nobody reads."""
        return bool(self.subscribers.get(topic))

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        for q in list(self.subscribers.get(topic, ())):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)
