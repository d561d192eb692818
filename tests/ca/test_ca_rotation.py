"""Renewal planning, root/intermediate rollover with cross-certificates, proactive re-sharing."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
from ca_chain import ISSUING_CERT, ROOT, ROOT_CERT, ROOT_PROFILE, ROOT_SIGN
from ca_testutil import ca_name, frost_signer, issuer_profile, run_session, seeded
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from trustchain.ca import frost, group, rotation, validate
from trustchain.ca import x509 as cax509

T = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)


def held(holder: str, serial: int, start: dt.datetime, life: dt.timedelta = DAY) -> rotation.HeldCertificate:
    return rotation.HeldCertificate(
        holder, serial, (f"{holder}.example.org",), start, start + life - dt.timedelta(seconds=1)
    )


def test_renewal_at_two_thirds_of_lifetime() -> None:
    assert rotation.renewal_time(T, T + DAY) == T + dt.timedelta(hours=16)
    certs = [held("a", 1, T), held("b", 2, T - dt.timedelta(hours=20)), held("c", 3, T - dt.timedelta(days=2))]
    at = T + dt.timedelta(hours=1)
    plan = rotation.plan_renewals(certs, at)
    assert [(r.holder, r.urgent) for r in plan] == [("c", True), ("b", False)]
    assert plan[1].names == ("b.example.org",) and plan[1].replaces_serial == 2
    # b renewed: its newest certificate is fresh, so nothing more is asked for it
    plan = rotation.plan_renewals([*certs, held("b", 4, at)], at)
    assert [r.holder for r in plan] == ["c"]
    assert [r.holder for r in rotation.plan_renewals(certs, at, Fraction(1, 2))] == ["c", "b"]


def test_root_and_intermediate_rollover_paths() -> None:
    new_root = frost.trusted_dealer_keygen(5, 3, seeded(401))
    new_issuing = frost.trusted_dealer_keygen(5, 3, seeded(402))
    new_root_profile = issuer_profile(ca_name("TrustChain Root R2"), new_root.public.group_public_key, "root2")
    new_sign = frost_signer(new_root.key_packages, new_root.public, [3, 4, 5], seeded(403))
    tbs = rotation.rollover_tbs(
        ROOT_PROFILE, new_root_profile, ca_name("TrustChain Issuing E2"), new_issuing.public.group_public_key, T, 10
    )
    r2 = cax509.issue(tbs.new_root, new_sign, new_root.public.group_public_key)
    r2_cross = cax509.issue(tbs.cross_root, ROOT_SIGN, ROOT.public.group_public_key)
    i2 = cax509.issue(tbs.new_intermediate, new_sign, new_root.public.group_public_key)
    i2_cross = cax509.issue(tbs.cross_intermediate, ROOT_SIGN, ROOT.public.group_public_key)
    assert i2.public_key() == i2_cross.public_key() and i2.subject == i2_cross.subject
    issuing_profile = issuer_profile(i2.subject, new_issuing.public.group_public_key, "issuing-e2")
    leaf_key = Ed25519PrivateKey.from_private_bytes(bytes(range(32))).public_key()
    leaf = cax509.issue(
        cax509.leaf_tbs(leaf_key, ["svc.example.org"], issuing_profile, T, 11, b"req"),
        frost_signer(new_issuing.key_packages, new_issuing.public, [1, 2, 3], seeded(404)),
        new_issuing.public.group_public_key,
    )
    at = T + dt.timedelta(hours=1)
    # an old client trusting only R1: via the cross-signed intermediate, or via R2's cross-certificate
    for inters in ([i2_cross], [i2, r2_cross]):
        path = validate.verify_chain(leaf, inters, [ROOT_CERT], at, "svc.example.org")
        assert path[-1] == ROOT_CERT
    # a new client trusting only R2
    assert validate.verify_chain(leaf, [i2], [r2], at, "svc.example.org")[-1] == r2
    # the old intermediate keeps working under R1 during the overlap
    assert validate.verify_chain(ISSUING_CERT, [], [ROOT_CERT], at)[-1] == ROOT_CERT
    with pytest.raises(validate.ChainError):
        validate.verify_chain(leaf, [i2], [ROOT_CERT], at)


def test_proactive_reshare_keeps_group_key() -> None:
    old = frost.trusted_dealer_keygen(5, 3, seeded(501))
    old_quorum = [1, 3, 4]
    new_ids = [1, 2, 3, 4, 5, 6, 7]  # grow to 7 validators, threshold 4
    rb = seeded(502)
    dealings = {i: rotation.reshare_deal(old.key_packages[i], old_quorum, new_ids, 4, rb) for i in old_quorum}
    new_keys = {}
    publics = set()
    for j in new_ids:
        key, public = rotation.reshare_complete(j, dealings, old.public, old_quorum, new_ids, 4)
        new_keys[j] = key
        publics.add((public.group_public_key, tuple(sorted(public.verifying_shares.items()))))
    assert len(publics) == 1
    ((gpk, vshares),) = publics
    assert gpk == old.public.group_public_key
    new_public = frost.PublicKeyPackage(gpk, dict(vshares), 4)
    msg = b"same key before and after re-sharing"
    for keys, public, quorum in ((old.key_packages, old.public, [2, 3, 5]), (new_keys, new_public, [2, 5, 6, 7])):
        commitments, shares = run_session(keys, quorum, msg, seeded(503))
        sig = frost.aggregate_verified(commitments, msg, public, shares)
        assert frost.verify_signature(old.public.group_public_key, msg, sig)
    # 3 new shares are no longer enough: interpolating with threshold 3 gives a wrong signature
    weak = {j: frost.KeyPackage(j, k.signing_share, k.verifying_share, gpk, 3) for j, k in new_keys.items()}
    commitments, shares = run_session(weak, [1, 2, 3], msg, seeded(504))
    sig = frost.aggregate(commitments, msg, gpk, shares)
    assert not frost.verify_signature(gpk, msg, sig)


def test_reshare_rejects_a_dealer_that_changes_the_key() -> None:
    old = frost.trusted_dealer_keygen(5, 3, seeded(601))
    quorum, new_ids = [2, 4, 5], [1, 2, 3, 4, 5]
    rb = seeded(602)
    dealings = {i: rotation.reshare_deal(old.key_packages[i], quorum, new_ids, 3, rb) for i in quorum}
    # dealer 4 deals a sharing of a different secret (consistent in itself, but not its share)
    evil_key = frost.KeyPackage(
        4, group.random_scalar(rb), old.key_packages[4].verifying_share, old.public.group_public_key, 3
    )
    dealings[4] = rotation.reshare_deal(evil_key, quorum, new_ids, 3, rb)
    with pytest.raises(rotation.ReshareError) as err:
        rotation.reshare_complete(1, dealings, old.public, quorum, new_ids, 3)
    assert err.value.culprits == (4,)
    # dealer 5 sends holder 1 a share that does not match its commitment
    good4 = rotation.reshare_deal(old.key_packages[4], quorum, new_ids, 3, rb)
    d5 = dealings[5]
    dealings = {**dealings, 4: good4, 5: rotation.ReshareDealing(5, d5.commitment, {**d5.shares, 1: group.ONE})}
    with pytest.raises(rotation.ReshareError) as err:
        rotation.reshare_complete(1, dealings, old.public, quorum, new_ids, 3)
    assert err.value.culprits == (5,)
    with pytest.raises(rotation.ReshareError):
        rotation.reshare_complete(1, {2: dealings[2]}, old.public, quorum, new_ids, 3)
