"""The consensus-key credential a node presents on peer links while its node certificate is not valid:
accepted for exactly the validator whose consensus key signed it, for its own name, while current and
short-lived; refused otherwise."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from reference_node import peer_credential
from trustchain.crypto.signing import Ed25519Signer

NAME = "validator-2.nodes.trustchain.internal"
SEED = hashlib.sha256(b"validator-2").digest()
KEY = Ed25519Signer(SEED).public_key
OTHER = Ed25519Signer(hashlib.sha256(b"validator-1").digest()).public_key
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH


def test_a_fresh_credential_is_accepted_for_its_validator() -> None:
    cred = peer_credential.mint(SEED, NAME, NOW)
    for usage in (CLIENT, ExtendedKeyUsageOID.SERVER_AUTH):
        peer_credential.check(cred.certificate, NAME, KEY, usage, NOW + dt.timedelta(minutes=30))
    assert cred.certificate.public_key() != ed25519.Ed25519PublicKey.from_public_bytes(KEY)  # a fresh link key
    assert cred.usable_at(NOW) and not cred.usable_at(NOW + dt.timedelta(minutes=50))


@pytest.mark.parametrize("case", ["other key", "other name", "expired", "not yet", "wrong usage"])
def test_credentials_that_prove_nothing_are_refused(case: str) -> None:
    cred = peer_credential.mint(SEED, NAME, NOW)
    key, name, at, usage = KEY, NAME, NOW, CLIENT
    if case == "other key":
        key = OTHER
    elif case == "other name":
        name = "validator-1.nodes.trustchain.internal"
    elif case == "expired":
        at = NOW + dt.timedelta(hours=1, seconds=1)
    elif case == "not yet":
        at = NOW - dt.timedelta(minutes=2)
    else:
        usage = ExtendedKeyUsageOID.CODE_SIGNING
    with pytest.raises(ValueError):
        peer_credential.check(cred.certificate, name, key, usage, at)


def _self_made(lifetime: dt.timedelta, issuer: x509.Name) -> x509.Certificate:
    """A certificate signed by the right consensus key but not shaped as a credential."""
    link = ed25519.Ed25519PrivateKey.generate()
    return (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)]))
            .issuer_name(issuer).public_key(link.public_key()).serial_number(7)
            .not_valid_before(NOW - dt.timedelta(minutes=1)).not_valid_after(NOW + lifetime)
            .add_extension(x509.ExtendedKeyUsage([CLIENT]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
            .sign(ed25519.Ed25519PrivateKey.from_private_bytes(SEED), None))


def test_a_long_lived_or_differently_issued_certificate_is_refused() -> None:
    with pytest.raises(ValueError, match="lifetime"):
        peer_credential.check(_self_made(dt.timedelta(days=30), peer_credential.issuer_name(NAME)), NAME, KEY,
                              CLIENT, NOW)
    with pytest.raises(ValueError, match="issuer"):
        peer_credential.check(_self_made(dt.timedelta(minutes=10), x509.Name([])), NAME, KEY, CLIENT, NOW)
    peer_credential.check(_self_made(dt.timedelta(minutes=10), peer_credential.issuer_name(NAME)), NAME, KEY,
                          CLIENT, NOW)


def test_the_signed_bytes_cannot_be_a_domain_separated_message() -> None:
    tbs = peer_credential.mint(SEED, NAME, NOW).certificate.tbs_certificate_bytes
    assert tbs[:1] == b"\x30" and not tbs.startswith(b"trustchain/")
