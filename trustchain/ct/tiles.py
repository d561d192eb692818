"""C2SP tlog-tiles layout: the log served as immutable static files, and a client that checks inclusion
using nothing but those files and a signed checkpoint.

A hash tile at level L holds up to 256 consecutive tree-level-8L hashes; the tree's per-level stores
already hold exactly those, so serving a tile is one range read. Data tiles (at `tile/data/...`, as the
static CT API names them) bundle the leaf inputs of 256 entries, each prefixed by a big-endian uint16
length as in tlog-tiles entry bundles. Tile contents are not trusted by the client: every hash it reads
ends up folded into a root compared against the signed checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from trustchain.ct import merkle
from trustchain.ct.tree import LogTree
from trustchain.errors import TrustChainError

__all__ = [
    "DATA", "MAX_ENTRY_SIZE", "TILE_HEIGHT", "TILE_WIDTH", "TileClient", "TileError", "TileReader", "data_tile",
    "encode_index", "fetch_verified_entry", "hash_tile", "parse_data_tile", "parse_tile_path", "serve", "tile_path",
    "tiles_for_size", "verify_consistency_from_tiles", "verify_inclusion_from_tiles",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT
MAX_ENTRY_SIZE = 0xFFFF
DATA = "data"

TileReader = Callable[[str], bytes]
"""Fetches a tile by path (HTTP GET, file read, ...); the client verifies what it returns."""


class TileError(TrustChainError, ValueError):
    """A tile path is malformed or a fetched tile has the wrong shape; the message names the tile."""


def encode_index(n: int) -> str:
    """Zero-padded 3-digit groups, all but the last prefixed with x: 1234067 -> x001/x234/067."""
    if n < 0:
        raise TileError(f"tile index {n} is negative")
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([*("x" + g for g in groups[:-1]), groups[-1]])


def tile_path(level: int | str, index: int, width: int = TILE_WIDTH) -> str:
    """`tile/<L>/<N>[.p/<W>]`, or `tile/data/<N>[.p/<W>]` for level DATA."""
    if level != DATA and not (isinstance(level, int) and 0 <= level <= 63):
        raise TileError(f"tile level {level!r} is neither 0..63 nor {DATA!r}")
    if not 1 <= width <= TILE_WIDTH:
        raise TileError(f"tile width {width} outside 1..{TILE_WIDTH}")
    suffix = "" if width == TILE_WIDTH else f".p/{width}"
    return f"tile/{level}/{encode_index(index)}{suffix}"


def parse_tile_path(path: str) -> tuple[int | str, int, int]:
    """(level or DATA, index, width); only canonical paths are accepted, so each tile has one name."""
    parts = path.split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise TileError(f"{path!r} is not tile/<L>/<N>[.p/<W>]")
    level: int | str = parts[1]
    if level != DATA:
        if not _is_decimal(parts[1]) or int(parts[1]) > 63:
            raise TileError(f"{path!r}: level {parts[1]!r} is neither 0..63 nor {DATA!r}")
        level = int(parts[1])
    elements, width = parts[2:], TILE_WIDTH
    if len(elements) >= 2 and elements[-2].endswith(".p"):
        if not _is_decimal(elements[-1]) or not 1 <= int(elements[-1]) < TILE_WIDTH:
            raise TileError(f"{path!r}: partial width {elements[-1]!r} is not in 1..{TILE_WIDTH - 1}")
        width = int(elements[-1])
        elements = [*elements[:-2], elements[-2][:-2]]
    digits = []
    for i, el in enumerate(elements):
        group = el[1:] if i < len(elements) - 1 and el.startswith("x") else el
        if (
            (i < len(elements) - 1 and not el.startswith("x"))
            or len(group) != 3
            or not (group.isascii() and group.isdigit())
        ):
            raise TileError(f"{path!r}: index element {el!r} is not x<3 digits> (or <3 digits> last)")
        digits.append(group)
    if not digits or (len(digits) > 1 and digits[0] == "000"):
        raise TileError(f"{path!r}: index is empty or zero-padded with a leading x000")
    index = int("".join(digits))
    if path != tile_path(level, index, width):
        raise TileError(f"{path!r} is not the canonical path of its tile")
    return level, index, width


def _is_decimal(s: str) -> bool:
    return s.isascii() and s.isdigit() and (s == "0" or s[0] != "0")


def tiles_for_size(tree_size: int) -> list[tuple[int, int, int]]:
    """Every (level, index, width) hash tile a tree of this size publishes, partial ones included."""
    out = []
    level = 0
    while (count := tree_size >> (TILE_HEIGHT * level)) > 0:
        out += [(level, n, TILE_WIDTH) for n in range(count // TILE_WIDTH)]
        if count % TILE_WIDTH:
            out.append((level, count // TILE_WIDTH, count % TILE_WIDTH))
        level += 1
    return out


def hash_tile(tree: LogTree, level: int, index: int, width: int = TILE_WIDTH) -> bytes:
    start = index * TILE_WIDTH
    return tree.level_hashes(TILE_HEIGHT * level, start, start + width)


def data_tile(entries: Sequence[bytes], index: int, width: int = TILE_WIDTH) -> bytes:
    """Entry bundle for entries [256 * index, 256 * index + width) (uint16 length-prefixed)."""
    start = index * TILE_WIDTH
    if start + width > len(entries):
        raise TileError(f"data tile {index} of width {width} is beyond the {len(entries)} entries")
    out = bytearray()
    for entry in entries[start : start + width]:
        if len(entry) > MAX_ENTRY_SIZE:
            raise TileError(
                f"entry of {len(entry)} bytes does not fit an entry bundle (max {MAX_ENTRY_SIZE})"
            )
        out += len(entry).to_bytes(2, "big") + entry
    return bytes(out)


def parse_data_tile(data: bytes, width: int) -> list[bytes]:
    entries: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise TileError("data tile ends inside an entry length")
        size = int.from_bytes(data[pos : pos + 2], "big")
        if pos + 2 + size > len(data):
            raise TileError(f"data tile entry {len(entries)} claims {size} bytes past the end of the tile")
        entries.append(data[pos + 2 : pos + 2 + size])
        pos += 2 + size
    if len(entries) != width:
        raise TileError(f"data tile holds {len(entries)} entries, expected {width}")
    return entries


def serve(path: str, tree: LogTree, entries: Sequence[bytes]) -> bytes:
    """The bytes at `path` for the log's current size; raises TileError for tiles it does not publish."""
    level, index, width = parse_tile_path(path)
    count = tree.size if level == DATA else tree.size >> (TILE_HEIGHT * int(level))
    available = min(TILE_WIDTH, count - index * TILE_WIDTH)
    if available < width:
        raise TileError(f"{path} does not exist at tree size {tree.size}")
    if level == DATA:
        return data_tile(entries, index, width)
    return hash_tile(tree, int(level), index, width)


