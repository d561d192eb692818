from __future__ import annotations

from dataclasses import replace
from typing import Any

from sim.adversaries.base import Behaviour, Outgoing, own_message_to_replica, reseal
from sim.adversaries.rotation import Rotation
from sim.params import ParamRule
from trustchain.consensus.messages import Checkpoint, digest

MODES = ("wrong", "split", "withhold", "far")


class CheckpointLie(Behaviour):
    """Lies in its CHECKPOINT messages. For every checkpoint it takes, it uses one of `modes` (default:
    all of them; in turn, in an order drawn from its RNG):

    - `wrong`: every replica gets a checkpoint for a state digest it never had;
    - `split`: the honest replicas are split in two halves, one half gets the real digest, the
      other a wrong one (`split` is deterministic per sequence number);
    - `withhold`: nobody gets its checkpoint;
    - `far`: the real checkpoint, plus one for a sequence number far beyond every replica's
      horizon (its sequence + 8L; replicas accept votes up to h + 4L), with a made-up digest.

    Why it matters: a checkpoint becomes stable on 2f+1 matching votes, and a stable checkpoint
    truncates the log and is what state transfer serves and view changes start from. With one
    honest replica slow or cut off, the liar's vote is the one the others would need: a wrong digest
    must never be counted towards stability (nor end up in a proof), and a claim of progress far
    ahead must not make anyone skip or garbage-collect what it has not verified."""

    name = "checkpoint_lie"
    param_types = {"modes": ParamRule(list, items=str, choices=MODES)}

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.modes: dict[int, str] = {}
        self.lies: dict[tuple[int, str], bytes] = {}
        self.rotation = Rotation(self.rng)

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        extra: list[Outgoing] = []
        for item in items:
            cp = own_message_to_replica(self.node, item, Checkpoint)
            if cp is None:
                out.append(item)
                continue
            assert isinstance(item.dst, int)  # own_message_to_replica only returns messages to replicas
            mode = self._mode(cp.seq)
            if mode == "withhold":
                self.world.count_fault("checkpoint_withheld")
            elif mode == "wrong" or (mode == "split" and self._second_half(item.dst)):
                self.world.count_fault("checkpoint_wrong_digest" if mode == "wrong" else "checkpoint_split")
                out.append(replace(item, data=self._lie(cp, "wrong")))
            elif mode == "far":
                self.world.count_fault("checkpoint_far")
                out.append(item)
                extra.append(Outgoing(item.dst, self._lie(cp, "far"), item.delay_us))
            else:
                out.append(item)
        return out + extra

    def _mode(self, seq: int) -> str:
        mode = self.modes.get(seq)
        if mode is None:
            modes = [m for m in self.param("modes", list(MODES)) if m in MODES] or ["wrong"]
            mode = self.modes[seq] = self.rotation.pick(modes, modes) or modes[0]
            if len(self.modes) > 256:
                del self.modes[next(iter(self.modes))]
        return mode

    def _second_half(self, dst: int) -> bool:
        honest = [r for r in range(self.world.config.n) if r not in self.world.byzantine_ids]
        return dst in honest[len(honest) // 2:]

    def _lie(self, cp: Checkpoint, kind: str) -> bytes:
        key = (cp.seq, kind)
        data = self.lies.get(key)
        if data is None:
            config = self.world.config
            seq = cp.seq
            if kind == "far":
                seq = cp.seq + 8 * config.watermark_window
            data = self.lies[key] = reseal(self.node, Checkpoint(seq, digest(cp.state_digest + b"lie")))
            if len(self.lies) > 256:
                del self.lies[next(iter(self.lies))]
        return data
