"""Split-view evidence from a log that forked its history."""

from __future__ import annotations

import dataclasses

import pytest

from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import checkpoint as cpmod
from trustchain.ct.checkpoint import Checkpoint, SignedCheckpoint
from trustchain.ct.evidence import EvidenceError, SplitViewEvidence, detect_split_view
from trustchain.ct.tree import LogTree

LOG = Ed25519Signer(b"\x11" * 32)
OTHER = Ed25519Signer(b"\x22" * 32)
ORIGIN = "trustchain.example/ct/log1"


def _tree(entries: list[bytes]) -> LogTree:
    tree = LogTree()
    for e in entries:
        tree.append(e)
    return tree


def _signed(tree: LogTree, size: int, origin: str = ORIGIN, signer: Ed25519Signer = LOG) -> SignedCheckpoint:
    return cpmod.sign(Checkpoint(origin, size, tree.root(size)), "log1", signer)


HONEST = _tree([b"entry %d" % i for i in range(40)])
# The fork shares the first 5 entries, then shows other viewers a different history.
FORK = _tree([b"entry %d" % i for i in range(5)] + [b"forked %d" % i for i in range(35)])


def test_consistent_checkpoints_yield_no_evidence() -> None:
    a, b = _signed(HONEST, 10), _signed(HONEST, 30)
    assert detect_split_view(a, b, "log1", LOG.public_key, HONEST.consistency_proof(10, 30)) is None
    assert detect_split_view(a, a, "log1", LOG.public_key) is None


def test_same_size_different_roots() -> None:
    a, b = _signed(HONEST, 12), _signed(FORK, 12)
    evidence = detect_split_view(b, a, "log1", LOG.public_key)
    assert evidence is not None
    evidence.verify()
    assert evidence.verifier_key.startswith("log1+" + evidence.key_id.hex() + "+")
    # The evidence stands on its own: rebuilt from its fields alone, it still verifies.
    dataclasses.replace(evidence).verify()


@pytest.mark.parametrize(("size1", "size2"), [(10, 30), (6, 7), (8, 33), (16, 40)])
def test_larger_checkpoint_not_extending_smaller(size1: int, size2: int) -> None:
    small, large = _signed(HONEST, size1), _signed(FORK, size2)
    proof = FORK.consistency_proof(size1, size2)  # what the log serves to the viewer of the fork
    prefix = FORK.root(size1)
    evidence = detect_split_view(large, small, "log1", LOG.public_key, proof, prefix_hash=prefix)
    assert evidence is not None
    evidence.verify()
    assert SignedCheckpoint.parse(evidence.first).checkpoint.size == size1


def test_power_of_two_prefix_needs_subtree_hash() -> None:
    with pytest.raises(EvidenceError, match="power of two"):
        detect_split_view(
            _signed(HONEST, 8), _signed(FORK, 20), "log1", LOG.public_key, FORK.consistency_proof(8, 20)
        )


def test_proof_matching_neither_root_blames_nobody() -> None:
    small, large = _signed(HONEST, 10), _signed(FORK, 30)
    with pytest.raises(EvidenceError, match="does not reproduce the signed root"):
        detect_split_view(small, large, "log1", LOG.public_key, HONEST.consistency_proof(10, 30))
    with pytest.raises(EvidenceError, match="consistency proof is needed"):
        detect_split_view(small, large, "log1", LOG.public_key)


def test_evidence_rejects_tampering() -> None:
    evidence = detect_split_view(_signed(HONEST, 12), _signed(FORK, 12), "log1", LOG.public_key)
    assert evidence is not None
    with pytest.raises(EvidenceError, match=r"first checkpoint: .*no signature"):
        dataclasses.replace(evidence, public_key=OTHER.public_key).verify()
    forged_second = _signed(FORK, 12, signer=OTHER).encode()
    with pytest.raises(EvidenceError, match="second checkpoint"):
        dataclasses.replace(evidence, second=forged_second).verify()
    with pytest.raises(EvidenceError, match="same root"):
        dataclasses.replace(evidence, second=evidence.first).verify()
    with pytest.raises(EvidenceError, match="origins differ"):
        dataclasses.replace(evidence, second=_signed(FORK, 12, origin="elsewhere").encode()).verify()
    bad_path = dataclasses.replace(
        evidence, second=_signed(FORK, 20).encode(), consistency_path=(b"\0" * 32,)
    )
    with pytest.raises(EvidenceError, match="malformed"):
        bad_path.verify()


def test_evidence_for_consistent_pair_does_not_verify() -> None:
    small, large = _signed(HONEST, 10), _signed(HONEST, 30)
    path = tuple(HONEST.consistency_proof(10, 30))
    evidence = SplitViewEvidence("log1", LOG.public_key, small.encode(), large.encode(), path)
    with pytest.raises(EvidenceError, match="is a prefix"):
        evidence.verify()
    with pytest.raises(EvidenceError, match="larger"):
        dataclasses.replace(evidence, first=large.encode(), second=small.encode()).verify()
