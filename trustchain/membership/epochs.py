"""One validator's replica across configurations: PBFT per epoch, switching at the boundary.

Each epoch runs an ordinary `Replica` over that epoch's set (its own n, f, quorum and primary
rotation `view % n`, every envelope signed with the epoch). When a change executes at sequence s,
the replicated `Membership` fixes the boundary c, the first checkpoint at or after s. The epoch's
replica proposes and executes nothing above c. Once c is *stable* (a quorum of the old set signed the
state digest at c), this node keeps a **handoff** (c, snapshot, that proof) and, if it belongs to the
next set, starts the next epoch's replica at base c from the same state. Every replica switches at the
same c because c is derived from the ordered s; no message of one epoch counts in another because
the epoch is signed into each envelope.

Catching up across a boundary: a node that receives an envelope of an older epoch answers the sender
with the handoff closing that epoch (at most one per sender and epoch each `catchup_delay_us`); a node
that receives an envelope of a later epoch, or a new validator starting with only the previous set,
asks for the handoff of its epoch. The handoff is checked against the old set's keys alone (a
quorum of its checkpoint signatures over the snapshot's digest), then the snapshot's replicated
membership names the next set: a Byzantine peer can withhold it but not forge it. A node several
epochs behind repeats this once per epoch. While the node waits for c to become stable it re-sends
its own checkpoint vote for c, so that lost votes cannot leave the old epoch without a proof.

Peers are addressed by consensus key (`SendToKey`, `Multicast`), since an index means different
validators in different epochs; the driver maps keys to connections and, on `ConfigurationChanged`,
connects to the new set. Requests still pending in the old epoch are handed to the new one.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from trustchain.consensus.certificates import InvalidMessage, SignatureChecker, check_checkpoint_proof
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import (
    Broadcast,
    CancelTimer,
    Effect,
    SendToReplica,
    SetTimer,
)
from trustchain.consensus.messages import Envelope, Request, digest, pack, unpack
from trustchain.consensus.replica import Replica
from trustchain.consensus.replica_state import ReplicaSnapshot
from trustchain.crypto.signing import ED25519, Signer, Verifier
from trustchain.encoding import DecodeError, decode, encode
from trustchain.membership.app import MembershipApplication
from trustchain.membership.state import ValidatorSet

__all__ = [
    "HANDOFF_KEEP",
    "ConfigurationChanged",
    "EpochEffect",
    "EpochReplica",
    "Handoff",
    "Multicast",
    "SendToKey",
]

_HANDOFF_REQUEST, _HANDOFF = 0x48, 0x49
HANDOFF_KEEP = 4  # closed epochs whose handoff a node keeps to serve
TIMER_HANDOFF = "epochs/handoff"  # ask again for the handoff we wait for
TIMER_BOUNDARY = "epochs/boundary"  # re-send our checkpoint vote for the boundary


@dataclass(frozen=True)
class SendToKey:
    """Send `data` to the validator with consensus key `key`."""

    key: bytes
    data: bytes


@dataclass(frozen=True)
class Multicast:
    """Send `data` to each of `keys` (never to ourselves)."""

    keys: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class ConfigurationChanged:
    """This node now runs (or, not a member, follows) configuration `validators`; connect to it."""

    validators: ValidatorSet
    member: bool


EpochEffect = Effect | SendToKey | Multicast | ConfigurationChanged


@dataclass(frozen=True)
class Handoff:
    """The last state of epoch `epoch` at its boundary `seq`, proven by that epoch's quorum."""

    epoch: int
    seq: int
    snapshot: bytes
    proof: tuple[Envelope, ...]

    def packet(self) -> bytes:
        """The handoff as a peer sends it."""
        return bytes([_HANDOFF]) + encode(self)


@dataclass(frozen=True)
class _HandoffRequest:
    epoch: int


