"""dns-01-style domain control proof that every replica can check deterministically.

Flow: (1) the account orders a *challenge* command for a name; the replicated CA records a challenge
value derived from the ordered request (so no replica picks it at random). (2) The account publishes
``TXT _acme-challenge.<name> = dns01_txt(key_authorization)`` in the replicated DNS. (3) The issuance
request carries ``key_authorization``; every replica recomputes it from the recorded challenge and the
account key, then finds its digest in the TXT records. As in ACME (RFC 8555 section 8.4), binding the
account key stops another account reusing a record it observed.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from trustchain.ca import caa

CHALLENGE_LABEL = "_acme-challenge"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def challenge_value(seed: bytes, account: bytes, name: str) -> bytes:
    """Derived from the ordered request (seq, batch position, request bytes): unpredictable before it
    is ordered, identical on every replica."""
    return hashlib.sha256(b"trustchain/ca/challenge/v1" + seed + account + name.encode()).digest()[:16]


def key_authorization(challenge: bytes, account: bytes) -> str:
    """``token.thumbprint``: the challenge bound to the account key."""
    return _b64(challenge) + "." + _b64(hashlib.sha256(account).digest())


def dns01_txt(key_auth: str) -> str:
    return _b64(hashlib.sha256(key_auth.encode()).digest())


def check_ownership(
    lookup: caa.DNSLookup, name: str, challenge: bytes | None, account: bytes, proof: str
) -> str | None:
    """None if the proof for ``name`` verifies, else the reason."""
    if challenge is None:
        return "no outstanding challenge for this account and name"
    if proof != key_authorization(challenge, account):
        return "ownership token does not match the challenge and account key"
    owner = f"{CHALLENGE_LABEL}.{name.removeprefix('*.')}"
    if dns01_txt(proof) not in lookup.txt(owner):
        return f"no matching TXT record at {owner}"
    return None


def revocation_proof_input(serial: bytes, reason: int, account: bytes) -> bytes:
    """What a certificate's key signs to have it revoked by `account` (domain-separated)."""
    return b"trustchain/revoke-by-key/v1\0" + len(serial).to_bytes(2, "big") + serial + bytes([reason]) + account


def verify_key_proof(certificate_der: bytes, message: bytes, signature: bytes) -> bool:
    """Whether `signature` over `message` was made with the certificate's private key (Ed25519,
    ECDSA with SHA-256, RSA PKCS#1 v1.5 with SHA-256). Never raises on bad input."""
    try:
        key = x509.load_der_x509_certificate(certificate_der).public_key()
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True
