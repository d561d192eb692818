"""Append-only Merkle log tree over a LeafStore per level.

Appending stores the leaf hash and every complete-subtree hash it finishes (amortised one node hash per
leaf), so any proof is O(log n) stored lookups plus at most one O(log n) fold for the incomplete right
edge; nothing is ever rehashed from the leaves. Memory is O(log n) beyond what the stores keep.
"""

from __future__ import annotations

from trustchain.ct import merkle
from trustchain.ct.store import LeafStore, StorageError, StoreFactory, memory_store_factory

__all__ = ["LogTree"]

_MAX_LEVELS = 64
_EDGE_CACHE_LIMIT = 4096  # incomplete right-edge subtrees: immutable once built, so safe to memoise


class LogTree:
    def __init__(self, store_factory: StoreFactory | None = None) -> None:
        """Opens level stores via `store_factory` and resumes from what they hold: levels above the
        leaves that lag behind (a crash between flushes) are recomputed from the level below."""
        self._factory = store_factory or memory_store_factory()
        self._levels: list[LeafStore] = [self._factory(0)]
        self._size = len(self._levels[0])
        self._pending: list[bytes] = [b""] * _MAX_LEVELS  # left sibling waiting at each level
        self._root_cache: tuple[int, bytes] = (0, merkle.EMPTY_ROOT)
        self._edge_cache: dict[tuple[int, int], bytes] = {}
        for level in range(1, self._size.bit_length()):
            store = self._level(level)
            below = self._levels[level - 1]
            want = self._size >> level
            if len(store) > want:
                raise StorageError(
                    f"level {level} holds {len(store)} hashes but {self._size} leaves allow only {want}"
                )
            for i in range(len(store), want):
                store.append(merkle.node_hash(below.get(2 * i), below.get(2 * i + 1)))
        for level in range(self._size.bit_length()):
            count = self._size >> level
            if count & 1:
                self._pending[level] = self._levels[level].get(count - 1)

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf_input: bytes) -> int:
        """Appends MerkleTreeLeaf bytes; returns the new leaf's index."""
        return self.append_leaf_hash(merkle.leaf_hash(leaf_input))

    def append_leaf_hash(self, leaf_hash: bytes) -> int:
        assert len(leaf_hash) == merkle.HASH_SIZE, len(leaf_hash)
        index = self._size
        h, level, pos = leaf_hash, 0, index
        self._levels[0].append(h)
        while pos & 1:  # h completes a pair: its parent's subtree is now complete too
            h = merkle.node_hash(self._pending[level], h)
            level += 1
            pos >>= 1
            self._level(level).append(h)
        self._pending[level] = h
        self._size = index + 1
        return index

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise IndexError(f"leaf {index} outside tree of size {self._size}")
        return self._levels[0].get(index)

    def node(self, level: int, index: int) -> bytes:
        """Root of the complete subtree of leaves [index * 2**level, (index + 1) * 2**level)."""
        if level >= len(self._levels) or not 0 <= index < self._size >> level:
            raise IndexError(f"no complete subtree ({level}, {index}) in tree of size {self._size}")
        return self._levels[level].get(index)

    def level_hashes(self, level: int, start: int, end: int) -> bytes:
        """Complete-subtree hashes [start, end) of one level, concatenated (what a hash tile holds)."""
        if level >= len(self._levels) or not 0 <= start <= end <= self._size >> level:
            raise IndexError(f"no hashes [{start}, {end}) at level {level} in tree of size {self._size}")
        return self._levels[level].get_range(start, end)

    def root(self, size: int | None = None) -> bytes:
        """MTH of the first `size` leaves (default: all); any past size costs O(log n)."""
        size = self._size if size is None else size
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size {size} outside 0..{self._size}")
        if size == 0:
            return merkle.EMPTY_ROOT
        cached_size, cached = self._root_cache
        if cached_size == size:
            return cached
        root = self.range_hash(0, size)
        if size == self._size:
            self._root_cache = (size, root)
        return root

    def range_hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges RFC proofs use: `start` must be a multiple of the smallest
        power of two >= end - start, so the left part of every split is a stored complete subtree."""
        n = end - start
        assert start >= 0 and n > 0 and end <= self._size, (start, end, self._size)
        assert start % (1 << (n - 1).bit_length()) == 0, f"range [{start}, {end}) is not RFC-shaped"
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            return self._levels[level].get(start >> level)
        cached = self._edge_cache.get((start, end))
        if cached is not None:
            return cached
        k = merkle.split_point(n)
        left = self._levels[k.bit_length() - 1].get(start // k)
        h = merkle.node_hash(left, self.range_hash(start + k, end))
        if len(self._edge_cache) >= _EDGE_CACHE_LIMIT:
            self._edge_cache.clear()
        self._edge_cache[(start, end)] = h
        return h

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self._size if size is None else size
        if not 0 < size <= self._size:
            raise ValueError(f"tree size {size} outside 1..{self._size}")
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside a tree of size {size}")
        # Bottom-up, as in transparency-dev: below `inner` the path leaves the right edge, so every
        # sibling is stored except at most one right sibling cut by the edge; above it only left
        # siblings exist. Equal to merkle.inclusion_proof (tests check it), minus the recursion.
        inner = (index ^ (size - 1)).bit_length()
        proof = []
        for level in range(inner):
            sibling = (index >> level) ^ 1
            if (sibling + 1) << level <= size:
                proof.append(self._levels[level].get(sibling))
            else:
                proof.append(self.range_hash(sibling << level, size))
        for level in range(inner, size.bit_length()):
            if (index >> level) & 1:
                proof.append(self._levels[level].get((index >> level) ^ 1))
        return proof

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        size2 = self._size if size2 is None else size2
        if size2 > self._size:
            raise ValueError(f"tree size {size2} is beyond the log's size {self._size}")
        return merkle.consistency_proof(size1, size2, self.range_hash)

    def flush(self) -> None:
        """Leaves first: a crash mid-flush leaves upper levels behind, which reopening repairs."""
        for store in self._levels:
            store.flush()

    def close(self) -> None:
        for store in self._levels:
            store.close()

    def _level(self, level: int) -> LeafStore:
        assert level <= len(self._levels) < _MAX_LEVELS, level
        if level == len(self._levels):
            self._levels.append(self._factory(level))
        return self._levels[level]
