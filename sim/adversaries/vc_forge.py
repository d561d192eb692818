from __future__ import annotations

from dataclasses import replace
from typing import Any

from sim.adversaries.base import Behaviour, Outgoing, own_message_to_replica, reseal
from sim.adversaries.history import History
from sim.adversaries.rotation import Rotation
from sim.params import DURATION, ParamRule
from trustchain.consensus.messages import (
    Checkpoint,
    Envelope,
    Prepare,
    PreparedCertificate,
    PrePrepare,
    ViewChange,
    digest,
    seal,
)
from trustchain.encoding import decode

#: each forgery, and the reason an honest replica must give when it rejects it
REJECTED_AS: dict[str, str] = {
    "short_prepares": "prepared_without_quorum",
    "relabelled": "certificate_mismatch",
    "checkpoint_digest": "checkpoint_mismatch",
    "checkpoint_short": "checkpoint_without_quorum",
    "outside_window": "invalid_view_change",
}


class VcForge(Behaviour):
    """Sends VIEW-CHANGE messages with forged content, signed with its own key, so only their
    content can give them away. For every VIEW-CHANGE it sends, each recipient gets one forgery (the
    `variants` it can build, in turn, in an order drawn from its RNG), and then, unless `also_honest`
    is false, the honest message (`honest_delay_ms` later, default 0):

    - `short_prepares`: a prepared certificate with fewer than 2f matching prepares;
    - `relabelled`: a certificate whose prepares are for another sequence number or view than its
      pre-prepare (its own prepare re-labelled, or another slot's prepare set);
    - `checkpoint_digest`: a stable checkpoint whose proof mixes in its own checkpoint for another
      state digest;
    - `checkpoint_short`: a stable checkpoint beyond the real one, "proved" by its own signature only;
    - `outside_window`: prepared certificates outside the window of the claimed checkpoint (a
      genuine old certificate below it, or current ones above the genesis window).

    Why it matters: a VIEW-CHANGE is the only place where a replica's claims about the past decide
    what the next view re-proposes. Accepting any of these would let one faulty replica resurrect or
    suppress requests, or drag the new view onto a state no quorum vouched for."""

    name = "vc_forge"
    param_types = {"variants": ParamRule(list, items=str, choices=tuple(REJECTED_AS)), "also_honest": bool,
                   "honest_delay_ms": DURATION}

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.history = History()
        self.forged: dict[tuple[bytes, str], bytes | None] = {}
        self.rotation = Rotation(self.rng)

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        self.history.observe(self.held)
        wanted = [v for v in self.param("variants", list(REJECTED_AS)) if v in REJECTED_AS]
        also_honest = bool(self.param("also_honest", True))
        honest_delay_us = round(float(self.param("honest_delay_ms", 0)) * 1000)
        out: list[Outgoing] = []
        for item in items:
            vc = own_message_to_replica(self.node, item, ViewChange)
            if vc is None:
                out.append(item)
                continue
            options = {v: f for v in wanted if (f := self._forgery(item.data, vc, v)) is not None}
            variant = self.rotation.pick(wanted, options)
            if variant is None:
                out.append(item)
                continue
            forged = options[variant]
            self.world.count_fault("vc_forged")
            self.world.count_fault(f"vc_forged_{variant}")
            out.append(Outgoing(item.dst, forged, item.delay_us))
            if also_honest:
                out.append(replace(item, delay_us=item.delay_us + honest_delay_us))
        return out

    # ------------------------------------------------------------------ forgeries

    def _forgery(self, key: bytes, vc: ViewChange, variant: str) -> bytes | None:
        cached = (key, variant)
        if cached not in self.forged:
            build = getattr(self, f"_{variant}")
            message: ViewChange | None = build(vc)
            self.forged[cached] = None if message is None else reseal(self.node, message)
            if len(self.forged) > 256:
                del self.forged[next(iter(self.forged))]
        return self.forged[cached]

    def _own(self, message: object) -> Envelope:
        return seal(self.node.signer, self.node.replica_id, message)

    def _sources(self, vc: ViewChange) -> list[PreparedCertificate]:
        """Pre-prepares with whatever matching prepares it holds: its certificates, or any proposal it saw."""
        found = list(vc.prepared) + [c for _, c in self.history.certs_above(0)]
        if found:
            return found
        for _, slot in sorted(self.held.slots.items()):
            for view, (pp_env, pp) in sorted(slot.pre_prepares.items()):
                if view >= vc.new_view:
                    continue
                votes = slot.prepares.get(view, {})
                matching = tuple(env for _, (d, env) in sorted(votes.items()) if d == pp.batch_digest)
                found.append(PreparedCertificate(pp_env, matching))
        return found

    def _short_prepares(self, vc: ViewChange) -> ViewChange | None:
        sources = self._sources(vc)
        if not sources:
            return None
        src = sources[-1]
        short = PreparedCertificate(src.pre_prepare, src.prepares[: self.world.config.prepare_quorum - 1])
        return replace(vc, prepared=(short,))

    def _relabelled(self, vc: ViewChange) -> ViewChange | None:
        sources = self._sources(vc)
        if not sources:
            return None
        src = sources[-1]
        pp = decode(PrePrepare, src.pre_prepare.body)
        others = [c for c in sources if decode(PrePrepare, c.pre_prepare.body).seq != pp.seq and c.prepares]
        if others:  # another slot's prepare set under this pre-prepare
            forged = PreparedCertificate(src.pre_prepare, others[-1].prepares)
        else:  # its own prepare, re-labelled with the next sequence number, in front of the real ones
            relabel = self._own(Prepare(pp.view, pp.seq + 1, pp.batch_digest))
            forged = PreparedCertificate(src.pre_prepare, (relabel, *src.prepares[1:]))
        return replace(vc, prepared=(forged,))

    def _checkpoint_digest(self, vc: ViewChange) -> ViewChange | None:
        me, quorum = self.node.replica_id, self.world.config.quorum
        if vc.checkpoint_proof:
            seq, proof = vc.stable_seq, vc.checkpoint_proof
        else:
            held = self.history.latest_proof()
            if held is not None:
                seq, proof = held
            else:  # no stable checkpoint yet: the votes it received for one
                votes = [(s, v) for s, v in sorted(self.held.checkpoints.votes.items())
                         if any(sender != me for sender in v)]
                if not votes:
                    return None
                seq, vote_map = votes[-1]
                proof = tuple(env for sender, env in sorted(vote_map.items()) if sender != me)
        real = decode(Checkpoint, proof[0].body).state_digest
        lie = self._own(Checkpoint(seq, digest(real + b"forged-state")))
        forged_proof = (lie, *[e for e in proof if e.sender != me][: quorum - 1])
        return ViewChange(vc.new_view, seq, forged_proof, ())

    def _checkpoint_short(self, vc: ViewChange) -> ViewChange | None:
        seq = vc.stable_seq + self.world.config.checkpoint_interval
        own = self.held.checkpoints.own.get(seq)
        state = own[0] if own is not None else digest(b"unproven-checkpoint" + seq.to_bytes(8, "big"))
        return ViewChange(vc.new_view, seq, (self._own(Checkpoint(seq, state)),), ())

    def _outside_window(self, vc: ViewChange) -> ViewChange | None:
        window = self.world.config.watermark_window
        if vc.stable_seq > 0:
            old = self.history.certs_at_or_below(vc.stable_seq)
            if old:  # a genuine certificate for a sequence the claimed checkpoint already covers
                return replace(vc, prepared=(old[-1][1],))
        beyond = [c for s, c in self.history.certs_above(window)]
        beyond += [c for c in vc.prepared if decode(PrePrepare, c.pre_prepare.body).seq > window]
        if beyond:  # genuine certificates, under a claim of no stable checkpoint at all
            return ViewChange(vc.new_view, 0, (), (beyond[-1],))
        return None
