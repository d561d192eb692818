"""Stateful property test: one replica driven by arbitrary and adversarial message sequences.

The test holds every other replica's key, so it can say anything a coalition of Byzantine replicas
could say (validly signed), as well as forgeries and garbage. Whatever it sends, the replica must not
raise, must not accept a forged signature, must not execute without a valid commit certificate, and
its state invariants must hold after every step.
"""

from __future__ import annotations

import os
from dataclasses import replace

from consensus_harness import make_config
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from trustchain.app.kvstore import KVStore, put
from trustchain.consensus.certificates import SignatureChecker, check_committed
from trustchain.consensus.effects import Broadcast, Executed
from trustchain.consensus.messages import (
    Checkpoint,
    Commit,
    Envelope,
    Prepare,
    PrePrepare,
    Request,
    ViewChange,
    pack,
    seal,
    unpack,
)
from trustchain.consensus.replica import Phase, Replica
from trustchain.crypto.signing import ED25519, Ed25519Signer

EXAMPLES = int(os.environ.get("TRUSTCHAIN_STATEFUL_EXAMPLES", "40"))
CLIENTS = [Ed25519Signer(bytes([0x40 + i]) * 32) for i in range(3)]


class ReplicaUnderAttack(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.config, self.signers = make_config(4, batch_size=2, batch_delay_us=0, checkpoint_interval=2,
                                                watermark_window=4, view_change_timeout_us=1_000_000)
        self.replica = Replica(self.config, 1, self.signers[1], KVStore())
        self.checker = SignatureChecker(self.config, ED25519)
        self.now = 1_000_000
        self.client_ts = [0, 0, 0]
        self.proposals: dict[tuple[int, int], PrePrepare] = {}
        self.last_view = 0
        self.last_executed = 0
        self.forged_accepted = 0
        self.tainted: set[int] = set()

    def _deliver(self, env_or_request: Envelope | Request) -> None:
        effects = self.replica.receive(pack(env_or_request), self.now)
        for e in effects:
            if isinstance(e, Executed):
                pp = check_committed(self.checker, e.certificate)
                assert (pp.seq, pp.batch_digest) == (e.seq, e.batch_digest)
            if isinstance(e, Broadcast):
                sent = unpack(e.data)
                assert isinstance(sent, Envelope) and sent.sender == 1
                self.checker.envelope(sent)  # everything the replica signs verifies

    def _request(self, client: int) -> Request:
        self.client_ts[client] += 1
        return Request.create(CLIENTS[client], self.client_ts[client], put(b"k%d" % client, b"v"))

    @rule(client=st.integers(0, 2))
    def client_request(self, client: int) -> None:
        self._deliver(self._request(client))

    @rule(seq_offset=st.integers(-2, 6), clients=st.lists(st.integers(0, 2), min_size=0, max_size=2, unique=True),
          skew=st.sampled_from((0, 0, 0, 10_000_000)), variant=st.integers(0, 1))
    def primary_proposes(self, seq_offset: int, clients: list[int], skew: int, variant: int) -> None:
        view = self.replica.status.view
        primary = self.config.primary(view)
        if primary == 1:
            return
        seq = self.replica.status.low_watermark + 1 + seq_offset
        batch = tuple(self._request(c) for c in clients)
        ts = self.now + skew + variant  # variant != 0 is an equivocation at the same (view, seq)
        pp = PrePrepare(view, max(seq, 0), PrePrepare.compute_digest(ts, batch), ts, batch)
        self.proposals.setdefault((view, pp.seq), pp)
        self._deliver(seal(self.signers[primary], primary, pp))

    @rule(clients=st.lists(st.integers(0, 2), min_size=1, max_size=2, unique=True),
          voters=st.sampled_from(((0, 2, 3), (2, 3), (0, 2), (2,))))
    def honest_round(self, clients: list[int], voters: tuple[int, ...]) -> None:
        """A correct primary's proposal for the next sequence with prepares and commits from `voters`:
        with all three the replica must execute; with fewer it must not."""
        status = self.replica.status
        view, primary = status.view, status.primary
        seq = status.last_executed + 1
        if primary == 1 or status.phase is not Phase.NORMAL or (view, seq) in self.proposals \
                or not status.low_watermark < seq <= status.low_watermark + 4:
            return
        batch = tuple(self._request(c) for c in clients)
        pp = PrePrepare(view, seq, PrePrepare.compute_digest(self.now, batch), self.now, batch)
        self.proposals[(view, seq)] = pp
        self._deliver(seal(self.signers[primary], primary, pp))
        for sender in voters:
            if sender != primary:
                self._deliver(seal(self.signers[sender], sender, Prepare(view, seq, pp.batch_digest)))
        for sender in voters:
            self._deliver(seal(self.signers[sender], sender, Commit(view, seq, pp.batch_digest)))
        quorum = len(set(voters) | {1}) >= self.config.quorum and len(set(voters) - {primary}) >= 1
        executed = self.replica.status.last_executed >= seq
        own = self.replica.internals.checkpoints.own.get(seq)
        if own is not None:  # correct replicas checkpoint the same state
            for sender in voters:
                self._deliver(seal(self.signers[sender], sender, Checkpoint(seq, own[0])))
        if executed:
            assert quorum, "executed without a quorum of commits"
        elif quorum and seq not in self.tainted:
            raise AssertionError("a quorum of matching votes did not execute")

    @rule(sender=st.sampled_from((0, 2, 3)), phase=st.sampled_from(("prepare", "commit")),
          honest=st.booleans(), seq_offset=st.integers(-1, 5))
    def vote(self, sender: int, phase: str, honest: bool, seq_offset: int) -> None:
        view = self.replica.status.view
        seq = self.replica.status.low_watermark + 1 + seq_offset
        known = self.proposals.get((view, seq))
        digest = known.batch_digest if (known and honest) else bytes([sender]) * 32
        if not (known and honest):
            self.tainted.add(seq)  # a conflicting vote: that replica's later matching vote is a double vote
        msg = Prepare(view, seq, digest) if phase == "prepare" else Commit(view, seq, digest)
        self._deliver(seal(self.signers[sender], sender, msg))

    @rule(sender=st.sampled_from((0, 2, 3)), byte=st.integers(0, 63))
    def forged_signature(self, sender: int, byte: int) -> None:
        view = self.replica.status.view
        known = self.proposals.get((view, self.replica.status.last_executed + 1))
        if known is None:
            return
        env = seal(self.signers[sender], sender, Commit(view, known.seq, known.batch_digest))
        sig = bytearray(env.signature)
        sig[byte] ^= 0x80
        before = self.replica.counters.rejected.get("bad_signature", 0)
        self._deliver(replace(env, signature=bytes(sig)))
        if self.replica.counters.rejected.get("bad_signature", 0) != before + 1:
            self.forged_accepted += 1

    @rule(sender=st.sampled_from((0, 2, 3)), seq_mult=st.integers(1, 4), honest=st.booleans())
    def checkpoint(self, sender: int, seq_mult: int, honest: bool) -> None:
        seq = seq_mult * self.config.checkpoint_interval
        own = self.replica.internals.checkpoints.own.get(seq)
        digest = own[0] if (own and honest) else b"\x13" * 32
        self._deliver(seal(self.signers[sender], sender, Checkpoint(seq, digest)))

    @rule(sender=st.sampled_from((0, 2, 3)), jump=st.integers(1, 3), rare=st.integers(0, 4))
    def view_change(self, sender: int, jump: int, rare: int) -> None:
        if rare:
            return
        vc = ViewChange(self.replica.status.view + jump, 0, (), ())
        self._deliver(seal(self.signers[sender], sender, vc))

    @rule(data=st.binary(max_size=200))
    def garbage(self, data: bytes) -> None:
        self.replica.receive(data, self.now)

    @rule(advance=st.integers(1, 3_000_000))
    def time_passes(self, advance: int) -> None:
        self.now += advance
        for name, at in sorted(self.replica.internals.timers.items()):
            if at <= self.now:
                self.replica.on_timer(name, self.now)

    @precondition(lambda self: self.replica.status.in_view_change)
    @rule()
    def stays_consistent_in_view_change(self) -> None:
        assert self.replica.status.view >= self.last_view

    @invariant()
    def invariants_hold(self) -> None:
        if not hasattr(self, "replica"):
            return
        assert self.replica.invariant_violations() == []
        assert self.forged_accepted == 0, "a forged signature was accepted"
        status = self.replica.status
        assert status.view >= self.last_view, "views only move forward"
        assert status.last_executed >= self.last_executed, "execution never goes back"
        self.last_view = status.view
        self.last_executed = status.last_executed


ReplicaUnderAttack.TestCase.settings = settings(
    max_examples=EXAMPLES, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_replica_under_attack = ReplicaUnderAttack.TestCase
