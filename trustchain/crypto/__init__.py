"""Cryptographic interfaces shared by every protocol component: the `Signer`/`Verifier` protocols,
Ed25519, and the post-quantum schemes (ML-DSA, FN-DSA) selectable by name.

The names below are the package's public API; each module also lists its own in `__all__`.
"""

from trustchain.crypto.pq import FNDSA1024Signer, FNDSA1024Verifier, MLDSASigner, MLDSAVerifier
from trustchain.crypto.schemes import ANY_SCHEME, SCHEMES, AnyVerifier, make_signer, scheme_of
from trustchain.crypto.signing import ED25519, Ed25519Signer, Ed25519Verifier, Signer, Verifier

__all__ = [
    "ANY_SCHEME", "ED25519", "SCHEMES", "AnyVerifier", "Ed25519Signer", "Ed25519Verifier", "FNDSA1024Signer",
    "FNDSA1024Verifier", "MLDSASigner", "MLDSAVerifier", "Signer", "Verifier", "make_signer", "scheme_of",
]
