"""The `acme` client library (what certbot is built on) against a real cluster's ACME server.

Every request is the client's own JWS, ordered and checked by every replica; the certificate is issued
by the validators' FROST signature and must verify under the cluster's root with `openssl verify`.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import josepy as jose
import pytest
from acme import challenges, client, crypto_util, errors, messages
from acme import jws as acme_jws
from acme_helpers import ChallengeServer, ZoneOwner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from node_harness import Cluster, http
from signed_client import PublicDNS

ZONE = "shop.test."


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


def test_http01_for_an_outside_name_is_validated_by_the_validators_fetches(cluster: Cluster, public_dns: PublicDNS,
                                                                            web: ChallengeServer,
                                                                            tmp_path: Path) -> None:
    public_dns.a["www.outside-shop.net"] = "127.0.0.1"  # the name's web server is the test's, on loopback
    acme = acme_client(cluster, node=1)
    order = acme.new_order(crypto_util.make_csr(certificate_key_pem(), ["www.outside-shop.net"]))
    (authz,) = order.authorizations
    chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
    response, validation = chall.chall.response_and_validation(acme.net.key)
    web.tokens[chall.chall.encode("token")] = validation
    acme.answer_challenge(chall, response)
    order = acme.poll_and_finalize(order, deadline(180))
    assert order.body.status == messages.STATUS_VALID
    assert "leaf.pem: OK" in openssl_verify(cluster, order.fullchain_pem, tmp_path)
    # a name whose web server does not answer is refused by the validators
    public_dns.a["www.nobody-home.net"] = "127.0.0.1"
    order = acme.new_order(crypto_util.make_csr(certificate_key_pem(), ["www.nobody-home.net"]))
    (authz,) = order.authorizations
    chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
    acme.answer_challenge(chall, chall.chall.response(acme.net.key))
    with pytest.raises(errors.ValidationError) as refused:
        acme.poll_authorizations(order, deadline(180))
    assert "incorrectResponse" in str(refused.value), refused.value


# ---------------------------------------------------------------------- refusals, as problem documents

def _post(url: str, body: bytes, content_type: str = "application/jose+json") -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"content-type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, headers, raw = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        status, headers, raw = exc.code, dict(exc.headers), exc.read()
    ctype = headers.get("Content-Type", "")
    return status, headers, json.loads(raw) if "json" in ctype and raw else raw


def _nonce(cluster: Cluster, node: int = 0) -> bytes:
    req = urllib.request.Request(cluster.apis[node] + "/acme/new-nonce", method="HEAD")
    with urllib.request.urlopen(req, timeout=10) as resp:
        return jose.b64decode(resp.headers["Replay-Nonce"])


def _jws(payload: bytes, key: jose.JWK, url: str, nonce: bytes, kid: str | None) -> bytes:
    alg = jose.RS256 if isinstance(key, jose.JWKRSA) else jose.ES256  # the test keys: RSA or P-256
    return acme_jws.JWS.sign(payload, key=key, alg=alg, nonce=nonce, url=url, kid=kid).json_dumps().encode()


def _ready_order(cluster: Cluster, acme: client.ClientV2, name: str,
                 key_pem: bytes | None = None) -> messages.OrderResource:
    owner = ZoneOwner(cluster, b"acme-zone-owner")
    order = acme.new_order(crypto_util.make_csr(key_pem or certificate_key_pem(), [name]))
    (authz,) = order.authorizations
    chall = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.DNS01))
    owner.publish_txt(ZONE, f"_acme-challenge.{name}.", chall.chall.validation(acme.net.key))
    acme.answer_challenge(chall, chall.chall.response(acme.net.key))
    acme.poll_authorizations(order, deadline())
    return order


def test_refusals_are_problem_documents_never_500(cluster: Cluster) -> None:
    alice, mallory = acme_client(cluster, node=2), acme_client(cluster, node=3)
    base = cluster.apis[0]
    alice_kid = alice.net.account.uri
    order = _ready_order(cluster, alice, "bad.shop.test")

    # a JWS signed with another key than the account's
    url = order.uri
    status, headers, doc = _post(url, _jws(b"", mallory.net.key, url, _nonce(cluster), alice_kid))
    assert status == 400 and doc["type"] == "urn:ietf:params:acme:error:malformed", doc
    assert doc["detail"].startswith("signature"), doc
    assert headers.get("Replay-Nonce")

    # the same signed request twice: the second is a replay
    signed = _jws(b"", alice.net.key, url, _nonce(cluster), alice_kid)
    status, _, doc = _post(url, signed)
    assert status == 200 and doc["status"] == "ready", doc
    for node in (1, 0):  # through another node, and the same one
        status, headers, doc = _post(url.replace(base, cluster.apis[node]), signed)
        assert status == 400 and doc["type"] == "urn:ietf:params:acme:error:badNonce", doc
        assert headers.get("Replay-Nonce"), "a badNonce answer carries a fresh nonce to retry with"

    # another account's order
    status, _, doc = _post(url, _jws(b"", mallory.net.key, url, _nonce(cluster), mallory.net.account.uri))
    assert status == 403 and doc["type"] == "urn:ietf:params:acme:error:unauthorized", doc

    # malformed CSRs: not DER, and a CSR for other names than the order's
    finalize = order.body.finalize
    for csr in (b"not a certificate request", x509.load_pem_x509_csr(crypto_util.make_csr(
            certificate_key_pem(), ["other.shop.test"])).public_bytes(serialization.Encoding.DER)):
        payload = json.dumps({"csr": jose.b64encode(csr).decode()}).encode()
        status, _, doc = _post(finalize, _jws(payload, alice.net.key, finalize, _nonce(cluster), alice_kid))
        assert status == 400 and doc["type"] == "urn:ietf:params:acme:error:badCSR", doc

    # the signed url must be the URL posted to
    other = base + "/acme/new-order"
    status, _, doc = _post(other, _jws(b"{}", alice.net.key, url, _nonce(cluster), alice_kid))
    assert status == 403 and doc["type"] == "urn:ietf:params:acme:error:unauthorized" and "url" in doc["detail"], doc
    # no resource, no JOSE, no JWS
    status, _, doc = _post(base + "/acme/nothing-here", b"{}")
    assert status == 404 and doc["type"] == "urn:ietf:params:acme:error:malformed", doc
    status, _, doc = _post(other, b"{}", content_type="application/json")
    assert status == 400 and doc["type"] == "urn:ietf:params:acme:error:malformed", doc
    for junk in (b"", b"[]", b"{\"protected\": 1}", b"\xff\xfe", b"{" * 10000):
        status, _, doc = _post(other, junk)
        assert 400 <= status < 500 and doc["type"].startswith("urn:ietf:params:acme:error:"), (junk[:10], doc)


def test_key_change_revocation_by_certificate_key_renewal_info_and_deactivation(cluster: Cluster) -> None:
    acme = acme_client(cluster, node=1)
    kid = acme.net.account.uri
    cert_key = ec.generate_private_key(ec.SECP256R1())
    cert_pem = cert_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    order = acme.finalize_order(_ready_order(cluster, acme, "keys.shop.test", cert_pem), deadline())
    leaf = x509.load_pem_x509_certificate(order.fullchain_pem.encode())

    # renewal information (RFC 9773): a window inside the certificate's lifetime
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    serial = leaf.serial_number.to_bytes(leaf.serial_number.bit_length() // 8 + 1, "big")
    cert_id = f"{jose.b64encode(aki).decode()}.{jose.b64encode(serial).decode()}"
    with urllib.request.urlopen(f"{cluster.apis[2]}/acme/renewal-info/{cert_id}", timeout=10) as resp:
        window = json.loads(resp.read())["suggestedWindow"]
        assert int(resp.headers["Retry-After"]) > 0
    start = dt.datetime.fromisoformat(window["start"].replace("Z", "+00:00"))
    assert leaf.not_valid_before_utc < start < leaf.not_valid_after_utc, window

    # key rollover: the inner JWS is signed by the new key, the outer by the old one
    new_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    url = cluster.apis[1] + "/acme/key-change"
    inner_payload = json.dumps({"account": kid, "oldKey": acme.net.key.public_key().to_partial_json()}).encode()
    inner = acme_jws.JWS.sign(inner_payload, key=new_key, alg=jose.ES256, nonce=None, url=url).json_dumps()
    status, _, doc = _post(url, _jws(inner.encode(), acme.net.key, url, _nonce(cluster, 1), kid))
    assert status == 200 and doc["status"] == "active", doc
    order_url = order.uri
    status, _, doc = _post(order_url, _jws(b"", acme.net.key, order_url, _nonce(cluster), kid))
    assert status == 400 and doc["detail"].startswith("signature"), "the old key no longer signs for the account"
    status, _, doc = _post(order_url, _jws(b"", new_key, order_url, _nonce(cluster), kid))
    assert status == 200 and doc["status"] == "valid", doc

    # revocation signed by the certificate's own key (no account), then once more: already revoked
    holder = client.ClientV2(acme.directory, client.ClientNetwork(jose.JWKEC(key=cert_key), alg=jose.ES256))
    holder.revoke(leaf, 1)
    with pytest.raises(messages.Error) as again:
        holder.revoke(leaf, 1)
    assert again.value.typ == "urn:ietf:params:acme:error:alreadyRevoked", again.value
    code, record = http("GET", f"{cluster.apis[3]}/api/v1/cert/{leaf.serial_number:x}")
    assert code == 200 and record["revoked"] and record["revocation_reason"] == 1, record

    # deactivation ends the account for good
    acct = kid
    status, _, doc = _post(acct, _jws(json.dumps({"status": "deactivated"}).encode(), new_key, acct,
                                      _nonce(cluster), kid))
    assert status == 200 and doc["status"] == "deactivated", doc
    status, _, doc = _post(order_url, _jws(b"", new_key, order_url, _nonce(cluster), kid))
    assert status == 403 and doc["type"] == "urn:ietf:params:acme:error:unauthorized", doc


def test_a_renewal_reuses_the_accounts_valid_authorization(cluster: Cluster) -> None:
    """A second order for a name the account validated is ready at once, with the same authorization
    (valid for the reuse window); another account's order for the name gets a pending one of its own."""
    acme = acme_client(cluster, node=1)
    first = acme.poll_and_finalize(_ready_order(cluster, acme, "reuse.shop.test"), deadline())
    assert first.body.status == messages.STATUS_VALID
    (used,) = first.authorizations
    assert used.body.expires - dt.datetime.now(dt.UTC) > dt.timedelta(days=29)  # kept for reuse

    again = acme.new_order(crypto_util.make_csr(certificate_key_pem(), ["reuse.shop.test"]))
    assert again.body.status == messages.STATUS_READY
    assert [a.uri for a in again.authorizations] == [used.uri]
    assert again.authorizations[0].body.status == messages.STATUS_VALID
    renewed = acme.finalize_order(again, deadline())
    assert renewed.fullchain_pem != first.fullchain_pem

    other = acme_client(cluster, node=2)
    theirs = other.new_order(crypto_util.make_csr(certificate_key_pem(), ["reuse.shop.test"]))
    assert theirs.body.status == messages.STATUS_PENDING
    assert theirs.authorizations[0].uri != used.uri
    assert theirs.authorizations[0].body.status == messages.STATUS_PENDING

    # once deactivated, it is not reused: the next order needs a new challenge
    acme.deactivate_authorization(used)
    fresh = acme.new_order(crypto_util.make_csr(certificate_key_pem(), ["reuse.shop.test"]))
    assert fresh.body.status == messages.STATUS_PENDING and fresh.authorizations[0].uri != used.uri
