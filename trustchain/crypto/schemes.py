"""Signature schemes by name, and one verifier for all of them.

The `quantum-resistant` mode swaps the validators' Ed25519 keys for FN-DSA-1024 (Falcon) or ML-DSA
keys; clients may keep Ed25519. A verifier that dispatches on the public key's length lets one
cluster hold both without the protocol knowing which is which: the key sizes of the schemes differ.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from trustchain.crypto.pq import FNDSA1024Signer, FNDSA1024Verifier, MLDSASigner, MLDSAVerifier
from trustchain.crypto.signing import ED25519, Ed25519Signer, Signer, Verifier

__all__ = [
    "ANY_SCHEME", "DETERMINISTIC_SCHEMES", "PUBLIC_KEY_SIZES", "SCHEMES", "AnyVerifier", "make_signer", "scheme_of",
]

SCHEMES = ("ed25519", "fn-dsa-1024", "ml-dsa-65", "ml-dsa-87")
#: Schemes whose signatures are a pure function of key, message and the seeded RNG handed in, so a
#: simulation replays byte for byte. ML-DSA signing in `cryptography` is hedged (randomised inside).
DETERMINISTIC_SCHEMES = ("ed25519", "fn-dsa-1024")

PUBLIC_KEY_SIZES = {"ed25519": 32, "fn-dsa-1024": 1793, "ml-dsa-65": 1952, "ml-dsa-87": 2592}


def make_signer(scheme: str, seed: bytes, rand_bytes: Callable[[int], bytes] | None = None) -> Signer:
    """A signer for `scheme` whose key is derived from the 32-byte `seed`."""
    if scheme == "ed25519":
        return Ed25519Signer(seed)
    if scheme == "fn-dsa-1024":
        return FNDSA1024Signer(seed, rand_bytes)
    if scheme in ("ml-dsa-65", "ml-dsa-87"):
        return MLDSASigner(seed, int(scheme.rsplit("-", 1)[1]))
    raise ValueError(f"unknown signature scheme {scheme!r}; known: {', '.join(SCHEMES)}")


class AnyVerifier:
    """Verifies a signature under whichever scheme the public key's size identifies."""

    algorithm = "any"

    def __init__(self) -> None:
        self._by_size: dict[int, Verifier] = {PUBLIC_KEY_SIZES["ed25519"]: ED25519}
        self._by_size[PUBLIC_KEY_SIZES["ml-dsa-65"]] = MLDSAVerifier(65)
        self._by_size[PUBLIC_KEY_SIZES["ml-dsa-87"]] = MLDSAVerifier(87)
        with contextlib.suppress(RuntimeError):  # no FN-DSA backend installed: such keys never verify
            self._by_size[PUBLIC_KEY_SIZES["fn-dsa-1024"]] = FNDSA1024Verifier()

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        verifier = self._by_size.get(len(public_key))
        return verifier is not None and verifier.verify(public_key, message, signature)


def scheme_of(public_key: bytes) -> str | None:
    return next((name for name, size in PUBLIC_KEY_SIZES.items() if size == len(public_key)), None)


ANY_SCHEME = AnyVerifier()
