"""A bounded DNS response cache: byte budget with LRU eviction, TTL expiry against passed-in time,
negative caching (RFC 2308) and serve-stale (RFC 8767).

Entries are whole responses keyed by (qname, qtype, qclass): the resolver answers a repeated question
exactly as the upstream did, with TTLs decremented by the time spent in the cache. The budget counts
the wire size of each entry plus a fixed overhead, so a flood of distinct names cannot grow memory
beyond `max_bytes`.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

__all__ = ["ENTRY_OVERHEAD", "STALE_ANSWER_TTL", "CacheHit", "CacheKey", "CacheStats", "DNSCache", "Kind", "classify"]

RdataType = dns.rdatatype.RdataType
ENTRY_OVERHEAD = 128  # bytes charged per entry for the key and bookkeeping
STALE_ANSWER_TTL = 30  # RFC 8767 section 4: TTL of a stale answer
CacheKey = tuple[dns.name.Name, int, int]


class Kind(enum.Enum):
    POSITIVE = "positive"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"


@dataclass
class _Entry:
    wire: bytes
    kind: Kind
    stored: float
    ttl: int
    size: int


@dataclass(frozen=True)
class CacheHit:
    response: dns.message.Message  # TTLs already decremented (or STALE_ANSWER_TTL when stale)
    kind: Kind
    stale: bool


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stale_hits: int = 0
    inserts: int = 0
    evictions: int = 0
    uncacheable: int = 0


class DNSCache:
    """`max_ttl`/`max_negative_ttl` cap what upstreams ask for (RFC 2308 section 5 suggests 1-3 hours
    for negative answers); `stale_window` is how long past expiry an entry may still be served when
    every upstream fails (RFC 8767 suggests 1-3 days)."""

    def __init__(
        self,
        max_bytes: int = 16 << 20,
        *,
        max_ttl: int = 86400,
        max_negative_ttl: int = 10800,
        stale_window: int = 86400,
    ) -> None:
        if max_bytes <= ENTRY_OVERHEAD:
            raise ValueError("cache budget too small")
        self.max_bytes = max_bytes
        self.max_ttl = max_ttl
        self.max_negative_ttl = max_negative_ttl
        self.stale_window = stale_window
        self.size = 0
        self.stats = CacheStats()
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    # --- insertion ----------------------------------------------------------------------------------

    def put(self, response: dns.message.Message, now: float) -> bool:
        """Cache `response` under its question; returns whether it was cacheable."""
        if len(response.question) != 1 or response.flags & dns.flags.TC:
            self.stats.uncacheable += 1
            return False
        q = response.question[0]
        classified = classify(response)
        if classified is None:
            self.stats.uncacheable += 1
            return False
        kind, ttl = classified
        ttl = min(ttl, self.max_ttl if kind is Kind.POSITIVE else self.max_negative_ttl)
        if ttl <= 0:
            self.stats.uncacheable += 1
            return False
        wire = response.to_wire()
        size = len(wire) + ENTRY_OVERHEAD
        if size > self.max_bytes:
            self.stats.uncacheable += 1
            return False
        key: CacheKey = (q.name.canonicalize(), int(q.rdtype), int(q.rdclass))
        self._remove(key)
        self._entries[key] = _Entry(wire, kind, now, ttl, size)
        self.size += size
        self.stats.inserts += 1
        while self.size > self.max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)
            self.stats.evictions += 1
        assert self.size <= self.max_bytes
        return True

    def _remove(self, key: CacheKey) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.size -= entry.size

    # --- lookup -------------------------------------------------------------------------------------

    def get(
        self, qname: dns.name.Name, qtype: int, now: float, qclass: int = dns.rdataclass.IN
    ) -> CacheHit | None:
        """A fresh entry, or None. Expired entries stay (for serve-stale) until past the stale window."""
        key: CacheKey = (qname.canonicalize(), int(qtype), int(qclass))
        entry = self._entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return None
        age = now - entry.stored
        if age >= entry.ttl:
            if age >= entry.ttl + self.stale_window:
                self._remove(key)
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return CacheHit(_with_ttl(entry.wire, lambda t: max(0, t - int(age))), entry.kind, stale=False)

    def get_stale(
        self, qname: dns.name.Name, qtype: int, now: float, qclass: int = dns.rdataclass.IN
    ) -> CacheHit | None:
        """RFC 8767: when resolution failed, an expired entry still inside the stale window, with a
        short TTL so clients come back soon."""
        key: CacheKey = (qname.canonicalize(), int(qtype), int(qclass))
        entry = self._entries.get(key)
        if entry is None or now - entry.stored >= entry.ttl + self.stale_window:
            return None
        self.stats.stale_hits += 1
        age = now - entry.stored
        if age < entry.ttl:  # still fresh after all
            return CacheHit(_with_ttl(entry.wire, lambda t: max(0, t - int(age))), entry.kind, stale=False)
        return CacheHit(_with_ttl(entry.wire, lambda t: min(t, STALE_ANSWER_TTL)), entry.kind, stale=True)

    def expire(self, now: float) -> int:
        """Drop entries past their stale window; returns how many (for periodic housekeeping)."""
        dead = [k for k, e in self._entries.items() if now - e.stored >= e.ttl + self.stale_window]
        for key in dead:
            self._remove(key)
        return len(dead)


def classify(response: dns.message.Message) -> tuple[Kind, int] | None:
    """The cache kind and TTL of a response, or None if it must not be cached (errors, referrals,
    negative answers without an SOA: RFC 2308 section 5)."""
    rcode = response.rcode()
    q = response.question[0]
    if rcode == dns.rcode.NOERROR and _answers(response, q.name, q.rdtype):
        ttls = [r.ttl for r in response.answer]
        return Kind.POSITIVE, min(ttls)
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return None
    soa = next((r for r in response.authority if r.rdtype == RdataType.SOA), None)
    if soa is None or len(soa) == 0:
        return None
    negative_ttl = min(soa.ttl, int(soa[0].minimum))  # RFC 2308 section 5
    if response.answer:  # CNAME chain ending in a negative answer: bounded by the chain too
        negative_ttl = min([negative_ttl, *(r.ttl for r in response.answer)])
    return (Kind.NXDOMAIN if rcode == dns.rcode.NXDOMAIN else Kind.NODATA), negative_ttl


def _answers(response: dns.message.Message, qname: dns.name.Name, qtype: int) -> bool:
    """True if the answer section ends with data for the question (following CNAMEs)."""
    name = qname
    for _ in range(16):
        rrset = next((r for r in response.answer if r.name == name and r.rdtype in (qtype, RdataType.CNAME)), None)
        if rrset is None:
            return False
        if rrset.rdtype == qtype or qtype == RdataType.ANY:
            return True
        name = rrset[0].target
    return False


def _with_ttl(wire: bytes, adjust: Callable[[int], int]) -> dns.message.Message:
    msg = dns.message.from_wire(wire)
    for section in (msg.answer, msg.authority, msg.additional):
        for rrset in section:
            rrset.ttl = adjust(rrset.ttl)
    return msg
