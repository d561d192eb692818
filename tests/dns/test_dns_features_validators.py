"""Real validators over loopback: delegations (a signed ECDSA P-256 child validating from the parent's
DS, an insecure child proven unsigned, a child whose DS does not match), wildcard answers and denials,
DNAME, TLSA. delv queries the parent's server with the parent's DS as its only trust anchor; unbound
iterates from a stub zone with that trust anchor and follows the referral to the child's own server
at its glue address (port 53 on a loopback address: glue carries no port)."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from dns_testutil import seed
from loopback import Loopback

from trustchain.dns.authority import Authority
from trustchain.dns.denial import NSEC3Params
from trustchain.dns.dnssec import SigningPolicy, sign_zone
from trustchain.dns.keys import ECDSAP256, KeySet
from trustchain.dns.validator import Validator, ZoneKeys
from trustchain.dns.zone import AddRecords, Zone, ZoneUpdate

PARENT, CHILD, INSECURE, BAD = "tc.example.", "child.tc.example.", "insecure.tc.example.", "bad.tc.example."
TLSA = "3 1 1 " + "ab" * 32


@dataclass
class Served:
    port: int  # the parent's server (UDP and TCP)
    child_ip: str  # the children's server, on port 53
    anchor: dns.rrset.RRset  # the parent's DS


def _zone(origin: str, *ops: AddRecords) -> Zone:
    zone = Zone.create(origin, primary_ns="ns1", admin="hostmaster", nameservers=("ns1",))
    if ops:
        zone.apply(ZoneUpdate(origin, ops))
    return zone


def _child_ip() -> str:
    return f"127.{random.randint(60, 250)}.{random.randint(1, 250)}.{random.randint(2, 250)}"


@pytest.fixture(scope="module", params=[None, NSEC3Params()], ids=["nsec", "nsec3"])
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    now = int(time.time())
    policy = SigningPolicy(nsec3=request.param)
    child_ip = _child_ip()
    child = _zone(CHILD, AddRecords("ns1", "A", 300, (child_ip,)), AddRecords("www", "A", 300, ("192.0.2.100",)))
    child_signed = sign_zone(child, KeySet.initial(seed("c-ksk"), seed("c-zsk"), ECDSAP256), now, policy)
    bad = _zone(BAD, AddRecords("ns1", "A", 300, (child_ip,)), AddRecords("www", "A", 300, ("192.0.2.101",)))
    bad_signed = sign_zone(bad, KeySet.initial(seed("b-ksk"), seed("b-zsk")), now, policy)
    insecure = _zone(INSECURE, AddRecords("ns1", "A", 300, (child_ip,)), AddRecords("www", "A", 300, ("192.0.2.102",)))
    wrong_ds = KeySet.initial(seed("other"), seed("b-zsk")).ds_records(bad.origin)
    parent = _zone(
        PARENT,
        AddRecords("ns1", "A", 300, ("127.0.0.1",)),
        AddRecords("www", "A", 300, ("192.0.2.1",)),
        AddRecords("*.wild", "A", 300, ("192.0.2.77",)),
        AddRecords("*.wild", "TXT", 300, ('"synthesised"',)),
        AddRecords("old", "DNAME", 300, ("new",)),
        AddRecords("www.new", "A", 300, ("192.0.2.90",)),
        AddRecords("_443._tcp.www", "TLSA", 300, (TLSA,)),
        AddRecords("_sip._tcp", "SRV", 300, ("0 5 5060 www",)),
        AddRecords("child", "NS", 300, ("ns1.child",)),
        AddRecords("ns1.child", "A", 300, (child_ip,)),
        AddRecords("child", "DS", 300, tuple(r.to_text() for r in child_signed.ds())),
        AddRecords("insecure", "NS", 300, ("ns1.insecure",)),
        AddRecords("ns1.insecure", "A", 300, (child_ip,)),
        AddRecords("bad", "NS", 300, ("ns1.bad",)),
        AddRecords("ns1.bad", "A", 300, (child_ip,)),
        AddRecords("bad", "DS", 300, tuple(r.to_text() for r in wrong_ds)),
    )
    parent_signed = sign_zone(parent, KeySet.initial(seed("p-ksk"), seed("p-zsk")), now, policy)
    top = Authority()
    top.load(parent, parent_signed)
    top.load(child, child_signed)  # the parent's server hosts the secure child too (delv asks it alone)
    children = Authority()
    children.load(child, child_signed)
    children.load(bad, bad_signed)
    children.load(insecure)
    parent_server = Loopback(top)
    try:
        child_server = Loopback(children, child_ip, 53)
    except OSError as exc:
        parent_server.close()
        pytest.skip(f"cannot serve on {child_ip}:53: {exc}")
    yield Served(parent_server.port, child_ip, parent_signed.ds())
    parent_server.close()
    child_server.close()


def _query(port: int, qname: str, qtype: str, host: str = "127.0.0.1") -> dns.message.Message:
    return dns.query.tcp(dns.message.make_query(qname, qtype, want_dnssec=True), host, port=port, timeout=5)


def test_referral_carries_ns_glue_and_ds_or_its_denial(served: Served) -> None:
    reply = _query(served.port, f"www.{INSECURE}", "A")  # no zone for it on the parent's server: a referral
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer and not reply.flags & dns.flags.AA
    types = {(r.name.to_text(), r.rdtype) for r in reply.authority}
    assert (INSECURE, dns.rdatatype.NS) in types and (INSECURE, dns.rdatatype.DS) not in types
    assert any(r.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3) for r in reply.authority)
    assert all(r.rdtype != dns.rdatatype.RRSIG or r.covers != dns.rdatatype.NS for r in reply.authority)
    assert [r.to_text() for r in reply.additional] == [f"ns1.{INSECURE} 300 IN A {served.child_ip}"]
    reply = _query(served.port, f"www.{BAD}", "A")
    covered = {r.covers for r in reply.authority if r.rdtype == dns.rdatatype.RRSIG}
    assert dns.rdatatype.DS in {r.rdtype for r in reply.authority} and covered == {dns.rdatatype.DS}


def test_ds_is_answered_by_the_parent(served: Served) -> None:
    reply = _query(served.port, CHILD, "DS")  # the child is served here too: DS still comes from the parent
    assert reply.flags & dns.flags.AA and [r.rdtype for r in reply.answer] == [dns.rdatatype.DS, dns.rdatatype.RRSIG]
    assert reply.answer[1][0].signer.to_text() == PARENT


def test_wildcard_answer_has_the_expanded_owner_and_the_wildcards_label_count(served: Served) -> None:
    reply = _query(served.port, f"a.b.wild.{PARENT}", "A")
    rrset, sig = reply.answer
    assert rrset.name.to_text() == f"a.b.wild.{PARENT}" and rrset[0].address == "192.0.2.77"
    assert sig.name == rrset.name and sig[0].labels == 3  # *.wild.tc.example. has three labels below the root
    assert any(r.rdtype in (dns.rdatatype.NSEC, dns.rdatatype.NSEC3) for r in reply.authority)


def test_minimal_any_and_srv_additional(served: Served) -> None:
    reply = _query(served.port, f"www.{PARENT}", "ANY")
    assert len({r.rdtype for r in reply.answer} - {dns.rdatatype.RRSIG}) == 1
    reply = _query(served.port, f"_sip._tcp.{PARENT}", "SRV")
    assert f"www.{PARENT} 300 IN A 192.0.2.1" in [r.to_text() for r in reply.additional]


def _delv(served: Served, tmp: Path, qname: str, qtype: str) -> str:
    if shutil.which("delv") is None:
        pytest.skip("delv not installed (apt: bind9-dnsutils)")
    anchors = tmp / "anchors.conf"
    lines = [f'  {PARENT} static-ds {r.key_tag} {r.algorithm} {r.digest_type} "{r.digest.hex().upper()}";'
             for r in served.anchor]
    anchors.write_text("trust-anchors {\n" + "\n".join(lines) + "\n};\n")
    cmd = ["delv", "@127.0.0.1", "-p", str(served.port), "-a", str(anchors), f"+root={PARENT}", qname, qtype]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return out.stdout + out.stderr


@pytest.mark.parametrize(("qname", "qtype", "expect"), [
    (f"www.{CHILD}", "A", "192.0.2.100"),  # ECDSA P-256 child from the Ed25519 parent's DS
    (f"x.wild.{PARENT}", "A", "192.0.2.77"),
    (f"a.b.wild.{PARENT}", "TXT", "synthesised"),
    (f"x.wild.{PARENT}", "MX", "NXRRSET"),  # wildcard NODATA
    (f"x.nowild.{PARENT}", "A", "NXDOMAIN"),
    (f"www.old.{PARENT}", "A", "192.0.2.90"),  # DNAME, synthesised CNAME, then the target
    (f"_443._tcp.www.{PARENT}", "TLSA", TLSA.split()[-1][:16]),
])
def test_delv_fully_validates(served: Served, tmp_path: Path, qname: str, qtype: str, expect: str) -> None:
    out = _delv(served, tmp_path, qname, qtype)
    assert "fully validated" in out and expect.lower() in out.lower(), out


@pytest.fixture(scope="module")
def unbound(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    if shutil.which("unbound") is None:
        pytest.skip("unbound not installed (apt: unbound)")
    tmp = tmp_path_factory.mktemp("unbound")
    port = served.port + 1 if served.port < 65000 else served.port - 1
    anchors = "\n".join(f'  trust-anchor: "{PARENT} DS {r.to_text()}"' for r in served.anchor)
    conf = tmp / "unbound.conf"
    conf.write_text(f"""server:
  interface: 127.0.0.1
  port: {port}
  do-not-query-localhost: no
  username: ""
  chroot: ""
  directory: "{tmp}"
  pidfile: "{tmp}/unbound.pid"
  use-syslog: no
  logfile: "{tmp}/unbound.log"
  verbosity: 1
  val-log-level: 2
  module-config: "validator iterator"
  qname-minimisation: no
  harden-glue: yes
  prefetch: no
{anchors}
stub-zone:
  name: "{PARENT}"
  stub-addr: 127.0.0.1@{served.port}
