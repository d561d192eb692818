"""Our validator on wildcard and DNAME answers: the honest answers of a zone shaped like the one delv and
unbound validate (test_dns_features_validators.py) are secure; forged expansions are bogus: a wildcard
stretched over a name that exists, an expansion without its denial proof or with denial records that do
not cover the name, a synthesised CNAME that does not follow from the DNAME."""

from __future__ import annotations

import base64
import hashlib

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from dns_testutil import NOW, seed

from trustchain.dns.authority import Authority
from trustchain.dns.denial import NSEC3Params
from trustchain.dns.dnssec import SignedZone, SigningPolicy, sign_zone
from trustchain.dns.keys import KeySet
from trustchain.dns.validator import Failure, ValidationResult, Validator, ZoneKeys
from trustchain.dns.zone import AddRecords, Zone, ZoneUpdate

T = dns.rdatatype.RdataType
ORIGIN = "wc.example."
APEX = dns.name.from_text(ORIGIN)
POLICIES = [SigningPolicy(), SigningPolicy(nsec3=NSEC3Params())]
IDS = ["nsec", "nsec3"]


class Setup:
    def __init__(self, policy: SigningPolicy) -> None:
        zone = Zone.create(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=("ns1",))
        zone.apply(ZoneUpdate(ORIGIN, (
            AddRecords("ns1", "A", 300, ("192.0.2.53",)),
            AddRecords("www", "A", 300, ("192.0.2.1",)),
            AddRecords("*.wild", "A", 300, ("192.0.2.77",)),
            AddRecords("*.wild", "TXT", 300, ('"synthesised"',)),
            AddRecords("host.wild", "A", 300, ("192.0.2.55",)),  # a real name beside the wildcard
            AddRecords("*.alias", "CNAME", 300, ("www",)),
            AddRecords("old", "DNAME", 300, ("new",)),
            AddRecords("www.new", "A", 300, ("192.0.2.90",)),
            AddRecords("far", "DNAME", 300, ("a" * 60 + "." + "b" * 60 + "." + "c" * 60 + ".example.",)),
        )))
        self.signed: SignedZone = sign_zone(zone, KeySet.initial(seed("wc-ksk"), seed("wc-zsk")), NOW, policy)
        self.auth = Authority()
        self.auth.load(zone, self.signed)
        dnskey = self.signed.get(APEX, T.DNSKEY)
        assert dnskey is not None
        self.chain = [ZoneKeys(dnskey, self.signed.rrsig(APEX, T.DNSKEY))]

    def ask(self, qname: str, qtype: str) -> dns.message.Message:
        query = dns.message.make_query(qname, qtype, want_dnssec=True)
        return dns.message.from_wire(self.auth.answer(query.to_wire(), NOW, max_udp=None))

    def validate(self, response: dns.message.Message) -> ValidationResult:
        return Validator(self.signed.ds()).validate(response, self.chain, NOW)


@pytest.fixture(params=POLICIES, ids=IDS)
def setup(request: pytest.FixtureRequest) -> Setup:
    return Setup(request.param)


@pytest.mark.parametrize(("qname", "qtype", "rcode", "expect"), [
    ("x.wild.wc.example.", "A", dns.rcode.NOERROR, "192.0.2.77"),
    ("a.b.wild.wc.example.", "TXT", dns.rcode.NOERROR, "synthesised"),
    ("x.wild.wc.example.", "MX", dns.rcode.NOERROR, ""),  # wildcard NODATA
    ("a.b.wild.wc.example.", "AAAA", dns.rcode.NOERROR, ""),
    ("x.nowild.wc.example.", "A", dns.rcode.NXDOMAIN, ""),
    ("host.wild.wc.example.", "A", dns.rcode.NOERROR, "192.0.2.55"),  # the real name, not the wildcard
    ("*.wild.wc.example.", "A", dns.rcode.NOERROR, "192.0.2.77"),  # the wildcard itself, asked literally
    ("x.alias.wc.example.", "A", dns.rcode.NOERROR, "192.0.2.1"),  # a wildcard CNAME, then the target
    ("www.old.wc.example.", "A", dns.rcode.NOERROR, "192.0.2.90"),  # DNAME, synthesised CNAME, target
    ("nothere.old.wc.example.", "A", dns.rcode.NXDOMAIN, ""),  # DNAME, then a proven NXDOMAIN
    ("old.wc.example.", "DNAME", dns.rcode.NOERROR, "new.wc.example."),
    ("www.old.wc.example.", "CNAME", dns.rcode.NOERROR, "www.new.wc.example."),  # the synthesised CNAME asked
    ("www.old.wc.example.", "DNAME", dns.rcode.NOERROR, ""),  # rewritten, then NODATA at www.new
    ("x.alias.wc.example.", "CNAME", dns.rcode.NOERROR, "www.wc.example."),
    ("x.alias.wc.example.", "TXT", dns.rcode.NOERROR, ""),  # wildcard CNAME, then NODATA at the target
    ("x" * 60 + "." + "y" * 60 + ".far.wc.example.", "A", dns.rcode.YXDOMAIN, "DNAME"),  # rewrite > 255 octets
])
def test_honest_answers_are_secure(setup: Setup, qname: str, qtype: str, rcode: int, expect: str) -> None:
    response = setup.ask(qname, qtype)
    assert response.rcode() == rcode and expect in response.to_text(), response.to_text()
    result = setup.validate(response)
    assert result.secure, result.detail


