"""Signing liveness after GST: lost messages before GST, a crashed signer and a bad-share signer together.

Regression for ca-byzantine33 seeds 3 and 6: before GST every session an aggregator starts takes a
commitment out of its pool whether or not the request arrives, so a partitioned signer's pool drains
everywhere; the aggregators' commitment requests to it were lost too and were never repeated, so after
GST no aggregator could assemble t signers (crashed + cheater + drained = more than n - t) and approved
issuances were never finalized.
"""

from __future__ import annotations

import hashlib
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

from ca_testutil import seeded

from trustchain.ca import frost
from trustchain.ca import signing_service as ss
from trustchain.crypto.signing import Ed25519Signer

N, T = 5, 3
GROUP = frost.trusted_dealer_keygen(N, T, seeded(33))
SIGNERS = {i: Ed25519Signer(hashlib.sha256(b"liveness validator %d" % i).digest()) for i in range(1, N + 1)}
PEERS = {i: s.public_key for i, s in SIGNERS.items()}
LATENCY_US = 20_000
SECOND = 1_000_000


class BadShareService(ss.SigningService):
    def _make_share(self, nonces: frost.SigningNonces, ctx: frost.SigningContext) -> bytes:
        return frost.group.scalar_add(super()._make_share(nonces, ctx), frost.group.ONE)


@dataclass
class Net:
    """Event-driven harness: messages take ``LATENCY_US``; ``lost(now, src, dst)`` drops them; ``crashed``
    validators neither receive nor fire timers. A finalize is ordered at once and accepted if its
    signature verifies (as the replicated ``finalize`` command checks); every live service learns of it."""

    services: dict[int, ss.SigningService]
    lost: Callable[[int, int, int], bool]
    crashed: set[int] = field(default_factory=set)
    now: int = 0
    events: list[tuple[int, int, int, object]] = field(default_factory=list)
    counter: int = 0
    tbs: dict[int, bytes] = field(default_factory=dict)
    finalized_us: dict[int, int] = field(default_factory=dict)
    accusations: set[tuple[int, int]] = field(default_factory=set)
    sign_requests_to: dict[int, int] = field(default_factory=dict)

    def push(self, at: int, who: int, item: object) -> None:
        self.counter += 1
        heapq.heappush(self.events, (at, self.counter, who, item))

    def apply(self, who: int, effects: list[ss.Effect]) -> None:
        for e in effects:
            if isinstance(e, ss.Send):
                kind = ss.open_message(e.data, PEERS, e.to)[1]
                if isinstance(kind, ss.SignRequest):
                    self.sign_requests_to[e.to] = self.sign_requests_to.get(e.to, 0) + 1
                if not self.lost(self.now, who, e.to):
                    self.push(self.now + LATENCY_US, e.to, e.data)
            elif isinstance(e, ss.SetTimer):
                self.push(e.at_us, who, e.key)
            elif isinstance(e, ss.Misbehaviour):
                self.accusations.add((who, e.accused))
            elif isinstance(e, ss.SubmitFinalize):
                pid = e.pending_id
                if pid in self.finalized_us or not frost.verify_signature(
                    GROUP.public.group_public_key, self.tbs[pid], e.signature
                ):
                    continue
                self.finalized_us[pid] = self.now
                for i, s in self.services.items():
                    if i not in self.crashed:
                        self.apply(i, s.on_finalized(pid))

    def record(self, pid: int, at: int) -> None:
        """Every replica executes the issuance request at ``at`` and tells its own service."""
        self.tbs[pid] = b"\x30\x05\x02\x03TBS" + pid.to_bytes(4, "big")
        self.push(at, 0, ("pending", pid))

    def run(self, until: int) -> None:
        while self.events and self.events[0][0] <= until:
            at, _, who, item = heapq.heappop(self.events)
            self.now = max(self.now, at)
            if isinstance(item, tuple):  # pending recorded on every live replica
                pid = item[1]
                for i, s in self.services.items():
                    if i not in self.crashed:
                        self.apply(i, s.on_pending(pid, self.tbs[pid], self.now))
            elif who in self.crashed:
                continue
            elif isinstance(item, bytes):
                self.apply(who, self.services[who].on_message(item, self.now))
            else:
                assert isinstance(item, ss.TimerKey)
                self.apply(who, self.services[who].on_timer(item, self.now))


