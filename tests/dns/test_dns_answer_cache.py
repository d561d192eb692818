"""The authoritative answer cache: a hit must be byte-identical to a fresh render (ID aside), every
zone load must invalidate, and malformed or unusual queries must be answered exactly as before."""

from __future__ import annotations

import dataclasses

import dns.edns
import dns.message
import dns.opcode
import dns.rcode
import pytest
from dns_testutil import NOW, ORIGIN, make_zone, seed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustchain.dns.answer_cache import ENTRY_OVERHEAD, AnswerCache, simple_query
from trustchain.dns.authority import Authority
from trustchain.dns.denial import NSEC3Params
from trustchain.dns.dnssec import SigningPolicy, sign_zone
from trustchain.dns.keys import KeySet
from trustchain.dns.zone import AddRecords, ReplaceRRset, Zone, ZoneUpdate

KEYS = KeySet.initial(seed("ksk"), seed("zsk"))


def pair(nsec3: bool = False, cache_bytes: int = 1 << 20, table: bool = False) -> tuple[Authority, Authority, Zone]:
    """(cached, uncached) authorities serving the same signed zone (`table`: the answer table in front of
    the cache; off, so that the cache itself is what is checked)."""
    zone = make_zone()
    zone.apply(ZoneUpdate(ORIGIN, (AddRecords("big", "A", 60, tuple(f"192.0.2.{i}" for i in range(1, 120))),)))
    signed = sign_zone(zone, KEYS, NOW, SigningPolicy(nsec3=NSEC3Params() if nsec3 else None))
    cached, plain = Authority(answer_cache_bytes=cache_bytes, answer_table=table), Authority(answer_cache_bytes=0)
    cached.load(zone, signed)
    plain.load(zone, signed)
    assert cached.cache is not None and plain.cache is None
    return cached, plain, zone


def with_id(wire: bytes, msg_id: int) -> bytes:
    return msg_id.to_bytes(2, "big") + wire[2:]


def queries() -> list[bytes]:
    out = []
    names = ("www.tc.example.", "WwW.Tc.ExAmPlE.", "nope.tc.example.", "alias2.tc.example.", "deep.tc.example.",
             "tc.example.", "big.tc.example.", "x.org.", "dangling.tc.example.")
    for name in names:
        for rdtype in ("A", "AAAA", "TXT", "ANY", "DNSKEY", "AXFR"):
            for do in (True, False):
                for payload in (512, 1232, 4096):
                    out.append(dns.message.make_query(name, rdtype, want_dnssec=do, payload=payload).to_wire())
            out.append(dns.message.make_query(name, rdtype, use_edns=False).to_wire())
    out.append(dns.message.make_query("www.tc.example.", "A", use_edns=1).to_wire())  # BADVERS
    return out


@pytest.mark.parametrize("nsec3", [False, True])
def test_cached_answers_are_byte_identical_to_fresh_ones_except_the_id(nsec3: bool) -> None:
    cached, plain, _ = pair(nsec3)
    wires = queries()
    for max_udp in (None, 512, 1232):
        for wire in wires:
            first = cached.answer(with_id(wire, 1), NOW, max_udp=max_udp)
            again = cached.answer(with_id(wire, 0xBEEF), NOW, max_udp=max_udp)
            assert first == plain.answer(with_id(wire, 1), NOW, max_udp=max_udp)
            assert again == plain.answer(with_id(wire, 0xBEEF), NOW, max_udp=max_udp)
            assert again[:2] == b"\xbe\xef" and again[2:] == first[2:]
    assert cached.cache is not None
    assert cached.cache.stats.hits == len(wires) * 3  # every second ask was a hit
    assert cached.cache.stats.inserts == len(wires) * 3
    assert cached.stats == plain.stats  # counters (NXDOMAIN, REFUSED, truncated...) replayed on hits
    assert cached.stats.truncated > 0 and cached.stats.nxdomain > 0 and cached.stats.refused > 0


def test_zone_update_and_resign_invalidate() -> None:
    cached, plain, zone = pair()
    q = dns.message.make_query("www.tc.example.", "A", want_dnssec=True).to_wire()
    before = cached.answer(q, NOW, max_udp=1232)
    assert cached.answer(q, NOW, max_udp=1232) == before
    signed = sign_zone(zone, KEYS, NOW)
    zone.apply(ZoneUpdate(ORIGIN, (ReplaceRRset("www", "A", 300, ("198.51.100.7",)),)))
    signed = sign_zone(zone, KEYS, NOW + 10, previous=signed)
    for auth in (cached, plain):
        auth.load(zone, signed)
    after = cached.answer(q, NOW + 10, max_udp=1232)
    assert after == plain.answer(q, NOW + 10, max_udp=1232)
    assert dns.message.from_wire(after).answer[0][0].to_text() == "198.51.100.7"
    # a re-sign at the same serial changes only the signatures: still a fresh render
    resigned = sign_zone(zone, KEYS, NOW + 3 * 86400, previous=signed)
    assert resigned.is_current(zone)
    cached.load(zone, resigned)
    plain.load(zone, resigned)
    later = cached.answer(q, NOW + 3 * 86400, max_udp=1232)
    assert later != after and later == plain.answer(q, NOW + 3 * 86400, max_udp=1232)
    assert cached.cache is not None and cached.cache.stats.invalidations == 2
    cached.unload(zone.origin)
    refused = cached.answer(q, NOW, max_udp=1232)
    assert dns.message.from_wire(refused).rcode() == dns.rcode.REFUSED


