"""Observers follow the validators from commit certificates alone, refuse what a quorum did not commit,
and catch up from any peer without trusting it."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from tests.consensus.consensus_harness import Cluster, key_seed
from trustchain.app.kvstore import KVStore, put
from trustchain.consensus.certificates import InvalidMessage
from trustchain.consensus.effects import Executed, Persist, PersistStable, StateRestored
from trustchain.consensus.feed import (
    FEED_BATCH,
    FEED_CHECKPOINT,
    FEED_PULL,
    FEED_PULL_REPLY,
    CatchUpReply,
    CatchUpRequest,
    CertificateCache,
    CheckpointCertificate,
    pack_feed,
)
from trustchain.consensus.messages import CommittedEntry, Envelope, PrePrepare, Request, seal
from trustchain.consensus.observer import Observer, SendToPeer, ValidatorFeed
from trustchain.crypto.signing import ED25519, Ed25519Signer
from trustchain.encoding import decode, encode

VALIDATORS = ("v0", "v1", "v2", "v3")


@pytest.fixture(scope="module")
def cluster() -> Cluster:
    c = Cluster(n=4, clients=2, batch_size=2, checkpoint_interval=4, watermark_window=16)
    for i in range(12):
        c.submit(i % 2, put(b"k%d" % (i % 5), b"value-%d" % i))
        c.settle(rounds=5)
    assert c.replicas[0].status.last_executed >= 8
    return c


def _observer(c: Cluster, name: str = "o1", children: tuple[str, ...] = ("o2", "o3")) -> Observer:
    certs = CertificateCache(c.config, ED25519)
    return Observer(c.config, name, KVStore(), certs, children, VALIDATORS, ("o1", "o2", "o3"), random.Random(1))


def _batches(c: Cluster) -> list[bytes]:
    return [pack_feed(FEED_BATCH, e.seq, e.certificate) for e in c.executed[0]]


def _stable(c: Cluster) -> PersistStable:
    stables = [r for r in c.storage[0] if isinstance(r, PersistStable)]
    assert stables, "the cluster took a stable checkpoint"
    return stables[-1]


def test_executes_in_order_and_matches_validators(cluster: Cluster) -> None:
    obs = _observer(cluster)
    packets = _batches(cluster)
    executed: list[int] = []
    for packet in reversed(packets):  # worst order: everything arrives before what it follows
        for e in obs.receive("v1", packet, 0):
            if isinstance(e, Executed):
                executed.append(e.seq)
    assert executed == [e.seq for e in cluster.executed[0]]
    assert obs.app.data == cluster.apps[0].data  # type: ignore[attr-defined]
    assert obs.last_executed == cluster.replicas[0].status.last_executed


def test_forwards_verified_batches_to_children_except_sender(cluster: Cluster) -> None:
    obs = _observer(cluster)
    effects = obs.receive("o2", _batches(cluster)[0], 0)
    assert [e.peer for e in effects if isinstance(e, SendToPeer)] == ["o3"]
    assert obs.receive("v0", _batches(cluster)[0], 0) == []  # a duplicate is dropped, not forwarded again


def _first_entry(c: Cluster) -> tuple[CommittedEntry, PrePrepare]:
    entry = c.executed[0][0].certificate
    return entry, decode(PrePrepare, entry.pre_prepare.body)


def _forged(entry: CommittedEntry, how: str, c: Cluster) -> CommittedEntry:
    quorum = 3  # n = 4: 2f+1
    if how == "one_too_few":
        return replace(entry, commits=entry.commits[: quorum - 1])
    if how == "repeated_signer":
        return replace(entry, commits=(entry.commits[0],) * quorum)
    if how == "wrong_signer":  # a commit signed by a key outside the validator set, claiming a validator
        outsider = Ed25519Signer(key_seed("not-a-validator"))
        body = entry.commits[0]
        forged = seal(outsider, body.sender, body.open())
        return replace(entry, commits=(forged, *entry.commits[1:quorum]))
    if how == "wrong_digest":  # the batch swapped for another under the same commits
        pp = decode(PrePrepare, entry.pre_prepare.body)
        client = Ed25519Signer(key_seed("client-0"))
        other = Request.create(client, 999, put(b"stolen", b"value"))
        env = seal(c.signers[pp.view % 4], pp.view % 4, replace(pp, batch=(other,)))
        return replace(entry, pre_prepare=env)
    raise AssertionError(how)


@pytest.mark.parametrize(("how", "reason"), [
    ("one_too_few", "committed_without_quorum"),
    ("repeated_signer", "duplicate_voter"),
    ("wrong_signer", "bad_signature"),
    ("wrong_digest", "bad_digest"),
])
def test_rejects_a_forged_certificate(cluster: Cluster, how: str, reason: str) -> None:
    obs = _observer(cluster)
    entry, pp = _first_entry(cluster)
    effects = obs.receive("o2", pack_feed(FEED_BATCH, pp.seq, _forged(entry, how, cluster)), 0)
    assert not any(isinstance(e, Executed | SendToPeer) for e in effects)
    assert obs.rejected == {reason: 1}
    assert obs.last_executed == 0
    # the genuine batch is still accepted afterwards
    assert any(isinstance(e, Executed) for e in obs.receive("v0", _batches(cluster)[0], 0))


def test_rejects_a_batch_claiming_another_sequence_number(cluster: Cluster) -> None:
    obs = _observer(cluster)
    entry, pp = _first_entry(cluster)
    obs.receive("o2", pack_feed(FEED_BATCH, pp.seq + 1, entry), 0)
    assert obs.rejected == {"seq_mismatch": 1}


def test_checkpoint_certificate_makes_own_state_stable(cluster: Cluster) -> None:
    obs = _observer(cluster)
    for packet in _batches(cluster):
        obs.receive("v0", packet, 0)
    stable = _stable(cluster)
    packet = pack_feed(FEED_CHECKPOINT, stable.seq, CheckpointCertificate(stable.seq, stable.proof))
    effects = obs.receive("v0", packet, 0)
    assert obs.status.stable_seq == stable.seq
    assert {e.peer for e in effects if isinstance(e, SendToPeer)} == {"o2", "o3"}
    weak = CheckpointCertificate(stable.seq + 4, stable.proof[:2])
    obs.receive("v0", pack_feed(FEED_CHECKPOINT, stable.seq + 4, weak), 0)
    assert obs.rejected.get("checkpoint_mismatch", 0) + obs.rejected.get("checkpoint_without_quorum", 0) == 1


def _catch_up(server: Observer, client: Observer) -> list[object]:
    pulls = [e for e in client.on_timer("observer-sync", 2_000_000) if isinstance(e, SendToPeer)]
    assert len(pulls) == 1
    client._asked = server.name  # the draw went elsewhere; ask `server` instead
    replies = server.receive(client.name, pulls[0].data, 2_000_000)
    out: list[object] = []
    for r in replies:
        assert isinstance(r, SendToPeer)
        out.extend(client.receive(server.name, r.data, 2_000_000))
    return out


def test_catches_up_from_a_peer_snapshot_and_batches(cluster: Cluster) -> None:
    server = _observer(cluster, "o2")
    for packet in _batches(cluster):
        server.receive("v0", packet, 0)
    stable = _stable(cluster)
    server.receive("v0", pack_feed(FEED_CHECKPOINT, stable.seq, CheckpointCertificate(stable.seq, stable.proof)), 0)
    late = _observer(cluster, "o1")
    effects = _catch_up(server, late)
    assert any(isinstance(e, StateRestored) and e.seq == stable.seq for e in effects)
    assert late.last_executed == cluster.replicas[0].status.last_executed
    assert late.app.data == cluster.apps[0].data  # type: ignore[attr-defined]


def test_refuses_a_forged_snapshot_and_unsolicited_replies(cluster: Cluster) -> None:
    stable = _stable(cluster)
    liar = CatchUpReply(stable.seq, stable.snapshot + b"x", stable.proof, ())
    late = _observer(cluster, "o1")
    late.on_timer("observer-sync", 2_000_000)
    late._asked = "o9"
    late.receive("o9", pack_feed(FEED_PULL_REPLY, stable.seq, liar), 0)
    assert late.last_executed == 0 and late.rejected == {"checkpoint_mismatch": 1}
    late.receive("o8", pack_feed(FEED_PULL_REPLY, stable.seq, liar), 0)
    assert late.rejected["unsolicited_reply"] == 1


def test_validator_feed_sends_certified_batches_and_serves_pulls(cluster: Cluster) -> None:
    feed = ValidatorFeed(("o1", "o2"))
    sends = feed.on_effects(cluster.executed[0])
    assert len(sends) == 2 * len(cluster.executed[0])
    obs = _observer(cluster)
    req = pack_feed(FEED_PULL, 0, CatchUpRequest(0, 0))
    for reply in feed.receive("o1", req, 0):
        obs._asked = "v0"
        obs.receive("v0", reply.data, 0)
    assert obs.last_executed == cluster.replicas[0].status.last_executed
    with pytest.raises(InvalidMessage, match="pull_rate"):
        feed.receive("o1", req, 2)


def test_forward_write_goes_to_f_plus_one_validators(cluster: Cluster) -> None:
    obs = _observer(cluster)
    sends = obs.forward_write(b"request")
    assert len({s.peer for s in sends if isinstance(s, SendToPeer)}) == 2
    assert all(isinstance(s, SendToPeer) and s.peer in VALIDATORS for s in sends)


def test_cache_verifies_each_packet_once(cluster: Cluster) -> None:
    certs = CertificateCache(cluster.config, ED25519)
    packet = _batches(cluster)[0]
    for _ in range(5):
        certs.batch(packet)
    assert certs.checked == 1
    assert encode(decode(Envelope, encode(cluster.executed[0][0].certificate.commits[0])))


def test_validator_feed_takes_a_stable_checkpoint_still_wrapped_in_its_persist(cluster: Cluster) -> None:
    """A driver hands the replica's effects as they come: the stable checkpoint inside a Persist."""
    stable = _stable(cluster)
    feed = ValidatorFeed(("o1", "o2"))
    sends = feed.on_effects([Persist(stable)])
    assert [(s.peer, s.data[0]) for s in sends] == [("o1", FEED_CHECKPOINT), ("o2", FEED_CHECKPOINT)]
    assert feed.log.stable_seq == stable.seq and feed.log.stable_snapshot == stable.snapshot


