"""Pedersen DKG with proofs of knowledge (Komlo-Goldberg, FROST paper, Figure 1).

Why: with a trusted dealer one machine once knew the CA key; the DKG gives every validator a share of
a key that nobody ever held. Output is the same ``KeyPackage``/``PublicKeyPackage`` that ``frost``
signs with. Sans-I/O: each participant calls ``part1`` -> broadcast, ``part2`` -> send each private
share (encrypted, see ``sharebox``), ``part3`` -> keys. Any check that fails raises ``DKGError``
naming the offending participant(s); the caller restarts the DKG without them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from trustchain.ca import frost, group
from trustchain.ca.group import Element, RandBytes, Scalar
from trustchain.errors import TrustChainError


@dataclass(frozen=True)
class Complaint:
    accused: int
    reason: str


class DKGError(TrustChainError, ValueError):
    """The DKG cannot complete; ``complaints`` says who misbehaved and how."""

    def __init__(self, complaints: Iterable[Complaint]) -> None:
        self.complaints: tuple[Complaint, ...] = tuple(sorted(complaints, key=lambda c: c.accused))
        assert self.complaints
        super().__init__("; ".join(f"participant {c.accused}: {c.reason}" for c in self.complaints))

    @property
    def culprits(self) -> tuple[int, ...]:
        return tuple(sorted({c.accused for c in self.complaints}))


@dataclass(frozen=True)
class Round1Package:
    """Broadcast: Feldman commitment to f_i and a Schnorr proof of knowledge of f_i(0)."""

    sender: int
    commitment: tuple[Element, ...]
    proof_r: Element
    proof_mu: Scalar


@dataclass(frozen=True)
class Round2Share:
    """Secret: f_sender(receiver). Must travel encrypted and authenticated to ``receiver`` only."""

    sender: int
    receiver: int
    value: Scalar


@dataclass(frozen=True)
class Round1Secret:
    identifier: int
    max_signers: int
    min_signers: int
    context: bytes
    coefficients: tuple[Scalar, ...]


@dataclass(frozen=True)
class Round2Secret:
    identifier: int
    max_signers: int
    min_signers: int
    own_share: Scalar
    commitments: Mapping[int, tuple[Element, ...]]


def _check_params(identifier: int, max_signers: int, min_signers: int) -> None:
    if not 2 <= min_signers <= max_signers:
        raise ValueError("need 2 <= min_signers <= max_signers")
    if not 1 <= identifier <= max_signers:
        raise ValueError(f"identifier {identifier} outside 1..{max_signers}")


def pok_challenge(identifier: int, context: bytes, public: Element, r: Element) -> Scalar:
    """c = H(i, Phi, g^{a_i0}, R_i): binding i and Phi stops replaying another party's proof."""
    h = hashlib.sha512()
    h.update(frost.CONTEXT_STRING + b"dkg")
    h.update(len(context).to_bytes(8, "big") + context)
    h.update(frost.identifier_scalar(identifier) + public + r)
    return group.reduce_wide(h.digest())


def verify_round1_package(pkg: Round1Package, context: bytes, min_signers: int) -> str | None:
    """None if valid, else the reason; kept separate so observers can audit broadcasts too."""
    if len(pkg.commitment) != min_signers:
        return f"commitment has {len(pkg.commitment)} coefficients, expected {min_signers}"
    try:
        for c in pkg.commitment:
            group.deserialize_element(c)
        r = group.deserialize_element(pkg.proof_r)
        mu = group.deserialize_scalar(pkg.proof_mu)
    except group.GroupError as exc:
        return f"malformed round-1 package: {exc}"
    c = pok_challenge(pkg.sender, context, pkg.commitment[0], r)
    # R ?= g^mu * phi_0^{-c}
    expected = group.point_add(group.base_mult(mu), group.point_mult(group.scalar_neg(c), pkg.commitment[0]))
    if expected != r:
        return "proof of knowledge of the secret coefficient does not verify"
    return None


def verify_share(share: Round2Share, commitment: Sequence[Element]) -> bool:
    """g^{f_l(i)} ?= prod_k phi_lk^{i^k}: lets anyone judge a complaint once a share is revealed."""
    try:
        value = group.deserialize_scalar(share.value)
    except group.GroupError:
        return False
    return frost.vss_verify(share.receiver, value, commitment)


def part1(
    identifier: int, max_signers: int, min_signers: int, context: bytes, rand_bytes: RandBytes
) -> tuple[Round1Secret, Round1Package]:
    _check_params(identifier, max_signers, min_signers)
    coefficients = tuple(group.random_scalar(rand_bytes) for _ in range(min_signers))
    commitment = frost.vss_commit(coefficients)
    k = group.random_scalar(rand_bytes)
    r = group.base_mult(k)
    c = pok_challenge(identifier, context, commitment[0], r)
    mu = group.scalar_add(k, group.scalar_mul(coefficients[0], c))
    secret = Round1Secret(identifier, max_signers, min_signers, context, coefficients)
    return secret, Round1Package(identifier, commitment, r, mu)


