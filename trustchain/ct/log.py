"""CTLog: the RFC 6962 log state machine one replica executes for each ordered submission.

Entries (MerkleTreeLeaf bytes) and the leaf-hash index live in memory for now: about 100 bytes of index
per entry (the dicts key on the first 8 bytes of a hash as an int and confirm against the stored leaf),
so a million entries cost ~200 MB with the entries themselves. A disk-backed entry store (e.g. the data
tiles) is the next step; the tree itself can already sit on a file store (`reference_node.ct_filestore`,
handed in as a `StoreFactory`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from trustchain.crypto.signing import Signer
from trustchain.ct import checkpoint as cpmod
from trustchain.ct import sct as sctmod
from trustchain.ct import tiles
from trustchain.ct.entry import (
    PrecertEntry,
    SignedEntry,
    TimestampedEntry,
    X509Entry,
    encode_signed_entry,
    merkle_tree_leaf,
    parse_merkle_tree_leaf,
)
from trustchain.ct.merkle import leaf_hash
from trustchain.ct.tree import LogTree
from trustchain.errors import TrustChainError

__all__ = ["MAX_ISSUERS", "CTLog", "EntryExtra", "LogError", "LoggedEntry"]

MAX_ISSUERS = 4096  # distinct issuer certificates kept for extra_data (each chains to an accepted root)


class LogError(TrustChainError, ValueError):
    """A request the log cannot serve (unknown leaf, sizes out of range, oversized entry)."""


def _short_key(digest: bytes) -> int:
    return int.from_bytes(digest[:8], "big")


class _HashIndex:
    """digest -> index, keyed on an 8-byte prefix; the caller confirms hits against the full digest."""

    def __init__(self) -> None:
        self._map: dict[int, int | list[int]] = {}

    def add(self, digest: bytes, index: int) -> None:
        key = _short_key(digest)
        old = self._map.get(key)
        if old is None:
            self._map[key] = index
        elif isinstance(old, int):
            self._map[key] = [old, index]
        else:
            old.append(index)

    def candidates(self, digest: bytes) -> list[int]:
        found = self._map.get(_short_key(digest))
        if found is None:
            return []
        return [found] if isinstance(found, int) else list(found)


@dataclass(frozen=True)
class LoggedEntry:
    """Where an entry sits in the log: the deterministic part of an SCT (no signature)."""

    index: int
    timestamp: int
    extensions: bytes
    new: bool  # False when the entry was already logged and this is its original position


@dataclass(frozen=True)
class EntryExtra:
    """What an entry carries beside its leaf: RFC 6962 get-entries' extra_data and a static-ct-api
    TileLeaf's tail. `chain` names the issuers (leaf's issuer first) by SHA-256 fingerprint; their DER
    is kept once per log (`CTLog.issuer`)."""

    precertificate: bytes = b""  # the submitted precertificate (with its poison), for precert entries
    chain: tuple[bytes, ...] = ()


class CTLog:
    def __init__(
        self, signer: Signer | None, tree: LogTree | None = None, *, max_get_entries: int = 1000,
        leaf_index: bool = False,
    ) -> None:
        """`signer` is the log key used for SCTs; None for a log that only records (a replicated log whose
        validators sign separately). A given `tree` must be empty: entries are not persisted. With
        `leaf_index` every entry carries the static-ct-api leaf_index extension (in its leaf and SCTs)."""
        self._signer = signer
        self._tree = tree if tree is not None else LogTree()
        if self._tree.size:
            raise LogError("CTLog keeps its entries in memory and cannot adopt a non-empty tree")
        self._entries: list[bytes] = []
        self._by_leaf = _HashIndex()
        self._by_entry = _HashIndex()
        self._max_get_entries = max_get_entries
        self._leaf_index = leaf_index
        self._extra: list[EntryExtra] = []
        self._issuers: dict[bytes, bytes] = {}
        self.log_id = sctmod.log_id(signer.public_key) if signer is not None else b""

    @property
    def size(self) -> int:
        return self._tree.size

    @property
    def tree(self) -> LogTree:
        return self._tree

    def submit(self, cert_der: bytes, timestamp_ms: int) -> sctmod.SignedCertificateTimestamp:
        """add-chain: logs the certificate (timestamp = consensus time) and returns its SCT."""
        return self._submit(X509Entry(cert_der), timestamp_ms)

    def submit_precert(
        self, tbs_certificate: bytes, issuer_key_hash: bytes, timestamp_ms: int
    ) -> sctmod.SignedCertificateTimestamp:
        return self._submit(PrecertEntry(issuer_key_hash, tbs_certificate), timestamp_ms)

    def _submit(self, entry: SignedEntry, timestamp_ms: int) -> sctmod.SignedCertificateTimestamp:
        """A resubmitted entry gets its original SCT back (same timestamp, same bytes) and no new leaf."""
        if self._signer is None:
            raise LogError("this log has no signing key: use add() and have each validator sign SCTs")
        logged = self.add(entry, timestamp_ms)
        return sctmod.issue(self._signer, entry, logged.timestamp, logged.extensions)

    def add(self, entry: SignedEntry, timestamp_ms: int, *, precertificate: bytes = b"",
            chain: Sequence[bytes] = ()) -> LoggedEntry:
        """Logs `entry` at `timestamp_ms` unless already logged; signs nothing, so every replica that
        adds the same entries at the same consensus times holds identical bytes. `chain` holds the DER
        issuers that were submitted with it (kept for extra_data), `precertificate` the precertificate
        of a precert entry."""
        digest = hashlib.sha256(encode_signed_entry(entry)).digest()
        found = self._find(entry, digest)
        if found is not None:
            logged = parse_merkle_tree_leaf(self._entries[found])
            return LoggedEntry(found, logged.timestamp, logged.extensions, False)
        if precertificate and not isinstance(entry, PrecertEntry):
            raise LogError("only a precert entry has a precertificate")
        fingerprints = tuple(hashlib.sha256(der).digest() for der in chain)
        new_issuers = {fp for fp in fingerprints if fp not in self._issuers}
        if len(self._issuers) + len(new_issuers) > MAX_ISSUERS:
            raise LogError(f"the log already keeps {len(self._issuers)} issuer certificates (at most {MAX_ISSUERS})")
        index = self._tree.size
        extensions = sctmod.leaf_index_extension(index) if self._leaf_index else b""
        leaf = merkle_tree_leaf(TimestampedEntry(timestamp_ms, entry, extensions))
        if len(leaf) > tiles.MAX_ENTRY_SIZE:
            raise LogError(
                f"leaf of {len(leaf)} bytes exceeds the {tiles.MAX_ENTRY_SIZE} a data tile can carry"
            )
        appended = self._tree.append(leaf)
        assert appended == index == len(self._entries)
        self._entries.append(leaf)
        self._extra.append(EntryExtra(precertificate, fingerprints))
        for fp, der in zip(fingerprints, chain, strict=True):
            self._issuers.setdefault(fp, bytes(der))
        self._by_entry.add(digest, index)
        self._by_leaf.add(leaf_hash(leaf), index)
        return LoggedEntry(index, timestamp_ms, extensions, True)

    def extra(self, index: int) -> EntryExtra:
        if not 0 <= index < self.size:
            raise LogError(f"entry {index} is not within a log of size {self.size}")
        return self._extra[index]

    def issuer(self, fingerprint: bytes) -> bytes | None:
        """The DER issuer certificate with this SHA-256 fingerprint, if an entry refers to it."""
        return self._issuers.get(fingerprint)

    @property
    def issuers(self) -> dict[bytes, bytes]:
        """fingerprint -> DER of every issuer entries refer to (read-only by convention)."""
        return self._issuers

    def _find(self, entry: SignedEntry, digest: bytes) -> int | None:
        for index in self._by_entry.candidates(digest):
            if parse_merkle_tree_leaf(self._entries[index]).entry == entry:
                return index
        return None

    def find(self, entry: SignedEntry) -> int | None:
        """Index of a logged entry (any timestamp), or None."""
        return self._find(entry, hashlib.sha256(encode_signed_entry(entry)).digest())

    def sct(self, index: int, signer: Signer | None = None) -> sctmod.SignedCertificateTimestamp:
        """The SCT for a logged entry, signed by `signer` (default: the log key) over its logged time."""
        signer = signer or self._signer
        if signer is None:
            raise LogError("no key to sign the SCT with")
        if not 0 <= index < self.size:
            raise LogError(f"entry {index} is not within a log of size {self.size}")
        logged = parse_merkle_tree_leaf(self._entries[index])
        return sctmod.issue(signer, logged.entry, logged.timestamp, logged.extensions)

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise LogError(f"entry {index} is not within a log of size {self.size}")
        return self._tree.leaf_hash(index)

    def root_at(self, size: int) -> bytes:
        """The root the log had at `size` (any past size, O(log n))."""
        if not 0 <= size <= self.size:
            raise LogError(f"tree size {size} is not within 0..{self.size}")
        return self._tree.root(size)

    def get_entries(self, start: int, end: int) -> list[bytes]:
        """RFC 6962 get-entries: `end` is inclusive; fewer entries than asked may come back (page limit,
        end of log), never more."""
        if not 0 <= start <= end or start >= self.size:
            raise LogError(f"entries [{start}, {end}] are not within a log of size {self.size}")
        stop = min(end + 1, self.size, start + self._max_get_entries)
        return self._entries[start:stop]

    @property
    def entries(self) -> list[bytes]:
        """All leaf inputs, read-only by convention (for tiles.serve)."""
        return self._entries

    def checkpoint(
        self, signer: Signer, origin: str, key_name: str | None = None, size: int | None = None
    ) -> cpmod.SignedCheckpoint:
        """Signs the tree (at `size`, default now); the note key name defaults to the origin, as C2SP logs do."""
        size = self.size if size is None else size
        cp = cpmod.Checkpoint(origin, size, self.root_at(size))
        return cpmod.sign(cp, key_name or origin, signer)

    def index_of_leaf_hash(self, leaf_hash_: bytes, tree_size: int | None = None) -> int:
        tree_size = self.size if tree_size is None else tree_size
        for index in self._by_leaf.candidates(leaf_hash_):
            if index < tree_size and self._tree.leaf_hash(index) == leaf_hash_:
                return index
        raise LogError(f"leaf hash {leaf_hash_.hex()} is not in the first {tree_size} entries")

    def inclusion_proof_by_leaf_hash(self, leaf_hash_: bytes, tree_size: int) -> tuple[int, list[bytes]]:
        """get-proof-by-hash: (leaf index, audit path) in the tree of `tree_size`."""
        if not 0 < tree_size <= self.size:
            raise LogError(f"tree size {tree_size} is not within 1..{self.size}")
        index = self.index_of_leaf_hash(leaf_hash_, tree_size)
        return index, self._tree.inclusion_proof(index, tree_size)

    def consistency_proof(self, first: int, second: int) -> list[bytes]:
        """get-sth-consistency between two tree sizes this log has had."""
        if not 0 < first <= second <= self.size:
            raise LogError(f"sizes {first} -> {second} are not within 0 < first <= second <= {self.size}")
        return self._tree.consistency_proof(first, second)
