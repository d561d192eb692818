"""Moving the FROST issuing key to a new validator set without changing the group public key.

When a change passes, every member of the set that holds shares (FROST identifiers 1..n in set
order) may deal: a fresh polynomial g_i of degree t'-1 with g_i(0) = s_i, its own share, a Feldman
commitment to g_i and one share g_i(j) per member j of the next set, each sealed to j's box key
(`trustchain.ca.sharebox`, hybrid X25519 + ML-KEM). Dealings are ordered commands; the replicated
`ReshareTally` checks each one's public part (degree t'-1 and constant term equal to the dealer's
verifying share Y_i, so no dealer can move the key) and takes the first t of them, t being the old
threshold. With Q those t dealers and lambda_i their Lagrange coefficients at 0, new holder j's share
is sum lambda_i g_i(j), and the combined commitment sum lambda_i C_i has constant term
sum lambda_i Y_i = the group key. Every replica derives the new verifying shares from the ordered
commitments alone; each new holder opens and checks (`vss_verify`) its own boxes.

Unlike `trustchain.ca.rotation.reshare_deal`, which weights the share by a Lagrange coefficient
fixed before dealing, the weighting here happens after ordering, so the quorum of dealers is simply
the first t valid dealings and a silent or crashed dealer cannot stall the change.

The new threshold is `rules.signing_threshold(n')`, a strict majority of the new set. The shares of
the old polynomial (a removed validator's included) do not combine with the new ones: honest
holders erase theirs once they hold the new share, so fewer than the old threshold of old shares
survive if at most f holders are Byzantine.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from trustchain.ca import frost, group, sharebox
from trustchain.ca.group import RandBytes
from trustchain.encoding import DecodeError
from trustchain.errors import TrustChainError

__all__ = [
    "GroupRecord",
    "ReshareDealing",
    "ReshareError",
    "ReshareTally",
    "complete",
    "deal",
]


class ReshareError(TrustChainError, ValueError):
    """A share that does not open or does not match its dealer's commitment."""


@dataclass(frozen=True)
class GroupRecord:
    """The FROST group as replicated state: which epoch's set holds the shares, the group key, and
    the verifying share of identifier i+1 at index i."""

    epoch: int
    group_key: bytes
    verifying_shares: tuple[bytes, ...]
    threshold: int

    def public(self) -> frost.PublicKeyPackage:
        return frost.PublicKeyPackage(self.group_key, {i + 1: y for i, y in enumerate(self.verifying_shares)},
                                      self.threshold)


@dataclass(frozen=True)
class ReshareDealing:
    """From old holder `dealer` (FROST identifier) for the set of `epoch`: the commitment to its
    polynomial and, at index j-1, new holder j's share sealed to that holder's box key."""

    epoch: int
    dealer: int
    commitment: tuple[bytes, ...]
    boxes: tuple[bytes, ...]


def _aad(epoch: int, dealer: int, holder: int) -> bytes:
    return b"trustchain/reshare/v1" + struct.pack(">QII", epoch, dealer, holder)


def deal(key: frost.KeyPackage, epoch: int, recipients: Sequence[sharebox.RecipientPublicKey], threshold: int,
         rand_bytes: RandBytes) -> ReshareDealing:
    """Old holder `key` deals its share to the next set (`recipients` in set order) at `threshold`."""
    assert 1 <= threshold <= len(recipients)
    poly = [key.signing_share, *(group.random_scalar(rand_bytes) for _ in range(threshold - 1))]
    boxes = tuple(
        sharebox.seal(r, frost.polynomial_evaluate(frost.identifier_scalar(j), poly), _aad(epoch, key.identifier, j),
                      rand_bytes)
        for j, r in enumerate(recipients, start=1))
    return ReshareDealing(epoch, key.identifier, frost.vss_commit(poly), boxes)


class ReshareTally:
    """Replicated: the dealings ordered for one new set, until the first `old.threshold` valid ones
    fix the new group."""

    def __init__(self, old: GroupRecord, epoch: int, new_n: int, new_threshold: int) -> None:
        assert epoch > old.epoch and 1 <= new_threshold <= new_n
        self.old, self.epoch, self.new_n, self.new_threshold = old, epoch, new_n, new_threshold
        self.accepted: dict[int, ReshareDealing] = {}

    @property
    def done(self) -> bool:
        return len(self.accepted) >= self.old.threshold

    def offer(self, dealing: ReshareDealing) -> str | None:
        """Take an ordered dealing, or say ("<field>: <reason>") why it does not count."""
        if self.done:
            return "epoch: re-sharing already complete"
        if dealing.epoch != self.epoch:
            return f"epoch: re-sharing is for epoch {self.epoch}"
        if not 1 <= dealing.dealer <= len(self.old.verifying_shares):
            return "dealer: not a holder of the current shares"
        if dealing.dealer in self.accepted:
            return "dealer: already dealt"
        if len(dealing.commitment) != self.new_threshold or len(dealing.boxes) != self.new_n:
            return f"commitment: need {self.new_threshold} coefficients and {self.new_n} boxes"
        try:
            for c in dealing.commitment:
                group.deserialize_element(c)
        except group.GroupError:
            return "commitment: not group elements"
        if dealing.commitment[0] != self.old.verifying_shares[dealing.dealer - 1]:
            return "commitment: constant term is not the dealer's verifying share"
        self.accepted[dealing.dealer] = dealing
        return None

    def quorum(self) -> tuple[int, ...]:
        assert self.done
        return tuple(sorted(self.accepted))

    def new_group(self) -> GroupRecord:
        """The group after re-sharing: same key, the new set's verifying shares and threshold."""
        quorum = self.quorum()
        lams = {i: frost.derive_interpolating_value(list(quorum), i) for i in quorum}
        combined = tuple(
            group.point_sum([group.point_mult(lams[i], group.deserialize_element(self.accepted[i].commitment[k]))
                             for i in quorum])
            for k in range(self.new_threshold))
        assert combined[0] == self.old.group_key, "re-sharing moved the group key"
        shares = tuple(frost.vss_evaluate(j, combined) for j in range(1, self.new_n + 1))
        return GroupRecord(self.epoch, self.old.group_key, shares, self.new_threshold)


def complete(holder: int, box_key: sharebox.RecipientKey, tally: ReshareTally) -> frost.KeyPackage:
    """New holder `holder` (FROST identifier in the new set) opens its boxes from the quorum's
    dealings, checks each against its dealer's commitment and combines them into its new share."""
    assert tally.done
    quorum = tally.quorum()
    total = group.ZERO
    for i in quorum:
        d = tally.accepted[i]
        try:
            share = group.deserialize_scalar(sharebox.open_box(box_key, d.boxes[holder - 1], _aad(d.epoch, i, holder)))
        except (sharebox.ShareboxError, group.GroupError, DecodeError) as exc:
            raise ReshareError(f"dealer {i}: share for holder {holder} does not open") from exc
        if not frost.vss_verify(holder, share, d.commitment):
            raise ReshareError(f"dealer {i}: share for holder {holder} does not match the commitment")
        total = group.scalar_add(total, group.scalar_mul(frost.derive_interpolating_value(list(quorum), i), share))
    new = tally.new_group()
    verifying = group.base_mult(total)
    assert verifying == new.verifying_shares[holder - 1]
    return frost.KeyPackage(holder, total, verifying, new.group_key, new.threshold)
