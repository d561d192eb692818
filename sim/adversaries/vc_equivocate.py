from __future__ import annotations

from dataclasses import replace
from typing import Any

from sim.adversaries.base import Behaviour, Outgoing, own_message_to_replica, reseal
from sim.adversaries.history import History
from sim.params import ParamRule, count
from trustchain.consensus.messages import PrePrepare, ViewChange
from trustchain.encoding import decode

MODES = ("no_prepared", "old_checkpoint")


class VcEquivocate(Behaviour):
    """Sends different, individually valid VIEW-CHANGE messages for the same new view to different
    replicas. Per view it picks `targets` recipients (default: half of the others, always including
    the new primary unless `target_primary` is false) and shows them an alternative: `no_prepared`
    claims no prepared certificates at all; `old_checkpoint` claims an older stable checkpoint it
    legitimately held (keeping only the prepared certificates that fit that checkpoint's window);
    `mode: mixed` (default) picks one per view.

    Why it matters: the new primary builds its NEW-VIEW from whichever copy it received, while the
    other replicas saw another one. Each copy carries genuine signatures, so nothing can be rejected;
    the protocol must stay safe because any 2f+1 VIEW-CHANGE messages still include an honest
    replica's record of every committed request, whatever this replica claimed to whom."""

    name = "vc_equivocate"
    param_types = {"mode": ParamRule(str, choices=("mixed", *MODES)), "targets": count(1), "target_primary": bool}

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.history = History()
        self.plans: dict[bytes, tuple[frozenset[int], bytes | None]] = {}

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        self.history.observe(self.held)
        out: list[Outgoing] = []
        for item in items:
            vc = own_message_to_replica(self.node, item, ViewChange)
            if vc is None:
                out.append(item)
                continue
            targets, alt = self._plan(item.data, vc)
            if alt is not None and item.dst in targets:
                self.world.count_fault("vc_equivocation")
                out.append(replace(item, data=alt))
            else:
                out.append(item)
        return out

    def _plan(self, data: bytes, vc: ViewChange) -> tuple[frozenset[int], bytes | None]:
        """Per own VIEW-CHANGE (re-sends carry the same bytes): who gets the alternative, and what it is."""
        plan = self.plans.get(data)
        if plan is not None:
            return plan
        n, me = self.world.config.n, self.node.replica_id
        primary = self.world.config.primary(vc.new_view)
        others = [r for r in range(n) if r != me]
        k = min(len(others), int(self.param("targets", max(1, len(others) // 2))))
        chosen: list[int] = []
        if self.param("target_primary", True) and primary != me:
            chosen.append(primary)
        rest = [r for r in others if r not in chosen]
        chosen += self.rng.sample(rest, max(0, k - len(chosen)))
        mode = str(self.param("mode", "mixed"))
        modes = [self.rng.choice(MODES)] if mode == "mixed" else [mode]
        modes += [m for m in MODES if m not in modes]  # fall back to the other lie if the first one says nothing new
        alt_bytes: bytes | None = None
        for m in modes:
            alt = self._alternative(vc, m)
            if alt != vc:
                alt_bytes = reseal(self.node, alt)
                break
        plan = (frozenset(chosen), alt_bytes)
        self.plans[data] = plan
        if len(self.plans) > 64:
            del self.plans[next(iter(self.plans))]
        return plan

    def _alternative(self, vc: ViewChange, mode: str) -> ViewChange:
        if mode == "no_prepared":
            return replace(vc, prepared=())
        old_seq, old_proof = self.history.checkpoint_below(vc.stable_seq)
        window = self.world.config.watermark_window
        kept = tuple(c for c in vc.prepared
                     if old_seq < decode(PrePrepare, c.pre_prepare.body).seq <= old_seq + window)
        return ViewChange(vc.new_view, old_seq, old_proof, kept)
