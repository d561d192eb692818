"""Bad input is rejected, counted and reported, never raised: signatures, views, watermarks, duplicates,
garbage."""

from __future__ import annotations

from dataclasses import replace

import pytest
from consensus_harness import Cluster, make_config
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.app.kvstore import KVStore, put
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import Effect, Rejected
from trustchain.consensus.messages import Commit, Envelope, Prepare, PrePrepare, Request, pack, seal
from trustchain.consensus.replica import Replica
from trustchain.crypto.signing import Ed25519Signer
from trustchain.encoding import DecodeError, decode, encode


def _fresh() -> tuple[Replica, list[Ed25519Signer]]:
    config, signers = make_config(4, batch_delay_us=0)
    return Replica(config, 1, signers[1], KVStore()), signers


def _rejected(replica: Replica, reason: str) -> int:
    return replica.counters.rejected.get(reason, 0)


def _only_rejected(effects: list[Effect], reason: str) -> bool:
    """Nothing but one `Rejected` report, for `reason`, with a detail saying what was wrong."""
    return len(effects) == 1 and isinstance(effects[0], Rejected) and effects[0].reason == reason \
        and bool(effects[0].detail)


def _pp(signers: list[Ed25519Signer], view: int = 0, seq: int = 1, ts: int = 1_000_000) -> PrePrepare:
    req = Request.create(Ed25519Signer(b"\x09" * 32), 1, put(b"k", b"v"))
    return PrePrepare(view, seq, PrePrepare.compute_digest(ts, (req,)), ts, (req,))


def test_bad_signature_is_rejected_and_counted() -> None:
    replica, signers = _fresh()
    env = seal(signers[0], 0, _pp(signers))
    bad = replace(env, signature=bytes([env.signature[0] ^ 1]) + env.signature[1:])
    assert _only_rejected(replica.receive(pack(bad), 1_000_000), "bad_signature")
    assert _rejected(replica, "bad_signature") == 1
    assert 1 not in replica.internals.slots


def test_message_signed_by_another_replica_than_it_claims_is_rejected() -> None:
    replica, signers = _fresh()
    env = seal(signers[2], 0, _pp(signers))  # replica 2's key, claiming to be replica 0
    assert _only_rejected(replica.receive(pack(env), 1_000_000), "bad_signature")
    assert _rejected(replica, "bad_signature") == 1


def test_pre_prepare_from_a_non_primary_is_rejected() -> None:
    replica, signers = _fresh()
    assert _only_rejected(replica.receive(pack(seal(signers[2], 2, _pp(signers))), 1_000_000), "not_primary")
    assert _rejected(replica, "not_primary") == 1


def test_wrong_view_and_out_of_window_sequences_are_rejected() -> None:
    replica, signers = _fresh()
    replica._view = 2  # set directly: reaching view 2 for real takes a whole view change
    replica.receive(pack(seal(signers[1 - 1], 0, Prepare(1, 1, b"d" * 32))), 1_000_000)
    assert _rejected(replica, "stale_view") == 1
    replica._view = 0
    far = 2 * replica.config.watermark_window + 1  # beyond the next window too (just beyond is held)
    replica.receive(pack(seal(signers[2], 2, Prepare(0, far, b"d" * 32))), 1_000_000)
    assert _rejected(replica, "outside_watermarks") == 1
    assert far not in replica.internals.slots and not replica.internals.ahead


def test_duplicate_and_conflicting_votes() -> None:
    replica, signers = _fresh()
    vote = seal(signers[2], 2, Commit(0, 1, b"a" * 32))
    replica.receive(pack(vote), 1_000_000)
    replica.receive(pack(vote), 1_000_000)  # exact duplicate: ignored, not an offence
    assert sum(replica.counters.rejected.values()) == 0
    replica.receive(pack(seal(signers[2], 2, Commit(0, 1, b"b" * 32))), 1_000_000)
    assert _rejected(replica, "double_vote") == 1


