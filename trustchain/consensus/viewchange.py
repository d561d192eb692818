"""View change: validating view-change messages, computing the new view's pre-prepares, and the
replica's side of the protocol (`ViewChanging`).

Both the new primary (to build NEW-VIEW) and every backup (to check it) run `new_view_pre_prepares`
on the same q view-change messages, so a primary that omits or alters a prepared request is
caught: the backups compute a different set and refuse the new view.

A backup's request timer runs while it knows of a request not yet executed; on expiry it asks for the
next view. It joins a view change once f+1 replicas asked for a later view, and the timer for the
view after that starts only once q replicas asked for this view or a later one (PBFT's liveness
rules). What the replica remembers across views is `replica_state.ViewChangeState`.
"""

from __future__ import annotations

from trustchain.consensus.certificates import (
    InvalidMessage,
    SignatureChecker,
    check_checkpoint_proof,
    check_pre_prepare,
    check_prepared,
)
from trustchain.consensus.core import TIMER_BATCH, TIMER_VC_RESEND, TIMER_VIEW_CHANGE, ReplicaCore
from trustchain.consensus.effects import Broadcast, SendToReplica, ViewEntered
from trustchain.consensus.fair_queue import FairQueue, request_key
from trustchain.consensus.messages import Envelope, Kind, NewView, PrePrepare, ViewChange, pack, seal
from trustchain.consensus.replica_state import CheckedViewChange, Phase

__all__ = ["NULL_DIGEST", "CheckedViewChange", "ViewChanging", "check_view_change", "new_view_pre_prepares"]


def check_view_change(checker: SignatureChecker, env: Envelope) -> CheckedViewChange:
    vc: ViewChange = checker.open(env, Kind.VIEW_CHANGE)
    check_checkpoint_proof(checker, vc.checkpoint_proof, vc.stable_seq, None)
    window = checker.config.watermark_window
    prepared: dict[int, PrePrepare] = {}
    for cert in vc.prepared:
        pp = check_prepared(checker, cert)
        if pp.view >= vc.new_view:
            raise InvalidMessage("invalid_view_change", f"prepared in view {pp.view} >= {vc.new_view}")
        if not vc.stable_seq < pp.seq <= vc.stable_seq + window:
            raise InvalidMessage("invalid_view_change", f"prepared seq {pp.seq} outside the window")
        if pp.seq in prepared:
            raise InvalidMessage("invalid_view_change", f"two prepared certificates for seq {pp.seq}")
        prepared[pp.seq] = pp
    return CheckedViewChange(env, vc, prepared)


NULL_DIGEST = PrePrepare.compute_digest(0, ())


def new_view_pre_prepares(new_view: int, vcs: list[CheckedViewChange]) -> tuple[int, list[PrePrepare]]:
    """PBFT's O set: for every sequence between the highest stable checkpoint (min-s) and the highest
    prepared sequence (max-s), re-propose the batch prepared in the highest view, or a null batch."""
    assert vcs, "a new view needs view-change messages"
    min_s = max(c.message.stable_seq for c in vcs)
    best: dict[int, PrePrepare] = {}
    for c in vcs:
        for seq, pp in c.prepared.items():
            if seq > min_s and (seq not in best or pp.view > best[seq].view):
                best[seq] = pp
    max_s = max(best, default=min_s)
    out = []
    for seq in range(min_s + 1, max_s + 1):
        if seq in best:
            pp = best[seq]
            out.append(PrePrepare(new_view, seq, pp.batch_digest, pp.timestamp_us, pp.batch))
        else:
            out.append(PrePrepare(new_view, seq, NULL_DIGEST, 0, ()))
    return min_s, out


