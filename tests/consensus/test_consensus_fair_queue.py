"""The primary's batching queue serves clients in turn, so one client's flood cannot starve others."""

from __future__ import annotations

from consensus_harness import Cluster

from trustchain.consensus.fair_queue import FairQueue, request_key
from trustchain.consensus.messages import Request
from trustchain.consensus.replica import MAX_PENDING_PER_CLIENT
from trustchain.crypto.signing import Ed25519Signer

FLOODER, ALICE, BOB = (Ed25519Signer(bytes([i]) * 32) for i in (1, 2, 3))


def _req(signer: Ed25519Signer, ts: int) -> Request:
    return Request.create(signer, ts, b"op")


def test_one_request_per_client_in_turn_each_client_oldest_first() -> None:
    q = FairQueue()
    for ts in range(1, 101):
        q.add(_req(FLOODER, ts))
    q.add(_req(ALICE, 7))
    q.add(_req(BOB, 3))
    q.add(_req(ALICE, 8))
    first = q.take(4)
    assert [(r.client, r.timestamp) for r in first] == [
        (FLOODER.public_key, 1), (ALICE.public_key, 7), (BOB.public_key, 3), (FLOODER.public_key, 2)]
    assert [r.client for r in q.take(2)] == [ALICE.public_key, FLOODER.public_key]
    assert len(q) == 97 and all(r.client == FLOODER.public_key for r in q.take(200)) and not q


def test_discard_and_duplicates_keep_the_count_and_the_rotation_right() -> None:
    q = FairQueue()
    a1, a2, b1 = _req(ALICE, 1), _req(ALICE, 2), _req(BOB, 1)
    for r in (a1, a1, a2, b1):
        q.add(r)
    assert len(q) == 3 and request_key(a2) in q
    q.discard(request_key(b1))
    q.discard(request_key(b1))
    assert len(q) == 2 and request_key(b1) not in q
    assert [r.timestamp for r in q.take(5)] == [1, 2]


def test_a_replica_keeps_a_bounded_number_of_pending_requests_per_client() -> None:
    c = Cluster(4, clients=1)
    backup = c.replicas[1]
    for ts in range(1, MAX_PENDING_PER_CLIENT + 11):
        backup.submit(_req(FLOODER, ts), c.now)
    assert backup.status.pending == MAX_PENDING_PER_CLIENT
    assert backup.counters.rejected["client_backlog_full"] == 10
    backup.submit(_req(ALICE, 1), c.now)
    assert backup.status.pending == MAX_PENDING_PER_CLIENT + 1, "another client is still accepted"
