"""Authoritative answers beyond a flat zone: referrals, wildcard and DNAME synthesis, minimal ANY,
additional addresses, DNS cookies and NSID — checked on the wire, record by record."""

from __future__ import annotations

import datetime
import hashlib
from pathlib import Path

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from dns_testutil import NOW, ORIGIN, make_zone, seed

from reference_node.cli import main as cli_main
from trustchain.dns.authority import Authority
from trustchain.dns.denial import NSEC3Params
from trustchain.dns.dnssec import SigningPolicy, sign_zone
from trustchain.dns.edns_options import ServerIdentity, has_valid_cookie
from trustchain.dns.keys import KeySet
from trustchain.dns.zone import AddRecords, ZoneUpdate

T = dns.rdatatype.RdataType
SECRET = b"s" * 32


def _authority(nsec3: bool = False) -> Authority:
    zone = make_zone()
    zone.apply(ZoneUpdate(ORIGIN, (
        AddRecords("sub", "NS", 300, ("ns1.sub",)),
        AddRecords("ns1.sub", "A", 300, ("192.0.2.60",)),
        AddRecords("*.wild", "A", 300, ("192.0.2.77",)),
        AddRecords("old", "DNAME", 300, ("www",)),
        AddRecords("far", "DNAME", 300, ("a" * 60 + "." + "b" * 60 + "." + "c" * 60 + ".example.",)),
        AddRecords("into", "CNAME", 300, ("host.sub",)),
        AddRecords("_x._tcp", "SRV", 300, ("0 0 1 mail",)),
    )))
    policy = SigningPolicy(nsec3=NSEC3Params() if nsec3 else None)
    auth = Authority(identity=ServerIdentity(nsid=b"node-7", cookie_secret=SECRET))
    auth.load(zone, sign_zone(zone, KeySet.initial(seed("ksk"), seed("zsk")), NOW, policy))
    return auth


def ask(auth: Authority, qname: str, qtype: str, *, options: list[dns.edns.Option] | None = None,
        client: str = "192.0.2.9", now: int = NOW + 10) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, want_dnssec=True, options=options)
    return dns.message.from_wire(auth.answer(query.to_wire(), now, max_udp=None, client=client))


@pytest.mark.parametrize("nsec3", [False, True], ids=["nsec", "nsec3"])
def test_referral_below_an_unsigned_cut(nsec3: bool) -> None:
    reply = ask(_authority(nsec3), f"deep.host.sub.{ORIGIN}", "A")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer and not reply.flags & dns.flags.AA
    kinds = [(r.name.to_text(), r.rdtype, r.covers) for r in reply.authority]
    denial = T.NSEC3 if nsec3 else T.NSEC
    assert (f"sub.{ORIGIN}", T.NS, T.TYPE0) in kinds and (f"sub.{ORIGIN}", T.DS, T.TYPE0) not in kinds
    assert sum(1 for _, t, _ in kinds if t == denial) == 1 and (T.RRSIG in {t for _, t, _ in kinds})
    proof = next(r for r in reply.authority if r.rdtype == denial)
    bitmap = proof[0].to_text()
    assert " NS" in bitmap and " DS" not in bitmap  # the cut exists, without DS: provably insecure
    assert [r.to_text() for r in reply.additional] == [f"ns1.sub.{ORIGIN} 300 IN A 192.0.2.60"]


def test_a_cname_into_a_delegated_name_stops_at_the_cut() -> None:
    reply = ask(_authority(), f"into.{ORIGIN}", "A")
    assert [r.rdtype for r in reply.answer] == [T.CNAME, T.RRSIG] and reply.flags & dns.flags.AA


def test_wildcard_denial_proves_no_name_and_no_wildcard_type() -> None:
    reply = ask(_authority(True), f"a.wild.{ORIGIN}", "MX")  # wildcard NODATA
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert sum(1 for r in reply.authority if r.rdtype == T.NSEC3) == 3  # encloser, next closer, wildcard
    reply = ask(_authority(), f"a.nothing.{ORIGIN}", "A")  # no wildcard at nothing.: NXDOMAIN
    assert reply.rcode() == dns.rcode.NXDOMAIN


def test_dname_synthesises_an_unsigned_cname_and_refuses_an_overlong_rewrite() -> None:
    auth = _authority()
    reply = ask(auth, f"x.old.{ORIGIN}", "A")
    assert [(r.name.to_text(), r.rdtype) for r in reply.answer if r.rdtype != T.RRSIG] == [
        (f"old.{ORIGIN}", T.DNAME), (f"x.old.{ORIGIN}", T.CNAME)]
    assert {r.covers for r in reply.answer if r.rdtype == T.RRSIG} == {T.DNAME}
    assert reply.answer[-1][0].target.to_text() == f"x.www.{ORIGIN}"
    reply = ask(auth, "d" * 50 + "." + "e" * 30 + f".far.{ORIGIN}", "A")  # the rewrite would pass 255 octets
    assert reply.rcode() == dns.rcode.YXDOMAIN and [r.rdtype for r in reply.answer] == [T.DNAME, T.RRSIG]


