"""Hybrid share transport and at-rest wrapping: round trips and tamper detection."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ca_testutil import seeded
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.ca import dkg, frost, group, sharebox

RB = seeded(31)
ALICE = sharebox.RecipientKey.generate(RB)
BOB = sharebox.RecipientKey.generate(RB)
ALICE_PUB = ALICE.public_key()
OPERATOR_KEY = seeded(32)(32)


def test_box_round_trip_and_fresh_ciphertexts() -> None:
    b1 = sharebox.seal(ALICE_PUB, b"secret share", b"ctx", RB)
    b2 = sharebox.seal(ALICE_PUB, b"secret share", b"ctx", RB)
    assert b1 != b2
    assert b"secret share" not in b1
    assert sharebox.open_box(ALICE, b1, b"ctx") == b"secret share"
    assert sharebox.open_box(ALICE, b2, b"ctx") == b"secret share"


def test_recipient_key_serialisation_is_stable() -> None:
    again = sharebox.RecipientKey.from_bytes(ALICE.to_bytes())
    assert again.public_key() == ALICE_PUB
    assert sharebox.RecipientPublicKey.from_bytes(ALICE_PUB.to_bytes()) == ALICE_PUB
    assert len(ALICE_PUB.mlkem768) == sharebox.MLKEM_PK_LEN


BOX = sharebox.seal(ALICE_PUB, b"x" * 32, b"aad", seeded(33))


@settings(max_examples=40, deadline=None)
@given(pos=st.integers(0, len(BOX) - 1), bit=st.integers(0, 7))
def test_any_bit_flip_is_rejected(pos: int, bit: int) -> None:
    tampered = bytearray(BOX)
    tampered[pos] ^= 1 << bit
    with pytest.raises(sharebox.ShareboxError):
        sharebox.open_box(ALICE, bytes(tampered), b"aad")


def test_each_component_is_bound() -> None:
    hdr = sharebox.BOX_HEADER_LEN
    assert sharebox.open_box(ALICE, BOX, b"aad") == b"x" * 32
    with pytest.raises(sharebox.ShareboxError):
        sharebox.open_box(ALICE, BOX, b"other aad")
    with pytest.raises(sharebox.ShareboxError):
        sharebox.open_box(BOB, BOX, b"aad")
    with pytest.raises(sharebox.ShareboxError):
        sharebox.open_box(ALICE, BOX[:-1], b"aad")
    # Splice a *valid* ML-KEM ciphertext from another box: the combiner binds ct_mlkem, so it fails.
    other = sharebox.seal(ALICE_PUB, b"x" * 32, b"aad", seeded(34))
    spliced = BOX[: 1 + 32] + other[1 + 32 : hdr] + BOX[hdr:]
    with pytest.raises(sharebox.ShareboxError):
        sharebox.open_box(ALICE, spliced, b"aad")
    # Same for a valid X25519 ephemeral key from another box.
    spliced = BOX[:1] + other[1:33] + BOX[33:]
    with pytest.raises(sharebox.ShareboxError):
        sharebox.open_box(ALICE, spliced, b"aad")
    # A small-order ephemeral key (all zero) is rejected, not silently accepted.
    with pytest.raises(sharebox.ShareboxError):
        sharebox.open_box(ALICE, BOX[:1] + bytes(32) + BOX[33:], b"aad")


def test_dkg_shares_travel_in_boxes() -> None:
    n, t, session = 3, 2, b"dkg-epoch-7"
    rb = seeded(35)
    keys = {i: sharebox.RecipientKey.generate(rb) for i in range(1, n + 1)}
    r1 = {i: dkg.part1(i, n, t, session, rb) for i in range(1, n + 1)}
    states, wire = {}, {}
    for i, (sec, _) in r1.items():
        states[i], out = dkg.part2(sec, {j: p for j, (_, p) in r1.items() if j != i})
        for j, share in out.items():
            wire[(i, j)] = sharebox.seal_share(share, keys[j].public_key(), session, rb)
    results = {}
    for j in keys:
        inbox = {i: sharebox.open_share(keys[j], wire[(i, j)], session, i, j) for i in keys if i != j}
        results[j] = dkg.part3(states[j], inbox)
    assert len({pub.group_public_key for _, pub in results.values()}) == 1
    # A box for (1 -> 2) cannot be presented as (3 -> 2), nor in another session, nor opened by 3.
    with pytest.raises(sharebox.ShareboxError):
        sharebox.open_share(keys[2], wire[(1, 2)], session, 3, 2)
    with pytest.raises(sharebox.ShareboxError):
        sharebox.open_share(keys[2], wire[(1, 2)], b"dkg-epoch-8", 1, 2)
    with pytest.raises(sharebox.ShareboxError):
        sharebox.open_share(keys[3], wire[(1, 2)], session, 1, 3)


def test_at_rest_round_trip_and_binding() -> None:
    blob = sharebox.wrap_at_rest(OPERATOR_KEY, "validator-2", "ca-key-epoch-0", b"share", RB)
    assert sharebox.unwrap_at_rest(OPERATOR_KEY, "validator-2", "ca-key-epoch-0", blob) == b"share"
    for v, k in [("validator-3", "ca-key-epoch-0"), ("validator-2", "ca-key-epoch-1")]:
        with pytest.raises(sharebox.ShareboxError):
            sharebox.unwrap_at_rest(OPERATOR_KEY, v, k, blob)
    with pytest.raises(sharebox.ShareboxError):
        sharebox.unwrap_at_rest(bytes(32), "validator-2", "ca-key-epoch-0", blob)
    for pos in (0, 5, 20, len(blob) - 1):
        tampered = bytearray(blob)
        tampered[pos] ^= 0x40
        with pytest.raises(sharebox.ShareboxError):
            sharebox.unwrap_at_rest(OPERATOR_KEY, "validator-2", "ca-key-epoch-0", bytes(tampered))
    with pytest.raises(ValueError):
        sharebox.wrap_at_rest(b"short", "v", "k", b"s", RB)
    # ("ab", "c") and ("a", "bc") must not share associated data.
    blob2 = sharebox.wrap_at_rest(OPERATOR_KEY, "ab", "c", b"s", RB)
    with pytest.raises(sharebox.ShareboxError):
        sharebox.unwrap_at_rest(OPERATOR_KEY, "a", "bc", blob2)


def test_key_package_at_rest() -> None:
    dealer = frost.trusted_dealer_keygen(5, 3, seeded(36))
    pkg = dealer.key_packages[4]
    blob = sharebox.store_key_package(OPERATOR_KEY, "validator-4", "epoch-0", pkg, RB)
    assert sharebox.load_key_package(OPERATOR_KEY, "validator-4", "epoch-0", blob) == pkg
    wrong = replace(pkg, signing_share=dealer.key_packages[3].signing_share)
    with pytest.raises(sharebox.ShareboxError, match="verifying share"):
        sharebox.decode_key_package(sharebox.encode_key_package(wrong))
    bad = replace(pkg, signing_share=group.ORDER.to_bytes(32, "little"))
    with pytest.raises(sharebox.ShareboxError):
        sharebox.decode_key_package(sharebox.encode_key_package(bad))
