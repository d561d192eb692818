"""An ordered key-value store: the smallest application that exercises every consensus path.

Commands are `encode(KVCommand)`, results `encode(KVResult)`; a rejected command changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.encoding import DecodeError, decode, encode

OP_PUT, OP_GET, OP_DELETE, OP_APPEND = "put", "get", "delete", "append"
OPS = (OP_PUT, OP_GET, OP_DELETE, OP_APPEND)
STATUS_OK, STATUS_NOT_FOUND, STATUS_ERROR = "ok", "not_found", "error"
MAX_KEY = 1024
MAX_VALUE = 1 << 20


@dataclass(frozen=True)
class KVCommand:
    op: str  # one of OPS
    key: bytes
    value: bytes = b""  # put and append only


@dataclass(frozen=True)
class KVResult:
    """The deterministic answer of every honest replica. A missing key is an answer, not an error."""

    status: str  # ok | not_found | error
    detail: str = ""  # for errors: "<field>: <reason>"
    value: bytes = b""  # get: the stored value
    size: int = 0  # put, get and append: the value's length afterwards

    @property
    def ok(self) -> bool:
        return self.status != STATUS_ERROR


@dataclass(frozen=True)
class _Item:
    key: bytes
    value: bytes


@dataclass(frozen=True)
class _Snapshot:
    items: tuple[_Item, ...]
    applied: int


@dataclass(frozen=True)
class _OwnedItem:
    key: bytes
    value: bytes
    owner: bytes


@dataclass(frozen=True)
class _OwnedSnapshot:
    items: tuple[_OwnedItem, ...]
    applied: int


class KVStore:
    """`quota_bytes` set: every key belongs to the account that first wrote it (only it may change or
    delete it) and each account's keys and values together stay within the quota, and all accounts'
    within `total_bytes`, so no client can fill every replica's storage. None: one shared store (the
    consensus tests' and simulator's workload)."""

    def __init__(self, quota_bytes: int | None = None, total_bytes: int | None = None) -> None:
        self.data: dict[bytes, bytes] = {}
        self.applied = 0
        self.quota_bytes = quota_bytes
        self.total_bytes = total_bytes
        self.owners: dict[bytes, bytes] = {}
        self.usage: dict[bytes, int] = {}
        self.used = 0  # the sum of `usage`

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        return [encode(self._apply(op.client, op.payload)) for op in operations]

    def _apply(self, account: bytes, payload: bytes) -> KVResult:
        self.applied += 1
        try:
            cmd = decode(KVCommand, payload)
        except DecodeError as exc:
            return KVResult(STATUS_ERROR, f"command: malformed ({exc})")
        if len(cmd.key) > MAX_KEY:
            return KVResult(STATUS_ERROR, f"key: longer than {MAX_KEY} bytes")
        handler = _HANDLERS.get(cmd.op)
        if handler is None:
            return KVResult(STATUS_ERROR, f"op: must be one of {', '.join(OPS)}, got {cmd.op[:32]!r}")
        if self.quota_bytes is not None and cmd.op != OP_GET:
            refused = self._check_owner(account, cmd)
            if refused is not None:
                return refused
            before = self._size(cmd.key)
            result = handler(self, cmd)
            self._account(account, cmd.key, before)
            return result
        return handler(self, cmd)

    def _size(self, key: bytes) -> int:
        value = self.data.get(key)
        return 0 if value is None else len(key) + len(value)

    def _check_owner(self, account: bytes, cmd: KVCommand) -> KVResult | None:
        assert self.quota_bytes is not None
        owner = self.owners.get(cmd.key)
        if owner is not None and owner != account:
            return KVResult(STATUS_ERROR, "key: owned by another account")
        old = self._size(cmd.key)
        if cmd.op == OP_PUT:
            new = len(cmd.key) + len(cmd.value)
        elif cmd.op == OP_APPEND:
            new = max(old, len(cmd.key)) + len(cmd.value)
        else:
            new = 0
        mine = self.usage.get(account, 0) - old + new
        if mine > self.quota_bytes and new > old:
            return KVResult(STATUS_ERROR, f"limits.kv.max_account_bytes: this account's data would take {mine} "
                                          f"bytes, at most {self.quota_bytes}")
        if self.total_bytes is not None and self.used - old + new > self.total_bytes and new > old:
            return KVResult(STATUS_ERROR, f"limits.kv.max_total_bytes: all accounts' data would take "
                                          f"{self.used - old + new} bytes, at most {self.total_bytes}")
        return None

    def _account(self, account: bytes, key: bytes, before: int) -> None:
        after = self._size(key)
        self.used += after - before
        used = self.usage.get(account, 0) - before + after
        if used:
            self.usage[account] = used
        else:
            self.usage.pop(account, None)
        if key in self.data:
            self.owners[key] = account
        else:
            self.owners.pop(key, None)

    def _put(self, cmd: KVCommand) -> KVResult:
        if len(cmd.value) > MAX_VALUE:
            return KVResult(STATUS_ERROR, f"value: longer than {MAX_VALUE} bytes")
        self.data[cmd.key] = cmd.value
        return KVResult(STATUS_OK, size=len(cmd.value))

    def _get(self, cmd: KVCommand) -> KVResult:
        value = self.data.get(cmd.key)
        if value is None:
            return KVResult(STATUS_NOT_FOUND)
        return KVResult(STATUS_OK, value=value, size=len(value))

    def _delete(self, cmd: KVCommand) -> KVResult:
        return KVResult(STATUS_OK if self.data.pop(cmd.key, None) is not None else STATUS_NOT_FOUND)

    def _append(self, cmd: KVCommand) -> KVResult:
        new = self.data.get(cmd.key, b"") + cmd.value
        if len(new) > MAX_VALUE:
            return KVResult(STATUS_ERROR, f"value: longer than {MAX_VALUE} bytes")
        self.data[cmd.key] = new
        return KVResult(STATUS_OK, size=len(new))

    def snapshot(self) -> bytes:
        if self.quota_bytes is not None:
            owned = tuple(_OwnedItem(k, self.data[k], self.owners[k]) for k in sorted(self.data))
            return encode(_OwnedSnapshot(owned, self.applied))
        items = tuple(_Item(k, self.data[k]) for k in sorted(self.data))
        return encode(_Snapshot(items, self.applied))

    def restore(self, snapshot: bytes) -> None:
        if self.quota_bytes is not None:
            owned = decode(_OwnedSnapshot, snapshot)
            self.data = {item.key: item.value for item in owned.items}
            self.owners = {item.key: item.owner for item in owned.items}
            self.usage = {}
            for item in owned.items:
                self.usage[item.owner] = self.usage.get(item.owner, 0) + len(item.key) + len(item.value)
            self.used = sum(self.usage.values())
            self.applied = owned.applied
            return
        snap = decode(_Snapshot, snapshot)
        self.data = {item.key: item.value for item in snap.items}
        self.applied = snap.applied


#: The one dispatch table: command op -> handler.
_HANDLERS: dict[str, Callable[[KVStore, KVCommand], KVResult]] = {
    OP_PUT: KVStore._put,
    OP_GET: KVStore._get,
    OP_DELETE: KVStore._delete,
    OP_APPEND: KVStore._append,
}


def put(key: bytes, value: bytes) -> bytes:
    return encode(KVCommand(OP_PUT, key, value))


def get(key: bytes) -> bytes:
    return encode(KVCommand(OP_GET, key))


def delete(key: bytes) -> bytes:
    return encode(KVCommand(OP_DELETE, key))


def append(key: bytes, value: bytes) -> bytes:
    return encode(KVCommand(OP_APPEND, key, value))


def decode_result(data: bytes) -> KVResult:
    return decode(KVResult, data)
