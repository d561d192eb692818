"""tlog-tiles paths, tile contents, and client-side inclusion checks from tiles alone."""

from __future__ import annotations

import pytest

from trustchain.ct import merkle, tiles
from trustchain.ct.tiles import DATA, TileClient, TileError
from trustchain.ct.tree import LogTree


@pytest.mark.parametrize(
    ("level", "index", "width", "path"),
    [
        (0, 1234067, 256, "tile/0/x001/x234/067"),
        (0, 0, 256, "tile/0/000"),
        (1, 1000, 256, "tile/1/x001/000"),
        (2, 5, 8, "tile/2/005.p/8"),
        (DATA, 1234067, 255, "tile/data/x001/x234/067.p/255"),
        (0, 999, 1, "tile/0/999.p/1"),
    ],
)
def test_paths_round_trip(level: int | str, index: int, width: int, path: str) -> None:
    assert tiles.tile_path(level, index, width) == path
    assert tiles.parse_tile_path(path) == (level, index, width)


@pytest.mark.parametrize(
    "path",
    [
        "tile/0/1234",
        "tile/0/x000/123",
        "tile/0/001/234",
        "tile/0/x01/234",
        "tile/00/000",
        "tile/64/000",
        "tile/0/000.p/256",
        "tile/0/000.p/0",
        "tile/0/000.p/08",
        "tile/entries/000",
        "tiles/0/000",
        "tile/0",
        "tile/0/x001",
        "tile/0/\u0661\u0662\u0663",
    ],
)
def test_non_canonical_paths_are_rejected(path: str) -> None:
    with pytest.raises(TileError):
        tiles.parse_tile_path(path)


def _log(n: int) -> tuple[LogTree, list[bytes]]:
    tree = LogTree()
    entries = [b"entry-%d" % i for i in range(n)]
    for e in entries:
        tree.append(e)
    return tree, entries


def test_tiles_for_size_and_contents() -> None:
    tree, entries = _log(70_000)
    published = tiles.tiles_for_size(70_000)
    # 70000 = 273 * 256 + 112 level-0 hashes; 273 = 1 * 256 + 17 level-8 hashes; 1 level-16 hash.
    assert (0, 273, 112) in published and (0, 272, 256) in published
    assert (1, 1, 17) in published and (2, 0, 1) in published
    assert len(published) == 274 + 2 + 1
    tile = tiles.serve("tile/1/000", tree, entries)
    assert tile[:32] == tree.node(8, 0) == merkle.root_of([merkle.leaf_hash(e) for e in entries[:256]])
    assert len(tile) == 256 * 32
    bundle = tiles.serve("tile/data/273.p/112", tree, entries)
    assert tiles.parse_data_tile(bundle, 112) == entries[273 * 256 :]
    with pytest.raises(TileError, match="does not exist"):
        tiles.serve("tile/0/273", tree, entries)
    with pytest.raises(TileError, match="does not exist"):
        tiles.serve("tile/2/000.p/2", tree, entries)


def test_inclusion_from_tiles_alone() -> None:
    tree, entries = _log(70_000)
    reads: list[str] = []

    def read(path: str) -> bytes:
        reads.append(path)
        return tiles.serve(path, tree, entries)

    for size in (1, 256, 257, 65_536, 65_537, 70_000):
        root = tree.root(size)
        for index in {0, size // 3, size - 1}:
            tiles.verify_inclusion_from_tiles(read, size, root, index, merkle.leaf_hash(entries[index]))
            assert tiles.fetch_verified_entry(read, size, root, index) == entries[index]
            with pytest.raises(merkle.ProofError):
                tiles.verify_inclusion_from_tiles(read, size, root, index, merkle.leaf_hash(b"other"))
    assert any(".p/" in p for p in reads)
    client = TileClient(read, 70_000)
    assert client.range_hash(0, 70_000) == tree.root()


def test_tampered_tiles_are_caught() -> None:
    tree, entries = _log(1000)
    root = tree.root()

    def flip_one(path: str) -> bytes:
        data = bytearray(tiles.serve(path, tree, entries))
        if path == "tile/1/000.p/3":
            data[37] ^= 1  # the level-8 hash of [256, 512): on the proof path of leaf 0
        return bytes(data)

    with pytest.raises(merkle.ProofError, match="yields root"):
        tiles.verify_inclusion_from_tiles(flip_one, 1000, root, 0, merkle.leaf_hash(entries[0]))

    def truncated(path: str) -> bytes:
        return tiles.serve(path, tree, entries)[:-1]

    with pytest.raises(TileError, match="expected"):
        tiles.verify_inclusion_from_tiles(truncated, 1000, root, 3, merkle.leaf_hash(entries[3]))

    def swapped_entry(path: str) -> bytes:
        if path.startswith("tile/data/"):
            fake = list(entries)
            fake[7] = b"forged"
            return tiles.data_tile(fake, 0)
        return tiles.serve(path, tree, entries)

    with pytest.raises(merkle.ProofError):
        tiles.fetch_verified_entry(swapped_entry, 1000, root, 7)


def test_bundle_limits() -> None:
    with pytest.raises(TileError, match="does not fit"):
        tiles.data_tile([b"x" * 70_000], 0, 1)
    with pytest.raises(TileError, match="past the end"):
        tiles.parse_data_tile(b"\x00\x05abc", 1)
    with pytest.raises(TileError, match="expected 2"):
        tiles.parse_data_tile(b"\x00\x01a", 2)


def test_consistency_from_tiles_alone() -> None:
    tree, entries = _log(70_000)

    def read(path: str) -> bytes:
        return tiles.serve(path, tree, entries)

    for old, new in ((0, 1), (1, 256), (255, 257), (256, 65_536), (1000, 70_000), (70_000, 70_000)):
        tiles.verify_consistency_from_tiles(read, old, tree.root(old), new, tree.root(new))
        if old:
            with pytest.raises(merkle.ProofError):
                tiles.verify_consistency_from_tiles(read, old, tree.root(old - 1), new, tree.root(new))
    with pytest.raises(merkle.ProofError):
        tiles.verify_consistency_from_tiles(read, 10, tree.root(10), 5, tree.root(5))
