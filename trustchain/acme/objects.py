"""ACME's resources as replicated records, and their state transitions as tables (RFC 8555 section 7.1.6).

Records are frozen: a change replaces the record, so the state is a plain mapping of values that
snapshots and compares byte for byte on every replica. A status changes only through `transition`,
which refuses any (status, event) pair the table does not list.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.acme.problems import Problem
from trustchain.errors import TrustChainError

__all__ = [
    "AUTHZ_TRANSITIONS",
    "CHALLENGE_TRANSITIONS",
    "DEACTIVATED",
    "DNS01",
    "EXPIRED",
    "HTTP01",
    "INVALID",
    "ORDER_TRANSITIONS",
    "PENDING",
    "PROCESSING",
    "READY",
    "REVOKED",
    "VALID",
    "AcmeLimits",
    "Authorization",
    "Challenge",
    "IllegalTransition",
    "Order",
    "can",
    "transition",
]

PENDING, READY, PROCESSING, VALID, INVALID = "pending", "ready", "processing", "valid", "invalid"
DEACTIVATED, EXPIRED, REVOKED = "deactivated", "expired", "revoked"
DNS01, HTTP01 = "dns-01", "http-01"

#: (status, event) -> next status
ORDER_TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, "authorized"): READY,  # every authorization is valid
    (PENDING, "authorization_failed"): INVALID,
    (PENDING, "expired"): INVALID,
    (READY, "finalize"): PROCESSING,
    (READY, "expired"): INVALID,
    (PROCESSING, "issued"): VALID,
    (PROCESSING, "issuance_failed"): INVALID,
}
AUTHZ_TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, "validated"): VALID,
    (PENDING, "failed"): INVALID,
    (PENDING, "deactivate"): DEACTIVATED,
    (PENDING, "expired"): EXPIRED,
    (VALID, "deactivate"): DEACTIVATED,
    (VALID, "expired"): EXPIRED,
}
CHALLENGE_TRANSITIONS: dict[tuple[str, str], str] = {
    (PENDING, "respond"): PROCESSING,
    (PROCESSING, "validated"): VALID,
    (PROCESSING, "failed"): INVALID,
    (PENDING, "abandoned"): INVALID,  # its authorization failed, expired or was deactivated
    (PROCESSING, "abandoned"): INVALID,
}


class IllegalTransition(TrustChainError, ValueError):
    """A state change the transition table does not allow (a bug: callers check `can` first)."""


def transition(table: dict[tuple[str, str], str], status: str, event: str) -> str:
    nxt = table.get((status, event))
    if nxt is None:
        raise IllegalTransition(f"status: {event!r} is not allowed from {status!r}")
    return nxt


def can(table: dict[tuple[str, str], str], status: str, event: str) -> bool:
    return (status, event) in table


@dataclass(frozen=True)
class AcmeLimits:
    """Replicated bounds on what accounts can make every replica hold."""

    order_lifetime_us: int = 3600 * 1_000_000  # an order and its authorizations must finish within this
    retention_us: int = 3600 * 1_000_000  # finished or expired records stay readable this long
    max_live_orders_per_account: int = 100
    max_live_orders: int = 100_000
    max_identifiers: int = 100
    max_authorizations: int = 500_000  # kept records of every account together
    max_revocation_nonces_per_certificate: int = 16
    # a valid authorization is reused by the account's later orders for this long after it was validated
    # (as Boulder does), while the account holds fewer than the first bound of such reusable
    # authorizations and everyone together fewer than the second; past them a validation is not kept
    # for reuse, which costs the next order a new challenge and nobody a refusal
    authz_reuse_us: int = 30 * 86400 * 1_000_000
    max_reusable_authzs_per_account: int = 1000
    max_reusable_authzs: int = 100_000


@dataclass(frozen=True)
class Challenge:
    type: str
    token: str
    status: str = PENDING
    validated_us: int = 0
    validation_id: int = 0  # the validators' observation (outside names and http-01), once responded
    error: Problem | None = None


@dataclass(frozen=True)
class Authorization:
    """One identifier of one order (`name` without the wildcard label; `wildcard` says it had one)."""

    authz_id: int
    order_id: int
    account: bytes
    name: str
    wildcard: bool
    status: str
    expires_us: int
    challenges: tuple[Challenge, ...]

    def challenge(self, kind: str) -> Challenge | None:
        return next((c for c in self.challenges if c.type == kind), None)


@dataclass(frozen=True)
class Order:
    order_id: int
    account: bytes
    names: tuple[str, ...]  # normalized, a wildcard with its "*." label
    authz_ids: tuple[int, ...]
    status: str
    created_us: int
    expires_us: int
    pending_id: int = 0  # the CA's pending issuance once finalized
    serial: bytes = b""  # the certificate's serial once finalized (issued when `status` is valid)
    error: Problem | None = None
