"""The precomputed answer table: every answer it gives must be byte-identical (message ID aside) to
the full dnspython path's, for any query mix; a zone change must never leave an old answer served."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from dns_testutil import NOW, ORIGIN, make_zone, seed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustchain.dns.answer_table import AnswerTable, question_key
from trustchain.dns.authority import Authority
from trustchain.dns.denial import NSEC3Params
from trustchain.dns.dnssec import SigningPolicy, sign_zone
from trustchain.dns.keys import KeySet
from trustchain.dns.zone import AddRecords, ReplaceRRset, Zone, ZoneUpdate

KEYS = KeySet.initial(seed("ksk"), seed("zsk"))
NAMES = ("www", "alias", "alias2", "dangling", "mail", "ns1", "ns2", "a.b.deep", "b.deep", "deep", "@", "big",
         "x.wild", "y.z.wild", "wild", "*.wild", "sub", "host.sub", "ns.sub", "nope", "_acme-challenge.www")
TYPES = ("A", "AAAA", "TXT", "MX", "NS", "SOA", "CNAME", "DS", "DNSKEY", "NSEC", "NSEC3PARAM", "RRSIG", "CAA",
         "SRV", "HTTPS", "ANY", "AXFR", "IXFR", "TYPE65280")


def signed_zone(nsec3: bool) -> tuple[Zone, object]:
    zone = make_zone()
    zone.apply(ZoneUpdate(ORIGIN, (
        AddRecords("big", "A", 60, tuple(f"192.0.2.{i}" for i in range(1, 60))),
        AddRecords("*.wild", "TXT", 60, ('"wildcard"',)),
        AddRecords("sub", "NS", 300, ("ns.sub",)),
        AddRecords("ns.sub", "A", 300, ("192.0.2.77",)),
    )))
    return zone, sign_zone(zone, KEYS, NOW, SigningPolicy(nsec3=NSEC3Params() if nsec3 else None))


def servers(nsec3: bool) -> tuple[Authority, Authority]:
    """(with the table, precomputed; the full path only) serving the same signed zone."""
    zone, signed = signed_zone(nsec3)
    fast, plain = Authority(), Authority(answer_cache_bytes=0)
    fast.load(zone, signed)  # type: ignore[arg-type]
    plain.load(zone, signed)  # type: ignore[arg-type]
    assert fast.precompute() == 0
    assert fast.table is not None and len(fast.table) > 0 and plain.table is None
    return fast, plain


NSEC_FAST, NSEC_PLAIN = servers(False)
NSEC3_FAST, NSEC3_PLAIN = servers(True)


def flip_case(name: str, mask: int) -> str:
    return "".join(c.upper() if (mask >> (i % 60)) & 1 else c for i, c in enumerate(name))


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nsec3=st.booleans(),
    name=st.one_of(st.sampled_from(NAMES), st.from_regex(r"[a-z0-9]{1,12}(\.(www|wild|sub|deep|b\.deep))?",
                                                         fullmatch=True)),
    case=st.integers(0, 2**60),
    rdtype=st.sampled_from(TYPES),
    edns=st.sampled_from(["none", "plain", "do"]),
    payload=st.sampled_from([0, 100, 512, 1232, 1400, 4096, 65535]),
    flag_bits=st.integers(0, 0xFFFF),
    max_udp=st.sampled_from([None, 512, 1232]),
    msg_id=st.integers(0, 0xFFFF),
)
def test_table_answers_are_byte_identical_to_the_full_path(
    nsec3: bool, name: str, case: int, rdtype: str, edns: str, payload: int, flag_bits: int,
    max_udp: int | None, msg_id: int,
) -> None:
    fast, plain = (NSEC3_FAST, NSEC3_PLAIN) if nsec3 else (NSEC_FAST, NSEC_PLAIN)
    qname = flip_case(ORIGIN if name == "@" else f"{name}.{ORIGIN}", case)
    query = dns.message.make_query(qname, rdtype, use_edns=edns != "none", want_dnssec=edns == "do",
                                   payload=payload or 512)
    query.id = msg_id
    wire = bytearray(query.to_wire())
    wire[2] = flag_bits >> 8 & 0x87  # QR, opcode kept QUERY; AA, TC, RD, RA, Z, AD, CD and rcode bits random
    wire[3] = flag_bits & 0xFF
    if edns != "none" and payload == 0:
        wire[-9:-7] = b"\x00\x00"  # a payload of 0 (below 512): treated as 512
    data = bytes(wire)
    expected = plain.answer(data, NOW, max_udp=max_udp)
    assert fast.answer(data, NOW, max_udp=max_udp) == expected
    assert fast.answer(data, NOW, max_udp=max_udp) == expected  # possibly learnt by the first ask


def test_plain_queries_are_served_from_the_precomputed_entries() -> None:
    table = NSEC_FAST.table
    assert table is not None
    misses, hits = table.stats.misses, table.stats.hits
    for do in (False, True):
        q = dns.message.make_query(f"WWW.{ORIGIN}", "A", use_edns=0, want_dnssec=do)
        response = dns.message.from_wire(NSEC_FAST.answer(q.to_wire(), NOW, max_udp=1232))
        assert response.id == q.id and response.flags & dns.flags.AA and response.rcode() == dns.rcode.NOERROR
        assert str(response.question[0].name) == f"WWW.{ORIGIN}"  # the question echoed as asked
        addresses = sorted(r.address for r in response.answer[0])
        assert addresses == ["192.0.2.1", "192.0.2.2"]
        assert (len(response.answer) == 2) is do  # the RRSIG only with DO
        assert bool(response.ednsflags & dns.flags.DO) is do and response.payload == 1232
    assert table.stats.misses == misses and table.stats.hits == hits + 2


def test_truncation_and_unusual_queries_take_the_full_path() -> None:
    table = NSEC_FAST.table
    assert table is not None
    big = dns.message.make_query(f"big.{ORIGIN}", "A", want_dnssec=True, payload=512)
    assert table.lookup(big.to_wire(), 512, NOW) is None  # too big for the client: the full path truncates
    response = dns.message.from_wire(NSEC_FAST.answer(big.to_wire(), NOW, max_udp=512))
    assert response.flags & dns.flags.TC
    assert table.lookup(big.to_wire(), None, NOW) is not None  # over TCP it fits
    cookie = dns.message.make_query(f"www.{ORIGIN}", "A", options=[dns.edns.GenericOption(10, b"c" * 8)])
    assert question_key(cookie.to_wire()) is None
    two = dns.message.make_query(f"www.{ORIGIN}", "A")
    two.question.append(two.question[0])
    assert question_key(two.to_wire()) is None
    for rdtype in ("ANY", "AXFR", "IXFR"):
        assert question_key(dns.message.make_query(f"www.{ORIGIN}", rdtype).to_wire()) is None
    notify = dns.message.make_query(f"www.{ORIGIN}", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    assert question_key(notify.to_wire()) is None
    badvers = dns.message.make_query(f"www.{ORIGIN}", "A", use_edns=1)
    assert question_key(badvers.to_wire()) is None
    assert table.lookup(dns.message.make_query(f"www.{ORIGIN}", "A").to_wire(), 1232, NOW + 10**9) is None


@pytest.mark.parametrize("nsec3", [False, True])
def test_a_zone_change_replaces_every_answer(nsec3: bool) -> None:
    zone, signed = signed_zone(nsec3)
    fast = Authority()
    fast.load(zone, signed)  # type: ignore[arg-type]
    fast.precompute()
    nx = dns.message.make_query(f"later.{ORIGIN}", "A", want_dnssec=True)
    www = dns.message.make_query(f"www.{ORIGIN}", "A", want_dnssec=True)
    assert dns.message.from_wire(fast.answer(nx.to_wire(), NOW, max_udp=1232)).rcode() == dns.rcode.NXDOMAIN
    fast.answer(www.to_wire(), NOW, max_udp=1232)
    zone.apply(ZoneUpdate(ORIGIN, (AddRecords("later", "A", 60, ("192.0.2.99",)),
                                   ReplaceRRset("www", "A", 60, ("192.0.2.42",)))))
    fast.load(zone, sign_zone(zone, KEYS, NOW + 1, SigningPolicy(nsec3=NSEC3Params() if nsec3 else None)))
    for _ in range(2):  # before and after the precompute
        later = dns.message.from_wire(fast.answer(nx.to_wire(), NOW, max_udp=1232))
        assert later.rcode() == dns.rcode.NOERROR and later.answer[0][0].address == "192.0.2.99"
        now = dns.message.from_wire(fast.answer(www.to_wire(), NOW, max_udp=1232))
        assert [r.address for r in now.answer[0]] == ["192.0.2.42"]
        fast.precompute()


def test_lazy_entries_are_bounded() -> None:
    zone, signed = signed_zone(False)
    small = Authority(answer_cache_bytes=20_000)
    small.load(zone, signed)  # type: ignore[arg-type]
    table = small.table
    assert table is not None
    for i in range(300):
        wire = dns.message.make_query(f"n{i}.{ORIGIN}", "A", want_dnssec=True).to_wire()
        assert dns.message.from_wire(small.answer(wire, NOW, max_udp=1232)).rcode() == dns.rcode.NXDOMAIN
    assert table.stats.evictions > 0 and table._lazy_used <= table.max_lazy_bytes
    with pytest.raises(ValueError):
        AnswerTable(None, 0)


def test_a_worker_copy_serves_only_what_it_was_given() -> None:
    table = NSEC_FAST.table
    assert table is not None
    copy = AnswerTable(None, 1)
    copy.install(table.export(), table.valid_until)
    www = dns.message.make_query(f"www.{ORIGIN}", "AAAA", want_dnssec=True)
    www.flags |= dns.flags.RD
    assert copy.lookup(www.to_wire(), 1232, NOW) == NSEC_PLAIN.answer(www.to_wire(), NOW, max_udp=1232)
    unknown = dns.message.make_query(f"never-asked.{ORIGIN}", "A")
    assert copy.lookup(unknown.to_wire(), 1232, NOW) is None
    assert dns.name.from_text(ORIGIN) is not None and dns.rdatatype.A == 1
