"""Simulated durable storage: one append-only log of framed records per replica, with explicit write
and fsync, crash semantics and injectable storage faults.

The log is a byte image, as a file on disk would be. Each `Persist` record is one frame:

    u32 payload length | 16-byte BLAKE3 checksum over (length, payload) | payload

where the payload is a one-byte record type followed by the record's canonical encoding
(`trustchain.encoding`, as reference_node/storage.py stores it). `write` appends a frame; it is
*unsynced* until the next `fsync`, which also records the synced length in a superblock (a separate,
atomically written header, as TigerBeetle's superblock or a WAL header: the simulator does not fault
it). The world writes each `Persist` record and fsyncs before performing the next effect that follows
it, which is the driver contract of `trustchain.consensus.effects`.

A stable checkpoint compacts the log when it becomes durable: every frame before it with a sequence
number at or below the checkpoint (and every older checkpoint) is dropped; view-change and new-view
votes, which carry no sequence number, are kept (the rule is `trustchain.consensus.durability`'s,
shared with the reference node and the unit-test harness). Compaction replaces the synced log atomically (write
a new file, rename, fsync), as the reference node's single SQLite transaction does.

What a crash leaves on disk depends on how the node went down (`crash`): a process crash keeps what
was written (the operating system has it), a power loss drops every unsynced frame (`lose`), and a torn
write leaves a prefix of the last unsynced frame (`torn`). `corrupt` flips one bit in a synced frame.

Recovery (`recover`) decodes the image from the start. A bad frame (short, or failing its checksum)
past the synced length with no valid frame after it is a torn or unsynced tail: it and everything
after it are dropped and the log is truncated there. A bad frame inside the synced length, or one
followed by a valid frame, is corruption of data that was durable: `StorageCorrupt` is raised and the
node must not start, because running on a log that silently lost a vote could make it vote twice.
"""

from __future__ import annotations

import hashlib
import random
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import blake3

from trustchain.consensus.durability import record_seq, survives, truncation_point
from trustchain.consensus.effects import PersistExecuted, PersistRecord, PersistStable, PersistVote
from trustchain.encoding import DecodeError, decode, encode
from trustchain.errors import TrustChainError

_HEADER = struct.Struct(">I16s")
HEADER_BYTES = _HEADER.size
_DOMAIN = b"trustchain-sim/storage/frame/v1\x00"
_TYPES: dict[int, type[PersistVote] | type[PersistExecuted] | type[PersistStable]] = {
    1: PersistVote,
    2: PersistExecuted,
    3: PersistStable,
}
_CODES = {cls: code for code, cls in _TYPES.items()}
MAX_FRAME = 1 << 28

#: What a crash does to data written since the last fsync.
CRASH_MODES = ("keep", "lose", "torn")


class StorageCorrupt(TrustChainError):
    """Durable data failed its checksum: the node must refuse to start."""


def _checksum(length: bytes, payload: bytes) -> bytes:
    return blake3.blake3(_DOMAIN + length + payload).digest(16)


def frame(record: PersistRecord) -> bytes:
    """A record's bytes in the log."""
    payload = bytes([_CODES[type(record)]]) + encode(record)
    length = struct.pack(">I", len(payload))
    return length + _checksum(length, payload) + payload


def vote_key(envelope_bytes: bytes) -> bytes:
    """Identity of a signed envelope given its canonical encoding (a wire packet minus its type
    byte, or a vote frame's payload minus its record type byte)."""
    return hashlib.blake2b(envelope_bytes, digest_size=16).digest()


def _read_frame(image: bytes | bytearray, pos: int) -> tuple[PersistRecord, int] | None:
    """The record framed at `pos` and the offset after it, or None if the frame is short or bad."""
    if pos + HEADER_BYTES > len(image):
        return None
    length, checksum = _HEADER.unpack_from(image, pos)
    end = pos + HEADER_BYTES + length
    if length == 0 or length > MAX_FRAME or end > len(image):
        return None
    payload = bytes(image[pos + HEADER_BYTES:end])
    if _checksum(bytes(image[pos:pos + 4]), payload) != checksum:
        return None
    cls = _TYPES.get(payload[0])
    if cls is None:
        return None
    try:
        return decode(cls, payload[1:]), end
    except DecodeError:
        return None


