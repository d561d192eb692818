"""Certificate revocation lists signed by the threshold key (RFC 5280 section 5).

Why assemble the outer DER here: cryptography signs CRLs only with a key it holds, and the CA key
exists only as FROST shares. As in ``x509``, cryptography builds the TBSCertList with a throwaway
key of the same algorithm (the TBS bytes do not depend on which Ed25519 key), the real signature
comes from the ``sign`` callable, and the result is refused unless it verifies under the issuer key.
Every input (revocations, times, CRL number) is replicated state, so replicas produce the same TBS.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from trustchain.ca import der
from trustchain.ca import x509 as cax509
from trustchain.ca.consensus_time import consensus_datetime
from trustchain.ca.records import IssuedCertificate
from trustchain.errors import TrustChainError

DEFAULT_CRL_LIFETIME = dt.timedelta(days=1)

_REASONS = {
    1: x509.ReasonFlags.key_compromise,
    2: x509.ReasonFlags.ca_compromise,
    3: x509.ReasonFlags.affiliation_changed,
    4: x509.ReasonFlags.superseded,
    5: x509.ReasonFlags.cessation_of_operation,
    9: x509.ReasonFlags.privilege_withdrawn,
    10: x509.ReasonFlags.aa_compromise,
}


class CRLError(TrustChainError, ValueError):
    pass


@dataclass(frozen=True)
class Revocation:
    serial: int
    revoked_at: dt.datetime
    reason: int  # RFC 5280 CRLReason code; 0 (unspecified) is encoded by omitting the extension


def reason_flag(code: int) -> x509.ReasonFlags | None:
    """None for unspecified: RFC 5280 5.3.1 says to omit the reasonCode extension rather than use 0."""
    if code == 0:
        return None
    if code not in _REASONS:
        raise CRLError(f"reason code {code} is not allowed in a CRL entry")
    return _REASONS[code]


def crl_tbs(
    issuer: cax509.IssuerProfile,
    revocations: Sequence[Revocation],
    this_update: dt.datetime,
    crl_number: int,
    lifetime: dt.timedelta = DEFAULT_CRL_LIFETIME,
) -> bytes:
    """Exact TBSCertList bytes: entries sorted by serial, whole-second times, CRL number and AKI."""
    if this_update.tzinfo is None:
        raise CRLError("thisUpdate must be timezone-aware")
    start = this_update.astimezone(dt.UTC).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.name)
        .last_update(start)
        .next_update(start + lifetime)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.ed25519_key()), critical=False)
    )
    for r in sorted(revocations, key=lambda r: r.serial):
        entry = (
            x509.RevokedCertificateBuilder()
            .serial_number(r.serial)
            .revocation_date(r.revoked_at.astimezone(dt.UTC).replace(microsecond=0))
        )
        flag = reason_flag(r.reason)
        if flag is not None:
            entry = entry.add_extension(x509.CRLReason(flag), critical=False)
        builder = builder.add_revoked_certificate(entry.build())
    placeholder = cax509._PLACEHOLDER_KEY
    return builder.sign(placeholder, None).tbs_certlist_bytes


def assemble_crl(tbs_der: bytes, signature: bytes) -> bytes:
    """CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signatureValue }."""
    if len(signature) != 64:
        raise CRLError("Ed25519 signature must be 64 bytes")
    tag, _, end = der.read_tlv(tbs_der)
    if tag != 0x30 or end != len(tbs_der):
        raise CRLError("TBS is not a single DER SEQUENCE")
    return der.sequence(tbs_der, der.ED25519_ALGORITHM_IDENTIFIER, der.bit_string(signature))


def finalize_crl(tbs_der: bytes, signature: bytes, issuer_public_key: bytes) -> x509.CertificateRevocationList:
    crl = x509.load_der_x509_crl(assemble_crl(tbs_der, signature))
    assert crl.tbs_certlist_bytes == tbs_der
    try:
        Ed25519PublicKey.from_public_bytes(issuer_public_key).verify(crl.signature, tbs_der)
    except InvalidSignature:
        raise CRLError("CRL signature does not verify under the issuer key") from None
    return crl


def build_crl(
    issuer: cax509.IssuerProfile,
    revocations: Sequence[Revocation],
    this_update: dt.datetime,
    crl_number: int,
    sign: cax509.SignFunction,
    lifetime: dt.timedelta = DEFAULT_CRL_LIFETIME,
) -> x509.CertificateRevocationList:
    """TBS, then ``sign`` (a FROST session or any Ed25519 signer), then verify before returning."""
    tbs = crl_tbs(issuer, revocations, this_update, crl_number, lifetime)
    return finalize_crl(tbs, sign(tbs), issuer.public_key)


def revocations_from(records: Sequence[IssuedCertificate]) -> list[Revocation]:
    """Revocations from ``CAApplication.revoked()`` records (every replica has the same list)."""
    out = []
    for rec in records:
        assert rec.revoked_us is not None
        out.append(Revocation(int.from_bytes(rec.serial, "big"), consensus_datetime(rec.revoked_us), rec.reason or 0))
    return out
