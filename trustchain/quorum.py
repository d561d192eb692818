"""Quorum arithmetic for n replicas of which at most f are Byzantine, in one place.

Consensus votes, stable checkpoints, cosigned CT checkpoints and the FROST threshold all count
against these, so they cannot drift apart.
"""

from __future__ import annotations

__all__ = ["check_signing_threshold", "max_faulty", "quorum_size", "weak_quorum_size"]


def max_faulty(n: int) -> int:
    """f: the most Byzantine replicas that n replicas tolerate (n >= 3f+1)."""
    return (n - 1) // 3


def quorum_size(n: int) -> int:
    """The smallest q with 2q - n >= f + 1, i.e. ceil((n + f + 1) / 2).

    Two quorums then share at least f+1 replicas, so at least one honest replica is in both, and
    n - f >= q honest replicas can always form one. This is 2f+1 only when n = 3f+1: for n = 5
    (f = 1) it is 4, since two sets of 3 share a single replica, which may be the Byzantine one.
    """
    return (n + max_faulty(n) + 2) // 2


def weak_quorum_size(n: int) -> int:
    """f+1: any f+1 replicas include at least one honest replica."""
    return max_faulty(n) + 1


def check_signing_threshold(n: int, threshold: int) -> str | None:
    """Why `threshold` signers out of n is unsafe or unlive, or None when it is neither.

    More than f signers are needed so that the f Byzantine validators cannot sign alone, and at most
    n - f so that the honest validators can sign without them."""
    f = max_faulty(n)
    if not f + 1 <= threshold <= n - f:
        return (f"threshold {threshold} must be between f+1 = {f + 1} and n-f = {n - f} for n = {n} "
                f"validators (f = {f})")
    return None
