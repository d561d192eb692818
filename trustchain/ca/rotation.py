"""Key and certificate rotation: leaf renewal, root/intermediate rollover, threshold key re-sharing.

Why each piece:
- Short-lived certificates (24 h default) make revocation mostly moot, but only if holders renew well
  before expiry; ``plan_renewals`` turns "2/3 of the lifetime has passed" into renewal requests.
- Rollover keeps old clients working: the new intermediate is certified by both the old root and the
  new root (same subject and key, two certificates), and the new root is cross-certified by the old
  one, so a path exists to whichever root a client trusts.
- Proactive re-sharing moves the FROST key to a new validator set (or threshold) without changing the
  group public key, so the root and every issued certificate stay valid. Each member of an old quorum
  deals a fresh Shamir sharing of its Lagrange-weighted share ``lambda_i * s_i``; the constant-term
  commitment must equal ``lambda_i * Y_i`` (its public verifying share), so a dealer cannot change the
  key; new holders sum what they receive. Old shares should then be erased.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from cryptography import x509

from trustchain.ca import frost, group
from trustchain.ca import x509 as cax509
from trustchain.ca.group import Element, RandBytes, Scalar
from trustchain.errors import TrustChainError

DEFAULT_RENEWAL_FRACTION = Fraction(2, 3)

# --- renewal --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldCertificate:
    """A certificate a node currently uses (its identity, e.g. a validator's TLS certificate)."""

    holder: str
    serial: int
    names: tuple[str, ...]
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def from_certificate(cls, holder: str, cert: x509.Certificate) -> HeldCertificate:
        return cls(holder, cert.serial_number, tuple(cax509.dns_names(cert)), cert.not_valid_before_utc,
                   cert.not_valid_after_utc)


@dataclass(frozen=True)
class RenewalRequest:
    holder: str
    replaces_serial: int
    names: tuple[str, ...]
    due_at: dt.datetime
    urgent: bool  # already expired: the holder has no valid certificate


def renewal_time(
    not_before: dt.datetime, not_after: dt.datetime, fraction: Fraction = DEFAULT_RENEWAL_FRACTION
) -> dt.datetime:
    """When a certificate should be renewed: ``fraction`` of the way through its validity."""
    assert 0 < fraction < 1
    lifetime = not_after - not_before
    return not_before + dt.timedelta(microseconds=int(lifetime / dt.timedelta(microseconds=1) * fraction))


def plan_renewals(
    held: Iterable[HeldCertificate], now: dt.datetime, fraction: Fraction = DEFAULT_RENEWAL_FRACTION
) -> list[RenewalRequest]:
    """Renewal requests for every certificate past its renewal time, most urgent first, at most one per
    holder (its newest certificate decides: a holder that already renewed asks for nothing)."""
    newest: dict[str, HeldCertificate] = {}
    for h in held:
        cur = newest.get(h.holder)
        if cur is None or (h.not_after, h.serial) > (cur.not_after, cur.serial):
            newest[h.holder] = h
    out = []
    for holder in sorted(newest):
        h = newest[holder]
        due = renewal_time(h.not_before, h.not_after, fraction)
        if now >= due:
            out.append(RenewalRequest(holder, h.serial, h.names, due, now > h.not_after))
    return sorted(out, key=lambda r: (not r.urgent, r.due_at, r.holder))


# --- rollover -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RolloverTBS:
    """Everything a rollover needs signed: by the new root key (``new_root``, ``new_intermediate``)
    and by the old root key (``cross_root``, ``cross_intermediate``)."""

    new_root: bytes
    cross_root: bytes
    new_intermediate: bytes
    cross_intermediate: bytes


def rollover_tbs(
    old_root: cax509.IssuerProfile,
    new_root: cax509.IssuerProfile,
    new_intermediate_name: x509.Name,
    new_intermediate_key: bytes,
    at: dt.datetime,
    sequence: int,
) -> RolloverTBS:
    """TBS bytes for a combined root and intermediate rollover (each new key is a new FROST group)."""
    return RolloverTBS(
        new_root=cax509.root_tbs(new_root.name, new_root.public_key, at, sequence),
        cross_root=cax509.intermediate_tbs(
            new_root.name, new_root.public_key, old_root, at, sequence + 1, path_length=None
        ),
        new_intermediate=cax509.intermediate_tbs(
            new_intermediate_name, new_intermediate_key, new_root, at, sequence + 2
        ),
        cross_intermediate=cax509.intermediate_tbs(
            new_intermediate_name, new_intermediate_key, old_root, at, sequence + 3
        ),
    )


# --- proactive re-sharing -------------------------------------------------------------------------


class ReshareError(TrustChainError, ValueError):
    def __init__(self, message: str, culprits: Iterable[int] = ()) -> None:
        self.culprits = tuple(sorted(set(culprits)))
        super().__init__(f"{message} (culprits: {list(self.culprits)})" if self.culprits else message)


@dataclass(frozen=True)
class ReshareDealing:
    """From one old holder: a Feldman commitment (broadcast) and one share per new holder (each sent
    encrypted to its recipient, e.g. with ``sharebox.seal``)."""

    dealer: int
    commitment: tuple[Element, ...]
    shares: Mapping[int, Scalar]


def reshare_deal(
    key: frost.KeyPackage,
    old_quorum: Sequence[int],
    new_ids: Sequence[int],
    new_threshold: int,
    rand_bytes: RandBytes,
) -> ReshareDealing:
    if key.identifier not in old_quorum or len(old_quorum) < key.min_signers:
        raise ReshareError("dealer must belong to an old quorum of at least the old threshold")
    if not 2 <= new_threshold <= len(new_ids) or len(set(new_ids)) != len(new_ids):
        raise ReshareError("need 2 <= new threshold <= number of distinct new holders")
    weighted = group.scalar_mul(frost.derive_interpolating_value(sorted(old_quorum), key.identifier), key.signing_share)
    coefficients = [group.random_scalar(rand_bytes) for _ in range(new_threshold - 1)]
    poly = [weighted, *coefficients]
    shares = {j: frost.polynomial_evaluate(frost.identifier_scalar(j), poly) for j in sorted(new_ids)}
    return ReshareDealing(key.identifier, frost.vss_commit(poly), shares)


def verify_dealing(
    dealing: ReshareDealing, old_public: frost.PublicKeyPackage, old_quorum: Sequence[int], new_threshold: int
) -> str | None:
    """None if the broadcast part is sound: right degree and constant term ``lambda_i * Y_i``."""
    if len(dealing.commitment) != new_threshold:
        return f"commitment has {len(dealing.commitment)} coefficients, expected {new_threshold}"
    vs = old_public.verifying_shares.get(dealing.dealer)
    if vs is None or dealing.dealer not in old_quorum:
        return "dealer is not in the old quorum"
    lam = frost.derive_interpolating_value(sorted(old_quorum), dealing.dealer)
    if dealing.commitment[0] != group.point_mult(lam, vs):
        return "dealing does not re-share the dealer's own key share"
    return None


def reshare_complete(
    new_id: int,
    dealings: Mapping[int, ReshareDealing],
    old_public: frost.PublicKeyPackage,
    old_quorum: Sequence[int],
    new_ids: Sequence[int],
    new_threshold: int,
) -> tuple[frost.KeyPackage, frost.PublicKeyPackage]:
    """New holder ``new_id`` checks every dealing and sums its shares. The group key is unchanged."""
    quorum = sorted(old_quorum)
    bad = []
    missing = [i for i in quorum if i not in dealings]
    if missing:
        raise ReshareError("missing dealings", missing)
    total = group.ZERO
    for i in quorum:
        d = dealings[i]
        share = d.shares.get(new_id)
        if (
            d.dealer != i
            or verify_dealing(d, old_public, quorum, new_threshold) is not None
            or share is None
            or not frost.vss_verify(new_id, share, d.commitment)
        ):
            bad.append(i)
            continue
        total = group.scalar_add(total, share)
    if bad:
        raise ReshareError("invalid dealings", bad)
    summed = tuple(group.point_sum([dealings[i].commitment[k] for i in quorum]) for k in range(new_threshold))
    assert summed[0] == old_public.group_public_key, "re-sharing changed the group key"
    public = frost.PublicKeyPackage(
        group_public_key=summed[0],
        verifying_shares={j: frost.vss_evaluate(j, summed) for j in sorted(new_ids)},
        min_signers=new_threshold,
    )
    verifying = group.base_mult(total)
    assert verifying == public.verifying_shares[new_id]
    return frost.KeyPackage(new_id, total, verifying, summed[0], new_threshold), public
