"""3-of-5 FROST behaviour: any quorum signs, bad shares are attributed, signing recovers."""

from __future__ import annotations

import itertools
from dataclasses import replace

import nacl.signing
import pytest
from ca_testutil import run_session, seeded
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.ca import frost, group

N, T = 5, 3
DEALER = frost.trusted_dealer_keygen(N, T, seeded(2024))
KEYS = DEALER.key_packages
PUBLIC = DEALER.public

quorums = st.lists(st.integers(1, N), min_size=T, max_size=T, unique=True)


def test_every_quorum_of_three_signs() -> None:
    msg = b"tbs-certificate"
    rb = seeded(1)
    for quorum in itertools.combinations(range(1, N + 1), T):
        commitments, shares = run_session(KEYS, quorum, msg, rb)
        sig = frost.aggregate_verified(commitments, msg, PUBLIC, shares)
        nacl.signing.VerifyKey(PUBLIC.group_public_key).verify(msg, sig)


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32), quorum=quorums, msg=st.binary(max_size=200))
def test_random_dealer_any_quorum_signs(seed: int, quorum: list[int], msg: bytes) -> None:
    dealer = frost.trusted_dealer_keygen(N, T, seeded(seed))
    commitments, shares = run_session(dealer.key_packages, quorum, msg, seeded(seed + 1))
    sig = frost.aggregate(commitments, msg, dealer.public.group_public_key, shares)
    assert frost.verify_signature(dealer.public.group_public_key, msg, sig)
    nacl.signing.VerifyKey(dealer.public.group_public_key).verify(msg, sig)


@settings(max_examples=15, deadline=None)
@given(
    quorum=quorums,
    cheater_pos=st.integers(0, T - 1),
    delta=st.integers(1, group.ORDER - 1),
    seed=st.integers(0, 2**32),
)
def test_corrupted_share_is_attributed_and_another_quorum_finishes(
    quorum: list[int], cheater_pos: int, delta: int, seed: int
) -> None:
    msg = b"issue serial 42"
    rb = seeded(seed)
    commitments, shares = run_session(KEYS, quorum, msg, rb)
    quorum = sorted(quorum)
    cheater = quorum[cheater_pos]
    bump = group.scalar_from_int(delta)
    shares = [
        replace(s, share=group.scalar_add(s.share, bump)) if s.identifier == cheater else s for s in shares
    ]
    for s in shares:
        ok = frost.verify_signature_share(
            s.identifier,
            PUBLIC.verifying_shares[s.identifier],
            s.share,
            commitments,
            PUBLIC.group_public_key,
            msg,
        )
        assert ok == (s.identifier != cheater)
    assert frost.identify_cheaters(commitments, msg, PUBLIC, shares) == [cheater]
    with pytest.raises(frost.FrostError) as err:
        frost.aggregate_verified(commitments, msg, PUBLIC, shares)
    assert err.value.culprits == (cheater,)
    # The coordinator excludes the cheater and runs a fresh session (fresh nonces) with 3 honest signers.
    retry = [i for i in range(1, N + 1) if i != cheater][:T]
    commitments2, shares2 = run_session(KEYS, retry, msg, rb)
    sig = frost.aggregate_verified(commitments2, msg, PUBLIC, shares2)
    nacl.signing.VerifyKey(PUBLIC.group_public_key).verify(msg, sig)


def test_share_for_other_message_is_rejected() -> None:
    commitments, shares = run_session(KEYS, [1, 2, 4], b"m1", seeded(3))
    s = shares[0]
    assert not frost.verify_signature_share(
        s.identifier, PUBLIC.verifying_shares[1], s.share, commitments, PUBLIC.group_public_key, b"m2"
    )


def test_below_threshold_is_refused() -> None:
    rb = seeded(4)
    n1, c1 = frost.commit(1, KEYS[1].signing_share, rb)
    _, c2 = frost.commit(2, KEYS[2].signing_share, rb)
    with pytest.raises(frost.FrostError, match="at least 3"):
        frost.sign(KEYS[1], n1, b"m", [c1, c2])


def test_two_shares_cannot_forge() -> None:
    # Two honest shares combined with a made-up third never yield a valid signature.
    commitments, shares = run_session(KEYS, [1, 2, 3], b"m", seeded(5))
    forged = [*shares[:2], frost.SignatureShare(3, group.scalar_from_int(12345))]
    with pytest.raises(frost.FrostError) as err:
        frost.aggregate_verified(commitments, b"m", PUBLIC, forged)
    assert err.value.culprits == (3,)


def test_signer_rejects_substituted_commitment() -> None:
    rb = seeded(6)
    nonces = {}
    commitments = []
    for i in (1, 2, 3):
        nonces[i], c = frost.commit(i, KEYS[i].signing_share, rb)
        commitments.append(c)
    _, fake = frost.commit(1, KEYS[1].signing_share, rb)
    tampered = [fake, *commitments[1:]]
    with pytest.raises(frost.FrostError, match="this signer's commitment"):
        frost.sign(KEYS[1], nonces[1], b"m", tampered)


def test_commitment_list_validation() -> None:
    commitments, _ = run_session(KEYS, [1, 2, 3], b"m", seeded(7))
    with pytest.raises(frost.FrostError, match="sorted"):
        frost.validate_commitment_list(list(reversed(commitments)))
    with pytest.raises(frost.FrostError, match="sorted"):
        frost.validate_commitment_list([commitments[0], commitments[0], commitments[1]])
    bad = replace(commitments[1], binding=group.IDENTITY)
    with pytest.raises(frost.FrostError) as err:
        frost.validate_commitment_list([commitments[0], bad, commitments[2]])
    assert err.value.culprits == (2,)
    small_order = bytes.fromhex("ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f")
    bad = replace(commitments[2], hiding=small_order)
    with pytest.raises(frost.FrostError) as err:
        frost.validate_commitment_list([commitments[0], commitments[1], bad])
    assert err.value.culprits == (3,)


def test_malformed_share_scalar_is_attributed() -> None:
    commitments, shares = run_session(KEYS, [2, 3, 5], b"m", seeded(8))
    non_canonical = group.ORDER.to_bytes(32, "little")
    shares = [shares[0], replace(shares[1], share=non_canonical), shares[2]]
    assert not frost.verify_signature_share(
        3, PUBLIC.verifying_shares[3], non_canonical, commitments, PUBLIC.group_public_key, b"m"
    )
    with pytest.raises(frost.FrostError) as err:
        frost.aggregate_verified(commitments, b"m", PUBLIC, shares)
    assert err.value.culprits == (3,)


def test_lagrange_interpolation_recovers_secret() -> None:
    secret = group.random_scalar(seeded(9))
    dealer = frost.trusted_dealer_keygen(N, T, seeded(10), secret=secret)
    for quorum in itertools.combinations(range(1, N + 1), T):
        acc = group.ZERO
        for i in quorum:
            lam = frost.derive_interpolating_value(list(quorum), i)
            acc = group.scalar_add(acc, group.scalar_mul(lam, dealer.key_packages[i].signing_share))
        assert acc == secret
    assert dealer.public.group_public_key == group.base_mult(secret)


def test_nonce_randomness_hedged_by_share() -> None:
    r = bytes(32)
    assert frost.nonce_generate(KEYS[1].signing_share, r) != frost.nonce_generate(KEYS[2].signing_share, r)
    with pytest.raises(frost.FrostError):
        frost.nonce_generate(KEYS[1].signing_share, b"short")
