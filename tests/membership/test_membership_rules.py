"""The validator-set rules at every n from 1 to 10, checked by brute force over subsets."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.membership.rules import boundary_after, signing_threshold
from trustchain.quorum import max_faulty, quorum_size


def _brute_f(n: int) -> int:
    return max(f for f in range(n) if n >= 3 * f + 1)


@given(st.integers(min_value=1, max_value=10))
def test_quorums_intersect_in_an_honest_replica_and_honest_replicas_form_one(n: int) -> None:
    f, q = _brute_f(n), quorum_size(n)
    assert max_faulty(n) == f
    members = range(n)
    for a in combinations(members, q):
        for b in combinations(members, q):
            assert len(set(a) & set(b)) >= f + 1, (n, a, b)
    assert n - f >= q  # the honest replicas alone are a quorum
    # and it is the smallest such size: two sets of q-1 can share only f replicas (or fewer)
    if q > 1:
        assert 2 * (q - 1) - n < f + 1


@given(st.integers(min_value=1, max_value=10))
def test_signing_threshold_keeps_byzantine_out_and_honest_in(n: int) -> None:
    f, t = _brute_f(n), signing_threshold(n)
    assert t > f  # any t signers include an honest one
    assert t <= n - f  # the honest ones can sign without the Byzantine
    assert 2 * t > n  # a majority: two disjoint signing groups cannot both exist
    if n >= 2:
        assert f + 1 < t  # a removed validator's retained share plus all f Byzantine ones: still short


def test_signing_threshold_table() -> None:
    assert [signing_threshold(n) for n in range(1, 11)] == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]


@given(st.integers(min_value=1, max_value=10_000), st.integers(min_value=1, max_value=100))
@settings(max_examples=200)
def test_boundary_is_the_first_checkpoint_at_or_after_the_change(seq: int, k: int) -> None:
    c = boundary_after(seq, k)
    assert c % k == 0 and c >= seq and c - seq < k