def part2(
    secret: Round1Secret, packages: Mapping[int, Round1Package]
) -> tuple[Round2Secret, dict[int, Round2Share]]:
    """Verify everyone else's round-1 broadcast, then compute the private share for each of them.

    ``packages`` holds the other participants' packages (our own is ignored if present)."""
    complaints = []
    others = [i for i in range(1, secret.max_signers + 1) if i != secret.identifier]
    for i in others:
        pkg = packages.get(i)
        if pkg is None:
            complaints.append(Complaint(i, "no round-1 package"))
            continue
        if pkg.sender != i:
            complaints.append(Complaint(i, f"package claims sender {pkg.sender}"))
            continue
        reason = verify_round1_package(pkg, secret.context, secret.min_signers)
        if reason is not None:
            complaints.append(Complaint(i, reason))
    if complaints:
        raise DKGError(complaints)
    outgoing = {
        i: Round2Share(
            secret.identifier, i, frost.polynomial_evaluate(group.scalar_from_int(i), secret.coefficients)
        )
        for i in others
    }
    own = frost.polynomial_evaluate(group.scalar_from_int(secret.identifier), secret.coefficients)
    commitments = {i: packages[i].commitment for i in others}
    commitments[secret.identifier] = frost.vss_commit(secret.coefficients)
    return Round2Secret(secret.identifier, secret.max_signers, secret.min_signers, own, commitments), outgoing


def part3(
    secret: Round2Secret, shares: Mapping[int, Round2Share]
) -> tuple[frost.KeyPackage, frost.PublicKeyPackage]:
    """Check every received share against its sender's commitment; sum them into our signing share.

    ``shares`` maps sender -> the share that sender sent us."""
    complaints = []
    signing_share = secret.own_share
    for i in sorted(secret.commitments):
        if i == secret.identifier:
            continue
        share = shares.get(i)
        if share is None:
            complaints.append(Complaint(i, "no round-2 share"))
        elif share.sender != i or share.receiver != secret.identifier:
            complaints.append(Complaint(i, "share is addressed wrongly"))
        elif not verify_share(share, secret.commitments[i]):
            complaints.append(Complaint(i, "share does not match its polynomial commitment"))
        else:
            signing_share = group.scalar_add(signing_share, share.value)
    if complaints:
        raise DKGError(complaints)
    public = group_public_info(secret.commitments, secret.max_signers, secret.min_signers)
    verifying_share = group.base_mult(signing_share)
    assert verifying_share == public.verifying_shares[secret.identifier]
    key = frost.KeyPackage(
        secret.identifier, signing_share, verifying_share, public.group_public_key, secret.min_signers
    )
    return key, public


def group_public_info(
    commitments: Mapping[int, Sequence[Element]], max_signers: int, min_signers: int
) -> frost.PublicKeyPackage:
    """Public key material from the round-1 broadcasts alone, so non-signers (verifiers) can derive it."""
    summed = tuple(
        group.point_sum([commitments[i][k] for i in sorted(commitments)]) for k in range(min_signers)
    )
    return frost.derive_group_info(max_signers, min_signers, summed)


ShareCarrier = Callable[[int, int, Round2Share], Round2Share]


def run_local(
    n: int,
    t: int,
    context: bytes,
    rand_for: Callable[[int], RandBytes],
    carry: ShareCarrier | None = None,
) -> tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage]:
    """All three DKG parts for participants 1..n in one process (genesis, operator tools, the simulator).
    `rand_for(i)` is participant i's randomness; `carry(sender, receiver, share)` moves each round-2 share
    (e.g. through an encrypted share box) and returns what the receiver got."""
    secrets1: dict[int, Round1Secret] = {}
    packages: dict[int, Round1Package] = {}
    for i in range(1, n + 1):
        secrets1[i], packages[i] = part1(i, n, t, context, rand_for(i))
    secrets2: dict[int, Round2Secret] = {}
    inbox: dict[int, dict[int, Round2Share]] = {i: {} for i in range(1, n + 1)}
    for i in range(1, n + 1):
        secrets2[i], outgoing = part2(secrets1[i], {j: p for j, p in packages.items() if j != i})
        for receiver, share in outgoing.items():
            inbox[receiver][i] = carry(i, receiver, share) if carry is not None else share
    keys: dict[int, frost.KeyPackage] = {}
    publics = []
    for i in range(1, n + 1):
        keys[i], public = part3(secrets2[i], inbox[i])
        publics.append(public)
    assert all(p == publics[0] for p in publics), "DKG participants disagree on the public key package"
    return keys, publics[0]
