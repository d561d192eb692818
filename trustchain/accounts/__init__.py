"""Accounts: the identities that sign every write, and the replicated registry of their keys."""

from trustchain.accounts.keys import (
    ED25519,
    ES256,
    AccountKey,
    AccountKeyError,
    AccountSigner,
    Ed25519AccountSigner,
    P256AccountSigner,
    account_id,
)
from trustchain.accounts.registry import (
    ACCOUNTS,
    AccountCommand,
    AccountLimits,
    AccountRegistry,
    AccountResult,
    Authenticated,
    Deactivate,
    Register,
    RolloverKey,
    rollover_proof_input,
)
from trustchain.accounts.writes import MAX_VALIDITY_US, NONCE_SIZE, SignedWrite, sign_registration, sign_write

__all__ = [
    "ACCOUNTS",
    "ED25519",
    "ES256",
    "MAX_VALIDITY_US",
    "NONCE_SIZE",
    "AccountCommand",
    "AccountKey",
    "AccountKeyError",
    "AccountLimits",
    "AccountRegistry",
    "AccountResult",
    "AccountSigner",
    "Authenticated",
    "Deactivate",
    "Ed25519AccountSigner",
    "P256AccountSigner",
    "Register",
    "RolloverKey",
    "SignedWrite",
    "account_id",
    "rollover_proof_input",
    "sign_registration",
    "sign_write",
]
