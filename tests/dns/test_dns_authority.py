from __future__ import annotations

import dns.dnssec
import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
from dns_testutil import NOW, ORIGIN, make_zone, seed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trustchain.dns.authority import EDNS_PAYLOAD, Authority
from trustchain.dns.denial import NSEC3Params
from trustchain.dns.dnssec import SigningPolicy, sign_zone
from trustchain.dns.keys import KeySet
from trustchain.dns.zone import AddRecords, Zone, ZoneUpdate

T = dns.rdatatype.RdataType


def make_authority(nsec3: bool = False) -> Authority:
    zone = make_zone()
    policy = SigningPolicy(nsec3=NSEC3Params() if nsec3 else None)
    auth = Authority()
    auth.load(zone, sign_zone(zone, KeySet.initial(seed("ksk"), seed("zsk")), NOW, policy))
    return auth


AUTH = make_authority()


def ask(
    auth: Authority,
    qname: str,
    qtype: str,
    *,
    do: bool = True,
    edns: int = 0,
    max_udp: int | None = 1232,
    payload: int = 1232,
) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, use_edns=edns, want_dnssec=do, payload=payload)
    if edns < 0:
        query.use_edns(False)
    wire = auth.answer(query.to_wire(), NOW, max_udp=max_udp)
    response = dns.message.from_wire(wire)
    assert response.id == query.id and response.flags & dns.flags.QR
    return response


def test_positive_answer_with_dnssec() -> None:
    r = ask(AUTH, "www.tc.example.", "A")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert [x.rdtype for x in r.answer] == [T.A, T.RRSIG]
    assert r.edns == 0 and r.payload == EDNS_PAYLOAD and r.ednsflags & dns.flags.DO


def test_no_dnssec_records_without_do() -> None:
    r = ask(AUTH, "nope.tc.example.", "A", do=False)
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert [x.rdtype for x in r.authority] == [T.SOA]
    assert not r.ednsflags & dns.flags.DO
    r = ask(AUTH, "www.tc.example.", "A", do=False)
    assert [x.rdtype for x in r.answer] == [T.A]


def test_no_edns_query_gets_no_opt() -> None:
    r = ask(AUTH, "www.tc.example.", "A", edns=-1)
    assert r.edns == -1 and [x.rdtype for x in r.answer] == [T.A]


def test_cname_chain_inside_zone() -> None:
    r = ask(AUTH, "alias2.tc.example.", "A", do=False)
    assert [(str(x.name), x.rdtype) for x in r.answer] == [
        ("alias2.tc.example.", T.CNAME),
        ("alias.tc.example.", T.CNAME),
        ("www.tc.example.", T.A),
    ]
    r = ask(AUTH, "alias.tc.example.", "CNAME", do=False)
    assert [x.rdtype for x in r.answer] == [T.CNAME]


def test_cname_loop_terminates() -> None:
    zone = Zone.create(ORIGIN, primary_ns="ns1", admin="h", nameservers=("ns1",))
    zone.apply(ZoneUpdate(ORIGIN, (AddRecords("a", "CNAME", 1, ("b",)), AddRecords("b", "CNAME", 1, ("a",)))))
    auth = Authority()
    auth.load(zone)
    r = ask(auth, "a.tc.example.", "A")
    assert r.rcode() == dns.rcode.NOERROR and len(r.answer) == 2


def test_nodata_and_nxdomain_carry_soa_and_proofs() -> None:
    r = ask(AUTH, "www.tc.example.", "TXT")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    types = {x.rdtype for x in r.authority}
    assert {T.SOA, T.NSEC, T.RRSIG} <= types
    soa = next(x for x in r.authority if x.rdtype == T.SOA)
    assert soa.ttl == 300  # RFC 2308: min(SOA TTL, MINIMUM)
    r = ask(make_authority(nsec3=True), "nope.tc.example.", "A")
    assert r.rcode() == dns.rcode.NXDOMAIN
    assert len([x for x in r.authority if x.rdtype == T.NSEC3]) in (2, 3)


def test_refused_out_of_zone_and_multi_zone() -> None:
    assert ask(AUTH, "example.org.", "A").rcode() == dns.rcode.REFUSED
    other = Zone.create("other.example.", primary_ns="ns", admin="h", nameservers=("ns",))
    other.apply(ZoneUpdate("other.example.", (AddRecords("www", "A", 60, ("198.51.100.1",)),)))
    auth = make_authority()
    auth.load(other)
    r = ask(auth, "www.other.example.", "A")
    assert r.answer[0][0].to_text() == "198.51.100.1"
    assert ask(auth, "www.tc.example.", "A").answer[0].name == dns.name.from_text("www.tc.example.")
    assert auth.stats.refused == 0
    assert ask(auth, "www.third.example.", "A").rcode() == dns.rcode.REFUSED
    assert auth.stats.refused == 1


def test_axfr_refused_and_badvers() -> None:
    assert ask(AUTH, "tc.example.", "AXFR").rcode() == dns.rcode.REFUSED
    r = ask(AUTH, "www.tc.example.", "A", edns=1)
    assert r.rcode() == dns.rcode.BADVERS and not r.answer


