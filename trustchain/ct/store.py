"""Storage interface for tree levels: one append-only array of 32-byte hashes per level.

Level 0 holds leaf hashes; level k holds the roots of the complete, aligned subtrees of 2**k leaves.
Hashes are never rewritten once a subtree is complete, so an append-only record file (or a tile) is
a faithful backing store, and any complete-subtree hash is one lookup away.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from trustchain.ct.merkle import HASH_SIZE
from trustchain.errors import TrustChainError

__all__ = ["LeafStore", "MemoryLeafStore", "StorageError", "StoreFactory", "memory_store_factory"]


class StorageError(TrustChainError, RuntimeError):
    """The stored levels contradict each other or the record format; the message says how."""


class LeafStore(Protocol):
    """Append-only array of HASH_SIZE-byte records; durability is the caller's call via `flush()`."""

    def __len__(self) -> int: ...

    def append(self, record: bytes) -> None: ...

    def get(self, index: int) -> bytes: ...

    def get_range(self, start: int, end: int) -> bytes:
        """Records [start, end) concatenated, so tiles are served without per-hash copies."""
        ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


StoreFactory = Callable[[int], LeafStore]
"""Opens (or creates) the store for one tree level."""


class MemoryLeafStore:
    """One bytearray per level: 32 bytes per hash and no per-object overhead (about 64 MB per 1M leaves
    across all levels)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def __len__(self) -> int:
        return len(self._buf) // HASH_SIZE

    def append(self, record: bytes) -> None:
        assert len(record) == HASH_SIZE, len(record)
        self._buf += record

    def get(self, index: int) -> bytes:
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} outside store of {len(self)}")
        off = index * HASH_SIZE
        return bytes(self._buf[off : off + HASH_SIZE])

    def get_range(self, start: int, end: int) -> bytes:
        if not 0 <= start <= end <= len(self):
            raise IndexError(f"range [{start}, {end}) outside store of {len(self)}")
        return bytes(self._buf[start * HASH_SIZE : end * HASH_SIZE])

    def flush(self) -> None:
        """Nothing to make durable."""

    def close(self) -> None:
        """Nothing to release."""


def memory_store_factory() -> StoreFactory:
    return lambda _level: MemoryLeafStore()
