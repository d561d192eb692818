"""Response rate limiting (RRL), modelled on Knot DNS: a token bucket per (client prefix, response
class), with "slip" so that a spoofed victim still gets a truncated reply now and then and can retry
over TCP, plus one global bucket that caps the total UDP response rate.

Why per prefix and class: reflection attacks spoof one victim (or its network), and asking for the
same large answer again and again; grouping by /24 (IPv4) or /56 (IPv6) and by answer class throttles
exactly that traffic while leaving other clients and other answers alone. Time is passed in (seconds).
"""

from __future__ import annotations

import enum
import ipaddress
from collections import OrderedDict
from dataclasses import dataclass

__all__ = ["V4_PREFIX", "V6_PREFIX", "Action", "RRLStats", "ResponseRateLimiter", "client_prefix", "truncated_reply"]

V4_PREFIX = 24
V6_PREFIX = 56


class Action(enum.Enum):
    SEND = "send"  # within the limit
    DROP = "drop"  # over the limit: send nothing
    SLIP = "slip"  # over the limit, but send a truncated (TC=1) reply so a real client retries over TCP


@dataclass
class RRLStats:
    allowed: int = 0
    dropped: int = 0
    slipped: int = 0
    global_dropped: int = 0
    evicted_buckets: int = 0


@dataclass
class _Bucket:
    tokens: float
    updated: float
    limited: int = 0  # responses limited so far (drives slip)


def client_prefix(address: str, v4_prefix: int = V4_PREFIX, v6_prefix: int = V6_PREFIX) -> str:
    """The network a client address is accounted to; unparseable addresses share one bucket."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return "invalid"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    bits = v4_prefix if ip.version == 4 else v6_prefix
    return str(ipaddress.ip_network(f"{ip}/{bits}", strict=False))


class ResponseRateLimiter:
    """`rate` responses per second per (prefix, class), with bursts of up to `burst` (default: one
    second's worth); `slip` = N sends every N-th limited response truncated (0: never, 1: always);
    `global_rate` (None: off) caps all responses together. The bucket table holds at most
    `table_size` entries, least recently used evicted first, so a spoofed-source flood cannot grow it.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        slip: int = 2,
        global_rate: float | None = None,
        global_burst: float | None = None,
        table_size: int = 65536,
        v4_prefix: int = V4_PREFIX,
        v6_prefix: int = V6_PREFIX,
    ) -> None:
        if rate <= 0 or slip < 0 or table_size < 1:
            raise ValueError("RRL needs rate > 0, slip >= 0 and table_size >= 1")
        if global_rate is not None and global_rate <= 0:
            raise ValueError("global_rate must be positive")
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self.slip = slip
        self.global_rate = global_rate
        self.global_burst = global_burst if global_burst is not None else max(1.0, global_rate or 0.0)
        self.table_size = table_size
        self.v4_prefix, self.v6_prefix = v4_prefix, v6_prefix
        self.stats = RRLStats()
        self._buckets: OrderedDict[tuple[str, str], _Bucket] = OrderedDict()
        self._global: _Bucket | None = None
        self._prefixes: dict[str, str] = {}  # memo of client_prefix (parsing addresses is the slow part)

    def check(self, client: str, now: float, response_class: str = "") -> Action:
        """Account one response to `client` (an IP address string); `response_class` distinguishes
        answer kinds (e.g. "nxdomain:example.") that are limited separately."""
        if self.global_rate is not None and not self._take_global(now):
            self.stats.global_dropped += 1
            self.stats.dropped += 1
            return Action.DROP
        prefix = self._prefixes.get(client)
        if prefix is None:
            if len(self._prefixes) >= self.table_size:
                self._prefixes.clear()  # bounded: a spoofed-source flood only costs re-parsing
            prefix = self._prefixes[client] = client_prefix(client, self.v4_prefix, self.v6_prefix)
        key = (prefix, response_class)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.table_size:
                self._buckets.popitem(last=False)
                self.stats.evicted_buckets += 1
        else:
            self._buckets.move_to_end(key)
            _refill(bucket, now, self.rate, self.burst)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            self.stats.allowed += 1
            return Action.SEND
        bucket.limited += 1
        if self.slip and bucket.limited % self.slip == 0:
            self.stats.slipped += 1
            return Action.SLIP
        self.stats.dropped += 1
        return Action.DROP

    def _take_global(self, now: float) -> bool:
        assert self.global_rate is not None
        if self._global is None:
            self._global = _Bucket(self.global_burst, now)
        else:
            _refill(self._global, now, self.global_rate, self.global_burst)
        if self._global.tokens >= 1.0:
            self._global.tokens -= 1.0
            return True
        return False

    def __len__(self) -> int:
        return len(self._buckets)


def _refill(bucket: _Bucket, now: float, rate: float, burst: float) -> None:
    elapsed = max(0.0, now - bucket.updated)  # a clock stepping back must not mint tokens
    bucket.tokens = min(burst, bucket.tokens + elapsed * rate)
    bucket.updated = max(bucket.updated, now)


def truncated_reply(response_wire: bytes) -> bytes:
    """The "slip" reply: header and question of `response_wire` with TC=1 and no records, so a real
    client retries over TCP while a reflection victim receives a tiny packet."""
    if len(response_wire) < 12:
        return b""
    qdcount = int.from_bytes(response_wire[4:6], "big")
    pos = 12
    for _ in range(min(qdcount, 1)):
        while pos < len(response_wire):
            length = response_wire[pos]
            if length == 0:
                pos += 1
                break
            if length & 0xC0:
                pos += 2
                break
            pos += 1 + length
        pos += 4
    if pos > len(response_wire):
        return b""
    flags = int.from_bytes(response_wire[2:4], "big") | 0x0200
    counts = (min(qdcount, 1)).to_bytes(2, "big") + bytes(6)
    return response_wire[:2] + flags.to_bytes(2, "big") + counts + response_wire[12:pos]
