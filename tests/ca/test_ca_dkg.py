"""Pedersen DKG with PoK: honest run yields FROST keys; cheaters are named."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import nacl.signing
import pytest
from ca_testutil import run_session, seeded

from trustchain.ca import dkg, frost, group

N, T = 5, 3
CTX = b"trustchain-ca/genesis/epoch-0"


def run_round1(
    rb: Callable[[int], bytes], context: bytes = CTX
) -> tuple[dict[int, dkg.Round1Secret], dict[int, dkg.Round1Package]]:
    secrets, packages = {}, {}
    for i in range(1, N + 1):
        secrets[i], packages[i] = dkg.part1(i, N, T, context, rb)
    return secrets, packages


def run_round2(
    secrets: dict[int, dkg.Round1Secret], packages: dict[int, dkg.Round1Package]
) -> tuple[dict[int, dkg.Round2Secret], dict[int, dict[int, dkg.Round2Share]]]:
    """Returns each participant's state and inbox[receiver][sender]."""
    states = {}
    inbox: dict[int, dict[int, dkg.Round2Share]] = {i: {} for i in secrets}
    for i, s in secrets.items():
        states[i], outgoing = dkg.part2(s, {j: p for j, p in packages.items() if j != i})
        for receiver, share in outgoing.items():
            assert share.sender == i and share.receiver == receiver
            inbox[receiver][i] = share
    return states, inbox


def test_honest_dkg_keys_sign_with_frost() -> None:
    secrets, packages = run_round1(seeded(11))
    states, inbox = run_round2(secrets, packages)
    results = {i: dkg.part3(states[i], inbox[i]) for i in states}
    publics = {pub.group_public_key for _, pub in results.values()}
    assert len(publics) == 1, "all participants must agree on the group key"
    gpk = publics.pop()
    keys = {i: k for i, (k, _) in results.items()}
    public = results[1][1]
    assert all(results[i][1].verifying_shares == public.verifying_shares for i in results)
    # An outside observer derives the same public data from the broadcasts alone.
    observer = dkg.group_public_info({i: p.commitment for i, p in packages.items()}, N, T)
    assert observer.group_public_key == gpk and observer.verifying_shares == public.verifying_shares
    # Nobody held it, but the group secret is the sum of the constant terms.
    total = group.ZERO
    for s in secrets.values():
        total = group.scalar_add(total, s.coefficients[0])
    assert group.base_mult(total) == gpk
    for quorum in ([1, 2, 3], [2, 4, 5], [1, 3, 5]):
        msg = bytes(quorum) + b" certificate"
        commitments, shares = run_session(keys, quorum, msg, seeded(sum(quorum)))
        sig = frost.aggregate_verified(commitments, msg, public, shares)
        nacl.signing.VerifyKey(gpk).verify(msg, sig)


def test_deterministic_under_seed() -> None:
    _, p1 = run_round1(seeded(5))
    _, p2 = run_round1(seeded(5))
    assert p1 == p2


def test_cheating_dealer_is_identified() -> None:
    secrets, packages = run_round1(seeded(12))
    states, inbox = run_round2(secrets, packages)
    # Dealer 4 sends participant 2 a share off its committed polynomial.
    bad = inbox[2][4]
    inbox[2][4] = replace(bad, value=group.scalar_add(bad.value, group.ONE))
    with pytest.raises(dkg.DKGError) as err:
        dkg.part3(states[2], inbox[2])
    assert err.value.culprits == (4,)
    assert "commitment" in err.value.complaints[0].reason
    # The complaint is checkable by third parties once the share is revealed.
    assert not dkg.verify_share(inbox[2][4], packages[4].commitment)
    assert dkg.verify_share(bad, packages[4].commitment)
    # Other receivers are unaffected.
    key, _ = dkg.part3(states[3], inbox[3])
    assert key.identifier == 3


def test_bad_proof_of_knowledge_is_identified() -> None:
    secrets, packages = run_round1(seeded(13))
    packages[3] = replace(packages[3], proof_mu=group.scalar_add(packages[3].proof_mu, group.ONE))
    with pytest.raises(dkg.DKGError) as err:
        dkg.part2(secrets[1], {j: p for j, p in packages.items() if j != 1})
    assert err.value.culprits == (3,)
    assert "proof of knowledge" in str(err.value)


def test_rogue_key_replay_is_rejected() -> None:
    # Participant 5 copies participant 2's commitment and proof (rogue-key style): the PoK binds the
    # sender index, so the replay fails.
    secrets, packages = run_round1(seeded(14))
    p2 = packages[2]
    packages[5] = dkg.Round1Package(5, p2.commitment, p2.proof_r, p2.proof_mu)
    with pytest.raises(dkg.DKGError) as err:
        dkg.part2(secrets[1], {j: p for j, p in packages.items() if j != 1})
    assert err.value.culprits == (5,)


def test_proof_is_bound_to_context() -> None:
    _, packages = run_round1(seeded(15), context=b"epoch-1")
    assert dkg.verify_round1_package(packages[1], b"epoch-1", T) is None
    assert dkg.verify_round1_package(packages[1], b"epoch-2", T) is not None


def test_wrong_degree_and_missing_participants_are_named() -> None:
    secrets, packages = run_round1(seeded(16))
    packages[2] = replace(packages[2], commitment=packages[2].commitment[:2])
    del packages[4]
    with pytest.raises(dkg.DKGError) as err:
        dkg.part2(secrets[1], {j: p for j, p in packages.items() if j != 1})
    assert err.value.culprits == (2, 4)


def test_missing_share_is_named() -> None:
    secrets, packages = run_round1(seeded(17))
    states, inbox = run_round2(secrets, packages)
    del inbox[1][5]
    with pytest.raises(dkg.DKGError) as err:
        dkg.part3(states[1], inbox[1])
    assert err.value.culprits == (5,)
