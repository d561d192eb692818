"""certbot against a real cluster's ACME server: obtain (dns-01 published into TrustChain's own DNS by
a signed write in certbot's --manual-auth-hook), renew with --force-renewal, and revoke; and http-01 with
--webroot for a name outside TrustChain, which every validator fetches from the test's web server (the
nodes' upstream DNS is a loopback stub resolving the name to 127.0.0.1)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from acme_helpers import ChallengeServer, ZoneOwner, logged_and_proven, ocsp_status
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import ocsp
from node_harness import REPO, Cluster, http
from signed_client import PublicDNS

from reference_node.genesis import Genesis

pytestmark = pytest.mark.skipif(importlib.util.find_spec("certbot") is None, reason="certbot is not installed")

ZONE = "certbot-shop.test."
NAME = "www.certbot-shop.test"
SEED = b"certbot-zone-owner"
HOOK = """\
#!{python}
# certbot --manual-auth-hook / --manual-cleanup-hook: (un)publish the dns-01 TXT record in TrustChain's DNS
# with a write signed by the zone owner's own account key.
import base64, hashlib, json, os, sys, time, urllib.request
sys.path.insert(0, {repo!r})
from trustchain.accounts import Ed25519AccountSigner, account_id
from trustchain.app import trustchain as tcapp
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, DeleteRRset, ZoneUpdate
from trustchain.encoding import decode

signer = Ed25519AccountSigner(hashlib.sha256({seed!r}).digest())
record = "_acme-challenge." + os.environ["CERTBOT_DOMAIN"] + "."
if {action!r} == "auth":
    ops = (AddRecords(record, "TXT", 60, ('"' + os.environ["CERTBOT_VALIDATION"] + '"',)),)
else:
    ops = (DeleteRRset(record, "TXT"),)
operation = tcapp.signed_operation(signer, account_id(signer.key), bytes.fromhex({cluster_id!r}), "dns",
                                   dnsapp.update_command(ZoneUpdate({zone!r}, ops)), nonce=os.urandom(16),
                                   deadline_us=time.time_ns() // 1000 + 120_000_000)
body = json.dumps({{"write": base64.b64encode(decode(tcapp.Routed, operation).payload).decode()}}).encode()
request = urllib.request.Request({api!r} + "/api/v1/write", data=body, headers={{"content-type": "application/json"}})
with urllib.request.urlopen(request, timeout=60) as response:
    assert response.status == 200
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, public_dns: PublicDNS, web: ChallengeServer) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("certbot"), 4, 3, unsigned_writes=False, dns_listeners=False,
                 dns_upstream=(public_dns.address,), acme_http01_port=web.port) as c:
        yield c


def certbot(*args: str, workdir: Path) -> subprocess.CompletedProcess[str]:
    dirs = ["--config-dir", str(workdir / "config"), "--work-dir", str(workdir / "work"),
            "--logs-dir", str(workdir / "logs")]
    return subprocess.run([sys.executable, "-c", "import sys; from certbot.main import main; sys.exit(main())",
                           *args, *dirs, "-n"], capture_output=True, text=True, timeout=300, check=False)


def serial_of(pem: Path) -> str:
    return format(x509.load_pem_x509_certificate(pem.read_bytes()).serial_number, "x")


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_certbot_obtains_renews_and_revokes(cluster: Cluster, tmp_path: Path) -> None:
    owner = ZoneOwner(cluster, SEED)
    owner.register()
    owner.create_zone(ZONE)
    cluster_id = Genesis.load(cluster.dir / "genesis.json").cluster_id.hex()
    hooks = {}
    for action in ("auth", "cleanup"):
        hook = tmp_path / f"{action}-hook.py"
        hook.write_text(HOOK.format(python=sys.executable, repo=str(REPO), seed=SEED, action=action,
                                    cluster_id=cluster_id, zone=ZONE, api=cluster.apis[1]))
        hook.chmod(0o755)
        hooks[action] = str(hook)
    server = cluster.apis[0] + "/acme/directory"
    common = ["--server", server, "--register-unsafely-without-email", "--agree-tos"]
    run = certbot("certonly", "--manual", "--preferred-challenges", "dns", "--manual-auth-hook", hooks["auth"],
                  "--manual-cleanup-hook", hooks["cleanup"], "-d", NAME, *common, workdir=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    live = tmp_path / "config" / "live" / NAME
    first = serial_of(live / "cert.pem")
    verify = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(cluster.dir / "root.pem"),
                             "-untrusted", str(live / "chain.pem"), str(live / "cert.pem")],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    run = certbot("renew", "--force-renewal", "--no-random-sleep-on-renew", workdir=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    second = serial_of(live / "cert.pem")
    assert second != first, "renewal issued a new certificate"

    run = certbot("revoke", "--cert-path", str(live / "cert.pem"), "--reason", "superseded",
                  "--no-delete-after-revoke", "--server", server, workdir=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    code, cert = http("GET", f"{cluster.apis[2]}/api/v1/cert/{second}")
    assert code == 200 and cert["revoked"] is True and cert["revocation_reason"] == 4, cert
    code, cert = http("GET", f"{cluster.apis[2]}/api/v1/cert/{first}")
    assert code == 200 and cert["revoked"] is False, cert


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_certbot_webroot_http01_for_an_outside_name(cluster: Cluster, public_dns: PublicDNS, web: ChallengeServer,
                                                    tmp_path: Path) -> None:
    """certbot --webroot writes the token into the web server's root; each validator fetches it on its own
    and a quorum of their observations validates the name. Obtained through node2: every node logs it and
    answers OCSP for it."""
    name = "www.certbot-outside.net"
    public_dns.a[name] = "127.0.0.1"
    root = tmp_path / "www"
    root.mkdir()
    web.root = str(root)
    server = cluster.apis[2] + "/acme/directory"
    run = certbot("certonly", "--webroot", "-w", str(root), "-d", name, "--server", server,
                  "--register-unsafely-without-email", "--agree-tos", workdir=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    live = tmp_path / "config" / "live" / name
    verify = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(cluster.dir / "root.pem"),
                             "-untrusted", str(live / "chain.pem"), str(live / "cert.pem")],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert not list((root / ".well-known" / "acme-challenge").glob("*")), "certbot removed its token"
    cert = x509.load_pem_x509_certificate((live / "cert.pem").read_bytes())
    issuer = x509.load_pem_x509_certificate((live / "chain.pem").read_bytes())
    der = cert.public_bytes(serialization.Encoding.DER)
    for i in range(4):
        cluster.wait_for(lambda i=i: logged_and_proven(cluster.apis[i], der) is not None, timeout=60,
                         what=f"the certificate in node{i}'s CT log")
        cluster.wait_for(lambda i=i: ocsp_status(cluster.apis[i], cert, issuer) == ocsp.OCSPCertStatus.GOOD,
                         timeout=90, what=f"node{i}'s OCSP answering good")
    # a name whose web server does not serve the token is refused, and certbot says so
    public_dns.a["www.certbot-nobody.net"] = "127.0.0.1"
    empty = tmp_path / "empty"
    empty.mkdir()
    run = certbot("certonly", "--webroot", "-w", str(empty), "-d", "www.certbot-nobody.net",
                  "--server", server, "--register-unsafely-without-email", "--agree-tos", workdir=tmp_path)
    assert run.returncode != 0 and "www.certbot-nobody.net" in run.stdout + run.stderr, run.stdout + run.stderr
