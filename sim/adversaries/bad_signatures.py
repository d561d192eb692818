from __future__ import annotations

from dataclasses import replace

from sim.adversaries.base import Behaviour, Outgoing, open_envelope
from sim.params import PROBABILITY
from trustchain.consensus.messages import pack


class BadSignatures(Behaviour):
    """Corrupts the signature on a fraction `p` (default 0.5) of outgoing replica messages."""

    name = "bad_signatures"
    param_types = {"p": PROBABILITY}

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        p = float(self.param("p", 0.5))
        out = []
        for item in items:
            opened = open_envelope(item.data)
            if opened is not None and self.rng.random() < p:
                env = opened[0]
                sig = bytearray(env.signature)
                sig[self.rng.randrange(len(sig))] ^= 1 << self.rng.randrange(8)
                out.append(replace(item, data=pack(replace(env, signature=bytes(sig)))))
                self.world.count_fault("bad_signature")
            else:
                out.append(item)
        return out
