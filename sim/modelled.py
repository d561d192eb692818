"""Modelled signatures: cheap stand-ins for Ed25519 so that the simulator reaches large n.

Real Ed25519 costs ~50-70 µs per verification in PyNaCl, and a PBFT batch is verified O(n²) times, so
at large n the simulator spends its time verifying signatures. `ModelledSigner`/`ModelledVerifier`
replace Ed25519 by HMAC-SHA512 keyed per signer (64-byte tags, the size of an Ed25519 signature, so
message sizes and byte counts do not change). They **model cost, not security**: the verifier holds
every signer's secret key (a registry keyed by the "public key"), which only works inside one
simulation process. Within the simulator they remain unforgeable in the sense that matters: a
Byzantine replica signs with its own signer object only, and a corrupted or foreign tag fails
verification exactly as an invalid Ed25519 signature would, so the safety checkers still bite.

A scenario selects them with `cluster.signatures: modelled` (`sim/world.py` builds the signers and
passes the verifier to replicas, clients and the certificate checker); `use_modelled` sets it.

Its own module (not `sim.scale`, which runs whole simulations to measure them) so that the world and
the adversaries can build modelled signers without importing the runner.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

__all__ = ["MODELLED", "MODELLED_ALGORITHM", "ModelledSigner", "ModelledVerifier", "use_modelled"]

MODELLED_ALGORITHM = "hmac-sha512-model"
_REGISTRY: dict[bytes, bytes] = {}  # public key -> secret key (inside one simulation process only)


class ModelledSigner:
    """HMAC-SHA512 with a per-signer key. The 'public key' is a hash of the key: unique per signer,
    32 bytes like an Ed25519 public key."""

    algorithm = MODELLED_ALGORITHM

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError(f"seed must be 32 bytes, got {len(seed)}")
        self._key = hashlib.sha256(b"trustchain-sim/modelled-key/" + seed).digest()
        self._public = hashlib.sha256(b"trustchain-sim/modelled-pub/" + self._key).digest()
        _REGISTRY[self._public] = self._key

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return hmac.new(self._key, message, hashlib.sha512).digest()


class ModelledVerifier:
    """Verifies by recomputing the tag with the signer's key from the in-process registry."""

    algorithm = MODELLED_ALGORITHM

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        key = _REGISTRY.get(bytes(public_key))
        if key is None or len(signature) != 64:
            return False
        return hmac.compare_digest(hmac.new(key, message, hashlib.sha512).digest(), signature)


MODELLED = ModelledVerifier()


def use_modelled(scenario: dict[str, Any]) -> dict[str, Any]:
    """The scenario dict with `cluster.signatures: modelled` (the World then builds `ModelledSigner`s
    for replicas and clients and verifies with `MODELLED`)."""
    return {**scenario, "cluster": {**scenario.get("cluster", {}), "signatures": "modelled"}}
