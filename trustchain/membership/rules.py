"""The arithmetic of a validator set of any size: fault bound, quorum, FROST threshold, boundary.

Each rule is a function of n alone, so every replica recomputes the same values for a new set
without agreeing on anything but the list of validators.
"""

from __future__ import annotations

from trustchain.quorum import check_signing_threshold, max_faulty, quorum_size

__all__ = [
    "MAX_VALIDATORS",
    "MIN_VALIDATORS",
    "boundary_after",
    "max_faulty",
    "quorum_size",
    "signing_threshold",
]

#: FROST needs two signers at least (a 1-of-1 "threshold" key is one validator's private key), so a
#: change never leaves fewer than two validators.
MIN_VALIDATORS = 2
#: Bounds the replicated set and the per-change work (every member deals a share to every other).
MAX_VALIDATORS = 64


def signing_threshold(n: int) -> int:
    """The FROST threshold of a set of n validators: a strict majority, floor(n/2) + 1.

    It lies in [f+1, n-f] for every n >= 1 (f = (n-1)//3): more than f, so the Byzantine validators
    never sign alone, and at most n-f, so the honest ones sign without them. It is 3 of 5 at
    genesis, 3 of 4, 4 of 6, 4 of 7. A majority rather than n-f keeps signing live when f+1
    validators are slow, and rather than f+1 keeps a coalition of f+1 (possible at n = 3f+2, where
    two quorums share f+2) from signing alone."""
    assert n >= 1
    t = n // 2 + 1
    assert check_signing_threshold(n, t) is None, f"majority {t} of {n} outside [f+1, n-f]"
    return t


def boundary_after(seq: int, checkpoint_interval: int) -> int:
    """The sequence number at which a change executed at `seq` takes effect: the first checkpoint at
    or after it. Every replica computes it from the ordered `seq`, so all switch at the same number."""
    assert seq >= 1 and checkpoint_interval >= 1
    return -(-seq // checkpoint_interval) * checkpoint_interval
