"""The account registry: signed writes are accepted exactly once, by the right key, on the right cluster."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from trustchain.accounts import (
    ACCOUNTS,
    AccountCommand,
    AccountKey,
    AccountKeyError,
    AccountLimits,
    AccountRegistry,
    AccountResult,
    Authenticated,
    Deactivate,
    Ed25519AccountSigner,
    P256AccountSigner,
    Register,
    RolloverKey,
    SignedWrite,
    account_id,
    rollover_proof_input,
    sign_registration,
    sign_write,
)
from trustchain.accounts.keys import AccountSigner
from trustchain.encoding import encode

CLUSTER = b"cluster-a"
NOW = 1_000_000_000


def _nonce(i: int) -> bytes:
    return hashlib.sha256(i.to_bytes(8, "big")).digest()[:16]


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def _apply(reg: AccountRegistry, write: SignedWrite, now: int = NOW) -> AccountResult | Authenticated:
    auth = reg.authenticate(write, now)
    if isinstance(auth, AccountResult):
        return auth
    if auth.target == ACCOUNTS:
        return reg.execute(write, auth, now)
    return auth


def _register(reg: AccountRegistry, signer: AccountSigner, i: int = 0) -> bytes:
    payload = _encode(AccountCommand.of(Register("mailto:a@example.test")))
    w = sign_registration(signer, CLUSTER, ACCOUNTS, payload, nonce=_nonce(i), deadline_us=NOW + 1_000_000)
    result = _apply(reg, w)
    assert isinstance(result, AccountResult) and result.ok, result
    return result.account


def _encode(cmd: AccountCommand) -> bytes:
    return encode(cmd)


def _write(signer: AccountSigner, account: bytes, i: int, *, cluster: bytes = CLUSTER, deadline: int = NOW + 1_000_000,
           target: str = "kv", payload: bytes = b"x") -> SignedWrite:
    return sign_write(signer, account, cluster, target, payload, nonce=_nonce(i), deadline_us=deadline)


@pytest.fixture(params=["ed25519", "es256"])
def signer(request: pytest.FixtureRequest) -> AccountSigner:
    if request.param == "ed25519":
        return Ed25519AccountSigner(_seed("alice"))
    return P256AccountSigner(ec.generate_private_key(ec.SECP256R1()))


def test_registered_account_writes_once_per_nonce(signer: AccountSigner) -> None:
    reg = AccountRegistry(CLUSTER)
    acct = _register(reg, signer)
    assert acct == account_id(signer.key)
    first = _apply(reg, _write(signer, acct, 1))
    assert isinstance(first, Authenticated) and first.account == acct and first.payload == b"x"
    replay = _apply(reg, _write(signer, acct, 1))
    assert isinstance(replay, AccountResult) and replay.detail.startswith("nonce:")


def test_writes_are_refused_for_wrong_key_cluster_deadline_or_unknown_account() -> None:
    reg = AccountRegistry(CLUSTER)
    alice = Ed25519AccountSigner(_seed("alice"))
    mallory = Ed25519AccountSigner(_seed("mallory"))
    acct = _register(reg, alice)
    cases = {
        "signature": _write(mallory, acct, 2),  # Mallory signs in Alice's name
        "signature ": _write(alice, acct, 3, cluster=b"cluster-b"),  # replay from another cluster
        "deadline_us": _write(alice, acct, 4, deadline=NOW - 1),
        "deadline_us ": _write(alice, acct, 5, deadline=NOW + 3600 * 1_000_000),
        "account": _write(mallory, account_id(mallory.key), 6),
    }
    for field, write in cases.items():
        result = _apply(reg, write)
        assert isinstance(result, AccountResult) and not result.ok
        assert result.detail.startswith(field.strip() + ":"), (field, result)


def test_a_key_cannot_register_someone_elses_account_or_smuggle_a_write() -> None:
    reg = AccountRegistry(CLUSTER)
    mallory = Ed25519AccountSigner(_seed("mallory"))
    w = sign_registration(mallory, CLUSTER, "kv", b"put", nonce=_nonce(1), deadline_us=NOW + 1)
    result = _apply(reg, w)
    assert isinstance(result, AccountResult) and result.detail.startswith("key:")


def test_rollover_replaces_the_key_and_deactivation_stops_all_writes() -> None:
    reg = AccountRegistry(CLUSTER)
    old = Ed25519AccountSigner(_seed("old"))
    new = Ed25519AccountSigner(_seed("new"))
    acct = _register(reg, old)
    bad = RolloverKey(new.key, old.sign(rollover_proof_input(CLUSTER, acct, old.key)))
    result = _apply(reg, _write(old, acct, 2, target=ACCOUNTS, payload=_encode(AccountCommand.of(bad))))
    assert isinstance(result, AccountResult) and result.detail.startswith("proof:")
    good = RolloverKey(new.key, new.sign(rollover_proof_input(CLUSTER, acct, old.key)))
    result = _apply(reg, _write(old, acct, 3, target=ACCOUNTS, payload=_encode(AccountCommand.of(good))))
    assert isinstance(result, AccountResult) and result.ok
    assert reg.key_of(acct) == new.key
    assert isinstance(_apply(reg, _write(old, acct, 4)), AccountResult)
    assert isinstance(_apply(reg, _write(new, acct, 5)), Authenticated)
    # the old key cannot come back as a fresh account with the same id
    again = sign_registration(old, CLUSTER, ACCOUNTS, _encode(AccountCommand.of(Register())), nonce=_nonce(6),
                              deadline_us=NOW + 1)
    result = _apply(reg, again)
    assert isinstance(result, AccountResult) and result.detail == "already registered"
    assert reg.key_of(acct) == new.key
    result = _apply(reg, _write(new, acct, 7, target=ACCOUNTS, payload=_encode(AccountCommand.of(Deactivate()))))
    assert isinstance(result, AccountResult) and result.ok
    refused = _apply(reg, _write(new, acct, 8))
    assert isinstance(refused, AccountResult) and refused.detail == "account: deactivated"


def test_rollover_to_a_key_of_another_account_is_refused() -> None:
    reg = AccountRegistry(CLUSTER)
    alice, bob = Ed25519AccountSigner(_seed("alice")), Ed25519AccountSigner(_seed("bob"))
    a = _register(reg, alice)
    _register(reg, bob, 1)
    steal = RolloverKey(bob.key, bob.sign(rollover_proof_input(CLUSTER, a, alice.key)))
    result = _apply(reg, _write(alice, a, 2, target=ACCOUNTS, payload=_encode(AccountCommand.of(steal))))
    assert isinstance(result, AccountResult) and result.detail.startswith("new_key:")


def test_state_is_bounded() -> None:
    limits = AccountLimits(max_accounts=3, registrations_per_window=2, window_us=10, max_live_nonces=3)
    reg = AccountRegistry(CLUSTER, limits)
    signers = [Ed25519AccountSigner(_seed(f"s{i}")) for i in range(4)]
    _register(reg, signers[0], 0)
    _register(reg, signers[1], 1)
    w = sign_registration(signers[2], CLUSTER, ACCOUNTS, _encode(AccountCommand.of(Register())), nonce=_nonce(2),
                          deadline_us=NOW + 1)
    result = _apply(reg, w)
    assert isinstance(result, AccountResult) and result.detail.startswith("limits.accounts.registrations_per_window:")
    acct = account_id(signers[0].key)
    outcomes = [_apply(reg, _write(signers[0], acct, 10 + i)) for i in range(3)]
    assert isinstance(outcomes[0], Authenticated) and isinstance(outcomes[1], Authenticated)
    assert isinstance(outcomes[2], AccountResult) and outcomes[2].detail.startswith("rate:")
    # nonces are forgotten once their deadline passes
    later = NOW + 2_000_000
    assert isinstance(_apply(reg, _write(signers[0], acct, 20, deadline=later + 5), now=later), Authenticated)


def test_snapshot_round_trip_keeps_replay_protection() -> None:
    reg = AccountRegistry(CLUSTER)
    alice = Ed25519AccountSigner(_seed("alice"))
    acct = _register(reg, alice)
    assert isinstance(_apply(reg, _write(alice, acct, 1)), Authenticated)
    copy = AccountRegistry(CLUSTER)
    copy.restore(reg.snapshot())
    assert copy.snapshot() == reg.snapshot()
    replay = _apply(copy, _write(alice, acct, 1))
    assert isinstance(replay, AccountResult) and replay.detail.startswith("nonce:")


def test_malformed_keys_and_commands_name_the_field() -> None:
    with pytest.raises(AccountKeyError, match="public"):
        AccountKey("ed25519", b"short")
    with pytest.raises(AccountKeyError, match="algorithm"):
        AccountKey("rsa", b"\x00" * 32)
    with pytest.raises(AccountKeyError, match="P-256"):
        AccountKey("es256", b"\x04" + b"\x01" * 64)
    reg = AccountRegistry(CLUSTER)
    alice = Ed25519AccountSigner(_seed("alice"))
    acct = _register(reg, alice)
    result = _apply(reg, _write(alice, acct, 1, target=ACCOUNTS, payload=b"\xff"))
    assert isinstance(result, AccountResult) and result.detail.startswith("command:")
    result = _apply(reg, _write(alice, acct, 2, target=ACCOUNTS, payload=_encode(AccountCommand("nuke", b""))))
    assert isinstance(result, AccountResult) and result.detail.startswith("op:")


def test_validator_accounts_exist_from_genesis_and_cannot_be_changed_by_commands() -> None:
    validators = [Ed25519AccountSigner(_seed(f"v{i}")) for i in range(4)]
    reg = AccountRegistry(CLUSTER, validators=tuple(v.key for v in validators))
    v2 = account_id(validators[2].key)
    assert reg.validator_index(v2) == 2 and reg.validator_index(b"x" * 32) is None
    assert isinstance(_apply(reg, _write(validators[2], v2, 1)), Authenticated)
    deactivate = _encode(AccountCommand.of(Deactivate()))
    result = _apply(reg, _write(validators[2], v2, 2, target=ACCOUNTS, payload=deactivate))
    assert isinstance(result, AccountResult) and result.detail.startswith("account:")
    copy = AccountRegistry(CLUSTER, validators=tuple(v.key for v in validators))
    copy.restore(reg.snapshot())
    replay = _apply(copy, _write(validators[2], v2, 1))
    assert isinstance(replay, AccountResult) and replay.detail.startswith("nonce:")
