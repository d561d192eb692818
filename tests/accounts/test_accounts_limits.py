"""Registration limits: accounts in all and registrations per window of consensus time, at the boundary.

Exactly at a cap succeeds; one more is refused naming the limit; accounts already registered keep
writing; the window survives a snapshot.
"""

from __future__ import annotations

import hashlib

from trustchain.accounts import (
    ACCOUNTS,
    AccountCommand,
    AccountLimits,
    AccountRegistry,
    AccountResult,
    Authenticated,
    Ed25519AccountSigner,
    Register,
    account_id,
    sign_registration,
    sign_write,
)
from trustchain.encoding import encode

CLUSTER = b"cluster-limits"
T0 = 5_000_000_000
HOUR = 3600 * 1_000_000
SIGNERS = [Ed25519AccountSigner(hashlib.sha256(b"user %d" % i).digest()) for i in range(8)]
VALIDATORS = tuple(Ed25519AccountSigner(hashlib.sha256(b"validator %d" % i).digest()).key for i in range(4))


def _register(reg: AccountRegistry, i: int, now: int = T0) -> AccountResult:
    w = sign_registration(SIGNERS[i], CLUSTER, ACCOUNTS, encode(AccountCommand.of(Register())),
                          nonce=hashlib.sha256(b"reg %d %d" % (i, now)).digest()[:16], deadline_us=now + 1_000_000)
    auth = reg.authenticate(w, now)
    assert isinstance(auth, Authenticated), auth
    return reg.execute(w, auth, now)


def _writes(reg: AccountRegistry, i: int, n: int, now: int = T0) -> bool:
    w = sign_write(SIGNERS[i], account_id(SIGNERS[i].key), CLUSTER, "kv", b"x",
                   nonce=hashlib.sha256(b"w %d %d" % (i, n)).digest()[:16], deadline_us=now + 1_000_000)
    return isinstance(reg.authenticate(w, now), Authenticated)


def test_registrations_per_window_exactly_at_the_cap_succeed_and_one_more_is_refused() -> None:
    reg = AccountRegistry(CLUSTER, AccountLimits(registrations_per_window=3, window_us=HOUR), validators=VALIDATORS)
    assert [_register(reg, i, T0 + i).ok for i in range(3)] == [True, True, True]
    refused = _register(reg, 3, T0 + 10)
    assert not refused.ok and refused.detail.startswith("limits.accounts.registrations_per_window: "), refused
    assert not reg.is_active(account_id(SIGNERS[3].key))
    assert _writes(reg, 0, 1, T0 + 10)  # registered accounts are unaffected
    assert _register(reg, 0, T0 + 11).detail == "already registered"  # re-registering is no new account
    assert not _register(reg, 3, T0 + HOUR - 1).ok
    assert _register(reg, 3, T0 + HOUR).ok  # the first registration left the window


def test_max_accounts_counts_client_accounts_only() -> None:
    reg = AccountRegistry(CLUSTER, AccountLimits(max_accounts=2), validators=VALIDATORS)
    assert _register(reg, 0).ok and _register(reg, 1).ok  # exactly at the cap (the 4 validators do not count)
    refused = _register(reg, 2)
    assert not refused.ok and refused.detail.startswith("limits.accounts.max_accounts: "), refused
    assert _writes(reg, 1, 1)


def test_the_registration_window_survives_a_snapshot() -> None:
    limits = AccountLimits(registrations_per_window=2, window_us=HOUR)
    reg = AccountRegistry(CLUSTER, limits, validators=VALIDATORS)
    assert _register(reg, 0).ok and _register(reg, 1).ok
    copy = AccountRegistry(CLUSTER, limits, validators=VALIDATORS)
    copy.restore(reg.snapshot())
    assert copy.snapshot() == reg.snapshot()
    assert _register(copy, 2, T0 + 1).detail.startswith("limits.accounts.registrations_per_window: ")
    assert _register(copy, 2, T0 + HOUR).ok
