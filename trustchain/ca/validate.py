"""Certificate path building and validation with machine-readable failure reasons.

Why not only ``cryptography.x509.verification``: its Web PKI policy refuses Ed25519, and callers
(OCSP responders, CT mirrors, clients of the simulator) need *which* check failed, not a message.
This is the RFC 5280 subset TrustChain issues: no name constraints or policy mapping.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from trustchain.ca import x509 as cax509
from trustchain.errors import TrustChainError

MAX_DEPTH = 8


class Reason(enum.Enum):
    EXPIRED = "expired"
    NOT_YET_VALID = "not yet valid"
    WRONG_ISSUER = "wrong issuer"
    BAD_SIGNATURE = "bad signature"
    NAME_MISMATCH = "name mismatch"
    NOT_A_CA = "issuer is not a CA"
    KEY_USAGE = "key usage does not permit this use"
    PATH_LENGTH = "path length constraint exceeded"
    TOO_LONG = "chain too long"


class ChainError(TrustChainError, ValueError):
    """``reason`` says what failed; ``certificate`` is the certificate that failed it."""

    def __init__(self, reason: Reason, certificate: x509.Certificate, detail: str = "") -> None:
        self.reason = reason
        self.certificate = certificate
        subject = certificate.subject.rfc4514_string() or "<empty subject>"
        super().__init__(f"{reason.value}: {subject}" + (f" ({detail})" if detail else ""))


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def _key_ids_compatible(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """AKI/SKI only narrow the search when both are present; names remain the binding link."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
        ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return True
    return aki is None or aki == ski


def build_path(
    leaf: x509.Certificate, intermediates: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """Leaf first, trust anchor last. Trust anchors are preferred over intermediates of the same name."""
    path = [leaf]
    current = leaf
    while current not in roots:
        if len(path) > MAX_DEPTH:
            raise ChainError(Reason.TOO_LONG, leaf, f"more than {MAX_DEPTH} certificates")
        candidates = [
            c
            for c in [*roots, *intermediates]
            if c.subject == current.issuer and c not in path and _key_ids_compatible(current, c)
        ]
        if not candidates:
            raise ChainError(
                Reason.WRONG_ISSUER,
                current,
                f"no trusted or supplied CA named {current.issuer.rfc4514_string()}",
            )
        issuer = next((c for c in candidates if _signed_by(current, c)), None)
        if issuer is None:
            raise ChainError(
                Reason.BAD_SIGNATURE, current, "signature does not verify under any candidate issuer"
            )
        path.append(issuer)
        current = issuer
    return path


def _check_time(cert: x509.Certificate, at: dt.datetime) -> None:
    if at < cert.not_valid_before_utc:
        raise ChainError(Reason.NOT_YET_VALID, cert, f"valid from {cert.not_valid_before_utc.isoformat()}")
    if at > cert.not_valid_after_utc:
        raise ChainError(Reason.EXPIRED, cert, f"expired {cert.not_valid_after_utc.isoformat()}")


def _check_ca(cert: x509.Certificate, below: int) -> None:
    """``below`` = number of CA certificates between this one and the leaf."""
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise ChainError(Reason.NOT_A_CA, cert, "no basicConstraints") from None
    if not bc.ca:
        raise ChainError(Reason.NOT_A_CA, cert)
    if bc.path_length is not None and below > bc.path_length:
        raise ChainError(Reason.PATH_LENGTH, cert, f"pathLen {bc.path_length}, {below} CA(s) below")
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise ChainError(Reason.KEY_USAGE, cert, "keyCertSign not set")


def dns_name_matches(pattern: str, name: str) -> bool:
    """RFC 6125: case-insensitive; a wildcard only as the whole left-most label, matching one label."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def _check_leaf(cert: x509.Certificate, dns_name: str | None) -> None:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if dns_name is not None and ExtendedKeyUsageOID.SERVER_AUTH not in eku:
            raise ChainError(Reason.KEY_USAGE, cert, "no serverAuth extended key usage")
    except x509.ExtensionNotFound:
        pass
    if dns_name is None:
        return
    names = cax509.dns_names(cert)
    if not any(dns_name_matches(p, dns_name) for p in names):
        raise ChainError(Reason.NAME_MISMATCH, cert, f"{dns_name!r} not in {names}")


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: dt.datetime,
    dns_name: str | None = None,
) -> list[x509.Certificate]:
    """Validate ``leaf`` at time ``at`` (consensus or client time; never read from a clock here).

    Returns the path leaf..root or raises ``ChainError``. Revocation and CT are separate checks."""
    if at.tzinfo is None:
        raise ValueError("validation time must be timezone-aware")
    path = build_path(leaf, intermediates, roots)
    for cert in path:
        _check_time(cert, at)
    for depth, ca in enumerate(path[1:]):
        _check_ca(ca, depth)
    _check_leaf(leaf, dns_name)  # a one-certificate path too: a trust anchor used as a leaf must match
    return path
