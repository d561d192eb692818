"""An ordered key-value store: the smallest application that exercises every consensus path."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.encoding import DecodeError, decode, encode


@dataclass(frozen=True)
class KVCommand:
    op: str  # "put" | "get" | "delete" | "append"
    key: bytes
    value: bytes = b""


@dataclass(frozen=True)
class _Item:
    key: bytes
    value: bytes


@dataclass(frozen=True)
class _Snapshot:
    items: tuple[_Item, ...]
    applied: int


MAX_KEY = 1024
MAX_VALUE = 1 << 20


class KVStore:
    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.applied = 0

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        return [self._apply(op.payload) for op in operations]

    def _apply(self, payload: bytes) -> bytes:
        self.applied += 1
        try:
            cmd = decode(KVCommand, payload)
        except DecodeError as exc:
            return b"ERR malformed command: " + str(exc).encode()
        if len(cmd.key) > MAX_KEY:
            return b"ERR key: longer than %d bytes" % MAX_KEY
        if cmd.op == "put":
            if len(cmd.value) > MAX_VALUE:
                return b"ERR value: longer than %d bytes" % MAX_VALUE
            self.data[cmd.key] = cmd.value
            return b"OK"
        if cmd.op == "get":
            return b"VALUE " + self.data[cmd.key] if cmd.key in self.data else b"NOTFOUND"
        if cmd.op == "delete":
            return b"OK" if self.data.pop(cmd.key, None) is not None else b"NOTFOUND"
        if cmd.op == "append":
            new = self.data.get(cmd.key, b"") + cmd.value
            if len(new) > MAX_VALUE:
                return b"ERR value: longer than %d bytes" % MAX_VALUE
            self.data[cmd.key] = new
            return b"OK " + str(len(new)).encode()
        return b"ERR op: unknown operation " + cmd.op.encode()[:32]

    def snapshot(self) -> bytes:
        items = tuple(_Item(k, self.data[k]) for k in sorted(self.data))
        return encode(_Snapshot(items, self.applied))

    def restore(self, snapshot: bytes) -> None:
        snap = decode(_Snapshot, snapshot)
        self.data = {item.key: item.value for item in snap.items}
        self.applied = snap.applied


def put(key: bytes, value: bytes) -> bytes:
    return encode(KVCommand("put", key, value))


def get(key: bytes) -> bytes:
    return encode(KVCommand("get", key))


def append(key: bytes, value: bytes) -> bytes:
    return encode(KVCommand("append", key, value))
