"""Signed writes: every state-changing request a client makes carries its account's signature.

A node forwards the client's signed bytes unchanged into consensus, and every replica checks the
signature inside the ordered execution, so no node (and no other client of that node) can write in an
account's name. The signature covers the cluster's identity, the target sub-application and the exact
command, a nonce and a deadline in consensus time: a write cannot be replayed on another cluster,
against another sub-application, twice, or after its deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.accounts.keys import AccountKey, AccountSigner, account_id
from trustchain.encoding import encode

__all__ = [
    "MAX_VALIDITY_US",
    "NONCE_SIZE",
    "SignedWrite",
    "sign_registration",
    "sign_write",
    "signing_input",
]

NONCE_SIZE = 16
MAX_VALIDITY_US = 10 * 60 * 1_000_000  # a write's deadline may be at most this far past consensus time


@dataclass(frozen=True)
class SignedWrite:
    """`account` is the account id; a registration instead names no account and carries the new key in
    `key` (it proves possession by signing with it)."""

    account: bytes
    nonce: bytes
    deadline_us: int
    target: str
    payload: bytes
    signature: bytes
    key: AccountKey | None = None


@dataclass(frozen=True)
class _SigningInput:
    domain: str
    cluster: bytes
    account: bytes
    nonce: bytes
    deadline_us: int
    target: str
    payload: bytes
    key: AccountKey | None


def signing_input(cluster: bytes, write: SignedWrite) -> bytes:
    """The exact bytes an account signs (canonical encoding, domain-separated)."""
    return encode(_SigningInput("trustchain/write/v1", cluster, write.account, write.nonce, write.deadline_us,
                                write.target, write.payload, write.key))


def sign_write(signer: AccountSigner, account: bytes, cluster: bytes, target: str, payload: bytes, *,
               nonce: bytes, deadline_us: int) -> SignedWrite:
    """A write by `account` (whose current key `signer` holds). `nonce` comes from the caller's RNG."""
    unsigned = SignedWrite(account, nonce, deadline_us, target, payload, b"")
    return SignedWrite(account, nonce, deadline_us, target, payload,
                       signer.sign(signing_input(cluster, unsigned)))


def sign_registration(signer: AccountSigner, cluster: bytes, target: str, payload: bytes, *,
                      nonce: bytes, deadline_us: int) -> SignedWrite:
    """A write that creates the account of `signer.key` (self-signed: proof of possession)."""
    unsigned = SignedWrite(account_id(signer.key), nonce, deadline_us, target, payload, b"", signer.key)
    return SignedWrite(unsigned.account, nonce, deadline_us, target, payload,
                       signer.sign(signing_input(cluster, unsigned)), signer.key)
