"""The `acme` client library (what certbot is built on) against a real cluster's ACME server.

Every request is the client's own JWS, ordered and checked by every replica; the certificate is issued
by the validators' FROST signature and must verify under the cluster's root with `openssl verify`.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import josepy as jose
import pytest
from acme import challenges, client, crypto_util, messages
from acme_helpers import ChallengeServer, PublicDNS, ZoneOwner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from node_harness import Cluster

ZONE = "shop.test."


@pytest.fixture(scope="module")
def public_dns() -> PublicDNS:
    return PublicDNS()


@pytest.fixture(scope="module")
def web() -> ChallengeServer:
    return ChallengeServer()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, public_dns: PublicDNS, web: ChallengeServer) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("acme"), 4, 3, unsigned_writes=False, dns_listeners=False,
                 dns_upstream=(public_dns.address,), acme_http01_port=web.port) as c:
        yield c


def acme_client(cluster: Cluster, node: int = 0, key: jose.JWK | None = None) -> client.ClientV2:
    key = key or jose.JWKRSA(key=rsa.generate_private_key(65537, 2048))
    net = client.ClientNetwork(key, user_agent="trustchain-tests")
    directory = client.ClientV2.get_directory(cluster.apis[node] + "/acme/directory", net)
    acme = client.ClientV2(directory, net)
    net.account = acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
    return acme


def certificate_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def openssl_verify(cluster: Cluster, chain_pem: str, tmp: Path) -> str:
    certs = x509.load_pem_x509_certificates(chain_pem.encode())
    assert len(certs) == 2, "the chain is the leaf and the issuing CA"
    leaf, inter = tmp / "leaf.pem", tmp / "inter.pem"
    leaf.write_bytes(certs[0].public_bytes(serialization.Encoding.PEM))
    inter.write_bytes(certs[1].public_bytes(serialization.Encoding.PEM))
    run = subprocess.run(["openssl", "verify", "-x509_strict", "-CAfile", str(cluster.dir / "root.pem"),
                          "-untrusted", str(inter), str(leaf)], capture_output=True, text=True, check=False)
    return run.stdout + run.stderr


def deadline(seconds: float = 120) -> dt.datetime:
    return dt.datetime.now() + dt.timedelta(seconds=seconds)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_dns01_in_a_trustchain_zone_issues_a_certificate_openssl_verifies(cluster: Cluster, tmp_path: Path) -> None:
    owner = ZoneOwner(cluster, b"acme-zone-owner")
    owner.register()
    owner.create_zone(ZONE)
    acme = acme_client(cluster)
    key_pem = certificate_key_pem()
    order = acme.new_order(crypto_util.make_csr(key_pem, ["www.shop.test"]))
    (authz,) = order.authorizations
    assert authz.body.identifier.value == "www.shop.test"
    chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
    account_key = acme.net.key
    owner.publish_txt(ZONE, "_acme-challenge.www.shop.test.", chall.chall.validation(account_key))
    acme.answer_challenge(chall, chall.chall.response(account_key))
    order = acme.poll_and_finalize(order, deadline())
    assert order.body.status == messages.STATUS_VALID
    out = openssl_verify(cluster, order.fullchain_pem, tmp_path)
    assert "leaf.pem: OK" in out, out
    leaf = x509.load_pem_x509_certificate(order.fullchain_pem.encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.shop.test"]
