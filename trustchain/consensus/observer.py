"""Observers: non-voting replicas that follow the validators' committed batches, and the validators'
side of feeding them.

An `Observer` takes committed batches from any peer (`feed`), verifies each one's commit certificate
against the known validator set, executes them in sequence order on its own application replica with
the validators' exactly-once rules (`apply`), and serves reads from it. It forwards what it verified,
unchanged, to its children in the overlay (`overlay`); it forwards nothing it could not verify, so a
forged batch stops at the first honest node. At every checkpoint interval it snapshots its state, and
a checkpoint certificate (a quorum of validators' signatures over the state digest) proves it, or
reveals that it diverged. When it stops making progress it pulls from a peer chosen at random among
the validators and all observers, and re-verifies everything in the answer: a Byzantine peer can
withhold, never forge.

An observer votes in nothing and signs nothing, so any number of them leave the validators' quorums
and costs unchanged; each receives `trees` copies of a batch and sends at most `trees * fanout`.

`ValidatorFeed` runs beside a validator's `Replica`: the driver hands it the replica's `Executed` and
`PersistStable` effects, and it sends the certified batches and checkpoints to the validator's
children in the overlay and answers observers' catch-up requests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from trustchain.app.interface import Application
from trustchain.consensus.apply import apply_batch, encode_state, restore_state
from trustchain.consensus.certificates import InvalidMessage
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import (
    CancelTimer,
    Executed,
    Persist,
    PersistStable,
    Rejected,
    SetTimer,
    StateRestored,
)
from trustchain.consensus.feed import (
    FEED_BATCH,
    FEED_CHECKPOINT,
    FEED_PULL,
    FEED_PULL_REPLY,
    CatchUpReply,
    CatchUpRequest,
    CertificateCache,
    CertifiedLog,
    VerifiedBatch,
    feed_header,
    pack_feed,
)
from trustchain.consensus.messages import CommittedEntry, Envelope, digest
from trustchain.consensus.replica_state import ClientRecord
from trustchain.encoding import DecodeError, decode


class SeededRandom(Protocol):
    """The seeded generator the driver passes in (`random.Random(seed)` in the simulator and the node):
    the observer draws pull peers from it and never from a global or OS source."""

    def randrange(self, stop: int, /) -> int: ...


__all__ = [
    "TIMER_SYNC",
    "Observer",
    "ObserverEffect",
    "ObserverParams",
    "ObserverStatus",
    "SeededRandom",
    "SendToPeer",
    "ValidatorFeed",
    "entry_seq",
]

TIMER_SYNC = "observer-sync"


@dataclass(frozen=True)
class SendToPeer:
    """Send `data` to the overlay node named `peer` (a validator or an observer)."""

    peer: str
    data: bytes


ObserverEffect = SendToPeer | SetTimer | CancelTimer | Executed | StateRestored | Rejected


@dataclass(frozen=True)
class ObserverParams:
    #: how long without progress before pulling from a random peer (doubling while pulls bring nothing)
    sync_interval_us: int = 1_000_000
    max_sync_interval_us: int = 4_000_000
    #: a batch arriving after a gap: pull this soon instead of waiting for the next tick
    gap_pull_us: int = 200_000
    #: how far beyond the next batch to execute a batch may be held (the rest is pulled later)
    window: int = 256
    #: batches per catch-up reply
    max_entries: int = 64
    #: a peer's catch-up requests are answered at most once per this period
    serve_interval_us: int = 200_000


@dataclass(frozen=True)
class ObserverStatus:
    last_executed: int
    stable_seq: int
    held: int
    last_time_us: int


def entry_seq(entry: CommittedEntry) -> int:
    """The sequence number a committed entry claims (checked against its certificate when verified)."""
    try:
        pp = entry.pre_prepare.open()
    except DecodeError:
        return -1
    return int(getattr(pp, "seq", -1))


def _weak_validators(validators: Sequence[str], f: int, start: int) -> list[str]:
    return [validators[(start + i) % len(validators)] for i in range(min(len(validators), f + 1))]


class _Server:
    """Answers catch-up requests from a `CertifiedLog`, each peer at most once per interval."""

    def __init__(self, log: CertifiedLog, interval_us: int, max_peers: int = 4096) -> None:
        self.log = log
        self.interval_us = interval_us
        self.max_peers = max_peers
        self.last_served: dict[str, int] = {}

    def serve(self, src: str, packet: bytes, now: int) -> list[SendToPeer]:
        tag, _ = feed_header(packet)
        if tag != FEED_PULL:
            raise InvalidMessage("wrong_kind", "only catch-up requests are served")
        try:
            req = decode(CatchUpRequest, packet[9:])
        except DecodeError as exc:
            raise InvalidMessage("malformed", str(exc)) from None
        last = self.last_served.get(src)
        if last is not None and now - last < self.interval_us:
            raise InvalidMessage("pull_rate", f"{src} asked again within {self.interval_us} µs")
        if len(self.last_served) >= self.max_peers:
            self.last_served = {p: t for p, t in self.last_served.items() if now - t < self.interval_us}
        self.last_served[src] = now
        reply = self.log.answer(req)
        if reply is None:
            return []
        return [SendToPeer(src, pack_feed(FEED_PULL_REPLY, reply.checkpoint_seq, reply))]


class ValidatorFeed:
    """A validator's part in dissemination: its certified batches and stable checkpoints go to its
    overlay children; observers' catch-up requests are answered from what it executed."""

    def __init__(self, children: Sequence[str], params: ObserverParams = ObserverParams()) -> None:
        self.children = tuple(children)
        self.log = CertifiedLog(params.max_entries)
        self._server = _Server(self.log, params.serve_interval_us)

    def on_effects(self, effects: Sequence[object]) -> list[SendToPeer]:
        out: list[SendToPeer] = []
        for effect in effects:
            # a driver may hand the stable checkpoint still wrapped in the Persist that makes it durable
            e = effect.record if isinstance(effect, Persist) else effect
            if isinstance(e, Executed):
                packet = pack_feed(FEED_BATCH, e.seq, e.certificate)
                self.log.executed(e.seq, packet)
                out.extend(SendToPeer(c, packet) for c in self.children)
            elif isinstance(e, StateRestored):
                self.log.restored(e.seq)
            elif isinstance(e, PersistStable) and e.seq > self.log.stable_seq:
                packet = self.log.stable(e.seq, e.snapshot, e.proof)
                out.extend(SendToPeer(c, packet) for c in self.children)
        return out

    def receive(self, src: str, data: bytes, now: int) -> list[SendToPeer]:
        """A catch-up request from an observer (anything else is refused with InvalidMessage)."""
        try:
            return self._server.serve(src, data, now)
        except DecodeError as exc:
            raise InvalidMessage("malformed", str(exc)) from None


