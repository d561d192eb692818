"""RFC 9162 (RFC 6962) Merkle tree hashing, proof generation and proof verification.

Generation is written against a `RangeHasher`, a callable returning MTH(D[start:end]), so one
implementation serves the naive reference, the stored tree and the tiles client alike. Verification
needs nothing but hashes and rejects malformed input with a `ProofError` saying what was wrong, before
any hashing where the shape alone already shows it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from trustchain.errors import TrustChainError

__all__ = [
    "EMPTY_ROOT", "HASH_SIZE", "LEAF_PREFIX", "NODE_PREFIX", "ProofError", "RangeHasher", "consistency_proof",
    "consistency_proof_length", "consistency_roots", "inclusion_proof", "inclusion_proof_length", "is_power_of_two",
    "leaf_hash", "node_hash", "root_from_inclusion_proof", "root_of", "split_point", "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").digest()

RangeHasher = Callable[[int, int], bytes]
"""MTH(D[start:end]) of a log; RFC proofs only ever ask for ranges whose left part is complete."""


class ProofError(TrustChainError, ValueError):
    """A proof, root, hash or size did not check out; the message names which one and why."""


def leaf_hash(leaf_input: bytes) -> bytes:
    """The 0x00 prefix keeps a leaf from ever being confused with an interior node (second preimage)."""
    return hashlib.sha256(LEAF_PREFIX + leaf_input).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def split_point(n: int) -> int:
    """The RFC's k: the largest power of two strictly below n (n >= 2)."""
    assert n >= 2, n
    return 1 << ((n - 1).bit_length() - 1)


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def root_of(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over leaf hashes, bottom-up: promoting an unpaired right node unchanged is exactly the RFC's
    recursive split, without the recursion."""
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# --------------------------------------------------------------------------------------------- generation


def inclusion_proof(index: int, size: int, range_hash: RangeHasher) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH(m, D[n]), iteratively: at most one requested range is incomplete (the right
    edge), so a stored tree answers with O(log n) lookups plus O(log n) hashes."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = split_point(hi - lo)
        if index < lo + k:
            path.append(range_hash(lo + k, hi))
            hi = lo + k
        else:
            path.append(range_hash(lo, lo + k))
            lo += k
    path.reverse()
    return path


def consistency_proof(size1: int, size2: int, range_hash: RangeHasher) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF(m, D[n], true), iteratively."""
    if not 0 < size1 <= size2:
        raise ValueError(f"no consistency proof from size {size1} to size {size2} (need 0 < size1 <= size2)")
    path: list[bytes] = []
    lo, hi = 0, size2
    whole_old_tree = True  # the RFC's b: the old root is known to the verifier, so it is not sent
    while size1 != hi:
        k = split_point(hi - lo)
        if size1 <= lo + k:
            path.append(range_hash(lo + k, hi))
            hi = lo + k
        else:
            path.append(range_hash(lo, lo + k))
            lo += k
            whole_old_tree = False
    if not whole_old_tree:
        path.append(range_hash(lo, hi))
    path.reverse()
    return path


# ------------------------------------------------------------------------------------------- verification


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, a SHA-256 hash is {HASH_SIZE}")


def _check_size(what: str, value: int) -> None:
    if value < 0:
        raise ProofError(f"{what} {value} is negative")


def inclusion_proof_length(index: int, size: int) -> int:
    """Path length is fixed by (index, size): checking it first turns padded or truncated proofs into a
    precise error instead of a root mismatch."""
    assert 0 <= index < size
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2 steps 1-4: the root this proof commits the leaf to."""
    _check_size("leaf index", index)
    _check_size("tree size", size)
    if index >= size:
        raise ProofError(f"leaf index {index} is not below tree size {size}")
    _check_hash("leaf hash", leaf)
    for i, p in enumerate(proof):
        _check_hash(f"inclusion proof element {i}", p)
    want = inclusion_proof_length(index, size)
    if len(proof) != want:
        raise ProofError(
            f"inclusion proof has {len(proof)} hashes, leaf {index} in a tree of size {size} needs {want}"
        )
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        assert sn != 0, "length check above guarantees the path fits"
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    assert sn == 0, "length check above guarantees the path reaches the root"
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """RFC 9162 §2.1.3.2. Returns None on success, raises ProofError otherwise."""
    _check_hash("root hash", root)
    got = root_from_inclusion_proof(index, size, leaf, proof)
    if got != root:
        raise ProofError(
            f"inclusion proof for leaf {index} in tree of size {size} yields root {got.hex()}, "
            f"not the expected {root.hex()}"
        )


def consistency_proof_length(size1: int, size2: int) -> int:
    """Length of the RFC proof (without the prepended old root) for 0 < size1 < size2."""
    assert 0 < size1 < size2
    shift = (size1 & -size1).bit_length() - 1  # trailing zeros: the old tree's right-most complete subtree
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    seed = 0 if is_power_of_two(size1) else 1
    return seed + (inner - shift) + border


def consistency_roots(size1: int, size2: int, path: Sequence[bytes]) -> tuple[bytes, bytes]:
    """RFC 9162 §2.1.4.2 steps 3-7 for 0 < size1 < size2: the (old, new) roots the path commits to.

    `path` is the RFC proof with the old root already prepended when size1 is a power of two (step 2).
    Exposed separately so split-view evidence can show a proof that reproduces the new root but not the
    old one, which (by collision resistance) proves the two roots cannot be consistent.
    """
    _check_size("size1", size1)
    _check_size("size2", size2)
    if not 0 < size1 < size2:
        raise ProofError(f"consistency path needs 0 < size1 < size2, got {size1} and {size2}")
    for i, p in enumerate(path):
        _check_hash(f"consistency proof element {i}", p)
    want = consistency_proof_length(size1, size2) + (1 if is_power_of_two(size1) else 0)
    if len(path) != want:
        raise ProofError(
            f"consistency path has {len(path)} hashes, sizes {size1} -> {size2} need {want}"
            + (" (including the prepended old root)" if is_power_of_two(size1) else "")
        )
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        assert sn != 0, "length check above guarantees the path fits"
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    assert sn == 0, "length check above guarantees the path reaches the root"
    return fr, sr


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes] | None
) -> None:
    """RFC 9162 §2.1.4.2. Returns None on success, raises ProofError otherwise.

    Equal sizes need an empty proof and equal roots (the size-0 root is fixed: SHA-256 of nothing).
    A proof from the empty tree is rejected: it would say nothing, so asking for one is a caller bug.
    """
    proof = list(proof or [])
    _check_size("size1", size1)
    _check_size("size2", size2)
    if size1 > size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}: a log cannot shrink")
    if size1 == size2:
        if proof:
            raise ProofError(f"sizes are equal ({size1}) but the proof has {len(proof)} hashes, not none")
        if size1 == 0 and (root1 != EMPTY_ROOT or root2 != EMPTY_ROOT):
            raise ProofError("a tree of size 0 has root SHA-256(''), and a given root differs")
        if root1 != root2:
            raise ProofError(f"sizes are equal ({size1}) but the roots differ")
        return
    if size1 == 0:
        raise ProofError("consistency from the empty tree (size1 = 0) is vacuous; no proof is defined")
    _check_hash("root1", root1)
    _check_hash("root2", root2)
    path = [root1, *proof] if is_power_of_two(size1) else proof
    fr, sr = consistency_roots(size1, size2, path)
    if fr != root1:
        raise ProofError(f"consistency proof does not reproduce root1 of the size-{size1} tree")
    if sr != root2:
        raise ProofError(f"consistency proof does not reproduce root2 of the size-{size2} tree")
