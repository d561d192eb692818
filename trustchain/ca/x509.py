"""Deterministic X.509v3 certificates signed by an external (threshold) Ed25519 signer.

Why: every replica must compute the same TBS bytes from the ordered request and consensus time, and
the signature comes later from a FROST quorum. So issuance is split: ``*_tbs`` builds the exact
TBSCertificate DER (executed deterministically by every replica), ``finalize`` wraps the aggregated
signature into a standard Ed25519 certificate and refuses it unless it verifies under the issuer key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import (
    AuthorityInformationAccessOID,
    ExtendedKeyUsageOID,
    NameOID,
    SignatureAlgorithmOID,
)

from trustchain.ca import der
from trustchain.errors import TrustChainError

DEFAULT_LEAF_LIFETIME = dt.timedelta(hours=24)
DEFAULT_INTERMEDIATE_LIFETIME = dt.timedelta(days=365)
DEFAULT_ROOT_LIFETIME = dt.timedelta(days=3650)
# CA/Browser Forum Baseline Requirements, domain-validated (2.23.140.1.2.1).
DOMAIN_VALIDATED = x509.ObjectIdentifier("2.23.140.1.2.1")

# cryptography signs only with keys it holds; the TBS bytes do not depend on which Ed25519 key that is
# (the real subject key and AKI are set explicitly), so a fixed throwaway key makes them reproducible.
_PLACEHOLDER_KEY = Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"trustchain tbs placeholder").digest()
)

SignFunction = Callable[[bytes], bytes]
"""Signs TBS bytes with the issuer's Ed25519 key, e.g. by running a FROST session; returns 64 bytes."""


class CertificateError(TrustChainError, ValueError):
    pass


@dataclass(frozen=True)
class PKIMirrors:
    """Further URLs of an issuer's CRL, OCSP responder and certificate (see `IssuerProfile`)."""

    crl: tuple[str, ...] = ()
    ocsp: tuple[str, ...] = ()
    ca_issuers: tuple[str, ...] = ()


@dataclass(frozen=True)
class IssuerProfile:
    """What a CA puts into the certificates it issues: its name, key, and revocation endpoints.

    For the CA/B Forum BRs the name needs C, O and CN, and the URLs must be public (http) names.
    ``not_after`` is the issuer certificate's own notAfter: nothing it signs may outlive it (RFC 5280
    6.1.3 would reject the tail of such a certificate), so issued validity is clamped to it.
    ``mirrors``: more servers of the same documents, after the preferred URLs above, e.g. every other
    validator (the CRL's as further names of its one distribution point, RFC 5280 4.2.1.13; OCSP and
    issuer URLs as further access descriptions in priority order)."""

    name: x509.Name
    public_key: bytes
    crl_url: str
    ocsp_url: str
    ca_issuers_url: str
    policies: tuple[x509.ObjectIdentifier, ...] = field(default=(DOMAIN_VALIDATED,))
    not_after: dt.datetime | None = None
    mirrors: PKIMirrors | None = None

    @property
    def crl_urls(self) -> tuple[str, ...]:
        return (self.crl_url, *(self.mirrors.crl if self.mirrors else ()))

    @property
    def ocsp_urls(self) -> tuple[str, ...]:
        return (self.ocsp_url, *(self.mirrors.ocsp if self.mirrors else ()))

    @property
    def ca_issuers_urls(self) -> tuple[str, ...]:
        return (self.ca_issuers_url, *(self.mirrors.ca_issuers if self.mirrors else ()))

    def ed25519_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.public_key)