def test_truncation_respects_udp_limit_and_tcp_is_full() -> None:
    zone = make_zone()
    many = tuple(f"192.0.2.{i}" for i in range(1, 120))
    zone.apply(ZoneUpdate(ORIGIN, (AddRecords("big", "A", 60, many),)))
    auth = Authority()
    auth.load(zone, sign_zone(zone, KeySet.initial(seed("ksk"), seed("zsk")), NOW))
    query = dns.message.make_query("big.tc.example.", "A", want_dnssec=True, payload=4096)
    udp = auth.answer(query.to_wire(), NOW, max_udp=1232)
    assert len(udp) <= 1232
    r = dns.message.from_wire(udp)
    assert r.flags & dns.flags.TC and not r.answer and r.edns == 0
    tcp = dns.message.from_wire(auth.answer(query.to_wire(), NOW, max_udp=None))
    assert not tcp.flags & dns.flags.TC and len(tcp.answer[0]) == 119
    small = dns.message.make_query("big.tc.example.", "A", use_edns=False)
    assert len(auth.answer(small.to_wire(), NOW, max_udp=1232)) <= 512
    assert auth.stats.truncated == 2


def test_formerr_and_drops_are_counted() -> None:
    auth = make_authority()
    assert auth.answer(b"", NOW, max_udp=512) == b""
    assert auth.answer(b"\x00" * 5, NOW, max_udp=512) == b""
    bad = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07garbage"  # truncated question
    reply = auth.answer(bad, NOW, max_udp=512)
    assert reply[:2] == b"\x12\x34" and reply[3] & 0xF == dns.rcode.FORMERR and reply[2] & 0x80
    response = dns.message.make_response(dns.message.make_query("www.tc.example.", "A"))
    assert auth.answer(response.to_wire(), NOW, max_udp=512) == b""  # never answer a response
    assert auth.stats.malformed == 3 and auth.stats.dropped == 3


def test_notimp_for_other_opcodes() -> None:
    q = dns.message.make_query("www.tc.example.", "A")
    q.set_opcode(dns.opcode.NOTIFY)
    reply = AUTH.answer(q.to_wire(), NOW, max_udp=512)
    assert dns.message.from_wire(reply).rcode() == dns.rcode.NOTIMP


def test_load_rejects_stale_signature_and_expired_zone_servfails() -> None:
    zone = make_zone()
    keys = KeySet.initial(seed("ksk"), seed("zsk"))
    signed = sign_zone(zone, keys, NOW)
    zone.apply(ZoneUpdate(ORIGIN, (AddRecords("late", "A", 60, ("192.0.2.1",)),)))
    auth = Authority()
    with pytest.raises(ValueError):
        auth.load(zone, signed)
    auth.load(zone, sign_zone(zone, keys, NOW, previous=signed))
    q = dns.message.make_query("late.tc.example.", "A", want_dnssec=True)
    assert dns.message.from_wire(auth.answer(q.to_wire(), NOW, max_udp=1232)).rcode() == dns.rcode.NOERROR
    late = auth.answer(q.to_wire(), NOW + 10**8, max_udp=1232)
    assert dns.message.from_wire(late).rcode() == dns.rcode.SERVFAIL


_VALID = [
    dns.message.make_query(name, rdtype, want_dnssec=do).to_wire()
    for name in ("www.tc.example.", "nope.tc.example.", "alias2.tc.example.", "x.org.")
    for rdtype in ("A", "TXT", "ANY")
    for do in (True, False)
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.sampled_from([None, 0, 300, 512, 1232]))
def test_fuzz_random_bytes_never_raise(data: bytes, max_udp: int | None) -> None:
    out = AUTH.answer(data, NOW, max_udp=max_udp)
    assert isinstance(out, bytes)
    if out and max_udp:
        assert len(out) <= max(max_udp, 12)
    if out:
        assert out[:2] == data[:2]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(_VALID),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=6),
    st.integers(0, 80),
)
def test_fuzz_mutated_queries_never_raise(base: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(base)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    wire = bytes(data[: len(data) - cut] if cut < len(data) else data)
    out = AUTH.answer(wire, NOW, max_udp=1232)
    if out:
        dns.message.from_wire(out)  # always a parseable DNS message


def test_an_rrsig_query_gets_one_signature_of_the_name_that_verifies() -> None:
    """The NSEC bitmap says RRSIGs exist at www: the answer carries one (Knot DNS's choice: the first in
    canonical order, so that RRSIG queries do not amplify), and it verifies over the RRset it covers."""
    for do in (True, False):
        r = ask(AUTH, "www.tc.example.", "RRSIG", do=do)
        assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
        [sig] = r.answer
        assert sig.rdtype == T.RRSIG and len(sig) == 1 and sig[0].type_covered == T.A
    covered = ask(AUTH, "www.tc.example.", "A").find_rrset(dns.message.ANSWER, dns.name.from_text("www.tc.example."),
                                                           dns.rdataclass.IN, T.A)
    keys = ask(AUTH, ORIGIN, "DNSKEY").find_rrset(dns.message.ANSWER, dns.name.from_text(ORIGIN), dns.rdataclass.IN,
                                                  T.DNSKEY)
    dns.dnssec.validate_rrsig(covered, sig[0], {dns.name.from_text(ORIGIN): keys}, now=NOW)
    ent = ask(AUTH, "b.deep.tc.example.", "RRSIG")  # an empty non-terminal: no data, no signatures
    assert ent.rcode() == dns.rcode.NOERROR and not ent.answer and ent.authority
    assert ask(AUTH, "nope.tc.example.", "RRSIG").rcode() == dns.rcode.NXDOMAIN
    unsigned = Authority()
    unsigned.load(make_zone())
    r = ask(unsigned, "www.tc.example.", "RRSIG")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
