"""CTApplication: the CT log as a replicated `Application`, one instance per validator.

Who signs what. Consensus orders submissions; every honest replica appends the same leaves at the same
consensus time (`ExecutionContext.time_us`), so the tree, and every result `execute` returns, is
identical everywhere. Signatures are per validator and so can never be inside a result: each validator
runs its own log over that identical content, signing SCTs (`sct`) and RFC 6962 tree heads (`sth`) with
its own P-256 log key and C2SP checkpoints (`signed_checkpoint`) with its Ed25519 key, when the node
asks. A client trusts a checkpoint carrying signatures by a quorum of distinct
validator keys (see `validators.ValidatorSet`: 2f+1 by default, tlog-cosignature style) and an SCT set
the same way; one Byzantine validator signing a different tree only convicts itself (split-view
evidence names its key).

Snapshot choice. The leaf inputs, each entry's extra data (precertificate, issuer fingerprints) and the
issuer certificates are the whole state (dedup, proofs and entries all need them); tree hashes, SCTs and
checkpoints are derived and are not copied. The log is a shard with a fixed capacity
(`max_entries`, as CT's temporal shards), so a snapshot is bounded by max_entries x MAX_ENTRY_SIZE;
restore rebuilds the tree and checks it against the root the snapshot commits to.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.crypto.signing import Signer
from trustchain.ct import checkpoint as cpmod
from trustchain.ct import sct as sctmod
from trustchain.ct import sth as sthmod
from trustchain.ct.entry import EntryError, PrecertEntry, SignedEntry, X509Entry, parse_merkle_tree_leaf
from trustchain.ct.log import CTLog, EntryExtra, LogError
from trustchain.ct.logkey import P256LogSigner
from trustchain.ct.merkle import HASH_SIZE
from trustchain.ct.quota import AccountUsage, CTQuota, SubmissionQuotas
from trustchain.ct.submission import MAX_CHAIN, accept
from trustchain.encoding import DecodeError, decode, encode

__all__ = [
    "DEFAULT_MAX_ENTRIES", "MAX_CERT_BYTES", "OPS", "OP_ADD_CHAIN", "OP_ADD_PRE_CHAIN", "OP_CHECKPOINT",
    "SNAPSHOT_VERSION", "STATUS_DUPLICATE", "STATUS_ERROR", "STATUS_OK", "CTApplication", "CTCommand", "CTResult",
    "add_chain", "add_pre_chain", "checkpoint_command", "decode_result", "der_sequence_error",
]

OP_ADD_CHAIN = "add-chain"
OP_ADD_PRE_CHAIN = "add-pre-chain"
OP_CHECKPOINT = "checkpoint"
OPS = (OP_ADD_CHAIN, OP_ADD_PRE_CHAIN, OP_CHECKPOINT)

STATUS_OK, STATUS_DUPLICATE, STATUS_ERROR = "ok", "duplicate", "error"
DEFAULT_MAX_ENTRIES = 1 << 20
MAX_CERT_BYTES = 64 * 1024
SNAPSHOT_VERSION = 3  # 2: extra data and issuers, leaf_index extensions; 3: per-account submission quotas


@dataclass(frozen=True)
class CTCommand:
    """One ordered operation, as RFC 6962 add-chain/add-pre-chain take it: the certificate (for
    add-pre-chain the precertificate, poison included) and the issuers after it."""

    op: str
    certificate: bytes = b""
    chain: tuple[bytes, ...] = ()  # the issuers after the certificate, up to an accepted root


@dataclass(frozen=True)
class CTResult:
    """The deterministic answer every honest replica returns: an SCT without its signature, plus the
    tree the entry is in (so one reply already pins size and root)."""

    status: str
    detail: str = ""  # for errors: "<field>: <reason>"
    index: int = 0
    timestamp_ms: int = 0
    leaf_hash: bytes = b""
    tree_size: int = 0
    root_hash: bytes = b""
    extensions: bytes = b""  # the SCT's CtExtensions (the static-ct-api leaf_index)

    @property
    def ok(self) -> bool:
        return self.status != STATUS_ERROR


@dataclass(frozen=True)
class _Snapshot:
    version: int
    leaves: tuple[bytes, ...]
    extra: tuple[EntryExtra, ...]
    issuers: tuple[bytes, ...]
    usage: tuple[AccountUsage, ...]
    root_hash: bytes


def add_chain(cert_der: bytes, chain: tuple[bytes, ...] = ()) -> bytes:
    return encode(CTCommand(OP_ADD_CHAIN, cert_der, chain))


def add_pre_chain(precertificate: bytes, chain: tuple[bytes, ...]) -> bytes:
    return encode(CTCommand(OP_ADD_PRE_CHAIN, precertificate, chain))


def checkpoint_command() -> bytes:
    return encode(CTCommand(OP_CHECKPOINT))


def decode_result(data: bytes) -> CTResult:
    return decode(CTResult, data)


def der_sequence_error(data: bytes, what: str) -> str | None:
    """Why `data` is not exactly one DER SEQUENCE (definite, minimal length), or None. The log does not
    validate chains; this only keeps arbitrary bytes out, deterministically."""
    if len(data) < 2 or data[0] != 0x30:
        return f"{what}: not a DER SEQUENCE"
    first = data[1]
    if first < 0x80:
        length, header = first, 2
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or len(data) < 2 + count:
            return f"{what}: bad DER length"
        length = int.from_bytes(data[2 : 2 + count], "big")
        header = 2 + count
        if length < 0x80 or data[2] == 0:
            return f"{what}: non-minimal DER length"
    if header + length != len(data):
        return f"{what}: DER length {length} does not match the {len(data) - header} bytes present"
    return None


class CTApplication:
    def __init__(
        self, signer: Signer, key_name: str, origin: str, *, max_entries: int = DEFAULT_MAX_ENTRIES,
        accepted_roots: tuple[bytes, ...] | None = None, log_signer: P256LogSigner | None = None,
        quota: CTQuota | None = None,
    ) -> None:
        """`signer`/`key_name`: this validator's Ed25519 key for C2SP checkpoints; `log_signer`: its P-256
        log key for SCTs and tree heads (without one, SCTs are Ed25519, which only TrustChain's own
        clients read). `accepted_roots`: DER roots a submission must chain to; None accepts any single
        DER SEQUENCE through add-chain (a log of opaque entries, as in the simulator's CT workload).
        `quota`: how often each client (an account, behind the router) may submit and how much it may
        store (`trustchain.ct.quota`); None for a log whose only clients are trusted workloads."""
        assert max_entries > 0
        self.accepted_roots = accepted_roots
        cpmod.Checkpoint(origin, 0, b"\x00" * HASH_SIZE)  # validates the origin early
        self.signer = signer
        self.log_signer = log_signer
        self.key_name = key_name
        self.origin = origin
        self.max_entries = max_entries
        self.log = CTLog(None, leaf_index=True)
        self.quotas = SubmissionQuotas(quota) if quota is not None else None

    # ------------------------------------------------------------------ replicated, deterministic

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        return [encode(self._apply(op.client, op.payload, context.time_us)) for op in operations]

    def _apply(self, client: bytes, payload: bytes, time_us: int) -> CTResult:
        try:
            cmd = decode(CTCommand, payload)
        except DecodeError as exc:
            return CTResult(STATUS_ERROR, f"command: malformed ({exc})")
        if cmd.op == OP_CHECKPOINT:
            return CTResult(STATUS_OK, tree_size=self.log.size, root_hash=self.log.root_at(self.log.size))
        if cmd.op not in (OP_ADD_CHAIN, OP_ADD_PRE_CHAIN):
            return CTResult(STATUS_ERROR, f"op: unknown operation {cmd.op[:32]!r}")
        if self.quotas is not None:
            over = self.quotas.admit(client, time_us)  # before the costly chain check
            if over:
                return CTResult(STATUS_ERROR, over)
        timestamp_ms = time_us // 1000
        account = client if self.quotas is not None else None
        precert = cmd.op == OP_ADD_PRE_CHAIN
        field = "precertificate" if precert else "certificate"
        problem = self._check_cert(cmd.certificate, field) or self._check_chain(cmd.chain)
        if problem:
            return CTResult(STATUS_ERROR, problem)
        if self.accepted_roots is None:
            if precert:
                return CTResult(STATUS_ERROR, "op: this log takes precertificates only with accepted roots")
            return self.append(X509Entry(cmd.certificate), timestamp_ms, chain=cmd.chain, account=account)
        accepted = accept(cmd.certificate, cmd.chain, self.accepted_roots, precert=precert, leaf_field=field)
        if isinstance(accepted, str):
            return CTResult(STATUS_ERROR, accepted)
        if precert:
            return self.append(PrecertEntry(accepted.issuer_key_hash, accepted.tbs_certificate), timestamp_ms,
                               precertificate=cmd.certificate, chain=accepted.chain, account=account)
        return self.append(X509Entry(cmd.certificate), timestamp_ms, chain=accepted.chain, account=account)

    def append(self, entry: SignedEntry, timestamp_ms: int, *, precertificate: bytes = b"",
               chain: tuple[bytes, ...] = (), account: bytes | None = None) -> CTResult:
        """Log an already checked entry, its new bytes counted against `account`'s quota (None: the CA's
        own certificates, which come here directly)."""
        new = self.log.find(entry) is None
        if new and self.log.size >= self.max_entries:
            return CTResult(STATUS_ERROR, f"log: shard is full at {self.max_entries} entries")
        entry_bytes = (len(entry.certificate) if isinstance(entry, X509Entry)  # issuers are stored once, shared
                       else len(entry.tbs_certificate) + len(entry.issuer_key_hash))
        if new and account is not None and self.quotas is not None:
            over = self.quotas.storage_error(account, entry_bytes)
            if over:
                return CTResult(STATUS_ERROR, over)
        try:
            logged = self.log.add(entry, timestamp_ms, precertificate=precertificate, chain=chain)
        except (LogError, EntryError) as exc:
            return CTResult(STATUS_ERROR, f"certificate: {exc}")
        if logged.new and account is not None and self.quotas is not None:
            self.quotas.stored(account, entry_bytes)
        size = self.log.size
        return CTResult(STATUS_OK if logged.new else STATUS_DUPLICATE, "", logged.index, logged.timestamp,
                        self.log.leaf_hash(logged.index), size, self.log.root_at(size), logged.extensions)

    @staticmethod
    def _check_cert(data: bytes, field: str) -> str | None:
        if len(data) > MAX_CERT_BYTES:
            return f"{field}: {len(data)} bytes, more than {MAX_CERT_BYTES}"
        return der_sequence_error(data, field)

    @classmethod
    def _check_chain(cls, chain: tuple[bytes, ...]) -> str | None:
        if len(chain) > MAX_CHAIN:
            return f"chain: {len(chain)} certificates, at most {MAX_CHAIN}"
        for i, der in enumerate(chain):
            problem = cls._check_cert(der, f"chain[{i}]")
            if problem:
                return problem
        return None

    def snapshot(self) -> bytes:
        log = self.log
        extra = tuple(log.extra(i) for i in range(log.size))
        issuers = tuple(log.issuers[fp] for fp in sorted(log.issuers))
        usage = self.quotas.snapshot() if self.quotas is not None else ()
        return encode(_Snapshot(SNAPSHOT_VERSION, tuple(log.entries), extra, issuers, usage, log.root_at(log.size)))

    def restore(self, snapshot: bytes) -> None:
        """Builds the new log aside and swaps it in only if it reproduces every leaf and the committed root."""
        snap = decode(_Snapshot, snapshot)
        if snap.version != SNAPSHOT_VERSION:
            raise DecodeError(f"_Snapshot.version: {snap.version} is not {SNAPSHOT_VERSION}")
        if len(snap.extra) != len(snap.leaves):
            raise DecodeError(f"_Snapshot.extra: {len(snap.extra)} records for {len(snap.leaves)} leaves")
        issuers = {hashlib.sha256(der).digest(): der for der in snap.issuers}
        log = CTLog(None, leaf_index=True)
        for i, (leaf, extra) in enumerate(zip(snap.leaves, snap.extra, strict=True)):
            try:
                parsed = parse_merkle_tree_leaf(leaf)
                chain = [issuers[fp] for fp in extra.chain]
                logged = log.add(parsed.entry, parsed.timestamp, precertificate=extra.precertificate, chain=chain)
            except (EntryError, LogError) as exc:
                raise DecodeError(f"_Snapshot.leaves[{i}]: {exc}") from None
            except KeyError:
                raise DecodeError(f"_Snapshot.extra[{i}]: names an issuer the snapshot does not hold") from None
            if not logged.new or log.entries[i] != leaf:
                raise DecodeError(f"_Snapshot.leaves[{i}]: duplicate entry or not the leaf this log would write")
        if log.root_at(log.size) != snap.root_hash:
            raise DecodeError("_Snapshot.root_hash: the leaves do not hash to it")
        if self.quotas is not None:
            try:
                self.quotas.restore(snap.usage)
            except ValueError as exc:
                raise DecodeError(f"_Snapshot.usage: {exc}") from None
        elif snap.usage:
            raise DecodeError("_Snapshot.usage: this log keeps no quotas")
        self.log = log

    # ------------------------------------------------------------------ per validator: signatures

    @property
    def size(self) -> int:
        return self.log.size

    def checkpoint(self, size: int | None = None) -> cpmod.Checkpoint:
        size = self.log.size if size is None else size
        return cpmod.Checkpoint(self.origin, size, self.log.root_at(size))

    def signed_checkpoint(self, size: int | None = None) -> cpmod.SignedCheckpoint:
        """This validator's signature over the checkpoint; clients merge a quorum of these."""
        return cpmod.sign(self.checkpoint(size), self.key_name, self.signer)

    def sct(self, index: int) -> sctmod.SignedCertificateTimestamp:
        """This validator's SCT for logged entry `index`: identical content on every validator."""
        return self.log.sct(index, self.log_signer or self.signer)

    def newest_timestamp(self) -> int:
        """The newest entry's timestamp (ms), 0 for an empty log."""
        return parse_merkle_tree_leaf(self.log.entries[-1]).timestamp if self.log.size else 0

    def sth(self, timestamp_ms: int) -> sthmod.SignedTreeHead:
        """This validator's RFC 6962 signed tree head over the current tree, dated `timestamp_ms` (the
        node's clock) or the newest entry's timestamp if that is later, so no entry postdates its STH."""
        if self.log_signer is None:
            raise LogError("this log has no P-256 log key for signed tree heads")
        size = self.log.size
        return sthmod.sign_tree_head(self.log_signer, size, self.log.root_at(size),
                                     max(timestamp_ms, self.newest_timestamp()))
