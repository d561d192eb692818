"""What a log accepts (RFC 6962 section 4.1): a certificate that parses as X.509 and chains, link by
link, to one of the log's accepted roots. Anything else is refused with the field that failed, so the
log holds no junk an attacker wants every replica and monitor to store forever.

Deterministic (no clock, no network): every replica decides the same. Validity periods are not
checked, as logs commonly accept expired certificates for the record.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["MAX_CHAIN", "chain_error", "issuer_key_hash"]

MAX_CHAIN = 8


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


def issuer_key_hash(issuer_der: bytes) -> bytes:
    """SHA-256 of the issuer's SubjectPublicKeyInfo (the precertificate entry's issuer_key_hash)."""
    cert = x509.load_der_x509_certificate(issuer_der)
    return hashlib.sha256(cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()


def chain_error(leaf_der: bytes, chain: Sequence[bytes], roots: Sequence[bytes], *,
                leaf_field: str = "certificate", leaf_is_tbs: bool = False) -> str | None:
    """None if `leaf_der` (followed by the intermediates in `chain`) chains to one of `roots`.

    With `leaf_is_tbs` the leaf is a precertificate's TBSCertificate, which cannot be verified on its
    own: then only `chain` is checked, and it must be non-empty (its first element is the issuer)."""
    if len(chain) > MAX_CHAIN:
        return f"chain: more than {MAX_CHAIN} certificates"
    certs: list[x509.Certificate] = []
    if not leaf_is_tbs:
        leaf = _load(leaf_der, leaf_field)
        if isinstance(leaf, str):
            return leaf
        certs.append(leaf)
    elif not chain:
        return "chain: a precertificate needs its issuer's certificate"
    for i, der in enumerate(chain):
        cert = _load(der, f"chain[{i}]")
        if isinstance(cert, str):
            return cert
        certs.append(cert)
    root_certs = []
    for der in roots:
        root = _load(der, "accepted root")
        assert not isinstance(root, str), root  # configuration, checked when the log is built
        root_certs.append(root)
    for i in range(len(certs) - 1):
        if not _signed_by(certs[i], certs[i + 1]):
            where = leaf_field if i == 0 and not leaf_is_tbs else f"chain[{i - (0 if leaf_is_tbs else 1)}]"
            return f"{where}: not signed by the next certificate in the chain"
    last = certs[-1]
    for root in root_certs:
        if last == root or _signed_by(last, root):
            return None
    return "chain: does not lead to a root this log accepts"
