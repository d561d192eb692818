"""Abuse limits for the HTTP API: no single client can exhaust what every client shares.

* Token buckets, per client IP and global, separately for reads and writes: an exhausted bucket gets
  429 with a Retry-After header naming when the next request would be admitted. Account registrations
  have their own, much slower, per-IP bucket (`admit_registration`): accounts are free, and each brings
  its own quotas, so one address must not mint them in bulk through this node.
* Connection guard: at most `max_connections_per_ip` open connections per IP and `max_connections` in
  all, and a connection that has not completed a request's headers within `header_timeout_s` of
  opening (or of its previous response) is closed, so slow partial-header clients cannot hold slots.

Driver code (wall clock, sockets); no protocol logic.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Middleware

__all__ = ["ConnectionGuard", "GuardLimits", "RateLimiter", "Refusal", "TokenBucket", "client_ip",
           "rate_limit_middleware", "retry_after_s", "too_many"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class GuardLimits:
    read_rate: float = 100.0  # requests per second per IP
    read_burst: float = 200.0
    write_rate: float = 10.0
    write_burst: float = 20.0
    global_write_rate: float = 500.0
    global_write_burst: float = 1000.0
    registration_rate: float = 10.0 / 3600  # new accounts per second per IP: 10 an hour
    registration_burst: float = 10.0
    max_tracked_ips: int = 100_000
    max_connections: int = 1024
    max_connections_per_ip: int = 32
    header_timeout_s: float = 10.0


class TokenBucket:
    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.stamp = burst, now

    def take(self, now: float) -> float:
        """0 if a token was taken, else seconds until one will be available."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, limits: GuardLimits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits, self.clock = limits, clock
        self._reads: OrderedDict[str, TokenBucket] = OrderedDict()
        self._writes: OrderedDict[str, TokenBucket] = OrderedDict()
        self._registrations: OrderedDict[str, TokenBucket] = OrderedDict()
        self._global_writes = TokenBucket(limits.global_write_rate, limits.global_write_burst, clock())

    def _bucket(self, table: OrderedDict[str, TokenBucket], ip: str, rate: float, burst: float,
                now: float) -> TokenBucket:
        bucket = table.get(ip)
        if bucket is None:
            bucket = table[ip] = TokenBucket(rate, burst, now)
            if len(table) > self.limits.max_tracked_ips:  # forget the least recently seen client
                table.popitem(last=False)
        else:
            table.move_to_end(ip)
        return bucket

    def admit(self, ip: str, write: bool) -> float:
        """0 to admit the request, else the Retry-After in seconds."""
        now, lim = self.clock(), self.limits
        if write:
            wait = self._bucket(self._writes, ip, lim.write_rate, lim.write_burst, now).take(now)
            if wait:
                return wait
            return self._global_writes.take(now)
        return self._bucket(self._reads, ip, lim.read_rate, lim.read_burst, now).take(now)

    def admit_registration(self, ip: str) -> float:
        """0 to let `ip` register one more account now, else the Retry-After in seconds (on top of the
        write buckets the request already passed)."""
        now, lim = self.clock(), self.limits
        return self._bucket(self._registrations, ip, lim.registration_rate, lim.registration_burst, now).take(now)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def client_ip(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport is not None else None
    return str(peer[0]) if peer else "?"


def retry_after_s(wait: float) -> int:
    """Whole seconds for Retry-After: never 0, so a client does not retry at once."""
    return max(1, math.ceil(wait))


def too_many(wait: float, what: str = "requests") -> web.Response:
    """The 429 answer for a client that must wait `wait` seconds."""
    retry = retry_after_s(wait)
    return web.json_response({"error": f"rate: too many {what} from this client, retry in {retry} s",
                              "field": "rate"}, status=429, headers={"Retry-After": str(retry)})


Refusal = Callable[[web.Request, float], web.Response]


def rate_limit_middleware(limiter: RateLimiter, refusal: Refusal | None = None) -> Middleware:
    """`refusal(request, wait)` answers a request over its limit, in the form its protocol expects (an ACME
    problem document under /acme); by default `too_many`."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        wait = limiter.admit(client_ip(request), request.method in WRITE_METHODS)
        if wait:
            return refusal(request, wait) if refusal is not None else too_many(wait)
        return await handler(request)

    return middleware


class ConnectionGuard:
    """Wraps aiohttp's protocol factory: counts connections per IP and closes idle header-less ones.

    `mark_active(transport)` is called by a middleware once a request's headers have arrived."""

    def __init__(self, limits: GuardLimits) -> None:
        self.limits = limits
        self._per_ip: dict[str, int] = {}
        self._open = 0
        self._waiting: dict[int, asyncio.TimerHandle] = {}

    def factory(self, inner: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _GuardedProtocol(self, inner())

    def _opened(self, transport: asyncio.BaseTransport) -> str | None:
        """Count a new connection; None (and the connection aborted) if it is over a limit."""
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else "?"
        lim = self.limits
        if self._open >= lim.max_connections or self._per_ip.get(ip, 0) >= lim.max_connections_per_ip:
            transport.abort()  # type: ignore[attr-defined]
            return None
        self._open += 1
        self._per_ip[ip] = self._per_ip.get(ip, 0) + 1
        self._arm(transport)
        return ip

    def _closed(self, ip: str, transport: asyncio.BaseTransport) -> None:
        self._open -= 1
        left = self._per_ip[ip] - 1
        if left:
            self._per_ip[ip] = left
        else:
            del self._per_ip[ip]
        handle = self._waiting.pop(id(transport), None)
        if handle is not None:
            handle.cancel()

    def _arm(self, transport: asyncio.BaseTransport) -> None:
        loop = asyncio.get_running_loop()
        old = self._waiting.pop(id(transport), None)
        if old is not None:
            old.cancel()
        self._waiting[id(transport)] = loop.call_later(self.limits.header_timeout_s, self._expire, transport)

    def _expire(self, transport: asyncio.BaseTransport) -> None:
        self._waiting.pop(id(transport), None)
        if not transport.is_closing():
            transport.close()

    def mark_active(self, transport: asyncio.BaseTransport | None) -> None:
        """Headers of a request arrived on `transport`: stop its header deadline until the response."""
        if transport is not None:
            handle = self._waiting.pop(id(transport), None)
            if handle is not None:
                handle.cancel()

    def mark_idle(self, transport: asyncio.BaseTransport | None) -> None:
        """A response was sent: the next request's headers are due within the deadline again."""
        if transport is not None and not transport.is_closing():
            self._arm(transport)

    def middleware(self) -> Middleware:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            self.mark_active(request.transport)
            try:
                return await handler(request)
            finally:
                if request.path.split("/")[1:2] != ["stream"]:  # websockets stay open by design
                    self.mark_idle(request.transport)

        return middleware


class _GuardedProtocol(asyncio.Protocol):
    """Forwards every transport callback to aiohttp's handler, counting the connection on the way."""

    def __init__(self, guard: ConnectionGuard, inner: asyncio.Protocol) -> None:
        self.guard, self.inner = guard, inner
        self.ip: str | None = None
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.ip = self.guard._opened(transport)
        if self.ip is not None:
            self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ip is None:
            return
        assert self.transport is not None
        self.guard._closed(self.ip, self.transport)
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received()

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()
