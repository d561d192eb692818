"""The replicated account registry: who may write, with which key, and which writes were already seen.

Deterministic (consensus time only) and bounded: the number of accounts, registrations per window and
remembered nonces per account are capped, so no client can make every replica hold unbounded state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from trustchain.accounts.keys import AccountKey, account_id
from trustchain.accounts.writes import MAX_VALIDITY_US, NONCE_SIZE, SignedWrite, signing_input
from trustchain.encoding import DecodeError, decode, encode

__all__ = [
    "ACCOUNTS",
    "AccountCommand",
    "AccountLimits",
    "AccountRegistry",
    "AccountResult",
    "Authenticated",
    "Deactivate",
    "Register",
    "RolloverKey",
    "rollover_proof_input",
]

ACCOUNTS = "acct"  # the routing target of account commands
OP_REGISTER, OP_ROLLOVER, OP_DEACTIVATE = "register", "rollover", "deactivate"
STATUS_OK, STATUS_ERROR = "ok", "error"
ACTIVE, DEACTIVATED = "active", "deactivated"
SNAPSHOT_VERSION = 1
MAX_CONTACT = 256


@dataclass(frozen=True)
class AccountLimits:
    """Replicated policy (genesis `limits.accounts`). The defaults bound state at about max_accounts x
    max_live_nonces entries; max_accounts and registrations_per_window also bound how many per-account
    quotas one party can collect (`trustchain.app.limits`)."""

    max_accounts: int = 100_000
    registrations_per_window: int = 1_000
    window_us: int = 3600 * 1_000_000
    max_live_nonces: int = 10_000  # writes per account within MAX_VALIDITY_US of each other

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Register:
    contact: str = ""


@dataclass(frozen=True)
class RolloverKey:
    """`proof` is the new key's signature over `rollover_proof_input` (it consents to the account)."""

    new_key: AccountKey
    proof: bytes


@dataclass(frozen=True)
class Deactivate:
    pass


@dataclass(frozen=True)
class AccountCommand:
    op: str
    body: bytes

    @staticmethod
    def of(command: Register | RolloverKey | Deactivate) -> AccountCommand:
        op = {Register: OP_REGISTER, RolloverKey: OP_ROLLOVER, Deactivate: OP_DEACTIVATE}[type(command)]
        return AccountCommand(op, encode(command))


@dataclass(frozen=True)
class AccountResult:
    status: str
    detail: str = ""  # for errors: "<field>: <reason>"
    account: bytes = b""

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK


@dataclass(frozen=True)
class Authenticated:
    """A write whose signature, deadline and nonce checked out: `account` is who made it."""

    account: bytes
    target: str
    payload: bytes


@dataclass
class _Account:
    key: AccountKey
    status: str
    created_us: int
    contact: str
    nonces: dict[bytes, int] = field(default_factory=dict)  # nonce -> deadline_us


@dataclass(frozen=True)
class _Nonce:
    nonce: bytes
    deadline_us: int


@dataclass(frozen=True)
class _AccountRecord:
    account: bytes
    key: AccountKey
    status: str
    created_us: int
    contact: str
    nonces: tuple[_Nonce, ...]


@dataclass(frozen=True)
class _Snapshot:
    version: int
    accounts: tuple[_AccountRecord, ...]
    registrations: tuple[int, ...]


def rollover_proof_input(cluster: bytes, account: bytes, old_key: AccountKey) -> bytes:
    return encode(_RolloverProof("trustchain/rollover/v1", cluster, account, old_key))


@dataclass(frozen=True)
class _RolloverProof:
    domain: str
    cluster: bytes
    account: bytes
    old_key: AccountKey


def _key_digest(key: AccountKey) -> bytes:
    return hashlib.sha256(encode(key)).digest()


