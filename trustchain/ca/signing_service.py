"""The FROST signing coordinator that runs beside each validator's replica (never inside ``execute``).

Why outside consensus: FROST nonces are secret and random and only a quorum takes part, so signing is
an unordered exchange between the step that records a pending issuance and the ordered *finalize*
command (see ``issuance``; built by ``commands.finalize_command``). This module is sans-I/O: the node
feeds it inputs and carries out the effects it returns.

Inputs: ``start`` (pre-publish round-1 commitments), ``on_pending`` (the local replica recorded a
pending issuance), ``on_message`` (signed bytes from a peer), ``on_timer``, ``on_finalized`` and
``reconcile`` (the replica's whole pending set, e.g. after state transfer restored it from a snapshot,
which emits no events). What is signed is opaque: a pending certificate, CRL or OCSP response TBS.
Effects: ``Send`` (to validator j), ``SetTimer``, ``SubmitFinalize`` (a finalize command to order) and
``Misbehaviour`` (a provably bad share, by sender).

Protocol. Every signer pre-publishes, to each potential aggregator, a pool of round-1 commitments
(RFC 9591 allows commitments ahead of the message); a pool belongs to one aggregator so two
aggregators can never make a signer use one nonce twice. The aggregator of pending ``p`` in attempt
``r`` is ``ids[(p + r) % n]``. It picks t signers with commitments in its pool (skipping proven
cheaters and signers that timed out for this issuance) and sends them the commitment list. A signer
signs only the TBS bytes its *own* replica recorded for ``p`` (so a Byzantine aggregator cannot get
anything else signed), uses each nonce at most once (it is deleted before the share is sent) and
piggybacks a fresh commitment. The aggregator runs ``frost.aggregate_verified``: a bad share names its
sender, who is excluded, and signing continues with another quorum. Every validator arms an attempt
timer per pending issuance; when it fires before the issuance is finalized, the next validator in the
rotation aggregates, so a silent or Byzantine aggregator only delays the certificate.

Restarts. Nonce and session ids are ``(epoch << 32) + counter``. A restarted service must be given a
larger ``epoch`` than its previous incarnation (the node persists a counter; the simulator uses the
incarnation): its old commitments may still sit in other validators' pools, and an aggregator that
sees a commitment from a newer epoch drops that signer's older ones (their nonces died with the old
process), instead of picking them and timing out. Shares for sessions of an aggregator's previous
incarnation name session ids it no longer has and are ignored.

Lost messages. Every commitment an aggregator puts into a session leaves its pool, whether or not the
signer ever sees the request, so before GST (partitions, loss, a paused signer) pools drain. An
aggregator whose pool for a signer runs low asks that signer for more (``CommitmentRequest``) and asks
again after ``session_timeout_us`` while nothing has come back: a request or reply lost before GST must
not exclude the signer for good. A signer keeps at most ``max_pool`` unused nonces per aggregator and,
when asked for more, forgets its oldest ones for that aggregator (those were handed out in sessions
whose requests never reached it, or are the next the aggregator will pick) instead of refusing. A signer
that missed a session deadline is *suspect*: every aggregation picks it last until it is heard from
again, so a crashed signer is not chosen over and over for each issuance.

All messages are Ed25519-signed by the sending validator over a domain-separated encoding.

Batching. Everything one input makes a validator send to one peer leaves as one message: the sign
requests for all the issuances a consensus batch recorded go to a signer together (``SignRequests``),
and its shares come back together (``Shares``), so the per-message costs (one Ed25519 signature and
one verification, one transport frame) are paid per batch, not per certificate. Each party derives a
session's ``frost.SigningContext`` once: the aggregator signs its own share and aggregates with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from trustchain.ca import commands as cacommands
from trustchain.ca import frost
from trustchain.ca.group import RandBytes
from trustchain.ca.signing_messages import (
    DOMAIN,
    EPOCH_SHIFT,
    MAX_BATCH,
    ROOT_DOMAIN,
    VERSION,
    CommitmentRequest,
    Commitments,
    MsgKind,
    PublishedCommitment,
    SessionCommitment,
    Share,
    Shares,
    SignedMessage,
    SignRequest,
    SignRequests,
    coalesce,
    open_message,
    seal,
)
from trustchain.crypto.signing import ED25519, Signer, Verifier
from trustchain.encoding import DecodeError

__all__ = [
    "DOMAIN", "EPOCH_SHIFT", "MAX_BATCH", "ROOT_DOMAIN", "VERSION",
    "CommitmentRequest", "Commitments", "Effect", "Misbehaviour", "MsgKind",
    "PublishedCommitment", "Send", "SessionCommitment", "SetTimer", "Share", "Shares", "SignRequest", "SignRequests",
    "SignedMessage", "SigningConfig", "SigningService", "SubmitFinalize", "TimerKey", "open_message", "seal",
]

# --- effects ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimerKey:
    kind: str  # "attempt" | "session"
    pending_id: int
    value: int


@dataclass(frozen=True)
class Send:
    to: int
    data: bytes


@dataclass(frozen=True)
class SetTimer:
    key: TimerKey
    at_us: int


@dataclass(frozen=True)
class SubmitFinalize:
    """Order ``command`` (a ``commands.finalize_command``) through consensus."""

    pending_id: int
    signature: bytes
    command: bytes


@dataclass(frozen=True)
class Misbehaviour:
    accused: int
    reason: str


Effect = Send | SetTimer | SubmitFinalize | Misbehaviour


@dataclass(frozen=True)
class SigningConfig:
    """``attempt_timeout_us`` and ``session_timeout_us`` are the floors of the adaptive timeouts (see
    ``SigningService.session_timeout``): under load they grow with the latencies observed, so waiting
    signers and aggregators are not mistaken for dead ones and their work is not started over."""

    pool_size: int = 8
    max_pool: int = 64
    attempt_timeout_us: int = 2_000_000
    session_timeout_us: int = 1_000_000
    max_backoff: int = 4  # the adaptive timeouts stay within this many times their floors


@dataclass
class _Pending:
    tbs: bytes
    recorded_us: int
    submitted: bool = False
    waiting: bool = False  # we aggregate but lacked commitments: retry when some arrive
    slow: set[int] = field(default_factory=set)


@dataclass
class _Session:
    pending_id: int
    commitments: list[frost.SigningCommitment]
    started_us: int = 0
    shares: dict[int, frost.SignatureShare] = field(default_factory=dict)
    done: bool = False
    context: frost.SigningContext | None = None  # set when our own share computed it


@dataclass(frozen=True)
class _Out:
    """A message to send, before ``_flush`` coalesces one input's messages per receiver."""

    to: int
    message: Any


