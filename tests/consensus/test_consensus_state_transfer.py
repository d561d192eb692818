"""State transfer after being cut off, and crash recovery from persisted records."""

from __future__ import annotations

from consensus_harness import Cluster

from trustchain.app.kvstore import KVStore, put
from trustchain.consensus.durability import record_seq
from trustchain.consensus.messages import StateReply, pack, peek_kind, seal
from trustchain.consensus.replica import TIMER_CATCHUP, Phase, Replica


def _run_requests(c: Cluster, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        c.submit(0, put(b"k%d" % i, b"v%d" % i))
        c.run()


def test_cut_off_replica_catches_up_from_a_stable_checkpoint_plus_entries() -> None:
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0, checkpoint_interval=2, watermark_window=4,
                catchup_delay_us=100_000)
    c.down = {3}
    _run_requests(c, 9)
    assert c.replicas[0].status.low_watermark == 8 and c.replicas[3].status.last_executed == 0
    c.down = set()
    _run_requests(c, 1, start=9)  # replica 3 now hears commits and checkpoints it cannot execute
    c.settle(10)
    lagger, reference = c.replicas[3], c.replicas[0]
    assert lagger.counters.received["state_reply"] >= 1
    assert lagger.status.last_executed == reference.status.last_executed == 10
    assert lagger.app.data == reference.app.data  # type: ignore[attr-defined]
    assert lagger.status.low_watermark == 10
    assert lagger.internals.checkpoints.own[10][0] == reference.internals.checkpoints.own[10][0]
    assert TIMER_CATCHUP not in lagger.internals.timers


def test_forged_state_reply_is_rejected() -> None:
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0, checkpoint_interval=2, watermark_window=4,
                catchup_delay_us=100_000)
    c.down = {3}
    _run_requests(c, 4)
    lagger = c.replicas[3]
    lagger._timers[TIMER_CATCHUP] = c.now + 1  # pretend a state transfer is in progress (set directly)
    good = c.replicas[0].internals.checkpoints
    forged = StateReply(good.low_watermark, good.stable_snapshot.replace(b"v1", b"XX"), good.stable_proof, (), ())
    lagger.receive(pack(seal(c.signers[1], 1, forged)), c.now)
    assert lagger.counters.rejected["checkpoint_mismatch"] == 1
    assert lagger.status.last_executed == 0 and lagger.app.data == {}  # type: ignore[attr-defined]


def test_restart_from_persisted_records_restores_state_and_votes() -> None:
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0, checkpoint_interval=3, watermark_window=6)
    _run_requests(c, 7)
    # Leave seq 8 prepared but not committed, so replica 2 has an outstanding vote on record.
    c.drop = lambda src, dst, data: peek_kind(data) == "commit"
    _run_requests(c, 1, start=7)
    before = c.replicas[2]
    recovered = Replica.recover(c.config, 2, c.signers[2], KVStore(), list(c.storage[2]))
    assert recovered.status.last_executed == before.status.last_executed == 7
    assert recovered.status.low_watermark == before.status.low_watermark == 6
    assert recovered.app.data == before.app.data  # type: ignore[attr-defined]
    assert recovered.status.view == before.status.view
    assert recovered.internals.slots[8].sent_prepare == before.internals.slots[8].sent_prepare != {}
    assert recovered.internals.slots[8].sent_commit == before.internals.slots[8].sent_commit != {}
    # Storage was truncated at the stable checkpoint: nothing at or below seq 6 but the checkpoint.
    seqs = [record_seq(r) for r in c.storage[2]]
    assert min(s for s in seqs if s is not None) == 6


def test_restarted_replica_rejoins_and_catches_up() -> None:
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0, checkpoint_interval=2, watermark_window=4,
                catchup_delay_us=100_000)
    _run_requests(c, 3)
    c.down = {1}
    _run_requests(c, 6, start=3)
    c.replicas[1] = Replica.recover(c.config, 1, c.signers[1], KVStore(), list(c.storage[1]))
    c.apps[1] = c.replicas[1].app  # type: ignore[assignment]
    assert c.replicas[1].status.last_executed == 3
    c.down = set()
    _run_requests(c, 1, start=9)
    c.settle(10)
    assert c.replicas[1].status.last_executed == c.replicas[0].status.last_executed == 10
    assert c.replicas[1].app.data == c.replicas[0].app.data  # type: ignore[attr-defined]


