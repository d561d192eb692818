"""The stored tree against the literal RFC definitions, durability of the file store, and scale."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from ct_helpers import make_leaf_hashes, reference_mth
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_node.ct_filestore import FileLeafStore, file_store_factory
from trustchain.ct import merkle
from trustchain.ct.store import MemoryLeafStore, StorageError, StoreFactory
from trustchain.ct.tree import LogTree


def _tree(leaves: list[bytes], factory: StoreFactory | None = None) -> LogTree:
    tree = LogTree(factory)
    for h in leaves:
        tree.append_leaf_hash(h)
    return tree


def test_empty_tree() -> None:
    tree = LogTree()
    assert tree.size == 0
    assert tree.root() == merkle.EMPTY_ROOT
    with pytest.raises(ValueError):
        tree.inclusion_proof(0)


def test_every_past_root_and_proof_matches_reference() -> None:
    leaves = make_leaf_hashes(70)
    tree = _tree(leaves)
    for size in range(1, 71):
        oracle = lambda a, b, s=size: reference_mth(leaves[:s][a:b])  # noqa: E731
        assert tree.root(size) == reference_mth(leaves[:size])
        for m in range(size):
            assert tree.inclusion_proof(m, size) == merkle.inclusion_proof(m, size, oracle)
        for size1 in range(1, size + 1):
            assert tree.consistency_proof(size1, size) == merkle.consistency_proof(size1, size, oracle)


def test_append_returns_index_and_hashes_leaf_input() -> None:
    tree = LogTree()
    assert tree.append(b"a") == 0
    assert tree.append(b"b") == 1
    assert tree.leaf_hash(1) == merkle.leaf_hash(b"b")
    assert tree.root() == merkle.node_hash(merkle.leaf_hash(b"a"), merkle.leaf_hash(b"b"))
    assert tree.node(1, 0) == tree.root()
    with pytest.raises(IndexError):
        tree.node(1, 1)
    with pytest.raises(ValueError):
        tree.root(3)


def test_memory_store_bounds() -> None:
    store = MemoryLeafStore()
    store.append(b"\x01" * 32)
    assert store.get_range(0, 1) == b"\x01" * 32
    with pytest.raises(IndexError):
        store.get(1)


def test_file_store_reads_buffered_and_flushed_records(tmp_path: Path) -> None:
    path = tmp_path / "level.hashes"
    records = [bytes([i]) * 32 for i in range(10)]
    with FileLeafStore(path, buffer_records=4) as store:
        for r in records:
            store.append(r)
        assert len(store) == 10
        assert path.stat().st_size == 8 * 32  # two full buffers written, two records still pending
        assert [store.get(i) for i in range(10)] == records
        assert store.get_range(2, 10) == b"".join(records[2:])
        store.flush()
        assert path.stat().st_size == 10 * 32
    with FileLeafStore(path) as again:
        assert len(again) == 10
        assert again.get(9) == records[9]
        with pytest.raises(IndexError):
            again.get(10)


def test_file_store_drops_torn_record(tmp_path: Path) -> None:
    path = tmp_path / "level.hashes"
    path.write_bytes(b"\x07" * 32 + b"\x08" * 5)
    with FileLeafStore(path) as store:
        assert len(store) == 1
        store.append(b"\x09" * 32)
        store.flush()
    assert path.read_bytes() == b"\x07" * 32 + b"\x09" * 32


def test_file_backed_tree_reopens_and_repairs_lagging_levels(tmp_path: Path) -> None:
    leaves = make_leaf_hashes(1000)
    tree = _tree(leaves, file_store_factory(tmp_path))
    tree.flush()
    root = tree.root()
    proof = tree.inclusion_proof(777)
    tree.close()

    # Simulate a crash after the leaves were synced but before the upper levels were.
    os.truncate(tmp_path / "level-01.hashes", 100 * 32)
    (tmp_path / "level-05.hashes").unlink()
    reopened = LogTree(file_store_factory(tmp_path))
    assert reopened.size == 1000
    assert reopened.root() == root == reference_mth(leaves)
    assert reopened.inclusion_proof(777) == proof
    reopened.append_leaf_hash(merkle.leaf_hash(b"next"))
    assert reopened.root() == reference_mth([*leaves, merkle.leaf_hash(b"next")])
    reopened.close()


def test_file_backed_tree_rejects_levels_ahead_of_leaves(tmp_path: Path) -> None:
    tree = _tree(make_leaf_hashes(16), file_store_factory(tmp_path))
    tree.close()
    os.truncate(tmp_path / "level-00.hashes", 8 * 32)
    with pytest.raises(StorageError, match="level 1 holds 8 hashes"):
        LogTree(file_store_factory(tmp_path))


@pytest.mark.slow
def test_million_entry_file_backed_log_builds_and_serves_proofs(tmp_path: Path) -> None:
    n = 1_000_000
    tree = LogTree(file_store_factory(tmp_path))
    for i in range(n):
        tree.append(i.to_bytes(8, "big"))
    tree.flush()
    assert tree.size == n
    assert (tmp_path / "level-00.hashes").stat().st_size == n * 32
    root = tree.root()
    assert root == merkle.root_of([merkle.leaf_hash(i.to_bytes(8, "big")) for i in range(n)])
    for index in (0, 1, 524_287, 524_288, 999_998, n - 1):
        proof = tree.inclusion_proof(index)
        assert len(proof) == merkle.inclusion_proof_length(index, n)
        merkle.verify_inclusion(index, n, merkle.leaf_hash(index.to_bytes(8, "big")), proof, root)
    for size1 in (1, 3, 65_536, 777_777, n - 1):
        merkle.verify_consistency(size1, n, tree.root(size1), root, tree.consistency_proof(size1))
    tree.close()


@settings(max_examples=60, deadline=None)
@given(
    entries=st.lists(st.binary(max_size=40), min_size=1, max_size=300),
    data=st.data(),
)
def test_random_tree_proofs_verify_and_resist_bit_flips(entries: list[bytes], data: st.DataObject) -> None:
    tree = LogTree()
    for e in entries:
        tree.append(e)
    size = data.draw(st.integers(1, len(entries)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    size1 = data.draw(st.integers(1, size), label="size1")
    root = tree.root(size)
    assert root == reference_mth([merkle.leaf_hash(e) for e in entries[:size]])
    inclusion = tree.inclusion_proof(index, size)
    consistency = tree.consistency_proof(size1, size)
    merkle.verify_inclusion(index, size, merkle.leaf_hash(entries[index]), inclusion, root)
    merkle.verify_consistency(size1, size, tree.root(size1), root, consistency)
    if inclusion:
        i = data.draw(st.integers(0, len(inclusion) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = [*inclusion]
        bad[i] = (int.from_bytes(bad[i], "big") ^ (1 << bit)).to_bytes(32, "big")
        with pytest.raises(merkle.ProofError):
            merkle.verify_inclusion(index, size, merkle.leaf_hash(entries[index]), bad, root)
    if consistency:
        i = data.draw(st.integers(0, len(consistency) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = [*consistency]
        bad[i] = (int.from_bytes(bad[i], "big") ^ (1 << bit)).to_bytes(32, "big")
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(size1, size, tree.root(size1), root, bad)
