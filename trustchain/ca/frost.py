"""FROST(Ed25519, SHA-512), RFC 9591, so that a t-of-n validator quorum produces plain Ed25519 signatures.

Function names follow the RFC so that review against the specification is line by line. Sans-I/O:
randomness arrives as bytes or via a ``rand_bytes(n)`` callable (see ``group.RandBytes``).

Nonce discipline is the caller's job: a ``SigningNonces`` value must be used for exactly one
``sign`` call and then destroyed; reusing it across two messages reveals the signing share.

Cost. What one signature needs is 2t base-point multiplications (the nonce commitments), the group
commitment (t variable-base multiplications) and one final verification. ``SigningContext`` computes the
per-(message, commitment list) values once, so a party that signs and aggregates (or a quorum in one
process, ``sign_with_quorum``) does not repeat them; a commitment's elements are checked once where they
are used (libsodium's variable-base multiplication itself rejects points outside the prime-order
subgroup, so only the hiding commitments need a separate check); and the aggregate is verified first,
individual shares only when it fails, to name the culprit. libsodium offers no multi-scalar
multiplication beyond the double-base one inside Ed25519 verification, which the final check uses.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

import nacl.bindings as sodium
import nacl.exceptions

from trustchain.ca import group
from trustchain.ca.group import Element, RandBytes, Scalar
from trustchain.errors import TrustChainError

CONTEXT_STRING = b"FROST-ED25519-SHA512-v1"


class FrostError(TrustChainError, ValueError):
    """Protocol failure; ``culprits`` names the identifiers whose input was provably bad."""

    def __init__(self, message: str, culprits: Iterable[int] = ()) -> None:
        self.culprits: tuple[int, ...] = tuple(sorted(set(culprits)))
        super().__init__(f"{message} (culprits: {list(self.culprits)})" if self.culprits else message)


@dataclass(frozen=True)
class SigningNonces:
    """Secret round-one state of one signer for one signing session. ``commitment`` is the
    (hiding, binding) pair published for these nonces, kept so that ``sign`` can recognise its own
    commitment without recomputing two base-point multiplications (empty: recomputed)."""

    hiding: Scalar
    binding: Scalar
    commitment: tuple[Element, Element] | tuple[()] = ()


@dataclass(frozen=True)
class SigningCommitment:
    """Public round-one output; may be published before the message is known."""

    identifier: int
    hiding: Element
    binding: Element


@dataclass(frozen=True)
class SignatureShare:
    identifier: int
    share: Scalar


@dataclass(frozen=True)
class KeyPackage:
    """What one signer holds after keygen: its secret share plus the public data to check others."""

    identifier: int
    signing_share: Scalar
    verifying_share: Element
    group_public_key: Element
    min_signers: int


@dataclass(frozen=True)
class PublicKeyPackage:
    """Public output of keygen: what coordinators and verifiers need, safe to replicate."""

    group_public_key: Element
    verifying_shares: Mapping[int, Element]
    min_signers: int


@dataclass(frozen=True)
class DealerOutput:
    key_packages: Mapping[int, KeyPackage]
    public: PublicKeyPackage
    vss_commitment: tuple[Element, ...]


# --- Hash functions (RFC 9591 section 6.5) ---------------------------------------------------------


def _sha512(*parts: bytes) -> bytes:
    h = hashlib.sha512()
    for p in parts:
        h.update(p)
    return h.digest()


def H1(m: bytes) -> Scalar:
    return group.reduce_wide(_sha512(CONTEXT_STRING, b"rho", m))


def H2(m: bytes) -> Scalar:
    """No context string: the challenge must equal RFC 8032's so that plain Ed25519 verifies."""
    return group.reduce_wide(_sha512(m))


def H3(m: bytes) -> Scalar:
    return group.reduce_wide(_sha512(CONTEXT_STRING, b"nonce", m))


def H4(m: bytes) -> bytes:
    return _sha512(CONTEXT_STRING, b"msg", m)


def H5(m: bytes) -> bytes:
    return _sha512(CONTEXT_STRING, b"com", m)


# --- Helpers (RFC 9591 section 4) ---------------------------------------------------------------


def identifier_scalar(identifier: int) -> Scalar:
    if not 1 <= identifier < group.ORDER:
        raise FrostError(f"identifier {identifier} out of range")
    return group.scalar_from_int(identifier)