class ViewChanging(ReplicaCore):
    """The replica's side of the view change: asking for a view, joining one, forming it as its
    primary, checking and entering it as a backup, and helping replicas left in an older view."""

    def _vc_timeout(self) -> int:
        base = self._config.view_change_timeout_us
        return min(self._config.max_view_change_timeout_us, base << min(self._vc.attempts, 30))

    def _start_view_change(self, new_view: int, now: int) -> None:
        assert new_view > self._view, "views only move forward"
        self._view = new_view
        self._phase = Phase.VIEW_CHANGE
        self._ahead.clear()  # all for the old view
        self._cancel_timer(TIMER_BATCH)
        low = self._cp.low_watermark
        prepared = tuple(
            slot.prepared_cert
            for seq, slot in sorted(self._slots.items())
            if seq > low and slot.prepared_cert is not None
        )
        vc = ViewChange(new_view, low, self._cp.stable_proof, prepared)
        env = self._sign_and_broadcast(vc)
        self._vc.own_view_change = env
        self._set_timer(TIMER_VC_RESEND, now + self._config.view_change_timeout_us)
        self._cancel_timer(TIMER_VIEW_CHANGE)
        self._vc.attempts += 1
        self._record_view_change(self._check_view_change(env))
        self._arm_view_change_timer(now)
        self._try_new_view(now)

    def _resend_view_change(self, now: int) -> None:
        """View-change messages lost to a partition are sent again until the view forms: without
        this, replicas that each hold fewer than q of them would wait for ever."""
        if self._phase is Phase.VIEW_CHANGE and self._vc.own_view_change is not None:
            self._emit(Broadcast(pack(self._vc.own_view_change)))
            self._set_timer(TIMER_VC_RESEND, now + self._config.view_change_timeout_us)

    def _arm_view_change_timer(self, now: int) -> None:
        """PBFT's liveness rule: the timer for the next view starts only once a quorum of replicas
        asked for this view or a later one, so a lone replica whose timer fired (a pause, a partition)
        waits in its view instead of racing ahead alone, and the others find it there at their next
        view change. Requests for later views count too: a replica that moved on to view v+1 after
        asking for v (its own request for v may never have been delivered) still wants to leave every
        view below v+1, and without counting it the replicas left in v would wait below a quorum,
        with no timer, for a message that will never come."""
        if self._phase is not Phase.VIEW_CHANGE or TIMER_VIEW_CHANGE in self._timers:
            return
        asking = sum(1 for v in self._vc.latest.values() if v >= self._view)
        if asking >= self._config.quorum:
            self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())

    def _check_view_change(self, env: Envelope) -> CheckedViewChange:
        """Validated once: a NEW-VIEW repeats view changes this replica has usually seen already."""
        cache = self._vc.checked
        key = env.digest + env.signature
        checked = cache.get(key)
        if checked is None:
            checked = check_view_change(self._checker, env)
            cache[key] = checked
            if len(cache) > 4 * self._config.n:
                del cache[next(iter(cache))]
        return checked

    def _record_view_change(self, checked: CheckedViewChange) -> None:
        sender = checked.envelope.sender
        v = checked.message.new_view
        previous = self._vc.latest.get(sender)
        if previous is not None and previous >= v:
            return
        if previous is not None:
            self._vc.received.get(previous, {}).pop(sender, None)
        self._vc.latest[sender] = v
        self._vc.received.setdefault(v, {})[sender] = checked

    def _on_view_change(self, checked: CheckedViewChange, now: int) -> None:
        vc = checked.message
        sender = checked.envelope.sender
        self._peers.saw_sequence(sender, vc.stable_seq)
        if vc.new_view < self._view or (vc.new_view == self._view and self._phase is Phase.NORMAL):
            self._help_laggard(sender)
            raise InvalidMessage("stale_view_change", f"for view {vc.new_view}, current {self._view}")
        self._record_view_change(checked)
        # Join when f+1 replicas want a later view: at least one honest replica timed out.
        ahead = sorted(v for v in self._vc.latest.values() if v > self._view)
        if len(ahead) >= self._config.weak_quorum:
            self._start_view_change(ahead[len(ahead) - self._config.weak_quorum], now)
            return
        self._arm_view_change_timer(now)
        self._try_new_view(now)

    def _new_view_pre_prepares(self, v: int, vcs: list[CheckedViewChange]) -> tuple[int, list[PrePrepare]]:
        """One computation for the primary that builds NEW-VIEW and the backups that check it."""
        return new_view_pre_prepares(v, vcs)

    def _help_laggard(self, sender: int) -> None:
        """A replica still asks for a view below ours: show it how we got here, so that views converge
        instead of each side waiting for the other (PBFT's view synchronisation by retransmission).
        In the view we are in, that is its NEW-VIEW; while we wait for a later view, our own
        VIEW-CHANGE, which counts towards its timer (`_arm_view_change_timer`) and, with f others,
        makes it join us."""
        vc = self._vc
        if self._phase is Phase.NORMAL and vc.current_new_view is not None and self.is_primary:
            self._emit(SendToReplica(sender, pack(vc.current_new_view)))
        elif (self._phase is Phase.VIEW_CHANGE and vc.own_view_change is not None
              and vc.latest.get(sender, -1) < self._view):
            self._emit(SendToReplica(sender, pack(vc.own_view_change)))

    def _try_new_view(self, now: int) -> None:
        v = self._view
        if self._phase is not Phase.VIEW_CHANGE or not self.is_primary or v in self._vc.new_view_sent:
            return
        vcs = self._vc.received.get(v, {})
        if len(vcs) < self._config.quorum:
            return
        chosen = [vcs[s] for s in sorted(vcs)][: self._config.quorum]
        min_s, pps = self._new_view_pre_prepares(v, chosen)
        pp_envs = tuple(seal(self._signer, self._id, pp, self._config.epoch) for pp in pps)
        nv = NewView(v, tuple(c.envelope for c in chosen), pp_envs)
        self._vc.new_view_sent.add(v)
        env = self._sign_and_broadcast(nv)
        self._enter_view(v, env, min_s, list(zip(pp_envs, pps, strict=True)), now)

    def _on_new_view(self, env: Envelope, nv: NewView, now: int) -> None:
        if env.sender != self._config.primary(nv.view):
            raise InvalidMessage("not_primary", f"new-view for {nv.view} from replica {env.sender}")
        if nv.view < self._view or (nv.view == self._view and self._phase is Phase.NORMAL):
            return  # already there
        checked: list[CheckedViewChange] = []
        senders: set[int] = set()
        for vc_env in nv.view_changes:
            c = self._check_view_change(vc_env)
            if c.message.new_view != nv.view or vc_env.sender in senders:
                raise InvalidMessage("invalid_new_view", "view-change set is for another view or repeats")
            senders.add(vc_env.sender)
            checked.append(c)
        if len(checked) < self._config.quorum:
            raise InvalidMessage("invalid_new_view", f"only {len(checked)} view-change messages")
        min_s, pairs = self._check_new_view_pre_prepares(nv, checked)
        for c in checked:
            self._peers.saw_sequence(c.envelope.sender, c.message.stable_seq)
        self._enter_view(nv.view, env, min_s, pairs, now)

    def _check_new_view_pre_prepares(
        self, nv: NewView, checked: list[CheckedViewChange]
    ) -> tuple[int, list[tuple[Envelope, PrePrepare]]]:
        """The NEW-VIEW's pre-prepares must be exactly those recomputed from its view changes: a new
        primary can neither drop nor alter a batch that may have committed."""
        min_s, expected = self._new_view_pre_prepares(nv.view, checked)
        if len(expected) != len(nv.pre_prepares):
            raise InvalidMessage("invalid_new_view", "pre-prepare set does not match the view changes")
        pairs: list[tuple[Envelope, PrePrepare]] = []
        for pp_env, want in zip(nv.pre_prepares, expected, strict=True):
            got = check_pre_prepare(self._checker, pp_env)
            if got != want:
                raise InvalidMessage("invalid_new_view", f"pre-prepare for seq {want.seq} was altered")
            pairs.append((pp_env, got))
        return min_s, pairs

    def _enter_view(
        self, v: int, nv_env: Envelope, min_s: int, pairs: list[tuple[Envelope, PrePrepare]], now: int
    ) -> None:
        self._view = v
        self._phase = Phase.NORMAL
        self._vc.postponed = False
        self._ahead.clear()  # all for an older view
        self._vc.current_new_view = nv_env
        for old in [w for w in self._vc.received if w <= v]:
            del self._vc.received[old]
        self._cancel_timer(TIMER_VIEW_CHANGE)
        self._cancel_timer(TIMER_VC_RESEND)
        null_filled = sum(1 for _, pp in pairs if not pp.batch)
        self._emit(ViewEntered(v, len(pairs) - null_filled, null_filled))
        max_s = min_s
        for pp_env, pp in pairs:
            max_s = max(max_s, pp.seq)
            if pp.seq <= self._cp.low_watermark:
                continue
            self._accept_pre_prepare(pp_env, pp, now)
        self._unproposed = FairQueue()
        if self.is_primary:
            self._next_seq = max(max_s, self._cp.low_watermark, self._last_executed) + 1
            in_flight = {request_key(r) for s in self._slots.values() if v in s.pre_prepares
                         for r in s.pre_prepares[v][1].batch}
            for k, r in self._pending.items():
                if k not in in_flight:
                    self._unproposed.add(r)
        buffered, self._future = self._future, []
        for env, msg in buffered:
            if msg.view >= v:
                self._replay(env, msg, now)
        if self._pending and TIMER_VIEW_CHANGE not in self._timers:
            self._set_timer(TIMER_VIEW_CHANGE, now + self._vc_timeout())
        self._try_propose(now, flush=True)
        self._maybe_schedule_catchup(now)
