"""End to end: a zone created and updated through one node's HTTP API is answered, DNSSEC-signed, by
*another* node's DNS listeners: dig over UDP and TCP (DO bit: RRSIGs present, AA set), kdig over
DNS-over-QUIC verifying the node's TLS certificate (issued by the TrustChain intermediate, checked
against the TrustChain root and the node name), and delv validating from the zone's DS (taken
from the API) reads "fully validated". A later update shows on every node's listener. Each tool
missing is a skip, not a failure."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.edns
import dns.message
import dns.query
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from node_harness import Cluster, http

from reference_node.cli import main as cli_main
from trustchain.ca import names as canames

ZONE = "e2e.example."


@dataclass(frozen=True)
class Listeners:
    udp: int  # UDP and TCP share the port
    doq: int
    tls_ca: Path
    tls_name: str


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dns-e2e"), nodes=4, threshold=3, timeout="1s")
    with c:
        code, res = c.create_zone(ZONE)
        assert code == 200, res
        code, res = http("POST", c.apis[0] + "/api/v1/dns/update", {"update": {"origin": ZONE, "ops": [
            {"op": "add", "name": f"www.{ZONE}", "type": "A", "ttl": 300, "values": ["192.0.2.80"]},
            {"op": "add", "name": f"www.{ZONE}", "type": "AAAA", "ttl": 300, "values": ["2001:db8::80"]},
            {"op": "add", "name": f"ns1.{ZONE}", "type": "A", "ttl": 300, "values": ["192.0.2.53"]},
            {"op": "add", "name": ZONE, "type": "TXT", "ttl": 300, "values": ['"set through the API"']}]}})
        assert code == 200 and (res["status"], res["op"], res["serial"]) == ("ok", "update", 2), res
        for i in range(len(c.apis)):
            c.wait_for(lambda i=i: http("GET", c.apis[i] + f"/api/v1/dns/resolve?domain=www.{ZONE}&type=A")[1]
                       ["answer"] != [], what=f"record on node{i}")
        yield c


def listeners(c: Cluster, i: int) -> Listeners:
    doc = tomllib.loads(c.configs[i].read_text())
    udp = int(doc["dns"]["listen"].rsplit(":", 1)[1])
    doq = int(doc["dns"]["doq_listen"].rsplit(":", 1)[1])
    return Listeners(udp, doq, c.dir / "root.pem", canames.node_name(i))  # node certificate, TrustChain root


def tool(*cmd: str) -> str:
    if shutil.which(cmd[0]) is None:
        pkg = {"kdig": "knot-dnsutils"}.get(cmd[0], "bind9-dnsutils")
        pytest.skip(f"{cmd[0]} not installed (apt: {pkg})")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return out.stdout + out.stderr


def test_dig_udp_and_tcp_with_dnssec(cluster: Cluster) -> None:
    ln = listeners(cluster, 2)
    out = tool("dig", "@127.0.0.1", "-p", str(ln.udp), "+dnssec", "+norec", f"www.{ZONE}", "A")
    assert "status: NOERROR" in out and "192.0.2.80" in out, out
    assert re.search(r"IN\s+RRSIG\s+A 15 3 300 ", out), out  # Ed25519 signature over the A RRset
    flags = out.split("flags:", 1)[1].split(";", 1)[0]
    assert " aa" in flags and "; EDNS: version: 0, flags: do;" in out, out
    out = tool("dig", "@127.0.0.1", "-p", str(ln.udp), "+tcp", "+dnssec", f"www.{ZONE}", "AAAA")
    assert "status: NOERROR" in out and "2001:db8::80" in out and "RRSIG" in out, out
    out = tool("dig", "@127.0.0.1", "-p", str(ln.udp), "+tcp", "+dnssec", ZONE, "DNSKEY")
    assert re.search(r"IN\s+DNSKEY\s+257 3 15 ", out) and re.search(r"IN\s+RRSIG\s+DNSKEY 15 ", out), out
    out = tool("dig", "@127.0.0.1", "-p", str(ln.udp), "+dnssec", f"nope.{ZONE}", "A")
    assert "status: NXDOMAIN" in out and re.search(r"IN\s+NSEC3?\s", out), out  # authenticated denial


def test_kdig_over_quic_verifies_the_node_certificate(cluster: Cluster) -> None:
    ln = listeners(cluster, 3)
    tls = (f"+tls-ca={ln.tls_ca}", f"+tls-hostname={ln.tls_name}")  # +quic must follow the +tls-* options
    out = tool("kdig", "@127.0.0.1", "-p", str(ln.doq), *tls, "+quic", "+dnssec", f"www.{ZONE}", "A")
    assert "QUIC session" in out and "NOERROR" in out and "192.0.2.80" in out and "RRSIG" in out, out
    out = tool("kdig", "@127.0.0.1", "-p", str(ln.udp), "+dnssec", ZONE, "TXT")
    assert "set through the API" in out and "RRSIG" in out, out


def test_delv_fully_validates_from_the_api_trust_anchor(cluster: Cluster, tmp_path: Path) -> None:
    code, res = http("GET", cluster.apis[1] + f"/api/v1/dns/dnssec/validate?domain=www.{ZONE}&type=A")
    assert code == 200 and res["secure"] is True, res
    lines = []
    for line in res["trust_anchor"]:
        name, _ttl, _cls, _t, tag, alg, dtype, digest = line.split()
        lines.append(f'  {name} static-ds {tag} {alg} {dtype} "{digest.upper()}";')
    anchors = tmp_path / "anchors.conf"
    anchors.write_text("trust-anchors {\n" + "\n".join(lines) + "\n};\n")
    ln = listeners(cluster, 1)
    out = tool("delv", "@127.0.0.1", "-p", str(ln.udp), "-a", str(anchors), f"+root={ZONE}", f"www.{ZONE}", "A")
    assert "fully validated" in out and "192.0.2.80" in out, out
    # the wrong anchor is refused: proof that the check is real
    bad = tmp_path / "bad.conf"
    bad.write_text(anchors.read_text().replace(lines[0].split('"')[1], "00" * 32))
    out = tool("delv", "@127.0.0.1", "-p", str(ln.udp), "-a", str(bad), f"+root={ZONE}", f"www.{ZONE}", "A")
    assert "fully validated" not in out, out
    assert "no valid signature found (DS)" in out and "resolution failed: broken trust chain" in out, out


def test_update_through_api_reaches_every_listener(cluster: Cluster) -> None:
    code, res = http("POST", cluster.apis[3] + "/api/v1/dns/update", {"update": {"origin": ZONE, "ops": [
        {"op": "replace", "name": f"www.{ZONE}", "type": "A", "ttl": 120, "values": ["192.0.2.81"]}]}})
    assert code == 200, res
    if shutil.which("dig") is None:
        pytest.skip("dig not installed (apt: bind9-dnsutils)")
    for i in range(len(cluster.apis)):
        ln = listeners(cluster, i)
        cluster.wait_for(lambda ln=ln: "192.0.2.81" in tool("dig", "@127.0.0.1", "-p", str(ln.udp), "+short",
                                                           f"www.{ZONE}", "A"), what=f"new A on node{i}")
        out = tool("dig", "@127.0.0.1", "-p", str(ln.udp), "+dnssec", f"www.{ZONE}", "A")
        assert "192.0.2.80" not in out and "RRSIG" in out, out


def test_repeated_queries_show_in_the_cache_hit_ratio(cluster: Cluster) -> None:
    import dns.message
    import dns.query
    import dns.rcode

    def ratio() -> float:
        code, text = http("GET", cluster.apis[3] + "/api/v1/metrics")
        assert code == 200
        found = re.search(r"^trustchain_dns_cache_hit_ratio (\S+)$", text, re.M)
        assert found is not None, text
        return float(found.group(1))

    before = ratio()
    ln = listeners(cluster, 3)
    query = dns.message.make_query(f"ratio.www.{ZONE}", "A", want_dnssec=True)  # a name no other test asks
    for _ in range(20):
        reply = dns.query.udp(query, "127.0.0.1", port=ln.udp, timeout=5)
        assert reply.rcode() == dns.rcode.NXDOMAIN and reply.authority, reply
    after = ratio()
    assert after > before and after > 0.5  # 19 of the 20 identical queries came from the answer cache


def _anchor_conf(cluster: Cluster, zone: str, path: Path) -> Path:
    code, res = http("GET", cluster.apis[0] + f"/api/v1/dns/dnssec/validate?domain={zone}&type=SOA")
    assert code == 200 and res["secure"] is True, res
    lines = []
    for line in res["trust_anchor"]:
        name, _ttl, _cls, _t, tag, alg, dtype, digest = line.split()
        lines.append(f'  {name} static-ds {tag} {alg} {dtype} "{digest.upper()}";')
    path.write_text("trust-anchors {\n" + "\n".join(lines) + "\n};\n")
    return path


def test_cli_publishes_tlsa_for_a_trustchain_certificate_and_delv_validates_it(cluster: Cluster,
                                                                                 tmp_path: Path) -> None:
    cert = cluster.dir / "root.pem"  # a TrustChain certificate; any PEM certificate works the same
    assert cli_main(["node", "--node", cluster.apis[0], "dns", "tlsa", "--cert", str(cert), "--port", "443",
                     "--name", f"www.{ZONE}"]) == 0
    spki = x509.load_pem_x509_certificate(cert.read_bytes()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashlib.sha256(spki).hexdigest()
    ln = listeners(cluster, 2)
    cluster.wait_for(lambda: digest[:16] in tool("dig", "@127.0.0.1", "-p", str(ln.udp), "+short",
                                                 f"_443._tcp.www.{ZONE}", "TLSA").lower(), what="TLSA on node2")
    anchors = _anchor_conf(cluster, ZONE, tmp_path / "anchors.conf")
    out = tool("delv", "@127.0.0.1", "-p", str(ln.udp), "-a", str(anchors), f"+root={ZONE}",
               f"_443._tcp.www.{ZONE}", "TLSA")
    assert "fully validated" in out and "3 1 1" in out and digest[:16].upper() in out.upper().replace(" ", ""), out


def test_p256_zone_with_a_wildcard_validates_and_the_listener_sends_cookies(cluster: Cluster,
                                                                             tmp_path: Path) -> None:
    zone = "p256.e2e.example."
    code, res = http("POST", cluster.apis[0] + "/api/v1/dns/update", {"create": {
        "origin": zone, "primary_ns": f"ns1.{zone}", "admin": f"hostmaster.{zone}", "algorithm": 13}})
    assert code == 200 and res["status"] == "ok", res
    code, res = http("POST", cluster.apis[0] + "/api/v1/dns/update", {"update": {"origin": zone, "ops": [
        {"op": "add", "name": f"*.wild.{zone}", "type": "A", "ttl": 300, "values": ["192.0.2.99"]}]}})
    assert code == 200 and res["status"] == "ok", res
    code, res = http("POST", cluster.apis[0] + "/api/v1/dns/update", {"create": {
        "origin": "bad.e2e.example.", "primary_ns": "ns1.bad.e2e.example.", "admin": "h.e2e.example.",
        "algorithm": 8}})
    assert code == 422 and res["field"] == "create.algorithm", res  # refused by the replicas, naming the field
    ln = listeners(cluster, 3)
    cluster.wait_for(lambda: "192.0.2.99" in tool("dig", "@127.0.0.1", "-p", str(ln.udp), "+short",
                                                  f"x.wild.{zone}", "A"), what="wildcard on node3")
    anchors = _anchor_conf(cluster, zone, tmp_path / "p256.conf")
    out = tool("delv", "@127.0.0.1", "-p", str(ln.udp), "-a", str(anchors), f"+root={zone}", f"x.wild.{zone}", "A")
    assert "fully validated" in out and "192.0.2.99" in out, out
    code, res = http("GET", cluster.apis[3] + f"/api/v1/dns/dnssec/validate?domain=x.wild.{zone}&type=A")
    assert code == 200 and res["secure"] is True, res  # the node's own validator agrees with delv
    query = dns.message.make_query(f"x.wild.{zone}", "A", use_edns=0,
                                   options=[dns.edns.CookieOption(b"\x01" * 8, b"")])
    reply = dns.query.udp(query, "127.0.0.1", port=ln.udp, timeout=5)
    cookie = next(o for o in reply.options if isinstance(o, dns.edns.CookieOption))
    assert cookie.client == b"\x01" * 8 and len(cookie.server) == 16
