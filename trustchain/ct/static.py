"""The static-ct-api (c2sp.org/static-ct-api) read path of one validator's log: a checkpoint signed with
an RFC6962NoteSignature, hash tiles (tlog-tiles, as `tiles`), data tiles of TileLeaf entries, and the
issuers they refer to by fingerprint.

A TileLeaf is the leaf's TimestampedEntry, then for a precert entry the submitted precertificate, then
the issuer fingerprints: a monitor rebuilds the MerkleTreeLeaf (v1, timestamped_entry, the entry) and
the RFC 6962 extra_data from it. Full tiles never change, so they may be cached forever; partial tiles
and the checkpoint change as the log grows.
"""

from __future__ import annotations

from trustchain.crypto.signing import Signer
from trustchain.ct import note, tiles
from trustchain.ct.app import CTApplication
from trustchain.ct.checkpoint import SignedCheckpoint
from trustchain.ct.entry import PrecertEntry, opaque, parse_merkle_tree_leaf
from trustchain.ct.sth import SignedTreeHead

__all__ = ["IMMUTABLE", "MUTABLE", "checkpoint", "data_tile", "origin_of", "serve_tile", "tile_leaf"]

IMMUTABLE = "public, max-age=31536000, immutable"
MUTABLE = "no-cache, max-age=0"


def origin_of(url: str) -> str:
    """The checkpoint origin: the submission prefix as a schema-less URL without trailing slashes."""
    return url.split("://", 1)[-1].rstrip("/")


def checkpoint(sth: SignedTreeHead, origin: str, spki: bytes, signer: Signer | None = None) -> SignedCheckpoint:
    """The checkpoint of `sth`, signed by the same TreeHeadSignature (an RFC6962NoteSignature); `signer`
    adds this validator's Ed25519 note signature under the same key name."""
    signed = sth.checkpoint(origin, spki)
    if signer is None:
        return signed
    return SignedCheckpoint(signed.checkpoint, signed.note.with_signature(
        note.sign_note(signed.checkpoint.body(), origin, signer)))


def tile_leaf(app: CTApplication, index: int) -> bytes:
    """TileLeaf { TimestampedEntry; [ASN.1Cert pre_certificate]; Fingerprint certificate_chain<0..2^16-1> }."""
    leaf = app.log.entries[index]
    extra = app.log.extra(index)
    out = leaf[2:]  # the MerkleTreeLeaf without version and leaf type: the TimestampedEntry
    if isinstance(parse_merkle_tree_leaf(leaf).entry, PrecertEntry):
        out += opaque(extra.precertificate, 3)
    return out + opaque(b"".join(extra.chain), 2)


def data_tile(app: CTApplication, index: int, width: int) -> bytes:
    start = index * tiles.TILE_WIDTH
    return b"".join(tile_leaf(app, i) for i in range(start, start + width))


def serve_tile(app: CTApplication, path: str) -> tuple[bytes, bool]:
    """(bytes, full) for `tile/<L>/<N>[.p/<W>]` or `tile/data/<N>[.p/<W>]` at the log's current size;
    raises tiles.TileError for a path it does not publish."""
    level, index, width = tiles.parse_tile_path(path)
    if level != tiles.DATA and int(level) > 5:
        raise tiles.TileError(f"{path}: static-ct-api tiles have levels 0..5")
    size = app.log.size
    count = size if level == tiles.DATA else size >> (tiles.TILE_HEIGHT * int(level))
    if min(tiles.TILE_WIDTH, count - index * tiles.TILE_WIDTH) < width:
        raise tiles.TileError(f"{path} does not exist at tree size {size}")
    full = width == tiles.TILE_WIDTH
    if level == tiles.DATA:
        return data_tile(app, index, width), full
    return tiles.hash_tile(app.log.tree, int(level), index, width), full
