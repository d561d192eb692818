"""Ed25519 prime-order group arithmetic for FROST and the DKG.

Thin, checked wrappers over libsodium (PyNaCl low-level bindings) so that protocol code never
handles raw integers for secrets and never accepts a non-canonical or small-order encoding. Scalars
are 32-byte little-endian canonical encodings (< L); elements are 32-byte compressed points.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

import nacl.bindings as sodium
import nacl.exceptions

from trustchain.errors import TrustChainError

Scalar: TypeAlias = bytes
Element: TypeAlias = bytes

RandBytes: TypeAlias = Callable[[int], bytes]
"""The one randomness protocol of trustchain.ca: ``rand_bytes(n)`` returns ``n`` random bytes.

Production passes ``os.urandom`` (or ``secrets.token_bytes``); tests and the simulator pass
``random.Random(seed).randbytes`` so that runs replay byte for byte."""

ORDER = 2**252 + 27742317777372353535851937790883648493
SCALAR_SIZE = 32
ELEMENT_SIZE = 32
IDENTITY: Element = (1).to_bytes(32, "little")
ZERO: Scalar = bytes(32)
ONE: Scalar = (1).to_bytes(32, "little")


class GroupError(TrustChainError, ValueError):
    """An encoding from the wire is not a valid scalar or prime-order element."""


def scalar_from_int(n: int) -> Scalar:
    return (n % ORDER).to_bytes(SCALAR_SIZE, "little")


def scalar_to_int(s: Scalar) -> int:
    return int.from_bytes(s, "little")


def deserialize_scalar(data: bytes) -> Scalar:
    """RFC 9591 DeserializeScalar: reject non-canonical encodings so a share has one representation."""
    if len(data) != SCALAR_SIZE or int.from_bytes(data, "little") >= ORDER:
        raise GroupError("invalid scalar encoding")
    return bytes(data)


def deserialize_element(data: bytes) -> Element:
    """RFC 9591 DeserializeElement: canonical, on the curve, in the prime-order subgroup, not identity."""
    if len(data) != ELEMENT_SIZE or not sodium.crypto_core_ed25519_is_valid_point(bytes(data)):
        raise GroupError("invalid group element encoding")
    return bytes(data)


def is_zero(s: Scalar) -> bool:
    return s == ZERO


def reduce_wide(digest: bytes) -> Scalar:
    """Map a 64-byte hash output to a scalar (little-endian mod L), as RFC 8032 and RFC 9591 do."""
    assert len(digest) == 64
    return bytes(sodium.crypto_core_ed25519_scalar_reduce(digest))


def scalar_add(a: Scalar, b: Scalar) -> Scalar:
    return bytes(sodium.crypto_core_ed25519_scalar_add(a, b))


def scalar_sub(a: Scalar, b: Scalar) -> Scalar:
    return bytes(sodium.crypto_core_ed25519_scalar_sub(a, b))


def scalar_mul(a: Scalar, b: Scalar) -> Scalar:
    return bytes(sodium.crypto_core_ed25519_scalar_mul(a, b))


def scalar_neg(a: Scalar) -> Scalar:
    return bytes(sodium.crypto_core_ed25519_scalar_negate(a))


def scalar_inv(a: Scalar) -> Scalar:
    if is_zero(a):
        raise ZeroDivisionError("inverse of zero scalar")
    return bytes(sodium.crypto_core_ed25519_scalar_invert(a))


def random_scalar(rand_bytes: RandBytes) -> Scalar:
    """Uniform non-zero scalar: 64 random bytes reduced mod L (bias < 2^-250)."""
    while True:
        raw = rand_bytes(64)
        assert len(raw) == 64, "rand_bytes returned the wrong length"
        s = reduce_wide(raw)
        if not is_zero(s):
            return s


def base_mult(s: Scalar) -> Element:
    """s*B; libsodium refuses to return the identity, which only happens for s == 0."""
    if is_zero(s):
        return IDENTITY
    return bytes(sodium.crypto_scalarmult_ed25519_base_noclamp(s))


def point_mult(s: Scalar, p: Element) -> Element:
    if is_zero(s) or p == IDENTITY:
        return IDENTITY
    try:
        return bytes(sodium.crypto_scalarmult_ed25519_noclamp(s, p))
    except nacl.exceptions.RuntimeError as exc:  # only small-order/invalid points get here
        raise GroupError("scalar multiplication of an invalid point") from exc


def point_add(p: Element, q: Element) -> Element:
    return bytes(sodium.crypto_core_ed25519_add(p, q))


def point_sum(points: list[Element]) -> Element:
    """n-1 additions (not n: starting from the identity would cost one more)."""
    if not points:
        return IDENTITY
    acc = points[0]
    for p in points[1:]:
        acc = point_add(acc, p)
    return acc
