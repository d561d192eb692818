"""CTApplication: deterministic replicated execution, per-validator signatures, quorum trust, snapshots."""

from __future__ import annotations

import hashlib

import pytest
from ct_certs import make_cert

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import app as appmod
from trustchain.ct import merkle
from trustchain.ct import sct as sctmod
from trustchain.ct.app import CTApplication, CTCommand, decode_result
from trustchain.ct.entry import X509Entry
from trustchain.ct.validators import QuorumError, Validator, ValidatorSet, merge
from trustchain.encoding import DecodeError, encode

ORIGIN = "test.trustchain/ct"


def signer(i: int) -> Ed25519Signer:
    return Ed25519Signer(hashlib.sha256(b"validator %d" % i).digest())


def replicas(n: int = 4) -> list[CTApplication]:
    return [CTApplication(signer(i), f"validator-{i}", ORIGIN) for i in range(n)]


def ops(*payloads: bytes) -> list[Operation]:
    return [Operation(b"client", i + 1, p) for i, p in enumerate(payloads)]


CERTS = [make_cert(f"h{i}.example.com", serial=i + 1) for i in range(5)]


def test_replicas_return_identical_results_and_timestamps_from_consensus_time() -> None:
    apps = replicas()
    batch = ops(*(appmod.add_chain(c) for c in CERTS[:3]))
    outs = [a.execute(batch, ExecutionContext(1, 1_700_000_000_123_456)) for a in apps]
    assert all(o == outs[0] for o in outs)
    results = [decode_result(r) for r in outs[0]]
    assert [r.status for r in results] == ["ok"] * 3
    assert [r.index for r in results] == [0, 1, 2]
    assert {r.timestamp_ms for r in results} == {1_700_000_000_123}
    assert results[2].tree_size == 3 and results[2].root_hash == apps[0].log.root_at(3)
    assert results[1].leaf_hash == apps[0].log.leaf_hash(1)
    assert len({a.snapshot() for a in apps}) == 1


def test_resubmission_returns_original_position_and_time() -> None:
    app = replicas(1)[0]
    app.execute(ops(appmod.add_chain(CERTS[0])), ExecutionContext(1, 5_000_000))
    again = decode_result(app.execute(ops(appmod.add_chain(CERTS[0])), ExecutionContext(2, 9_000_000))[0])
    assert (again.status, again.index, again.timestamp_ms, again.tree_size) == ("duplicate", 0, 5_000, 1)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"\x00garbage", "command"),
        (encode(CTCommand("delete", CERTS[0])), "op"),
        (appmod.add_chain(b"not der at all"), "certificate"),
        (appmod.add_chain(CERTS[0] + b"x"), "certificate"),
        (appmod.add_chain(b""), "certificate"),
        (appmod.add_pre_chain(CERTS[0], (CERTS[1],)), "op"),  # precertificates need accepted roots
        (appmod.add_pre_chain(b"\x30\x01", ()), "precertificate"),
        (appmod.add_chain(CERTS[0], (b"\x30",)), "chain[0]"),
    ],
)
def test_bad_operations_are_results_naming_the_field(payload: bytes, field: str) -> None:
    app = replicas(1)[0]
    res = decode_result(app.execute(ops(payload), ExecutionContext(1, 1000))[0])
    assert res.status == "error" and res.detail.startswith(field + ":"), res.detail
    assert app.size == 0


def test_checkpoint_command() -> None:
    app = replicas(1)[0]
    out = app.execute(ops(appmod.add_chain(CERTS[1]), appmod.checkpoint_command()), ExecutionContext(1, 2_000_000))
    added, cp = (decode_result(r) for r in out)
    assert added.status == "ok" and cp.tree_size == 1 and cp.root_hash == app.log.root_at(1)
    sct = app.sct(0)
    assert sct.extensions == b"\x00\x00\x05" + b"\x00" * 5  # static-ct-api leaf_index 0
    sctmod.verify(sct, app.signer.public_key, X509Entry(CERTS[1]))


def test_shard_capacity_is_enforced() -> None:
    app = CTApplication(signer(0), "validator-0", ORIGIN, max_entries=2)
    out = app.execute(ops(*(appmod.add_chain(c) for c in CERTS[:3])), ExecutionContext(1, 1))
    assert [decode_result(r).status for r in out] == ["ok", "ok", "error"]
    assert decode_result(out[2]).detail.startswith("log: shard is full")
    again = decode_result(app.execute(ops(appmod.add_chain(CERTS[0])), ExecutionContext(2, 2))[0])
    assert again.status == "duplicate"


def test_snapshot_restore_roundtrip_and_rejects_tampering() -> None:
    a, b = replicas(2)
    a.execute(ops(*(appmod.add_chain(c) for c in CERTS)), ExecutionContext(1, 42_000))
    snap = a.snapshot()
    b.restore(snap)
    assert b.snapshot() == snap and b.log.root_at(5) == a.log.root_at(5)
    nxt = ops(appmod.add_chain(make_cert("new.example.com")))
    assert a.execute(nxt, ExecutionContext(2, 50_000)) == b.execute(nxt, ExecutionContext(2, 50_000))
    tampered = bytearray(snap)
    tampered[-1] ^= 1  # the committed root
    c = replicas(1)[0]
    with pytest.raises(DecodeError, match="root_hash"):
        c.restore(bytes(tampered))
    assert c.size == 0  # nothing was half-restored


def test_validators_sign_identical_content_and_a_quorum_is_trusted() -> None:
    apps = replicas(4)
    batch = ops(*(appmod.add_chain(c) for c in CERTS[:2]))
    for a in apps:
        a.execute(batch, ExecutionContext(1, 7_000_000))
    vset = ValidatorSet([Validator(a.key_name, a.signer.public_key) for a in apps])
    assert vset.threshold == 3
    signed = [a.signed_checkpoint() for a in apps]
    assert len({s.checkpoint for s in signed}) == 1
    with pytest.raises(QuorumError, match="1 valid validator signatures, needs 3"):
        vset.verify_checkpoint(signed[0])
    merged = merge(signed[:3])
    assert vset.verify_checkpoint(merged) == ["validator-0", "validator-1", "validator-2"]
    scts = [a.sct(1) for a in apps]
    assert len({s.timestamp for s in scts}) == 1 and len({s.signature for s in scts}) == 4
    assert vset.verify_scts(X509Entry(CERTS[1]), scts[:3]) == ["validator-0", "validator-1", "validator-2"]
    with pytest.raises(QuorumError, match="2 valid SCTs"):
        vset.verify_scts(X509Entry(CERTS[1]), [*scts[:2], apps[3].sct(0)])  # one is for another entry


def test_merge_refuses_different_bodies() -> None:
    a = replicas(1)[0]
    first = a.signed_checkpoint()
    a.execute(ops(appmod.add_chain(CERTS[0])), ExecutionContext(1, 1))
    with pytest.raises(QuorumError, match="bodies differ"):
        merge([first, a.signed_checkpoint()])
    assert first.checkpoint.root_hash == merkle.EMPTY_ROOT
