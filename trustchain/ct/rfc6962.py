"""The RFC 6962 section 4 read API of one validator's log, as JSON-ready dicts: get-sth,
get-sth-consistency, get-proof-by-hash, get-entries (with extra_data) and get-roots, plus the add-chain
response. Query values arrive as the strings an HTTP layer hands over and every problem is an
`APIError` naming the parameter (400, or 404 for a hash the log does not hold).

Nothing here signs or reads a clock: the tree head is signed by the caller (`CTApplication.sth`).
"""

from __future__ import annotations

from typing import Any

from trustchain.ct import sct as sctmod
from trustchain.ct.api import APIError, b64, parse_b64, parse_int
from trustchain.ct.app import CTApplication
from trustchain.ct.entry import PrecertEntry, opaque, parse_merkle_tree_leaf
from trustchain.ct.log import LogError
from trustchain.ct.merkle import HASH_SIZE
from trustchain.ct.sth import SignedTreeHead

__all__ = ["MAX_ENTRIES_PER_PAGE", "RFC6962Log", "add_response", "extra_data", "sth_json"]

MAX_ENTRIES_PER_PAGE = 256


def sth_json(sth: SignedTreeHead) -> dict[str, Any]:
    return {"tree_size": sth.tree_size, "timestamp": sth.timestamp, "sha256_root_hash": b64(sth.root_hash),
            "tree_head_signature": b64(sth.signature)}


def add_response(sct: sctmod.SignedCertificateTimestamp) -> dict[str, Any]:
    """RFC 6962 section 4.1 add-chain / add-pre-chain response."""
    return {"sct_version": sctmod.SCT_VERSION_V1, "id": b64(sct.log_id), "timestamp": sct.timestamp,
            "extensions": b64(sct.extensions), "signature": b64(sct.digitally_signed())}


def _cert_list(certs: list[bytes]) -> bytes:
    return opaque(b"".join(opaque(c, 3) for c in certs), 3)


def extra_data(app: CTApplication, index: int) -> bytes:
    """X.509 entries: `ASN.1Cert certificate_chain<0..2^24-1>`; precert entries: `PrecertChainEntry`
    (the precertificate, then its chain)."""
    log = app.log
    extra = log.extra(index)
    chain = [log.issuers[fp] for fp in extra.chain]
    if isinstance(parse_merkle_tree_leaf(log.entries[index]).entry, PrecertEntry):
        return opaque(extra.precertificate, 3) + _cert_list(chain)
    return _cert_list(chain)


class RFC6962Log:
    """One validator's log over its replicated CT application."""

    def __init__(self, app: CTApplication) -> None:
        self.app = app

    @property
    def size(self) -> int:
        return self.app.log.size

    def get_sth_consistency(self, first: object, second: object) -> dict[str, Any]:
        a = parse_int(first, "first")
        b = parse_int(second, "second")
        if b > self.size:
            raise APIError("second", f"{b} is beyond the tree size {self.size}")
        if a > b:
            raise APIError("first", f"{a} is larger than second ({b})")
        proof = [] if a in (0, b) else self.app.log.consistency_proof(a, b)
        return {"consistency": [b64(p) for p in proof]}

    def get_proof_by_hash(self, leaf_hash: object, tree_size: object) -> dict[str, Any]:
        h = parse_b64(leaf_hash, "hash", size=HASH_SIZE)
        n = parse_int(tree_size, "tree_size", minimum=1)
        if n > self.size:
            raise APIError("tree_size", f"{n} is beyond the tree size {self.size}")
        try:
            index, path = self.app.log.inclusion_proof_by_leaf_hash(h, n)
        except LogError as exc:
            raise APIError("hash", str(exc), status=404) from None
        return {"leaf_index": index, "audit_path": [b64(p) for p in path]}

    def get_entries(self, start: object, end: object) -> dict[str, Any]:
        s, e = parse_int(start, "start"), parse_int(end, "end")
        if e < s:
            raise APIError("end", f"must be >= start ({s}), got {e}")
        if s >= self.size:
            raise APIError("start", f"{s} is not below the tree size {self.size}")
        stop = min(e + 1, self.size, s + MAX_ENTRIES_PER_PAGE)
        log = self.app.log
        return {"entries": [{"leaf_input": b64(log.entries[i]), "extra_data": b64(extra_data(self.app, i))}
                            for i in range(s, stop)]}

    def get_roots(self) -> dict[str, Any]:
        return {"certificates": [b64(r) for r in self.app.accepted_roots or ()]}