@dataclass
class _Frame:
    offset: int
    size: int
    seq: int | None
    record: PersistRecord  # the live copy, so compaction need not decode; recovery decodes the bytes
    vote: bytes | None  # vote_key of a PersistVote's envelope


@dataclass(frozen=True)
class Recovered:
    """What `recover` read back."""

    records: list[PersistRecord]
    dropped_frames: int  # 1 if a torn or unsynced frame was cut off at the tail, else 0
    dropped_bytes: int


@dataclass
class SimStorage:
    image: bytearray = field(default_factory=bytearray)
    synced_len: int = 0  # the superblock: bytes of `image` made durable by the last fsync
    frames: list[_Frame] = field(default_factory=list)
    synced_frames: int = 0
    synced_votes: set[bytes] = field(default_factory=set)
    writes: int = 0  # over the node's life, across restarts
    fsyncs: int = 0

    # ------------------------------------------------------------------ writing

    @property
    def dirty(self) -> bool:
        return self.synced_frames < len(self.frames)

    def write(self, record: PersistRecord) -> None:
        """Append one record; it is not durable until `fsync`."""
        data = frame(record)
        vote = vote_key(data[HEADER_BYTES + 1:]) if isinstance(record, PersistVote) else None
        self.frames.append(_Frame(len(self.image), len(data), record_seq(record), record, vote))
        self.image += data
        self.writes += 1

    def fsync(self) -> list[PersistRecord]:
        """Make every written record durable; returns them. A stable checkpoint among them compacts
        the log."""
        fresh = [f.record for f in self.frames[self.synced_frames:]]
        if not fresh:
            return []
        self.fsyncs += 1
        for f in self.frames[self.synced_frames:]:
            if f.vote is not None:
                self.synced_votes.add(f.vote)
        last_stable = max((i for i in range(self.synced_frames, len(self.frames))
                           if truncation_point(self.frames[i].record) is not None), default=None)
        self.synced_frames = len(self.frames)
        self.synced_len = len(self.image)
        if last_stable is not None:
            self._compact(last_stable)
        return fresh

    def _compact(self, stable_index: int) -> None:
        upto = truncation_point(self.frames[stable_index].record)
        assert upto is not None
        kept = [f for i, f in enumerate(self.frames) if i >= stable_index or survives(f.seq, upto)]
        image = bytearray()
        frames = []
        for f in kept:
            frames.append(_Frame(len(image), f.size, f.seq, f.record, f.vote))
            image += self.image[f.offset:f.offset + f.size]
        self.image, self.frames = image, frames
        self.synced_frames = len(frames)
        self.synced_len = len(image)
        self.synced_votes = {f.vote for f in frames if f.vote is not None}

    # ------------------------------------------------------------------ reading

    def records(self) -> list[PersistRecord]:
        """Every record written, in order (the live view; `recover` reads the bytes instead)."""
        return [f.record for f in self.frames]

    def has_synced_vote(self, envelope_bytes: bytes) -> bool:
        return vote_key(envelope_bytes) in self.synced_votes

    @property
    def unsynced(self) -> int:
        return len(self.frames) - self.synced_frames

    # ------------------------------------------------------------------ crashes and faults

    def crash(self, mode: str, rng: random.Random) -> str:
        """What a crash leaves on disk of the unsynced frames; returns a description."""
        if mode not in CRASH_MODES:
            raise ValueError(f"unknown crash mode {mode!r}")
        unsynced = self.frames[self.synced_frames:]
        if not unsynced or mode == "keep":
            return f"{len(unsynced)} unsynced record(s) kept"
        if mode == "lose":
            lost = len(self.image) - self.synced_len
            del self.image[self.synced_len:]
            del self.frames[self.synced_frames:]
            return f"{len(unsynced)} unsynced record(s) lost ({lost} bytes)"
        last = unsynced[-1]
        keep = rng.randrange(1, last.size)  # a strict, non-empty prefix of the frame reached the disk
        del self.image[last.offset + keep:]
        self.frames.pop()
        return f"last unsynced record torn ({keep} of {last.size} bytes on disk)"

    def corrupt(self, rng: random.Random) -> str | None:
        """Flip one bit of one synced frame; returns a description (None: nothing synced yet)."""
        if not self.synced_frames:
            return None
        index = rng.randrange(self.synced_frames)
        f = self.frames[index]
        byte = rng.randrange(f.size)
        bit = rng.randrange(8)
        self.image[f.offset + byte] ^= 1 << bit
        return f"bit {bit} of byte {byte} in synced record {index + 1} of {self.synced_frames} flipped"

    def recover(self) -> Recovered:
        """Decode the log after a crash (see the module docstring); truncates a torn or unsynced tail
        and leaves the storage synced. Raises `StorageCorrupt` for bad durable data."""
        image = bytes(self.image)
        pos = 0
        records: list[PersistRecord] = []
        frames: list[_Frame] = []
        while pos < len(image):
            got = _read_frame(image, pos)
            if got is None:
                break
            record, end = got
            vote = vote_key(image[pos + HEADER_BYTES + 1:end]) if isinstance(record, PersistVote) else None
            frames.append(_Frame(pos, end - pos, record_seq(record), record, vote))
            records.append(record)
            pos = end
        dropped = len(image) - pos
        if dropped:
            where = f"record {len(frames) + 1} at byte {pos}"
            if pos < self.synced_len:
                raise StorageCorrupt(f"{where} fails its checksum inside the synced log ({self.synced_len} bytes)")
            later = next((q for q in range(pos + 1, len(image)) if _read_frame(image, q) is not None), None)
            if later is not None:
                raise StorageCorrupt(f"{where} fails its checksum but a valid record follows at byte {later}")
        self.image = bytearray(image[:pos])
        self.frames = frames
        self.synced_frames = len(frames)
        self.synced_len = pos
        self.synced_votes = {f.vote for f in frames if f.vote is not None}
        return Recovered(records, 1 if dropped else 0, dropped)