def nonce_generate(secret: Scalar, random_bytes: bytes) -> Scalar:
    """Hedged nonce: a bad RNG alone does not leak the share, because the share is hashed in."""
    if len(random_bytes) != 32:
        raise FrostError("nonce randomness must be 32 bytes")
    return H3(random_bytes + secret)


def derive_interpolating_value(participants: Sequence[int], identifier: int) -> Scalar:
    return _interpolating_value(tuple(participants), identifier)


@functools.lru_cache(maxsize=1024)
def _interpolating_value(participants: tuple[int, ...], identifier: int) -> Scalar:
    """Cached: a quorum signs many messages, and the value depends on the quorum only."""
    if identifier not in participants:
        raise FrostError(f"identifier {identifier} not among participants")
    if len(set(participants)) != len(participants):
        raise FrostError("duplicate identifiers among participants")
    num = group.ONE
    den = group.ONE
    x_i = identifier_scalar(identifier)
    for x in participants:
        if x == identifier:
            continue
        x_j = identifier_scalar(x)
        num = group.scalar_mul(num, x_j)
        den = group.scalar_mul(den, group.scalar_sub(x_j, x_i))
    return group.scalar_mul(num, group.scalar_inv(den))


def encode_group_commitment_list(commitments: Sequence[SigningCommitment]) -> bytes:
    return b"".join(identifier_scalar(c.identifier) + c.hiding + c.binding for c in commitments)


def participants_from_commitment_list(commitments: Sequence[SigningCommitment]) -> list[int]:
    return [c.identifier for c in commitments]


def validate_commitment_list(
    commitments: Sequence[SigningCommitment], checked: Collection[int] = (), hiding_only: bool = False
) -> None:
    """Sorted, unique, and every element a valid prime-order point; a bad entry is attributed.

    ``checked``: identifiers whose elements the caller produced or already checked (skipped).
    ``hiding_only``: leave the binding elements to ``compute_group_commitment``, whose multiplication
    checks them anyway."""
    if not commitments:
        raise FrostError("empty commitment list")
    ids = participants_from_commitment_list(commitments)
    if ids != sorted(set(ids)):
        raise FrostError("commitment list must be sorted by identifier without duplicates")
    bad = []
    for c in commitments:
        identifier_scalar(c.identifier)
        if c.identifier in checked:
            continue
        try:
            group.deserialize_element(c.hiding)
            if not hiding_only:
                group.deserialize_element(c.binding)
        except group.GroupError:
            bad.append(c.identifier)
    if bad:
        raise FrostError("invalid commitment element", bad)


@dataclass(frozen=True)
class SigningContext:
    """What every signer and the aggregator derive alike from (group key, commitment list, message):
    computed once per party and signature, then shared by its ``sign`` and ``aggregate`` calls."""

    group_public_key: Element
    commitments: tuple[SigningCommitment, ...]
    msg: bytes
    binding_factors: Mapping[int, Scalar]
    group_commitment: Element
    challenge: Scalar

    @property
    def participants(self) -> list[int]:
        return participants_from_commitment_list(self.commitments)


def signing_context(
    group_public_key: Element,
    commitments: Sequence[SigningCommitment],
    msg: bytes,
    checked: Collection[int] = (),
) -> SigningContext:
    """Validate the list (skipping ``checked`` identifiers) and compute binding factors, group
    commitment and challenge. Raises ``FrostError`` naming any signer whose commitment is invalid."""
    validate_commitment_list(commitments, checked, hiding_only=True)
    binding_factors = compute_binding_factors(group_public_key, commitments, msg)
    group_commitment = compute_group_commitment(commitments, binding_factors)
    challenge = compute_challenge(group_commitment, group_public_key, msg)
    return SigningContext(group_public_key, tuple(commitments), msg, binding_factors, group_commitment, challenge)


def binding_factor_inputs(
    group_public_key: Element, commitments: Sequence[SigningCommitment], msg: bytes
) -> dict[int, bytes]:
    prefix = group_public_key + H4(msg) + H5(encode_group_commitment_list(commitments))
    return {c.identifier: prefix + identifier_scalar(c.identifier) for c in commitments}


def compute_binding_factors(
    group_public_key: Element, commitments: Sequence[SigningCommitment], msg: bytes
) -> dict[int, Scalar]:
    inputs = binding_factor_inputs(group_public_key, commitments, msg)
    return {i: H1(rho_input) for i, rho_input in inputs.items()}


