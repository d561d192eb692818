"""View change: prepared certificates survive, committed requests are never lost, timers back off."""

from __future__ import annotations

from consensus_harness import Cluster

from trustchain.app.kvstore import put
from trustchain.consensus.messages import peek_kind
from trustchain.consensus.replica import TIMER_VIEW_CHANGE, Phase


def _first_batch(c: Cluster, replica: int) -> tuple[int, bytes, int]:
    e = c.executed[replica][0]
    return e.seq, e.batch_digest, e.view


def test_crashed_primary_is_replaced_and_requests_complete() -> None:
    c = Cluster(4, clients=2, batch_delay_us=0, view_change_timeout_us=500_000)
    c.down = {0}
    c.submit(0, put(b"a", b"1"))
    c.submit(1, put(b"b", b"2"))
    c.settle(30)
    assert len(c.completed) == 2
    for r in c.replicas[1:]:
        assert r.status.view == 1 and r.status.phase is Phase.NORMAL
        assert r.app.data == {b"a": b"1", b"b": b"2"}  # type: ignore[attr-defined]


def test_prepared_batch_is_carried_into_the_new_view_at_the_same_sequence() -> None:
    c = Cluster(4, clients=1, batch_delay_us=0, view_change_timeout_us=500_000)
    c.drop = lambda src, dst, data: peek_kind(data) == "commit"  # everyone prepares, nobody commits
    c.submit(0, put(b"k", b"v"))
    c.run()
    original = c.replicas[1].internals.slots[1].pre_prepares[0][1]
    assert all(r.internals.slots[1].prepared_view == 0 for r in c.replicas), "all prepared in view 0"
    assert not any(c.executed)
    c.down = {0}
    c.drop = lambda src, dst, data: False
    c.settle(30)
    for i in (1, 2, 3):
        seq, digest, view = _first_batch(c, i)
        assert (seq, digest) == (1, original.batch_digest), "same batch, same sequence number"
        assert view == 1


def test_request_committed_at_one_replica_is_not_lost_by_the_view_change() -> None:
    c = Cluster(4, clients=1, batch_delay_us=0, view_change_timeout_us=500_000)
    # Replicas 2 and 3 never see a commit: only replica 1 (and the primary) execute seq 1 in view 0.
    c.drop = lambda src, dst, data: dst in (2, 3) and peek_kind(data) == "commit"
    c.submit(0, put(b"k", b"v"))
    c.run()
    assert [len(ex) for ex in c.executed] == [1, 1, 0, 0]
    committed = _first_batch(c, 1)
    c.down = {0}
    c.drop = lambda src, dst, data: False
    c.settle(30)
    for i in (2, 3):
        seq, digest, _ = _first_batch(c, i)
        assert (seq, digest) == committed[:2]
    assert len(c.completed) == 1


def test_view_change_timer_backs_off_and_waits_for_a_quorum() -> None:
    c = Cluster(7, clients=1, batch_delay_us=0, view_change_timeout_us=1_000_000)
    c.down = {0, 1}  # the primaries of views 0 and 1
    c.submit(0, put(b"k", b"v"))
    c.run()
    c.fire_timers(1_000_000)
    c.run()
    live = c.replicas[2:]
    assert all(r.status.view == 1 and r.status.in_view_change for r in live)
    assert {r.internals.timers[TIMER_VIEW_CHANGE] - c.now for r in live} == {2_000_000}
    c.fire_timers(2_000_000)
    c.run()
    # Replica 2, primary of view 2, is up: view 2 forms and the request executes.
    assert all(r.status.view == 2 and r.status.phase is Phase.NORMAL for r in live)
    c.settle(5)
    assert len(c.completed) == 1


def test_lone_replica_does_not_race_ahead_through_views() -> None:
    c = Cluster(4, clients=1, batch_delay_us=0, view_change_timeout_us=1_000_000)
    c.down = {0, 1}  # two of four: no quorum of view changes is possible
    c.submit(0, put(b"k", b"v"))
    c.run()
    for _ in range(10):
        c.fire_timers(1_000_000)
        c.run()
    assert [r.status.view for r in c.replicas[2:]] == [1, 1], "without 2f+1 view changes the timer never restarts"


def test_replicas_join_a_view_change_that_f_plus_one_others_started() -> None:
    c = Cluster(4, clients=1, batch_delay_us=0, view_change_timeout_us=1_000_000)
    # Only replicas 1 and 2 (f+1) hear the request, so only their timers run and expire.
    c.drop = lambda src, dst, data: isinstance(src, str) and dst in (0, 3)
    c.submit(0, put(b"k", b"v"))
    c.run()
    assert TIMER_VIEW_CHANGE not in c.replicas[3].internals.timers
    c.fire_timers(1_000_000)
    c.run()
    assert all(r.status.view == 1 and r.status.phase is Phase.NORMAL for r in c.replicas), "0 and 3 joined view 1"
    c.settle(5)
    assert len(c.completed) == 1
