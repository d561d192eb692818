from __future__ import annotations

from dataclasses import replace
from typing import Any

from sim.adversaries.base import Behaviour, Outgoing, own_message_to_replica
from sim.params import DURATION, count
from trustchain.consensus.messages import ViewChange


class VcWithhold(Behaviour):
    """Withholds its VIEW-CHANGE messages from some replicas and sends them late to others. For every
    new view it picks, with its RNG, `drop` recipients (default f) that never get its VIEW-CHANGE for
    that view (re-sends included) and `late` further recipients (default 1) that get it `delay_ms`
    (default 1500) late; the new primary is always among the first picked unless `target_primary` is
    false. Everything else it sends is untouched.

    Why it matters: view changes must complete on the honest replicas' messages alone. A faulty
    replica that joins the view change for some replicas and not others tries to leave them with
    different counts (one replica reaching 2f+1 view changes and arming its timer, another not; the
    new primary one message short of a NEW-VIEW), which is how view changes stall for ever when the
    join, timer and re-send rules are not right."""

    name = "vc_withhold"
    param_types = {"drop": count(), "late": count(), "delay_ms": DURATION, "target_primary": bool}

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.plans: dict[int, tuple[frozenset[int], frozenset[int]]] = {}

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        delay_us = round(float(self.param("delay_ms", 1500)) * 1000)
        for item in items:
            vc = own_message_to_replica(self.node, item, ViewChange)
            if vc is None:
                out.append(item)
                continue
            dropped, late = self._plan(vc.new_view)
            if item.dst in dropped:
                self.world.count_fault("vc_withheld")
            elif item.dst in late:
                self.world.count_fault("vc_late")
                out.append(replace(item, delay_us=item.delay_us + delay_us))
            else:
                out.append(item)
        return out

    def _plan(self, view: int) -> tuple[frozenset[int], frozenset[int]]:
        plan = self.plans.get(view)
        if plan is None:
            config, me = self.world.config, self.node.replica_id
            others = [r for r in range(config.n) if r != me]
            self.rng.shuffle(others)
            primary = config.primary(view)
            if self.param("target_primary", True) and primary in others:
                others.remove(primary)
                others.insert(0, primary)
            n_drop = min(len(others), int(self.param("drop", config.f)))
            n_late = min(len(others) - n_drop, int(self.param("late", 1)))
            plan = (frozenset(others[:n_drop]), frozenset(others[n_drop:n_drop + n_late]))
            self.plans[view] = plan
        return plan
