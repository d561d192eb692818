from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdatatype
import dns.rrset
import pytest
from dns_testutil import NOW, ORIGIN, make_zone, seed

from trustchain.dns.authority import Authority
from trustchain.dns.denial import NSEC3Params
from trustchain.dns.dnssec import SignedZone, SigningPolicy, sign_zone
from trustchain.dns.keys import KeySet
from trustchain.dns.validator import Failure, Validator, ZoneKeys
from trustchain.dns.zone import AddRecords, Zone, ZoneUpdate

T = dns.rdatatype.RdataType
APEX = dns.name.from_text(ORIGIN)
POLICIES = [SigningPolicy(), SigningPolicy(nsec3=NSEC3Params())]
IDS = ["nsec", "nsec3"]


def setup(policy: SigningPolicy) -> tuple[Authority, SignedZone, list[ZoneKeys]]:
    zone = make_zone()
    signed = sign_zone(zone, KeySet.initial(seed("ksk"), seed("zsk")), NOW, policy)
    auth = Authority()
    auth.load(zone, signed)
    dnskey, sig = signed.get(APEX, T.DNSKEY), signed.rrsig(APEX, T.DNSKEY)
    assert dnskey is not None
    return auth, signed, [ZoneKeys(dnskey, sig)]


def ask(auth: Authority, qname: str, qtype: str) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, want_dnssec=True)
    return dns.message.from_wire(auth.answer(query.to_wire(), NOW, max_udp=None))


CASES = [
    ("www.tc.example.", "A", dns.rcode.NOERROR),
    ("alias2.tc.example.", "AAAA", dns.rcode.NOERROR),  # two CNAME hops
    ("www.tc.example.", "TXT", dns.rcode.NOERROR),  # NODATA
    ("deep.tc.example.", "A", dns.rcode.NOERROR),  # empty non-terminal NODATA
    ("b.deep.tc.example.", "A", dns.rcode.NOERROR),
    ("nope.tc.example.", "A", dns.rcode.NXDOMAIN),
    ("x.y.a.b.deep.tc.example.", "A", dns.rcode.NXDOMAIN),
    ("dangling.tc.example.", "A", dns.rcode.NXDOMAIN),  # CNAME to a missing name
    ("zzzz.tc.example.", "MX", dns.rcode.NXDOMAIN),  # after the last name: chain wraps
    ("tc.example.", "DNSKEY", dns.rcode.NOERROR),
    ("tc.example.", "CAA", dns.rcode.NOERROR),
]


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
@pytest.mark.parametrize(("qname", "qtype", "rcode"), CASES)
def test_our_answers_validate(policy: SigningPolicy, qname: str, qtype: str, rcode: int) -> None:
    auth, signed, chain = setup(policy)
    response = ask(auth, qname, qtype)
    assert response.rcode() == rcode
    result = Validator(signed.ds()).validate(response, chain, NOW)
    assert result.secure, result.detail


def test_dnskey_trust_anchor() -> None:
    auth, signed, chain = setup(POLICIES[0])
    anchor = signed.get(APEX, T.DNSKEY)
    assert anchor is not None
    assert Validator(anchor).validate(ask(auth, "www.tc.example.", "A"), chain, NOW).secure


def test_ds_mismatch() -> None:
    auth, _signed, chain = setup(POLICIES[0])
    other = KeySet.initial(seed("other-ksk"), seed("zsk")).ds_records(APEX)
    result = Validator(other).validate(ask(auth, "www.tc.example.", "A"), chain, NOW)
    assert result.failure is Failure.DS_MISMATCH


def test_no_rrsig() -> None:
    auth, signed, chain = setup(POLICIES[0])
    response = ask(auth, "www.tc.example.", "A")
    response.answer = [r for r in response.answer if r.rdtype != T.RRSIG]
    assert Validator(signed.ds()).validate(response, chain, NOW).failure is Failure.NO_RRSIG


def test_expired_and_not_yet_valid() -> None:
    auth, signed, chain = setup(POLICIES[0])
    response = ask(auth, "www.tc.example.", "A")
    validator = Validator(signed.ds())
    assert validator.validate(response, chain, signed.expiration + 1).failure is Failure.EXPIRED
    assert validator.validate(response, chain, signed.inception - 1).failure is Failure.NOT_YET_VALID


def test_bad_signature_on_forged_data() -> None:
    auth, signed, chain = setup(POLICIES[0])
    response = ask(auth, "www.tc.example.", "A")
    forged = dns.rrset.from_text("www.tc.example.", 300, "IN", "A", "203.0.113.66", "192.0.2.2")
    response.answer = [forged if r.rdtype == T.A else r for r in response.answer]
    result = Validator(signed.ds()).validate(response, chain, NOW)
    assert result.failure is Failure.BAD_SIGNATURE and "www.tc.example." in result.detail


