"""The state-transfer policy on its own (`trustchain/consensus/state_transfer.py`): the catch-up goal a
Byzantine peer cannot inflate, when a replica counts itself behind, whom it asks, and what a peer serves."""

from __future__ import annotations

from consensus_harness import Cluster

from trustchain.app.kvstore import put
from trustchain.consensus.messages import StateRequest
from trustchain.consensus.state_transfer import PeerProgress, ServedState, answer, weak_quorum_value


def test_goal_is_the_f_plus_one_th_highest_report() -> None:
    assert weak_quorum_value({1: 10**9, 2: 7, 3: 5}, 2) == 7  # one liar (f = 1) cannot raise it
    assert weak_quorum_value({1: 10**9}, 2) == 0  # fewer reports than f+1: no goal
    p = PeerProgress(2)
    for peer, seq in [(1, 4), (1, 9), (1, 3), (2, 8), (3, 2)]:
        p.saw_sequence(peer, seq)
    assert p.executed == {1: 9, 2: 8, 3: 2}  # only ever rises
    assert p.target() == (8, 0)


def test_behind_on_sequence_view_view_change_or_window() -> None:
    p = PeerProgress(2)
    assert not p.behind(0, 0, False, 64)
    p.saw_sequence(1, 5)
    p.saw_sequence(2, 5)
    assert p.behind(4, 0, False, 64) and not p.behind(5, 0, False, 64)
    p.saw_view(1, 3)
    p.saw_view(2, 3)
    assert p.behind(5, 2, False, 64)  # peers are in a later view
    assert p.behind(5, 3, True, 64) and not p.behind(5, 3, False, 64)  # they formed the view we wait for
    p.saw_beyond_window(1, 100)
    p.saw_beyond_window(2, 90)
    assert p.behind(5, 3, False, 64) and not p.behind(5, 3, False, 90)


def test_pick_peer_rotates_among_those_that_reached_the_goal() -> None:
    p = PeerProgress(2)
    for peer, seq in [(0, 9), (1, 9), (2, 3)]:
        p.saw_sequence(peer, seq)
    assert [p.pick_peer(3, 4, r) for r in range(4)] == [0, 1, 0, 1]
    assert [PeerProgress(2).pick_peer(3, 4, r) for r in range(3)] == [0, 1, 2]  # no reports: anyone else


def _served(c: Cluster, i: int) -> ServedState:
    status, held = c.replicas[i].status, c.replicas[i].internals
    cp = held.checkpoints
    return ServedState(status.last_executed, status.low_watermark, status.view, not status.in_view_change,
                       held.view_change.current_new_view, cp.stable_proof, cp.stable_snapshot, cp.committed_log, 3)


def test_answer_serves_checkpoint_snapshot_and_entries_only_as_needed() -> None:
    c = Cluster(4, clients=1, batch_size=1, batch_delay_us=0, checkpoint_interval=2, watermark_window=4)
    for k in range(7):
        c.submit(0, put(b"k%d" % k, b"v"))
        c.run()
    served = _served(c, 0)
    assert (served.last_executed, served.low_watermark) == (7, 6)
    assert answer(StateRequest(7, 6, 0, False), served) is None  # nothing lacking
    behind = answer(StateRequest(6, 6, 0, False), served)
    assert behind is not None and behind.checkpoint_seq == 0 and behind.snapshot == b""
    log = c.replicas[0].internals.checkpoints.committed_log
    assert [e.pre_prepare.digest for e in behind.entries] == [log[7].pre_prepare.digest]
    stale = answer(StateRequest(6, 4, 0, False), served)  # executed that far, but its checkpoint lags
    assert stale is not None and stale.checkpoint_seq == 6 and stale.snapshot == b"" and stale.checkpoint_proof
    far = answer(StateRequest(1, 0, 0, False), served)  # needs the snapshot, then entries after it
    assert far is not None and far.checkpoint_seq == 6 and far.snapshot == served.stable_snapshot
    assert len(far.entries) == 1 and far.new_view == ()
