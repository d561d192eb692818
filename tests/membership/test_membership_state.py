"""Votes for validator-set changes: who may vote, how many must, when the change takes effect."""

from __future__ import annotations

from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.authorization.validator_votes import (
    STATUS_ERROR,
    STATUS_EXECUTED,
    STATUS_RECORDED,
    vote_command,
)
from trustchain.encoding import decode, encode
from trustchain.membership.state import (
    MEMBERSHIP,
    OP_ADD,
    OP_REMOVE,
    ChangeResult,
    Membership,
    MembershipChange,
    Validator,
    ValidatorSet,
)

K = 10


def _key(i: int) -> bytes:
    return bytes([i + 1]) * 32


def _set(n: int) -> ValidatorSet:
    return ValidatorSet(0, 0, tuple(Validator(_key(i), b"box") for i in range(n)))


def _add(i: int) -> bytes:
    return vote_command(MEMBERSHIP, encode(MembershipChange(OP_ADD, Validator(_key(i), b"box"))))


def _remove(i: int) -> bytes:
    return vote_command(MEMBERSHIP, encode(MembershipChange(OP_REMOVE, Validator(_key(i), b""))))


def _smallest_intersecting(n: int) -> int:
    """The fewest voters such that any two groups of that size share a validator beyond the f faulty."""
    f = max(f for f in range(n) if n > 3 * f)
    return min(q for q in range(1, n + 1)
               if all(len(set(a) & set(b)) > f for a in combinations(range(n), q) for b in combinations(range(n), q)))


@settings(max_examples=20, deadline=None)
@given(st.integers(min_value=2, max_value=10), st.integers(min_value=1, max_value=500))
def test_a_change_runs_on_the_vote_that_completes_a_quorum_and_waits_for_the_checkpoint(n: int, seq: int) -> None:
    m = Membership(_set(n), K)
    need = _smallest_intersecting(n)
    for voter in range(need - 1):
        assert m.vote(_key(voter), _add(n), seq, 0).status == STATUS_RECORDED
    assert m.pending is None
    result = m.vote(_key(need - 1), _add(n), seq, 0)
    assert result.status == STATUS_EXECUTED
    change = decode(ChangeResult, result.result)
    boundary = -(-seq // K) * K
    assert (change.epoch, change.base_seq, change.n) == (1, boundary, n + 1)
    assert m.epoch_end(0) == boundary and m.epoch_end(1) is None
    # Still the old set through the boundary; the new one after it.
    m.advance(boundary)
    assert m.current.n == n
    m.advance(boundary + 1)
    assert m.current.n == n + 1 and m.current.epoch == 1 and m.pending is None


def test_only_current_validators_vote_and_one_change_is_pending_at_a_time() -> None:
    m = Membership(_set(4), K)
    assert m.vote(_key(9), _add(4), 1, 0).status == STATUS_ERROR  # not a validator
    for v in range(3):
        m.vote(_key(v), _add(4), 5, 0)
    assert m.pending is not None
    refused = m.vote(_key(0), _remove(1), 6, 0)
    assert refused.status == STATUS_ERROR and refused.detail.startswith("pending")
    # After the boundary the added validator votes too, and the quorum is that of n = 5 (4 votes).
    for v, expect in ((0, STATUS_RECORDED), (4, STATUS_RECORDED), (2, STATUS_RECORDED), (3, STATUS_EXECUTED)):
        assert m.vote(_key(v), _remove(1), 11, 0).status == expect


@pytest.mark.parametrize(("payload", "field"), [
    (_add(0), "already a validator"),
    (_remove(7), "not a validator"),
    (vote_command(MEMBERSHIP, encode(MembershipChange(OP_ADD, Validator(b"short", b"box")))), "validator.key"),
    (vote_command(MEMBERSHIP, encode(MembershipChange(OP_ADD, Validator(_key(8), b"")))), "box_key"),
    (vote_command(MEMBERSHIP, encode(MembershipChange("promote", Validator(_key(8), b"")))), "op"),
    (vote_command("zones", b"x"), "target"),
    (vote_command(MEMBERSHIP, b"\x00junk"), "payload"),
])
def test_bad_changes_are_refused_naming_the_field(payload: bytes, field: str) -> None:
    result = Membership(_set(4), K).vote(_key(0), payload, 1, 0)
    assert result.status == STATUS_ERROR and field in result.detail


def test_a_set_never_shrinks_below_two() -> None:
    m = Membership(_set(2), K)
    result = m.vote(_key(0), _remove(1), 1, 0)
    assert result.status == STATUS_ERROR and "at least 2" in result.detail


def test_snapshot_round_trip_keeps_pending_set_and_votes() -> None:
    m = Membership(_set(4), K)
    m.vote(_key(0), _add(4), 3, 0)
    for v in (1, 2):
        m.vote(_key(v), _add(5), 3, 0)
    other = Membership(_set(4), K)
    other.restore(m.snapshot())
    assert other.snapshot() == m.snapshot()
    assert other.vote(_key(3), _add(4), 4, 0).status == STATUS_RECORDED  # 2 of 3 counted so far
    assert other.vote(_key(1), _add(4), 4, 0).status == STATUS_EXECUTED