def test_forged_dnskey_set() -> None:
    auth, signed, chain = setup(POLICIES[0])
    evil = KeySet.initial(seed("ksk"), seed("evil-zsk"))
    evil_signed = sign_zone(make_zone(), evil, NOW)
    # attacker keeps the real KSK but cannot sign a DNSKEY set with an extra key
    mixed = evil_signed.get(APEX, T.DNSKEY)
    assert mixed is not None
    result = Validator(signed.ds()).validate(
        ask(auth, "www.tc.example.", "A"), [ZoneKeys(mixed, chain[0].dnskey_sigs)], NOW
    )
    assert result.failure is Failure.BAD_SIGNATURE


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
def test_denial_not_proven_without_proofs(policy: SigningPolicy) -> None:
    auth, signed, chain = setup(policy)
    for qname, qtype in [("nope.tc.example.", "A"), ("www.tc.example.", "TXT")]:
        response = ask(auth, qname, qtype)
        response.authority = [r for r in response.authority if r.rdtype == T.SOA or r.covers == T.SOA]
        result = Validator(signed.ds()).validate(response, chain, NOW)
        assert result.failure is Failure.DENIAL_NOT_PROVEN


@pytest.mark.parametrize("policy", POLICIES, ids=IDS)
def test_replayed_denial_for_existing_name_rejected(policy: SigningPolicy) -> None:
    """An attacker answers NXDOMAIN for www using a (validly signed) proof for another name."""
    auth, signed, chain = setup(policy)
    proof = ask(auth, "nope.tc.example.", "A")
    fake = dns.message.make_response(dns.message.make_query("www.tc.example.", "A", want_dnssec=True))
    fake.set_rcode(dns.rcode.NXDOMAIN)
    fake.authority = list(proof.authority)
    result = Validator(signed.ds()).validate(fake, chain, NOW)
    assert result.failure is Failure.DENIAL_NOT_PROVEN
    # NODATA claim for a type that exists, reusing the real NODATA proof of another type
    nodata = ask(auth, "www.tc.example.", "TXT")
    fake2 = dns.message.make_response(dns.message.make_query("www.tc.example.", "A", want_dnssec=True))
    fake2.authority = list(nodata.authority)
    assert Validator(signed.ds()).validate(fake2, chain, NOW).failure is Failure.DENIAL_NOT_PROVEN


def test_chain_from_parent_ds() -> None:
    """Anchor at the parent: parent DNSKEY -> signed DS for the child -> child DNSKEY -> answer."""
    auth, child, child_chain = setup(POLICIES[1])
    parent = Zone.create("example.", primary_ns="ns", admin="h", nameservers=("ns.example.",))
    parent_keys = KeySet.initial(seed("p-ksk"), seed("p-zsk"))
    parent.apply(ZoneUpdate("example.", (AddRecords("ns", "A", 60, ("192.0.2.1",)),)))
    parent_signed = sign_zone(parent, parent_keys, NOW)
    # the parent's signer does not support delegations, so sign the child DS with its ZSK directly
    import dns.dnssec

    ds = child.ds()
    zsk = parent_keys.keys[1]
    ds_sig = dns.rrset.RRset(ds.name, ds.rdclass, T.RRSIG, T.DS)
    ds_sig.add(
        dns.dnssec.sign(
            ds,
            zsk.private_key,
            parent.origin,
            zsk.dnskey,
            inception=NOW - 10,
            expiration=NOW + 1000,
            origin=parent.origin,
        ),
        ds.ttl,
    )
    p_dnskey = parent_signed.get(parent.origin, T.DNSKEY)
    assert p_dnskey is not None
    chain = [
        ZoneKeys(p_dnskey, parent_signed.rrsig(parent.origin, T.DNSKEY)),
        ZoneKeys(child_chain[0].dnskey, child_chain[0].dnskey_sigs, ds, ds_sig),
    ]
    validator = Validator(parent_signed.ds())
    assert validator.validate(ask(auth, "www.tc.example.", "A"), chain, NOW).secure
    unsigned_ds = [chain[0], ZoneKeys(chain[1].dnskey, chain[1].dnskey_sigs, ds, None)]
    assert validator.validate(ask(auth, "www.tc.example.", "A"), unsigned_ds, NOW).failure is Failure.NO_RRSIG


def test_unsigned_answer_is_not_secure() -> None:
    zone = make_zone()
    auth = Authority()
    auth.load(zone)
    response = ask(auth, "www.tc.example.", "A")
    assert response.answer and all(r.rdtype != T.RRSIG for r in response.answer)
    signed = sign_zone(zone, KeySet.initial(seed("ksk"), seed("zsk")), NOW)
    dnskey = signed.get(APEX, T.DNSKEY)
    assert dnskey is not None
    chain = [ZoneKeys(dnskey, signed.rrsig(APEX, T.DNSKEY))]
    assert Validator(signed.ds()).validate(response, chain, NOW).failure is Failure.NO_RRSIG