def compute_group_commitment(
    commitments: Sequence[SigningCommitment], binding_factors: Mapping[int, Scalar]
) -> Element:
    """sum(D_i + rho_i * E_i). The multiplication rejects an E_i outside the prime-order subgroup and
    names its signer; D_i must have been checked by the caller (``validate_commitment_list``)."""
    terms: list[Element] = []
    for c in commitments:
        terms.append(c.hiding)
        rho = binding_factors[c.identifier]
        try:
            if group.is_zero(rho):
                group.deserialize_element(c.binding)
            terms.append(group.point_mult(rho, c.binding))
        except group.GroupError as exc:
            raise FrostError("invalid commitment element", [c.identifier]) from exc
    r = group.point_sum(terms)
    if r == group.IDENTITY:
        raise FrostError("group commitment is the identity")
    return r


def compute_challenge(group_commitment: Element, group_public_key: Element, msg: bytes) -> Scalar:
    return H2(group_commitment + group_public_key + msg)


# --- Round one and two (RFC 9591 section 5) -------------------------------------------------------


def commit_with_randomness(
    identifier: int, signing_share: Scalar, hiding_randomness: bytes, binding_randomness: bytes
) -> tuple[SigningNonces, SigningCommitment]:
    """``commit`` with the 2x32 random bytes supplied explicitly (test vectors, replayable simulation)."""
    hiding = nonce_generate(signing_share, hiding_randomness)
    binding = nonce_generate(signing_share, binding_randomness)
    hiding_c, binding_c = group.base_mult(hiding), group.base_mult(binding)
    return SigningNonces(hiding, binding, (hiding_c, binding_c)), SigningCommitment(identifier, hiding_c, binding_c)


def commit(
    identifier: int, signing_share: Scalar, rand_bytes: RandBytes
) -> tuple[SigningNonces, SigningCommitment]:
    return commit_with_randomness(identifier, signing_share, rand_bytes(32), rand_bytes(32))


def _own_commitment(nonces: SigningNonces) -> tuple[Element, Element]:
    if nonces.commitment:
        return nonces.commitment
    return group.base_mult(nonces.hiding), group.base_mult(nonces.binding)


def sign(
    key: KeyPackage, nonces: SigningNonces, msg: bytes, commitments: Sequence[SigningCommitment]
) -> SignatureShare:
    """RFC ``sign``; ``sign_with_context`` is the same with the per-signature values precomputed."""
    own = [c for c in commitments if c.identifier == key.identifier]
    checked = (key.identifier,) if len(own) == 1 and (own[0].hiding, own[0].binding) == _own_commitment(nonces) else ()
    return sign_with_context(key, nonces, signing_context(key.group_public_key, commitments, msg, checked))


def sign_with_context(key: KeyPackage, nonces: SigningNonces, ctx: SigningContext) -> SignatureShare:
    own = [c for c in ctx.commitments if c.identifier == key.identifier]
    if len(own) != 1:
        raise FrostError(f"signer {key.identifier} is not in the commitment list")
    # A coordinator that swaps our commitment would otherwise get a share over nonces we never used.
    if (own[0].hiding, own[0].binding) != _own_commitment(nonces):
        raise FrostError("commitment list does not contain this signer's commitment")
    if len(ctx.commitments) < key.min_signers:
        raise FrostError(f"need at least {key.min_signers} signers, got {len(ctx.commitments)}")
    if ctx.group_public_key != key.group_public_key:
        raise FrostError("signing context is for another group key")
    lambda_i = derive_interpolating_value(ctx.participants, key.identifier)
    z = group.scalar_add(
        group.scalar_add(nonces.hiding, group.scalar_mul(nonces.binding, ctx.binding_factors[key.identifier])),
        group.scalar_mul(group.scalar_mul(lambda_i, key.signing_share), ctx.challenge),
    )
    return SignatureShare(key.identifier, z)


def aggregate(
    commitments: Sequence[SigningCommitment],
    msg: bytes,
    group_public_key: Element,
    sig_shares: Sequence[SignatureShare],
) -> bytes:
    """RFC ``aggregate``: no share checks; use ``aggregate_verified`` to attribute failures."""
    return _aggregate(signing_context(group_public_key, commitments, msg), sig_shares)


