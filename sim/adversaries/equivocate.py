from __future__ import annotations

from dataclasses import replace

from sim.adversaries.base import Behaviour, Outgoing, open_envelope, reseal, with_digest
from trustchain.consensus.messages import Commit, Prepare, PrePrepare


class Equivocate(Behaviour):
    """As primary, proposes two different batches for one sequence number: the honest replicas are
    split in two halves and each half is shown its own pre-prepare. With `collude: true`, every
    colluding replica then votes, towards each target, for the digest that target was shown: with
    more than f colluders this breaks safety, which is what beyond-threshold demonstrates."""

    name = "equivocate"
    param_types = {"collude": bool}

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        coalition = self.world.coalition if self.param("collude", False) else None
        out: list[Outgoing] = []
        for item in items:
            opened = open_envelope(item.data)
            if opened is None or not isinstance(item.dst, int):
                out.append(item)
                continue
            _, msg = opened
            if isinstance(msg, PrePrepare) and msg.batch:
                out.append(self._split(item, msg, coalition))
            elif coalition is not None and isinstance(msg, Prepare | Commit):
                shown = coalition.shown.get((msg.view, msg.seq), {}).get(item.dst)
                if shown is not None and shown != msg.batch_digest:
                    out.append(replace(item, data=reseal(self.node, with_digest(msg, shown))))
                else:
                    out.append(item)
            else:
                out.append(item)
        return out

    def _split(self, item: Outgoing, pp: PrePrepare, coalition: object) -> Outgoing:
        assert isinstance(item.dst, int)
        honest = [r for r in range(self.world.config.n) if r not in self.world.byzantine_ids]
        second_half = set(honest[len(honest) // 2 :])
        ts = pp.timestamp_us + 1
        alt = replace(pp, timestamp_us=ts, batch_digest=PrePrepare.compute_digest(ts, pp.batch))
        chosen = alt if item.dst in second_half else pp
        if coalition is not None:
            self.world.coalition.shown.setdefault((pp.view, pp.seq), {})[item.dst] = chosen.batch_digest
        if chosen is pp:
            return item
        self.world.count_fault("equivocation")
        return replace(item, data=reseal(self.node, alt))