_Internal = Effect | _Out


class SigningService:
    """One validator's FROST coordinator. ``identifier`` is its FROST identifier (1..n); ``peers`` maps
    every validator's identifier (including this one) to its Ed25519 message-signing public key."""

    def __init__(
        self,
        key: frost.KeyPackage,
        public: frost.PublicKeyPackage,
        signer: Signer,
        peers: Mapping[int, bytes],
        rand_bytes: RandBytes,
        config: SigningConfig | None = None,
        epoch: int = 0,
        verifier: Verifier = ED25519,
        domain: bytes = DOMAIN,
    ) -> None:
        assert key.identifier in peers and peers[key.identifier] == signer.public_key
        assert set(public.verifying_shares) == set(peers)
        if not 0 <= epoch < 1 << 31:
            raise ValueError(f"epoch must be in 0..2^31-1, got {epoch}")
        self.me = key.identifier
        self.key = key
        self.public = public
        self.signer = signer
        self.verifier = verifier  # checks peers' signatures: the same scheme as the consensus keys
        self.domain = domain
        self.peers = dict(peers)
        self.ids = sorted(peers)
        self.rand_bytes = rand_bytes
        self.config = config or SigningConfig()
        self.nonces: dict[tuple[int, int], frost.SigningNonces] = {}  # (aggregator, nonce_id) -> nonces
        self.epoch = epoch
        self.next_nonce_id = (epoch << EPOCH_SHIFT) + 1
        self.pools: dict[int, dict[int, frost.SigningCommitment]] = {i: {} for i in self.ids}
        self.pool_epoch: dict[int, int] = {i: 0 for i in self.ids}
        self.pending: dict[int, _Pending] = {}
        self.early: dict[int, list[tuple[int, SignRequest]]] = {}
        self.sessions: dict[int, _Session] = {}
        self.next_session = (epoch << EPOCH_SHIFT) + 1
        self.cheaters: dict[int, str] = {}
        self.requested: dict[int, int] = {}  # signer -> when we last asked it for commitments
        self.suspect: set[int] = set()  # missed a session deadline and not heard from since
        self.finalized: set[int] = set()
        self.done_below = 0  # every pending id below this is finalized or expired (see ``reconcile``)
        # smoothed latencies observed here (0: none yet): a session, start to last share; an issuance,
        # recorded to finalized (ordering the finalize included)
        self.session_us = 0
        self.finalize_us = 0

    # -- inputs ------------------------------------------------------------------------------------

    def start(self, now_us: int) -> list[Effect]:
        """Pre-publish a pool of round-1 commitments to every aggregator (including ourselves)."""
        effects: list[_Internal] = []
        for agg in self.ids:
            fresh = self._new_commitments(agg, self.config.pool_size)
            if agg == self.me:
                self._add_to_pool(self.me, fresh)
            else:
                effects.append(self._send(agg, Commitments(fresh)))
        return _flush(self, effects)

    def aggregator(self, pending_id: int, attempt: int) -> int:
        return self.ids[(pending_id + attempt) % len(self.ids)]

    def session_timeout(self) -> int:
        """How long an aggregator waits for a session's shares: the configured floor, or three times the
        smoothed session latency when that is longer (a loaded signer is slow, not gone: restarting
        the session with others would only add work), at most ``max_backoff`` times the floor."""
        floor = self.config.session_timeout_us
        return min(max(floor, 3 * self.session_us), floor * max(1, self.config.max_backoff))

    def attempt_timeout(self, attempt: int) -> int:
        """When the next validator in the rotation takes over issuance ``attempt``'s aggregation: the
        floor, or three times the smoothed issuance latency, doubled per attempt, at most ``max_backoff``
        times the floor (so a crashed aggregator still costs a bounded wait)."""
        floor = self.config.attempt_timeout_us
        base = max(floor, 3 * self.finalize_us) << min(max(0, attempt - 1), 8)
        return min(base, floor * max(1, self.config.max_backoff))

    @staticmethod
    def _smooth(old: int, sample: int) -> int:
        return sample if old == 0 else (7 * old + max(0, sample)) // 8

    def on_pending(self, pending_id: int, tbs: bytes, now_us: int) -> list[Effect]:
        """Our replica recorded ``events.PendingRecorded``: arm the attempt timer, maybe aggregate."""
        return _flush(self, self._on_pending(pending_id, tbs, now_us))

    def _on_pending(self, pending_id: int, tbs: bytes, now_us: int) -> list[_Internal]:
        if pending_id in self.pending or self._done(pending_id):
            return []
        self.pending[pending_id] = _Pending(tbs, now_us)
        timer = SetTimer(TimerKey("attempt", pending_id, 1), now_us + self.attempt_timeout(1))
        effects: list[_Internal] = [timer]
        if self.aggregator(pending_id, 0) == self.me:
            effects += self._start_session(pending_id, now_us)
        for sender, req in self.early.pop(pending_id, []):
            effects += self._on_sign_request(sender, req)
        return effects

    def on_message(self, data: bytes, now_us: int) -> list[Effect]:
        return _flush(self, self._on_message(data, now_us))

    def _on_message(self, data: bytes, now_us: int) -> list[_Internal]:
        try:
            sender, msg = open_message(data, self.peers, self.me, self.verifier, self.domain)
        except DecodeError:
            return []
        if sender == self.me:
            return []
        if isinstance(msg, Commitments):
            self._add_to_pool(sender, msg.commitments)
            self.requested.pop(sender, None)
            self.suspect.discard(sender)
            return self._retry_waiting(now_us)
        if isinstance(msg, CommitmentRequest):
            count = max(0, min(msg.count, self.config.pool_size, self.config.max_pool))
            if count == 0:
                return []
            # Never refuse for lack of room: nonces whose sign requests were lost would otherwise fill
            # the quota for good. Forget the oldest (the aggregator picks its lowest ids first).
            held = sorted(nid for agg, nid in self.nonces if agg == sender)
            for nid in held[: max(0, len(held) + count - self.config.max_pool)]:
                del self.nonces[(sender, nid)]
            return [self._send(sender, Commitments(self._new_commitments(sender, count)))]
        if isinstance(msg, SignRequest):
            return self._on_sign_request_or_hold(sender, msg)
        if isinstance(msg, SignRequests):
            effects: list[_Internal] = []
            for req in msg.requests[:MAX_BATCH]:
                effects += self._on_sign_request_or_hold(sender, req)
            return effects
        if isinstance(msg, Shares):
            effects = []
            for share in msg.shares[:MAX_BATCH]:
                effects += self._on_share(sender, share, now_us)
            return effects
        assert isinstance(msg, Share)
        return self._on_share(sender, msg, now_us)

    def _on_sign_request_or_hold(self, sender: int, msg: SignRequest) -> list[_Internal]:
        if self._done(msg.pending_id):
            return []
        if msg.pending_id not in self.pending:  # our replica has not executed it yet
            queue = self.early.setdefault(msg.pending_id, [])
            if len(queue) < len(self.ids) * 4:
                queue.append((sender, msg))
            return []
        return self._on_sign_request(sender, msg)

    def on_timer(self, key: TimerKey, now_us: int) -> list[Effect]:
        return _flush(self, self._on_timer(key, now_us))

    def _on_timer(self, key: TimerKey, now_us: int) -> list[_Internal]:
        p = self.pending.get(key.pending_id)
        if p is None:
            return []
        if key.kind == "attempt":
            nxt = key.value + 1
            timer = SetTimer(TimerKey("attempt", key.pending_id, nxt), now_us + self.attempt_timeout(nxt))
            effects: list[_Internal] = [timer]
            if self.aggregator(key.pending_id, key.value) == self.me:
                p.submitted = False
                effects += self._start_session(key.pending_id, now_us)
            return effects
        session = self.sessions.get(key.value)
        if session is None or session.done:
            return []
        # Signers that did not answer in time are skipped for this issuance (slow, not proven bad) and
        # picked last for every other one until they are heard from again.
        session.done = True
        missing = {c.identifier for c in session.commitments if c.identifier not in session.shares}
        p.slow |= missing
        self.suspect |= missing - {self.me}
        return self._start_session(key.pending_id, now_us)

    def on_finalized(self, pending_id: int, now_us: int | None = None) -> list[Effect]:
        """Our replica recorded the certificate (or the pending expired): stop working on it. With
        ``now_us``, its latency feeds the attempt timeout."""
        p = self.pending.pop(pending_id, None)
        if p is not None and now_us is not None:
            self.finalize_us = self._smooth(self.finalize_us, now_us - p.recorded_us)
        self.early.pop(pending_id, None)
        self.finalized.add(pending_id)
        for sid in [s for s, v in self.sessions.items() if v.pending_id == pending_id]:
            del self.sessions[sid]
        return []

    def reconcile(self, pending: Mapping[int, bytes], now_us: int) -> list[Effect]:
        """Follow the replica's authoritative pending set ``{pending_id: tbs}`` (``CAApplication.
        pending_items()``): start on the ones this service does not know (a snapshot restored by state
        transfer or recovery emits no events), stop work on the ones that are gone. Pending ids are
        assigned in increasing order, so every id below the smallest pending one is done: the
        ``finalized`` set is compacted to that bound and stays small."""
        effects: list[_Internal] = []
        for pid in sorted(set(self.pending) - set(pending)):
            effects += self.on_finalized(pid, now_us)
        for pid in sorted(pending):
            if pid not in self.pending and not self._done(pid):
                effects += self._on_pending(pid, pending[pid], now_us)
        seen = max([*self.finalized, *self.pending, self.done_below - 1])
        floor = min(pending) if pending else seen + 1
        if floor > self.done_below:
            self.done_below = floor
            self.finalized = {p for p in self.finalized if p >= floor}
            for pid in [p for p in self.early if p < floor]:
                del self.early[pid]
        return _flush(self, effects)

    def _done(self, pending_id: int) -> bool:
        return pending_id < self.done_below or pending_id in self.finalized

    # -- signer side -------------------------------------------------------------------------------

    def _new_commitments(self, aggregator: int, count: int) -> tuple[PublishedCommitment, ...]:
        out = []
        for _ in range(count):
            nonces, c = frost.commit(self.me, self.key.signing_share, self.rand_bytes)
            nid = self.next_nonce_id
            self.next_nonce_id += 1
            self.nonces[(aggregator, nid)] = nonces
            out.append(PublishedCommitment(nid, c.hiding, c.binding))
        return tuple(out)

    def _make_share(self, nonces: frost.SigningNonces, ctx: frost.SigningContext) -> bytes:
        return frost.sign_with_context(self.key, nonces, ctx).share

    def _sign(self, aggregator: int, req: SignRequest) -> tuple[bytes, frost.SigningContext] | None:
        p = self.pending.get(req.pending_id)
        own = [c for c in req.commitments if c.identifier == self.me]
        if p is None or len(own) != 1:
            return None
        # Single use: the nonce leaves our state before any share exists.
        nonces = self.nonces.pop((aggregator, own[0].nonce_id), None)
        if nonces is None:
            return None
        commitments = [frost.SigningCommitment(c.identifier, c.hiding, c.binding) for c in req.commitments]
        try:
            # our own commitment is checked against the nonces by ``sign_with_context``, not re-validated
            ctx = frost.signing_context(self.public.group_public_key, commitments, p.tbs, checked=(self.me,))
            return self._make_share(nonces, ctx), ctx
        except frost.FrostError:
            return None

    def _on_sign_request(self, sender: int, req: SignRequest) -> list[_Internal]:
        signed = self._sign(sender, req)
        if signed is None:
            return []
        return [self._send(sender, Share(req.pending_id, req.session, signed[0], self._new_commitments(sender, 1)))]

    # -- aggregator side ---------------------------------------------------------------------------

    def _add_to_pool(self, signer: int, commitments: tuple[PublishedCommitment, ...]) -> None:
        pool = self.pools[signer]
        for c in commitments:
            epoch = c.nonce_id >> EPOCH_SHIFT
            if epoch < self.pool_epoch[signer]:
                continue  # published by an incarnation that has since restarted: its nonces are gone
            if epoch > self.pool_epoch[signer]:
                self.pool_epoch[signer] = epoch
                pool.clear()
            if len(pool) >= self.config.max_pool:
                break
            pool.setdefault(c.nonce_id, frost.SigningCommitment(signer, c.hiding, c.binding))

    def _retry_waiting(self, now_us: int) -> list[_Internal]:
        effects: list[_Internal] = []
        for pid in sorted(k for k, v in self.pending.items() if v.waiting):
            if pid in self.pending and self.pending[pid].waiting:
                effects += self._start_session(pid, now_us)
        return effects

    def _candidates(self, p: _Pending) -> list[int]:
        """Signers with a commitment in our pool, in the order to pick them: ourselves (one fewer message
        to wait for), then signers not suspected of being down, then suspects."""
        usable = [i for i in self.ids if i not in self.cheaters and i not in p.slow and self.pools[i]]
        return sorted(usable, key=lambda i: (i != self.me, i in self.suspect, i))

    def _start_session(self, pending_id: int, now_us: int) -> list[_Internal]:
        p = self.pending[pending_id]
        p.waiting = False
        effects: list[_Internal] = []
        for i in self.ids:
            if i == self.me or i in self.cheaters or len(self.pools[i]) >= 2:
                continue
            asked = self.requested.get(i)
            # one outstanding request per signer, repeated only after a session timeout: a lost request
            # or reply must not starve the pool for good, and retries cannot loop
            if asked is None or now_us - asked >= self.config.session_timeout_us:
                self.requested[i] = now_us
                effects.append(self._send(i, CommitmentRequest(self.config.pool_size)))
        if not self.pools[self.me]:
            self._add_to_pool(self.me, self._new_commitments(self.me, self.config.pool_size))
        candidates = self._candidates(p)
        if len(candidates) < self.public.min_signers and p.slow:
            p.slow.clear()  # nobody left to try: give the slow ones another chance right away
            candidates = self._candidates(p)
        chosen = sorted(candidates[: self.public.min_signers])
        if len(chosen) < self.public.min_signers:
            p.waiting = True  # retried when commitments arrive, or at our next attempt
            return effects
        sid = self.next_session
        self.next_session += 1
        session_commitments = []
        for i in chosen:
            nonce_id = min(self.pools[i])
            c = self.pools[i].pop(nonce_id)
            session_commitments.append(SessionCommitment(i, nonce_id, c.hiding, c.binding))
        session = _Session(
            pending_id, [frost.SigningCommitment(c.identifier, c.hiding, c.binding) for c in session_commitments],
            now_us,
        )
        self.sessions[sid] = session
        req = SignRequest(pending_id, sid, tuple(session_commitments))
        effects.append(SetTimer(TimerKey("session", pending_id, sid), now_us + self.session_timeout()))
        for i in chosen:
            if i == self.me:
                signed = self._sign(self.me, req)
                self._add_to_pool(self.me, self._new_commitments(self.me, 1))
                if signed is not None:
                    session.shares[self.me] = frost.SignatureShare(self.me, signed[0])
                    session.context = signed[1]
            else:
                effects.append(self._send(i, req))
        return effects + self._try_aggregate(sid, now_us)

    def _on_share(self, sender: int, msg: Share, now_us: int) -> list[_Internal]:
        self._add_to_pool(sender, msg.replenish[:1])
        self.suspect.discard(sender)
        session = self.sessions.get(msg.session)
        if session is None or session.done or session.pending_id != msg.pending_id:
            return self._retry_waiting(now_us)  # the replenished commitment may complete a quorum
        if sender not in {c.identifier for c in session.commitments} or sender in session.shares:
            return []
        session.shares[sender] = frost.SignatureShare(sender, msg.share)
        return self._try_aggregate(msg.session, now_us)

    def _try_aggregate(self, sid: int, now_us: int) -> list[_Internal]:
        session = self.sessions[sid]
        if len(session.shares) < len(session.commitments):
            return []
        session.done = True
        self.session_us = self._smooth(self.session_us, now_us - session.started_us)
        p = self.pending.get(session.pending_id)
        if p is None:
            return []
        shares = [session.shares[i] for i in sorted(session.shares)]
        try:
            if session.context is not None:
                signature = frost.aggregate_with_context(session.context, self.public, shares)
            else:
                signature = frost.aggregate_verified(session.commitments, p.tbs, self.public, shares)
        except frost.FrostError as exc:
            effects: list[_Internal] = []
            for culprit in exc.culprits:
                reason = f"invalid signature share for pending issuance {session.pending_id}"
                self.cheaters.setdefault(culprit, reason)
                effects.append(Misbehaviour(culprit, reason))
            if not exc.culprits:  # cannot attribute (should not happen): treat all as slow
                p.slow |= set(session.shares)
            return effects + self._start_session(session.pending_id, now_us)
        if p.submitted:
            return []
        p.submitted = True
        command = cacommands.finalize_command(session.pending_id, signature)
        return [SubmitFinalize(session.pending_id, signature, command)]

    def _send(self, to: int, message: Any) -> _Out:
        return _Out(to, message)


def _flush(service: SigningService, effects: list[_Internal]) -> list[Effect]:
    """One input's effects with its messages coalesced: one sealed message per receiver and kind,
    sign requests into ``SignRequests``, shares into ``Shares``, commitments into one ``Commitments``."""
    out: list[Effect] = []
    queued: dict[int, dict[type, list[Any]]] = {}
    for e in effects:
        if isinstance(e, _Out):
            queued.setdefault(e.to, {}).setdefault(type(e.message), []).append(e.message)
        else:
            out.append(e)
    for to, kinds in queued.items():
        for cls, items in kinds.items():
            out += [Send(to, seal(service.signer, service.me, to, m, service.domain)) for m in coalesce(cls, items)]
    return out
