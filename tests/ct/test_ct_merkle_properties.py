"""Proof generation against the literal RFC definitions, and tamper-evidence of every proof bit."""

from __future__ import annotations

import pytest
from ct_helpers import make_leaf_hashes, reference_mth
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.ct import merkle
from trustchain.ct.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof,
    inclusion_proof,
    root_of,
    verify_consistency,
    verify_inclusion,
)


def _flip(data: bytes, bit: int) -> bytes:
    b = bytearray(data)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def _oracle(leaves: list[bytes]) -> merkle.RangeHasher:
    return lambda a, b: reference_mth(leaves[a:b])


def reference_path(m: int, leaves: list[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.3.1 PATH, literally."""
    n = len(leaves)
    if n == 1:
        return []
    k = merkle.split_point(n)
    if m < k:
        return [*reference_path(m, leaves[:k]), reference_mth(leaves[k:])]
    return [*reference_path(m - k, leaves[k:]), reference_mth(leaves[:k])]


def reference_subproof(m: int, leaves: list[bytes], b: bool) -> list[bytes]:
    """RFC 9162 §2.1.4.1 SUBPROOF, literally."""
    n = len(leaves)
    if m == n:
        return [] if b else [reference_mth(leaves)]
    k = merkle.split_point(n)
    if m <= k:
        return [*reference_subproof(m, leaves[:k], b), reference_mth(leaves[k:])]
    return [*reference_subproof(m - k, leaves[k:], False), reference_mth(leaves[:k])]


def test_known_hashes() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    # RFC 6962 test vector: the leaf hash of the empty string.
    assert merkle.leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"


@pytest.mark.parametrize("n", range(0, 70))
def test_root_of_matches_recursive_definition(n: int) -> None:
    leaves = make_leaf_hashes(n)
    assert root_of(leaves) == reference_mth(leaves)


def test_exhaustive_small_trees() -> None:
    """Every (index, size) and (size1, size2) up to 33: generation equals the RFC text and verifies."""
    leaves = make_leaf_hashes(33)
    for size in range(1, 34):
        sub = leaves[:size]
        root = reference_mth(sub)
        for m in range(size):
            proof = inclusion_proof(m, size, _oracle(sub))
            assert proof == reference_path(m, sub)
            verify_inclusion(m, size, sub[m], proof, root)
        for size1 in range(1, size + 1):
            proof = consistency_proof(size1, size, _oracle(sub))
            assert proof == (reference_subproof(size1, sub, True) if size1 < size else [])
            verify_consistency(size1, size, reference_mth(sub[:size1]), root, proof)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), size=st.integers(min_value=1, max_value=300))
def test_inclusion_any_bit_flip_fails(data: st.DataObject, size: int) -> None:
    leaves = make_leaf_hashes(size)
    index = data.draw(st.integers(0, size - 1), label="index")
    root = root_of(leaves)
    proof = inclusion_proof(index, size, _oracle(leaves))
    verify_inclusion(index, size, leaves[index], proof, root)

    blob = b"".join([leaves[index], root, *proof])
    bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
    bad = _flip(blob, bit)
    parts = [bad[i : i + 32] for i in range(0, len(bad), 32)]
    with pytest.raises(ProofError):
        verify_inclusion(index, size, parts[0], parts[2:], parts[1])


@settings(max_examples=150, deadline=None)
@given(data=st.data(), size2=st.integers(min_value=2, max_value=300))
def test_consistency_any_bit_flip_fails(data: st.DataObject, size2: int) -> None:
    leaves = make_leaf_hashes(size2)
    size1 = data.draw(st.integers(1, size2 - 1), label="size1")
    root1, root2 = root_of(leaves[:size1]), root_of(leaves)
    proof = consistency_proof(size1, size2, _oracle(leaves))
    verify_consistency(size1, size2, root1, root2, proof)

    blob = b"".join([root1, root2, *proof])
    bit = data.draw(st.integers(0, len(blob) * 8 - 1), label="bit")
    bad = _flip(blob, bit)
    parts = [bad[i : i + 32] for i in range(0, len(bad), 32)]
    with pytest.raises(ProofError):
        verify_consistency(size1, size2, parts[0], parts[1], parts[2:])


@settings(max_examples=100, deadline=None)
@given(data=st.data(), size=st.integers(min_value=2, max_value=200))
def test_inclusion_wrong_position_or_shape_fails(data: st.DataObject, size: int) -> None:
    leaves = make_leaf_hashes(size)
    index = data.draw(st.integers(0, size - 1), label="index")
    root = root_of(leaves)
    proof = inclusion_proof(index, size, _oracle(leaves))
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index), label="other")
    with pytest.raises(ProofError):
        verify_inclusion(other, size, leaves[index], proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaves[index], [*proof, proof[0] if proof else root], root)
    if proof:
        with pytest.raises(ProofError, match="needs"):
            verify_inclusion(index, size, leaves[index], proof[:-1], root)


def test_error_messages_name_the_problem() -> None:
    leaves = make_leaf_hashes(8)
    root = root_of(leaves)
    proof = inclusion_proof(3, 8, _oracle(leaves))
    with pytest.raises(ProofError, match="not below tree size"):
        verify_inclusion(8, 8, leaves[3], proof, root)
    with pytest.raises(ProofError, match="leaf hash is 31 bytes"):
        verify_inclusion(3, 8, leaves[3][:31], proof, root)
    with pytest.raises(ProofError, match="element 1 is 33 bytes"):
        verify_inclusion(3, 8, leaves[3], [proof[0], proof[1] + b"\0", proof[2]], root)
    with pytest.raises(ProofError, match="yields root"):
        verify_inclusion(3, 8, leaves[4], proof, root)
    with pytest.raises(ProofError, match="cannot shrink"):
        verify_consistency(5, 4, root, root, [])
    with pytest.raises(ProofError, match="root1"):
        cp = consistency_proof(3, 8, _oracle(leaves))
        verify_consistency(3, 8, root_of(leaves[:4]), root, cp)
    with pytest.raises(ValueError, match="outside"):
        inclusion_proof(8, 8, _oracle(leaves))
    with pytest.raises(ValueError, match="0 < size1"):
        consistency_proof(0, 8, _oracle(leaves))