def _authority_without(response: dns.message.Message, rdtypes: set[int]) -> list[dns.rrset.RRset]:
    return [r for r in response.authority if r.rdtype not in rdtypes and r.covers not in rdtypes]


def test_expansion_without_a_denial_proof_is_bogus(setup: Setup) -> None:
    for qname, qtype in [("x.wild.wc.example.", "A"), ("x.alias.wc.example.", "A")]:
        response = setup.ask(qname, qtype)
        assert any(r.rdtype in (T.NSEC, T.NSEC3) for r in response.authority)
        response.authority = _authority_without(response, {T.NSEC, T.NSEC3})
        result = setup.validate(response)
        assert result.failure is Failure.DENIAL_NOT_PROVEN and qname in result.detail, result.detail


def test_wildcard_stretched_over_an_existing_name_is_bogus(setup: Setup) -> None:
    """The wildcard's signature verifies for any owner below wild, so an attacker renames a real
    expansion to host.wild (which exists with other data); no denial record can cover host.wild."""
    response = setup.ask("x.wild.wc.example.", "A")
    host = dns.name.from_text("host.wild.wc.example.")
    forged = dns.message.make_response(dns.message.make_query(host, "A", want_dnssec=True))
    for rrset in response.answer:
        copy = dns.rrset.RRset(host, rrset.rdclass, rrset.rdtype, rrset.covers)
        copy.update(rrset)
        forged.answer.append(copy)
    forged.authority = list(response.authority)
    result = setup.validate(forged)
    assert result.failure is Failure.DENIAL_NOT_PROVEN and "host.wild" in result.detail, result.detail


def _hash(name: str) -> str:
    """NSEC3 SHA-1 owner hash (RFC 5155 5, no salt, no extra iterations), base32hex in lower case."""
    wire = dns.name.from_text(name).canonicalize().to_wire()
    return base64.b32hexencode(hashlib.sha1(wire).digest()).decode().lower()


def _between(owner: object, nxt: object, key: object) -> bool:
    assert isinstance(owner, (str, dns.name.Name)) and type(owner) is type(nxt) is type(key)
    return owner < key < nxt if owner < nxt else (key > owner or key < nxt)  # type: ignore[operator]


def _denials_not_covering(setup: Setup, qname: str) -> list[dns.rrset.RRset]:
    """Every signed NSEC/NSEC3 of the zone except the one that covers `qname` (for NSEC3: its hash)."""
    out = []
    for (name, rdtype), rrset in setup.signed.rrsets.items():
        if rdtype == T.NSEC:
            covering = _between(name, rrset[0].next, dns.name.from_text(qname))
        elif rdtype == T.NSEC3:
            nxt = base64.b32hexencode(rrset[0].next).decode().lower()
            covering = _between(name.labels[0].decode(), nxt, _hash(qname))
        else:
            continue
        if covering:
            continue
        out += [rrset, setup.signed.rrsig(name, rdtype)]
    assert out
    return out