def test_expired_signatures_bypass_the_cache() -> None:
    cached, plain, _ = pair()
    q = dns.message.make_query("www.tc.example.", "A", want_dnssec=True).to_wire()
    assert dns.message.from_wire(cached.answer(q, NOW, max_udp=1232)).rcode() == dns.rcode.NOERROR
    late = cached.answer(q, NOW + 10**8, max_udp=1232)
    assert late == plain.answer(q, NOW + 10**8, max_udp=1232)
    assert dns.message.from_wire(late).rcode() == dns.rcode.SERVFAIL


def test_malformed_and_unusual_queries_are_answered_as_before_and_never_stored() -> None:
    cached, plain, _ = pair()
    base = dns.message.make_query("www.tc.example.", "A", want_dnssec=True)
    cookie = dns.message.make_query("www.tc.example.", "A", options=[dns.edns.GenericOption(10, b"\1" * 8)])
    two = bytearray(dns.message.make_query("www.tc.example.", "A", use_edns=False).to_wire())
    two[5] = 2  # QDCOUNT 2, one question present
    notify = dns.message.make_query("www.tc.example.", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    odd = [
        b"",
        b"\x00" * 5,
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07garbage",  # truncated question: FORMERR
        dns.message.make_response(base).to_wire(),  # a response: dropped
        cookie.to_wire(),  # EDNS option: full path
        bytes(two),
        notify.to_wire(),
        base.to_wire() + b"\x00",  # trailing garbage
    ]
    for wire in odd:
        for _ in range(2):
            assert cached.answer(wire, NOW, max_udp=1232) == plain.answer(wire, NOW, max_udp=1232)
    assert cached.cache is not None and len(cached.cache) == 0 and cached.cache.stats.hits == 0
    assert cached.stats == plain.stats and cached.stats.malformed >= 3 and cached.stats.dropped >= 3


def test_simple_query_parser() -> None:
    plain = dns.message.make_query("www.tc.example.", "A", use_edns=False).to_wire()
    edns = dns.message.make_query("www.tc.example.", "A", want_dnssec=True).to_wire()
    assert simple_query(plain) and simple_query(edns)
    assert simple_query(dns.message.make_query(".", "NS", use_edns=False).to_wire())
    assert not simple_query(dns.message.make_query("a.example.", "A", options=[dns.edns.GenericOption(10, b"x" * 8)])
                            .to_wire())
    assert not simple_query(plain[:-1]) and not simple_query(plain + b"\0") and not simple_query(edns[:-1])
    pointer = plain[:12] + b"\xc0\x0c" + plain[-4:]
    assert not simple_query(pointer)
    response = bytearray(plain)
    response[2] |= 0x80
    assert not simple_query(bytes(response))
    long_name = bytes(12) + b"".join(b"\x3f" + b"a" * 63 for _ in range(4)) + b"\0\0\1\0\1"
    assert not simple_query(long_name)  # a name over 255 bytes


def test_budget_bounds_memory_and_evicts_oldest_first() -> None:
    cached, plain, _ = pair(cache_bytes=4000)
    cache = cached.cache
    assert cache is not None
    for wire in queries():
        assert cached.answer(wire, NOW, max_udp=1232) == plain.answer(wire, NOW, max_udp=1232)
        assert cache.used <= cache.max_bytes
    assert cache.stats.evictions > 0 and 0 < len(cache) < cache.stats.inserts
    with pytest.raises(ValueError):
        AnswerCache(0)
    tiny = AnswerCache(ENTRY_OVERHEAD + 10)
    q = dns.message.make_query("www.tc.example.", "A", use_edns=False).to_wire()
    assert not tiny.put(q, None, q[:2] + bytes(100), ())  # larger than the whole budget
    assert tiny.get(q, None) is None


_FUZZ_BASE = [
    dns.message.make_query(name, rdtype, want_dnssec=do).to_wire()
    for name in ("www.tc.example.", "nope.tc.example.", "alias2.tc.example.", "x.org.")
    for rdtype in ("A", "TXT", "ANY")
    for do in (True, False)
]
FUZZ_CACHED, FUZZ_PLAIN, _ = pair(table=True)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_FUZZ_BASE),
    st.lists(st.tuples(st.integers(0, 120), st.integers(0, 255)), max_size=6),
    st.integers(0, 60),
    st.sampled_from([None, 512, 1232]),
)
def test_fuzz_cached_equals_uncached_and_never_raises(
    base: bytes, flips: list[tuple[int, int]], cut: int, max_udp: int | None
) -> None:
    data = bytearray(base)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    wire = bytes(data[: len(data) - cut] if cut < len(data) else data)
    expected = FUZZ_PLAIN.answer(wire, NOW, max_udp=max_udp)
    assert FUZZ_CACHED.answer(wire, NOW, max_udp=max_udp) == expected
    assert FUZZ_CACHED.answer(wire, NOW, max_udp=max_udp) == expected  # possibly from the cache now
    if expected:
        dns.message.from_wire(expected)


def test_stats_dataclass_fields_are_all_replayed() -> None:
    # guard: a new AuthorityStats counter must be added to the replayed fields too
    from trustchain.dns import authority

    fields = {f.name for f in dataclasses.fields(authority.AuthorityStats)}
    assert fields == {"queries", *authority._STAT_FIELDS}
