"""RFC 6962 §3.4 log entries: TimestampedEntry and the MerkleTreeLeaf (v1) whose bytes are hashed into
the tree. TLS presentation-language encoding, strict on decode so each leaf has exactly one encoding."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from trustchain.ct.merkle import HASH_SIZE
from trustchain.errors import TrustChainError

__all__ = [
    "MAX_UINT64", "EntryError", "LogEntryType", "PrecertEntry", "SignedEntry", "TimestampedEntry", "X509Entry",
    "encode_signed_entry", "merkle_tree_leaf", "opaque", "parse_merkle_tree_leaf",
]

MAX_UINT64 = (1 << 64) - 1


class EntryError(TrustChainError, ValueError):
    """A log entry is malformed or out of range; the message says which field."""


class LogEntryType(IntEnum):
    X509 = 0
    PRECERT = 1


@dataclass(frozen=True)
class X509Entry:
    certificate: bytes  # DER ASN.1Cert, opaque <1..2^24-1>

    def __post_init__(self) -> None:
        _check_len("certificate", self.certificate, 1, 0xFFFFFF)


@dataclass(frozen=True)
class PrecertEntry:
    issuer_key_hash: bytes  # SHA-256 of the issuer's SubjectPublicKeyInfo
    tbs_certificate: bytes  # DER TBSCertificate without the poison extension, opaque <1..2^24-1>

    def __post_init__(self) -> None:
        if len(self.issuer_key_hash) != HASH_SIZE:
            raise EntryError(f"issuer_key_hash is {len(self.issuer_key_hash)} bytes, expected {HASH_SIZE}")
        _check_len("tbs_certificate", self.tbs_certificate, 1, 0xFFFFFF)


SignedEntry = X509Entry | PrecertEntry


def _check_len(what: str, data: bytes, lo: int, hi: int) -> None:
    if not lo <= len(data) <= hi:
        raise EntryError(f"{what} is {len(data)} bytes, allowed {lo}..{hi}")


def opaque(data: bytes, length_bytes: int) -> bytes:
    assert len(data) < 1 << (8 * length_bytes), (len(data), length_bytes)
    return len(data).to_bytes(length_bytes, "big") + data


def encode_signed_entry(entry: SignedEntry) -> bytes:
    """entry_type followed by the selected body, as both the leaf and the SCT signature input carry it."""
    if isinstance(entry, X509Entry):
        return LogEntryType.X509.to_bytes(2, "big") + opaque(entry.certificate, 3)
    return LogEntryType.PRECERT.to_bytes(2, "big") + entry.issuer_key_hash + opaque(entry.tbs_certificate, 3)


@dataclass(frozen=True)
class TimestampedEntry:
    timestamp: int  # milliseconds since the epoch, from consensus time, never a local clock
    entry: SignedEntry
    extensions: bytes = b""

    def __post_init__(self) -> None:
        if not 0 <= self.timestamp <= MAX_UINT64:
            raise EntryError(f"timestamp {self.timestamp} is not a uint64")
        _check_len("extensions", self.extensions, 0, 0xFFFF)

    def encode(self) -> bytes:
        return (
            self.timestamp.to_bytes(8, "big") + encode_signed_entry(self.entry) + opaque(self.extensions, 2)
        )


def merkle_tree_leaf(entry: TimestampedEntry) -> bytes:
    """Version v1 (0) and leaf type timestamped_entry (0), then the entry: the tree's leaf input."""
    return b"\x00\x00" + entry.encode()


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise EntryError(f"leaf ends inside {what}")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def uint(self, n: int, what: str) -> int:
        return int.from_bytes(self.take(n, what), "big")

    def opaque(self, length_bytes: int, what: str) -> bytes:
        return self.take(self.uint(length_bytes, f"{what} length"), what)


def parse_merkle_tree_leaf(data: bytes) -> TimestampedEntry:
    r = _Reader(data)
    if r.uint(1, "version") != 0:
        raise EntryError("leaf version is not v1 (0)")
    if r.uint(1, "leaf type") != 0:
        raise EntryError("leaf type is not timestamped_entry (0)")
    timestamp = r.uint(8, "timestamp")
    entry_type = r.uint(2, "entry type")
    entry: SignedEntry
    if entry_type == LogEntryType.X509:
        entry = X509Entry(r.opaque(3, "certificate"))
    elif entry_type == LogEntryType.PRECERT:
        entry = PrecertEntry(r.take(HASH_SIZE, "issuer_key_hash"), r.opaque(3, "tbs_certificate"))
    else:
        raise EntryError(f"unknown entry type {entry_type}")
    extensions = r.opaque(2, "extensions")
    if r.pos != len(data):
        raise EntryError(f"{len(data) - r.pos} trailing bytes after the leaf")
    return TimestampedEntry(timestamp, entry, extensions)
