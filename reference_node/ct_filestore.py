"""File-backed LeafStore: one file of fixed-size 32-byte records per tree level, append-only.

Writes are buffered and only reach the disk (write + fsync) on `flush()`, so the caller decides when
durability is worth a sync (e.g. once per committed consensus batch, before replying).

It lives beside the drivers, not in `trustchain.ct`, because it touches the file system: the sans-I/O
core only sees it through the `StoreFactory` interface a driver hands to `LogTree`.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from trustchain.ct.merkle import HASH_SIZE
from trustchain.ct.store import StoreFactory


class FileLeafStore:
    """Reads go through `os.pread`, so interleaving reads with appends never moves a file position."""

    def __init__(self, path: str | os.PathLike[str], *, buffer_records: int = 8192) -> None:
        self._path = Path(path)
        self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o644)
        size = os.fstat(self._fd).st_size
        torn = size % HASH_SIZE
        if torn:
            # A record cut short by a crash was never flushed, hence never acknowledged: drop it.
            os.ftruncate(self._fd, size - torn)
        self._written = size // HASH_SIZE
        self._pending = bytearray()
        self._buffer_bytes = buffer_records * HASH_SIZE

    def __len__(self) -> int:
        return self._written + len(self._pending) // HASH_SIZE

    def append(self, record: bytes) -> None:
        assert len(record) == HASH_SIZE, len(record)
        self._pending += record
        if len(self._pending) >= self._buffer_bytes:
            self._write_pending()

    def get(self, index: int) -> bytes:
        if not 0 <= index < len(self):
            raise IndexError(f"record {index} outside {self._path.name} of {len(self)}")
        if index >= self._written:
            off = (index - self._written) * HASH_SIZE
            return bytes(self._pending[off : off + HASH_SIZE])
        data = os.pread(self._fd, HASH_SIZE, index * HASH_SIZE)
        assert len(data) == HASH_SIZE, f"short read at record {index} of {self._path}"
        return data

    def get_range(self, start: int, end: int) -> bytes:
        if not 0 <= start <= end <= len(self):
            raise IndexError(f"range [{start}, {end}) outside {self._path.name} of {len(self)}")
        on_disk = min(end, self._written)
        out = b""
        if start < on_disk:
            want = (on_disk - start) * HASH_SIZE
            out = os.pread(self._fd, want, start * HASH_SIZE)
            assert len(out) == want, f"short read in {self._path}"
        if end > self._written:
            lo = max(start, self._written) - self._written
            out += bytes(self._pending[lo * HASH_SIZE : (end - self._written) * HASH_SIZE])
        return out

    def flush(self) -> None:
        self._write_pending()
        os.fsync(self._fd)

    def close(self) -> None:
        """Writes what is buffered (without fsync) and releases the file."""
        if self._fd >= 0:
            self._write_pending()
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileLeafStore:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _write_pending(self) -> None:
        view = memoryview(self._pending)
        done = 0
        while done < len(view):
            done += os.write(self._fd, view[done:])
        view.release()
        self._written += len(self._pending) // HASH_SIZE
        self._pending = bytearray()


def file_store_factory(directory: str | os.PathLike[str]) -> StoreFactory:
    """One `level-<k>.hashes` file per level in `directory` (created if missing)."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    return lambda level: FileLeafStore(root / f"level-{level:02d}.hashes")
