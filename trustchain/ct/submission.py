"""What a log accepts (RFC 6962 sections 4.1 and 4.2): an X.509 certificate (add-chain) or a
precertificate (add-pre-chain) that parses and chains, link by link, to one of the log's accepted
roots. Anything else is refused with the field that failed, so the log holds no junk an attacker wants
every replica and monitor to store forever.

A precertificate (RFC 6962 section 3.1) is a certificate carrying the critical poison extension,
signed directly by the issuing CA; the log records its TBSCertificate without the poison and the hash
of the issuer's key. Precertificates signed by a Precertificate Signing Certificate are refused: their
TBSCertificate would have to be rewritten to name the real issuer.

Deterministic (no clock, no network): every replica decides the same. Validity periods are not
checked, as logs commonly accept expired certificates for the record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from trustchain.ct.precert import PrecertError, without_poison

__all__ = ["MAX_CHAIN", "PRECERT_SIGNING_EKU", "AcceptedChain", "accept", "chain_error", "issuer_key_hash",
           "issuing_certificate"]

MAX_CHAIN = 8
PRECERT_SIGNING_EKU = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.4")


@dataclass(frozen=True)
class AcceptedChain:
    """A submission that passed: the issuers to keep for extra_data (ending in an accepted root) and, for a
    precertificate, the entry the log records."""

    chain: tuple[bytes, ...]
    tbs_certificate: bytes = b""  # precertificates: the TBSCertificate without the poison
    issuer_key_hash: bytes = b""


def _load(der: bytes, field: str) -> x509.Certificate | str:
    try:
        cert = x509.load_der_x509_certificate(der)
        cert.public_key()  # an unsupported key type counts as unparseable
    except (ValueError, TypeError) as exc:
        return f"{field}: not an X.509 certificate ({str(exc)[:80]})"
    except Exception as exc:  # cryptography may raise UnsupportedAlgorithm for exotic keys
        return f"{field}: unsupported certificate ({type(exc).__name__})"
    return cert


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    except Exception:  # unsupported signature algorithm
        return False
    return True


def _spki_hash(cert: x509.Certificate) -> bytes:
    return hashlib.sha256(cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()


def issuer_key_hash(issuer_der: bytes) -> bytes:
    """SHA-256 of the issuer's SubjectPublicKeyInfo (the precertificate entry's issuer_key_hash)."""
    return _spki_hash(x509.load_der_x509_certificate(issuer_der))


def issuing_certificate(certificate_der: bytes, candidates: Sequence[bytes]) -> bytes | None:
    """The first of `candidates` (DER) whose key signed `certificate_der`, or None."""
    cert = x509.load_der_x509_certificate(certificate_der)
    for der in candidates:
        issuer = x509.load_der_x509_certificate(der)
        if cert.issuer == issuer.subject and _signed_by(cert, issuer):
            return der
    return None


def _poisoned(cert: x509.Certificate) -> bool:
    try:
        ext = cert.extensions.get_extension_for_oid(ExtensionOID.PRECERT_POISON)
    except x509.ExtensionNotFound:
        return False
    return ext.critical


def _precert_signer(cert: x509.Certificate) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return PRECERT_SIGNING_EKU in eku and ExtendedKeyUsageOID.SERVER_AUTH not in eku


def accept(leaf_der: bytes, chain: Sequence[bytes], roots: Sequence[bytes], *, precert: bool = False,
           leaf_field: str = "certificate") -> AcceptedChain | str:
    """The accepted chain if `leaf_der` (followed by the issuers in `chain`) chains to one of `roots`,
    else "<field>: <reason>". The returned chain ends in the root even if the submitter left it out."""
    if len(chain) > MAX_CHAIN:
        return f"chain: more than {MAX_CHAIN} certificates"
    leaf = _load(leaf_der, leaf_field)
    if isinstance(leaf, str):
        return leaf
    if _poisoned(leaf) != precert:
        return (f"{leaf_field}: has no critical CT poison extension (submit certificates with add-chain)" if precert
                else f"{leaf_field}: is a precertificate (CT poison extension); submit it with add-pre-chain")
    certs = [leaf]
    for i, der in enumerate(chain):
        cert = _load(der, f"chain[{i}]")
        if isinstance(cert, str):
            return cert
        certs.append(cert)
    if precert and not chain:
        return "chain: a precertificate needs its issuer's certificate"
    if precert and _precert_signer(certs[1]):
        return "chain[0]: precertificates signed by a Precertificate Signing Certificate are not accepted"
    root_certs = []
    for der in roots:
        root = _load(der, "accepted root")
        assert not isinstance(root, str), root  # configuration, checked when the log is built
        root_certs.append(root)
    for i in range(len(certs) - 1):
        if not _signed_by(certs[i], certs[i + 1]):
            where = leaf_field if i == 0 else f"chain[{i - 1}]"
            return f"{where}: not signed by the next certificate in the chain"
    full = tuple(bytes(c) for c in chain)
    last = certs[-1]
    for root, root_der in zip(root_certs, roots, strict=True):
        if last == root:
            break
        if _signed_by(last, root):
            full = (*full, bytes(root_der))
            break
    else:
        return "chain: does not lead to a root this log accepts"
    if not precert:
        return AcceptedChain(full)
    try:
        tbs = without_poison(leaf.tbs_certificate_bytes)
    except PrecertError as exc:
        return f"{leaf_field}: {exc}"
    return AcceptedChain(full, tbs, _spki_hash(certs[1]))


def chain_error(leaf_der: bytes, chain: Sequence[bytes], roots: Sequence[bytes], *,
                leaf_field: str = "certificate", precert: bool = False) -> str | None:
    """None if the submission is accepted, else "<field>: <reason>"."""
    result = accept(leaf_der, chain, roots, precert=precert, leaf_field=leaf_field)
    return result if isinstance(result, str) else None
