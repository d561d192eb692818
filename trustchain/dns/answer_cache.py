"""Rendered-response cache for `Authority.answer`: a memo of a pure function, not a resolver cache.

Between two zone loads an authoritative answer depends only on the query bytes after the 2-byte
message ID, on the transport's UDP limit, and on the clock only through "are the signatures still
valid" (which `Authority` checks before using the cache). So the key is exactly that: the transport
limit and ``wire[2:]``; the value is the response without its ID, and a hit is ``wire[:2] + value``.
Keying on the exact bytes (not a parsed, case-folded question) is what makes a hit byte-identical to
a fresh render: the response echoes the question's case and compresses names against it.

Only *simple* queries are stored, as decided by `simple_query`, a tiny hand-written parser of the
header and question: opcode QUERY, QR clear, one question with an uncompressed name, no answer or
authority records, and at most one additional record which must be a bare OPT (root owner, no
options). Anything else (EDNS options such as cookies or padding, several questions, trailing bytes,
malformed input) is answered by the full dnspython path every time, exactly as without the cache.

The budget counts key and value bytes plus a fixed per-entry overhead; when full, the oldest entries
are evicted first (insertion order), so a flood of distinct names cannot grow memory. `Authority`
clears the cache whenever a zone is loaded or unloaded: that is the only way served data changes
(new serial, or a re-sign at the same serial).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MAX_BYTES", "ENTRY_OVERHEAD", "AnswerCache", "AnswerCacheStats", "StatsDelta", "simple_query"]

ENTRY_OVERHEAD = 160  # bytes charged per entry for dict slots, tuple, bytes object headers
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
_OPT = 41
StatsDelta = tuple[tuple[str, int], ...]  # AuthorityStats counters to bump on a hit, besides `queries`


@dataclass
class AnswerCacheStats:
    hits: int = 0
    misses: int = 0
    inserts: int = 0
    evictions: int = 0
    uncacheable: int = 0
    invalidations: int = 0


def simple_query(wire: bytes) -> bool:
    """Whether `wire` is a plain single-question query the cache may hold (see module docstring).

    Reads only the header, the question and an optional option-less OPT record; never raises."""
    n = len(wire)
    if n < 17 or n > 512:
        return False
    if wire[2] & 0xF8:  # QR set, or an opcode other than QUERY
        return False
    if wire[4:10] != b"\x00\x01\x00\x00\x00\x00":  # QDCOUNT 1, ANCOUNT 0, NSCOUNT 0
        return False
    arcount = (wire[10] << 8) | wire[11]
    if arcount > 1:
        return False
    pos = 12
    total = 0
    while True:
        length = wire[pos]
        if length == 0:
            pos += 1
            break
        if length & 0xC0:  # compression pointer (pointless in a question) or extended label type
            return False
        total += length + 1
        pos += length + 1
        if total > 254 or pos >= n:
            return False
    pos += 4  # QTYPE, QCLASS
    if arcount == 0:
        return pos == n
    # OPT: root owner (1 byte), TYPE 41, CLASS = payload, TTL = ext-rcode/version/flags, RDLENGTH 0
    return pos + 11 == n and wire[pos] == 0 and wire[pos + 1] == 0 and wire[pos + 2] == _OPT and wire[-2:] == b"\0\0"


class AnswerCache:
    """Bounded map (max_udp, query bytes after the ID) -> (response bytes after the ID, stats delta)."""

    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.used = 0
        self.stats = AnswerCacheStats()
        # one dict per transport limit (None = stream transports): the hot path hashes one bytes object
        self._by_limit: dict[int | None, dict[bytes, tuple[bytes, StatsDelta]]] = {}
        self._order: dict[tuple[int | None, bytes], int] = {}  # insertion order, for eviction

    def __len__(self) -> int:
        return len(self._order)

    def get(self, wire: bytes, max_udp: int | None) -> tuple[bytes, StatsDelta] | None:
        entries = self._by_limit.get(max_udp)
        hit = entries.get(wire[2:]) if entries is not None else None
        if hit is None:
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return wire[:2] + hit[0], hit[1]

    def put(self, wire: bytes, max_udp: int | None, response: bytes, delta: StatsDelta) -> bool:
        """Store `response` (the full wire, ID included) for `wire`; False if not cacheable."""
        if len(response) < 12 or response[:2] != wire[:2] or not simple_query(wire):
            self.stats.uncacheable += 1
            return False
        key, value = wire[2:], response[2:]
        size = len(key) + len(value) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            self.stats.uncacheable += 1
            return False
        entries = self._by_limit.setdefault(max_udp, {})
        if key in entries:
            return True
        while self.used + size > self.max_bytes and self._order:
            old_limit, old_key = next(iter(self._order))
            self.used -= self._order.pop((old_limit, old_key))
            del self._by_limit[old_limit][old_key]
            self.stats.evictions += 1
        entries[key] = (value, delta)
        self._order[(max_udp, key)] = size
        self.used += size
        self.stats.inserts += 1
        return True

    def clear(self) -> None:
        if self._order:
            self.stats.invalidations += 1
        self._by_limit.clear()
        self._order.clear()
        self.used = 0