def _aggregate(ctx: SigningContext, sig_shares: Sequence[SignatureShare]) -> bytes:
    if sorted(s.identifier for s in sig_shares) != ctx.participants:
        raise FrostError("signature shares do not match the commitment list")
    group_commitment = ctx.group_commitment
    z = group.ZERO
    for s in sig_shares:
        try:
            z = group.scalar_add(z, group.deserialize_scalar(s.share))
        except group.GroupError as exc:
            raise FrostError("malformed signature share", [s.identifier]) from exc
    return group_commitment + z


def verify_signature_share(
    identifier: int,
    verifying_share: Element,
    sig_share: Scalar,
    commitments: Sequence[SigningCommitment],
    group_public_key: Element,
    msg: bytes,
) -> bool:
    """RFC ``verify_signature_share``; the signer's commitment is looked up in ``commitments``."""
    return _verify_share(identifier, verifying_share, sig_share, signing_context(group_public_key, commitments, msg))


def _verify_share(identifier: int, verifying_share: Element, sig_share: Scalar, ctx: SigningContext) -> bool:
    own = [c for c in ctx.commitments if c.identifier == identifier]
    if len(own) != 1:
        return False
    try:
        z = group.deserialize_scalar(sig_share)
        group.deserialize_element(verifying_share)
    except group.GroupError:
        return False
    comm_share = group.point_add(own[0].hiding, group.point_mult(ctx.binding_factors[identifier], own[0].binding))
    lambda_i = derive_interpolating_value(ctx.participants, identifier)
    lhs = group.base_mult(z)
    rhs = group.point_add(comm_share, group.point_mult(group.scalar_mul(ctx.challenge, lambda_i), verifying_share))
    return lhs == rhs


def identify_cheaters(
    commitments: Sequence[SigningCommitment],
    msg: bytes,
    public: PublicKeyPackage,
    sig_shares: Sequence[SignatureShare],
) -> list[int]:
    """Identifiers whose share fails verification, so the coordinator can exclude them and retry."""
    return _identify_cheaters(signing_context(public.group_public_key, commitments, msg), public, sig_shares)


def _identify_cheaters(
    ctx: SigningContext, public: PublicKeyPackage, sig_shares: Sequence[SignatureShare]
) -> list[int]:
    bad = []
    for s in sorted(sig_shares, key=lambda s: s.identifier):
        vs = public.verifying_shares.get(s.identifier)
        if vs is None or not _verify_share(s.identifier, vs, s.share, ctx):
            bad.append(s.identifier)
    return bad


def aggregate_verified(
    commitments: Sequence[SigningCommitment],
    msg: bytes,
    public: PublicKeyPackage,
    sig_shares: Sequence[SignatureShare],
) -> bytes:
    """Aggregate, and if the result does not verify, raise ``FrostError`` naming the bad signers.

    Checking the final signature first keeps the honest path to one verification instead of t."""
    if len(commitments) < public.min_signers:
        raise FrostError(f"need at least {public.min_signers} signers, got {len(commitments)}")
    return aggregate_with_context(signing_context(public.group_public_key, commitments, msg), public, sig_shares)


def aggregate_with_context(
    ctx: SigningContext, public: PublicKeyPackage, sig_shares: Sequence[SignatureShare]
) -> bytes:
    """``aggregate_verified`` reusing a context the aggregator already computed (as one of the signers)."""
    if len(ctx.commitments) < public.min_signers:
        raise FrostError(f"need at least {public.min_signers} signers, got {len(ctx.commitments)}")
    if ctx.group_public_key != public.group_public_key:
        raise FrostError("signing context is for another group key")
    try:
        sig = _aggregate(ctx, sig_shares)
    except FrostError as exc:
        if exc.culprits:
            raise
        sig = b""
    if sig and verify_signature(public.group_public_key, ctx.msg, sig):
        return sig
    culprits = _identify_cheaters(ctx, public, sig_shares)
    missing = set(ctx.participants) - {s.identifier for s in sig_shares}
    raise FrostError("aggregate signature invalid", [*culprits, *missing])


def verify_signature(group_public_key: Element, msg: bytes, signature: bytes) -> bool:
    """Plain RFC 8032 Ed25519 verification: FROST output is indistinguishable from single-signer."""
    if len(group_public_key) != 32 or len(signature) != 64:
        return False
    try:
        sodium.crypto_sign_open(signature + msg, group_public_key)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