class TileClient:
    """Reads tiles for one tree size (that of a verified checkpoint), caching them for its lifetime."""

    def __init__(self, read: TileReader, tree_size: int) -> None:
        self._read = read
        self._size = tree_size
        self._cache: dict[str, bytes] = {}

    def _tile(self, level: int | str, index: int) -> tuple[str, bytes, int]:
        count = self._size if level == DATA else self._size >> (TILE_HEIGHT * int(level))
        width = min(TILE_WIDTH, count - index * TILE_WIDTH)
        assert width > 0, (level, index, self._size)
        path = tile_path(level, index, width)
        if path not in self._cache:
            self._cache[path] = self._read(path)
        return path, self._cache[path], width

    def node(self, height: int, index: int) -> bytes:
        """Hash of the complete subtree at tree level `height`, folded from the tile that holds its
        descendants at the tile's base level."""
        level, sub = divmod(height, TILE_HEIGHT)
        first = index << sub
        path, data, width = self._tile(level, first // TILE_WIDTH)
        if len(data) != width * merkle.HASH_SIZE:
            raise TileError(f"{path} is {len(data)} bytes, expected {width * merkle.HASH_SIZE}")
        off = (first % TILE_WIDTH) * merkle.HASH_SIZE
        hashes = [
            data[off + i * merkle.HASH_SIZE : off + (i + 1) * merkle.HASH_SIZE] for i in range(1 << sub)
        ]
        return merkle.root_of(hashes)

    def range_hash(self, start: int, end: int) -> bytes:
        n = end - start
        if n & (n - 1) == 0:
            height = n.bit_length() - 1
            assert start % n == 0, (start, end)
            return self.node(height, start >> height)
        k = merkle.split_point(n)
        return merkle.node_hash(self.range_hash(start, start + k), self.range_hash(start + k, end))

    def entry(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise TileError(f"entry {index} is outside a tree of size {self._size}")
        _, data, width = self._tile(DATA, index // TILE_WIDTH)
        return parse_data_tile(data, width)[index % TILE_WIDTH]


def verify_inclusion_from_tiles(
    read: TileReader, tree_size: int, root: bytes, index: int, leaf_hash: bytes
) -> None:
    """Raises merkle.ProofError (or TileError for malformed tiles) unless the leaf is at `index` in the
    tree whose signed root is `root`."""
    client = TileClient(read, tree_size)
    if not 0 <= index < tree_size:
        raise merkle.ProofError(f"leaf index {index} is not below tree size {tree_size}")
    proof = merkle.inclusion_proof(index, tree_size, client.range_hash)
    merkle.verify_inclusion(index, tree_size, leaf_hash, proof, root)


def fetch_verified_entry(read: TileReader, tree_size: int, root: bytes, index: int) -> bytes:
    """The leaf input at `index`, read from a data tile and proven against `root` with hash tiles."""
    client = TileClient(read, tree_size)
    entry = client.entry(index)
    proof = merkle.inclusion_proof(index, tree_size, client.range_hash)
    merkle.verify_inclusion(index, tree_size, merkle.leaf_hash(entry), proof, root)
    return entry


def verify_consistency_from_tiles(
    read: TileReader, old_size: int, old_root: bytes, new_size: int, new_root: bytes
) -> None:
    """Raises merkle.ProofError (or TileError) unless the tree signed at `new_size` extends the one
    signed at `old_size`. The proof is assembled from the new tree's hash tiles alone, and checked
    against both signed roots, so a static mirror serving wrong tiles cannot make it pass."""
    if not 0 <= old_size <= new_size:
        raise merkle.ProofError(f"sizes {old_size} and {new_size} are not increasing")
    if old_size == 0:  # the empty tree is a prefix of every tree: nothing to prove but its root
        if old_root != merkle.EMPTY_ROOT:
            raise merkle.ProofError("a size-0 checkpoint must carry the empty tree's root")
        return
    client = TileClient(read, new_size)
    proof = merkle.consistency_proof(old_size, new_size, client.range_hash)
    merkle.verify_consistency(old_size, new_size, old_root, new_root, proof)