def test_equivocating_primary_is_detected() -> None:
    replica, signers = _fresh()
    replica.receive(pack(seal(signers[0], 0, _pp(signers, ts=1_000_000))), 1_000_000)
    replica.receive(pack(seal(signers[0], 0, _pp(signers, ts=1_000_001))), 1_000_000)
    assert _rejected(replica, "equivocation") == 1
    assert replica.internals.slots[1].sent_prepare == {0: _pp(signers, ts=1_000_000).batch_digest}


def test_prepare_from_primary_and_unknown_sender_are_rejected() -> None:
    replica, signers = _fresh()
    replica.receive(pack(seal(signers[0], 0, Prepare(0, 1, b"d" * 32))), 1_000_000)
    assert _rejected(replica, "prepare_from_primary") == 1
    env = seal(signers[0], 0, Prepare(0, 1, b"d" * 32))
    replica.receive(pack(replace(env, sender=77)), 1_000_000)
    assert _rejected(replica, "unknown_sender") == 1


def test_bad_client_signature_and_bad_batch_digest() -> None:
    replica, signers = _fresh()
    req = Request.create(Ed25519Signer(b"\x05" * 32), 1, put(b"k", b"v"))
    replica.receive(pack(replace(req, operation=put(b"k", b"w"))), 1_000_000)
    assert _rejected(replica, "bad_client_signature") == 1
    pp = replace(_pp(signers), batch_digest=b"\x00" * 32)
    replica.receive(pack(seal(signers[0], 0, pp)), 1_000_000)
    assert _rejected(replica, "bad_digest") == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    replica, _ = _fresh()
    effects = replica.receive(data, 1_000_000)
    assert replica.status.last_executed == 0
    counters = replica.counters
    handled = sum(counters.rejected.values()) + sum(counters.received.values())
    assert handled >= 1, "every packet is either processed or counted as rejected"
    reported = [e.reason for e in effects if isinstance(e, Rejected)]
    assert sum(counters.rejected.values()) == len(reported), "every rejection is also reported"


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_mutated_valid_messages_never_raise_and_never_verify(position: int, xor: int) -> None:
    replica, signers = _fresh()
    wire = bytearray(pack(seal(signers[0], 0, _pp(signers))))
    i = position % len(wire)
    wire[i] ^= xor or 1
    replica.receive(bytes(wire), 1_000_000)
    slots = replica.internals.slots
    assert 1 not in slots or not slots[1].sent_prepare, "a mutated pre-prepare was accepted"


def test_truncated_messages_raise_decode_error_only() -> None:
    _, signers = _fresh()
    wire = pack(seal(signers[0], 0, _pp(signers)))
    body = wire[1:]
    for cut in range(len(body)):
        with pytest.raises(DecodeError):
            decode(Envelope, body[:cut])
    with pytest.raises(DecodeError):
        decode(Envelope, body + b"\x00")


def test_config_rejects_bad_parameters_with_reasons() -> None:
    config, _ = make_config(4)
    with pytest.raises(ValueError, match="at least one replica"):
        ClusterConfig(())
    with pytest.raises(ValueError, match="not a checkpoint"):
        ClusterConfig(config.replicas, checkpoint_interval=10, watermark_window=20, base_seq=15)
    with pytest.raises(ValueError, match="watermark_window"):
        ClusterConfig(config.replicas, checkpoint_interval=10, watermark_window=5)
    with pytest.raises(ValueError, match="distinct"):
        ClusterConfig((config.replicas[0],) * 4)


def test_encoding_is_canonical() -> None:
    _, signers = _fresh()
    pp = _pp(signers)
    assert encode(decode(PrePrepare, encode(pp))) == encode(pp)
    assert decode(PrePrepare, encode(pp)) == pp


def test_cluster_survives_a_flood_of_garbage() -> None:
    c = Cluster(4, clients=1, batch_delay_us=0)
    for r in c.replicas:
        for junk in (b"", b"\x00", b"\x45" + b"\xff" * 40, b"\x51" + b"\x00" * 10):
            r.receive(junk, c.now)
    c.submit(0, put(b"k", b"v"))
    c.run()
    assert len(c.completed) == 1
    assert all(_rejected(r, "malformed") == 4 for r in c.replicas)