def test_recovers_from_persisted_records_and_verifies_them(cluster: Cluster) -> None:
    stable = _stable(cluster)
    after = [e.certificate for e in cluster.executed[0] if e.seq > stable.seq]
    obs = _observer(cluster)
    effects = obs.recover(stable, after)
    assert [e.seq for e in effects if isinstance(e, StateRestored)] == [stable.seq]
    assert [e.seq for e in effects if isinstance(e, Executed)] == [e.seq for e in cluster.executed[0]
                                                                    if e.seq > stable.seq]
    assert obs.app.data == cluster.apps[0].data  # type: ignore[attr-defined]
    client = cluster.executed[0][-1].requests[0].client
    record = obs.client_record(client)
    assert record is not None and record == cluster.replicas[0].client_record(client)


def test_recovery_refuses_a_tampered_snapshot_and_a_forged_batch(cluster: Cluster) -> None:
    stable = _stable(cluster)
    tampered = replace(stable, snapshot=stable.snapshot[:-1] + bytes([stable.snapshot[-1] ^ 1]))
    first, _ = _first_entry(cluster)
    short = replace(first, commits=first.commits[:cluster.config.quorum - 1])
    obs = _observer(cluster)
    effects = obs.recover(tampered, [short])
    assert not any(isinstance(e, StateRestored | Executed) for e in effects)
    assert obs.rejected == {"checkpoint_mismatch": 1, "committed_without_quorum": 1}, obs.rejected
    assert obs.last_executed == 0 and obs.status.held == 0
