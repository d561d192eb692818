"""The quantum-resistant mode: consensus messages and CT checkpoints signed with FN-DSA-1024 / ML-DSA."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sim.runner import run
from sim.scenario import load
from trustchain.consensus.messages import Envelope
from trustchain.crypto.pq import FNDSA1024Verifier
from trustchain.crypto.schemes import ANY_SCHEME, make_signer, scheme_of
from trustchain.ct.checkpoint import Checkpoint, CheckpointError, SignedCheckpoint, sign
from trustchain.ct.note import Note

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "quantum-resistant.yaml"


def test_any_scheme_verifier_dispatches_on_key_size_and_rejects_forgeries() -> None:
    rng = random.Random(5)
    for scheme in ("ed25519", "fn-dsa-1024", "ml-dsa-65", "ml-dsa-87"):
        signer = make_signer(scheme, bytes([7]) * 32, rng.randbytes)
        assert scheme_of(signer.public_key) == scheme
        sig = signer.sign(b"message")
        assert ANY_SCHEME.verify(signer.public_key, b"message", sig)
        assert not ANY_SCHEME.verify(signer.public_key, b"massage", sig)
        bad = bytearray(sig)
        bad[len(bad) // 2] ^= 1
        assert not ANY_SCHEME.verify(signer.public_key, b"message", bytes(bad))
    assert not ANY_SCHEME.verify(b"\x00" * 100, b"message", b"\x00" * 64), "unknown key sizes never verify"


@pytest.mark.parametrize("scheme", ["fn-dsa-1024", "ml-dsa-65"])
def test_post_quantum_checkpoint_signatures(scheme: str) -> None:
    signer = make_signer(scheme, b"\x11" * 32, random.Random(1).randbytes)
    cp = Checkpoint("trustchain.example/log", 42, b"\x05" * 32)
    signed = sign(cp, "validator-0", signer)
    parsed = SignedCheckpoint.parse(signed.encode())
    parsed.verify("validator-0", signer.public_key)
    other = make_signer(scheme, b"\x12" * 32, random.Random(2).randbytes)
    with pytest.raises(CheckpointError):
        parsed.verify("validator-0", other.public_key)
    forged = sign(Checkpoint("trustchain.example/log", 43, b"\x05" * 32), "validator-0", other)
    tampered = SignedCheckpoint(forged.checkpoint, Note(forged.note.text, parsed.note.signatures))
    with pytest.raises(CheckpointError):
        tampered.verify("validator-0", signer.public_key)


def test_quantum_resistant_cluster_signs_consensus_with_fn_dsa() -> None:
    result = run(load(SCENARIO))
    assert result.expectation_met, [(v.name, v.detail) for v in result.verdicts if not v.ok]
    world = result.world
    assert all(len(key) == 1793 for key in world.config.replicas)
    certificate = next(rec.event.certificate for rec in world.executions)
    env = certificate.commits[0]
    assert isinstance(env, Envelope)
    key = world.config.replicas[env.sender]
    assert FNDSA1024Verifier().verify(key, env.signing_bytes(), env.signature)
    assert len(env.signature) > 64  # not an Ed25519 signature: the FN-DSA verifier above accepted it
    assert result.summary["rejected_by_honest_replicas"]["bad_signature"] > 0, "forged FN-DSA signatures refused"
