"""The CT API a node exposes, as plain objects over a CTLog: RFC 6962 shaped requests in, JSON-ready
dicts out (hashes and blobs base64, sizes and indices as numbers).

Input is validated before the log sees it and every `APIError` names the offending field, so an HTTP
layer maps it to 400 without inspecting messages. Nothing here does I/O or reads a clock: submission
time is passed in (consensus time on a replica).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from trustchain.crypto.signing import Signer
from trustchain.ct import app as appmod
from trustchain.ct import sct as sctmod
from trustchain.ct.entry import SignedEntry, X509Entry, parse_merkle_tree_leaf
from trustchain.ct.log import CTLog, LogError
from trustchain.ct.merkle import HASH_SIZE
from trustchain.errors import TrustChainError

__all__ = [
    "CTAPI", "MAX_CHAIN", "APIError", "add_chain_command", "add_pre_chain_command", "b64", "parse_b64", "parse_int",
    "result_json", "sct_json",
]

MAX_CHAIN = 16


class APIError(TrustChainError, ValueError):
    def __init__(self, field: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.status = field, reason, status

    def to_json(self) -> dict[str, Any]:
        return {"error": str(self), "field": self.field}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def parse_b64(value: object, field: str, *, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise APIError(field, f"expected a base64 string, got {type(value).__name__}")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise APIError(field, "not valid standard base64") from None
    if size is not None and len(raw) != size:
        raise APIError(field, f"{len(raw)} bytes, expected {size}")
    return raw


def parse_int(value: object, field: str, *, minimum: int = 0) -> int:
    """A number from JSON or a decimal string from a query parameter."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        if len(value) > 20:  # beyond any 64-bit size; also keeps int() off huge inputs
            raise APIError(field, f"expected a non-negative integer of at most 20 digits, got {len(value)} digits")
        value = int(value)
    if type(value) is not int:
        raise APIError(field, f"expected a non-negative integer, got {str(value)[:40]!r}")
    if value >= 1 << 64:
        raise APIError(field, "must be below 2**64")
    if value < minimum:
        raise APIError(field, f"must be >= {minimum}, got {value}")
    return value


def _chain(body: Mapping[str, Any]) -> list[bytes]:
    chain = body.get("chain")
    if not isinstance(chain, list) or not chain:
        raise APIError("chain", "expected a non-empty list of base64 DER certificates")
    if len(chain) > MAX_CHAIN:
        raise APIError("chain", f"{len(chain)} certificates, at most {MAX_CHAIN}")
    certs = [parse_b64(c, f"chain[{i}]") for i, c in enumerate(chain)]
    problem = appmod.der_sequence_error(certs[0], "chain[0]")
    if problem:
        field, _, reason = problem.partition(": ")
        raise APIError(field, reason)
    return certs


def add_chain_command(body: Mapping[str, Any]) -> bytes:
    """Validates an add-chain body and returns the operation to order through consensus."""
    chain = _chain(body)
    return appmod.add_chain(chain[0], tuple(chain[1:]))


def add_pre_chain_command(body: Mapping[str, Any]) -> bytes:
    """RFC 6962 section 4.2: {"chain": [precertificate, issuer, ...]}, base64 DER; the log strips the poison
    and hashes the issuer's key itself."""
    chain = _chain(body)
    if len(chain) < 2:
        raise APIError("chain", "a precertificate must be followed by its issuer's certificate")
    return appmod.add_pre_chain(chain[0], tuple(chain[1:]))


def sct_json(sct: sctmod.SignedCertificateTimestamp, index: int | None = None,
             leaf_hash: bytes | None = None) -> dict[str, Any]:
    """RFC 6962 add-chain response; `signature` is the encoded DigitallySigned struct."""
    out: dict[str, Any] = {"sct_version": sctmod.SCT_VERSION_V1, "id": b64(sct.log_id), "timestamp": sct.timestamp,
                           "extensions": b64(sct.extensions), "signature": b64(sct.digitally_signed())}
    if index is not None:
        out["leaf_index"] = index
    if leaf_hash is not None:
        out["leaf_hash"] = b64(leaf_hash)
    return out


def result_json(result: appmod.CTResult) -> dict[str, Any]:
    """The replicated (unsigned) result of an ordered submission or checkpoint command."""
    if not result.ok:
        field, _, reason = result.detail.partition(": ")
        return APIError(field, reason).to_json()
    return {"status": result.status, "leaf_index": result.index, "timestamp": result.timestamp_ms,
            "leaf_hash": b64(result.leaf_hash), "tree_size": result.tree_size, "root_hash": b64(result.root_hash)}