def make_net(bad: set[int], lost: Callable[[int, int, int], bool]) -> Net:
    services: dict[int, ss.SigningService] = {}
    for i in range(1, N + 1):
        cls = BadShareService if i in bad else ss.SigningService
        services[i] = cls(GROUP.key_packages[i], GROUP.public, SIGNERS[i], PEERS, seeded(500 + i))
    net = Net(services, lost)
    for i, s in services.items():
        net.apply(i, s.start(0))
    net.run(SECOND)  # pre-published commitments delivered
    return net


def test_issuances_finalize_after_gst_despite_drained_pools_crash_and_bad_shares() -> None:
    # Validator 5 crashes after publishing its commitments (it stays in every pool), validator 1 sends
    # bad shares; 2, 3 and 4 are exactly t honest signers. Until GST every message to or from 4 is lost:
    # nothing can be signed, the aggregators' pools for 4 drain and their requests for more vanish.
    gst = 40 * SECOND
    net = make_net({1}, lambda now, src, dst: now < gst and 4 in (src, dst))
    net.crashed.add(5)
    for pid in range(1, 13):
        net.record(pid, SECOND + pid * 2 * SECOND)
    net.run(gst)
    assert len(net.finalized_us) == 0  # no quorum of honest, reachable signers before GST
    drained = [a for a in (2, 3) if len(net.services[a].pools[4]) < T - 1]
    assert drained, "the scenario must drain pools of the partitioned signer"

    bound = 30 * SECOND
    net.run(gst + bound)
    missing = sorted(set(net.tbs) - set(net.finalized_us))
    assert not missing, f"pending {missing} not finalized within {bound / SECOND} s of GST"
    # the bad signer is named by honest aggregators only, nobody else is accused
    assert {accused for _, accused in net.accusations} == {1}
    assert {who for who, _ in net.accusations} <= {1, 2, 3, 4}


def test_crashed_signer_is_not_chosen_for_every_issuance() -> None:
    # No losses; validator 3 crashed after publishing its commitments, so it stays in every pool. Once an
    # aggregator has waited for it, it picks it last: the four others (t = 3) sign the later issuances.
    net = make_net(set(), lambda now, src, dst: False)
    net.crashed.add(3)
    count = 20
    for pid in range(1, count + 1):
        net.record(pid, SECOND + pid * SECOND // 2)
    net.run(60 * SECOND)
    assert len(net.finalized_us) == count
    live_aggregators = N - 1
    assert net.sign_requests_to.get(3, 0) <= live_aggregators
    # waiting for the crashed signer costs a session timeout at most once per live aggregator (issuances
    # whose first aggregator is the crashed validator wait for the attempt timeout instead)
    slow = [
        pid
        for pid, at in net.finalized_us.items()
        if net.services[1].aggregator(pid, 0) != 3 and at - (SECOND + pid * SECOND // 2) > SECOND
    ]
    assert 0 < len(slow) <= live_aggregators


def test_signer_answers_commitment_requests_when_its_quota_is_full_of_lost_nonces() -> None:
    # An aggregator's sign requests never arrived, so the signer still holds max_pool nonces for it. It
    # must still answer a request for fresh commitments (forgetting the oldest) rather than stay silent.
    net = make_net(set(), lambda now, src, dst: False)
    signer = net.services[2]
    cfg = signer.config
    signer._new_commitments(1, cfg.max_pool - cfg.pool_size)  # published but lost, never used
    assert sum(1 for agg, _ in signer.nonces if agg == 1) == cfg.max_pool
    out = signer.on_message(ss.seal(SIGNERS[1], 1, 2, ss.CommitmentRequest(cfg.pool_size)), net.now)
    assert len(out) == 1 and isinstance(out[0], ss.Send)
    _, msg = ss.open_message(out[0].data, PEERS, 1)
    assert isinstance(msg, ss.Commitments) and len(msg.commitments) == cfg.pool_size
    held = sorted(nid for agg, nid in signer.nonces if agg == 1)
    assert len(held) == cfg.max_pool and held[-cfg.pool_size :] == [c.nonce_id for c in msg.commitments]