class Observer:
    """One observer. `peers` is the membership pulls draw from (shared, read-only); `rng` is a seeded
    generator handed in; `certs` may be shared by observers in one process."""

    def __init__(self, config: ClusterConfig, name: str, app: Application, certs: CertificateCache,
                 children: Sequence[str], validators: Sequence[str], peers: Sequence[str], rng: SeededRandom,
                 params: ObserverParams = ObserverParams()) -> None:
        assert len(validators) == config.n, "one overlay name per validator"
        self.config = config
        self.name = name
        self.app = app
        self.certs = certs
        self.children = tuple(children)
        self.validators = tuple(validators)
        self.peers = peers
        self.rng = rng
        self.params = params
        self.log = CertifiedLog(params.max_entries)
        self._server = _Server(self.log, params.serve_interval_us)
        self._clients: dict[bytes, ClientRecord] = {}
        self._last_time_us = 0
        self._held: dict[int, VerifiedBatch] = {}
        self._own: dict[int, tuple[bytes, bytes]] = {}  # checkpoint seq -> (state digest, snapshot)
        self._proven: dict[int, bytes] = {}  # checkpoint certificates above our execution: seq -> packet
        self._asked: str | None = None
        self._mark = 0
        self._idle_ticks = 0
        self._gap_pull = False
        self._out: list[ObserverEffect] = []
        self.received: dict[str, int] = {}
        self.rejected: dict[str, int] = {}
        self.duplicates = 0

    # ------------------------------------------------------------------ driver interface

    @property
    def last_executed(self) -> int:
        return self.log.last_executed

    @property
    def status(self) -> ObserverStatus:
        return ObserverStatus(self.log.last_executed, self.log.stable_seq, len(self._held), self._last_time_us)

    def start(self, now: int) -> list[ObserverEffect]:
        self._out = [SetTimer(TIMER_SYNC, now + self.params.sync_interval_us)]
        return self._take()

    def receive(self, src: str, data: bytes, now: int) -> list[ObserverEffect]:
        """One packet from a peer. Never raises on bad input: it is counted and reported as `Rejected`."""
        self._out = []
        try:
            tag, seq = feed_header(data)
            kind = {FEED_BATCH: "batch", FEED_CHECKPOINT: "checkpoint", FEED_PULL: "pull",
                    FEED_PULL_REPLY: "pull_reply"}[tag]
            self.received[kind] = self.received.get(kind, 0) + 1
            if tag == FEED_BATCH:
                self._on_batch(src, seq, data, now)
            elif tag == FEED_CHECKPOINT:
                self._on_checkpoint(src, seq, data)
            elif tag == FEED_PULL:
                self._out.extend(self._server.serve(src, data, now))
            else:
                self._on_reply(src, data)
        except DecodeError as exc:
            self._reject("malformed", str(exc))
        except InvalidMessage as exc:
            self._reject(exc.reason, str(exc))
        return self._take()

    def on_timer(self, name: str, now: int) -> list[ObserverEffect]:
        self._out = []
        if name != TIMER_SYNC:
            return []
        self._gap_pull = False
        if self.log.last_executed == self._mark or self._held:
            self._pull()
            self._idle_ticks = min(self._idle_ticks + 1, 8)
        else:
            self._idle_ticks = 0
        self._mark = self.log.last_executed
        interval = min(self.params.sync_interval_us << self._idle_ticks, self.params.max_sync_interval_us)
        self._out.append(SetTimer(TIMER_SYNC, now + interval))
        return self._take()

    def forward_write(self, request_packet: bytes) -> list[ObserverEffect]:
        """A client's write reaching this observer goes to f+1 validators (at least one honest), which
        order it; the observer executes it when its committed batch arrives."""
        start = self.rng.randrange(self.config.n)
        return [SendToPeer(v, request_packet) for v in _weak_validators(self.validators, self.config.f, start)]

    def client_record(self, client: bytes) -> ClientRecord | None:
        """The last request of `client` this observer executed (drivers answer waiting writers from it)."""
        return self._clients.get(client)

    def recover(self, stable: PersistStable | None, entries: Sequence[CommittedEntry]) -> list[ObserverEffect]:
        """Resume from what this observer persisted: its last stable checkpoint, then the committed
        batches above it. Both are verified again (a checkpoint's proof over the snapshot's digest, each
        batch's commit certificate), so a damaged or planted data directory cannot inject state; what
        does not verify is dropped and fetched from peers instead."""
        self._out = []
        try:
            if stable is not None and stable.seq > self.log.last_executed:
                self.certs.proof(stable.seq, stable.proof, digest(stable.snapshot))
                self._install(stable.seq, stable.snapshot, stable.proof)
        except InvalidMessage as exc:
            self._reject(exc.reason, f"persisted checkpoint: {exc}")
        for entry in entries:
            seq = entry_seq(entry)
            if seq <= self.log.last_executed or seq > self.log.last_executed + self.params.window:
                continue
            try:
                self._held[seq] = self.certs.batch(pack_feed(FEED_BATCH, seq, entry))
            except InvalidMessage as exc:
                self._reject(exc.reason, f"persisted batch {seq}: {exc}")
        self._execute_ready()
        return self._take()

    def state_digest(self) -> bytes:
        """The digest a checkpoint at our execution point would carry."""
        return digest(encode_state(self.app, self._clients, self._last_time_us))

    # ------------------------------------------------------------------ batches

    def _on_batch(self, src: str, seq: int, packet: bytes, now: int) -> None:
        if seq <= self.log.last_executed or seq in self._held:
            self.duplicates += 1
            return
        if seq > self.log.last_executed + self.params.window:
            raise InvalidMessage("beyond_window", f"seq {seq} > {self.log.last_executed} + {self.params.window}")
        batch = self.certs.batch(packet)
        self._held[seq] = batch
        self._out.extend(SendToPeer(c, packet) for c in self.children if c != src)
        self._execute_ready()
        if self._held and not self._gap_pull:
            self._gap_pull = True  # we missed something (a partition, a withholding parent): ask soon
            self._out.append(SetTimer(TIMER_SYNC, now + self.params.gap_pull_us))

    def _execute_ready(self) -> None:
        while (batch := self._held.pop(self.log.last_executed + 1, None)) is not None:
            pp = batch.pre_prepare
            outcome = apply_batch(self.app, self._clients, self._last_time_us, pp)
            self._last_time_us = outcome.time_us
            self.log.executed(pp.seq, batch.packet)
            self._out.append(Executed(pp.seq, pp.view, outcome.time_us, pp.batch_digest, outcome.fresh,
                                      tuple(r.result for r in outcome.records), batch.entry))
            if pp.seq % self.config.checkpoint_interval == 0:
                snapshot = encode_state(self.app, self._clients, self._last_time_us)
                self._own[pp.seq] = (digest(snapshot), snapshot)
                proven = self._proven.pop(pp.seq, None)
                if proven is not None:
                    self._on_checkpoint("", pp.seq, proven)

    # ------------------------------------------------------------------ checkpoints

    def _on_checkpoint(self, src: str, seq: int, packet: bytes) -> None:
        if seq <= self.log.stable_seq or (seq in self._proven and src):
            self.duplicates += 1
            return
        if seq > self.log.last_executed + self.params.window:
            raise InvalidMessage("beyond_window", f"checkpoint {seq} > {self.log.last_executed} + {self.params.window}")
        proven_seq, state_digest, proof = self.certs.checkpoint(packet)
        assert proven_seq == seq
        if src:
            self._out.extend(SendToPeer(c, packet) for c in self.children if c != src)
        own = self._own.get(seq)
        if own is None:
            if seq > self.log.last_executed:
                self._proven[seq] = packet  # proven before we got there: checked when we do
            return
        if own[0] != state_digest:
            # A quorum of validators signed another state: this observer's execution diverged. It stops
            # serving this checkpoint; its reads are wrong until it restores from a peer.
            self._reject("state_diverged", f"own state at checkpoint {seq} differs from the validators'")
            self._own.pop(seq)
            return
        self._make_stable(seq, own[1], proof)

    def _make_stable(self, seq: int, snapshot: bytes, proof: tuple[Envelope, ...]) -> None:
        self.log.stable(seq, snapshot, proof)
        for s in [s for s in self._own if s <= seq]:
            del self._own[s]
        for s in [s for s in self._proven if s <= seq]:
            del self._proven[s]

    # ------------------------------------------------------------------ catching up

    def _pull(self) -> None:
        """Ask one peer drawn uniformly from all validators and observers: every node, validators
        included, then answers the same share of pulls however many observers there are, and a node
        whose overlay neighbours all withhold still reaches honest peers."""
        k = self.rng.randrange(len(self.validators) + len(self.peers))
        peer = self.validators[k] if k < len(self.validators) else self.peers[k - len(self.validators)]
        if peer == self.name:
            peer = self.validators[self.rng.randrange(len(self.validators))]
        self._asked = peer
        req = CatchUpRequest(self.log.last_executed, self.log.stable_seq)
        self._out.append(SendToPeer(peer, pack_feed(FEED_PULL, self.log.last_executed, req)))

    def _on_reply(self, src: str, packet: bytes) -> None:
        if src != self._asked:
            raise InvalidMessage("unsolicited_reply", f"no catch-up request outstanding to {src}")
        self._asked = None
        try:
            reply = decode(CatchUpReply, packet[9:])
        except DecodeError as exc:
            raise InvalidMessage("malformed", str(exc)) from None
        if reply.snapshot and reply.checkpoint_seq > self.log.last_executed:
            self.certs.proof(reply.checkpoint_seq, reply.proof, digest(reply.snapshot))
            self._install(reply.checkpoint_seq, reply.snapshot, reply.proof)
        elif reply.proof and reply.checkpoint_seq > self.log.stable_seq:
            own = self._own.get(reply.checkpoint_seq)
            if own is not None:
                self.certs.proof(reply.checkpoint_seq, reply.proof, own[0])
                self._make_stable(reply.checkpoint_seq, own[1], reply.proof)
        for batch_packet in reply.batches[: self.params.max_entries]:
            _, seq = feed_header(batch_packet)
            if self.log.last_executed < seq <= self.log.last_executed + self.params.window and seq not in self._held:
                self._held[seq] = self.certs.batch(batch_packet)
        self._execute_ready()

    def _install(self, seq: int, snapshot: bytes, proof: tuple[Envelope, ...]) -> None:
        try:
            self._clients, self._last_time_us = restore_state(self.app, snapshot)
        except DecodeError as exc:
            raise InvalidMessage("malformed", f"snapshot: {exc}") from None
        self.log.restored(seq)
        for s in [s for s in self._held if s <= seq]:
            del self._held[s]
        self._out.append(StateRestored(seq))
        self._make_stable(seq, snapshot, proof)

    # ------------------------------------------------------------------ helpers

    def _reject(self, reason: str, detail: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        self._out.append(Rejected(reason, detail))

    def _take(self) -> list[ObserverEffect]:
        out, self._out = self._out, []
        return out
