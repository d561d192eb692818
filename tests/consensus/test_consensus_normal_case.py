"""Normal case, batching, pipelining, checkpoints and garbage collection on the synchronous harness."""

from __future__ import annotations

import pytest
from consensus_harness import Cluster

from trustchain.app.kvstore import STATUS_OK, KVResult, decode_result, get, put
from trustchain.consensus.certificates import SignatureChecker, check_checkpoint_proof, check_committed
from trustchain.consensus.effects import Rejected
from trustchain.consensus.messages import PrePrepare, Request, pack, peek_kind, seal
from trustchain.consensus.replica import TIMER_BATCH
from trustchain.crypto.signing import ED25519, Ed25519Signer


def test_request_completes_with_f_plus_one_matching_replies_and_replicas_agree() -> None:
    c = Cluster(4, clients=2, batch_delay_us=0)
    c.submit(0, put(b"a", b"1"))
    c.run()
    c.submit(1, get(b"a"))
    c.run()
    assert [decode_result(e.result) for e in c.completed] == [KVResult(STATUS_OK, size=1),
                                                             KVResult(STATUS_OK, value=b"1", size=1)]
    for app in c.apps:
        assert app.data == {b"a": b"1"}
    digests = {tuple((e.seq, e.batch_digest) for e in ex) for ex in c.executed}
    assert len(digests) == 1 and len(next(iter(digests))) == 2


def test_every_execution_carries_a_valid_commit_certificate() -> None:
    c = Cluster(4, clients=3)
    for i in range(3):
        c.submit(i, put(b"k%d" % i, b"v"))
    c.settle(5)
    checker = SignatureChecker(c.config, ED25519)
    for ex in c.executed:
        assert ex, "every replica executed something"
        for e in ex:
            pp = check_committed(checker, e.certificate)
            assert (pp.seq, pp.batch_digest) == (e.seq, e.batch_digest)
            assert len({env.sender for env in e.certificate.commits}) >= c.config.quorum


def test_primary_batches_up_to_batch_size() -> None:
    c = Cluster(4, clients=8, batch_size=4, batch_delay_us=50_000)
    for i in range(8):
        c.submit(i, put(b"k", b"%d" % i))
    c.run()
    sizes = [len(e.requests) for e in c.executed[1]]
    assert sizes == [4, 4]
    assert len(c.completed) == 8


def test_partial_batch_waits_for_the_batch_delay_then_flushes() -> None:
    c = Cluster(4, clients=3, batch_size=8, batch_delay_us=50_000)
    for i in range(3):
        c.submit(i, put(b"k", b"%d" % i))
    c.run()
    assert not c.completed, "a partial batch must wait for the delay"
    assert (0, TIMER_BATCH) in c.timers
    c.fire_timers(50_000)
    c.run()
    assert [len(e.requests) for e in c.executed[2]] == [3]
    assert len(c.completed) == 3


def test_pipelining_keeps_several_sequences_in_flight_within_the_watermarks() -> None:
    c = Cluster(4, clients=12, batch_size=1, batch_delay_us=0, checkpoint_interval=4, watermark_window=8)
    # Replicas cannot hear each other: nothing commits, so only the primary's own proposals happen.
    c.drop = lambda src, dst, data: isinstance(src, int) and isinstance(dst, int)
    for i in range(12):
        c.submit(i, put(b"k", b"%d" % i))
    c.run()
    primary = c.replicas[0]
    assert primary.status.next_seq - 1 == 8, "the primary proposes up to h + L and no further"
    assert len(primary.internals.unproposed) == 4
    # Heal: the lost proposals are never re-sent, so the backups' timers expire and a view change
    # re-proposes the pending requests.
    c.drop = lambda src, dst, data: False
    c.settle(60)
    assert len(c.completed) == 12
    assert all(r.status.last_executed == 12 for r in c.replicas)


def test_checkpoints_become_stable_and_garbage_collect_the_log() -> None:
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0, checkpoint_interval=4, watermark_window=8)
    for i in range(10):
        c.submit(0, put(b"k", b"%d" % i))
        c.run()
    checker = SignatureChecker(c.config, ED25519)
    for r in c.replicas:
        assert r.status.last_executed == 10
        assert r.status.low_watermark == 8
        cp = r.internals.checkpoints
        assert all(seq > 8 for seq in r.internals.slots), "slots at or below the stable checkpoint are collected"
        assert all(seq > 8 for seq in cp.committed_log)
        assert min(cp.votes, default=8) >= 8
        d = check_checkpoint_proof(checker, cp.stable_proof, 8, None)
        assert d == cp.own[8][0]
    assert len({r.internals.checkpoints.own[8][0] for r in c.replicas}) == 1