class CTAPI:
    """Read side over any CTLog, plus direct submission for a single-operator log (the CLI)."""

    def __init__(self, log: CTLog, origin: str, signer: Signer | None = None, key_name: str | None = None) -> None:
        self.log = log
        self.origin = origin
        self.signer = signer
        self.key_name = key_name or origin

    def _need_signer(self) -> Signer:
        if self.signer is None:
            raise APIError("key", "this log has no signing key configured", status=503)
        return self.signer

    def submit(self, cert_der: bytes, timestamp_ms: int) -> dict[str, Any]:
        """Logs one DER certificate directly (no consensus) and returns its SCT as JSON."""
        problem = appmod.der_sequence_error(cert_der, "certificate")
        if problem:
            raise APIError("certificate", problem.partition(": ")[2])
        return self._log(X509Entry(cert_der), timestamp_ms)

    def add_chain(self, body: Mapping[str, Any], timestamp_ms: int) -> dict[str, Any]:
        return self._log(X509Entry(_chain(body)[0]), timestamp_ms)

    def _log(self, entry: SignedEntry, timestamp_ms: int) -> dict[str, Any]:
        signer = self._need_signer()
        try:
            logged = self.log.add(entry, timestamp_ms)
        except LogError as exc:
            raise APIError("certificate", str(exc)) from None
        sct = self.log.sct(logged.index, signer)
        return {**sct_json(sct, logged.index, self.log.leaf_hash(logged.index)), "new": logged.new}

    def get_entries(self, start: object, end: object) -> dict[str, Any]:
        s, e = parse_int(start, "start"), parse_int(end, "end")
        if e < s:
            raise APIError("end", f"must be >= start ({s}), got {e}")
        if s >= self.log.size:
            raise APIError("start", f"{s} is not below the tree size {self.log.size}")
        return {"entries": [{"leaf_input": b64(leaf), "extra_data": ""} for leaf in self.log.get_entries(s, e)]}

    def get_checkpoint(self, size: object | None = None) -> dict[str, Any]:
        n = self.log.size if size is None else parse_int(size, "tree_size")
        if n > self.log.size:
            raise APIError("tree_size", f"{n} is beyond the tree size {self.log.size}")
        signed = self.log.checkpoint(self._need_signer(), self.origin, self.key_name, n)
        return {"tree_size": n, "root_hash": b64(signed.checkpoint.root_hash),
                "checkpoint": signed.encode().decode()}

    def get_proof_by_hash(self, leaf_hash: object, tree_size: object | None = None) -> dict[str, Any]:
        h = parse_b64(leaf_hash, "hash", size=HASH_SIZE)
        n = self.log.size if tree_size is None else parse_int(tree_size, "tree_size", minimum=1)
        if not 0 < n <= self.log.size:
            raise APIError("tree_size", f"{n} is not within 1..{self.log.size}")
        try:
            index, path = self.log.inclusion_proof_by_leaf_hash(h, n)
        except LogError as exc:
            raise APIError("hash", str(exc), status=404) from None
        return {"leaf_index": index, "tree_size": n, "leaf_hash": b64(h), "root_hash": b64(self.log.root_at(n)),
                "audit_path": [b64(p) for p in path]}

    def get_consistency(self, first: object, second: object) -> dict[str, Any]:
        a, b = parse_int(first, "first", minimum=1), parse_int(second, "second", minimum=1)
        if a > b:
            raise APIError("first", f"{a} is larger than second ({b})")
        if b > self.log.size:
            raise APIError("second", f"{b} is beyond the tree size {self.log.size}")
        return {"first": a, "second": b, "first_root": b64(self.log.root_at(a)),
                "second_root": b64(self.log.root_at(b)),
                "consistency": [b64(p) for p in self.log.consistency_proof(a, b)]}

    def leaf_hash_of(self, cert_der: bytes) -> tuple[int, bytes]:
        """(index, leaf hash) of a logged certificate, whatever time it was logged at."""
        index = self.log.find(X509Entry(cert_der))
        if index is None:
            raise APIError("certificate", "is not in the log", status=404)
        leaf = self.log.entries[index]
        assert parse_merkle_tree_leaf(leaf).entry == X509Entry(cert_der)
        return index, self.log.leaf_hash(index)