class AccountRegistry:
    def __init__(self, cluster: bytes, limits: AccountLimits | None = None, *,
                 validators: tuple[AccountKey, ...] = ()) -> None:
        """`validators`: the validators' consensus keys, in replica order. Each is an account from genesis
        (id `account_id(key)`) that signs the validators' own writes; they are not registered, rolled
        over or deactivated by commands (only by reconfiguring the cluster)."""
        self.cluster = cluster
        self.limits = limits or AccountLimits()
        self.validators = validators
        self.validator_ids = tuple(account_id(k) for k in validators)
        self._accounts: dict[bytes, _Account] = {}
        self._key_owner: dict[bytes, bytes] = {}  # key digest -> account: a key serves one account
        self._registrations: list[int] = []  # consensus times of recent registrations
        self._install_validators()

    def _install_validators(self) -> None:
        for key, vid in zip(self.validators, self.validator_ids, strict=True):
            self._accounts[vid] = _Account(key, ACTIVE, 0, "validator")
            self._key_owner[_key_digest(key)] = vid

    def validator_index(self, account: bytes) -> int | None:
        """The replica index of a validator account, or None for every other account."""
        try:
            return self.validator_ids.index(account)
        except ValueError:
            return None

    # ------------------------------------------------------------------ queries

    def key_of(self, account: bytes) -> AccountKey | None:
        acct = self._accounts.get(account)
        return acct.key if acct is not None else None

    def is_active(self, account: bytes) -> bool:
        acct = self._accounts.get(account)
        return acct is not None and acct.status == ACTIVE

    def __len__(self) -> int:
        return len(self._accounts)

    # ------------------------------------------------------------------ authentication

    def authenticate(self, write: SignedWrite, now_us: int) -> Authenticated | AccountResult:
        """Check `write` and remember its nonce; an `AccountResult` error says which field failed."""
        if len(write.nonce) != NONCE_SIZE:
            return _error(f"nonce: must be {NONCE_SIZE} bytes")
        if write.deadline_us < now_us:
            return _error("deadline_us: the write has expired")
        if write.deadline_us > now_us + MAX_VALIDITY_US:
            return _error(f"deadline_us: more than {MAX_VALIDITY_US // 1_000_000} s in the future")
        registering = write.key is not None
        if registering:
            assert write.key is not None
            if write.target != ACCOUNTS or write.account != account_id(write.key):
                return _error("key: a write carrying a key must register that key's account")
            key = write.key
        else:
            acct = self._accounts.get(write.account)
            if acct is None:
                return _error("account: not registered")
            if acct.status != ACTIVE:
                return _error("account: deactivated")
            key = acct.key
        if not key.verify(signing_input(self.cluster, write), write.signature):
            return _error("signature: does not verify with the account's key")
        acct = self._accounts.get(write.account)
        if acct is not None:
            self._prune(acct, now_us)
            if write.nonce in acct.nonces:
                return _error("nonce: already used (replayed write)")
            if len(acct.nonces) >= self.limits.max_live_nonces:
                return _error("rate: too many writes by this account in the validity window")
            acct.nonces[write.nonce] = write.deadline_us
        return Authenticated(write.account, write.target, write.payload)

    @staticmethod
    def _prune(acct: _Account, now_us: int) -> None:
        expired = [n for n, deadline in acct.nonces.items() if deadline < now_us]
        for n in expired:
            del acct.nonces[n]

    # ------------------------------------------------------------------ account commands

    def execute(self, write: SignedWrite, auth: Authenticated, now_us: int) -> AccountResult:
        """Apply an authenticated account command (target `ACCOUNTS`)."""
        try:
            cmd = decode(AccountCommand, auth.payload)
        except DecodeError as exc:
            return _error(f"command: malformed ({exc})")
        entry = _HANDLERS.get(cmd.op)
        if entry is None:
            return _error(f"op: unknown account operation {cmd.op[:32]!r}")
        body_type, handler = entry
        try:
            body: object = decode(body_type, cmd.body)
        except DecodeError as exc:
            return _error(f"body: malformed ({exc})")
        if write.key is not None and cmd.op != OP_REGISTER:
            return _error("op: a write carrying a key can only register")
        if write.key is None and cmd.op == OP_REGISTER:
            return _error("key: registration must carry the new account's key")
        if write.account in self.validator_ids:
            return _error("account: a validator account changes only by reconfiguring the cluster")
        return handler(self, write, body, now_us)

    def _register(self, write: SignedWrite, body: Register, now_us: int) -> AccountResult:
        assert write.key is not None
        return self.register_key(write.key, body.contact, write.nonce, write.deadline_us, now_us)

    def register_key(self, key: AccountKey, contact: str, nonce: bytes, nonce_expiry_us: int,
                     now_us: int) -> AccountResult:
        """Create the account of `key` (its possession proven by the caller: a self-signed write or an
        ACME newAccount JWS), remembering `nonce` until `nonce_expiry_us`. The account first registered
        with `key` is answered with its id ("already registered"), even after it rolled over."""
        if len(contact) > MAX_CONTACT:
            return _error(f"contact: longer than {MAX_CONTACT} characters")
        account = account_id(key)
        if account in self._accounts:
            if self._accounts[account].status != ACTIVE:
                return _error("account: deactivated")
            return AccountResult(STATUS_OK, "already registered", account)
        if _key_digest(key) in self._key_owner:
            return _error("key: already the key of another account")
        limits = self.limits
        if len(self._accounts) - len(self.validators) >= limits.max_accounts:
            return _error(f"limits.accounts.max_accounts: the registry holds {limits.max_accounts} accounts")
        self._registrations = [t for t in self._registrations if t > now_us - limits.window_us]
        if len(self._registrations) >= limits.registrations_per_window:
            return _error(f"limits.accounts.registrations_per_window: {limits.registrations_per_window} accounts "
                          f"registered in the last {limits.window_us // 1_000_000} s, try later")
        self._registrations.append(now_us)
        self._accounts[account] = _Account(key, ACTIVE, now_us, contact, {nonce: nonce_expiry_us})
        self._key_owner[_key_digest(key)] = account
        return AccountResult(STATUS_OK, "registered", account)

    def _rollover(self, write: SignedWrite, body: RolloverKey, now_us: int) -> AccountResult:
        acct = self._accounts[write.account]
        if not body.new_key.verify(rollover_proof_input(self.cluster, write.account, acct.key), body.proof):
            return _error("proof: the new key did not sign the rollover")
        return self.replace_key(write.account, body.new_key)

    def replace_key(self, account: bytes, new_key: AccountKey) -> AccountResult:
        """Make `new_key` the key of active `account`; the caller has checked the new key's consent (a
        rollover proof or an ACME keyChange inner JWS). The error detail of a key held by another
        account starts with "new_key"; the other account is in `AccountResult.account`."""
        acct = self._accounts.get(account)
        if acct is None or acct.status != ACTIVE:
            return _error("account: not an active account")
        digest = _key_digest(new_key)
        other = self._key_owner.get(digest, account)
        if other != account:
            return AccountResult(STATUS_ERROR, "new_key: already the key of another account", other)
        del self._key_owner[_key_digest(acct.key)]
        acct.key = new_key
        self._key_owner[digest] = account
        return AccountResult(STATUS_OK, "key replaced", account)

    def _deactivate(self, write: SignedWrite, body: Deactivate, now_us: int) -> AccountResult:
        return self.deactivate(write.account)

    def deactivate(self, account: bytes) -> AccountResult:
        """End every write by `account`, for good."""
        acct = self._accounts.get(account)
        if acct is None or account in self.validator_ids:
            return _error("account: not a client account")
        acct.status = DEACTIVATED
        acct.nonces.clear()
        return AccountResult(STATUS_OK, "deactivated", account)

    def set_contact(self, account: bytes, contact: str) -> AccountResult:
        acct = self._accounts.get(account)
        if acct is None or acct.status != ACTIVE:
            return _error("account: not an active account")
        if len(contact) > MAX_CONTACT:
            return _error(f"contact: longer than {MAX_CONTACT} characters")
        acct.contact = contact
        return AccountResult(STATUS_OK, "contact updated", account)

    def account_of_key(self, key: AccountKey) -> bytes | None:
        """The account whose current key is `key`, if any."""
        return self._key_owner.get(_key_digest(key))

    def contact_of(self, account: bytes) -> str:
        acct = self._accounts.get(account)
        return acct.contact if acct is not None else ""

    def status_of(self, account: bytes) -> str | None:
        acct = self._accounts.get(account)
        return acct.status if acct is not None else None

    def use_nonce(self, account: bytes, nonce: bytes, expiry_us: int, now_us: int) -> str | None:
        """Record a once-only `nonce` of active `account` until `expiry_us` (the same bounded store as
        signed writes' nonces); the reason ("nonce: ..." or "rate: ...") if it cannot be used."""
        acct = self._accounts.get(account)
        if acct is None or acct.status != ACTIVE:
            return "account: not an active account"
        self._prune(acct, now_us)
        if nonce in acct.nonces:
            return "nonce: already used (replayed request)"
        if len(acct.nonces) >= self.limits.max_live_nonces:
            return "rate: too many requests by this account in the validity window"
        acct.nonces[nonce] = expiry_us
        return None

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> bytes:
        records = tuple(
            _AccountRecord(a, acct.key, acct.status, acct.created_us, acct.contact,
                           tuple(_Nonce(n, d) for n, d in sorted(acct.nonces.items())))
            for a, acct in sorted(self._accounts.items())
        )
        return encode(_Snapshot(SNAPSHOT_VERSION, records, tuple(self._registrations)))

    def restore(self, snapshot: bytes) -> None:
        snap = decode(_Snapshot, snapshot)
        if snap.version != SNAPSHOT_VERSION:
            raise DecodeError(f"accounts snapshot version: {snap.version} is not {SNAPSHOT_VERSION}")
        self._accounts = {
            r.account: _Account(r.key, r.status, r.created_us, r.contact, {n.nonce: n.deadline_us for n in r.nonces})
            for r in snap.accounts
        }
        for vid in self.validator_ids:  # validator keys come from the configuration, never a snapshot
            assert vid in self._accounts, "snapshot lacks a validator account"
        self._key_owner = {_key_digest(acct.key): a for a, acct in self._accounts.items()}
        self._registrations = list(snap.registrations)


def _error(detail: str) -> AccountResult:
    return AccountResult(STATUS_ERROR, detail)


_Handler = Callable[[AccountRegistry, SignedWrite, object, int], AccountResult]
_HANDLERS: dict[str, tuple[type, _Handler]] = {
    OP_REGISTER: (Register, AccountRegistry._register),  # type: ignore[dict-item]
    OP_ROLLOVER: (RolloverKey, AccountRegistry._rollover),  # type: ignore[dict-item]
    OP_DEACTIVATE: (Deactivate, AccountRegistry._deactivate),  # type: ignore[dict-item]
}