def test_duplicate_request_is_executed_once_and_the_reply_is_resent() -> None:
    c = Cluster(4, clients=1, batch_delay_us=0)
    c.submit(0, put(b"x", b"1"))
    c.run()
    req = Request.create(c.clients[0].signer, 1, put(b"x", b"1"))
    for i in range(4):
        effects = c.replicas[i].receive(pack(req), c.now)
        assert any(type(e).__name__ == "SendToClient" for e in effects), "cached reply is resent"
    c.run()
    assert all(len(ex) == 1 for ex in c.executed)
    assert all(app.applied == 1 for app in c.apps)


def test_consensus_time_is_monotonic_and_identical_on_every_replica() -> None:
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0)
    for i in range(5):
        c.submit(0, put(b"k", b"%d" % i))
        c.run()
        c.now += 1000
    times = [[e.timestamp_us for e in ex] for ex in c.executed]
    assert all(t == times[0] for t in times)
    assert times[0] == sorted(times[0])


def test_backup_rejects_pre_prepare_with_a_skewed_timestamp() -> None:
    c = Cluster(4, clients=1, max_clock_skew_us=1_000_000)
    replica = c.replicas[1]
    req = Request.create(Ed25519Signer(b"\x07" * 32), 1, put(b"a", b"b"))
    pp = PrePrepare(0, 1, PrePrepare.compute_digest(c.now + 5_000_000, (req,)), c.now + 5_000_000, (req,))
    env = seal(c.signers[0], 0, pp)
    effects = replica.receive(pack(env), c.now)
    assert len(effects) == 1 and isinstance(effects[0], Rejected) and effects[0].reason == "timestamp_skew"
    assert replica.counters.rejected["timestamp_skew"] == 1
    slots = replica.internals.slots
    assert 1 not in slots or 0 not in slots[1].sent_prepare


def test_messages_just_above_a_lagging_window_are_held_until_the_window_moves() -> None:
    """The primary's checkpoint becomes stable before a backup's, and it proposes up to its new h+L at
    once: the backup, still on the old window, must not lose those pre-prepares and votes (nobody sends
    them again), or slots it is needed for never prepare."""
    c = Cluster(4, clients=8, batch_size=1, batch_delay_us=0, checkpoint_interval=2, watermark_window=4)
    held: list[tuple[int | str, int | str, bytes]] = []

    def hold_checkpoints_to_3(src: int | str, dst: int | str, data: bytes) -> bool:
        if dst == 3 and peek_kind(data) == "checkpoint":
            held.append((src, dst, data))
            return True
        return False

    c.drop = hold_checkpoints_to_3
    for i in range(8):
        c.submit(i, put(b"k%d" % i, b"v"))
    c.run()
    r3 = c.replicas[3]
    assert c.replicas[0].status.last_executed == 8
    assert (r3.status.low_watermark, r3.status.last_executed) == (0, 4)  # its window is still (0, 4]
    assert r3.internals.ahead and "outside_watermarks" not in r3.counters.rejected
    c.drop = lambda src, dst, data: False
    c.queue.extend(held)
    c.run()
    # It executed 5..8 itself from the held messages (timers never fired here: no state transfer).
    assert [e.seq for e in c.executed[3]] == list(range(1, 9)) and not r3.internals.ahead


@pytest.mark.parametrize("n", [1, 2, 3])
def test_clusters_below_four_replicas_order_with_f_zero(n: int) -> None:
    """With f = 0 a quorum is a majority-plus (1 of 1, 2 of 2, 2 of 3): a set shrunk by a change still orders."""
    c = Cluster(n, clients=1, batch_delay_us=0)
    c.submit(0, put(b"a", b"1"))
    c.run()
    assert [decode_result(e.result) for e in c.completed] == [KVResult(STATUS_OK, size=1)]
    assert all(app.data == {b"a": b"1"} for app in c.apps)