# ---------------------------------------------------------------------------- injected crashes

#: fault type -> (the boundary it fires at, what the crash does to unsynced data)
STORAGE_CRASHES: dict[str, tuple[str, str]] = {
    "crash_after_persist": ("fsync", "keep"),
    "lose_unsynced": ("write", "lose"),
    "torn_write": ("write", "torn"),
}


@dataclass
class ArmedCrash:
    """A storage crash waiting for its boundary: the `k`-th fsync (or record write) of the node
    counted from when it was armed."""

    kind: str
    k: int
    restart_after_us: int | None
    rng: random.Random
    seen: int = 0

    @property
    def point(self) -> str:
        return STORAGE_CRASHES[self.kind][0]

    @property
    def mode(self) -> str:
        return STORAGE_CRASHES[self.kind][1]

    def reached(self, point: str) -> bool:
        """Count one boundary of type `point`; True when this is the one to crash at."""
        if point != self.point:
            return False
        self.seen += 1
        return self.seen == self.k


def crash_points(node: int, ks: Iterable[int], *, kind: str = "crash_after_persist", at_s: float = 0.0,
                 restart_after_s: float | None = 0.01) -> list[dict[str, Any]]:
    """One scenario `faults:` entry per crash point: `node` crashes at its k-th boundary (fsync for
    crash_after_persist, record write for lose_unsynced and torn_write) counted from `at_s`, and
    restarts `restart_after_s` later (None: stays down). Run each in turn to crash at every boundary."""
    if kind not in STORAGE_CRASHES:
        raise ValueError(f"{kind!r} is not a storage crash; known: {', '.join(STORAGE_CRASHES)}")
    fault: dict[str, Any] = {"type": kind, "node": node, "at_s": at_s}
    if restart_after_s is not None:
        fault["restart_after_s"] = restart_after_s
    return [{**fault, "k": k} for k in ks]
