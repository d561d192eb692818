"""Re-sharing the issuing key to a new set: same group key, new threshold, old shares useless."""

from __future__ import annotations

import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.ca import frost, sharebox
from trustchain.errors import TrustChainError
from trustchain.membership.reshare import GroupRecord, ReshareDealing, ReshareError, ReshareTally, complete, deal


def _genesis(n: int, t: int, rng: random.Random) -> tuple[frost.DealerOutput, GroupRecord]:
    out = frost.trusted_dealer_keygen(n, t, rng.randbytes)
    record = GroupRecord(0, out.public.group_public_key,
                         tuple(out.public.verifying_shares[i] for i in range(1, n + 1)), t)
    return out, record


def _verifies(group_key: bytes, msg: bytes, sig: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(group_key).verify(sig, msg)
    except InvalidSignature:
        return False
    return True


@settings(max_examples=12, deadline=None, derandomize=True)
@given(st.integers(min_value=2, max_value=7), st.integers(min_value=2, max_value=7), st.randoms(use_true_random=False))
def test_any_old_quorum_moves_the_key_to_any_new_set(n_old: int, n_new: int, r: random.Random) -> None:
    rng = random.Random(r.random())
    t_old, t_new = n_old // 2 + 1, n_new // 2 + 1
    out, record = _genesis(n_old, t_old, rng)
    boxes = [sharebox.RecipientKey.generate(rng.randbytes) for _ in range(n_new)]
    tally = ReshareTally(record, 1, n_new, t_new)
    dealers = rng.sample(range(1, n_old + 1), t_old)
    for i in dealers:
        assert tally.offer(deal(out.key_packages[i], 1, [b.public_key() for b in boxes], t_new, rng.randbytes)) is None
    assert tally.done
    new = tally.new_group()
    assert new.group_key == record.group_key and new.threshold == t_new and len(new.verifying_shares) == n_new
    keys = {j: complete(j, boxes[j - 1], tally) for j in range(1, n_new + 1)}
    signers = rng.sample(range(1, n_new + 1), t_new)
    msg = b"issued after re-sharing"
    sig = frost.sign_with_quorum({j: keys[j] for j in signers}, new.public(), msg, rng.randbytes)
    assert _verifies(record.group_key, msg, sig)


def test_a_retired_share_does_not_sign_with_the_new_ones() -> None:
    rng = random.Random(5)
    out, record = _genesis(5, 3, rng)
    boxes = [sharebox.RecipientKey.generate(rng.randbytes) for _ in range(4)]
    tally = ReshareTally(record, 1, 4, 3)
    for i in (1, 2, 3):
        tally.offer(deal(out.key_packages[i], 1, [b.public_key() for b in boxes], 3, rng.randbytes))
    new = tally.new_group()
    keys = {j: complete(j, boxes[j - 1], tally) for j in range(1, 5)}
    msg = b"forged"
    # Old share 4 (of a removed validator) with two new shares: not a signature under the group key.
    mixed = {1: keys[1], 2: keys[2], 4: out.key_packages[4]}
    try:
        sig = frost.sign_with_quorum(mixed, new.public(), msg, rng.randbytes)
    except TrustChainError:
        return
    assert not _verifies(record.group_key, msg, sig)


def test_the_tally_refuses_dealings_that_would_move_the_key_or_do_not_fit() -> None:
    rng = random.Random(9)
    out, record = _genesis(4, 3, rng)
    boxes = [sharebox.RecipientKey.generate(rng.randbytes).public_key() for _ in range(5)]
    tally = ReshareTally(record, 2, 5, 3)
    good = deal(out.key_packages[1], 2, boxes, 3, rng.randbytes)
    wrong_constant = ReshareDealing(2, 1, (good.commitment[1], *good.commitment[1:]), good.boxes)
    assert "verifying share" in (tally.offer(wrong_constant) or "")
    assert "coefficients" in (tally.offer(ReshareDealing(2, 1, good.commitment[:2], good.boxes)) or "")
    assert "epoch" in (tally.offer(ReshareDealing(3, 1, good.commitment, good.boxes)) or "")
    assert "dealer" in (tally.offer(ReshareDealing(2, 9, good.commitment, good.boxes)) or "")
    assert tally.offer(good) is None
    assert "already dealt" in (tally.offer(good) or "")
    assert not tally.done


def test_a_holder_detects_a_share_that_does_not_match_its_commitment() -> None:
    rng = random.Random(11)
    out, record = _genesis(3, 2, rng)
    boxes = [sharebox.RecipientKey.generate(rng.randbytes) for _ in range(3)]
    tally = ReshareTally(record, 1, 3, 2)
    honest = deal(out.key_packages[1], 1, [b.public_key() for b in boxes], 2, rng.randbytes)
    other = deal(out.key_packages[2], 1, [b.public_key() for b in boxes], 2, rng.randbytes)
    # Dealer 2 puts another dealing's box (sealed for another dealer) in holder 1's place.
    tampered = ReshareDealing(1, 2, other.commitment, (honest.boxes[0], *other.boxes[1:]))
    assert tally.offer(honest) is None and tally.offer(tampered) is None
    with pytest.raises(ReshareError, match="dealer 2"):
        complete(1, boxes[0], tally)
    assert complete(2, boxes[1], tally).identifier == 2
