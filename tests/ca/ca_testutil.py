"""Shared helpers for the CA tests: seeded randomness and a compact FROST signing session."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

from trustchain.ca import frost


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def run_session(
    keys: Mapping[int, frost.KeyPackage],
    signers: Sequence[int],
    msg: bytes,
    rand_bytes: Callable[[int], bytes],
) -> tuple[list[frost.SigningCommitment], list[frost.SignatureShare]]:
    """Both FROST rounds for ``signers``; returns the commitment list and the (honest) shares."""
    nonces: dict[int, frost.SigningNonces] = {}
    commitments = []
    for i in sorted(signers):
        nonces[i], c = frost.commit(i, keys[i].signing_share, rand_bytes)
        commitments.append(c)
    shares = [frost.sign(keys[i], nonces[i], msg, commitments) for i in sorted(signers)]
    return commitments, shares


def frost_signer(
    keys: Mapping[int, frost.KeyPackage],
    public: frost.PublicKeyPackage,
    signers: Sequence[int],
    rand_bytes: Callable[[int], bytes],
) -> Callable[[bytes], bytes]:
    """A ``SignFunction`` backed by a full FROST session, as the issuance layer will use."""

    def sign(msg: bytes) -> bytes:
        commitments, shares = run_session(keys, signers, msg, rand_bytes)
        return frost.aggregate_verified(commitments, msg, public, shares)

    return sign
