"""Shared helpers for the CT tests: a naive RFC 6962 reference to check the optimised code against."""

from __future__ import annotations

from collections.abc import Sequence

from trustchain.ct.merkle import EMPTY_ROOT, leaf_hash, node_hash


def reference_mth(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH over leaf hashes, transcribed literally (recursive split at k)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(reference_mth(leaves[:k]), reference_mth(leaves[k:]))


def make_leaf_hashes(n: int, salt: bytes = b"") -> list[bytes]:
    return [leaf_hash(salt + i.to_bytes(8, "big")) for i in range(n)]