class EpochReplica:
    """Create with the set this node starts in (genesis, or the set before the one it joins) and the
    replicated application positioned at that set's base; then `start` and feed it inputs."""

    def __init__(self, template: ClusterConfig, signer: Signer, app: MembershipApplication, start_set: ValidatorSet,
                 verifier: Verifier = ED25519, start_snapshot: bytes | None = None) -> None:
        self.template, self.signer, self.app, self.verifier = template, signer, app, verifier
        self.key = signer.public_key
        self.sets: dict[int, ValidatorSet] = {start_set.epoch: start_set}
        self.epoch = start_set.epoch
        self.replica: Replica | None = None
        self.handoffs: dict[int, Handoff] = {}
        self._served: dict[tuple[bytes, int], int] = {}  # (peer, epoch) -> when we last sent it a handoff
        self._asked_at = -1
        self._boundary_armed = False
        self.handoffs_installed = 0  # epochs this node left through a peer's handoff, not its own checkpoint
        self._out: list[EpochEffect] = []
        if start_set.index(self.key) is not None:
            self.replica = self._make_replica(start_set, start_snapshot)

    # ------------------------------------------------------------------ driver interface

    @property
    def current_set(self) -> ValidatorSet:
        return self.sets[self.epoch]

    def start(self, now: int) -> list[EpochEffect]:
        self._out = [ConfigurationChanged(self.current_set, self.replica is not None)]
        if self.replica is not None:
            self._take(self.replica, self.replica.start(now))
        else:
            self._ask_handoff(now)
        return self._flush()

    def receive(self, data: bytes, src: bytes, now: int) -> list[EpochEffect]:
        """Bytes from the peer whose consensus key the transport authenticated as `src`."""
        self._out = []
        if data[:1] == bytes([_HANDOFF_REQUEST]):
            self._on_handoff_request(data[1:], src, now)
        elif data[:1] == bytes([_HANDOFF]):
            self._on_handoff(data[1:], now)
        else:
            self._on_consensus(data, src, now)
        return self._flush()

    def submit(self, request: Request, now: int) -> list[EpochEffect]:
        self._out = []
        if self.replica is not None:
            self._take(self.replica, self.replica.submit(request, now))
            self._after_step(now)
        return self._flush()

    def link_up(self, peer: bytes, now: int) -> list[EpochEffect]:
        self._out = []
        index = self.current_set.index(peer)
        if self.replica is not None and index is not None:
            self._take(self.replica, self.replica.link_up(index, now))
        return self._flush()

    def on_timer(self, name: str, now: int) -> list[EpochEffect]:
        self._out = []
        if name == TIMER_HANDOFF:
            self._ask_handoff(now)
        elif name == TIMER_BOUNDARY:
            self._resend_boundary_vote(now)
        else:
            epoch, _, inner = name.partition("/")
            if self.replica is not None and epoch == f"e{self.epoch}":
                self._take(self.replica, self.replica.on_timer(inner, now))
                self._after_step(now)
        return self._flush()

    # ------------------------------------------------------------------ consensus traffic

    def _on_consensus(self, data: bytes, src: bytes, now: int) -> None:
        try:
            msg = unpack(data)
        except DecodeError:
            return
        epoch = msg.epoch if isinstance(msg, Envelope) else self.epoch
        if epoch == self.epoch:
            if self.replica is not None:
                self._take(self.replica, self.replica.receive(data, now))
                self._after_step(now)
        elif epoch < self.epoch:
            self._serve_handoff(src, epoch, now)
        else:
            self._ask_handoff(now, src)

    def _after_step(self, now: int) -> None:
        """Switch once this epoch's boundary checkpoint is stable."""
        r = self.replica
        if r is None:
            return
        end = self.app.epoch_end(self.epoch)
        if end is None:
            return
        status = r.status
        if status.low_watermark >= end:
            assert status.low_watermark == end, "no checkpoint of an epoch lies past its boundary"
            cp = r.internals.checkpoints
            self._close(Handoff(self.epoch, end, cp.stable_snapshot, cp.stable_proof), now)
        elif status.last_executed == end and not self._boundary_armed:
            self._boundary_armed = True
            self._out.append(SetTimer(TIMER_BOUNDARY, now + self.template.catchup_delay_us))

    def _resend_boundary_vote(self, now: int) -> None:
        self._boundary_armed = False
        r, end = self.replica, self.app.epoch_end(self.epoch)
        if r is None or end is None or r.status.low_watermark >= end:
            return
        own = r.internals.checkpoints.votes.get(end, {}).get(r.id)
        if own is not None:
            self._out.append(Multicast(self._others(self.current_set), pack(own)))
        self._boundary_armed = True
        self._out.append(SetTimer(TIMER_BOUNDARY, now + self.template.catchup_delay_us))

    # ------------------------------------------------------------------ switching

    def _close(self, handoff: Handoff, now: int, nxt: ValidatorSet | None = None) -> None:
        """Epoch `handoff.epoch` ended at `handoff.seq` with this proven state: move to the next set."""
        nxt = nxt or self.app.next_set(handoff.epoch)
        assert nxt is not None and nxt.base_seq == handoff.seq, "the boundary names the next set"
        old = self.replica
        carried = [] if old is None else list(old.internals.pending.values())
        self.handoffs[handoff.epoch] = handoff
        for e in sorted(self.handoffs)[:-HANDOFF_KEEP]:
            del self.handoffs[e]
        if old is not None:
            for name in list(old.internals.timers):
                self._out.append(CancelTimer(f"e{handoff.epoch}/{name}"))
        if self._boundary_armed:
            self._boundary_armed = False
            self._out.append(CancelTimer(TIMER_BOUNDARY))
        self._out.append(CancelTimer(TIMER_HANDOFF))
        self.sets[nxt.epoch] = nxt
        for e in [e for e in self.sets if e < nxt.epoch - HANDOFF_KEEP]:
            del self.sets[e]
        self.epoch = nxt.epoch
        self.replica = None
        member = nxt.index(self.key) is not None
        self._out.append(ConfigurationChanged(nxt, member))
        if member:
            self.replica = self._make_replica(nxt, handoff.snapshot)
            self._take(self.replica, self.replica.start(now))
            for req in carried:
                self._take(self.replica, self.replica.submit(req, now))
            self._after_step(now)

    def _make_replica(self, s: ValidatorSet, snapshot: bytes | None) -> Replica:
        config = self._config(s)
        index = s.index(self.key)
        assert index is not None

        def epoch_end(epoch: int = s.epoch) -> int | None:
            return self.app.epoch_end(epoch)

        if s.base_seq == 0:
            return Replica(config, index, self.signer, self.app, self.verifier, epoch_end)
        assert snapshot is not None, "a later epoch starts from its base checkpoint's state"
        return Replica.at_boundary(config, index, self.signer, self.app, snapshot, self.verifier, epoch_end)

    def _config(self, s: ValidatorSet) -> ClusterConfig:
        return replace(self.template, replicas=s.keys, epoch=s.epoch, base_seq=s.base_seq)

    # ------------------------------------------------------------------ handoffs

    def _serve_handoff(self, peer: bytes, epoch: int, now: int) -> None:
        handoff = self.handoffs.get(epoch)
        if handoff is None:
            return
        last = self._served.get((peer, epoch))
        if last is not None and now - last < self.template.catchup_delay_us:
            return
        if len(self._served) > 4 * 64 * HANDOFF_KEEP:
            self._served.clear()
        self._served[(peer, epoch)] = now
        self._out.append(SendToKey(peer, handoff.packet()))

    def _on_handoff_request(self, body: bytes, src: bytes, now: int) -> None:
        try:
            req = decode(_HandoffRequest, body)
        except DecodeError:
            return
        if req.epoch < self.epoch:
            self._serve_handoff(src, req.epoch, now)
        elif req.epoch == self.epoch and self.replica is not None:
            # The asker just entered our epoch: tell it how far we got, so that it catches up inside it.
            index = self.current_set.index(src)
            last = self._served.get((src, req.epoch))
            if index is not None and (last is None or now - last >= self.template.catchup_delay_us):
                self._served[(src, req.epoch)] = now
                self._take(self.replica, self.replica.link_up(index, now))

    def _ask_handoff(self, now: int, peer: bytes | None = None) -> None:
        if self._asked_at >= 0 and now - self._asked_at < self.template.catchup_delay_us:
            return
        self._asked_at = now
        request = bytes([_HANDOFF_REQUEST]) + encode(_HandoffRequest(self.epoch))
        if peer is not None:
            self._out.append(SendToKey(peer, request))
        else:
            self._out.append(Multicast(self._others(self.current_set), request))
        if self.replica is None:
            self._out.append(SetTimer(TIMER_HANDOFF, now + self.template.catchup_delay_us))

    def _on_handoff(self, body: bytes, now: int) -> None:
        try:
            handoff = decode(Handoff, body)
            if handoff.epoch != self.epoch:
                return  # not the epoch we are in: a later one follows once we are past this one
            s = self.current_set
            check_checkpoint_proof(SignatureChecker(self._config(s), self.verifier), handoff.proof, handoff.seq,
                                   digest(handoff.snapshot))
            if handoff.seq <= s.base_seq:
                raise InvalidMessage("stale_handoff", "boundary at or below the epoch's base")
            nxt = self.app.next_set_in(decode(ReplicaSnapshot, handoff.snapshot).app, handoff.epoch)
        except (DecodeError, InvalidMessage):
            return
        if nxt is None or nxt.base_seq != handoff.seq:
            return  # a certified checkpoint, but not the one closing this epoch
        self.handoffs_installed += 1
        self._close(handoff, now, nxt)
        # We were behind: ask the next set where it is (a later handoff, or its members' progress).
        self._asked_at = -1
        self._ask_handoff(now)

    # ------------------------------------------------------------------ effects

    def _others(self, s: ValidatorSet) -> tuple[bytes, ...]:
        return tuple(k for k in s.keys if k != self.key)

    def _take(self, replica: Replica, effects: list[Effect]) -> None:
        """Name the replica's timers by epoch and address its peers by key."""
        s = self.sets[replica.config.epoch]
        prefix = f"e{replica.config.epoch}/"
        for e in effects:
            match e:
                case SetTimer(name, at):
                    self._out.append(SetTimer(prefix + name, at))
                case CancelTimer(name):
                    self._out.append(CancelTimer(prefix + name))
                case SendToReplica(to, data):
                    self._out.append(SendToKey(s.keys[to], data))
                case Broadcast(data):
                    self._out.append(Multicast(self._others(s), data))
                case _:
                    self._out.append(e)

    def _flush(self) -> list[EpochEffect]:
        out, self._out = self._out, []
        return out
