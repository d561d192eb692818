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


class KVStore:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.applied = 0

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        return [encode(self._apply(op.payload)) for op in operations]

    def _apply(self, payload: bytes) -> KVResult:
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
        return handler(self, cmd)

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
        items = tuple(_Item(k, self.data[k]) for k in sorted(self.data))
        return encode(_Snapshot(items, self.applied))

    def restore(self, snapshot: bytes) -> None:
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
