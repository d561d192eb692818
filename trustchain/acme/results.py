"""What is ordered for an ACME request and the typed result every replica answers it with.

Why a module of its own: the HTTP front end builds requests and reads results without the state
machine, and both the request checks (`app`) and the order book (`orders`) produce results.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.accounts.keys import AccountKey
from trustchain.acme.objects import Authorization, Order
from trustchain.acme.problems import Problem
from trustchain.encoding import decode, encode

__all__ = [
    "KIND_ACCOUNT",
    "KIND_AUTHZ",
    "KIND_CERTIFICATE",
    "KIND_CHALLENGE",
    "KIND_EMPTY",
    "KIND_ORDER",
    "KIND_ORDERS",
    "AccountView",
    "AcmeRequest",
    "AcmeResult",
    "acme_request",
    "decode_result",
    "refuse",
]

KIND_ACCOUNT, KIND_ORDER, KIND_AUTHZ, KIND_CHALLENGE, KIND_ORDERS, KIND_CERTIFICATE, KIND_EMPTY = (
    "account", "order", "authz", "challenge", "orders", "certificate", "empty")


@dataclass(frozen=True)
class AcmeRequest:
    """What is ordered: the HTTP path the client posted to and its JWS exactly as sent."""

    path: str
    jws: bytes


@dataclass(frozen=True)
class AccountView:
    account: bytes
    status: str
    contact: tuple[str, ...]
    key: AccountKey


@dataclass(frozen=True)
class AcmeResult:
    """The answer every honest replica gives: an HTTP status and either a problem or the resource of
    `kind` (its record as of this request). `location` is the resource's path (Location header)."""

    status: int
    kind: str = KIND_EMPTY
    problem: Problem | None = None
    location: str = ""
    account: AccountView | None = None
    order: Order | None = None
    authz: Authorization | None = None
    challenge: str = ""  # the type of the challenge of `authz` this result is about
    orders: tuple[int, ...] = ()
    certificate_der: bytes = b""

    @property
    def ok(self) -> bool:
        return self.problem is None

    @property
    def detail(self) -> str:
        return self.problem.detail if self.problem is not None else ""


def refuse(p: Problem) -> AcmeResult:
    return AcmeResult(p.status, problem=p)


def acme_request(path: str, jws: bytes) -> bytes:
    """The routed payload of an ACME request (the router's envelope is added by the caller)."""
    return encode(AcmeRequest(path, jws))


def decode_result(data: bytes) -> AcmeResult:
    return decode(AcmeResult, data)