# --- Trusted-dealer key generation (RFC 9591 appendix C) -----------------------------------------


def polynomial_evaluate(x: Scalar, coefficients: Sequence[Scalar]) -> Scalar:
    value = group.ZERO
    for coeff in reversed(coefficients):
        value = group.scalar_add(group.scalar_mul(value, x), coeff)
    return value


def secret_share_shard(
    secret: Scalar, coefficients: Sequence[Scalar], max_participants: int
) -> dict[int, Scalar]:
    """Shamir shares f(1..n); ``coefficients`` excludes the constant term, which is ``secret``."""
    poly = [secret, *coefficients]
    return {i: polynomial_evaluate(group.scalar_from_int(i), poly) for i in range(1, max_participants + 1)}


def vss_commit(coefficients: Sequence[Scalar]) -> tuple[Element, ...]:
    return tuple(group.base_mult(c) for c in coefficients)


def vss_evaluate(identifier: int, vss_commitment: Sequence[Element]) -> Element:
    """sum_k i^k * C_k: the public image f(i)*B computed from commitments only."""
    x = identifier_scalar(identifier)
    power = group.ONE
    terms = []
    for c in vss_commitment:
        terms.append(group.point_mult(power, c))
        power = group.scalar_mul(power, x)
    return group.point_sum(terms)


def vss_verify(identifier: int, share: Scalar, vss_commitment: Sequence[Element]) -> bool:
    return group.base_mult(share) == vss_evaluate(identifier, vss_commitment)


def derive_group_info(
    max_participants: int, min_participants: int, vss_commitment: Sequence[Element]
) -> PublicKeyPackage:
    assert len(vss_commitment) == min_participants
    return PublicKeyPackage(
        group_public_key=vss_commitment[0],
        verifying_shares={i: vss_evaluate(i, vss_commitment) for i in range(1, max_participants + 1)},
        min_signers=min_participants,
    )


def trusted_dealer_keygen_with_coefficients(
    secret: Scalar, coefficients: Sequence[Scalar], max_participants: int
) -> DealerOutput:
    """Deterministic core of ``trusted_dealer_keygen`` (vectors give the polynomial explicitly)."""
    min_participants = len(coefficients) + 1
    if not 2 <= min_participants <= max_participants:
        raise FrostError("need 2 <= min_participants <= max_participants")
    if group.is_zero(secret):
        raise FrostError("group secret must be non-zero")
    shares = secret_share_shard(secret, coefficients, max_participants)
    vss = vss_commit([secret, *coefficients])
    public = derive_group_info(max_participants, min_participants, vss)
    packages = {
        i: KeyPackage(i, s, public.verifying_shares[i], public.group_public_key, min_participants)
        for i, s in shares.items()
    }
    for i, s in shares.items():
        assert vss_verify(i, s, vss)
    return DealerOutput(packages, public, vss)


def trusted_dealer_keygen(
    max_participants: int, min_participants: int, rand_bytes: RandBytes, secret: Scalar | None = None
) -> DealerOutput:
    """Dealer-based setup for tests and bootstrap; production uses ``dkg`` so no one ever sees the key."""
    if secret is None:
        secret = group.random_scalar(rand_bytes)
    coefficients = [group.random_scalar(rand_bytes) for _ in range(min_participants - 1)]
    return trusted_dealer_keygen_with_coefficients(secret, coefficients, max_participants)


def sign_with_quorum(
    keys: Mapping[int, KeyPackage], public: PublicKeyPackage, msg: bytes, rand_bytes: RandBytes
) -> bytes:
    """Both FROST rounds for a quorum whose key packages sit in one process (genesis, operator tools,
    benchmarks); validators run the same rounds over the network through the signing service."""
    nonces: dict[int, SigningNonces] = {}
    commitments = []
    for i in sorted(keys):
        nonces[i], c = commit(i, keys[i].signing_share, rand_bytes)
        commitments.append(c)
    # One process made every commitment, so none needs checking, and one context serves all signers.
    ctx = signing_context(public.group_public_key, commitments, msg, checked=set(keys))
    shares = [sign_with_context(keys[i], nonces[i], ctx) for i in sorted(keys)]
    return aggregate_with_context(ctx, public, shares)