def test_expansion_with_proofs_that_do_not_cover_the_name_is_bogus(setup: Setup) -> None:
    response = setup.ask("x.wild.wc.example.", "A")
    response.authority = _denials_not_covering(setup, "x.wild.wc.example.")
    result = setup.validate(response)
    assert result.failure is Failure.DENIAL_NOT_PROVEN, result.detail


def test_proof_for_another_expansion_is_not_enough(setup: Setup) -> None:
    """A deeper expansion's proof covers b.wild; replayed for x.wild it proves nothing unless it happens
    to cover x.wild too, which the zone's order decides and we check independently."""
    other = setup.ask("a.b.wild.wc.example.", "A")
    response = setup.ask("x.wild.wc.example.", "A")
    response.authority = list(other.authority)
    covering = _denials_not_covering(setup, "x.wild.wc.example.")
    replay_covers = any(r not in covering for r in other.authority if r.rdtype in (T.NSEC, T.NSEC3))
    assert setup.validate(response).secure is replay_covers


def test_wildcard_nodata_without_the_wildcards_denial_is_bogus(setup: Setup) -> None:
    response = setup.ask("x.wild.wc.example.", "MX")
    kept = _denials_not_covering(setup, "*.wild.wc.example.")
    response.authority = [r for r in response.authority if r.rdtype == T.SOA or r.covers == T.SOA]
    wildcard = dns.name.from_text("*.wild.wc.example.")
    if setup.signed.get(wildcard, T.NSEC) is not None:  # NSEC: drop the wildcard's own record
        response.authority += [r for r in kept if r.name != wildcard]
    else:  # NSEC3: drop the record matching the wildcard's hash
        response.authority += [r for r in kept if r.name.labels[0].decode() != _hash("*.wild.wc.example.")]
    assert setup.validate(response).failure is Failure.DENIAL_NOT_PROVEN


def test_cname_that_does_not_follow_from_the_dname_is_bogus(setup: Setup) -> None:
    honest = setup.ask("www.old.wc.example.", "A")
    target = setup.ask("www.wc.example.", "A")  # validly signed data elsewhere in the zone
    forged = dns.message.make_response(dns.message.make_query("www.old.wc.example.", "A", want_dnssec=True))
    for rrset in honest.answer:
        if rrset.rdtype == T.CNAME:
            forged.answer.append(dns.rrset.from_text(rrset.name, rrset.ttl, "IN", "CNAME", "www.wc.example."))
        elif rrset.rdtype == T.DNAME or rrset.covers == T.DNAME:
            forged.answer.append(rrset)
    forged.answer += target.answer
    assert setup.validate(target).secure
    result = setup.validate(forged)
    assert result.failure is Failure.DNAME_MISMATCH and "www.wc.example." in result.detail, result.detail


def test_yxdomain_only_when_the_rewrite_is_too_long(setup: Setup) -> None:
    response = setup.ask("www.old.wc.example.", "A")
    response.set_rcode(dns.rcode.YXDOMAIN)
    response.answer = [r for r in response.answer if T.DNAME in (r.rdtype, r.covers)]
    assert not setup.validate(response).secure  # www.new.wc.example. fits: the claim is false


def test_dname_needs_its_signature(setup: Setup) -> None:
    response = setup.ask("www.old.wc.example.", "A")
    response.answer = [r for r in response.answer if r.covers != T.DNAME]
    assert setup.validate(response).failure is Failure.NO_RRSIG
    response = setup.ask("www.old.wc.example.", "A")  # without the DNAME the bare CNAME is unsigned
    response.answer = [r for r in response.answer if T.DNAME not in (r.rdtype, r.covers)]
    assert setup.validate(response).failure is Failure.NO_RRSIG


def test_signature_labels_above_the_owner_are_bogus(setup: Setup) -> None:
    """An RRSIG whose label count exceeds its owner's (RFC 4035 5.3.1) is never accepted."""
    response = setup.ask("www.wc.example.", "A")
    rrset = next(r for r in response.answer if r.rdtype == T.A)
    sig = next(r for r in response.answer if r.rdtype == T.RRSIG)
    stretched = sig[0].replace(labels=4)  # www.wc.example. has three labels
    response.answer = [rrset, dns.rrset.from_rdata(rrset.name, sig.ttl, stretched)]
    assert setup.validate(response).failure is Failure.BAD_SIGNATURE
