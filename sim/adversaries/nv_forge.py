from __future__ import annotations

from dataclasses import replace
from typing import Any

from sim.adversaries.base import Behaviour, Outgoing, own_message_to_replica, reseal
from sim.params import ParamRule
from trustchain.consensus.messages import Checkpoint, Envelope, NewView, PrePrepare, ViewChange, digest, seal
from trustchain.consensus.viewchange import NULL_DIGEST, check_view_change, new_view_pre_prepares
from trustchain.encoding import decode

#: each variant, and the reason an honest replica must give when it rejects it (None: it is valid)
REJECTED_AS: dict[str, str | None] = {
    "omit": "invalid_new_view",
    "alter": "invalid_new_view",
    "too_few": "invalid_new_view",
    "duplicate_vc": "invalid_new_view",
    "forged_vc": "checkpoint_without_quorum",
    "equivocate": None,
}


class NvForge(Behaviour):
    """As the primary of a new view, sends forged NEW-VIEW messages, a different one to each
    recipient (per view, the `variants` are dealt out round-robin in an order drawn from its RNG, and
    re-sends repeat what that recipient was shown):

    - `omit`: leaves out a re-proposed pre-prepare (one carrying a prepared batch when there is one);
    - `alter`: re-proposes an altered batch (a request dropped, or a null batch filled) at a sequence
      the view changes fix;
    - `too_few`: carries only 2f VIEW-CHANGE messages;
    - `duplicate_vc`: reaches 2f+1 VIEW-CHANGE messages by repeating one;
    - `forged_vc`: carries, as its own VIEW-CHANGE, one that claims an unproven stable checkpoint;
    - `equivocate`: a valid NEW-VIEW other than the one it entered the view with, and a different one
      for each recipient dealt this variant: built on another own VIEW-CHANGE (no prepared
      certificates, or the genesis checkpoint), or on the same view changes in another order, so that
      recipients enter the view on different NEW-VIEWs and possibly different re-proposals.

    Why it matters: the NEW-VIEW decides what every sequence between the checkpoint and the highest
    prepared one holds in the new view. A primary that could omit or alter a prepared (possibly
    committed) request, or slip in unproven view changes, would break safety; one that shows
    recipients different valid NEW-VIEWs tests that those who accepted each can never commit
    conflicting batches, and that the view still changes on when the others refuse it."""

    name = "nv_forge"
    param_types = {"variants": ParamRule(list, items=str, choices=tuple(REJECTED_AS))}

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.shown: dict[tuple[int, int], tuple[str, bytes]] = {}

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        for item in items:
            nv = own_message_to_replica(self.node, item, NewView)
            if nv is None:
                out.append(item)
                continue
            assert isinstance(item.dst, int)  # own_message_to_replica only returns messages to replicas
            key = (nv.view, item.dst)
            if key not in self.shown:
                self._deal(nv)
            shown = self.shown.get(key)
            if shown is None:
                out.append(item)
                continue
            variant, data = shown
            self.world.count_fault("nv_forged")
            self.world.count_fault(f"nv_forged_{variant}")
            out.append(replace(item, data=data))
        return out

    def _deal(self, nv: NewView) -> None:
        wanted = [v for v in self.param("variants", list(REJECTED_AS)) if v in REJECTED_AS]
        self.rng.shuffle(wanted)
        me = self.node.replica_id
        recipients = [r for r in range(self.world.config.n) if r != me]
        dealt: dict[str, int] = {}
        for i, dst in enumerate(recipients):
            if not wanted:
                break
            variant = wanted[i % len(wanted)]
            forged = self._forge(nv, variant, dealt.get(variant, 0))
            dealt[variant] = dealt.get(variant, 0) + 1
            if forged is None:  # nothing to omit or alter: fewer view changes instead
                variant, forged = "too_few", self._forge(nv, "too_few", 0)
            assert forged is not None
            self.shown[(nv.view, dst)] = (variant, reseal(self.node, forged))

    def _own(self, message: object) -> Envelope:
        return seal(self.node.signer, self.node.replica_id, message)

    def _forge(self, nv: NewView, variant: str, k: int) -> NewView | None:
        quorum = self.world.config.quorum
        vcs, pps = nv.view_changes, nv.pre_prepares
        if variant == "too_few":
            return replace(nv, view_changes=vcs[: quorum - 1])
        if variant == "duplicate_vc":
            return replace(nv, view_changes=(*vcs[: quorum - 1], vcs[0]))
        if variant == "omit":
            if not pps:
                return None
            i = self._carrying_batch(pps)
            return replace(nv, pre_prepares=pps[:i] + pps[i + 1:])
        if variant == "alter":
            return replace(nv, pre_prepares=self._altered(nv))
        if variant == "forged_vc":
            own = self._own_vc(nv)
            seq = (own.stable_seq if own is not None else 0) + self.world.config.checkpoint_interval
            lie = ViewChange(nv.view, seq, (self._own(Checkpoint(seq, digest(b"unproven" + seq.to_bytes(8, "big")))),),
                             ())
            others = tuple(e for e in vcs if e.sender != self.node.replica_id)
            return replace(nv, view_changes=(self._own(lie), *others))
        if variant == "equivocate":
            alternatives = self._equivocal(nv)
            return alternatives[k % len(alternatives)]
        return None

    @staticmethod
    def _carrying_batch(pps: tuple[Envelope, ...]) -> int:
        with_batch = [i for i, e in enumerate(pps) if decode(PrePrepare, e.body).batch]
        return with_batch[-1] if with_batch else len(pps) - 1

    def _altered(self, nv: NewView) -> tuple[Envelope, ...]:
        pps = nv.pre_prepares
        if not pps:  # an extra null re-proposal the view changes do not call for
            min_s = max(decode(ViewChange, e.body).stable_seq for e in nv.view_changes)
            return (self._own(PrePrepare(nv.view, min_s + 1, NULL_DIGEST, 0, ())),)
        i = self._carrying_batch(pps)
        pp = decode(PrePrepare, pps[i].body)
        if pp.batch:
            batch = pp.batch[:-1]
        else:
            pending = tuple(self.held.pending.values())[:1]
            batch = pending
        ts = pp.timestamp_us if batch != pp.batch else pp.timestamp_us + 1
        altered = PrePrepare(nv.view, pp.seq, PrePrepare.compute_digest(ts, batch), ts, batch)
        return (*pps[:i], self._own(altered), *pps[i + 1:])

    def _own_vc(self, nv: NewView) -> ViewChange | None:
        for e in nv.view_changes:
            if e.sender == self.node.replica_id:
                vc: ViewChange = decode(ViewChange, e.body)
                return vc
        own = self.held.view_change.own_view_change
        if own is not None:
            vc = decode(ViewChange, own.body)
            if vc.new_view == nv.view:
                return vc
        return None

    def _equivocal(self, nv: NewView) -> list[NewView]:
        """Valid NEW-VIEWs other than `nv`: its own VIEW-CHANGE replaced by one that claims less, and
        each set of view changes in reverse order too."""
        me = self.node.replica_id
        own = self._own_vc(nv)
        claims = [] if own is None else [replace(own, prepared=())]
        claims.append(ViewChange(nv.view, 0, (), ()))
        others = [e for e in nv.view_changes if e.sender != me][: self.world.config.quorum - 1]
        sets = [nv.view_changes]
        sets += [(*others, self._own(claim)) for claim in claims if claim != own]
        found: list[NewView] = []
        for vcs in sets:
            for ordered in (vcs, tuple(reversed(vcs))):
                checked = [check_view_change(self.held.checker, e) for e in ordered]
                _, pps = new_view_pre_prepares(nv.view, checked)
                candidate = NewView(nv.view, tuple(ordered), tuple(self._own(pp) for pp in pps))
                if candidate != nv and candidate not in found:
                    found.append(candidate)
        return found