def _lagging_replica_with_a_pending_request(lost_state_requests: bool) -> Cluster:
    """Replica 1 restarts 6 sequence numbers behind; a request reaches it while its state requests are lost,
    so its view-change timer (1 s) fires before state transfer has caught it up."""
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0, checkpoint_interval=2, watermark_window=4,
                catchup_delay_us=100_000, view_change_timeout_us=1_000_000)
    _run_requests(c, 3)
    c.down = {1}
    _run_requests(c, 6, start=3)
    c.replicas[1] = Replica.recover(c.config, 1, c.signers[1], KVStore(), list(c.storage[1]))
    c.apps[1] = c.replicas[1].app  # type: ignore[assignment]
    c.down = set()
    c.drop = lambda src, dst, data: src == 1 and peek_kind(data) == "state_request"
    _run_requests(c, 1, start=9)
    assert c.replicas[1].status.last_executed < c.replicas[0].status.last_executed == 10
    assert c.replicas[1].status.pending, "the request is pending at the lagging replica: its timer runs"
    for _ in range(10):
        c.fire_timers(100_000)
        c.run()
    r = c.replicas[1]
    assert (r.status.view, r.status.phase, r.internals.view_change.postponed) == (0, Phase.NORMAL, True), \
        "postponed once, not view-changed"
    c.drop = (lambda src, dst, data: src == 1 and peek_kind(data) == "state_request") if lost_state_requests \
        else (lambda src, dst, data: False)
    for _ in range(12):
        c.fire_timers(100_000)
        c.run()
    return c


def test_lagging_replica_catches_up_instead_of_view_changing_alone() -> None:
    c = _lagging_replica_with_a_pending_request(lost_state_requests=False)
    r = c.replicas[1]
    assert (r.status.view, r.status.phase, r.status.last_executed) == (0, Phase.NORMAL, 10)
    assert not r.internals.view_change.postponed and not r.status.pending
    _run_requests(c, 1, start=10)  # and it votes again in view 0
    assert r.status.last_executed == 11
    assert any(e.seq == 11 for e in c.executed[1])


def test_lagging_replica_postpones_only_once() -> None:
    """Peers' commit votes show what was prepared, not executed: waiting for ever on them can deadlock a
    cluster whose stuck slot only a view change unsticks, so the second firing starts the view change."""
    c = _lagging_replica_with_a_pending_request(lost_state_requests=True)
    assert (c.replicas[1].status.view, c.replicas[1].status.phase) == (1, Phase.VIEW_CHANGE)


def test_status_shows_peer_progress_and_a_state_transfer_until_caught_up() -> None:
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0, checkpoint_interval=2, watermark_window=4,
                catchup_delay_us=100_000)
    c.down = {3}
    _run_requests(c, 9)
    assert c.replicas[3].status.peer_executed == 0 and not c.replicas[3].status.state_transfer
    c.down = set()
    c.drop = lambda src, dst, data: dst == 3 and peek_kind(data) == "state_reply"
    _run_requests(c, 1, start=9)
    c.settle(5)
    lagging = c.replicas[3].status
    assert lagging.last_executed == 0 and lagging.peer_executed >= 8 and lagging.state_transfer
    assert c.replicas[0].status.peer_executed - c.replicas[0].status.last_executed <= 0
    c.drop = lambda src, dst, data: False
    c.settle(10)
    caught_up = c.replicas[3].status
    assert caught_up.last_executed == 10 and caught_up.peer_executed <= 10 and not caught_up.state_transfer


def test_status_on_link_up_starts_catch_up_in_an_idle_network() -> None:
    """Replica 3 missed everything and no traffic follows: the STATUS its peers send when their links to it
    come up is all it hears, and f+1 of them make it fetch the state."""
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0, checkpoint_interval=2, watermark_window=4,
                catchup_delay_us=100_000)
    c.down = {3}
    _run_requests(c, 7)
    c.settle(3)
    c.down = set()
    lagger = c.replicas[3]
    c.settle(5)
    assert lagger.status.last_executed == 0  # idle: nothing tells it that it is behind
    c._apply(0, c.replicas[0].link_up(3, c.now))
    c.run()
    assert TIMER_CATCHUP not in lagger.internals.timers  # one peer's claim is not enough
    c._apply(1, c.replicas[1].link_up(3, c.now))
    c.settle(5)
    assert lagger.counters.received["status"] == 2
    assert lagger.status.last_executed == c.replicas[0].status.last_executed == 7
    assert lagger.app.data == c.replicas[0].app.data  # type: ignore[attr-defined]


def test_status_from_a_replica_that_is_not_ahead_changes_nothing() -> None:
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0, checkpoint_interval=2, watermark_window=4)
    _run_requests(c, 3)
    c.settle(3)
    for src in (0, 1, 2):
        c._apply(src, c.replicas[src].link_up(3, c.now))
    c._apply(3, c.replicas[3].link_up(3, c.now))  # to itself: nothing is sent
    c.settle(3)
    assert c.replicas[3].counters.received["status"] == 3
    assert c.replicas[3].counters.received.get("state_reply", 0) == 0
    assert all(r.status.last_executed == 3 for r in c.replicas)
