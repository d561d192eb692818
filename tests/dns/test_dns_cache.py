"""DNSCache: TTL expiry with passed-in time, RFC 2308 negative caching, LRU byte budget, serve-stale."""

from __future__ import annotations

import dns.message
import dns.rcode
import dns.rrset

from trustchain.dns.cache import STALE_ANSWER_TTL, DNSCache, Kind


def positive(name: str, ttl: int = 300, address: str = "192.0.2.1") -> dns.message.Message:
    q = dns.message.make_query(name, "A")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", address))
    return r


def negative(name: str, rcode: int, soa_ttl: int = 3600, minimum: int = 60) -> dns.message.Message:
    r = dns.message.make_response(dns.message.make_query(name, "A"))
    r.set_rcode(rcode)
    r.authority.append(dns.rrset.from_text("example.", soa_ttl, "IN", "SOA",
                                           f"ns1.example. h.example. 1 3600 600 86400 {minimum}"))
    return r


def test_positive_entries_expire_and_ttl_counts_down() -> None:
    cache = DNSCache()
    assert cache.put(positive("a.example.", 300), now=1000)
    hit = cache.get(dns.name.from_text("A.EXAMPLE."), 1, 1100)
    assert hit is not None and hit.kind is Kind.POSITIVE and hit.response.answer[0].ttl == 200
    assert cache.get(dns.name.from_text("a.example."), 1, 1300) is None


def test_negative_ttl_is_min_of_soa_ttl_and_minimum() -> None:
    cache = DNSCache()
    assert cache.put(negative("nx.example.", dns.rcode.NXDOMAIN, soa_ttl=3600, minimum=60), now=0)
    assert cache.put(negative("nodata.example.", dns.rcode.NOERROR, soa_ttl=30, minimum=600), now=0)
    nx = cache.get(dns.name.from_text("nx.example."), 1, 59)
    assert nx is not None and nx.kind is Kind.NXDOMAIN and nx.response.rcode() == dns.rcode.NXDOMAIN
    assert cache.get(dns.name.from_text("nx.example."), 1, 60) is None
    nodata = cache.get(dns.name.from_text("nodata.example."), 1, 29)
    assert nodata is not None and nodata.kind is Kind.NODATA
    assert cache.get(dns.name.from_text("nodata.example."), 1, 30) is None


def test_uncacheable_responses() -> None:
    cache = DNSCache()
    no_soa = dns.message.make_response(dns.message.make_query("x.example.", "A"))
    no_soa.set_rcode(dns.rcode.NXDOMAIN)
    servfail = dns.message.make_response(dns.message.make_query("y.example.", "A"))
    servfail.set_rcode(dns.rcode.SERVFAIL)
    assert not cache.put(no_soa, 0) and not cache.put(servfail, 0)  # RFC 2308 section 5
    assert cache.stats.uncacheable == 2 and len(cache) == 0


def test_byte_budget_evicts_least_recently_used() -> None:
    one = len(positive("n0.example.").to_wire()) + 128
    cache = DNSCache(max_bytes=one * 3 + 10)
    for i in range(3):
        cache.put(positive(f"n{i}.example."), 0)
    assert cache.get(dns.name.from_text("n0.example."), 1, 1) is not None  # n0 becomes most recent
    cache.put(positive("n3.example."), 1)
    assert cache.size <= cache.max_bytes and len(cache) == 3 and cache.stats.evictions == 1
    assert cache.get(dns.name.from_text("n1.example."), 1, 2) is None  # the LRU one went
    assert cache.get(dns.name.from_text("n0.example."), 1, 2) is not None


def test_serve_stale_within_window_only() -> None:
    cache = DNSCache(stale_window=1000)
    cache.put(positive("s.example.", 100), 0)
    assert cache.get(dns.name.from_text("s.example."), 1, 500) is None
    stale = cache.get_stale(dns.name.from_text("s.example."), 1, 500)
    assert stale is not None and stale.stale and stale.response.answer[0].ttl == STALE_ANSWER_TTL
    assert cache.get_stale(dns.name.from_text("s.example."), 1, 1100) is None
    assert cache.expire(1100) == 1 and len(cache) == 0
