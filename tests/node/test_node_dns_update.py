"""RFC 2136 dynamic updates on a real cluster, with the real `nsupdate -y` (skipped when not installed).

Alice owns alice.example. She delegates TXT records under `_acme-challenge` names to node1's validator
account, for the TSIG key node1's operator created with `trustchain-cli dns tsig add`. nsupdate then adds
and deletes a challenge record through node1's listener, over UDP and TCP, and another node's listener
answers with the change. An update outside the delegation is REFUSED, a wrong secret NOTAUTH, an unsigned
update REFUSED; and the replicas themselves refuse a validator that orders what was not delegated to it,
whether it holds no delegation at all or steps outside the one it holds.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.query
import dns.rcode
import dns.tsig
import dns.tsigkeyring
import dns.update
import pytest
from acme_helpers import logged_and_proven, ocsp_status
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from node_harness import REPO, Cluster, http
from signed_client import Client

from reference_node.genesis import load_seed
from trustchain.accounts import Ed25519AccountSigner
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, ZoneUpdate

ZONE = "alice.example."
KEY = "certbot.alice.example."
CHALLENGE = f"_acme-challenge.www.{ZONE}"
ALICE = Ed25519AccountSigner(hashlib.sha256(b"alice dynamic update").digest())


def dns_port(c: Cluster, i: int) -> int:
    return int(tomllib.loads(c.configs[i].read_text())["dns"]["listen"].rsplit(":", 1)[1])


def txt(c: Cluster, i: int, name: str) -> list[str]:
    response = dns.query.udp(dns.message.make_query(name, "TXT"), "127.0.0.1", timeout=3, port=dns_port(c, i))
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset if rrset.rdtype == 16)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, str]]]:
    if shutil.which("nsupdate") is None:
        pytest.skip("nsupdate not installed (apt: bind9-dnsutils)")
    with Cluster(tmp_path_factory.mktemp("dns-update"), 4, 3, unsigned_writes=False) as c:
        alice = Client(c, ALICE)
        assert alice.send_registration()[0] == 200
        code, res = alice.send("dns", dnsapp.create_command(ZONE, primary_ns=f"ns1.{ZONE}", admin=f"hostmaster.{ZONE}",
                                                            nameservers=[f"ns1.{ZONE}"]))
        assert code == 200 and res["result"]["status"] == "ok", res
        out = subprocess.run([sys.executable, "-m", "reference_node.cli", "dns", "tsig", "add", KEY, "--zone", ZONE,
                              "--config", str(c.configs[1]), "--json"], capture_output=True, text=True, check=True,
                             cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)))
        key = json.loads(out.stdout)
        assert key["delegate"] == c.status(1)["account"], key
        code, res = alice.send("dns", dnsapp.delegate_command(
            ZONE, bytes.fromhex(key["delegate"]), KEY, names=["_acme-challenge", "_acme-challenge.*"],
            types=["TXT"], expires_s=int(time.time()) + 3600))
        assert code == 200 and res["result"]["status"] == "ok", res
        c.wait_for(lambda: c.status(1)["dns"]["delegations"] == 1, what="the delegation on node1")
        yield c, key


def nsupdate(c: Cluster, key: str, *lines: str, tcp: bool = False) -> subprocess.CompletedProcess[str]:
    script = "\n".join([f"server 127.0.0.1 {dns_port(c, 1)}", f"zone {ZONE}", *lines, "send", ""])
    args = ["nsupdate", *(["-v"] if tcp else []), *(["-y", key] if key else [])]
    return subprocess.run(args, input=script, capture_output=True, text=True, timeout=60, check=False)


def test_nsupdate_adds_and_deletes_a_challenge_seen_by_another_node(cluster: tuple[Cluster, dict[str, str]]) -> None:
    c, key = cluster
    y = f"hmac-sha256:{KEY}:{key['secret']}"
    done = nsupdate(c, y, f'update add {CHALLENGE} 60 TXT "token-1"')
    assert done.returncode == 0, done.stderr
    c.wait_for(lambda: txt(c, 3, CHALLENGE) == ['"token-1"'], what="the TXT record on node3")
    done = nsupdate(c, y, f'update add {CHALLENGE} 60 TXT "token-2"', tcp=True)
    assert done.returncode == 0, done.stderr
    c.wait_for(lambda: txt(c, 2, CHALLENGE) == ['"token-1"', '"token-2"'], what="both records on node2")
    done = nsupdate(c, y, f'update delete {CHALLENGE} TXT "token-1"')
    assert done.returncode == 0, done.stderr
    c.wait_for(lambda: txt(c, 3, CHALLENGE) == ['"token-2"'], what="one record deleted on node3")
    # prerequisites are judged by the replicas: "no TXT there" does not hold, so nothing changes
    done = nsupdate(c, y, f"prereq nxrrset {CHALLENGE} TXT", f'update add {CHALLENGE} 60 TXT "token-3"')
    assert done.returncode != 0 and "YXRRSET" in done.stdout + done.stderr, done
    done = nsupdate(c, y, f"update delete {CHALLENGE} TXT")
    assert done.returncode == 0, done.stderr
    c.wait_for(lambda: txt(c, 2, CHALLENGE) == [], what="the RRset deleted on node2")


def test_out_of_scope_wrong_key_and_unsigned_updates_are_refused(cluster: tuple[Cluster, dict[str, str]]) -> None:
    c, key = cluster
    y = f"hmac-sha256:{KEY}:{key['secret']}"
    before = c.status(0)["last_executed"]
    done = nsupdate(c, y, f"update add www.{ZONE} 60 A 203.0.113.66")
    assert done.returncode != 0 and "REFUSED" in done.stdout + done.stderr, done
    done = nsupdate(c, y, f'update add www.{ZONE} 60 TXT "not a challenge"')
    assert done.returncode != 0 and "REFUSED" in done.stdout + done.stderr, done
    wrong = f"hmac-sha256:{KEY}:{base64.b64encode(b'x' * 32).decode()}"
    done = nsupdate(c, wrong, f'update add {CHALLENGE} 60 TXT "forged"')
    assert done.returncode != 0 and "NOTAUTH" in done.stdout + done.stderr, done
    done = nsupdate(c, "", f'update add {CHALLENGE} 60 TXT "unsigned"')
    assert done.returncode != 0 and "REFUSED" in done.stdout + done.stderr, done
    # the same key at a node it was not created on (and that holds no delegation) authenticates nothing
    elsewhere = dns.update.UpdateMessage(ZONE, keyring=dns.tsigkeyring.from_text({KEY: key["secret"]}),
                                         keyalgorithm="hmac-sha256")
    elsewhere.add("_acme-challenge.www", 60, "TXT", '"elsewhere"')
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:  # the answer is unsigned: read it raw
        sock.settimeout(5)
        sock.sendto(elsewhere.to_wire(), ("127.0.0.1", dns_port(c, 2)))
        response = dns.message.from_wire(sock.recv(4096), keyring=False)
    assert response.rcode() == dns.rcode.NOTAUTH
    for i in range(4):
        assert txt(c, i, f"www.{ZONE}") == [] and txt(c, i, CHALLENGE) == []
    assert c.status(0)["last_executed"] - before <= 1  # refusals are not ordered (a tick may be)


def test_replicas_refuse_a_validator_acting_beyond_the_delegation(cluster: tuple[Cluster, dict[str, str]]) -> None:
    c, _ = cluster
    node1 = Client(c, Ed25519AccountSigner(load_seed(c.configs[1].parent / "consensus.key")))
    node2 = Client(c, Ed25519AccountSigner(load_seed(c.configs[2].parent / "consensus.key")))
    challenge = ZoneUpdate(ZONE, (AddRecords(CHALLENGE, "TXT", 60, ('"byzantine"',)),))
    code, res = node2.send("dns", dnsapp.delegated_update_command(KEY, (), challenge), node=2)
    assert code == 422 and res["field"] == "delegated_update.authorization", res
    www = ZoneUpdate(ZONE, (AddRecords(f"www.{ZONE}", "A", 60, ("203.0.113.66",)),))
    code, res = node1.send("dns", dnsapp.delegated_update_command(KEY, (), www), node=1)
    assert code == 422 and res["field"] == "ops[0]", res
    code, res = node1.send("dns", dnsapp.update_command(www), node=1)  # nor as the zone's owner
    assert code == 422 and res["field"] == "update.authorization", res
    for i in range(4):
        assert txt(c, i, CHALLENGE) == []


def test_certbot_rfc2136_client_publishes_and_removes_a_challenge(cluster: tuple[Cluster, dict[str, str]]) -> None:
    """certbot's own RFC 2136 client, as `--dns-rfc2136` runs it: a signed SOA query finds the zone (the
    answer must be authoritative and TSIG-signed), the TXT is added over TCP, then that one record deleted."""
    plugin = pytest.importorskip("certbot_dns_rfc2136._internal.dns_rfc2136")
    c, key = cluster
    client = plugin._RFC2136Client("127.0.0.1", dns_port(c, 1), KEY, key["secret"], dns.tsig.HMAC_SHA256, True, 20)
    client.add_txt_record(f"_acme-challenge.api.{ZONE}", "certbot-token", 120)
    c.wait_for(lambda: txt(c, 3, f"_acme-challenge.api.{ZONE}") == ['"certbot-token"'], what="the TXT on node3")
    client.del_txt_record(f"_acme-challenge.api.{ZONE}", "certbot-token")
    c.wait_for(lambda: txt(c, 2, f"_acme-challenge.api.{ZONE}") == [], what="the TXT gone on node2")


def certbot(*args: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    dirs = ["--config-dir", str(workdir / "config"), "--work-dir", str(workdir / "work"),
            "--logs-dir", str(workdir / "logs")]
    return subprocess.run([sys.executable, "-c", "import sys; from certbot.main import main; sys.exit(main())",
                           *args, *dirs, "-n"], capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_certbot_dns_rfc2136_obtains_renews_and_revokes(cluster: tuple[Cluster, dict[str, str]],
                                                        tmp_path: Path) -> None:
    """certbot certonly --dns-rfc2136 against node0's ACME directory, publishing through node1's listener
    under Alice's delegation, with nothing TrustChain-specific on the client: the credentials file is what
    `trustchain-cli dns tsig add` printed. The certificate is then in every node's CT log and OCSP;
    renew --force-renewal and revoke follow."""
    pytest.importorskip("certbot_dns_rfc2136")
    c, key = cluster
    name = f"shop.{ZONE.rstrip('.')}"
    creds = tmp_path / "rfc2136.ini"
    creds.write_text(key["certbot_credentials"])
    creds.chmod(0o600)
    assert f"dns_rfc2136_port = {dns_port(c, 1)}" in creds.read_text(), creds.read_text()
    server = c.apis[0] + "/acme/directory"
    common = ["--server", server, "--register-unsafely-without-email", "--agree-tos"]
    run = certbot("certonly", "--dns-rfc2136", "--dns-rfc2136-credentials", str(creds),
                  "--dns-rfc2136-propagation-seconds", "1", "-d", name, *common, workdir=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    live = tmp_path / "config" / "live" / name
    verify = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(c.dir / "root.pem"),
                             "-untrusted", str(live / "chain.pem"), str(live / "cert.pem")],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0 and "cert.pem: OK" in verify.stdout, verify.stdout + verify.stderr
    first = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    issuer = x509.load_pem_x509_certificate((live / "chain.pem").read_bytes())
    assert first.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName) == [name]
    # certbot's cleanup deleted its challenge record again, through the same delegation
    c.wait_for(lambda: txt(c, 2, f"_acme-challenge.{name}.") == [], what="the challenge removed on node2")

    # issued through node0, the certificate is in every node's log (with a proof to its signed tree head)
    # and every node answers OCSP for it with the validators' signature
    der = first.public_bytes(serialization.Encoding.DER)
    for i in range(4):
        c.wait_for(lambda i=i: logged_and_proven(c.apis[i], der) is not None, timeout=60,
                   what=f"the certificate in node{i}'s CT log")
        c.wait_for(lambda i=i: ocsp_status(c.apis[i], first, issuer) == ocsp.OCSPCertStatus.GOOD, timeout=90,
                   what=f"node{i}'s OCSP answering good")

    run = certbot("renew", "--force-renewal", "--no-random-sleep-on-renew", workdir=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    second = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    assert second.serial_number != first.serial_number, "renewal issued a new certificate"

    run = certbot("revoke", "--cert-path", str(live / "cert.pem"), "--reason", "keycompromise",
                  "--no-delete-after-revoke", "--server", server, workdir=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    serial = format(second.serial_number, "x")
    code, cert = http("GET", f"{c.apis[3]}/api/v1/cert/{serial}")
    assert code == 200 and cert["revoked"] is True and cert["revocation_reason"] == 1, cert
    for i in range(4):
        c.wait_for(lambda i=i: ocsp_status(c.apis[i], second, issuer) == ocsp.OCSPCertStatus.REVOKED, timeout=90,
                   what=f"node{i}'s OCSP answering revoked")
    assert ocsp_status(c.apis[1], first, issuer) == ocsp.OCSPCertStatus.GOOD