def test_minimal_any_and_additional_addresses() -> None:
    auth = _authority()
    reply = ask(auth, f"www.{ORIGIN}", "ANY")
    assert [r.rdtype for r in reply.answer] == [T.A, T.RRSIG]  # RFC 8482: one RRset
    reply = ask(auth, ORIGIN, "MX")
    assert [r.to_text() for r in reply.additional if r.rdtype == T.A] == [f"mail.{ORIGIN} 300 IN A 192.0.2.25"]
    reply = ask(auth, f"_x._tcp.{ORIGIN}", "SRV")
    assert {r.rdtype for r in reply.additional} == {T.A, T.RRSIG}


def test_nsid_and_cookies() -> None:
    auth = _authority()
    reply = ask(auth, f"www.{ORIGIN}", "A", options=[dns.edns.NSIDOption(b"")])
    assert [o.nsid for o in reply.options if isinstance(o, dns.edns.NSIDOption)] == [b"node-7"]
    first = ask(auth, f"www.{ORIGIN}", "A", options=[dns.edns.CookieOption(b"c" * 8, b"")])
    (cookie,) = [o for o in first.options if isinstance(o, dns.edns.CookieOption)]
    assert cookie.client == b"c" * 8 and len(cookie.server) == 16
    again = ask(auth, f"www.{ORIGIN}", "A", options=[cookie], now=NOW + 20)
    assert [o.server for o in again.options if isinstance(o, dns.edns.CookieOption)] == [cookie.server]  # echoed
    elsewhere = ask(auth, f"www.{ORIGIN}", "A", options=[cookie], client="198.51.100.1", now=NOW + 20)
    assert [o.server for o in elsewhere.options if isinstance(o, dns.edns.CookieOption)] != [cookie.server]
    stale = ask(auth, f"www.{ORIGIN}", "A", options=[cookie], now=NOW + 7200)
    assert [o.server for o in stale.options if isinstance(o, dns.edns.CookieOption)] != [cookie.server]
    plain = Authority()
    plain.load(make_zone())
    assert ask(plain, f"www.{ORIGIN}", "A", options=[dns.edns.CookieOption(b"c" * 8, b"")]).options == ()


def test_only_a_fresh_cookie_issued_to_this_address_exempts_from_rate_limiting() -> None:
    """The RRL exemption judges the query alone: a server cookie this server handed to this address,
    younger than an hour; anything else (none, client part only, another address, stale, altered, another
    server's secret, a server without cookies) earns no exemption."""
    auth = _authority()
    first = ask(auth, f"www.{ORIGIN}", "A", options=[dns.edns.CookieOption(b"c" * 8, b"")])
    (cookie,) = [o for o in first.options if isinstance(o, dns.edns.CookieOption)]

    def wire(option: dns.edns.Option | None) -> bytes:
        options = [] if option is None else [option]
        return dns.message.make_query(f"www.{ORIGIN}", "A", use_edns=0, options=options).to_wire()

    assert has_valid_cookie(SECRET, wire(cookie), "192.0.2.9", NOW + 20)
    altered = dns.edns.CookieOption(cookie.client, bytes(cookie.server[:-1]) + bytes([cookie.server[-1] ^ 1]))
    for query, client, now, secret in [
        (wire(None), "192.0.2.9", NOW + 20, SECRET),
        (wire(dns.edns.CookieOption(b"c" * 8, b"")), "192.0.2.9", NOW + 20, SECRET),
        (wire(cookie), "192.0.2.10", NOW + 20, SECRET),
        (wire(cookie), "192.0.2.9", NOW + 7200, SECRET),
        (wire(altered), "192.0.2.9", NOW + 20, SECRET),
        (wire(dns.edns.CookieOption(b"d" * 8, cookie.server)), "192.0.2.9", NOW + 20, SECRET),
        (wire(cookie), "192.0.2.9", NOW + 20, b"t" * 32),
        (wire(cookie), "192.0.2.9", NOW + 20, b""),
        (b"\x00\x0a\x00" * 10, "192.0.2.9", NOW + 20, SECRET),  # not a message at all
    ]:
        assert not has_valid_cookie(secret, query, client, now)


def test_tlsa_helper_publishes_the_spki_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "www.example")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(datetime.datetime(2024, 1, 1))
            .not_valid_after(datetime.datetime(2034, 1, 1)).sign(key, hashes.SHA256()))
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert cli_main(["node", "dns", "tlsa", "--cert", str(path), "--port", "443", "--name", "www.example.",
                     "--dry-run"]) == 0
    out = capsys.readouterr().out.strip()
    assert out == f"_443._tcp.www.example. 3600 IN TLSA 3 1 1 {hashlib.sha256(der).hexdigest()}"
