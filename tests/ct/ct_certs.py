"""Deterministic real X.509 test certificates (Ed25519), shared by the CT application tests."""

from __future__ import annotations

import datetime
import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID

NOT_BEFORE = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
NOT_AFTER = datetime.datetime(2026, 4, 1, tzinfo=datetime.UTC)


def key(label: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(label.encode()).digest())


def spki_sha256(k: Ed25519PrivateKey) -> bytes:
    return hashlib.sha256(k.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()


def make_cert(host: str, serial: int = 1, issuer: str = "Test CA", subject_key: str | None = None) -> bytes:
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key(subject_key or f"subject/{host}").public_key())
        .serial_number(serial)
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
    )
    return builder.sign(key(f"issuer/{issuer}"), None).public_bytes(Encoding.DER)


def tbs_of(cert_der: bytes) -> bytes:
    """The TBSCertificate inside a DER certificate (first element of the outer SEQUENCE)."""
    cert = x509.load_der_x509_certificate(cert_der)
    return cert.tbs_certificate_bytes