""")
    proc = subprocess.Popen(["unbound", "-d", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                dns.query.udp(dns.message.make_query(f"www.{PARENT}", "A"), "127.0.0.1", port=port, timeout=1)
                break
            except (TimeoutError, OSError, dns.exception.Timeout):
                if proc.poll() is not None:
                    pytest.fail("unbound exited: " + (proc.stdout.read().decode() if proc.stdout else ""))
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _resolve(port: int, qname: str, qtype: str) -> dns.message.Message:
    query = dns.message.make_query(qname, qtype, want_dnssec=True)
    query.flags |= dns.flags.AD
    return dns.query.udp(query, "127.0.0.1", port=port, timeout=10)


@pytest.mark.parametrize(("qname", "qtype", "rcode", "expect"), [
    (f"www.{CHILD}", "A", dns.rcode.NOERROR, "192.0.2.100"),  # followed the referral to the child's server
    (f"x.wild.{PARENT}", "A", dns.rcode.NOERROR, "192.0.2.77"),
    (f"x.wild.{PARENT}", "MX", dns.rcode.NOERROR, ""),
    (f"x.nowild.{PARENT}", "A", dns.rcode.NXDOMAIN, ""),
    (f"www.old.{PARENT}", "A", dns.rcode.NOERROR, "192.0.2.90"),
    (f"_443._tcp.www.{PARENT}", "TLSA", dns.rcode.NOERROR, TLSA.split()[-1][:16]),
])
def test_unbound_validates(unbound: int, qname: str, qtype: str, rcode: dns.rcode.Rcode, expect: str) -> None:
    reply = _resolve(unbound, qname, qtype)
    assert reply.rcode() == rcode and reply.flags & dns.flags.AD, reply.to_text()
    assert expect in reply.to_text(), reply.to_text()


def test_unbound_insecure_child_and_bogus_child(unbound: int) -> None:
    reply = _resolve(unbound, f"www.{INSECURE}", "A")
    assert reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.AD, reply.to_text()
    assert "192.0.2.102" in reply.to_text()  # proven unsigned by the parent's signed denial of DS
    reply = _resolve(unbound, f"www.{BAD}", "A")
    assert reply.rcode() == dns.rcode.SERVFAIL, reply.to_text()  # its DS matches no key of the child
    assert re.search(r"192\.0\.2\.101", reply.to_text()) is None


@pytest.mark.parametrize(("qname", "qtype", "rcode", "expect"), [
    (f"x.wild.{PARENT}", "A", dns.rcode.NOERROR, "192.0.2.77"),
    (f"a.b.wild.{PARENT}", "TXT", dns.rcode.NOERROR, "synthesised"),
    (f"x.wild.{PARENT}", "MX", dns.rcode.NOERROR, ""),
    (f"x.nowild.{PARENT}", "A", dns.rcode.NXDOMAIN, ""),
    (f"www.old.{PARENT}", "A", dns.rcode.NOERROR, "192.0.2.90"),
    (f"_443._tcp.www.{PARENT}", "TLSA", dns.rcode.NOERROR, TLSA.split()[-1][:16]),
])
def test_our_validator_agrees_with_delv_and_unbound(
    served: Served, qname: str, qtype: str, rcode: dns.rcode.Rcode, expect: str
) -> None:
    """The very answers delv and unbound validate above, fetched the same way, are secure here too."""
    keys = _query(served.port, PARENT, "DNSKEY")
    dnskey = next(r for r in keys.answer if r.rdtype == dns.rdatatype.DNSKEY)
    sigs = next(r for r in keys.answer if r.rdtype == dns.rdatatype.RRSIG)
    reply = _query(served.port, qname, qtype)
    assert reply.rcode() == rcode and expect.lower() in reply.to_text().lower(), reply.to_text()
    result = Validator(served.anchor).validate(reply, [ZoneKeys(dnskey, sigs)], int(time.time()))
    assert result.secure, result.detail
