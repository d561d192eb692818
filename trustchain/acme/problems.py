"""ACME problem documents (RFC 8555 section 6.7, RFC 7807): what every refusal is answered with.

Why typed: replicas return a `Problem` inside the ordered result and the HTTP front end renders it as
`application/problem+json` with its status, so a client always gets the ACME error type it can act on
(certbot retries `badNonce`, reports `unauthorized`), never a generic 500.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ACCOUNT_DOES_NOT_EXIST",
    "ALREADY_REVOKED",
    "BAD_CSR",
    "BAD_NONCE",
    "BAD_PUBLIC_KEY",
    "BAD_REVOCATION_REASON",
    "BAD_SIGNATURE_ALGORITHM",
    "CAA",
    "CONFLICT",
    "CONNECTION",
    "INCORRECT_RESPONSE",
    "INVALID_CONTACT",
    "MALFORMED",
    "NOT_FOUND",
    "ORDER_NOT_READY",
    "PREFIX",
    "RATE_LIMITED",
    "REJECTED_IDENTIFIER",
    "SERVER_INTERNAL",
    "UNAUTHORIZED",
    "UNSUPPORTED_CONTACT",
    "UNSUPPORTED_IDENTIFIER",
    "Problem",
    "problem",
]

PREFIX = "urn:ietf:params:acme:error:"
ACCOUNT_DOES_NOT_EXIST = PREFIX + "accountDoesNotExist"
ALREADY_REVOKED = PREFIX + "alreadyRevoked"
BAD_CSR = PREFIX + "badCSR"
BAD_NONCE = PREFIX + "badNonce"
BAD_PUBLIC_KEY = PREFIX + "badPublicKey"
BAD_REVOCATION_REASON = PREFIX + "badRevocationReason"
BAD_SIGNATURE_ALGORITHM = PREFIX + "badSignatureAlgorithm"
CAA = PREFIX + "caa"
CONNECTION = PREFIX + "connection"
INCORRECT_RESPONSE = PREFIX + "incorrectResponse"
INVALID_CONTACT = PREFIX + "invalidContact"
MALFORMED = PREFIX + "malformed"
ORDER_NOT_READY = PREFIX + "orderNotReady"
RATE_LIMITED = PREFIX + "rateLimited"
REJECTED_IDENTIFIER = PREFIX + "rejectedIdentifier"
SERVER_INTERNAL = PREFIX + "serverInternal"
UNAUTHORIZED = PREFIX + "unauthorized"
UNSUPPORTED_CONTACT = PREFIX + "unsupportedContact"
UNSUPPORTED_IDENTIFIER = PREFIX + "unsupportedIdentifier"
# Not ACME error types of their own: a missing resource and a key held by another account are
# `malformed` with 404 and 409, as Boulder and Pebble answer them.
NOT_FOUND = "notFound"
CONFLICT = "conflict"

_STATUS = {
    ACCOUNT_DOES_NOT_EXIST: 400, ALREADY_REVOKED: 400, BAD_CSR: 400, BAD_NONCE: 400, BAD_PUBLIC_KEY: 400,
    BAD_REVOCATION_REASON: 400, BAD_SIGNATURE_ALGORITHM: 400, CAA: 403, CONNECTION: 400,
    INCORRECT_RESPONSE: 403, INVALID_CONTACT: 400, MALFORMED: 400, ORDER_NOT_READY: 403, RATE_LIMITED: 429,
    REJECTED_IDENTIFIER: 400, SERVER_INTERNAL: 500, UNAUTHORIZED: 403, UNSUPPORTED_CONTACT: 400,
    UNSUPPORTED_IDENTIFIER: 400,
}


@dataclass(frozen=True)
class Problem:
    """`type` is an ACME error URN; `detail` names the field first ("<field>: <reason>")."""

    type: str
    detail: str
    status: int


def problem(kind: str, detail: str) -> Problem:
    """The problem of ACME error `kind` (or `NOT_FOUND` / `CONFLICT`, rendered as `malformed`)."""
    if kind == NOT_FOUND:
        return Problem(MALFORMED, detail[:300], 404)
    if kind == CONFLICT:
        return Problem(MALFORMED, detail[:300], 409)
    assert kind in _STATUS, kind
    return Problem(kind, detail[:300], _STATUS[kind])