def dns_names(cert: x509.Certificate) -> list[str]:
    """The certificate's SAN dNSNames, as written (none when it has no SAN extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.DNSName))


def serial_number(request_digest: bytes, sequence: int) -> int:
    """Positive, < 2^127 (fits the 20-octet limit) and unique per (request, sequence).

    Put the committed batch hash into ``request_digest`` to make serials unpredictable to requesters."""
    h = hashlib.sha256(b"trustchain/x509/serial/v1" + struct.pack(">Q", sequence) + request_digest).digest()
    return (int.from_bytes(h[:16], "big") >> 1) or 1


def validity(consensus_time: dt.datetime, lifetime: dt.timedelta,
             issuer_not_after: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """Whole seconds, inclusive bounds (RFC 5280), so a 24 h lifetime is exactly 86400 s; never past
    ``issuer_not_after`` (refused if the issuer has expired by ``consensus_time``)."""
    if consensus_time.tzinfo is None:
        raise CertificateError("consensus time must be timezone-aware")
    if lifetime < dt.timedelta(seconds=1):
        raise CertificateError("lifetime must be at least one second")
    start = consensus_time.astimezone(dt.UTC).replace(microsecond=0)
    end = start + lifetime - dt.timedelta(seconds=1)
    if issuer_not_after is not None:
        cap = issuer_not_after.astimezone(dt.UTC).replace(microsecond=0)
        if cap < start:
            raise CertificateError(f"issuer certificate expired at {cap.isoformat()}")
        end = min(end, cap)
    return start, end


def request_digest(*parts: bytes) -> bytes:
    """Length-prefixed hash so distinct requests never collide by concatenation."""
    h = hashlib.sha256(b"trustchain/x509/request/v1")
    for p in parts:
        h.update(struct.pack(">Q", len(p)) + p)
    return h.digest()


def _tbs(builder: x509.CertificateBuilder) -> bytes:
    cert = builder.sign(_PLACEHOLDER_KEY, None)
    assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ED25519
    return cert.tbs_certificate_bytes


def _base(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: CertificatePublicKeyTypes,
    serial: int,
    consensus_time: dt.datetime,
    lifetime: dt.timedelta,
    *,
    with_ski: bool = True,
    issuer_not_after: dt.datetime | None = None,
) -> x509.CertificateBuilder:
    not_before, not_after = validity(consensus_time, lifetime, issuer_not_after)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if with_ski:  # CA certificates need it for path building; the BRs advise against it on leaves
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    return builder


def _issued_by(builder: x509.CertificateBuilder, issuer: IssuerProfile) -> x509.CertificateBuilder:
    """Extensions every non-root certificate carries: AKI, revocation pointers, policies."""
    return (
        builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.ed25519_key()), critical=False
        )
        .add_extension(
            x509.CRLDistributionPoints(
                [x509.DistributionPoint([x509.UniformResourceIdentifier(u) for u in issuer.crl_urls], None, None,
                                        None)]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, x509.UniformResourceIdentifier(u))
                 for u in issuer.ocsp_urls]
                + [x509.AccessDescription(AuthorityInformationAccessOID.CA_ISSUERS, x509.UniformResourceIdentifier(u))
                   for u in issuer.ca_issuers_urls]
            ),
            critical=False,
        )
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(oid, None) for oid in issuer.policies]),
            critical=False,
        )
    )


def _ca_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def root_tbs(
    subject: x509.Name,
    public_key: bytes,
    consensus_time: dt.datetime,
    sequence: int = 0,
    lifetime: dt.timedelta = DEFAULT_ROOT_LIFETIME,
) -> bytes:
    """Genesis self-signed root over the FROST group key; the validators sign it with that key."""
    key = Ed25519PublicKey.from_public_bytes(public_key)
    serial = serial_number(request_digest(b"root", subject.public_bytes(), public_key), sequence)
    builder = (
        _base(subject, subject, key, serial, consensus_time, lifetime)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key), critical=False)
    )
    return _tbs(builder)


def intermediate_tbs(
    subject: x509.Name,
    public_key: bytes,
    issuer: IssuerProfile,
    consensus_time: dt.datetime,
    sequence: int,
    lifetime: dt.timedelta = DEFAULT_INTERMEDIATE_LIFETIME,
    *,
    path_length: int | None = 0,
) -> bytes:
    """Issuing CA (path length 0) for TLS: its key is another validator-held FROST group key.

    ``path_length`` > 0 (or None) makes a cross-certificate for a new root during root rollover."""
    key = Ed25519PublicKey.from_public_bytes(public_key)
    serial = serial_number(request_digest(b"intermediate", subject.public_bytes(), public_key), sequence)
    builder = _issued_by(
        _base(subject, issuer.name, key, serial, consensus_time, lifetime, issuer_not_after=issuer.not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(_ca_key_usage(), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        ),
        issuer,
    )
    return _tbs(builder)


def leaf_tbs(
    public_key: CertificatePublicKeyTypes,
    dns_names: Sequence[str],
    issuer: IssuerProfile,
    consensus_time: dt.datetime,
    sequence: int,
    request: bytes,
    lifetime: dt.timedelta = DEFAULT_LEAF_LIFETIME,
    *,
    common_name: bool = False,
    ip_addresses: Sequence[str] = (),
    precertificate: bool = False,
    serial: int | None = None,
) -> bytes:
    """TLS end-entity certificate. ``request`` is the ordered request's bytes (e.g. the CSR DER plus
    the batch hash); names must already be validated (CAA, ownership) by the issuance layer.

    By default the subject is empty and the SAN critical (RFC 5280 4.2.1.6), as the BRs recommend;
    ``common_name=True`` copies the first name into CN for legacy clients. ``ip_addresses`` adds iPAddress
    names (the genesis ceremony's certificates for a node's HTTPS API on a bare address; the replicated CA
    never issues them). ``precertificate`` adds the critical CT poison extension last (RFC 6962 section
    3.1): the extension the SCT list later takes the place of. ``serial`` is the replicated CA's, drawn
    from the validators' randomness (``serials``); without it one is derived from ``request`` and
    ``sequence`` (genesis and single-process use)."""
    if not dns_names:
        raise CertificateError("at least one DNS name is required")
    names = [n.lower().rstrip(".") for n in dns_names]
    if len(set(names)) != len(names):
        raise CertificateError("duplicate DNS names")
    for n in names:
        if not n or not n.isascii() or " " in n:
            raise CertificateError(f"DNS name {n!r} must be a non-empty A-label")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if common_name else [])
    if serial is None:
        serial = serial_number(request_digest(b"leaf", request), sequence)
    builder = _issued_by(
        _base(subject, issuer.name, public_key, serial, consensus_time, lifetime, with_ski=False,
              issuer_not_after=issuer.not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([*(x509.DNSName(n) for n in names),
                                         *(x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses)]),
            critical=not common_name,
        ),
        issuer,
    )
    if precertificate:
        builder = builder.add_extension(x509.PrecertPoison(), critical=True)
    return _tbs(builder)


def assemble_certificate(tbs_der: bytes, signature: bytes) -> bytes:
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm (id-Ed25519), signatureValue }."""
    if len(signature) != 64:
        raise CertificateError("Ed25519 signature must be 64 bytes")
    tag, _, end = der.read_tlv(tbs_der)
    if tag != 0x30 or end != len(tbs_der):
        raise CertificateError("TBS is not a single DER SEQUENCE")
    return der.sequence(tbs_der, der.ED25519_ALGORITHM_IDENTIFIER, der.bit_string(signature))


def verify_signature(cert: x509.Certificate, issuer_public_key: bytes) -> bool:
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(issuer_public_key).verify(
            cert.signature, cert.tbs_certificate_bytes
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def finalize(tbs_der: bytes, signature: bytes, issuer_public_key: bytes) -> x509.Certificate:
    """The consensus *finalize* step: accept an aggregated signature only if it verifies, so a
    Byzantine aggregator can delay a certificate but never install a bad one."""
    cert_der = assemble_certificate(tbs_der, signature)
    try:
        cert = x509.load_der_x509_certificate(cert_der)
    except ValueError as exc:
        raise CertificateError(f"assembled certificate does not parse: {exc}") from exc
    assert cert.tbs_certificate_bytes == tbs_der
    if not verify_signature(cert, issuer_public_key):
        raise CertificateError("certificate signature does not verify under the issuer key")
    return cert


def issue(tbs_der: bytes, sign: SignFunction, issuer_public_key: bytes) -> x509.Certificate:
    """Convenience for single-process use (tests, genesis): sign, then ``finalize``."""
    return finalize(tbs_der, sign(tbs_der), issuer_public_key)
